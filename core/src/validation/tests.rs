//! Validation of flags, merge policy and cross-component agreement.

use proptest::prelude::*;

use super::effective::render_effective;
use super::*;
use crate::api::*;
use crate::flags::version::{MAX_MINOR, MIN_MINOR};
use crate::flags::{FlagStatus, lookup};
use crate::render::{RenderInput, render};

fn spec() -> ControlPlaneConfigSpec {
    ControlPlaneConfigSpec {
        kubernetes_version: "v1.36.2".into(),
        ..Default::default()
    }
}

fn args(list: &[(&str, &str)]) -> Vec<Arg> {
    list.iter().map(|(n, v)| Arg::new(*n, *v)).collect()
}

fn allow(names: &[&str]) -> Vec<FlagName> {
    names.iter().map(|n| FlagName(n.to_string())).collect()
}

fn with_args(c: Component, list: &[(&str, &str)]) -> ControlPlaneConfigSpec {
    let mut s = spec();
    set_args(&mut s, c, list);
    s
}

fn set_args(s: &mut ControlPlaneConfigSpec, c: Component, list: &[(&str, &str)]) {
    match c {
        Component::ApiServer => s.api_server.get_or_insert_default().extra_args = args(list),
        Component::ControllerManager => {
            s.controller_manager.get_or_insert_default().extra_args = args(list)
        }
        Component::Scheduler => s.scheduler.get_or_insert_default().extra_args = args(list),
    }
}

fn set_allow(s: &mut ControlPlaneConfigSpec, c: Component, names: &[&str]) {
    match c {
        Component::ApiServer => {
            s.api_server
                .get_or_insert_default()
                .allow_protected_overrides = allow(names)
        }
        Component::ControllerManager => {
            s.controller_manager
                .get_or_insert_default()
                .allow_protected_overrides = allow(names)
        }
        Component::Scheduler => {
            s.scheduler
                .get_or_insert_default()
                .allow_protected_overrides = allow(names)
        }
    }
}

/// Problems whose field starts with `field`.
fn at<'a>(r: &'a Report, field: &str) -> Vec<&'a Problem> {
    r.problems
        .iter()
        .filter(|p| p.field.starts_with(field))
        .collect()
}

