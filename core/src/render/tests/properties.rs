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
