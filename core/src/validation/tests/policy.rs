//! Values, protected flags, merge policy, paths and mounts.

use super::*;

// ---------------------------------------------------------------------------------------
// Values

#[test]
fn values_are_checked_by_type_naming_flag_and_value() {
    let cases: &[(Component, &str, &str, &str)] = &[
        (Component::ApiServer, "profiling", "yes", "true"),
        (Component::ApiServer, "v", "high", "2"),
        (Component::ControllerManager, "kube-api-qps", "fast", "50.5"),
        (Component::ApiServer, "event-ttl", "1day", "1h30m"),
        (Component::ApiServer, "bind-address", "localhost", "0.0.0.0"),
        (
            Component::ControllerManager,
            "cluster-cidr",
            "10.244.0.1/16",
            "10.244.0.0/16",
        ),
        (
            Component::ControllerManager,
            "secure-port",
            "70000",
            "10257",
        ),
        (
            Component::ApiServer,
            "service-node-port-range",
            "32767-30000",
            "30000-32767",
        ),
        (
            Component::ApiServer,
            "authorization-mode",
            "Node,RBAC,Foo",
            "Node,RBAC,Webhook",
        ),
        (
            Component::ApiServer,
            "feature-gates",
            "SomeGate",
            "SomeGate=true",
        ),
        (
            Component::ApiServer,
            "runtime-config",
            "api/all=yes",
            "api/all=true",
        ),
        (
            Component::ApiServer,
            "audit-policy-file",
            "audit.yaml",
            "/etc/kubernetes/pki/audit.yaml",
        ),
        (
            Component::ApiServer,
            "oidc-issuer-url",
            "issuer.example.com",
            "https://issuer.example.com",
        ),
        (
            Component::ApiServer,
            "etcd-servers",
            "10.0.0.1:2379",
            "https://10.0.0.1:2379",
        ),
        (Component::Scheduler, "logging-format", "xml", "json"),
        (
            Component::ControllerManager,
            "node-monitor-grace-period",
            "40",
            "40s",
        ),
    ];
    for (c, flag, bad, good) in cases {
        let r = validate(&with_args(*c, &[(flag, bad)]));
        let field = format!("spec.{}.extraArgs[0].value", c.spec_field());
        let p = at(&r, &field);
        assert_eq!(p.len(), 1, "{c} --{flag}={bad}:\n{}", lines(&r));
        assert!(p[0].is_error());
        assert!(
            p[0].message.contains(&format!("--{flag}")) && p[0].message.contains(bad),
            "{}",
            p[0]
        );
        assert_eq!(p[0].value.as_deref(), Some(*bad));
        let r = validate(&with_args(*c, &[(flag, good)]));
        assert!(r.is_ok(), "{c} --{flag}={good}:\n{}", lines(&r));
    }
}

#[test]
fn secure_port_zero_is_refused() {
    let r = validate(&with_args(Component::Scheduler, &[("secure-port", "0")]));
    let p = at(&r, "spec.scheduler.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].message.contains("turns off"));
}

#[test]
fn a_single_value_flag_given_twice_is_refused_but_lists_and_maps_may_repeat() {
    let r = validate(&with_args(Component::ApiServer, &[("v", "2"), ("v", "4")]));
    let p = at(&r, "spec.apiServer.extraArgs[1].name");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(
        p[0].message.contains("2 times") && p[0].message.contains("\"4\""),
        "{}",
        p[0]
    );
    assert!(at(&r, "spec.apiServer.extraArgs[0]").is_empty());

    let mut s = with_args(
        Component::ApiServer,
        &[
            ("service-account-issuer", "https://new.example"),
            (
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ),
            ("feature-gates", "A=true"),
            ("feature-gates", "B=false"),
            ("api-audiences", "a"),
            ("api-audiences", "b"),
        ],
    );
    set_allow(&mut s, Component::ApiServer, &["service-account-issuer"]);
    assert_clean(&s);
}

// ---------------------------------------------------------------------------------------
// Protected flags

#[test]
fn protected_flags_need_the_opt_in() {
    let mut s = with_args(
        Component::ApiServer,
        &[("tls-cert-file", "/etc/kubernetes/pki/other.crt")],
    );
    let r = validate(&s);
    let p = at(&r, "spec.apiServer.extraArgs[0].name");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].is_error());
    assert!(
        p[0].fix
            .as_deref()
            .unwrap()
            .contains("add \"tls-cert-file\" to spec.apiServer.allowProtectedOverrides"),
        "{}",
        p[0]
    );
    set_allow(&mut s, Component::ApiServer, &["tls-cert-file"]);
    assert_clean(&s);
}

#[test]
fn opting_in_to_a_flag_that_is_not_protected_warns() {
    let mut s = spec();
    set_allow(
        &mut s,
        Component::Scheduler,
        &["bind-address", "tls-cert-file"],
    );
    let r = validate(&s);
    assert!(r.is_ok());
    let p = at(&r, "spec.scheduler.allowProtectedOverrides");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert_eq!(p[0].field, "spec.scheduler.allowProtectedOverrides[0]");
    assert!(!p[0].is_error());
}

// ---------------------------------------------------------------------------------------
// Merge policy

