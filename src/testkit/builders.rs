//! Objects the tests share: a valid spec, a config and ControlPlaneNodes as the API server
//! returns them, node facts, and JSON assertions (the operator's scenarios, the agent's tests).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::api::{
    ControlPlaneConfig, ControlPlaneConfigSpec, ControlPlaneNode, ControlPlaneNodeSpec,
    ControlPlaneNodeStatus, NodeFacts, NodePhase,
};
use crate::operator::selection::CONFIG_LABEL;

/// A valid spec: kubeadm defaults for v1.36.2.
pub fn valid_spec() -> ControlPlaneConfigSpec {
    ControlPlaneConfigSpec {
        kubernetes_version: "v1.36.2".into(),
        ..Default::default()
    }
}

/// A config as the API server returns it.
pub fn config(generation: i64, spec: ControlPlaneConfigSpec) -> ControlPlaneConfig {
    let mut c = ControlPlaneConfig::new("prod", spec);
    c.metadata.uid = Some("3f1c2b7a-0000-4000-8000-000000000001".into());
    c.metadata.generation = Some(generation);
    c.metadata.resource_version = Some("100".into());
    c
}

/// Facts an agent on `node` reports.
pub fn facts(node: &str, ip: &str) -> NodeFacts {
    NodeFacts {
        node_name: node.into(),
        advertise_address: Some(ip.into()),
        addresses: vec![format!("InternalIP={ip}")],
        host_ca_directories: vec!["/etc/ca-certificates".into()],
        manifest_dir: Some("/etc/kubernetes/manifests".into()),
        state_dir: Some("/etc/kubernetes/kubeplane".into()),
    }
}

/// The address the agent on fixture node `cp-N` reports: `10.0.0.(10+N)`.
pub fn fixture_ip(node: &str) -> String {
    let idx: u8 = node.trim_start_matches("cp-").parse().unwrap_or(9);
    format!("10.0.0.{}", 10 + idx)
}

/// A ControlPlaneNode of config `prod` with facts, settled in `phase` at `rev` (`""`: never
/// given a revision).
pub fn cpn(node: &str, rev: &str, phase: NodePhase) -> ControlPlaneNode {
    let mut c = ControlPlaneNode::new(
        node,
        ControlPlaneNodeSpec {
            config_name: "prod".into(),
            revision: rev.into(),
            ..Default::default()
        },
    );
    c.metadata.labels = Some(BTreeMap::from([(CONFIG_LABEL.into(), "prod".into())]));
    c.metadata.resource_version = Some(format!("5{}", node.trim_start_matches("cp-")));
    c.status = Some(ControlPlaneNodeStatus {
        node_facts: Some(facts(node, &fixture_ip(node))),
        phase: Some(phase),
        target_revision: (!rev.is_empty()).then(|| rev.to_string()),
        applied_revision: (!rev.is_empty()).then(|| rev.to_string()),
        last_known_good_revision: (!rev.is_empty()).then(|| rev.to_string()),
        phase_since: Some(Time(Timestamp::from_second(1_700_000_000).expect("time"))),
        ..Default::default()
    });
    c
}

/// `cpn` with its agent still on `target` in `phase` (spec says `spec_rev`).
pub fn cpn_moving(node: &str, spec_rev: &str, target: &str, phase: NodePhase) -> ControlPlaneNode {
    let mut c = cpn(node, spec_rev, phase);
    if let Some(s) = c.status.as_mut() {
        s.target_revision = Some(target.into());
        s.applied_revision = Some("r-old".into());
    }
    c
}

/// Asserts that every key of `expected` is in `actual` with an equal value (objects compared
/// recursively, everything else exactly).
pub fn assert_json_subset(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                assert_json_subset(av, ev, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(actual, expected, "at {path}"),
    }
}

/// The condition of `type_` in a status JSON.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}
