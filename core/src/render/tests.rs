use super::*;
use crate::api::*;
use k8s_openapi::api::core::v1::{Container, Probe};

mod features;
mod kubeadm;
mod merge;
mod properties;

fn spec() -> ControlPlaneConfigSpec {
    ControlPlaneConfigSpec {
        kubernetes_version: "v1.36.2".into(),
        ..Default::default()
    }
}

fn node(name: &str) -> NodeFacts {
    NodeFacts {
        node_name: name.into(),
        advertise_address: Some("10.0.0.11".into()),
        ..Default::default()
    }
}

fn render_ok(spec: &ControlPlaneConfigSpec, node: &NodeFacts) -> Rendered {
    render(&RenderInput {
        spec,
        node,
        encryption_config_sha256: None,
    })
    .expect("renders")
}

fn pod(r: &Rendered, c: Component) -> &RenderedPod {
    r.pods
        .iter()
        .find(|p| p.component == c)
        .expect("component rendered")
}

fn container(p: &RenderedPod) -> &Container {
    &p.pod.spec.as_ref().unwrap().containers[0]
}

fn command(p: &RenderedPod) -> Vec<String> {
    container(p).command.clone().unwrap()
}

fn flag_values(p: &RenderedPod, name: &str) -> Vec<String> {
    let prefix = format!("--{name}=");
    command(p)
        .iter()
        .filter_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn mounts(p: &RenderedPod) -> Vec<(String, String, bool)> {
    container(p)
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
        .collect()
}

fn volumes(p: &RenderedPod) -> Vec<(String, String, String)> {
    p.pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let hp = v.host_path.unwrap();
            (v.name, hp.path, hp.type_.unwrap_or_default())
        })
        .collect()
}

const KUBEADM_HOST_CA_DIRS: [&str; 3] = [
    "/etc/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/usr/share/ca-certificates",
];

fn kubeadm_node() -> NodeFacts {
    NodeFacts {
        host_ca_directories: KUBEADM_HOST_CA_DIRS.iter().map(|s| s.to_string()).collect(),
        ..node("cp-1")
    }
}

/// The kubeadm v1.36.2 reference manifests, as JSON values.
fn reference(component: Component) -> serde_json::Value {
    let path = format!(
        "{}/../tests/fixtures/kubeadm-v1.36.2/{}",
        env!("CARGO_MANIFEST_DIR"),
        component.manifest_file()
    );
    let text = std::fs::read_to_string(&path).expect("reference fixture");
    serde_saphyr::from_str(&text).expect("reference parses")
}

