//! Rendering all components for one node of the HA example (target: median < 200 µs).
//!
//! `cargo bench --bench render`

use criterion::{Criterion, criterion_group, criterion_main};
use kubeplane::api::{NodeFacts, parse_config};
use kubeplane::render::{RenderInput, render};

fn bench_render(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/controlplane.yaml"
    ))
    .expect("example");
    let cfg = parse_config(&text).expect("example parses");
    let node = NodeFacts {
        node_name: "cp-1".into(),
        host_ca_directories: vec![
            "/etc/ca-certificates".into(),
            "/usr/share/ca-certificates".into(),
        ],
        ..Default::default()
    };
    let digest = "0".repeat(64);
    let input = RenderInput {
        spec: &cfg.spec,
        node: &node,
        encryption_config_sha256: Some(&digest),
    };
    c.bench_function("render_ha_example_one_node", |b| {
        b.iter(|| {
            let r = render(std::hint::black_box(&input)).expect("renders");
            assert_eq!(r.pods.len(), 3);
            r
        })
    });
    c.bench_function("validate_ha_example", |b| {
        b.iter(|| kubeplane::validation::validate(std::hint::black_box(&cfg.spec)))
    });
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
