//! Managed encryption at rest (`spec.apiServer.encryption.managed`), the pure part: the key
//! state kept in the keys Secret, the EncryptionConfiguration rendered from it, the state
//! machine ([`machine`]) and the reading of stored prefixes.
//!
//! The order is the Kubernetes documentation's key rotation
//! (kubernetes.io/docs/tasks/administer-cluster/encrypt-data, "Rotating a decryption key"): a
//! new key is listed second on every API server, then first on every API server, then every
//! object is rewritten, then the old key is removed. Turning encryption on is the same with
//! `identity` as the old key, turning it off the same with `identity` as the new one.

pub mod machine;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{EncryptionProvider, ManagedEncryption};

/// Default name of the keys Secret (namespace `kube-system`).
pub const DEFAULT_SECRET_NAME: &str = "kubeplane-encryption";
/// Key of the keys Secret holding the rendered EncryptionConfiguration (what the agents read).
pub const CONFIG_KEY: &str = "encryption-config.yaml";
/// Key of the keys Secret holding the [`KeyState`] (JSON).
pub const STATE_KEY: &str = "state.json";
/// Suffix of the Secret retired keys are kept in.
pub const RETIRED_SUFFIX: &str = "-retired";
/// Resources encrypted by default.
pub const DEFAULT_RESOURCES: [&str; 1] = ["secrets"];
/// Default rewrite rate.
pub const DEFAULT_OBJECTS_PER_SECOND: i32 = 50;
/// Name of the identity "key" in [`KeyState::keys`] and in counts.
pub const IDENTITY: &str = "identity";

/// A step of the key lifecycle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The new key is listed second: every API server can read it, none writes with it.
    KeyAdded,
    /// The new key is listed first: every write uses it; the old one still reads.
    KeyPrimary,
    /// Every stored object of the resources is being rewritten with the new key.
    Migrating,
    /// The rewrite is done and verified: no stored object needs the old key.
    Migrated,
    /// The old key is removed (kept in the backup Secret). The resting state.
    OldKeyRetired,
}

impl Step {
    /// The name shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::KeyAdded => "KeyAdded",
            Step::KeyPrimary => "KeyPrimary",
            Step::Migrating => "Migrating",
            Step::Migrated => "Migrated",
            Step::OldKeyRetired => "OldKeyRetired",
        }
    }
}

/// One key of the configuration. `secret` is the base64 key material (empty for identity);
/// `Debug` never prints it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Key {
    /// Name, unique for ever (it is part of every stored value's prefix).
    pub name: String,
    /// Provider.
    pub provider: EncryptionProvider,
    /// Base64 of the key bytes; empty for identity.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Key {
    /// The identity provider as a list entry.
    pub fn identity() -> Key {
        Key {
            name: IDENTITY.into(),
            provider: EncryptionProvider::Identity,
            secret: String::new(),
        }
    }

    /// Whether this is identity (no encryption).
    pub fn is_identity(&self) -> bool {
        self.provider == EncryptionProvider::Identity
    }
}

/// What the keys Secret holds besides the rendered configuration: the source of truth of the
/// lifecycle, written in one update together with the configuration it renders to, so an
/// operator restart between any two steps resumes where the Secret says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyState {
    /// The step.
    pub step: Step,
    /// The resources the configuration covers.
    pub resources: Vec<String>,
    /// The keys in configuration order (the first writes).
    pub keys: Vec<Key>,
    /// The key the rotation in progress moves to (the first key once at rest).
    pub target: String,
    /// The `rotation.generation` the last started rotation serves.
    #[serde(default)]
    pub observed_rotation: i64,
    /// Serial of the last generated key (key names are `key<serial>-<unix seconds>`).
    #[serde(default)]
    pub serial: u32,
    /// Unix seconds when the last rotation finished (for `rotation.intervalDays`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_unix: Option<i64>,
}

impl KeyState {
    /// The key writes use.
    pub fn active(&self) -> Option<&Key> {
        self.keys.first()
    }

    /// The EncryptionConfiguration of this state, byte for byte what every node gets.
    pub fn render(&self) -> String {
        render_config(&self.resources, &self.keys)
    }

