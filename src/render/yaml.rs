//! YAML output: keys sorted, lists not indented under their key, as kubeadm writes.

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

/// Serializes any value to YAML with sorted keys.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let sorted = sort_keys(value);
    // Plain scalars on one line, however long, as Go's YAML writer emits them; quoting keeps
    // YAML 1.1 readers (kubelet's) from taking `on`, `yes` or `1.2.3.4` for non-strings.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(&sorted, options).map_err(|e| e.to_string())
}

/// A static Pod manifest as written to disk: sorted keys and `status: {}`, like kubeadm.
pub fn pod_to_yaml(pod: &Pod) -> Result<String, String> {
    let mut value = serde_json::to_value(pod).map_err(|e| e.to_string())?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("status".into(), serde_json::json!({}));
    }
    to_yaml(&value)
}

/// Rebuilds objects with keys in sorted order (a no-op unless serde_json keeps insertion
/// order).
fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}
