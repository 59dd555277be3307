use super::*;
use crate::api::*;
use k8s_openapi::api::core::v1::{Container, Probe};

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
fn kubeadm_defaults_match_kubeadm_v1_36_2_output() {
    let r = render_ok(&spec(), &kubeadm_node());
    assert_eq!(r.pods.len(), 3);
    for p in &r.pods {
        let mut ours: serde_json::Value = serde_saphyr::from_str(&p.yaml).unwrap();
        let uid = ours["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("uid")
            .expect("uid set");
        assert_eq!(uid, serde_json::Value::String(p.uid.clone()));
        assert_eq!(ours, reference(p.component), "{}", p.component);
    }
}

#[test]
fn kubeadm_defaults_are_byte_identical_but_for_uid_and_ip_quoting() {
    // serde-saphyr quotes IPv4 literals (a YAML 1.1 float lookalike); both read back as the
    // same string, which the test above checks.
    let r = render_ok(&spec(), &kubeadm_node());
    for p in &r.pods {
        let ours: String = p
            .yaml
            .lines()
            .filter(|l| !l.starts_with("  uid: "))
            .map(|l| {
                l.replace("\"10.0.0.11\"", "10.0.0.11")
                    .replace("\"127.0.0.1\"", "127.0.0.1")
                    + "\n"
            })
            .collect();
        let path = format!(
            "{}/../tests/fixtures/kubeadm-v1.36.2/{}",
            env!("CARGO_MANIFEST_DIR"),
            p.component.manifest_file()
        );
        assert_eq!(
            ours,
            std::fs::read_to_string(path).unwrap(),
            "{}",
            p.component
        );
    }
}

/// The values kubeadm v1.36.2 uses, checked one by one. Sources (kubernetes/kubernetes at
/// v1.36.2): cmd/kubeadm/app/phases/controlplane/manifests.go (flags),
/// cmd/kubeadm/app/util/staticpod/utils.go (probes, labels, priority, seccomp),
/// cmd/kubeadm/app/constants/constants.go (ports, paths, CPU requests),
/// cmd/kubeadm/app/phases/controlplane/volumes.go (volumes).
#[test]
fn kubeadm_defaults_value_by_value() {
    let r = render_ok(&spec(), &kubeadm_node());

    // manifests.go getAPIServerCommand
    let api = pod(&r, Component::ApiServer);
    let expected_api = [
        ("advertise-address", "10.0.0.11"),
        ("allow-privileged", "true"),
        ("authorization-mode", "Node,RBAC"),
        ("client-ca-file", "/etc/kubernetes/pki/ca.crt"),
        ("enable-admission-plugins", "NodeRestriction"),
        ("enable-bootstrap-token-auth", "true"),
        ("etcd-cafile", "/etc/kubernetes/pki/etcd/ca.crt"),
        (
            "etcd-certfile",
            "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        ),
        (
            "etcd-keyfile",
            "/etc/kubernetes/pki/apiserver-etcd-client.key",
        ),
        ("etcd-servers", "https://127.0.0.1:2379"),
        (
            "kubelet-client-certificate",
            "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        ),
        (
            "kubelet-client-key",
            "/etc/kubernetes/pki/apiserver-kubelet-client.key",
        ),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname",
        ),
        (
            "proxy-client-cert-file",
            "/etc/kubernetes/pki/front-proxy-client.crt",
        ),
        (
            "proxy-client-key-file",
            "/etc/kubernetes/pki/front-proxy-client.key",
        ),
        ("requestheader-allowed-names", "front-proxy-client"),
        (
            "requestheader-client-ca-file",
            "/etc/kubernetes/pki/front-proxy-ca.crt",
        ),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        ("requestheader-group-headers", "X-Remote-Group"),
        ("requestheader-username-headers", "X-Remote-User"),
        ("secure-port", "6443"),
        (
            "service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ),
        ("service-account-key-file", "/etc/kubernetes/pki/sa.pub"),
        (
            "service-account-signing-key-file",
            "/etc/kubernetes/pki/sa.key",
        ),
        ("service-cluster-ip-range", "10.96.0.0/12"),
        ("tls-cert-file", "/etc/kubernetes/pki/apiserver.crt"),
        ("tls-private-key-file", "/etc/kubernetes/pki/apiserver.key"),
    ];
    let mut want = vec!["kube-apiserver".to_string()];
    want.extend(expected_api.iter().map(|(n, v)| format!("--{n}={v}")));
    assert_eq!(command(api), want);

    // manifests.go getControllerManagerCommand
    let kcm = pod(&r, Component::ControllerManager);
    let expected_kcm = [
        (
            "authentication-kubeconfig",
            "/etc/kubernetes/controller-manager.conf",
        ),
        (
            "authorization-kubeconfig",
            "/etc/kubernetes/controller-manager.conf",
        ),
        ("bind-address", "127.0.0.1"),
        ("client-ca-file", "/etc/kubernetes/pki/ca.crt"),
        ("cluster-name", "kubernetes"),
        ("cluster-signing-cert-file", "/etc/kubernetes/pki/ca.crt"),
        ("cluster-signing-key-file", "/etc/kubernetes/pki/ca.key"),
        ("controllers", "*,bootstrapsigner,tokencleaner"),
        ("kubeconfig", "/etc/kubernetes/controller-manager.conf"),
        ("leader-elect", "true"),
        (
            "requestheader-client-ca-file",
            "/etc/kubernetes/pki/front-proxy-ca.crt",
        ),
        ("root-ca-file", "/etc/kubernetes/pki/ca.crt"),
        (
            "service-account-private-key-file",
            "/etc/kubernetes/pki/sa.key",
        ),
        ("use-service-account-credentials", "true"),
    ];
    let mut want = vec!["kube-controller-manager".to_string()];
    want.extend(expected_kcm.iter().map(|(n, v)| format!("--{n}={v}")));
    assert_eq!(command(kcm), want);

    // manifests.go getSchedulerCommand
    let sched = pod(&r, Component::Scheduler);
    assert_eq!(
        command(sched),
        vec![
            "kube-scheduler",
            "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
            "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf",
            "--bind-address=127.0.0.1",
            "--kubeconfig=/etc/kubernetes/scheduler.conf",
            "--leader-elect=true",
        ]
    );

    // utils.go LivenessProbe / ReadinessProbe / StartupProbe; constants.go ports.
    type P = (
        &'static str,
        Option<&'static str>,
        i32,
        Option<i32>,
        i32,
        i32,
        i32,
    );
    let check = |probe: &Option<Probe>, (path, host, port, delay, period, timeout, failure): P| {
        let probe = probe.as_ref().expect("probe set");
        let get = probe.http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.host.as_deref(), host);
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("probe-port".into())
        );
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        assert_eq!(probe.initial_delay_seconds, delay);
        assert_eq!(probe.period_seconds, Some(period));
        assert_eq!(probe.timeout_seconds, Some(timeout));
        assert_eq!(probe.failure_threshold, Some(failure));
        let _ = port;
    };
    let c = container(api);
    check(
        &c.liveness_probe,
        ("/livez", Some("10.0.0.11"), 6443, Some(10), 10, 15, 8),
    );
    check(
        &c.readiness_probe,
        ("/readyz", Some("10.0.0.11"), 6443, None, 1, 15, 3),
    );
    check(
        &c.startup_probe,
        ("/livez", Some("10.0.0.11"), 6443, Some(10), 10, 15, 24),
    );
    let c = container(kcm);
    check(
        &c.liveness_probe,
        ("/healthz", Some("127.0.0.1"), 10257, Some(10), 10, 15, 8),
    );
    assert!(
        c.readiness_probe.is_none(),
        "kube-controller-manager has no readiness probe"
    );
    check(
        &c.startup_probe,
        ("/healthz", Some("127.0.0.1"), 10257, Some(10), 10, 15, 24),
    );
    let c = container(sched);
    check(
        &c.liveness_probe,
        ("/livez", Some("127.0.0.1"), 10259, Some(10), 10, 15, 8),
    );
    check(
        &c.readiness_probe,
        ("/readyz", Some("127.0.0.1"), 10259, None, 1, 15, 3),
    );
    check(
        &c.startup_probe,
        ("/livez", Some("127.0.0.1"), 10259, Some(10), 10, 15, 24),
    );

    for (p, port, cpu) in [
        (api, 6443, "250m"),
        (kcm, 10257, "200m"),
        (sched, 10259, "100m"),
    ] {
        let c = container(p);
        let ports = c.ports.as_ref().unwrap();
        assert_eq!(ports[0].container_port, port);
        assert_eq!(ports[0].name.as_deref(), Some("probe-port"));
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
            cpu
        );
        assert_eq!(
            c.image.as_deref(),
            Some(format!("registry.k8s.io/{}:v1.36.2", p.component.name()).as_str())
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let spec = p.pod.spec.as_ref().unwrap();
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(spec.priority, Some(2_000_001_000));
        assert_eq!(
            spec.security_context
                .as_ref()
                .unwrap()
                .seccomp_profile
                .as_ref()
                .unwrap()
                .type_,
            "RuntimeDefault"
        );
        let labels = p.pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["component"], p.component.name());
        assert_eq!(labels["tier"], "control-plane");
        assert_eq!(p.pod.metadata.namespace.as_deref(), Some("kube-system"));
    }

    // volumes.go: certificates dir and /etc/ssl/certs read-only, the CA directories the host
    // has, kubeconfigs as FileOrCreate; everything sorted by name.
    let dir = "DirectoryOrCreate".to_string();
    assert_eq!(
        volumes(api),
        vec![
            ("ca-certs".into(), "/etc/ssl/certs".into(), dir.clone()),
            (
                "etc-ca-certificates".into(),
                "/etc/ca-certificates".into(),
                dir.clone()
            ),
            (
                "k8s-certs".into(),
                "/etc/kubernetes/pki".into(),
                dir.clone()
            ),
            (
                "usr-local-share-ca-certificates".into(),
                "/usr/local/share/ca-certificates".into(),
                dir.clone()
            ),
            (
                "usr-share-ca-certificates".into(),
                "/usr/share/ca-certificates".into(),
                dir.clone()
            ),
        ]
    );
    assert!(mounts(api).iter().all(|(_, _, ro)| *ro));
    assert!(volumes(kcm).contains(&(
        "kubeconfig".into(),
        "/etc/kubernetes/controller-manager.conf".into(),
        "FileOrCreate".into()
    )));
    assert_eq!(
        volumes(sched),
        vec![(
            "kubeconfig".into(),
            "/etc/kubernetes/scheduler.conf".into(),
            "FileOrCreate".into()
        )]
    );
    // The apiserver's kubeadm annotation.
    assert_eq!(
        api.pod.metadata.annotations.as_ref().unwrap()["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"],
        "10.0.0.11:6443"
    );
}