#[test]
fn additive_flags_merge_with_the_defaults() {
    let s = with_args(
        Component::ApiServer,
        &[
            ("enable-admission-plugins", "PodSecurity,NodeRestriction"),
            ("feature-gates", "A=true"),
            ("feature-gates", "A=false,B=true"),
            ("authorization-mode", "Node,Webhook,RBAC"),
        ],
    );
    let e = render_effective(&s).unwrap();
    let api = e.pod(Component::ApiServer).unwrap();
    assert_eq!(
        api.last("enable-admission-plugins"),
        Some("NodeRestriction,PodSecurity")
    );
    assert_eq!(api.last("feature-gates"), Some("A=false,B=true"));
    assert_eq!(
        api.values("authorization-mode").collect::<Vec<_>>(),
        vec!["Node,Webhook,RBAC"]
    );
    assert_clean(&s);
}

#[test]
fn an_authorization_mode_without_node_or_rbac_warns() {
    let r = validate(&with_args(
        Component::ApiServer,
        &[("authorization-mode", "Webhook,RBAC")],
    ));
    assert!(r.is_ok());
    let w = r.warning_messages();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("has no Node"), "{}", w[0]);
    assert!(w[0].contains("Node,RBAC,Webhook"), "{}", w[0]);

    let r = validate(&with_args(
        Component::ApiServer,
        &[("authorization-mode", "AlwaysAllow")],
    ));
    assert_eq!(r.warnings().count(), 2, "{}", lines(&r));
}

#[test]
fn authorization_mode_and_authorization_config_together_are_refused() {
    let r = validate(&with_args(
        Component::ApiServer,
        &[
            ("authorization-config", "/etc/kubernetes/pki/authz.yaml"),
            ("authorization-mode", "Node,RBAC"),
        ],
    ));
    let p = at(&r, "spec.apiServer.extraArgs[1]");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].is_error() && p[0].message.contains("together"));
    // authorization-config alone displaces the default mode.
    assert_clean(&with_args(
        Component::ApiServer,
        &[("authorization-config", "/etc/kubernetes/pki/authz.yaml")],
    ));
}

#[test]
fn a_plugin_both_enabled_and_disabled_is_refused() {
    let r = validate(&with_args(
        Component::ApiServer,
        &[
            ("enable-admission-plugins", "PodSecurity,EventRateLimit"),
            ("disable-admission-plugins", "EventRateLimit"),
        ],
    ));
    let p = at(&r, "spec.apiServer.extraArgs[1]");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(
        p[0].message.contains("EventRateLimit is both enabled"),
        "{}",
        p[0]
    );
    // Disabling a default plugin is fine: it leaves the default list.
    assert_clean(&with_args(
        Component::ApiServer,
        &[("disable-admission-plugins", "NodeRestriction")],
    ));
}

// ---------------------------------------------------------------------------------------
// Paths and mounts

#[test]
fn a_path_outside_every_volume_is_refused_with_the_fix() {
    let mut s = with_args(
        Component::ApiServer,
        &[("tls-cert-file", "/var/lib/kubernetes/x.pem")],
    );
    set_allow(&mut s, Component::ApiServer, &["tls-cert-file"]);
    let r = validate(&s);
    let p = at(&r, "spec.apiServer.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    let fix = p[0].fix.as_deref().unwrap();
    assert!(
        p[0].message.contains("/var/lib/kubernetes/x.pem"),
        "{}",
        p[0]
    );
    assert!(fix.contains("spec.apiServer.extraVolumes") && fix.contains("/var/lib/kubernetes"));
    assert!(fix.contains("certificatesDir"), "{fix}");

    // Either fix works.
    let mut mounted = s.clone();
    mounted.api_server.as_mut().unwrap().extra_volumes = vec![HostPathVolume {
        name: "var-lib-kubernetes".into(),
        host_path: "/var/lib/kubernetes".into(),
        mount_path: "/var/lib/kubernetes".into(),
        read_only: Some(true),
        path_type: None,
    }];
    assert_clean(&mounted);
    let mut moved = s;
    moved.certificates_dir = Some("/var/lib/kubernetes".into());
    assert_clean(&moved);
}

#[test]
fn the_scheduler_does_not_see_the_certificates_directory() {
    let mut s = with_args(
        Component::Scheduler,
        &[("tls-cert-file", "/etc/kubernetes/pki/scheduler.crt")],
    );
    set_allow(&mut s, Component::Scheduler, &["tls-cert-file"]);
    let r = validate(&s);
    let p = at(&r, "spec.scheduler.extraArgs[0].value");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(!p[0].fix.as_deref().unwrap().contains("certificatesDir"));
}

#[test]
fn list_valued_key_files_are_checked_one_by_one() {
    let mut s = with_args(
        Component::ApiServer,
        &[(
            "service-account-key-file",
            "/etc/kubernetes/pki/sa.pub,/srv/keys/old.pub",
        )],
    );
    set_allow(&mut s, Component::ApiServer, &["service-account-key-file"]);
    let r = validate(&s);
    let errors: Vec<_> = r.errors().collect();
    assert_eq!(errors.len(), 1, "{}", lines(&r));
    assert!(errors[0].message.contains("/srv/keys/old.pub"));
}