    /// The configuration's SHA-256 (hex), the nodes' file digest.
    pub fn config_sha256(&self) -> String {
        sha256_hex(self.render().as_bytes())
    }

    /// Key names in configuration order.
    pub fn key_names(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.name.clone()).collect()
    }
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The spec with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Provider of new keys.
    pub provider: EncryptionProvider,
    /// Resources.
    pub resources: Vec<String>,
    /// `rotation.generation` (0 when unset).
    pub rotation: i64,
    /// `rotation.intervalDays` in seconds.
    pub interval_seconds: Option<i64>,
    /// Rewrite rate.
    pub objects_per_second: i32,
    /// Name of the keys Secret.
    pub secret_name: String,
}

impl Desired {
    /// Defaults applied to the spec.
    pub fn from_spec(m: &ManagedEncryption) -> Desired {
        let mut resources = if m.resources.is_empty() {
            DEFAULT_RESOURCES.iter().map(ToString::to_string).collect()
        } else {
            m.resources.clone()
        };
        resources.dedup();
        Desired {
            provider: m.provider.unwrap_or_default(),
            resources,
            rotation: m.rotation.as_ref().and_then(|r| r.generation).unwrap_or(0),
            interval_seconds: m
                .rotation
                .as_ref()
                .and_then(|r| r.interval_days)
                .map(|d| i64::from(d) * 86_400),
            objects_per_second: m
                .migration
                .as_ref()
                .and_then(|x| x.objects_per_second)
                .unwrap_or(DEFAULT_OBJECTS_PER_SECOND),
            secret_name: m
                .secret_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SECRET_NAME.to_string()),
        }
    }
}

/// The EncryptionConfiguration (`apiserver.config.k8s.io/v1`) for the resources with the keys
/// in order, one provider entry per key. The format is fixed so the same keys always give the
/// same bytes (and the same revision).
pub fn render_config(resources: &[String], keys: &[Key]) -> String {
    let mut out = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n",
    );
    for r in resources {
        out.push_str(&format!("  - {r}\n"));
    }
    out.push_str("  providers:\n");
    for k in keys {
        if k.is_identity() {
            out.push_str("  - identity: {}\n");
        } else {
            out.push_str(&format!(
                "  - {}:\n      keys:\n      - name: {}\n        secret: {}\n",
                k.provider.name(),
                k.name,
                k.secret
            ));
        }
    }
    out
}

/// What a stored value's prefix says about the key that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoredKey {
    /// Not encrypted (protobuf `k8s\0` or JSON).
    Identity,
    /// `k8s:enc:<provider>:v1:<name>:`.
    Key {
        /// The provider.
        provider: String,
        /// The key name.
        name: String,
    },
}

impl StoredKey {
    /// The name in counts: the key's name, or `identity`.
    pub fn name(&self) -> &str {
        match self {
            StoredKey::Identity => IDENTITY,
            StoredKey::Key { name, .. } => name,
        }
    }
}

/// Reads the prefix kube-apiserver's encryption providers put on a stored value.
pub fn classify_stored(value: &[u8]) -> StoredKey {
    let Some(rest) = value.strip_prefix(b"k8s:enc:") else {
        return StoredKey::Identity;
    };
    let mut parts = rest.splitn(4, |b| *b == b':');
    let provider = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    if version != b"v1" || parts.next().is_none() {
        return StoredKey::Key {
            provider: String::from_utf8_lossy(provider).into_owned(),
            name: String::new(),
        };
    }
    StoredKey::Key {
        provider: String::from_utf8_lossy(provider).into_owned(),
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

/// The etcd key prefix of a resource's objects: `<prefix>/<resource>/` for the core group (and
/// a resource given without group), `<prefix>/<group>/<resource>/` otherwise (where
/// kube-apiserver stores custom resources).
pub fn etcd_prefix(prefix: &str, resource: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    match resource.split_once('.') {
        None => format!("{prefix}/{resource}/"),
        Some((r, group)) => format!("{prefix}/{group}/{r}/"),
    }
}

#[cfg(test)]
mod tests;