fn lines(r: &Report) -> String {
    r.problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_clean(s: &ControlPlaneConfigSpec) {
    let r = validate(s);
    assert!(
        r.problems.is_empty(),
        "expected no problems:\n{}",
        lines(&r)
    );
}

fn version(minor: u32) -> String {
    format!("v1.{minor}.0")
}

/// A spec that makes the renderer emit every flag it can: Pod network, node ports, audit,
/// encryption, external etcd.
fn full_spec(minor: u32) -> ControlPlaneConfigSpec {
    ControlPlaneConfigSpec {
        kubernetes_version: version(minor),
        networking: Some(Networking {
            service_subnet: Some("10.96.0.0/12".into()),
            pod_subnet: Some("10.244.0.0/16".into()),
            dns_domain: None,
            service_node_port_range: Some("30000-32767".into()),
        }),
        etcd: Some(Etcd {
            external: Some(ExternalEtcd {
                endpoints: vec!["https://10.0.0.21:2379".into()],
                ca_file: Some("/etc/etcd/ca.crt".into()),
                cert_file: Some("/etc/etcd/client.crt".into()),
                key_file: Some("/etc/etcd/client.key".into()),
            }),
        }),
        api_server: Some(ApiServer {
            audit: Some(Audit {
                policy: serde_json::json!({
                    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                    "rules": [{"level": "Metadata"}]
                }),
                max_age: Some(30),
                max_backup: Some(3),
                max_size: Some(100),
                ..Default::default()
            }),
            encryption: Some(Encryption {
                secret_ref: Some(SecretKeyRef {
                    name: "enc".into(),
                    ..Default::default()
                }),
                managed: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// kubeadm defaults

#[test]
fn every_rendered_default_flag_is_accepted_in_every_supported_version() {
    let mut checked = 0;
    for minor in MIN_MINOR..=MAX_MINOR {
        let default = ControlPlaneConfigSpec {
            kubernetes_version: version(minor),
            ..Default::default()
        };
        for s in [default, full_spec(minor)] {
            let node = NodeFacts {
                node_name: "cp-1".into(),
                advertise_address: Some("10.0.0.11".into()),
                ..Default::default()
            };
            let rendered = render(&RenderInput {
                spec: &s,
                node: &node,
                encryption_config_sha256: None,
            })
            .expect("renders");
            let v = crate::flags::KubeVersion::parse(&s.kubernetes_version).unwrap();
            for p in &rendered.pods {
                let cmd = p.pod.spec.as_ref().unwrap().containers[0]
                    .command
                    .clone()
                    .unwrap();
                assert_eq!(cmd[0], p.component.name());
                for arg in &cmd[1..] {
                    let (name, value) = arg
                        .strip_prefix("--")
                        .and_then(|a| a.split_once('='))
                        .expect("--name=value");
                    let status = lookup(p.component, name, &v);
                    assert!(
                        matches!(status, FlagStatus::Accepted { .. }),
                        "{} {v}: --{name} is {status:?}",
                        p.component
                    );
                    let flag = status.flag().unwrap();
                    assert!(
                        super::values::check_value(flag, value).is_ok(),
                        "{} {v}: --{name}={value} fails its type check",
                        p.component
                    );
                    checked += 1;
                }
            }
            // And validation has nothing to say about such a spec.
            assert_clean(&s);
        }
    }
    // 5 versions x (default + full) x about 45 flags.
    assert!(checked > 400, "only {checked} flags checked");
}

#[test]
fn the_examples_shape_is_clean() {
    // The full spec with the HA example's overrides, opted in.
    let mut s = full_spec(36);
    set_args(
        &mut s,
        Component::ApiServer,
        &[
            ("service-account-issuer", "https://10.240.0.10:6443"),
            ("enable-admission-plugins", "NamespaceLifecycle,LimitRanger"),
            ("profiling", "false"),
        ],
    );
    set_allow(&mut s, Component::ApiServer, &["service-account-issuer"]);
    assert_clean(&s);
}

// ---------------------------------------------------------------------------------------
// Legacy, unknown, not-yet and deprecated flags

/// The flags the issue names, on the components guides put them on, with the release that
/// removed them and the replacement (facts: core/src/flags/data/SOURCES.md).
const LEGACY: &[(Component, &str, &str, Option<&str>)] = &[
    (
        Component::ApiServer,
        "insecure-port",
        "1.24",
        Some("secure-port"),
    ),
    (
        Component::ApiServer,
        "insecure-bind-address",
        "1.24",
        Some("bind-address"),
    ),
    (
        Component::ApiServer,
        "address",
        "1.24",
        Some("bind-address"),
    ),
    (Component::ApiServer, "port", "1.24", Some("secure-port")),
    (Component::ApiServer, "kubelet-https", "1.22", None),
    (Component::ApiServer, "enable-swagger-ui", "1.24", None),
    (
        Component::ApiServer,
        "experimental-encryption-provider-config",
        "1.24",
        Some("encryption-provider-config"),
    ),
    (
        Component::ControllerManager,
        "address",
        "1.24",
        Some("bind-address"),
    ),
    (
        Component::ControllerManager,
        "port",
        "1.24",
        Some("secure-port"),
    ),
    (
        Component::ControllerManager,
        "experimental-cluster-signing-duration",
        "1.25",
        Some("cluster-signing-duration"),
    ),
    (
        Component::ControllerManager,
        "pod-eviction-timeout",
        "1.27",
        None,
    ),
    (
        Component::ControllerManager,
        "horizontal-pod-autoscaler-use-rest-clients",
        "1.22",
        None,
    ),
    (
        Component::ControllerManager,
        "insecure-experimental-approve-all-kubelet-csrs-for-group",
        "1.13",
        None,
    ),
    (
        Component::ControllerManager,
        "deployment-controller-sync-period",
        "1.24",
        None,
    ),
    (
        Component::Scheduler,
        "address",
        "1.24",
        Some("bind-address"),
    ),
    (Component::Scheduler, "port", "1.24", Some("secure-port")),
];

#[test]
fn legacy_flags_are_refused_with_their_removal_version_and_replacement() {
    for minor in MIN_MINOR..=MAX_MINOR {
        for (c, flag, removed, replacement) in LEGACY {
            let mut s = with_args(*c, &[(flag, "1")]);
            s.kubernetes_version = version(minor);
            let r = validate(&s);
            let field = format!("spec.{}.extraArgs[0].name", c.spec_field());
            let p: Vec<_> = at(&r, &field);
            assert_eq!(p.len(), 1, "{c} --{flag} on 1.{minor}:\n{}", lines(&r));
            let line = p[0].to_string();
            assert!(p[0].is_error(), "{line}");
            assert!(
                line.contains(&format!("--{flag} was removed")) && line.contains(removed),
                "{line}"
            );
            match replacement {
                Some(rep) => assert!(line.contains(&format!("use --{rep} instead")), "{line}"),
                None => assert!(line.contains("remove it"), "{line}"),
            }
        }
    }
}

#[test]
fn unknown_flags_suggest_the_nearest_known_one() {
    for (c, typo, meant) in [
        (Component::ApiServer, "bind-adress", "bind-address"),
        (
            Component::ControllerManager,
            "feature-gate",
            "feature-gates",
        ),
        (Component::Scheduler, "leader-elec", "leader-elect"),
    ] {
        let r = validate(&with_args(c, &[(typo, "x")]));
        let p = at(&r, &format!("spec.{}.extraArgs[0].name", c.spec_field()));
        assert_eq!(p.len(), 1, "{}", lines(&r));
        assert!(p[0].is_error());
        assert!(p[0].message.contains(&format!("no flag --{typo}")));
        assert_eq!(
            p[0].fix.as_deref(),
            Some(format!("did you mean --{meant}?").as_str())
        );
    }
    let r = validate(&with_args(
        Component::ApiServer,
        &[("frobnicate-widgets", "1")],
    ));
    let p = at(&r, "spec.apiServer.extraArgs[0]");
    assert_eq!(p.len(), 1);
    assert!(!p[0].to_string().contains("did you mean"), "{}", p[0]);
    assert!(
        p[0].to_string()
            .contains("kubeplane flags kube-apiserver --version 1.36")
    );
}

#[test]
fn a_flag_of_another_component_says_where_it_belongs() {
    let r = validate(&with_args(
        Component::ApiServer,
        &[("cluster-cidr", "10.244.0.0/16")],
    ));
    let p = at(&r, "spec.apiServer.extraArgs[0]");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(
        p[0].fix
            .as_deref()
            .unwrap()
            .contains("spec.controllerManager.extraArgs"),
        "{}",
        p[0]
    );
}

#[test]
fn leading_dashes_are_reported_and_the_flag_still_judged() {
    let r = validate(&with_args(
        Component::ApiServer,
        &[("--insecure-port", "8080")],
    ));
    let text = lines(&r);
    assert!(text.contains("without leading dashes"), "{text}");
    assert!(
        text.contains("removed from kube-apiserver in Kubernetes 1.24"),
        "{text}"
    );
}

#[test]
fn flags_newer_than_the_target_name_the_version_that_adds_them() {
    let mut s = with_args(Component::ApiServer, &[("tls-curve-preferences", "23,24")]);
    s.kubernetes_version = "v1.35.4".into();
    let r = validate(&s);
    let p = at(&r, "spec.apiServer.extraArgs[0]");
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].is_error());
    assert!(p[0].message.contains("from Kubernetes 1.36 on"), "{}", p[0]);
    assert!(p[0].fix.as_deref().unwrap().contains("v1.36.0"));
    s.kubernetes_version = "v1.36.0".into();
    assert_clean(&s);
}

#[test]
fn deprecated_flags_warn_and_reach_status_strings() {
    let s = with_args(
        Component::ApiServer,
        &[("admission-control", "NamespaceLifecycle")],
    );
    let r = validate(&s);
    assert!(r.is_ok(), "{}", lines(&r));
    let w = r.warning_messages();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("spec.apiServer.extraArgs[0].name"),
        "{}",
        w[0]
    );
    assert!(
        w[0].contains("deprecated since Kubernetes 1.10"),
        "{}",
        w[0]
    );
    assert!(
        w[0].contains("use --enable-admission-plugins instead"),
        "{}",
        w[0]
    );
    assert!(r.error_messages().is_empty());
}

#[test]
fn flags_that_exit_are_refused() {
    for (c, flag) in [
        (Component::ApiServer, "help"),
        (Component::ControllerManager, "version"),
        (Component::Scheduler, "write-config-to"),
    ] {
        let value = if flag == "write-config-to" {
            "/tmp/x"
        } else {
            "true"
        };
        let r = validate(&with_args(c, &[(flag, value)]));
        assert!(!r.is_ok());
        assert!(lines(&r).contains("exit"), "{}", lines(&r));
    }
}

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

// ---------------------------------------------------------------------------------------
// Never a panic

fn any_args() -> impl Strategy<Value = Vec<Arg>> {
    let name = prop_oneof![
        any::<String>(),
        "[a-z-]{1,30}",
        prop::sample::select(vec![
            "secure-port",
            "service-cluster-ip-range",
            "cluster-cidr",
            "service-node-port-range",
            "authorization-mode",
            "enable-admission-plugins",
            "disable-admission-plugins",
            "feature-gates",
            "runtime-config",
            "tls-cert-file",
            "tls-sni-cert-key",
            "service-account-key-file",
            "service-account-private-key-file",
            "audit-log-path",
            "insecure-port",
            "bind-adress",
        ])
        .prop_map(str::to_string),
    ];
    let value = prop_oneof![
        any::<String>(),
        "[0-9./:,=+a-z-]{0,40}",
        Just(String::new()),
        Just("0".to_string()),
        Just("/".to_string()),
    ];
    prop::collection::vec((name, value).prop_map(|(n, v)| Arg::new(n, v)), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn validation_never_panics_on_arbitrary_extra_args(
        minor in MIN_MINOR..=MAX_MINOR,
        api in any_args(),
        kcm in any_args(),
        sched in any_args(),
        allowed in prop::collection::vec(any::<String>(), 0..3),
        pods in prop::option::of("[0-9./]{0,20}"),
        unmanaged in prop::option::of(0usize..3),
    ) {
        let mut s = spec();
        s.kubernetes_version = version(minor);
        s.api_server.get_or_insert_default().extra_args = api;
        s.controller_manager.get_or_insert_default().extra_args = kcm;
        s.scheduler.get_or_insert_default().extra_args = sched;
        s.api_server.as_mut().unwrap().allow_protected_overrides =
            allowed.into_iter().map(FlagName).collect();
        if let Some(p) = pods {
            s.networking.get_or_insert_default().pod_subnet = Some(p);
        }
        if let Some(i) = unmanaged {
            match Component::ALL[i] {
                Component::ApiServer => s.api_server.as_mut().unwrap().managed = Some(false),
                Component::ControllerManager => s.controller_manager.as_mut().unwrap().managed = Some(false),
                Component::Scheduler => s.scheduler.as_mut().unwrap().managed = Some(false),
            }
        }
        let r = validate(&s);
        for p in &r.problems {
            prop_assert!(!p.field.is_empty());
            prop_assert!(!p.message.is_empty());
        }
        prop_assert_eq!(r.warning_messages().len(), r.warnings().count());
    }
}

#[test]
fn progress_deadline_is_bounded_and_outlasts_the_longest_wait() {
    let with = |deadline: i32, timeout: Option<i32>| {
        let mut s = spec();
        s.rollout = Some(Rollout {
            progress_deadline_seconds: Some(deadline),
            health_timeout_seconds: timeout.map(|t| HealthTimeouts {
                api_server: Some(t),
                ..Default::default()
            }),
            ..Default::default()
        });
        s
    };
    let f = "spec.rollout.progressDeadlineSeconds";
    assert_clean(&with(900, None));
    assert_eq!(at(&validate(&with(59, None)), f).len(), 1);
    assert_eq!(at(&validate(&with(86401, None)), f).len(), 1);
    // 300 s default timeout + 10 s minReadySeconds: 310 s at least.
    let r = validate(&with(300, None));
    let p = at(&r, f);
    assert_eq!(p.len(), 1, "{}", lines(&r));
    assert!(p[0].to_string().contains("310"), "{}", p[0]);
    assert_eq!(at(&validate(&with(900, Some(1200))), f).len(), 1);
    assert_clean(&with(1210, Some(1200)));
    // Unset: 900 s, or the longest wait when that is longer.
    let mut s = spec();
    assert_eq!(crate::render::progress_deadline_seconds(&s), 900);
    s.rollout = with(900, Some(3600)).rollout;
    s.rollout.as_mut().unwrap().progress_deadline_seconds = None;
    assert_eq!(crate::render::progress_deadline_seconds(&s), 3610);
}
