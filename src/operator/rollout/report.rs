//! What a rollout decision says: the config's conditions, the Events that tell the story, and
//! the words both use (durations, progress lines).

use super::*;

/// `16m40s`, `2h0m5s`, `45s`.
pub fn human_duration(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

pub(super) struct Counts<'a> {
    pub(super) rev: &'a str,
    pub(super) total: i32,
    pub(super) updated: i32,
    pub(super) ready: i32,
}

pub(super) fn halt(n: &NodeView, phase: NodePhase, rev: &str) -> Halt {
    let reason = n
        .reason
        .clone()
        .filter(|r| is_condition_reason(r))
        .unwrap_or_else(|| phase.as_str().to_string());
    let what = match phase {
        NodePhase::Failed => "failed",
        _ => "rolled back",
    };
    let detail = n
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Halt {
        node: n.name.clone(),
        phase,
        reason,
        message: format!(
            "rollout halted: node {} {what} at revision {rev}{detail}; no other node is updated until the spec changes",
            n.name
        ),
    }
}

/// Whether a string is a valid condition reason (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`,
/// at most 1024 characters), as the API server requires of `metav1.Condition`.
pub fn is_condition_reason(s: &str) -> bool {
    let b = s.as_bytes();
    let ok_inner = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':');
    !b.is_empty()
        && b.len() <= 1024
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|&c| ok_inner(c))
        && !matches!(b[b.len() - 1], b',' | b':')
}

/// `node cp-2: WaitingForKubelet (revision abc, 1 of 3 updated)`.
pub fn progress_line(node: &str, phase: &str, revision: &str, updated: i32, total: i32) -> String {
    let rev = if revision.is_empty() {
        "none"
    } else {
        revision
    };
    format!("node {node}: {phase} (revision {rev}, {updated} of {total} updated)")
}

pub(super) fn waiting_line(waiting: &[String]) -> String {
    match waiting {
        [one] => format!("waiting for the agent on node {one} to report its node facts"),
        many => format!(
            "waiting for the agents on nodes {} to report their node facts",
            many.join(", ")
        ),
    }
}

/// Nodes that hold the rollout without being in flight.
#[derive(Clone, Copy)]
pub(super) struct Blocked<'a> {
    /// Nodes whose agent has not reported facts.
    pub waiting: &'a [String],
    /// Nodes whose kubelet stopped posting status.
    pub unreachable: &'a [String],
}

