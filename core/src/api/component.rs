//! The control-plane components kubeplane manages.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One of the control-plane components kubeplane writes a static Pod for.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Component {
    /// The Kubernetes API server.
    #[serde(rename = "kube-apiserver")]
    ApiServer,
    /// The controller manager.
    #[serde(rename = "kube-controller-manager")]
    ControllerManager,
    /// The scheduler.
    #[serde(rename = "kube-scheduler")]
    Scheduler,
}

impl Component {
    /// All components, in the order they are applied on a node (API server first).
    pub const ALL: [Component; 3] = [
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    /// The component's name: binary name, container name, Pod name and `component` label.
    pub const fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }

    /// The file name of the component's static Pod manifest.
    pub const fn manifest_file(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver.yaml",
            Component::ControllerManager => "kube-controller-manager.yaml",
            Component::Scheduler => "kube-scheduler.yaml",
        }
    }

    /// The field under `spec` that configures this component.
    pub const fn spec_field(self) -> &'static str {
        match self {
            Component::ApiServer => "apiServer",
            Component::ControllerManager => "controllerManager",
            Component::Scheduler => "scheduler",
        }
    }

    /// Parses a component name (`kube-apiserver`, …) or its spec field (`apiServer`, …).
    pub fn parse(s: &str) -> Option<Component> {
        Component::ALL
            .into_iter()
            .find(|c| c.name() == s || c.spec_field() == s)
    }

    /// The name of the component's mirror pod on a node: `<name>-<lowercased node name>`.
    pub fn mirror_pod_name(self, node_name: &str) -> String {
        format!("{}-{}", self.name(), node_name.to_lowercase())
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_both_spellings_and_rejects_others() {
        assert_eq!(
            Component::parse("kube-scheduler"),
            Some(Component::Scheduler)
        );
        assert_eq!(Component::parse("apiServer"), Some(Component::ApiServer));
        assert_eq!(Component::parse("etcd"), None);
    }

    #[test]
    fn mirror_pod_name_lowercases_node() {
        assert_eq!(
            Component::ControllerManager.mirror_pod_name("CP-1"),
            "kube-controller-manager-cp-1"
        );
    }

    #[test]
    fn serde_uses_component_names() {
        let json = serde_json::to_string(&Component::ApiServer).unwrap();
        assert_eq!(json, "\"kube-apiserver\"");
        let back: Component = serde_json::from_str("\"kube-scheduler\"").unwrap();
        assert_eq!(back, Component::Scheduler);
    }
}
