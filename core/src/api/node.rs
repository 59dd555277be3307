//! `ControlPlaneNode`: one node's target revision and what its agent observed.
// kube-derive printcolumn(...) attributes repeat `type_ = ...`, which clippy takes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, date_time_schema};
use super::component::Component;
use super::config::SecretKeyRef;
use super::images::ImagePullSecretRef;

/// The files one node should hold for one revision of a `ControlPlaneConfig`, written by the
/// operator, and what the node's agent observed, written by the agent. Its name is the node's
/// name.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kubeplane.io",
    version = "v1alpha1",
    kind = "ControlPlaneNode",
    shortname = "cpn",
    category = "kubeplane",
    status = "ControlPlaneNodeStatus",
    doc = "One control-plane node's target revision (rendered manifests and side files) and its agent's observations.",
    printcolumn(name = "Revision", type_ = "string", json_path = ".spec.revision"),
    printcolumn(
        name = "Applied",
        type_ = "string",
        json_path = ".status.appliedRevision"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneNodeSpec {
    /// Name of the `ControlPlaneConfig` this node belongs to.
    pub config_name: String,
    /// Revision the node should run: the config's content hash.
    pub revision: String,
    /// Kubernetes version of the revision.
    #[serde(default)]
    pub kubernetes_version: String,
    /// The static Pod manifests to write, one per managed component, in apply order.
    #[serde(default)]
    pub manifests: Vec<RenderedManifest>,
    /// Side files the manifests mount (audit policy, encryption configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RenderedFile>,
    /// Certificate files the rendered flags point at, for expiry reporting and restarts on
    /// renewal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateRef>,
    /// Secrets with registry credentials the agent uses to pull this revision's images
    /// before it writes a manifest (`ControlPlaneConfig` `spec.imagePullSecrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Vec<ImagePullSecretRef>,
    /// Seconds each component must stay healthy before it counts as updated.
    #[serde(default)]
    pub min_ready_seconds: i32,
}

/// One rendered static Pod manifest.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RenderedManifest {
    /// The component the manifest runs.
    pub component: Component,
    /// File name in the manifest directory.
    pub file_name: String,
    /// The Pod's `metadata.uid`, which kubelet reports as the mirror pod's
    /// `kubernetes.io/config.hash`.
    pub config_hash: String,
    /// The manifest, byte for byte.
    pub content: String,
    /// Seconds to wait for the component to become healthy before rolling back.
    pub health_timeout_seconds: i32,
}

/// A side file a manifest mounts from the node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RenderedFile {
    /// The component that reads the file.
    pub component: Component,
    /// Absolute path of the file on the node.
    pub path: String,
    /// Where the content comes from.
    pub source: FileSource,
    /// SHA-256 of the content, hex. For a Secret-backed file the agent refuses content with
    /// another digest (the Secret changed after rendering) and waits for the next revision.
    pub sha256: String,
}

/// Content of a side file.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FileSource {
    /// The content itself.
    Inline(String),
    /// A key of a Secret the agent reads.
    Secret(SecretKeyRef),
}

/// A certificate file a component uses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRef {
    /// The component that reads the file.
    pub component: Component,
    /// The flag that names the file.
    pub flag: String,
    /// Absolute path of the file on the node. A kubeconfig is read for its embedded client
    /// certificate.
    pub path: String,
    /// Whether the file is a kubeconfig rather than a PEM certificate.
    #[serde(default)]
    pub kubeconfig: bool,
}

/// Phase of a node's rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NodePhase {
    /// The agent has not acted on the target revision yet.
    #[default]
    Pending,
    /// The agent is writing manifests.
    Applying,
    /// Manifests are written; the agent waits for kubelet to run them and for them to stay
    /// healthy.
    WaitingForKubelet,
    /// Every managed component runs the target revision and is healthy.
    Healthy,
    /// A component did not become healthy; the last known-good revision was restored.
    RolledBack,
    /// The agent could not apply the revision, nor restore the last known-good one.
    Failed,
}

