//! The rollout decision: which single node (if any) gets the config's revision now, what the
//! config's status says, and which Events tell the story. Pure: no I/O, no clock, no memory of
//! earlier calls. Every input comes from the API (the `ControlPlaneNode`s, the Leases, the
//! config's previous status), so an operator that restarts mid-rollout decides exactly as the
//! one before it would have.
//!
//! The rules (docs/architecture.md, "The ControlPlaneNode protocol"):
//! - a node is *in flight* while its agent has not settled on its `spec.revision`
//!   ([`NodeView::in_flight`]); no node starts while one is in flight;
//! - a node `RolledBack` or `Failed` at the current revision halts the rollout (`Degraded`)
//!   until the spec, and so the revision, changes;
//! - `spec.rollout.paused` starts no node (the one in flight finishes on its own);
//! - nodes go in name order, except the holders of the kube-controller-manager and
//!   kube-scheduler Leases, which go last;
//! - a node is rendered only from the facts its agent reported, so a node without facts waits;
//! - a node in flight longer than `spec.rollout.progressDeadlineSeconds` makes the config
//!   `Degraded` (`ProgressDeadlineExceeded`) and nothing else starts;
//! - a newer revision replaces the revision of the node in flight (*re-target*) only while its
//!   agent neither writes files (`Applying`) nor restores the last known-good revision
//!   (`rollingBack`), and never while paused or halted;
//! - the operator's claim of a node (`status.nodeInFlight`, written with a resourceVersion
//!   precondition before the node's `ControlPlaneNode`) pins the choice: while the claimed
//!   node has not received the claimed revision, no other node starts;
//! - a node that rolled back or failed at a revision is remembered in
//!   `status.failedRevisions`; that revision halts the rollout and is not given to that node
//!   again, even when its `ControlPlaneNode` is deleted or re-created.
//!
//! The clock is an input ([`RolloutInput::now`]), so the function stays pure.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{ControlPlaneNode, FailedRevision, NodePhase};

/// Failure records kept in `status.failedRevisions` (those of the current revision are always
/// kept; older ones go first).
pub const MAX_FAILED_REVISIONS: usize = 32;

/// What the operator knows about one selected node, read from its `ControlPlaneNode`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Name of the Node (and of its `ControlPlaneNode`).
    pub name: String,
    /// Whether the `ControlPlaneNode` exists.
    pub has_cpn: bool,
    /// `spec.revision` of the `ControlPlaneNode`; empty when none was written yet.
    pub spec_revision: String,
    /// `status.targetRevision`: the revision the agent last took up.
    pub target_revision: Option<String>,
    /// `status.appliedRevision`: the revision whose files are on disk.
    pub applied_revision: Option<String>,
    /// `status.phase`, for `target_revision`.
    pub phase: Option<NodePhase>,
    /// `status.reason`.
    pub reason: Option<String>,
    /// `status.message`.
    pub message: Option<String>,
    /// Whether the agent reported `status.nodeFacts`.
    pub has_facts: bool,
    /// Whether the agent restores the last known-good revision now (`status.rollingBack`, or
    /// reason `RollingBack`).
    pub rolling_back: bool,
}

impl NodeView {
    /// What a `ControlPlaneNode` says about its node.
    pub fn from_cpn(cpn: &ControlPlaneNode) -> Self {
        let st = cpn.status.as_ref();
        NodeView {
            name: cpn.metadata.name.clone().unwrap_or_default(),
            has_cpn: true,
            spec_revision: cpn.spec.revision.clone(),
            target_revision: st.and_then(|s| s.target_revision.clone()),
            applied_revision: st.and_then(|s| s.applied_revision.clone()),
            phase: st.and_then(|s| s.phase),
            reason: st.and_then(|s| s.reason.clone()),
            message: st.and_then(|s| s.message.clone()),
            has_facts: st.is_some_and(|s| s.node_facts.is_some()),
            rolling_back: st.is_some_and(|s| {
                s.rolling_back == Some(true) || s.reason.as_deref() == Some("RollingBack")
            }),
        }
    }

