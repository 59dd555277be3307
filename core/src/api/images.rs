//! Registry credentials for the control-plane images.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret holding registry credentials as docker config JSON: type
/// `kubernetes.io/dockerconfigjson` (key `.dockerconfigjson`) or `kubernetes.io/dockercfg`
/// (key `.dockercfg`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret. Default: `kube-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl ImagePullSecretRef {
    /// The namespace, `kube-system` when unset.
    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .unwrap_or(crate::render::defaults::NAMESPACE)
    }
}
