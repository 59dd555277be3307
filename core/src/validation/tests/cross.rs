//! Cross-component checks.

use super::*;

// ---------------------------------------------------------------------------------------
// Cross-component checks

fn with_pod_subnet(mut s: ControlPlaneConfigSpec, pods: &str) -> ControlPlaneConfigSpec {
    s.networking.get_or_insert_default().pod_subnet = Some(pods.into());
    s
}

#[test]
fn service_ranges_must_agree_between_apiserver_and_controller_manager() {
    let s = with_pod_subnet(
        with_args(
            Component::ControllerManager,
            &[("service-cluster-ip-range", "10.100.0.0/16")],
        ),
        "10.244.0.0/16",
    );
    let r = validate(&s);
    let p = at(&r, "spec.controllerManager.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].message.contains("10.96.0.0/12") && p[0].message.contains("collide"));

    // The same range given to both agrees.
    let mut same = s.clone();
    set_args(
        &mut same,
        Component::ApiServer,
        &[("service-cluster-ip-range", "10.100.0.0/16")],
    );
    assert_clean(&same);
    // Not managed: nothing to compare.
    let mut unmanaged = s;
    unmanaged.api_server.get_or_insert_default().managed = Some(false);
    assert!(validate(&unmanaged).is_ok());
}

#[test]
fn pod_and_service_ranges_must_not_overlap() {
    let s = with_pod_subnet(spec(), "10.96.0.0/16");
    let r = validate(&s);
    let p = at(&r, "spec.networking.podSubnet");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(
        p[0].message
            .contains("overlaps the Service range 10.96.0.0/12")
    );

    // The effective value counts: a cluster-cidr in extraArgs that overlaps.
    let mut s = with_args(
        Component::ControllerManager,
        &[
            ("cluster-cidr", "10.100.0.0/16"),
            ("allocate-node-cidrs", "true"),
        ],
    );
    let r = validate(&s);
    let p = at(&r, "spec.controllerManager.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    set_args(
        &mut s,
        Component::ControllerManager,
        &[
            ("cluster-cidr", "10.244.0.0/16"),
            ("allocate-node-cidrs", "true"),
        ],
    );
    assert_clean(&s);

    // Still caught without a supported version (no render).
    let mut old = with_pod_subnet(spec(), "10.96.0.0/16");
    old.kubernetes_version = "v1.20.0".into();
    assert!(!at(&validate(&old), "spec.networking.podSubnet").is_empty());
}

#[test]
fn the_node_port_range_must_not_cover_component_ports() {
    let mut s = spec();
    s.networking.get_or_insert_default().service_node_port_range = Some("2000-12000".into());
    let r = validate(&s);
    let p = at(&r, "spec.networking.serviceNodePortRange");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    for port in ["6443", "2379", "10250", "10257", "10259"] {
        assert!(p[0].message.contains(port), "{port}: {}", p[0]);
    }

    // Moving the API server into the default range is caught on the port.
    let mut s = spec();
    s.api_server.get_or_insert_default().secure_port = Some(30443);
    let r = validate(&s);
    let p = at(&r, "spec.apiServer.securePort");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].message.contains("30443"));

    // A range given by flag, clear of everything.
    assert_clean(&with_args(
        Component::ApiServer,
        &[("service-node-port-range", "30000-31000")],
    ));
    // ...and one that is not.
    let r = validate(&with_args(
        Component::ApiServer,
        &[("service-node-port-range", "10000+500")],
    ));
    let p = at(&r, "spec.apiServer.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].message.contains("10250"));
}

