use kubeplane::api::*;
use kubeplane::render::*;
fn main() {
    let spec = ControlPlaneConfigSpec {
        kubernetes_version: "v1.36.2".into(),
        ..Default::default()
    };
    let node = NodeFacts {
        node_name: "cp-1".into(),
        advertise_address: Some("10.0.0.11".into()),
        host_ca_directories: vec![
            "/etc/ca-certificates".into(),
            "/usr/local/share/ca-certificates".into(),
            "/usr/share/ca-certificates".into(),
        ],
        ..Default::default()
    };
    let r = render(&RenderInput {
        spec: &spec,
        node: &node,
        encryption_config_sha256: None,
    })
    .unwrap();
    std::fs::create_dir_all("/tmp/out").unwrap();
    for p in r.pods {
        std::fs::write(format!("/tmp/out/{}.yaml", p.component.name()), p.yaml).unwrap();
    }
}
