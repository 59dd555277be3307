//! What the config's previous status says (generation, conditions, the node in flight), and
//! the merge of new condition values into it.

use super::*;

pub(super) fn observed_generation(cpc: &ControlPlaneConfig) -> Option<i64> {
    cpc.status.as_ref().and_then(|s| s.observed_generation)
}

pub(super) fn degraded_reason(cpc: &ControlPlaneConfig) -> Option<String> {
    let st = cpc.status.as_ref()?;
    let c = find_condition(&st.conditions, condition::DEGRADED)?;
    c.is_true().then(|| c.reason.clone())
}

pub(super) fn previous(cpc: &ControlPlaneConfig) -> Previous {
    let st = cpc.status.as_ref();
    Previous {
        revision: st.and_then(|s| s.revision.clone()),
        node_in_flight: st.and_then(|s| s.node_in_flight.clone()),
        ready: st
            .and_then(|s| find_condition(&s.conditions, condition::READY))
            .is_some_and(|c| c.is_true()),
        degraded_reason: degraded_reason(cpc),
        in_flight_revision: st.and_then(|s| s.node_in_flight_revision.clone()),
        in_flight_since: st
            .and_then(|s| s.node_in_flight_since.as_ref())
            .map(|t| t.0),
        failed: st.map(|s| s.failed_revisions.clone()).unwrap_or_default(),
    }
}

/// The previous conditions with the new values set; transition times kept where the status
/// did not change.
pub(super) fn merge_conditions(
    cpc: &ControlPlaneConfig,
    values: &[ConditionValue],
    generation: Option<i64>,
) -> Vec<crate::api::Condition> {
    let mut conditions = cpc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(Timestamp::now());
    for v in values {
        set_condition(
            &mut conditions,
            crate::api::Condition {
                type_: v.type_.to_string(),
                status: if v.status { "True" } else { "False" }.into(),
                reason: v.reason.clone(),
                message: v.message.clone(),
                last_transition_time: now.clone(),
                observed_generation: generation,
            },
        );
    }
    conditions.sort_by_key(|c| {
        [
            condition::READY,
            condition::PROGRESSING,
            condition::DEGRADED,
        ]
        .iter()
        .position(|t| *t == c.type_)
        .unwrap_or(usize::MAX)
    });
    conditions
}