impl NodePhase {
    /// Every phase, in the order of a rollout.
    pub const ALL: [NodePhase; 6] = [
        NodePhase::Pending,
        NodePhase::Applying,
        NodePhase::WaitingForKubelet,
        NodePhase::Healthy,
        NodePhase::RolledBack,
        NodePhase::Failed,
    ];

    /// The phase as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            NodePhase::Pending => "Pending",
            NodePhase::Applying => "Applying",
            NodePhase::WaitingForKubelet => "WaitingForKubelet",
            NodePhase::Healthy => "Healthy",
            NodePhase::RolledBack => "RolledBack",
            NodePhase::Failed => "Failed",
        }
    }
}

/// What the node's agent observed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneNodeStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Facts about the node the renderer needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_facts: Option<NodeFacts>,
    /// Phase of the target revision on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// Revision the agent last tried (the phase belongs to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Revision whose files are on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// Last revision that became healthy on this node; rollbacks restore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_good_revision: Option<String>,
    /// `true` while the agent restores the last known-good revision after a failed one
    /// (writing it and waiting for it). The operator never gives the node a newer revision
    /// meanwhile, as it never does while the phase is `Applying`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_back: Option<bool>,
    /// Machine-readable reason of the phase, in PascalCase (`RollingBack` also means a restore
    /// is under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, in words a user can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub phase_since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Per component: expected and observed config hash, readiness and health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// Managed files found changed by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftRecord>,
    /// Stray copies of managed manifests moved out of the manifest directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<QuarantineRecord>,
    /// Files in the manifest directory kubeplane does not manage (left alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<String>,
    /// Expiry of the certificates the rendered flags point at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Facts about a node, reported by its agent and used as render input.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeFacts {
    /// Name of the Node.
    pub node_name: String,
    /// Address kube-apiserver advertises, unless the config sets one for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<String>,
    /// The host's interface addresses as the agent sees them (it runs with hostNetwork):
    /// loopback and IPv6 link-local excluded, IPv4 first (for example `10.0.0.11`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Which of the optional host CA directories exist on the node (`/etc/ca-certificates`,
    /// `/etc/pki/ca-trust`, `/etc/pki/tls/certs`, `/usr/share/ca-certificates`,
    /// `/usr/local/share/ca-certificates`); each one found is mounted as kubeadm does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ca_directories: Vec<String>,
    /// The agent's manifest directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_dir: Option<String>,
    /// The agent's state directory; side files live under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

/// What the agent observed of one component.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The component.
    pub name: String,
    /// Config hash of the target manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<String>,
    /// `kubernetes.io/config.hash` of the mirror pod, as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_hash: Option<String>,
    /// Whether the mirror pod is Ready.
    #[serde(default)]
    pub ready: bool,
    /// Whether the local health endpoint answers.
    #[serde(default)]
    pub healthy: bool,
    /// Container restarts the mirror pod reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// Last container state the mirror pod reports (for example `Terminated: Error, exit
    /// code 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<String>,
    /// Anything else worth knowing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A managed file found changed by hand.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DriftRecord {
    /// The file.
    pub file: String,
    /// `Restored` (enforce mode) or `Reported` (observe mode).
    pub action: String,
    /// When it was detected.
    #[schemars(schema_with = "date_time_schema")]
    pub detected_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// A stray file moved to quarantine.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineRecord {
    /// Name the file had in the manifest directory.
    pub file: String,
    /// Where it is now.
    pub moved_to: String,
    /// Why it was moved.
    pub reason: String,
    /// When it was moved.
    #[schemars(schema_with = "date_time_schema")]
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// Expiry of one certificate.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The component that uses it.
    pub component: String,
    /// The file.
    pub path: String,
    /// The certificate's notAfter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub not_after: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Why the expiry is unknown, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