#[test]
fn node_spec_carries_manifests_in_apply_order_with_timeouts() {
    let mut s = spec();
    s.rollout = Some(Rollout {
        min_ready_seconds: Some(30),
        health_timeout_seconds: Some(HealthTimeouts {
            scheduler: Some(60),
            ..Default::default()
        }),
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let ns = node_spec("prod", &s, "abc", &r);
    assert_eq!(ns.config_name, "prod");
    assert_eq!(ns.revision, "abc");
    assert_eq!(ns.min_ready_seconds, 30);
    let order: Vec<Component> = ns.manifests.iter().map(|m| m.component).collect();
    assert_eq!(order, Component::ALL.to_vec());
    assert_eq!(ns.manifests[2].health_timeout_seconds, 60);
    assert_eq!(ns.manifests[0].health_timeout_seconds, 300);
    assert_eq!(ns.manifests[0].config_hash, r.pods[0].uid);
    assert_eq!(ns.manifests[0].file_name, "kube-apiserver.yaml");
    assert_eq!(ns.manifests[1].content, r.pods[1].yaml);
    assert_eq!(min_ready_seconds(&spec()), 10);
}

#[test]
fn the_revision_names_the_rendered_bytes_of_every_node() {
    let s = spec();
    let (a, b) = (node("cp-1"), node("cp-2"));
    let rev = |s: &ControlPlaneConfigSpec, nodes: &[NodeFacts]| {
        revision_for(s, None, nodes).expect("renders")
    };
    let r = rev(&s, &[a.clone(), b.clone()]);
    assert_eq!(r.len(), 10);
    assert_eq!(
        r,
        rev(&s, &[b.clone(), a.clone()]),
        "node order does not matter"
    );
    assert_ne!(
        r,
        rev(&s, std::slice::from_ref(&a)),
        "the set of nodes is part of it"
    );

    // Rollout settings change no file: not part of it.
    let mut quiet = s.clone();
    quiet.rollout = Some(Rollout {
        paused: Some(true),
        min_ready_seconds: Some(60),
        progress_deadline_seconds: Some(3600),
        health_timeout_seconds: Some(HealthTimeouts {
            api_server: Some(600),
            ..Default::default()
        }),
        probe_profile: Some(ProbeProfile::Kubeadm),
    });
    assert_eq!(r, rev(&quiet, &[a.clone(), b.clone()]));
    // The fast probe profile changes every manifest: part of it.
    let mut fast = s.clone();
    fast.rollout = Some(Rollout {
        probe_profile: Some(ProbeProfile::Fast),
        ..Default::default()
    });
    assert_ne!(r, rev(&fast, &[a.clone(), b.clone()]));

    // A node fact that changes the rendered manifest changes it.
    let moved = NodeFacts {
        advertise_address: Some("10.0.0.99".into()),
        ..b.clone()
    };
    assert_ne!(r, rev(&s, &[a.clone(), moved]));
    // So does a spec change, and the encryption Secret's content (the side file's digest).
    let mut v = s.clone();
    v.kubernetes_version = "v1.36.3".into();
    assert_ne!(r, rev(&v, &[a.clone(), b.clone()]));
    let mut enc = s.clone();
    enc.api_server = Some(ApiServer {
        encryption: Some(Encryption {
            secret_ref: Some(SecretKeyRef {
                name: "encryption".into(),
                ..Default::default()
            }),
            managed: None,
        }),
        ..Default::default()
    });
    let d1 = revision_for(&enc, Some("aaaa"), std::slice::from_ref(&a)).unwrap();
    let d2 = revision_for(&enc, Some("bbbb"), std::slice::from_ref(&a)).unwrap();
    assert_ne!(d1, d2);
}

#[test]
fn fast_probe_profile_keeps_kubeadms_startup_budget_and_probes_every_second() {
    // kubeadm (cmd/kubeadm/app/util/staticpod/utils.go, StartupProbe): initialDelaySeconds
    // 10, periodSeconds 10, failureThreshold ceil(240 s / 10 s) = 24: 250 s in all.
    assert_eq!(defaults::STARTUP.budget(), 250);
    assert_eq!(defaults::STARTUP_FAST.budget(), defaults::STARTUP.budget());
    assert_eq!(defaults::STARTUP_FAST.period, 1);

    let kubeadm = render_ok(&spec(), &node("cp-1"));
    let mut s = spec();
    s.rollout = Some(Rollout {
        probe_profile: Some(ProbeProfile::Kubeadm),
        ..Default::default()
    });
    let explicit = render_ok(&s, &node("cp-1"));
    for c in Component::ALL {
        assert_eq!(
            pod(&kubeadm, c).yaml,
            pod(&explicit, c).yaml,
            "kubeadm is the default"
        );
    }

    s.rollout = Some(Rollout {
        probe_profile: Some(ProbeProfile::Fast),
        ..Default::default()
    });
    s.scheduler = Some(Scheduler {
        probes: Some(Probes {
            startup: Some(ProbeTiming {
                failure_threshold: Some(100),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let fast = render_ok(&s, &node("cp-1"));
    for c in Component::ALL {
        let (k, f) = (container(pod(&kubeadm, c)), container(pod(&fast, c)));
        let start = f.startup_probe.as_ref().unwrap();
        assert_eq!(start.initial_delay_seconds, None, "{c}");
        assert_eq!(start.period_seconds, Some(1), "{c}");
        assert_eq!(start.timeout_seconds, Some(15), "{c}");
        let threshold = if c == Component::Scheduler { 100 } else { 250 };
        assert_eq!(
            start.failure_threshold,
            Some(threshold),
            "{c}: a per-component override wins"
        );
        let same = |p: &Option<Probe>| p.as_ref().map(|p| p.http_get.clone());
        assert_eq!(same(&f.startup_probe), same(&k.startup_probe), "{c}");
        assert_eq!(
            f.liveness_probe, k.liveness_probe,
            "{c}: liveness is kubeadm's"
        );
        assert_eq!(
            f.readiness_probe, k.readiness_probe,
            "{c}: readiness is kubeadm's"
        );
        assert_ne!(pod(&fast, c).uid, pod(&kubeadm, c).uid);
    }
}
