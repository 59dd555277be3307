//! kubeadm defaults; legacy, unknown, not-yet and deprecated flags.

use super::*;

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
