//! Why a rollout halts: revisions remembered as failed, nodes past the progress deadline,
//! nodes settled in `RolledBack` or `Failed`.

use super::*;

/// `status.failedRevisions` after this decision: what the previous status remembered, plus
/// the nodes that settled in `RolledBack` or `Failed` at their revision now, minus nodes that
/// since became healthy at the remembered revision; those of the current revision first, at
/// most [`MAX_FAILED_REVISIONS`].
pub(super) fn remember_failures(
    input: &RolloutInput<'_>,
    ordered: &[&NodeView],
) -> Vec<FailedRevision> {
    let rev = input.revision;
    let mut out: Vec<FailedRevision> = input
        .previous
        .failed
        .iter()
        .filter(|f| {
            !ordered
                .iter()
                .any(|n| n.name == f.node && n.settled_at(&f.revision) == Some(NodePhase::Healthy))
        })
        .cloned()
        .collect();
    for n in ordered {
        let Some(phase) = n.settled_at(&n.spec_revision) else {
            continue;
        };
        if phase == NodePhase::Healthy
            || out
                .iter()
                .any(|f| f.node == n.name && f.revision == n.spec_revision)
        {
            continue;
        }
        out.push(FailedRevision {
            node: n.name.clone(),
            revision: n.spec_revision.clone(),
            phase: phase.as_str().to_string(),
            reason: n
                .reason
                .clone()
                .filter(|r| is_condition_reason(r))
                .unwrap_or_else(|| phase.as_str().to_string()),
            message: n.message.clone().filter(|m| !m.is_empty()),
            at: Time(input.now),
        });
    }
    // Current revision first, then newest first; a stable order for equal times.
    out.sort_by(|a, b| {
        (b.revision == rev)
            .cmp(&(a.revision == rev))
            .then(b.at.0.cmp(&a.at.0))
            .then(a.node.cmp(&b.node))
            .then(a.revision.cmp(&b.revision))
    });
    out.truncate(MAX_FAILED_REVISIONS);
    out
}

pub(super) fn halt_remembered(f: &FailedRevision, rev: &str) -> Halt {
    let phase = if f.phase == NodePhase::Failed.as_str() {
        NodePhase::Failed
    } else {
        NodePhase::RolledBack
    };
    let what = match phase {
        NodePhase::Failed => "failed",
        _ => "rolled back",
    };
    let detail = f
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Halt {
        node: f.node.clone(),
        phase,
        reason: f.reason.clone(),
        message: format!(
            "rollout halted: node {} {what} at revision {rev} (remembered in status.failedRevisions since {}){detail}; no node is given this revision again until the spec changes",
            f.node, f.at.0
        ),
    }
}

pub(super) fn deadline_halt(
    n: &NodeView,
    its_rev: &str,
    rev: &str,
    elapsed: SignedDuration,
    deadline: i64,
) -> Halt {
    let newer = if its_rev == rev {
        String::new()
    } else {
        format!(
            "; revision {rev} replaces it once the agent is neither writing files nor rolling back"
        )
    };
    Halt {
        node: n.name.clone(),
        phase: n.phase.unwrap_or_default(),
        reason: reason::PROGRESS_DEADLINE_EXCEEDED.to_string(),
        message: format!(
            "rollout halted: node {} has been {} at revision {its_rev} for {}, past spec.rollout.progressDeadlineSeconds ({deadline}s); no other node starts until it settles{newer}; check its agent (kubectl describe cpn {})",
            n.name,
            n.doing(),
            human_duration(elapsed),
            n.name
        ),
    }
}