    /// A selected node that has no `ControlPlaneNode` yet.
    pub fn without_cpn(name: &str) -> Self {
        NodeView {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Whether the node is in flight: it was given a revision and its agent has not settled on
    /// it yet (not taken it up, or still `Pending`, `Applying` or `WaitingForKubelet`).
    pub fn in_flight(&self) -> bool {
        if self.spec_revision.is_empty() {
            return false;
        }
        match (&self.target_revision, self.phase) {
            (Some(t), Some(p)) if *t == self.spec_revision => !is_settled(p),
            _ => true,
        }
    }

    /// The phase the node settled in for `revision` (`Healthy`, `RolledBack` or `Failed`), when
    /// its spec and its agent's target are both `revision`.
    pub fn settled_at(&self, revision: &str) -> Option<NodePhase> {
        let at =
            self.spec_revision == revision && self.target_revision.as_deref() == Some(revision);
        match self.phase {
            Some(p) if at && is_settled(p) => Some(p),
            _ => None,
        }
    }

    /// Whether a newer revision may replace the one the node is given now: its agent is
    /// neither writing files (`Applying`) nor restoring the last known-good revision.
    pub fn retargetable(&self) -> bool {
        !self.rolling_back && self.phase != Some(NodePhase::Applying)
    }

    /// The node's state in words, for messages: its shown phase, or `rolling back`.
    pub fn doing(&self) -> String {
        if self.rolling_back {
            format!("{} (rolling back)", self.shown_phase())
        } else {
            self.shown_phase().to_string()
        }
    }

    /// Whether the node's files on disk are `revision`'s.
    pub fn updated(&self, revision: &str) -> bool {
        self.spec_revision == revision && self.applied_revision.as_deref() == Some(revision)
    }

    /// Whether the node runs `revision` with every component healthy.
    pub fn ready(&self, revision: &str) -> bool {
        self.updated(revision) && self.settled_at(revision) == Some(NodePhase::Healthy)
    }

    /// The phase as shown to users: what the agent reports for the spec revision, `Pending`
    /// while the agent has not taken the revision up, `WaitingForAgent` without facts.
    pub fn shown_phase(&self) -> &'static str {
        if !self.has_facts && self.spec_revision.is_empty() {
            return "WaitingForAgent";
        }
        match (&self.target_revision, self.phase) {
            (Some(t), Some(p)) if *t == self.spec_revision => p.as_str(),
            _ => NodePhase::Pending.as_str(),
        }
    }
}

fn is_settled(p: NodePhase) -> bool {
    matches!(
        p,
        NodePhase::Healthy | NodePhase::RolledBack | NodePhase::Failed
    )
}

/// What the config's previous status said (read from the API), to emit each Event once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Previous {
    /// `status.revision`.
    pub revision: Option<String>,
    /// `status.nodeInFlight`.
    pub node_in_flight: Option<String>,
    /// Whether the `Ready` condition was `True`.
    pub ready: bool,
    /// The `Degraded` condition's reason, when it was `True`.
    pub degraded_reason: Option<String>,
    /// `status.nodeInFlightRevision`: the revision the node in flight was claimed for.
    pub in_flight_revision: Option<String>,
    /// `status.nodeInFlightSince`.
    pub in_flight_since: Option<Timestamp>,
    /// `status.failedRevisions`.
    pub failed: Vec<FailedRevision>,
}

/// Everything the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct RolloutInput<'a> {
    /// The config's current revision.
    pub revision: &'a str,
    /// `spec.rollout.paused`.
    pub paused: bool,
    /// The selected nodes, in any order.
    pub nodes: &'a [NodeView],
    /// Nodes holding the kube-controller-manager or kube-scheduler Lease.
    pub lease_holders: &'a BTreeSet<String>,
    /// The config's previous status.
    pub previous: &'a Previous,
    /// The time of the decision.
    pub now: Timestamp,
    /// `spec.rollout.progressDeadlineSeconds` with its default.
    pub progress_deadline_seconds: i64,
}

/// Where a config's rollout stands, for status and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RolloutPhase {
    /// Every selected node is healthy at the current revision.
    Complete,
    /// A node is in flight, or nodes wait for their turn or for their agent.
    Progressing,
    /// `spec.rollout.paused` holds nodes back.
    Paused,
    /// A node rolled back or failed at the current revision.
    Halted,
    /// The spec cannot be rolled out (invalid, missing Secret, render error).
    Invalid,
    /// No Node matches the node selector.
    NoNodes,
}

