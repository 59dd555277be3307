//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side with kube's CEL
//! engine: what the API server refuses at admission.

use kube::core::cel::validate_cel;
use kubeplane::api::*;

fn config(spec: ControlPlaneConfigSpec) -> ControlPlaneConfig {
    ControlPlaneConfig::new("test", spec)
}

fn base() -> ControlPlaneConfigSpec {
    ControlPlaneConfigSpec {
        kubernetes_version: "v1.36.2".into(),
        ..Default::default()
    }
}

fn refused(spec: ControlPlaneConfigSpec) -> String {
    match validate_cel(&config(spec)) {
        Ok(()) => panic!("CEL accepted a spec it should refuse"),
        Err(e) => format!("{e:?}"),
    }
}

fn accepted(spec: ControlPlaneConfigSpec) {
    if let Err(e) = validate_cel(&config(spec)) {
        panic!("CEL refused a valid spec: {e:?}");
    }
}

#[test]
fn examples_pass_cel() {
    for file in [
        "examples/controlplane.yaml",
        "examples/kubeadm-defaults.yaml",
    ] {
        let text =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let cfg = parse_config(&text).unwrap();
        validate_cel(&cfg).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    }
}

#[test]
fn cidr_syntax() {
    let mut s = base();
    s.networking = Some(Networking {
        service_subnet: Some("10.96.0.0/12,fd00::/108".into()),
        pod_subnet: Some("10.244.0.0/16".into()),
        ..Default::default()
    });
    accepted(s.clone());
    s.networking.as_mut().unwrap().service_subnet = Some("10.96.0.0/33".into());
    assert!(refused(s.clone()).contains("serviceSubnet"));
    s.networking.as_mut().unwrap().service_subnet = None;
    s.networking.as_mut().unwrap().pod_subnet = Some("10.244.0.0".into());
    assert!(refused(s).contains("podSubnet"));
}

#[test]
fn node_port_range() {
    let mut s = base();
    s.networking = Some(Networking {
        service_node_port_range: Some("30000-32767".into()),
        ..Default::default()
    });
    accepted(s.clone());
    for bad in ["32767-30000", "0-100", "30000-70000", "30000", "a-b"] {
        s.networking.as_mut().unwrap().service_node_port_range = Some(bad.into());
        assert!(refused(s.clone()).contains("serviceNodePortRange"), "{bad}");
    }
}

#[test]
fn flag_names_without_leading_dashes() {
    let mut s = base();
    s.api_server = Some(ApiServer {
        extra_args: vec![Arg::new("audit-log-maxage", "30")],
        allow_protected_overrides: vec![FlagName("tls-cert-file".into())],
        ..Default::default()
    });
    accepted(s.clone());
    s.api_server.as_mut().unwrap().extra_args = vec![Arg::new("--audit-log-maxage", "30")];
    assert!(refused(s.clone()).contains("without leading dashes"));
    s.api_server.as_mut().unwrap().extra_args = vec![Arg::new("audit-log-maxage=30", "")];
    assert!(refused(s.clone()).contains("value"));
    s.api_server.as_mut().unwrap().extra_args = vec![];
    s.api_server.as_mut().unwrap().allow_protected_overrides =
        vec![FlagName("--tls-cert-file".into())];
    assert!(refused(s).contains("without leading dashes"));
}

#[test]
fn unique_extra_volume_and_env_names() {
    let vol = |name: &str| HostPathVolume {
        name: name.into(),
        host_path: "/srv".into(),
        mount_path: "/srv".into(),
        ..Default::default()
    };
    let mut s = base();
    s.scheduler = Some(Scheduler {
        extra_volumes: vec![vol("a"), vol("b")],
        ..Default::default()
    });
    accepted(s.clone());
    s.scheduler.as_mut().unwrap().extra_volumes = vec![vol("a"), vol("a")];
    assert!(refused(s.clone()).contains("extraVolumes must have unique names"));
    s.scheduler.as_mut().unwrap().extra_volumes = vec![HostPathVolume {
        host_path: "srv".into(),
        ..vol("a")
    }];
    assert!(refused(s.clone()).contains("hostPath must be an absolute path"));
    s.scheduler.as_mut().unwrap().extra_volumes = vec![];
    s.scheduler.as_mut().unwrap().extra_env = vec![
        EnvVar {
            name: "A".into(),
            value: "1".into(),
        },
        EnvVar {
            name: "A".into(),
            value: "2".into(),
        },
    ];
    assert!(refused(s).contains("extraEnv must have unique names"));
}

#[test]
fn etcd_endpoints_and_paths() {
    let mut s = base();
    s.etcd = Some(Etcd {
        external: Some(ExternalEtcd {
            endpoints: vec!["https://10.0.0.21:2379".into()],
            ca_file: Some("/etc/etcd/ca.pem".into()),
            ..Default::default()
        }),
    });
    accepted(s.clone());
    s.etcd
        .as_mut()
        .unwrap()
        .external
        .as_mut()
        .unwrap()
        .endpoints = vec!["10.0.0.21:2379".into()];
    assert!(refused(s.clone()).contains("etcd endpoints"));
    s.etcd
        .as_mut()
        .unwrap()
        .external
        .as_mut()
        .unwrap()
        .endpoints = vec!["https://10.0.0.21:2379".into()];
    s.etcd.as_mut().unwrap().external.as_mut().unwrap().ca_file = Some("etc/ca.pem".into());
    assert!(refused(s.clone()).contains("caFile must be an absolute path"));
    let mut s = base();
    s.certificates_dir = Some("pki".into());
    assert!(refused(s).contains("certificatesDir"));
}

#[test]
fn unique_node_names() {
    let mut s = base();
    s.nodes = vec![
        NodeOverride {
            name: "cp-1".into(),
            advertise_address: None,
        },
        NodeOverride {
            name: "cp-1".into(),
            advertise_address: None,
        },
    ];
    assert!(refused(s).contains("nodes must have unique names"));
}
