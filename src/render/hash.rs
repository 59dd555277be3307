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

/// Feeds serialized JSON straight into the hasher.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SHA-256 over the JSON of a value. Deterministic: struct fields serialize in declaration
/// order and every map in the API types is a `BTreeMap`.
fn json_digest<T: serde::Serialize>(value: &T, extra: &[&[u8]]) -> [u8; 32] {
    let mut w = HashWriter(Sha256::new());
    // Serializing API types cannot fail: they hold only strings, numbers, maps and lists.
    let _ = serde_json::to_writer(&mut w, value);
    for e in extra {
        w.0.update(e);
    }
    w.0.finalize().into()
}

/// The content hash of a Pod on a node: SHA-256 over the Pod's JSON without `metadata.uid`
/// and the node name, first 128 bits in hex — the length of kubelet's own config hashes.
/// kubelet keeps a manifest's `metadata.uid` as the mirror pod's `kubernetes.io/config.hash`,
/// so this is the value to wait for.
pub fn pod_uid(pod: &Pod, node_name: &str) -> String {
    if pod.metadata.uid.is_some() {
        let mut pod = pod.clone();
        pod.metadata.uid = None;
        return pod_uid(&pod, node_name);
    }
    hex(&json_digest(pod, &[b"\0node=", node_name.as_bytes()])[..16])
}

/// Sets `metadata.uid` to the Pod's content hash on the node and returns it.
pub fn stamp_uid(pod: &mut Pod, node_name: &str) -> String {
    pod.metadata.uid = None;
    let uid = pod_uid(pod, node_name);
    pod.metadata.uid = Some(uid.clone());
    uid
}

/// The version of the renderer that goes into every revision name ([`revision_of`]).
pub const RENDERER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A spec-level revision, for `kubeplane apply` (one node, no operator): the first 10 hex
/// digits of SHA-256 over the spec's JSON without `spec.rollout` (pausing, `minReadySeconds`,
/// health timeouts and the progress deadline change no file), the renderer version and the
/// digest of the encryption configuration. The operator names revisions with [`revision_of`],
/// which also covers the node facts.
pub fn revision(spec: &ControlPlaneConfigSpec, encryption_config_sha256: Option<&str>) -> String {
    // Rollout settings change no file, except a probe profile other than the default.
    let probe_profile = spec
        .rollout
        .as_ref()
        .and_then(|r| r.probe_profile)
        .filter(|p| *p != crate::api::ProbeProfile::Kubeadm);
    let spec = ControlPlaneConfigSpec {
        rollout: probe_profile.map(|p| crate::api::Rollout {
            probe_profile: Some(p),
            ..Default::default()
        }),
        ..spec.clone()
    };
    let renderer = [b"\0renderer=".as_slice(), RENDERER_VERSION.as_bytes()];
    let digest = match encryption_config_sha256 {
        Some(d) => json_digest(
            &spec,
            &[renderer[0], renderer[1], b"\0encryption=", d.as_bytes()],
        ),
        None => json_digest(&spec, &renderer),
    };
    hex(&digest[..5])
}

/// The revision of a rollout: the first 10 hex digits of SHA-256 over exactly what the nodes
/// get — for every node (in name order) its name, each manifest's file name and bytes, each
/// side file's component, path, source and SHA-256 (a Secret-backed file's digest is the
/// Secret's content's) — and [`RENDERER_VERSION`]. Rollout settings that change no file
/// (`paused`, `minReadySeconds`, health timeouts, the progress deadline) are not in it.
pub fn revision_of<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a super::Rendered)>) -> String {
    let mut nodes: Vec<(&str, &super::Rendered)> = nodes.into_iter().collect();
    nodes.sort_by_key(|(name, _)| *name);
    let mut h = Sha256::new();
    h.update(b"kubeplane-renderer=");
    h.update(RENDERER_VERSION.as_bytes());
    let field = |h: &mut Sha256, tag: &[u8], value: &[u8]| {
        // Length-prefixed, so no two different inputs feed the same bytes.
        h.update(tag);
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    };
    for (name, r) in nodes {
        field(&mut h, b"\0node", name.as_bytes());
        for p in &r.pods {
            field(
                &mut h,
                b"\0manifest",
                p.component.manifest_file().as_bytes(),
            );
            field(&mut h, b"\0content", p.yaml.as_bytes());
        }
        for f in &r.files {
            // Serializing API types cannot fail.
            let json = serde_json::to_vec(f).unwrap_or_default();
            field(&mut h, b"\0file", &json);
        }
    }
    hex(&h.finalize()[..5])
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
    fn json_maps_are_sorted_so_hashes_and_yaml_are_stable() {
        // serde_json is built without `preserve_order`: objects iterate in key order. The
        // YAML writer and the hashes rely on it.
        let mut m = serde_json::Map::new();
        m.insert("b".into(), 1.into());
        m.insert("a".into(), 2.into());
        assert_eq!(m.keys().next().map(String::as_str), Some("a"));
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
        assert_eq!(a, stamp_uid(&mut pod, "cp-1"));
        assert_eq!(pod.metadata.uid.as_deref(), Some(a.as_str()));
        pod.metadata.name = Some("kube-scheduler2".into());
        assert_ne!(a, pod_uid(&pod, "cp-1"));
    }

    #[test]
    fn spec_revision_ignores_rollout_settings() {
        let mut spec = ControlPlaneConfigSpec {
            kubernetes_version: "v1.36.2".into(),
            ..Default::default()
        };
        let r1 = revision(&spec, None);
        spec.rollout = Some(crate::api::Rollout {
            paused: Some(true),
            min_ready_seconds: Some(30),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        });
        assert_eq!(r1, revision(&spec, None));
        // Except the fast probe profile, which changes the manifests.
        spec.rollout.as_mut().unwrap().probe_profile = Some(crate::api::ProbeProfile::Kubeadm);
        assert_eq!(r1, revision(&spec, None));
        spec.rollout.as_mut().unwrap().probe_profile = Some(crate::api::ProbeProfile::Fast);
        assert_ne!(r1, revision(&spec, None));
    }

    #[test]
    fn revision_changes_with_spec_and_secret() {
        let mut spec = ControlPlaneConfigSpec {
            kubernetes_version: "v1.36.2".into(),
            ..Default::default()
        };
        let r1 = revision(&spec, None);
        assert_eq!(r1.len(), 10);
        assert_eq!(r1, revision(&spec, None));
        assert_ne!(r1, revision(&spec, Some("abc")));
        spec.kubernetes_version = "v1.36.3".into();
        assert_ne!(r1, revision(&spec, None));
    }
}