impl RolloutPhase {
    /// Every phase, for metrics that show each one.
    pub const ALL: [RolloutPhase; 6] = [
        RolloutPhase::Complete,
        RolloutPhase::Progressing,
        RolloutPhase::Paused,
        RolloutPhase::Halted,
        RolloutPhase::Invalid,
        RolloutPhase::NoNodes,
    ];

    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Complete => "Complete",
            RolloutPhase::Progressing => "Progressing",
            RolloutPhase::Paused => "Paused",
            RolloutPhase::Halted => "Halted",
            RolloutPhase::Invalid => "Invalid",
            RolloutPhase::NoNodes => "NoNodes",
        }
    }
}

/// A condition's value; the caller stamps times and the generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionValue {
    /// `Ready`, `Progressing` or `Degraded`.
    pub type_: &'static str,
    /// Whether the status is `True`.
    pub status: bool,
    /// PascalCase reason.
    pub reason: String,
    /// What a user should know.
    pub message: String,
}

/// Condition types the operator writes.
pub mod condition {
    /// Every selected node runs the current revision, healthy.
    pub const READY: &str = "Ready";
    /// Nodes are moving towards the current revision.
    pub const PROGRESSING: &str = "Progressing";
    /// The rollout cannot continue without a change to the spec.
    pub const DEGRADED: &str = "Degraded";
}

/// Event reasons the operator publishes.
pub mod reason {
    /// The spec failed validation.
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// A node was given the new revision.
    pub const NODE_UPDATE_STARTED: &str = "NodeUpdateStarted";
    /// A node became healthy at its revision.
    pub const NODE_UPDATED: &str = "NodeUpdated";
    /// A node rolled back to its last known-good revision.
    pub const NODE_ROLLED_BACK: &str = "NodeRolledBack";
    /// A node could neither apply its revision nor restore the last known-good one.
    pub const NODE_FAILED: &str = "NodeFailed";
    /// The rollout stopped at a node that rolled back or failed, or whose update passed the
    /// progress deadline.
    pub const ROLLOUT_HALTED: &str = "RolloutHalted";
    /// The node in flight was given a newer revision before it settled.
    pub const NODE_RETARGETED: &str = "NodeRetargeted";
    /// `Degraded` reason: the node in flight passed `spec.rollout.progressDeadlineSeconds`.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// Every selected node is healthy at the current revision.
    pub const ROLLOUT_COMPLETED: &str = "RolloutCompleted";
}

/// Whether an Event is routine or needs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Routine.
    Normal,
    /// Needs attention.
    Warning,
}

/// An Event to publish on the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// PascalCase reason, one of [`reason`].
    pub reason: &'static str,
    /// What happened.
    pub note: String,
    /// The node it is about, if any.
    pub node: Option<String>,
}

/// Why the rollout is halted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    /// The node that rolled back or failed, or is stuck in flight.
    pub node: String,
    /// Its phase: `RolledBack` or `Failed`; for a node past the progress deadline the phase
    /// it is stuck in.
    pub phase: NodePhase,
    /// PascalCase reason for the `Degraded` condition: the node's reason, else its phase.
    pub reason: String,
    /// What happened and what to do.
    pub message: String,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The node to write the current revision into now, if any.
    pub start: Option<String>,
    /// Whether [`Decision::start`] gives a newer revision to the node in flight (re-target).
    pub retarget: bool,
    /// The node in flight after this decision (the one started, the one still moving, or the
    /// one claimed and not yet written).
    pub node_in_flight: Option<String>,
    /// The revision of the node in flight.
    pub in_flight_revision: Option<String>,
    /// Since when the node in flight is in flight.
    pub in_flight_since: Option<Timestamp>,
    /// `status.failedRevisions` after this decision.
    pub failed_revisions: Vec<FailedRevision>,
    /// Set when a node rolled back or failed at the current revision.
    pub halted: Option<Halt>,
    /// Selected nodes whose agent has not reported facts yet.
    pub waiting_for_facts: Vec<String>,
    /// Where the rollout stands.
    pub phase: RolloutPhase,
    /// Number of selected nodes.
    pub nodes: i32,
    /// Number of nodes whose files are the current revision's.
    pub updated: i32,
    /// Number of nodes healthy at the current revision.
    pub ready: i32,
    /// `Ready`, `Progressing`, `Degraded`, in that order.
    pub conditions: Vec<ConditionValue>,
    /// Events to publish, in order.
    pub events: Vec<PlannedEvent>,
}

