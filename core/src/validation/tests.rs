//! Validation of flags, merge policy and cross-component agreement.

use proptest::prelude::*;

use super::effective::render_effective;
use super::*;
use crate::api::*;
use crate::flags::version::{MAX_MINOR, MIN_MINOR};
use crate::flags::{FlagStatus, lookup};
use crate::render::{RenderInput, render};

mod cross;
mod flags;
mod policy;

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
