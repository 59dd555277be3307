//! `spec.apiServer.encryption`: encryption at rest, either passed through from a Secret the
//! user keeps (`secretRef`) or managed by kubeplane (`managed`): keys generated, rotated and
//! retired across every kube-apiserver in the order the Kubernetes documentation gives
//! (kubernetes.io/docs/tasks/administer-cluster/encrypt-data, "Rotating a decryption key").

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::date_time_schema;

/// Encryption at rest: exactly one of `secretRef` (you keep the EncryptionConfiguration) and
/// `managed` (kubeplane generates, rotates and retires the keys).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.managed)").message("set exactly one of encryption.secretRef (your own EncryptionConfiguration) and encryption.managed (keys kubeplane generates and rotates)"))]
pub struct Encryption {
    /// The Secret holding your EncryptionConfiguration YAML. The agent on each node reads it,
    /// writes it to a managed file (mode 0600) and passes it as `--encryption-provider-config`.
    /// kubeplane never changes it: rotating its keys is up to you.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// Keys kubeplane generates, rotates and retires. The keys live in a Secret in
    /// `kube-system` that only the operator and the agents may read; they never appear in a
    /// custom resource, a log line, an Event or a metric. Progress is in
    /// `status.encryption`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedEncryption>,
}

/// Encryption at rest with keys kubeplane owns. A key is added read-only on every node, then
/// made the write key on every node, every stored object is rewritten with it, and only then
/// the old key is removed (and kept in a backup Secret for restoring old etcd snapshots).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.provider) || self.provider != 'aesgcm' || (has(self.rotation) && has(self.rotation.intervalDays))").message("provider aesgcm must be rotated at least every 200,000 writes (kubernetes.io/docs/tasks/administer-cluster/encrypt-data): set rotation.intervalDays, or use secretbox"))]
pub struct ManagedEncryption {
    /// The provider new keys are for: `secretbox` (XSalsa20 and Poly1305, 32-byte keys),
    /// `aescbc` (AES-CBC with PKCS#7 padding, 32-byte keys), `aesgcm` (AES-GCM with a random
    /// nonce, 32-byte keys; must be rotated at least every 200,000 writes, so it needs
    /// `rotation.intervalDays`), or `identity` (no encryption: turns encryption off the same
    /// safe way, rewriting every object in plain text before the last key is removed).
    /// Default: `secretbox`, the strongest of the local providers in the Kubernetes
    /// documentation's table (kubernetes.io/docs/tasks/administer-cluster/encrypt-data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<EncryptionProvider>,

    /// The resources encrypted, as the EncryptionConfiguration names them: `secrets`,
    /// `configmaps`, or `RESOURCE.GROUP` for other groups. Fixed once encryption is on.
    /// Default: `[secrets]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub resources: Vec<String>,

    /// When keys are rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<KeyRotation>,

    /// How stored objects are rewritten with the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,

    /// Name of the Secret in `kube-system` holding the keys and the rendered
    /// EncryptionConfiguration. kubeplane creates it and never deletes it (deleting it loses
    /// every encrypted object). Default: `kubeplane-encryption`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub secret_name: Option<String>,

    /// How the operator checks that no stored object still needs the old key before it removes
    /// it. Without it the operator relies on its own rewrite pass: every object that existed
    /// when all API servers wrote with the new key was rewritten (or changed by someone else,
    /// which also rewrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// A provider of the EncryptionConfiguration (`apiserver.config.k8s.io/v1`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionProvider {
    /// XSalsa20 and Poly1305.
    #[default]
    Secretbox,
    /// AES-CBC with PKCS#7 padding.
    Aescbc,
    /// AES-GCM with a random nonce.
    Aesgcm,
    /// No encryption.
    Identity,
}

impl EncryptionProvider {
    /// The provider's name in the EncryptionConfiguration and in the stored prefix
    /// `k8s:enc:<name>:v1:<key>:`.
    pub fn name(self) -> &'static str {
        match self {
            EncryptionProvider::Secretbox => "secretbox",
            EncryptionProvider::Aescbc => "aescbc",
            EncryptionProvider::Aesgcm => "aesgcm",
            EncryptionProvider::Identity => "identity",
        }
    }

    /// Bytes of a new key: 32 for every provider (secretbox takes only 32; AES-256 for aescbc
    /// and aesgcm, which also take 16 or 24). None for identity.
    pub fn key_bytes(self) -> Option<usize> {
        match self {
            EncryptionProvider::Identity => None,
            _ => Some(32),
        }
    }
}

