//! Adoption is a no-op: importing a node's manifests and rendering the imported config for
//! that node reproduces every manifest (up to `render::equivalent`), on kubeadm v1.36.2's
//! output and on a hand-made "hard way" manifest set.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kubeplane::adopt::{ImportInput, Imported, ManifestFile, Parsed, import, parse_pod};
use kubeplane::api::{Component, parse_config};
use kubeplane::render::{self, RenderInput, equivalent};

fn files(dir: &str) -> Vec<ManifestFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().unwrap().is_file() {
            continue;
        }
        out.push(ManifestFile {
            name,
            content: std::fs::read(entry.path()).unwrap(),
        });
    }
    out
}

fn pod_of(files: &[ManifestFile], name: &str) -> Pod {
    let f = files.iter().find(|f| f.name == name).unwrap();
    match parse_pod(std::str::from_utf8(&f.content).unwrap()).unwrap() {
        Parsed::Pod(p) => *p,
        other => panic!("{name}: {other:?}"),
    }
}

fn import_dir(dir: &str, node: &str) -> (Vec<ManifestFile>, Imported) {
    let files = files(dir);
    let imported = import(&ImportInput {
        files: &files,
        node_name: Some(node),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{dir}: {e}"));
    (files, imported)
}

/// Renders the imported config (after a YAML round trip, as a user would apply it) for the
/// node with the facts the import found, and checks each component against its manifest.
fn assert_render_reproduces(files: &[ManifestFile], imported: &Imported) {
    let yaml = render::to_yaml(&imported.config).unwrap();
    let cfg = parse_config(&yaml).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    let rendered = render::render(&RenderInput {
        spec: &cfg.spec,
        node: &imported.node,
        encryption_config_sha256: None,
    })
    .unwrap();
    assert_eq!(rendered.pods.len(), imported.sources.len());
    for (component, file) in &imported.sources {
        let disk = pod_of(files, file);
        let pod = &rendered
            .pods
            .iter()
            .find(|p| p.component == *component)
            .unwrap()
            .pod;
        // The file the agent would write means the same Pod as the one it renders.
        let written = rendered
            .pods
            .iter()
            .find(|p| p.component == *component)
            .unwrap();
        match parse_pod(&written.yaml).unwrap() {
            Parsed::Pod(p) => {
                assert!(equivalent(&p, pod));
                // Identical but for the `status: {}` the file carries.
                assert_eq!(Pod { status: None, ..*p }, *pod);
            }
            other => panic!("{other:?}"),
        }
        let changes = kubeplane::adopt::changes(&disk, pod);
        assert!(
            equivalent(&disk, pod),
            "{file}: the render differs:\n{}\nconfig:\n{yaml}",
            changes
                .iter()
                .map(|c| format!("  {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(changes.is_empty());
        // Spelled out, the parts adoption depends on.
        let (a, b) = (
            &disk.spec.as_ref().unwrap().containers[0],
            &pod.spec.as_ref().unwrap().containers[0],
        );
        let mut ca = a.command.clone().unwrap();
        let mut cb = b.command.clone().unwrap();
        ca.sort();
        cb.sort();
        assert_eq!(ca, cb, "{file}: command line");
        assert_eq!(a.liveness_probe, b.liveness_probe, "{file}");
        assert_eq!(a.readiness_probe, b.readiness_probe, "{file}");
        assert_eq!(a.startup_probe, b.startup_probe, "{file}");
        assert_eq!(a.volume_mounts, b.volume_mounts, "{file}");
        assert_eq!(
            disk.spec.as_ref().unwrap().volumes,
            pod.spec.as_ref().unwrap().volumes,
            "{file}"
        );
    }
}

#[test]
fn kubeadm_node_imports_to_the_kubeadm_defaults_example() {
    let (files, imported) = import_dir("tests/fixtures/kubeadm-v1.36.2", "cp-1");
    assert!(imported.is_exact(), "{:?}", imported.lossy);
    assert!(imported.report.is_ok(), "{:?}", imported.report);
    assert_eq!(
        imported.sources,
        vec![
            (Component::ApiServer, "kube-apiserver.yaml".to_string()),
            (
                Component::ControllerManager,
                "kube-controller-manager.yaml".to_string()
            ),
            (Component::Scheduler, "kube-scheduler.yaml".to_string()),
        ]
    );
    // kubeadm-config.yaml and README.md are not Pods.
    let skipped: Vec<&str> = imported.skipped.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(skipped, vec!["README.md", "kubeadm-config.yaml"]);
    assert_eq!(
        imported.node.advertise_address.as_deref(),
        Some("10.0.0.11")
    );
    assert_eq!(
        imported.node.host_ca_directories,
        vec![
            "/etc/ca-certificates",
            "/usr/share/ca-certificates",
            "/usr/local/share/ca-certificates"
        ]
    );

    let spec = &imported.config.spec;
    for c in Component::ALL {
        assert!(
            render::settings(spec, c).extra_args.is_empty(),
            "{c}: {:?}",
            render::settings(spec, c).extra_args
        );
    }
    // Exactly examples/kubeadm-defaults.yaml, plus the node's address.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubeadm-defaults.yaml"),
    )
    .unwrap();
    let mut expected = parse_config(&example).unwrap().spec;
    expected.nodes = vec![kubeplane::api::NodeOverride {
        name: "cp-1".into(),
        advertise_address: Some("10.0.0.11".into()),
    }];
    assert_eq!(*spec, expected);

    assert_render_reproduces(&files, &imported);
}

#[test]
fn hard_way_node_is_reproduced_flag_for_flag() {
    let (files, imported) = import_dir("tests/fixtures/hardway", "controller-0");
    assert!(
        imported.is_exact(),
        "{}",
        imported
            .lossy
            .iter()
            .flat_map(|l| l.changes.iter().map(move |c| format!("{}: {c}", l.file)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        imported.report.is_ok(),
        "{}",
        imported.report.error_messages().join("\n")
    );
    // Recognised by the container's command, not the file name.
    assert_eq!(
        imported.sources,
        vec![
            (Component::ApiServer, "apiserver.yaml".to_string()),
            (
                Component::ControllerManager,
                "controller-manager.yaml".to_string()
            ),
            (Component::Scheduler, "scheduler.yaml".to_string()),
        ]
    );
    assert_render_reproduces(&files, &imported);

    let spec = &imported.config.spec;
    assert_eq!(
        spec.certificates_dir.as_deref(),
        Some("/var/lib/kubernetes")
    );
    let net = spec.networking.as_ref().unwrap();
    assert_eq!(net.service_subnet.as_deref(), Some("10.32.0.0/24"));
    assert_eq!(net.pod_subnet.as_deref(), Some("10.200.0.0/16"));
    assert_eq!(net.service_node_port_range.as_deref(), Some("30000-32767"));
    let ext = spec.etcd.as_ref().unwrap().external.as_ref().unwrap();
    assert_eq!(ext.endpoints.len(), 3);
    assert_eq!(ext.ca_file.as_deref(), Some("/var/lib/kubernetes/ca.pem"));
    assert_eq!(
        spec.controller_manager
            .as_ref()
            .unwrap()
            .kubeconfig
            .as_deref(),
        Some("/var/lib/kubernetes/kube-controller-manager.kubeconfig")
    );
    assert_eq!(spec.nodes[0].name, "controller-0");
    assert_eq!(
        spec.nodes[0].advertise_address.as_deref(),
        Some("10.240.0.10")
    );

    // Flags the spec has no field for stay extraArgs, in their original order.
    let api = spec.api_server.as_ref().unwrap();
    let names: Vec<&str> = api.extra_args.iter().map(|a| a.name.as_str()).collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert!(pos("apiserver-count") < pos("event-ttl") && pos("event-ttl") < pos("v"));
    for n in [
        "audit-policy-file",
        "audit-log-path",
        "encryption-provider-config",
        "bind-address",
        "tls-cert-file",
        "runtime-config",
    ] {
        pos(n);
    }
    assert!(!names.contains(&"etcd-servers") && !names.contains(&"secure-port"));
    // Protected flags replaced on purpose are allowed, or the config would not validate.
    let allowed: Vec<&str> = api
        .allow_protected_overrides
        .iter()
        .map(|f| f.0.as_str())
        .collect();
    assert!(allowed.contains(&"tls-cert-file") && allowed.contains(&"client-ca-file"));
    // The audit policy and log directory are extra volumes; host CA dirs are not.
    let vols: Vec<&str> = api.extra_volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vols, vec!["audit-log", "audit-policy"]);
    assert!(api.probes.is_some() && api.resources.is_some());
    assert_eq!(api.extra_env.len(), 1);
    // The encryption config stays a host file; the user is told how to move it.
    assert!(api.encryption.is_none());
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("encryption") && n.contains("Secret"))
    );
    assert!(imported.notes.iter().any(|n| n.contains("audit policy")));
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("apiserver.yaml") && n.contains("rename"))
    );
}
