//! kubeadm's defaults, value by value and byte for byte.

use super::*;

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
