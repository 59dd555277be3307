//! Which Nodes a config selects, which configs a Node event concerns, and which node holds a
//! leader Lease. Pure: no I/O.

use std::collections::BTreeMap;

use crate::api::{ControlPlaneConfig, ControlPlaneConfigSpec};

/// Label on every `ControlPlaneNode`: the name of its `ControlPlaneConfig`.
pub const CONFIG_LABEL: &str = "kubeplane.io/config";

/// Label (value `true`) on a `ControlPlaneNode` whose node no longer matches its config's
/// selector (or is gone). The operator keeps such a `ControlPlaneNode`, and with it the memory
/// of what ran and failed there, but leaves it out of the config's counts and rollout; it
/// removes the label when the node is selected again.
pub const UNSELECTED_LABEL: &str = "kubeplane.io/unselected";

/// The label kubeadm puts on control-plane nodes (with an empty value).
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// The config's node selector, or the default `node-role.kubernetes.io/control-plane: ""`.
pub fn node_selector(spec: &ControlPlaneConfigSpec) -> BTreeMap<String, String> {
    spec.node_selector
        .clone()
        .unwrap_or_else(|| BTreeMap::from([(CONTROL_PLANE_LABEL.to_string(), String::new())]))
}

/// The selector as a label selector string (`k1=v1,k2=`), for list and watch requests. Each
/// pair must match exactly, as `kubectl get nodes -l` would.
pub fn label_selector(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a Node's labels match the selector: every key present with exactly the value given.
pub fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The configs a change of Node `node` (with `labels`) concerns: those whose selector matches
/// it now, and the one owning a `ControlPlaneNode` of that name (the node may just have left
/// the selector). `cpn_configs` maps `ControlPlaneNode` names to their config label.
pub fn configs_for_node<'a>(
    configs: impl IntoIterator<Item = &'a ControlPlaneConfig>,
    cpn_configs: &BTreeMap<String, String>,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = configs
        .into_iter()
        .filter(|c| matches(&node_selector(&c.spec), labels))
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    if let Some(owner) = cpn_configs.get(node) {
        out.push(owner.clone());
    }
    out.sort();
    out.dedup();
    out
}

/// The node named by a leader-election holder identity `<hostname>_<uuid>`, when it is one of
/// `nodes` (compared without case, as host names are).
pub fn holder_node<'a>(
    identity: &str,
    nodes: impl IntoIterator<Item = &'a String>,
) -> Option<String> {
    let host = identity.split('_').next().unwrap_or(identity);
    if host.is_empty() {
        return None;
    }
    nodes
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(host))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(name: &str, selector: Option<&[(&str, &str)]>) -> ControlPlaneConfig {
        let mut c = ControlPlaneConfig::new(name, ControlPlaneConfigSpec::default());
        c.spec.node_selector = selector.map(labels);
        c
    }

    #[test]
    fn default_selector_is_the_kubeadm_control_plane_label() {
        let sel = node_selector(&ControlPlaneConfigSpec::default());
        assert_eq!(
            label_selector(&sel),
            "node-role.kubernetes.io/control-plane="
        );
        assert!(matches(
            &sel,
            &labels(&[(CONTROL_PLANE_LABEL, ""), ("zone", "a")])
        ));
        // A label selector matches values exactly: "true" is not "".
        assert!(!matches(&sel, &labels(&[(CONTROL_PLANE_LABEL, "true")])));
        assert!(!matches(
            &sel,
            &labels(&[("node-role.kubernetes.io/worker", "")])
        ));
    }

    #[test]
    fn custom_selectors_need_every_pair() {
        let sel = labels(&[("a", "1"), ("b", "2")]);
        assert_eq!(label_selector(&sel), "a=1,b=2");
        assert!(matches(
            &sel,
            &labels(&[("a", "1"), ("b", "2"), ("c", "3")])
        ));
        assert!(!matches(&sel, &labels(&[("a", "1")])));
        assert!(matches(&BTreeMap::new(), &labels(&[])));
    }

    #[test]
    fn a_node_event_concerns_matching_configs_and_its_current_owner() {
        let configs = [
            config("default", None),
            config("blue", Some(&[("pool", "blue")])),
        ];
        let owners = BTreeMap::from([("cp-9".to_string(), "blue".to_string())]);
        let cp = labels(&[(CONTROL_PLANE_LABEL, "")]);
        assert_eq!(
            configs_for_node(&configs, &owners, "cp-1", &cp),
            vec!["default"]
        );
        // cp-9 left the blue pool: its owner still hears about it.
        assert_eq!(
            configs_for_node(&configs, &owners, "cp-9", &cp),
            vec!["blue", "default"]
        );
        assert!(configs_for_node(&configs, &owners, "worker", &labels(&[])).is_empty());
    }

    #[test]
    fn lease_holder_identity_names_a_node() {
        let nodes = vec!["cp-1".to_string(), "cp-2".to_string()];
        assert_eq!(
            holder_node("cp-2_0f6a2e0c-94b5-4b4f-9e53-8f4b1c1a7d10", &nodes).as_deref(),
            Some("cp-2")
        );
        assert_eq!(holder_node("CP-1_x", &nodes).as_deref(), Some("cp-1"));
        assert_eq!(holder_node("cp-3_x", &nodes), None);
        assert_eq!(holder_node("", &nodes), None);
        assert_eq!(holder_node("_x", &nodes), None);
    }
}

/// Whether a Node's `Ready` condition is `Unknown`: the node lifecycle controller sets it when
/// the kubelet stops posting status for `--node-monitor-grace-period` (the node is down or cut
/// off). `False` (a kubelet that runs and reports a problem, such as no CNI yet) is not
/// unreachable: its static Pods still run and its agent still works.
pub fn unreachable(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "Unknown")
}

#[cfg(test)]
mod unreachable_tests {
    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};

    fn node(ready: Option<&str>) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: ready.map(|r| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: r.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_ready_condition_of_unknown_is_unreachable() {
        assert!(super::unreachable(&node(Some("Unknown"))));
        assert!(!super::unreachable(&node(Some("True"))));
        assert!(
            !super::unreachable(&node(Some("False"))),
            "a kubelet reporting a problem runs"
        );
        assert!(!super::unreachable(&node(None)), "a node not reporting yet");
        assert!(!super::unreachable(&Node::default()));
    }
}
