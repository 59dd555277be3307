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

mod report;
pub use report::*;

mod halts;
use halts::*;

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
    /// Whether the Node's `Ready` condition is `Unknown`: its kubelet stopped posting status
    /// (the node is down or cut off), so what its `ControlPlaneNode` says is stale. Such a node
    /// is not ready, and no other node is taken down while it is.
    pub unreachable: bool,
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
            unreachable: false,
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
        !self.unreachable
            && self.updated(revision)
            && self.settled_at(revision) == Some(NodePhase::Healthy)
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
    // A node whose kubelet stopped posting status is already unavailable: starting another
    // would take a second API server down.
    let unreachable: Vec<String> = ordered
        .iter()
        .filter(|n| n.unreachable)
        .map(|n| n.name.clone())
        .collect();
    let start = if halted.is_some() || input.paused || !unreachable.is_empty() {
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
        report::Blocked {
            waiting: &waiting_for_facts,
            unreachable: &unreachable,
        },
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

#[cfg(test)]
mod tests;
