//! Progress deadlines, waiting nodes, claims, failed revisions, unreachable nodes.

use super::*;

/// `decide` at `now() + secs`, with a previous status that claimed `node` at `rev` at `now()`.
fn later(nodes: &[NodeView], rev: &str, node: &str, claimed: &str, secs: i64) -> Decision {
    let prev = Previous {
        revision: Some(rev.into()),
        node_in_flight: Some(node.into()),
        in_flight_revision: Some(claimed.into()),
        in_flight_since: Some(now()),
        ..Default::default()
    };
    let holders = BTreeSet::new();
    decide(&RolloutInput {
        revision: rev,
        paused: false,
        nodes,
        lease_holders: &holders,
        previous: &prev,
        now: now() + SignedDuration::from_secs(secs),
        progress_deadline_seconds: 900,
    })
}

#[test]
fn a_node_in_flight_past_the_deadline_degrades_and_halts() {
    let stuck = NodeView {
        applied_revision: Some("old".into()),
        ..at("cp-1", "new", WaitingForKubelet)
    };
    let nodes = [stuck, at("cp-2", "old", Healthy)];
    let d = later(&nodes, "new", "cp-1", "new", 899);
    assert_eq!(
        (d.halted.as_ref(), d.phase),
        (None, RolloutPhase::Progressing)
    );
    assert_eq!(
        d.in_flight_since,
        Some(now()),
        "the clock counts from the claim"
    );

    let d = later(&nodes, "new", "cp-1", "new", 1000);
    let h = d.halted.as_ref().expect("halted");
    assert_eq!(
        (h.node.as_str(), h.reason.as_str(), h.phase),
        (
            "cp-1",
            reason::PROGRESS_DEADLINE_EXCEEDED,
            WaitingForKubelet
        )
    );
    assert_eq!(d.start, None);
    assert_eq!(d.phase, RolloutPhase::Halted);
    assert_eq!(d.node_in_flight.as_deref(), Some("cp-1"), "still in flight");
    let deg = cond(&d, condition::DEGRADED);
    assert!(deg.status);
    assert_eq!(deg.reason, "ProgressDeadlineExceeded");
    assert!(
        deg.message
            .starts_with("rollout halted: node cp-1 has been WaitingForKubelet at revision new for 16m40s, past spec.rollout.progressDeadlineSeconds (900s)"),
        "{}",
        deg.message
    );
    assert_eq!(reasons(&d), vec![reason::ROLLOUT_HALTED]);

    // An agent that never took the revision up is stuck too, shown as Pending.
    let gone = NodeView {
        spec_revision: "new".into(),
        ..at("cp-1", "old", Healthy)
    };
    let d = later(
        &[gone, at("cp-2", "old", Healthy)],
        "new",
        "cp-1",
        "new",
        3600,
    );
    assert!(
        cond(&d, condition::DEGRADED)
            .message
            .contains("node cp-1 has been Pending at revision new for 1h0m0s"),
        "{:?}",
        d.conditions
    );

    // Once it settles healthy, the rollout goes on.
    let nodes = [at("cp-1", "new", Healthy), at("cp-2", "old", Healthy)];
    let d = later(&nodes, "new", "cp-1", "new", 5000);
    assert_eq!((d.halted, d.start.as_deref()), (None, Some("cp-2")));
}

