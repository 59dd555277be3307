//! Extra args, volumes and env; the uid; the advertise address.

use super::*;

#[test]
fn extra_args_replace_every_default_and_repeat_in_order() {
    let mut s = spec();
    s.api_server = Some(ApiServer {
        extra_args: vec![
            Arg::new("service-account-issuer", "https://vip:6443"),
            Arg::new("audit-log-maxage", "30"),
            Arg::new(
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ),
            Arg::new("authorization-mode", "Node,Webhook,RBAC"),
        ],
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let api = pod(&r, Component::ApiServer);
    assert_eq!(
        flag_values(api, "service-account-issuer"),
        vec![
            "https://vip:6443",
            "https://kubernetes.default.svc.cluster.local"
        ]
    );
    assert_eq!(
        flag_values(api, "authorization-mode"),
        vec!["Node,Webhook,RBAC"]
    );
    assert_eq!(flag_values(api, "audit-log-maxage"), vec!["30"]);
    let cmd = command(api);
    let names: Vec<&str> = cmd[1..]
        .iter()
        .map(|a| a.trim_start_matches("--").split('=').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "flags are sorted by name");
}

#[test]
fn extra_volumes_and_env_merge_by_name() {
    let mut s = spec();
    s.scheduler = Some(Scheduler {
        extra_volumes: vec![
            HostPathVolume {
                name: "kubeconfig".into(),
                host_path: "/srv/scheduler.conf".into(),
                mount_path: "/etc/kubernetes/scheduler.conf".into(),
                read_only: Some(true),
                path_type: Some(HostPathType::File),
            },
            HostPathVolume {
                name: "config".into(),
                host_path: "/etc/kubernetes/scheduler-config.yaml".into(),
                mount_path: "/etc/kubernetes/scheduler-config.yaml".into(),
                read_only: None,
                path_type: None,
            },
        ],
        extra_env: vec![
            EnvVar {
                name: "HTTPS_PROXY".into(),
                value: "http://proxy:3128".into(),
            },
            EnvVar {
                name: "NO_PROXY".into(),
                value: "10.0.0.0/8".into(),
            },
        ],
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let sched = pod(&r, Component::Scheduler);
    assert_eq!(
        volumes(sched),
        vec![
            (
                "config".into(),
                "/etc/kubernetes/scheduler-config.yaml".into(),
                "DirectoryOrCreate".into()
            ),
            (
                "kubeconfig".into(),
                "/srv/scheduler.conf".into(),
                "File".into()
            ),
        ]
    );
    assert_eq!(
        mounts(sched),
        vec![
            (
                "config".into(),
                "/etc/kubernetes/scheduler-config.yaml".into(),
                false
            ),
            (
                "kubeconfig".into(),
                "/etc/kubernetes/scheduler.conf".into(),
                true
            ),
        ]
    );
    let env = container(sched).env.clone().unwrap();
    assert_eq!(env.len(), 2);
    assert_eq!(env[0].name, "HTTPS_PROXY");
    assert_eq!(env[1].value.as_deref(), Some("10.0.0.0/8"));
    // The kubeconfig certificate is reported at its host path.
    assert!(
        r.certificates
            .iter()
            .any(|c| c.component == Component::Scheduler
                && c.path == "/srv/scheduler.conf"
                && c.kubeconfig)
    );
}

#[test]
fn uid_is_a_content_hash_that_includes_the_node_name() {
    let s = spec();
    let a = render_ok(&s, &node("cp-1"));
    let again = render_ok(&s, &node("cp-1"));
    assert_eq!(a, again);
    let b = render_ok(&s, &node("cp-2"));
    let sched_a = pod(&a, Component::Scheduler);
    let sched_b = pod(&b, Component::Scheduler);
    // Identical Pod content, different node: different uid.
    assert_eq!(container(sched_a).command, container(sched_b).command);
    assert_ne!(sched_a.uid, sched_b.uid);
    assert_eq!(
        sched_a.pod.metadata.uid.as_deref(),
        Some(sched_a.uid.as_str())
    );
    assert_eq!(sched_a.uid, pod_uid(&sched_a.pod, "cp-1"));
    // Any content change moves it.
    let mut s2 = spec();
    s2.scheduler = Some(Scheduler {
        extra_args: vec![Arg::new("v", "2")],
        ..Default::default()
    });
    let c = render_ok(&s2, &node("cp-1"));
    assert_ne!(pod(&c, Component::Scheduler).uid, sched_a.uid);
    // A component whose input did not change keeps its uid (no needless restart).
    assert_eq!(
        pod(&c, Component::ControllerManager).uid,
        pod(&a, Component::ControllerManager).uid
    );
}

#[test]
fn every_pod_round_trips_through_k8s_openapi() {
    let text = std::fs::read_to_string(format!(
        "{}/../examples/controlplane.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let cfg = parse_config(&text).unwrap();
    for name in ["cp-1", "cp-2", "cp-3"] {
        let n = NodeFacts {
            node_name: name.into(),
            ..Default::default()
        };
        let r = render(&RenderInput {
            spec: &cfg.spec,
            node: &n,
            encryption_config_sha256: Some("ab"),
        })
        .unwrap();
        for p in &r.pods {
            let back: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(&p.yaml).unwrap();
            let mut expected = p.pod.clone();
            expected.status = Some(Default::default());
            assert_eq!(back, expected, "{name} {}", p.component);
        }
    }
}

#[test]
fn advertise_address_comes_from_spec_then_facts_else_error() {
    let mut s = spec();
    s.nodes = vec![NodeOverride {
        name: "cp-1".into(),
        advertise_address: Some("192.168.1.5".into()),
    }];
    let r = render_ok(&s, &node("cp-1"));
    assert_eq!(
        flag_values(pod(&r, Component::ApiServer), "advertise-address"),
        vec!["192.168.1.5"]
    );
    let r = render_ok(&s, &node("cp-2"));
    assert_eq!(
        flag_values(pod(&r, Component::ApiServer), "advertise-address"),
        vec!["10.0.0.11"]
    );
    let bare = NodeFacts {
        node_name: "cp-9".into(),
        ..Default::default()
    };
    let err = render(&RenderInput {
        spec: &s,
        node: &bare,
        encryption_config_sha256: None,
    })
    .unwrap_err();
    assert_eq!(
        err,
        RenderError::NoAdvertiseAddress {
            node: "cp-9".into()
        }
    );
    assert!(err.to_string().contains("--address"));
    // Without the apiserver, no address is needed.
    s.api_server = Some(ApiServer {
        managed: Some(false),
        ..Default::default()
    });
    let r = render(&RenderInput {
        spec: &s,
        node: &bare,
        encryption_config_sha256: None,
    })
    .unwrap();
    assert_eq!(r.pods.len(), 2);
    assert!(r.pods.iter().all(|p| p.component != Component::ApiServer));
}

#[test]
fn ipv6_advertise_address_is_bracketed_in_the_endpoint_annotation() {
    let mut n = node("cp-1");
    n.advertise_address = Some("fd00::11".into());
    let r = render_ok(&spec(), &n);
    let api = pod(&r, Component::ApiServer);
    assert_eq!(
        api.pod.metadata.annotations.as_ref().unwrap()["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"],
        "[fd00::11]:6443"
    );
}