/// When keys are rotated: each time `generation` changes, and every `intervalDays` if set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    /// Change this number (for example add one) to rotate once: a new key is generated and the
    /// old one retired through every step. A change while a rotation runs is taken up after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub generation: Option<i64>,

    /// Rotate automatically this many days after the last rotation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub interval_days: Option<i32>,
}

/// How stored objects are rewritten.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// Objects rewritten per second at most (read, then replaced with their
    /// `resourceVersion`). Default: `50`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub objects_per_second: Option<i32>,
}

/// An independent check of what etcd stores.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Read etcd directly and count the stored objects per key prefix
    /// (`k8s:enc:<provider>:v1:<key>:`): the old key is removed only when no object carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdAccess>,
}

/// How the operator reaches etcd (read-only range requests over the etcd v3 JSON gateway).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdAccess {
    /// Client URLs, for example `https://10.0.0.21:2379`. Default:
    /// `spec.etcd.external.endpoints`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(e, size(e) <= 2048 && e.startsWith('https://'))").message("etcd endpoints for verification must be https:// URLs"))]
    pub endpoints: Vec<String>,

    /// A Secret in `kube-system` with `ca.crt`, `tls.crt` and `tls.key`: the etcd CA and a
    /// client certificate etcd accepts.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// etcd key prefix kube-apiserver stores under (`--etcd-prefix`). Default: `/registry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub prefix: Option<String>,
}

/// Where managed encryption stands (`status.encryption`). The Secret holding the keys is the
/// source of truth; this is its report.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// The step: `KeyAdded` (new key listed second: readable everywhere, not yet used),
    /// `KeyPrimary` (listed first: all writes use it), `Migrating` (every object being
    /// rewritten), `Migrated` (verified: no object needs the old key), `OldKeyRetired` (the
    /// old key removed from every node; the resting state between rotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,

    /// `Progressing`, `Stable` or `Degraded` (halted: see `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,

    /// What is happening, and when halted what is safe to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The provider of the write key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,

    /// The key new writes use (`identity` when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key: Option<String>,

    /// Names of the keys in the configuration, in order (the first writes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,

    /// SHA-256 of the EncryptionConfiguration of this step (the nodes' file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,

    /// Each selected node: whether it runs kube-apiserver with this step's configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeEncryption>,

    /// The `rotation.generation` the last rotation served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_rotation: Option<i64>,

    /// When the last rotation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_rotation_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// Progress of the rewrite of stored objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,

    /// Stored objects per key, from the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
}

/// One node's configuration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeEncryption {
    /// The node.
    pub node: String,
    /// The revision it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Whether it runs kube-apiserver healthy with this step's configuration.
    pub current: bool,
}

/// Progress of the rewrite.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// The key objects are rewritten to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Index in `resources` of the resource being rewritten; equal to their number when done.
    pub resource_index: i32,
    /// The resource being rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The list continue token of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// Objects rewritten (replaced, or changed by someone else in between, or deleted).
    pub migrated: i64,
    /// Objects whose replace failed and will be retried.
    #[serde(default)]
    pub failed: i64,
    /// Whether every resource was gone through without a failure.
    #[serde(default)]
    pub complete: bool,
    /// When this pass started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub started: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// Stored objects per key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// `etcd` (counted from what etcd stores) or `rewrite` (every object rewritten by the
    /// operator's pass).
    pub method: String,
    /// Objects per key name (`identity` for plain text), for `etcd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<KeyCount>,
}

/// Objects stored under one key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyCount {
    /// The key's name (`identity` for plain text, `unknown:<provider>` for a key not in the
    /// configuration).
    pub key: String,
    /// The number of stored objects.
    pub count: i64,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret. Default: `kube-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key in the Secret's data. Default: `config.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}
