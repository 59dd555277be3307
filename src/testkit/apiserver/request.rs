//! What the fake API server reads from a request: the resource a path names, label and field
//! selectors, merge patches, and the kinds it knows.

use serde_json::{Value, json};

pub(super) fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "nodes" => ("v1", "Node"),
        "pods" => ("v1", "Pod"),
        "secrets" => ("v1", "Secret"),
        "leases" => ("coordination.k8s.io/v1", "Lease"),
        "events" => ("events.k8s.io/v1", "Event"),
        "controlplaneconfigs" => ("kubeplane.io/v1alpha1", "ControlPlaneConfig"),
        "controlplanenodes" => ("kubeplane.io/v1alpha1", "ControlPlaneNode"),
        _ => ("v1", "Unknown"),
    }
}

/// Label selector terms: `k=v`, `k==v`, `k!=v`, `k`, `!k`.
pub(super) fn labels_match(selector: &str, obj: &Value) -> bool {
    let labels = obj["metadata"]["labels"].as_object();
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

pub(super) fn fields_match(selector: &str, obj: &Value) -> bool {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some(("metadata.name", v)) => obj["metadata"]["name"] == v,
            Some(("metadata.namespace", v)) => obj["metadata"]["namespace"] == v,
            _ => true,
        })
}

/// JSON merge patch (RFC 7386): objects merge, `null` deletes, everything else replaces.
pub(super) fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub(super) fn metadata_only(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

pub(super) struct Target {
    pub(super) resource: String,
    pub(super) namespace: String,
    pub(super) name: Option<String>,
    pub(super) status: bool,
}

pub(super) fn parse_path(path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match *seg.first()? {
        "api" => seg.get(2..)?,
        "apis" => seg.get(3..)?,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    match rest {
        [resource] => Some(Target {
            resource: resource.to_string(),
            namespace,
            name: None,
            status: false,
        }),
        [resource, name] => Some(Target {
            resource: resource.to_string(),
            namespace,
            name: Some(name.to_string()),
            status: false,
        }),
        [resource, name, "status"] => Some(Target {
            resource: resource.to_string(),
            namespace,
            name: Some(name.to_string()),
            status: true,
        }),
        _ => None,
    }
}