#[test]
fn host_ca_directories_follow_node_facts() {
    let mut n = node("cp-1");
    let r = render_ok(&spec(), &n);
    let names: Vec<String> = volumes(pod(&r, Component::ApiServer))
        .into_iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(names, vec!["ca-certs", "k8s-certs"]);
    n.host_ca_directories = vec![
        "/etc/pki/ca-trust".into(),
        "/etc/pki/tls/certs".into(),
        "/not/known".into(),
    ];
    let r = render_ok(&spec(), &n);
    let names: Vec<String> = volumes(pod(&r, Component::ControllerManager))
        .into_iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(
        names,
        vec![
            "ca-certs",
            "etc-pki-ca-trust",
            "etc-pki-tls-certs",
            "k8s-certs",
            "kubeconfig"
        ]
    );
}

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

#[test]
fn audit_and_encryption_make_side_files_flags_and_mounts() {
    let mut s = spec();
    s.api_server = Some(ApiServer {
        audit: Some(Audit {
            policy: serde_json::json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}),
            log_path: Some("/var/log/k8s/audit.log".into()),
            max_age: Some(30),
            max_backup: Some(10),
            max_size: Some(100),
        }),
        encryption: Some(Encryption {
            secret_ref: Some(SecretKeyRef {
                name: "enc".into(),
                namespace: None,
                key: None,
            }),
            managed: None,
        }),
        ..Default::default()
    });
    let mut n = node("cp-1");
    n.state_dir = Some("/var/lib/kubeplane".into());
    let r = render(&RenderInput {
        spec: &s,
        node: &n,
        encryption_config_sha256: Some("d1"),
    })
    .unwrap();
    let api = pod(&r, Component::ApiServer);
    let dir = "/var/lib/kubeplane/files/kube-apiserver";
    assert_eq!(
        flag_values(api, "audit-policy-file"),
        vec![format!("{dir}/audit-policy.yaml")]
    );
    assert_eq!(
        flag_values(api, "audit-log-path"),
        vec!["/var/log/k8s/audit.log"]
    );
    assert_eq!(flag_values(api, "audit-log-maxage"), vec!["30"]);
    assert_eq!(flag_values(api, "audit-log-maxbackup"), vec!["10"]);
    assert_eq!(flag_values(api, "audit-log-maxsize"), vec!["100"]);
    assert_eq!(
        flag_values(api, "encryption-provider-config"),
        vec![format!("{dir}/encryption-config.yaml")]
    );
    assert!(mounts(api).contains(&("kubeplane-files".into(), dir.into(), true)));
    assert!(mounts(api).contains(&("audit-log".into(), "/var/log/k8s".into(), false)));
    assert_eq!(r.files.len(), 2);
    let policy = &r.files[0];
    assert_eq!(policy.path, format!("{dir}/audit-policy.yaml"));
    let FileSource::Inline(content) = &policy.source else {
        panic!("inline policy")
    };
    assert!(content.contains("kind: Policy"));
    assert_eq!(policy.sha256, sha256_hex(content.as_bytes()));
    let enc = &r.files[1];
    assert_eq!(
        enc.source,
        FileSource::Secret(SecretKeyRef {
            name: "enc".into(),
            namespace: Some("kube-system".into()),
            key: Some("config.yaml".into())
        })
    );
    assert_eq!(enc.sha256, "d1");
    let ann = api.pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["kubeplane.io/encryption-config-sha256"], "d1");
    assert_eq!(ann["kubeplane.io/audit-policy-sha256"], policy.sha256);
    assert!(r.warnings.is_empty());
    // A new Secret content is a new config hash: the component restarts.
    let r2 = render(&RenderInput {
        spec: &s,
        node: &n,
        encryption_config_sha256: Some("d2"),
    })
    .unwrap();
    assert_ne!(pod(&r2, Component::ApiServer).uid, api.uid);
    // Unknown Secret content: provisional hash, with a warning.
    let r3 = render(&RenderInput {
        spec: &s,
        node: &n,
        encryption_config_sha256: None,
    })
    .unwrap();
    assert_eq!(r3.warnings.len(), 1);
    assert!(r3.warnings[0].contains("kube-system/enc"));
}