/// The order nodes are updated in: by name, the Lease holders last.
pub fn update_order<'a>(
    nodes: &'a [NodeView],
    lease_holders: &BTreeSet<String>,
) -> Vec<&'a NodeView> {
    let mut ordered: Vec<&NodeView> = nodes.iter().collect();
    ordered.sort_by(|a, b| {
        (lease_holders.contains(&a.name), &a.name).cmp(&(lease_holders.contains(&b.name), &b.name))
    });
    ordered
}

/// Decides the next step of a rollout. See the module documentation for the rules.
pub fn decide(input: &RolloutInput<'_>) -> Decision {
    let rev = input.revision;
    let prev = input.previous;
    let now = input.now;
    let ordered = update_order(input.nodes, input.lease_holders);
    let total = ordered.len() as i32;
    let updated = ordered.iter().filter(|n| n.updated(rev)).count() as i32;
    let ready = ordered.iter().filter(|n| n.ready(rev)).count() as i32;

    let failed_revisions = remember_failures(input, &ordered);
    let failed_here = |n: &NodeView| {
        failed_revisions
            .iter()
            .any(|f| f.node == n.name && f.revision == rev)
    };

    let mut halted = ordered
        .iter()
        .find_map(|n| {
            let phase = n.settled_at(rev)?;
            (phase != NodePhase::Healthy).then(|| halt(n, phase, rev))
        })
        .or_else(|| {
            // Remembered although the ControlPlaneNode no longer shows it (deleted and
            // re-created, or its node left the selector).
            failed_revisions
                .iter()
                .find(|f| f.revision == rev)
                .map(|f| halt_remembered(f, rev))
        });
    let in_flight: Vec<&NodeView> = ordered.iter().copied().filter(|n| n.in_flight()).collect();
    let waiting_for_facts: Vec<String> = ordered
        .iter()
        .filter(|n| !n.has_facts && n.spec_revision != rev)
        .map(|n| n.name.clone())
        .collect();
    let next = ordered
        .iter()
        .find(|n| n.has_facts && n.spec_revision != rev && !failed_here(n))
        .map(|n| n.name.clone());

    // A claim whose ControlPlaneNode write has not been seen yet (the write failed, or another
    // operator is about to make it): that node, and no other, may start.
    let pending_claim: Option<&NodeView> = match (&prev.node_in_flight, &prev.in_flight_revision) {
        (Some(node), Some(claimed)) => ordered
            .iter()
            .copied()
            .find(|n| n.name == *node && n.spec_revision != *claimed),
        _ => None,
    };
    let startable = |n: &NodeView| {
        n.has_facts
            && n.spec_revision != rev
            && !failed_here(n)
            && (!n.in_flight() || n.retargetable())
    };
    let start = if halted.is_some() || input.paused {
        None
    } else if let Some(claimed) = pending_claim {
        let others = in_flight.iter().any(|n| n.name != claimed.name);
        (!others && startable(claimed)).then(|| claimed.name.clone())
    } else if in_flight.is_empty() {
        next
    } else {
        match in_flight.as_slice() {
            [only] if startable(only) => Some(only.name.clone()),
            _ => None,
        }
    };
    let retarget = start
        .as_deref()
        .and_then(|s| ordered.iter().find(|n| n.name == s))
        .is_some_and(|n| n.in_flight());

    let flying: Option<&NodeView> = in_flight.first().copied().or(pending_claim);
    let node_in_flight = start.clone().or_else(|| flying.map(|n| n.name.clone()));
    let (in_flight_revision, in_flight_since) = match (&start, flying) {
        (Some(_), _) => (Some(rev.to_string()), Some(now)),
        (None, Some(n)) => {
            let claimed = if n.in_flight() {
                Some(n.spec_revision.clone())
            } else {
                prev.in_flight_revision.clone()
            };
            let same = prev.node_in_flight.as_deref() == Some(n.name.as_str())
                && prev.in_flight_revision == claimed;
            let since = if same { prev.in_flight_since } else { None };
            (claimed, Some(since.unwrap_or(now)))
        }
        (None, None) => (None, None),
    };
    if halted.is_none()
        && start.is_none()
        && let (Some(n), Some(since)) = (flying, in_flight_since)
    {
        let elapsed = now.duration_since(since);
        if elapsed >= SignedDuration::from_secs(input.progress_deadline_seconds) {
            halted = Some(deadline_halt(
                n,
                in_flight_revision.as_deref().unwrap_or(rev),
                rev,
                elapsed,
                input.progress_deadline_seconds,
            ));
        }
    }
    let complete = total > 0 && ready == total && halted.is_none();

    let phase = if total == 0 {
        RolloutPhase::NoNodes
    } else if halted.is_some() {
        RolloutPhase::Halted
    } else if complete {
        RolloutPhase::Complete
    } else if input.paused && node_in_flight.is_none() {
        RolloutPhase::Paused
    } else {
        RolloutPhase::Progressing
    };

    let counts = Counts {
        rev,
        total,
        updated,
        ready,
    };
    let conditions = conditions(
        phase,
        &counts,
        halted.as_ref(),
        start.as_deref(),
        &in_flight,
        &waiting_for_facts,
        input.paused,
    );
    let mut events = events(
        input,
        &ordered,
        &counts,
        start.as_deref(),
        halted.as_ref(),
        complete,
    );
    if retarget
        && let Some(n) = flying
        && let Some(ev) = events
            .iter_mut()
            .find(|e| e.reason == reason::NODE_UPDATE_STARTED)
    {
        let since = match (&prev.node_in_flight, prev.in_flight_since) {
            (Some(p), Some(t)) if *p == n.name => {
                format!(" for {}", human_duration(now.duration_since(t)))
            }
            _ => String::new(),
        };
        ev.reason = reason::NODE_RETARGETED;
        ev.note = format!(
            "node {}: revision {} ({}{since}) replaced by revision {rev} before it settled; the agent was neither writing files nor rolling back",
            n.name,
            n.spec_revision,
            n.doing()
        );
    }

    Decision {
        start,
        retarget,
        node_in_flight,
        in_flight_revision,
        in_flight_since,
        failed_revisions,
        halted,
        waiting_for_facts,
        phase,
        nodes: total,
        updated,
        ready,
        conditions,
        events,
    }
}