#[test]
fn a_newer_revision_replaces_a_waiting_node_but_never_a_write_or_a_restore() {
    let waiting = NodeView {
        applied_revision: Some("r0".into()),
        ..at("cp-2", "r1", WaitingForKubelet)
    };
    let nodes = [
        at("cp-1", "r0", Healthy),
        waiting.clone(),
        at("cp-3", "r0", Healthy),
    ];
    let d = later(&nodes, "r2", "cp-2", "r1", 600);
    assert_eq!(
        d.start.as_deref(),
        Some("cp-2"),
        "the node in flight, not cp-1"
    );
    assert!(d.retarget);
    assert_eq!(
        (d.in_flight_revision.as_deref(), d.in_flight_since),
        (Some("r2"), Some(now() + SignedDuration::from_secs(600)))
    );
    assert_eq!(reasons(&d), vec![reason::NODE_RETARGETED]);
    assert_eq!(
        d.events[0].note,
        "node cp-2: revision r1 (WaitingForKubelet for 10m0s) replaced by revision r2 before it settled; the agent was neither writing files nor rolling back"
    );
    // Also past the deadline: the fix replaces the stuck revision.
    assert_eq!(
        later(&nodes, "r2", "cp-2", "r1", 4000).start.as_deref(),
        Some("cp-2")
    );

    let applying = NodeView {
        phase: Some(Applying),
        ..waiting.clone()
    };
    let restoring = NodeView {
        rolling_back: true,
        ..waiting.clone()
    };
    for busy in [applying, restoring] {
        let nodes = [
            at("cp-1", "r0", Healthy),
            busy.clone(),
            at("cp-3", "r0", Healthy),
        ];
        let d = later(&nodes, "r2", "cp-2", "r1", 600);
        assert_eq!((d.start.as_deref(), d.retarget), (None, false), "{busy:?}");
        assert_eq!(d.node_in_flight.as_deref(), Some("cp-2"));
        // Past the deadline it is reported, and still not replaced.
        let d = later(&nodes, "r2", "cp-2", "r1", 1000);
        assert_eq!(d.start, None);
        let deg = cond(&d, condition::DEGRADED);
        assert!(
            deg.message.contains("revision r2 replaces it once"),
            "{}",
            deg.message
        );
    }
    // Paused: nothing is written, not even the node in flight.
    let holders = BTreeSet::new();
    let prev = Previous::default();
    let d = decide(&RolloutInput {
        revision: "r2",
        paused: true,
        nodes: &nodes,
        lease_holders: &holders,
        previous: &prev,
        now: now(),
        progress_deadline_seconds: 900,
    });
    assert_eq!(d.start, None);
}

#[test]
fn the_agents_rolling_back_reason_counts_as_a_restore() {
    let mut cpn = ControlPlaneNode::new("cp-1", Default::default());
    cpn.status = Some(crate::api::ControlPlaneNodeStatus {
        phase: Some(WaitingForKubelet),
        reason: Some("RollingBack".into()),
        ..Default::default()
    });
    let v = NodeView::from_cpn(&cpn);
    assert!(v.rolling_back && !v.retargetable());
    cpn.status.as_mut().unwrap().reason = None;
    cpn.status.as_mut().unwrap().rolling_back = Some(true);
    assert!(!NodeView::from_cpn(&cpn).retargetable());
    cpn.status.as_mut().unwrap().rolling_back = None;
    assert!(NodeView::from_cpn(&cpn).retargetable());
}

#[test]
fn a_claim_not_yet_written_pins_the_node_that_may_start() {
    // Another operator claimed cp-2 at "new" and has not written its ControlPlaneNode yet (or
    // its write failed). cp-1 is first in order, but only cp-2 may start.
    let nodes = [at("cp-1", "old", Healthy), at("cp-2", "old", Healthy)];
    let d = later(&nodes, "new", "cp-2", "new", 5);
    assert_eq!(d.start.as_deref(), Some("cp-2"));
    assert!(!d.retarget);
    // Paused meanwhile: nothing starts, and the claim stays (nobody else may start).
    let holders = BTreeSet::new();
    let prev = Previous {
        node_in_flight: Some("cp-2".into()),
        in_flight_revision: Some("new".into()),
        in_flight_since: Some(now()),
        ..Default::default()
    };
    let d = decide(&RolloutInput {
        revision: "new",
        paused: true,
        nodes: &nodes,
        lease_holders: &holders,
        previous: &prev,
        now: now(),
        progress_deadline_seconds: 900,
    });
    assert_eq!(d.start, None);
    assert_eq!(d.node_in_flight.as_deref(), Some("cp-2"));
    assert_eq!(d.in_flight_revision.as_deref(), Some("new"));
    // Written (cp-2's spec has the claimed revision): the claim is fulfilled, normal rules.
    let nodes = [at("cp-1", "old", Healthy), at("cp-2", "new", Healthy)];
    assert_eq!(
        later(&nodes, "new", "cp-2", "new", 5).start.as_deref(),
        Some("cp-1")
    );
}

