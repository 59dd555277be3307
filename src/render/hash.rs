//! Content hashes: a Pod's `metadata.uid` and a config's revision.

use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

use crate::api::ControlPlaneConfigSpec;

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The content hash of a Pod on a node: SHA-256 over the Pod's JSON (keys sorted, without
/// `metadata.uid`) and the node name, first 128 bits in hex — the length of kubelet's own
/// config hashes. kubelet keeps a manifest's `metadata.uid` as the mirror pod's
/// `kubernetes.io/config.hash`, so this is the value to wait for.
pub fn pod_uid(pod: &Pod, node_name: &str) -> String {
    let mut pod = pod.clone();
    pod.metadata.uid = None;
    // Serializing k8s-openapi types to a Value cannot fail: they hold only strings, numbers,
    // maps and lists.
    let value = serde_json::to_value(&pod).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(canonical_json(&value).as_bytes());
    hasher.update(b"\0node=");
    hasher.update(node_name.as_bytes());
    hex(&hasher.finalize()[..16])
}

/// Sets `metadata.uid` to the Pod's content hash on the node and returns it.
pub fn stamp_uid(pod: &mut Pod, node_name: &str) -> String {
    let uid = pod_uid(pod, node_name);
    pod.metadata.uid = Some(uid.clone());
    uid
}

/// The revision of a spec: the first 10 hex digits of SHA-256 over the spec's JSON (keys
/// sorted) and the digest of the encryption configuration, so a changed Secret is a new
/// revision too.
pub fn revision(spec: &ControlPlaneConfigSpec, encryption_config_sha256: Option<&str>) -> String {
    let value = serde_json::to_value(spec).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(canonical_json(&value).as_bytes());
    if let Some(d) = encryption_config_sha256 {
        hasher.update(b"\0encryption=");
        hasher.update(d.as_bytes());
    }
    hex(&hasher.finalize()[..5])
}

/// JSON with object keys sorted at every level, whatever map type serde_json was built with.
fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", body.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_known_digest() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"d": [true, null], "c": "x"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn uid_depends_on_node_and_content_but_not_on_uid() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("kube-scheduler".into());
        let a = pod_uid(&pod, "cp-1");
        assert_eq!(a.len(), 32);
        assert_ne!(a, pod_uid(&pod, "cp-2"));
        pod.metadata.uid = Some("something".into());
        assert_eq!(a, pod_uid(&pod, "cp-1"));
        pod.metadata.name = Some("kube-scheduler2".into());
        assert_ne!(a, pod_uid(&pod, "cp-1"));
    }

    #[test]
    fn revision_changes_with_spec_and_secret() {
        let mut spec = ControlPlaneConfigSpec {
            kubernetes_version: "v1.36.2".into(),
            ..Default::default()
        };
        let r1 = revision(&spec, None);
        assert_eq!(r1.len(), 10);
        assert_ne!(r1, revision(&spec, Some("abc")));
        spec.kubernetes_version = "v1.36.3".into();
        assert_ne!(r1, revision(&spec, None));
    }
}