#[test]
fn the_controller_manager_signs_with_the_apiserver_signing_key() {
    let mut s = with_args(
        Component::ControllerManager,
        &[(
            "service-account-private-key-file",
            "/etc/kubernetes/pki/other.key",
        )],
    );
    set_allow(
        &mut s,
        Component::ControllerManager,
        &["service-account-private-key-file"],
    );
    let r = validate(&s);
    let p = at(&r, "spec.controllerManager.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].is_error());
    assert!(p[0].message.contains("/etc/kubernetes/pki/sa.key"));

    // Both moved to a new key, the verification list still naming only sa.pub: a warning.
    set_args(
        &mut s,
        Component::ControllerManager,
        &[(
            "service-account-private-key-file",
            "/etc/kubernetes/pki/new.key",
        )],
    );
    set_args(
        &mut s,
        Component::ApiServer,
        &[(
            "service-account-signing-key-file",
            "/etc/kubernetes/pki/new.key",
        )],
    );
    set_allow(
        &mut s,
        Component::ApiServer,
        &["service-account-signing-key-file"],
    );
    let r = validate(&s);
    assert!(r.is_ok(), "{}", lines(&r));
    let w = r.warning_messages();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("/etc/kubernetes/pki/new.pub"), "{}", w[0]);

    // With the new public key listed (key rotation: old and new), all is well.
    set_args(
        &mut s,
        Component::ApiServer,
        &[
            (
                "service-account-signing-key-file",
                "/etc/kubernetes/pki/new.key",
            ),
            (
                "service-account-key-file",
                "/etc/kubernetes/pki/sa.pub,/etc/kubernetes/pki/new.pub",
            ),
        ],
    );
    set_allow(
        &mut s,
        Component::ApiServer,
        &[
            "service-account-signing-key-file",
            "service-account-key-file",
        ],
    );
    assert_clean(&s);
}

#[test]
fn first_class_fields_and_extra_args_do_not_both_set_a_flag() {
    let mut s = with_args(Component::ApiServer, &[("secure-port", "7443")]);
    assert_clean(&s);
    s.api_server.as_mut().unwrap().secure_port = Some(8443);
    let r = validate(&s);
    let p = at(&r, "spec.apiServer.extraArgs[0].name");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(
        p[0].fix
            .as_deref()
            .unwrap()
            .contains("spec.apiServer.securePort")
    );

    let mut s = with_args(
        Component::ApiServer,
        &[("service-cluster-ip-range", "10.100.0.0/16")],
    );
    assert_clean(&s);
    s.networking.get_or_insert_default().service_subnet = Some("10.100.0.0/16".into());
    let r = validate(&s);
    assert!(
        at(&r, "spec.apiServer.extraArgs[0].name")[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("spec.networking.serviceSubnet")
    );

    let mut s = full_spec(36);
    set_args(
        &mut s,
        Component::ApiServer,
        &[
            ("audit-policy-file", "/etc/kubernetes/pki/audit.yaml"),
            ("encryption-provider-config", "/etc/kubernetes/pki/enc.yaml"),
        ],
    );
    let r = validate(&s);
    let text = lines(&r);
    assert!(
        text.contains("also set by spec.apiServer.audit.policy"),
        "{text}"
    );
    assert!(
        text.contains("also set by spec.apiServer.encryption"),
        "{text}"
    );
    assert_eq!(r.errors().count(), 2, "{text}");
}

#[test]
fn advertise_address_in_extra_args_warns_or_conflicts() {
    let mut s = with_args(Component::ApiServer, &[("advertise-address", "10.0.0.5")]);
    let r = validate(&s);
    assert!(r.is_ok());
    assert_eq!(r.warnings().count(), 1, "{}", lines(&r));
    s.nodes = vec![NodeOverride {
        name: "cp-1".into(),
        advertise_address: Some("10.0.0.11".into()),
    }];
    let r = validate(&s);
    assert_eq!(r.errors().count(), 1, "{}", lines(&r));
}

#[test]
fn extra_args_of_an_unmanaged_component_warn() {
    let mut s = with_args(Component::Scheduler, &[("insecure-port", "1")]);
    s.scheduler.as_mut().unwrap().managed = Some(false);
    let r = validate(&s);
    assert!(r.is_ok(), "{}", lines(&r));
    assert_eq!(r.warnings().count(), 1);
}
