//! `spec.upgrade`: how version changes of a `ControlPlaneConfig` are judged.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How changes of `kubernetesVersion` are judged. kubeplane follows the Kubernetes
/// version-skew policy (kubernetes.io/releases/version-skew-policy): a change moves at most one
/// minor version forward, any patch version is fine, and a minor downgrade is refused unless
/// `allowMinorDowngrade` is `true`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    /// Allow `kubernetesVersion` to go back one minor version (for example from v1.36.1 to
    /// v1.35.4), one minor at a time. Objects written by the newer release may use fields or
    /// storage versions the older one does not know: go back only to the minor the cluster ran
    /// before, soon after the upgrade. The agent's own rollback of a failed node is not a
    /// downgrade and needs no permission. Default: `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_minor_downgrade: Option<bool>,
}
