//! `status` of a `ControlPlaneConfig`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, date_time_schema};

/// Observed state of a `ControlPlaneConfig`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Revision of the current spec: a short content hash, the same on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,

    /// Number of nodes the config selects.
    #[serde(default)]
    pub nodes: i32,

    /// Number of nodes running the current revision.
    #[serde(default)]
    pub updated_nodes: i32,

    /// Number of nodes running the current revision with every component healthy.
    #[serde(default)]
    pub ready_nodes: i32,

    /// Node being updated now, if any. The operator claims it here (a status write that
    /// carries the config's `metadata.resourceVersion`, so a concurrent writer gets a conflict)
    /// before it writes the node's `ControlPlaneNode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_in_flight: Option<String>,

    /// Revision the node in flight was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_in_flight_revision: Option<String>,

    /// When the node in flight was given its revision; `spec.rollout.progressDeadlineSeconds`
    /// counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub node_in_flight_since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// Revisions that rolled back or failed, per node (at most 32, the current revision's
    /// first). A revision recorded here halts the rollout and is never given to that node
    /// again, even when its `ControlPlaneNode` is deleted and re-created or its node leaves the
    /// selector and comes back; a changed spec is a new revision and a new attempt. A record is
    /// dropped when its node becomes healthy at that revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_revisions: Vec<FailedRevision>,

    /// `Ready`, `Progressing` and `Degraded`, in the standard Kubernetes condition shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Warnings about the spec that do not stop a rollout, such as deprecated flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,

    /// Current holders of the kube-controller-manager and kube-scheduler leader Leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaders: Vec<LeaderStatus>,

    /// A minor version upgrade in progress, rolled in waves so that no kube-controller-manager
    /// or kube-scheduler is ever newer than a kube-apiserver it can reach (the version-skew
    /// policy, kubernetes.io/releases/version-skew-policy): wave 1 gives kube-apiserver the new
    /// version on every node, one node at a time; wave 2 then the other components. Absent
    /// when no minor upgrade is in progress (a patch or flag change rolls node by node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,

    /// Managed encryption at rest (`spec.apiServer.encryption.managed`): the step of the key
    /// lifecycle, the active key's name, each node's configuration, the rewrite's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::encryption::EncryptionStatus>,
}

/// Where a minor version upgrade stands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// The version the nodes ran when the upgrade started (the lowest one).
    pub from_version: String,
    /// The version of the spec.
    pub to_version: String,
    /// 1: kube-apiserver on every node; 2: kube-controller-manager and kube-scheduler on
    /// every node.
    pub wave: i32,
    /// The revision the whole upgrade ends at (`status.revision` is the wave's).
    pub revision: String,
}

/// A revision that rolled back or failed on a node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailedRevision {
    /// The node.
    pub node: String,
    /// The revision.
    pub revision: String,
    /// The node's phase then: `RolledBack` or `Failed`.
    pub phase: String,
    /// The agent's reason (for example `HealthTimeout`), else the phase.
    pub reason: String,
    /// The agent's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the operator first saw it.
    #[schemars(schema_with = "date_time_schema")]
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// The holder of a component's leader-election Lease.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderStatus {
    /// Component whose Lease this is.
    pub component: String,
    /// Identity of the holder (the Lease's `holderIdentity`), usually `<node>_<uuid>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Node the holder runs on, when the identity names one of the selected nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Number of times the Lease changed hands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions: Option<i32>,
    /// When the holder last renewed the Lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub renew_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
}
