//! YAML output: keys sorted, lists not indented under their key, as kubeadm writes.

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

/// Serializes any value to YAML with sorted keys (through `serde_json::Value`, whose objects
/// are ordered maps).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    write(&value)
}

/// A static Pod manifest as written to disk: sorted keys and `status: {}`, like kubeadm.
/// k8s-openapi writes struct fields in alphabetical order of their JSON names and every map
/// is a `BTreeMap`, so the Pod serializes sorted without a detour through `Value` (the
/// kubeadm parity and golden tests pin the output).
pub fn pod_to_yaml(pod: &Pod) -> Result<String, String> {
    let with_status = Pod {
        status: Some(Default::default()),
        ..pod.clone()
    };
    write(&with_status)
}

fn write<T: Serialize>(value: &T) -> Result<String, String> {
    // Plain scalars on one line, however long, as Go's YAML writer emits them; the default
    // YAML 1.1 quoting keeps kubelet's reader from taking `on`, `yes` or `1.2.3.4` for
    // non-strings.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let mut out = String::with_capacity(4096);
    serde_saphyr::to_fmt_writer_with_options(&mut out, value, options)
        .map_err(|e| e.to_string())?;
    Ok(out)
}
