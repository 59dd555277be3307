//! Drift heal latency: from a hand edit of a managed manifest (a plain `write`, as an editor
//! or `sed` would do) to the restored file, with real files and real inotify events through
//! the agent's drift handler (`DriftMode::Enforce`).
//!
//! `cargo bench --bench drift_heal` (`KUBEPLANE_DRIFT_SAMPLES`, default 500). Prints
//! p50/p90/p99/max. Target: p50 < 50 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeplane::agent::desired::Desired;
use kubeplane::agent::drift::{self, DriftHandler, DriftMode};
use kubeplane::agent::files::NodeDirs;
use kubeplane::agent::status::StatusBoard;
use kubeplane::api::{Component, NodeFacts, parse_config};
use kubeplane::render::{self, RenderInput};

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: measure only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "skipped: run with `cargo bench --bench {}`",
            env!("CARGO_CRATE_NAME")
        );
        return;
    }
    let samples: usize = std::env::var("KUBEPLANE_DRIFT_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let tmp = tempfile::tempdir().unwrap();
    let dirs = NodeDirs::new(tmp.path().join("manifests"), tmp.path().join("kubeplane"));
    std::fs::create_dir(dirs.manifest_dir()).unwrap();
    dirs.prepare().unwrap();

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubeadm-defaults.yaml"
    ))
    .unwrap();
    let spec = parse_config(&text).unwrap().spec;
    let node = NodeFacts {
        node_name: "cp-1".into(),
        advertise_address: Some("10.0.0.11".into()),
        ..Default::default()
    };
    let rendered = render::render(&RenderInput {
        spec: &spec,
        node: &node,
        encryption_config_sha256: None,
    })
    .unwrap();
    let desired = Arc::new(Desired::new());
    {
        let mut g = desired.lock();
        for p in &rendered.pods {
            g.set(p.component, p.yaml.clone().into_bytes());
        }
        let managed = g.managed();
        for p in &rendered.pods {
            dirs.write_manifest(p.component.manifest_file(), &managed, p.yaml.as_bytes())
                .unwrap();
        }
    }
    let target = dirs.manifest_path(Component::ApiServer);
    let want = rendered.pods[0].yaml.clone().into_bytes();
    let edited = String::from_utf8(want.clone())
        .unwrap()
        .replace("--secure-port=6443", "--secure-port=7443");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handler = Arc::new(DriftHandler::new(
        dirs.clone(),
        desired.clone(),
        DriftMode::Enforce,
        StatusBoard::new(),
    ));
    let _guard = rt.enter();
    let (_watcher, rx) = drift::watch(dirs.manifest_dir()).unwrap();
    rt.spawn(handler.clone().run(rx));

    let mut lat: Vec<Duration> = Vec::with_capacity(samples);
    for i in 0..samples {
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        std::fs::write(&target, &edited).unwrap();
        // Poll (100 µs) until the file is the desired one again.
        loop {
            if std::fs::read(&target).map(|b| b == want).unwrap_or(false) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                panic!("sample {i}: not healed within 10 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "drift heal latency over {} hand edits (write → restored file, real inotify): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*lat.last().unwrap())
    );
}