/// `status.failedRevisions` after this decision: what the previous status remembered, plus
/// the nodes that settled in `RolledBack` or `Failed` at their revision now, minus nodes that
/// since became healthy at the remembered revision; those of the current revision first, at
/// most [`MAX_FAILED_REVISIONS`].
fn remember_failures(input: &RolloutInput<'_>, ordered: &[&NodeView]) -> Vec<FailedRevision> {
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

fn halt_remembered(f: &FailedRevision, rev: &str) -> Halt {
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

fn deadline_halt(
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

/// `16m40s`, `2h0m5s`, `45s`.
pub fn human_duration(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

struct Counts<'a> {
    rev: &'a str,
    total: i32,
    updated: i32,
    ready: i32,
}

fn halt(n: &NodeView, phase: NodePhase, rev: &str) -> Halt {
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

fn waiting_line(waiting: &[String]) -> String {
    match waiting {
        [one] => format!("waiting for the agent on node {one} to report its node facts"),
        many => format!(
            "waiting for the agents on nodes {} to report their node facts",
            many.join(", ")
        ),
    }
}

fn conditions(
    phase: RolloutPhase,
    c: &Counts<'_>,
    halted: Option<&Halt>,
    start: Option<&str>,
    in_flight: &[&NodeView],
    waiting: &[String],
    paused: bool,
) -> Vec<ConditionValue> {
    let healthy = format!(
        "{} of {} nodes healthy at revision {}",
        c.ready, c.total, c.rev
    );
    let (ready_reason, progressing_reason) = match phase {
        RolloutPhase::Complete => ("RolloutComplete", "RolloutComplete"),
        RolloutPhase::Progressing => {
            let p = if start.is_some() || !in_flight.is_empty() {
                "NodeUpdating"
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

fn events(
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

#[cfg(test)]
mod tests;