#[test]
fn audit_log_to_stdout_mounts_no_log_directory() {
    let mut s = spec();
    s.api_server = Some(ApiServer {
        audit: Some(Audit {
            policy: serde_json::json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}),
            log_path: Some("-".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let api = pod(&r, Component::ApiServer);
    assert_eq!(flag_values(api, "audit-log-path"), vec!["-"]);
    assert!(!mounts(api).iter().any(|m| m.0 == "audit-log"));
}

#[test]
fn external_etcd_flags_and_cert_directories() {
    let mut s = spec();
    s.etcd = Some(Etcd {
        external: Some(ExternalEtcd {
            endpoints: vec![
                "https://10.0.0.21:2379".into(),
                "https://10.0.0.22:2379".into(),
                "https://10.0.0.23:2379".into(),
            ],
            ca_file: Some("/etc/etcd/ca.pem".into()),
            cert_file: Some("/etc/etcd/client/apiserver.pem".into()),
            key_file: Some("/etc/kubernetes/pki/etcd-client.key".into()),
        }),
    });
    let r = render_ok(&s, &node("cp-1"));
    let api = pod(&r, Component::ApiServer);
    assert_eq!(
        flag_values(api, "etcd-servers"),
        vec!["https://10.0.0.21:2379,https://10.0.0.22:2379,https://10.0.0.23:2379"]
    );
    assert_eq!(flag_values(api, "etcd-cafile"), vec!["/etc/etcd/ca.pem"]);
    assert_eq!(
        flag_values(api, "etcd-certfile"),
        vec!["/etc/etcd/client/apiserver.pem"]
    );
    assert_eq!(
        flag_values(api, "etcd-keyfile"),
        vec!["/etc/kubernetes/pki/etcd-client.key"]
    );
    // /etc/etcd covers /etc/etcd/client; the key lives in the certificates dir already.
    let etcd: Vec<_> = volumes(api)
        .into_iter()
        .filter(|v| v.0.starts_with("etcd-certs"))
        .collect();
    assert_eq!(
        etcd,
        vec![(
            "etcd-certs-0".into(),
            "/etc/etcd".into(),
            "DirectoryOrCreate".into()
        )]
    );
    assert!(
        r.certificates
            .iter()
            .any(|c| c.flag == "etcd-certfile" && c.path == "/etc/etcd/client/apiserver.pem")
    );
}

#[test]
fn pod_subnet_turns_on_node_cidr_allocation() {
    let mut s = spec();
    s.networking = Some(Networking {
        pod_subnet: Some("10.244.0.0/16".into()),
        service_subnet: Some("10.32.0.0/24".into()),
        service_node_port_range: Some("30000-31000".into()),
        ..Default::default()
    });
    s.controller_manager = Some(ControllerManager {
        extra_args: vec![
            Arg::new("node-cidr-mask-size", "25"),
            Arg::new("cluster-signing-duration", "8760h"),
            Arg::new("node-monitor-grace-period", "40s"),
            Arg::new("leader-elect-lease-duration", "30s"),
        ],
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let kcm = pod(&r, Component::ControllerManager);
    assert_eq!(flag_values(kcm, "allocate-node-cidrs"), vec!["true"]);
    assert_eq!(flag_values(kcm, "cluster-cidr"), vec!["10.244.0.0/16"]);
    assert_eq!(
        flag_values(kcm, "service-cluster-ip-range"),
        vec!["10.32.0.0/24"]
    );
    assert_eq!(flag_values(kcm, "node-cidr-mask-size"), vec!["25"]);
    assert_eq!(flag_values(kcm, "cluster-signing-duration"), vec!["8760h"]);
    assert_eq!(flag_values(kcm, "leader-elect-lease-duration"), vec!["30s"]);
    let api = pod(&r, Component::ApiServer);
    assert_eq!(
        flag_values(api, "service-cluster-ip-range"),
        vec!["10.32.0.0/24"]
    );
    assert_eq!(
        flag_values(api, "service-node-port-range"),
        vec!["30000-31000"]
    );
}

#[test]
fn probes_follow_bind_address_port_and_overrides() {
    let mut s = spec();
    s.scheduler = Some(Scheduler {
        extra_args: vec![
            Arg::new("bind-address", "0.0.0.0"),
            Arg::new("secure-port", "11259"),
        ],
        probes: Some(Probes {
            liveness: Some(ProbeTiming {
                failure_threshold: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    s.controller_manager = Some(ControllerManager {
        extra_args: vec![Arg::new("bind-address", "10.0.0.11")],
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let c = container(pod(&r, Component::Scheduler));
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(live.http_get.as_ref().unwrap().host, None);
    assert_eq!(live.failure_threshold, Some(3));
    assert_eq!(live.period_seconds, Some(10));
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 11259);
    let c = container(pod(&r, Component::ControllerManager));
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .host
            .as_deref(),
        Some("10.0.0.11")
    );
}

#[test]
fn image_repository_pull_policy_and_resources() {
    let mut s = spec();
    s.image_repository = Some("registry.example.com:5000/k8s/".into());
    s.image_pull_policy = Some(PullPolicy::Never);
    s.controller_manager = Some(ControllerManager {
        resources: Some(Resources {
            requests: [("cpu".to_string(), "1".to_string())].into(),
            limits: [("memory".to_string(), "1Gi".to_string())].into(),
        }),
        ..Default::default()
    });
    let r = render_ok(&s, &node("cp-1"));
    let c = container(pod(&r, Component::ControllerManager));
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com:5000/k8s/kube-controller-manager:v1.36.2")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "1");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "1Gi");
}

#[test]
fn errors_for_bad_version_empty_node_and_nothing_managed() {
    let mut s = spec();
    s.kubernetes_version = "v1.30.0".into();
    let err = render(&RenderInput {
        spec: &s,
        node: &node("cp-1"),
        encryption_config_sha256: None,
    })
    .unwrap_err();
    assert!(matches!(err, RenderError::Version(_)));
    assert!(err.to_string().starts_with("spec.kubernetesVersion"));
    let err = render(&RenderInput {
        spec: &spec(),
        node: &node(""),
        encryption_config_sha256: None,
    })
    .unwrap_err();
    assert_eq!(err, RenderError::NoNodeName);
    let mut s = spec();
    s.api_server = Some(ApiServer {
        managed: Some(false),
        ..Default::default()
    });
    s.controller_manager = Some(ControllerManager {
        managed: Some(false),
        ..Default::default()
    });
    s.scheduler = Some(Scheduler {
        managed: Some(false),
        ..Default::default()
    });
    let err = render(&RenderInput {
        spec: &s,
        node: &node("cp-1"),
        encryption_config_sha256: None,
    })
    .unwrap_err();
    assert_eq!(err, RenderError::NothingManaged);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9./:=,-]{0,40}",
            any::<String>(),
            Just(String::new()),
            Just("0.0.0.0".to_string()),
            Just("::".to_string()),
        ]
    }

    fn arb_args() -> impl Strategy<Value = Vec<Arg>> {
        prop::collection::vec(
            (
                prop_oneof![
                    Just("feature-gates".to_string()),
                    Just("enable-admission-plugins".to_string()),
                    Just("disable-admission-plugins".to_string()),
                    Just("runtime-config".to_string()),
                    Just("bind-address".to_string()),
                    Just("secure-port".to_string()),
                    Just("advertise-address".to_string()),
                    Just("authorization-config".to_string()),
                    Just("flex-volume-plugin-dir".to_string()),
                    "[a-z-]{1,20}",
                ],
                arb_string(),
            )
                .prop_map(|(n, v)| Arg::new(n, v)),
            0..8,
        )
    }

    fn arb_volumes() -> impl Strategy<Value = Vec<HostPathVolume>> {
        prop::collection::vec(
            (
                "[a-z-]{1,12}",
                arb_string(),
                arb_string(),
                any::<Option<bool>>(),
            )
                .prop_map(|(name, host_path, mount_path, read_only)| HostPathVolume {
                    name,
                    host_path,
                    mount_path,
                    read_only,
                    path_type: None,
                }),
            0..4,
        )
    }

    prop_compose! {
        fn arb_spec()(
            version in prop_oneof![Just("v1.36.2".to_string()), Just("1.33.0".to_string()), arb_string()],
            repo in proptest::option::of(arb_string()),
            certs in proptest::option::of(arb_string()),
            svc in proptest::option::of(arb_string()),
            pods in proptest::option::of(arb_string()),
            api_args in arb_args(),
            kcm_args in arb_args(),
            sched_args in arb_args(),
            vols in arb_volumes(),
            endpoints in proptest::option::of(prop::collection::vec(arb_string(), 0..4)),
            managed in any::<[Option<bool>; 3]>(),
            audit in any::<bool>(),
            addr in proptest::option::of(arb_string()),
        ) -> ControlPlaneConfigSpec {
            ControlPlaneConfigSpec {
                kubernetes_version: version,
                image_repository: repo,
                certificates_dir: certs,
                networking: Some(Networking { service_subnet: svc, pod_subnet: pods, ..Default::default() }),
                etcd: endpoints.map(|e| Etcd { external: Some(ExternalEtcd {
                    endpoints: e.into_iter().map(BoundedString).collect(),
                    ca_file: Some("/etc/etcd/ca.pem".into()),
                    ..Default::default()
                }) }),
                api_server: Some(ApiServer {
                    managed: managed[0],
                    extra_args: api_args,
                    extra_volumes: vols.clone(),
                    audit: audit.then(|| Audit { policy: serde_json::json!({"kind": "Policy"}), ..Default::default() }),
                    ..Default::default()
                }),
                controller_manager: Some(ControllerManager { managed: managed[1], extra_args: kcm_args, extra_volumes: vols, ..Default::default() }),
                scheduler: Some(Scheduler { managed: managed[2], extra_args: sched_args, ..Default::default() }),
                nodes: addr.map(|a| vec![NodeOverride { name: "cp-1".into(), advertise_address: Some(a) }]).unwrap_or_default(),
                ..Default::default()
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn render_is_deterministic_and_never_panics(spec in arb_spec(), node_name in "[a-zA-Z0-9-]{0,12}") {
            let facts = NodeFacts { node_name: node_name.clone(), advertise_address: Some("10.0.0.1".into()), ..Default::default() };
            let input = RenderInput { spec: &spec, node: &facts, encryption_config_sha256: None };
            let a = render(&input);
            let b = render(&input);
            prop_assert_eq!(&a, &b);
            if let Ok(r) = a {
                for p in &r.pods {
                    // Every rendered manifest parses back to the same Pod.
                    let back: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(&p.yaml).unwrap();
                    prop_assert_eq!(back.metadata.uid.as_deref(), Some(p.uid.as_str()));
                    prop_assert_eq!(&p.uid, &pod_uid(&p.pod, &node_name));
                }
            }
        }

        #[test]
        fn validation_never_panics_and_valid_specs_render(spec in arb_spec()) {
            let report = crate::validation::validate(&spec);
            if report.is_ok() {
                let facts = NodeFacts { node_name: "cp-1".into(), advertise_address: Some("10.0.0.1".into()), ..Default::default() };
                let r = render(&RenderInput { spec: &spec, node: &facts, encryption_config_sha256: None });
                prop_assert!(r.is_ok(), "valid spec failed to render: {:?}", r);
            }
        }
    }
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