#[test]
fn a_failed_revision_is_remembered_and_never_retried_on_that_node() {
    let mut bad = at("cp-1", "new", RolledBack);
    bad.reason = Some("HealthTimeout".into());
    bad.message = Some("kube-apiserver never became ready".into());
    let d = simple(&[bad, at("cp-2", "old", Healthy)], "new");
    assert_eq!(d.failed_revisions.len(), 1);
    let f = &d.failed_revisions[0];
    assert_eq!(
        (
            f.node.as_str(),
            f.revision.as_str(),
            f.phase.as_str(),
            f.reason.as_str()
        ),
        ("cp-1", "new", "RolledBack", "HealthTimeout")
    );
    assert_eq!(f.at.0, now());

    // cp-1's ControlPlaneNode is deleted and re-created empty (or its node left the selector
    // and came back): the failure is still known, nothing starts, the config stays Degraded.
    let prev = Previous {
        revision: Some("new".into()),
        degraded_reason: Some("HealthTimeout".into()),
        failed: d.failed_revisions.clone(),
        ..Default::default()
    };
    let nodes = [fresh("cp-1"), at("cp-2", "old", Healthy)];
    let d = decide_with(&nodes, "new", false, &[], &prev);
    assert_eq!(d.start, None);
    let h = d.halted.as_ref().expect("halted");
    assert_eq!(
        (h.node.as_str(), h.reason.as_str()),
        ("cp-1", "HealthTimeout")
    );
    assert!(
        h.message.contains("remembered in status.failedRevisions"),
        "{}",
        h.message
    );
    assert!(
        d.events.is_empty(),
        "no repeated RolloutHalted: {:?}",
        d.events
    );
    assert_eq!(d.failed_revisions, prev.failed, "kept");

    // A new revision (the spec changed) is a new attempt; the old record stays for history.
    let d = decide_with(&nodes, "newer", false, &[], &prev);
    assert_eq!(d.start.as_deref(), Some("cp-1"));
    assert_eq!(d.failed_revisions, prev.failed);
}

/// A node whose kubelet stopped posting status (a node lost): its ControlPlaneNode still says
/// Healthy, but it is not counted ready, and no other node is started while it is down.
#[test]
fn an_unreachable_node_is_not_ready_and_holds_every_other_start() {
    let mut down = at("cp-3", "r1", Healthy);
    down.unreachable = true;
    let nodes = vec![at("cp-1", "r1", Healthy), at("cp-2", "r1", Healthy), down];
    let d = decide_with(&nodes, "r1", false, &[], &Previous::default());
    assert_eq!(d.ready, 2, "its stale Healthy is not believed");
    assert_ne!(d.phase, RolloutPhase::Complete);
    let progressing = d
        .conditions
        .iter()
        .find(|c| c.type_ == condition::PROGRESSING)
        .unwrap();
    assert_eq!(progressing.reason, "NodeUnreachable");
    assert!(
        progressing.message.contains("node cp-3 unreachable"),
        "{}",
        progressing.message
    );

    // A new revision: cp-1 would be next, but cp-3 is down.
    let d = decide_with(&nodes, "r2", false, &[], &Previous::default());
    assert_eq!(d.start, None, "a second API server is not taken down");
    let mut back = nodes.clone();
    back[2].unreachable = false;
    let d = decide_with(&back, "r2", false, &[], &Previous::default());
    assert_eq!(
        d.start.as_deref(),
        Some("cp-1"),
        "starts once the node is back"
    );
}