pub(super) fn conditions(
    phase: RolloutPhase,
    c: &Counts<'_>,
    halted: Option<&Halt>,
    start: Option<&str>,
    in_flight: &[&NodeView],
    blocked: Blocked<'_>,
    paused: bool,
) -> Vec<ConditionValue> {
    let Blocked {
        waiting,
        unreachable,
    } = blocked;
    let healthy = format!(
        "{} of {} nodes healthy at revision {}",
        c.ready, c.total, c.rev
    );
    let (ready_reason, progressing_reason) = match phase {
        RolloutPhase::Complete => ("RolloutComplete", "RolloutComplete"),
        RolloutPhase::Progressing => {
            let p = if start.is_some() || !in_flight.is_empty() {
                "NodeUpdating"
            } else if !unreachable.is_empty() {
                "NodeUnreachable"
            } else if !waiting.is_empty() {
                "WaitingForAgents"
            } else {
                "RolloutInProgress"
            };
            ("RolloutInProgress", p)
        }
        RolloutPhase::Paused => ("RolloutPaused", "RolloutPaused"),
        RolloutPhase::Halted => ("RolloutHalted", "RolloutHalted"),
        RolloutPhase::NoNodes => ("NoMatchingNodes", "NoMatchingNodes"),
        RolloutPhase::Invalid => ("InvalidSpec", "InvalidSpec"),
    };

    let mut progress = match (start, in_flight.first()) {
        (Some(s), _) => progress_line(s, NodePhase::Pending.as_str(), c.rev, c.updated, c.total),
        (None, Some(n)) if n.spec_revision == c.rev => {
            progress_line(&n.name, n.shown_phase(), c.rev, c.updated, c.total)
        }
        (None, Some(n)) => format!(
            "node {}: {} (revision {}); revision {} starts when it settles ({} of {} updated)",
            n.name,
            n.shown_phase(),
            n.spec_revision,
            c.rev,
            c.updated,
            c.total
        ),
        (None, None) => match phase {
            RolloutPhase::Complete => healthy.clone(),
            RolloutPhase::Paused => format!(
                "rollout paused with {} of {} nodes updated to revision {}; set spec.rollout.paused to false to continue",
                c.updated, c.total, c.rev
            ),
            RolloutPhase::Halted => halted.map(|h| h.message.clone()).unwrap_or_default(),
            RolloutPhase::NoNodes => {
                "no Node matches spec.nodeSelector; label the control-plane nodes or change the selector"
                    .to_string()
            }
            RolloutPhase::Invalid => "the spec cannot be rolled out".to_string(),
            RolloutPhase::Progressing => format!(
                "{} of {} nodes updated to revision {}",
                c.updated, c.total, c.rev
            ),
        },
    };
    if !waiting.is_empty() && phase != RolloutPhase::Halted {
        if start.is_some() || !in_flight.is_empty() || phase == RolloutPhase::Paused {
            progress.push_str("; ");
            progress.push_str(&waiting_line(waiting));
        } else {
            progress = format!(
                "{} ({} of {} updated)",
                waiting_line(waiting),
                c.updated,
                c.total
            );
        }
    }
    if !unreachable.is_empty() && phase != RolloutPhase::Halted {
        progress.push_str(&format!(
            "; {} unreachable (the Node's Ready condition is Unknown: its kubelet stopped posting status): no other node is taken down until it is back, or its Node is deleted",
            unreachable
                .iter()
                .map(|n| format!("node {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if paused && phase == RolloutPhase::Progressing && (start.is_some() || !in_flight.is_empty()) {
        progress.push_str("; paused: no further node starts after this one");
    }

    let ready_message = if phase == RolloutPhase::Progressing || phase == RolloutPhase::Paused {
        format!("{healthy}; {progress}")
    } else if phase == RolloutPhase::Complete {
        healthy.clone()
    } else {
        progress.clone()
    };
    let degraded = match halted {
        Some(h) => ConditionValue {
            type_: condition::DEGRADED,
            status: true,
            reason: h.reason.clone(),
            message: h.message.clone(),
        },
        None => ConditionValue {
            type_: condition::DEGRADED,
            status: false,
            reason: "AsExpected".into(),
            message: String::new(),
        },
    };
    vec![
        ConditionValue {
            type_: condition::READY,
            status: phase == RolloutPhase::Complete,
            reason: ready_reason.into(),
            message: ready_message,
        },
        ConditionValue {
            type_: condition::PROGRESSING,
            status: phase == RolloutPhase::Progressing,
            reason: progressing_reason.into(),
            message: progress,
        },
        degraded,
    ]
}

pub(super) fn events(
    input: &RolloutInput<'_>,
    ordered: &[&NodeView],
    c: &Counts<'_>,
    start: Option<&str>,
    halted: Option<&Halt>,
    complete: bool,
) -> Vec<PlannedEvent> {
    let prev = input.previous;
    let mut out = Vec::new();
    // The node that was in flight when the previous status was written, now settled.
    if let Some(p) = prev.node_in_flight.as_deref()
        && let Some(n) = ordered.iter().find(|n| n.name == p)
        && let Some(phase) = n.settled_at(&n.spec_revision)
    {
        let detail = match (&n.reason, &n.message) {
            (Some(r), Some(m)) => format!(": {r}: {m}"),
            (Some(r), None) => format!(": {r}"),
            (None, Some(m)) => format!(": {m}"),
            (None, None) => String::new(),
        };
        let (kind, reason, note) = match phase {
            NodePhase::Healthy => (
                EventKind::Normal,
                reason::NODE_UPDATED,
                format!("node {p} is healthy at revision {}", n.spec_revision),
            ),
            NodePhase::RolledBack => (
                EventKind::Warning,
                reason::NODE_ROLLED_BACK,
                format!(
                    "node {p} rolled back from revision {} to its last known-good revision{detail}",
                    n.spec_revision
                ),
            ),
            _ => (
                EventKind::Warning,
                reason::NODE_FAILED,
                format!("node {p} failed at revision {}{detail}", n.spec_revision),
            ),
        };
        out.push(PlannedEvent {
            kind,
            reason,
            note,
            node: Some(p.to_string()),
        });
    }
    if let Some(h) = halted {
        let same = prev.degraded_reason.as_deref() == Some(h.reason.as_str())
            && prev.revision.as_deref() == Some(c.rev);
        if !same {
            out.push(PlannedEvent {
                kind: EventKind::Warning,
                reason: reason::ROLLOUT_HALTED,
                note: h.message.clone(),
                node: Some(h.node.clone()),
            });
        }
    }
    if let Some(s) = start {
        out.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: reason::NODE_UPDATE_STARTED,
            note: format!(
                "writing revision {} to node {s} ({} of {} updated so far)",
                c.rev, c.updated, c.total
            ),
            node: Some(s.to_string()),
        });
    }
    if complete && !(prev.ready && prev.revision.as_deref() == Some(c.rev)) {
        out.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: reason::ROLLOUT_COMPLETED,
            note: format!("revision {} is healthy on all {} nodes", c.rev, c.total),
            node: None,
        });
    }
    out
}
