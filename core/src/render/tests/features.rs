//! Audit, encryption, external etcd, pod subnet, probes, images and errors.

use super::*;

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
