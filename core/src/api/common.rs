//! Types and schema helpers both custom resources share.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A condition in the standard Kubernetes shape, so `kubectl wait --for=condition=Ready` and
/// GitOps health checks understand it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition: `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason for the last transition, in PascalCase.
    pub reason: String,
    /// What happened, in words a user can act on.
    #[serde(default)]
    pub message: String,
    /// When the condition last changed status.
    #[schemars(schema_with = "date_time_schema")]
    pub last_transition_time: Time,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// Whether this condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let keep_time = existing.status == new.status;
            let time = existing.last_transition_time.clone();
            *existing = new;
            if keep_time {
                existing.last_transition_time = time;
            }
        }
        None => conditions.push(new),
    }
}

/// Schema of an RFC 3339 timestamp.
pub fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time", "nullable": true })
}

/// Schema of a free-form object whose fields the API server keeps as given.
pub fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, secs: i64) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap()),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut v = vec![cond("True", 10)];
        set_condition(&mut v, cond("True", 20));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].last_transition_time.0.as_second(), 10);
        set_condition(&mut v, cond("False", 30));
        assert_eq!(v[0].last_transition_time.0.as_second(), 30);
        assert!(!v[0].is_true());
        assert!(find_condition(&v, "Degraded").is_none());
    }
}
