use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::api::NodePhase::{self, *};

/// A node that settled in `phase` at `rev`, with facts.
fn at(name: &str, rev: &str, phase: NodePhase) -> NodeView {
    NodeView {
        name: name.into(),
        has_cpn: true,
        spec_revision: rev.into(),
        target_revision: Some(rev.into()),
        applied_revision: Some(rev.into()),
        phase: Some(phase),
        reason: None,
        message: None,
        has_facts: true,
        rolling_back: false,
        unreachable: false,
    }
}

/// A node whose agent reported facts and nothing else yet.
fn fresh(name: &str) -> NodeView {
    NodeView {
        name: name.into(),
        has_cpn: true,
        phase: Some(Pending),
        has_facts: true,
        ..Default::default()
    }
}

fn decide_with(
    nodes: &[NodeView],
    rev: &str,
    paused: bool,
    holders: &[&str],
    prev: &Previous,
) -> Decision {
    let holders: BTreeSet<String> = holders.iter().map(|s| s.to_string()).collect();
    decide(&RolloutInput {
        revision: rev,
        paused,
        nodes,
        lease_holders: &holders,
        previous: prev,
        now: now(),
        progress_deadline_seconds: 900,
    })
}

/// The decision's clock in these tests.
fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time")
}

fn simple(nodes: &[NodeView], rev: &str) -> Decision {
    decide_with(nodes, rev, false, &[], &Previous::default())
}

fn cond<'a>(d: &'a Decision, t: &str) -> &'a ConditionValue {
    d.conditions
        .iter()
        .find(|c| c.type_ == t)
        .expect("condition present")
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

#[test]
fn first_node_by_name_starts() {
    let nodes = [
        at("cp-2", "old", Healthy),
        at("cp-1", "old", Healthy),
        at("cp-3", "old", Healthy),
    ];
    let d = simple(&nodes, "new");
    assert_eq!(d.start.as_deref(), Some("cp-1"));
    assert_eq!(d.node_in_flight.as_deref(), Some("cp-1"));
    assert_eq!(d.phase, RolloutPhase::Progressing);
    assert_eq!((d.nodes, d.updated, d.ready), (3, 0, 0));
    let p = cond(&d, condition::PROGRESSING);
    assert!(p.status);
    assert_eq!(p.reason, "NodeUpdating");
    assert_eq!(
        p.message,
        "node cp-1: Pending (revision new, 0 of 3 updated)"
    );
    assert!(!cond(&d, condition::READY).status);
    assert_eq!(reasons(&d), vec![reason::NODE_UPDATE_STARTED]);
}

#[test]
fn nodes_never_given_a_revision_start_too() {
    let d = simple(&[fresh("b"), fresh("a")], "r1");
    assert_eq!(d.start.as_deref(), Some("a"));
}

#[test]
fn lease_holders_go_last() {
    let nodes = [
        at("cp-1", "old", Healthy),
        at("cp-2", "old", Healthy),
        at("cp-3", "old", Healthy),
    ];
    let d = decide_with(
        &nodes,
        "new",
        false,
        &["cp-1", "cp-2"],
        &Previous::default(),
    );
    assert_eq!(d.start.as_deref(), Some("cp-3"));
    // Once cp-3 is done, the holders go in name order.
    let nodes = [
        at("cp-1", "old", Healthy),
        at("cp-2", "old", Healthy),
        at("cp-3", "new", Healthy),
    ];
    let d = decide_with(
        &nodes,
        "new",
        false,
        &["cp-2", "cp-1"],
        &Previous::default(),
    );
    assert_eq!(d.start.as_deref(), Some("cp-1"));
    let order: Vec<&str> = update_order(&nodes, &["cp-1".to_string()].into())
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(order, vec!["cp-2", "cp-3", "cp-1"]);
}

#[test]
fn every_kind_of_in_flight_blocks_the_next_node() {
    let behind = at("cp-2", "old", Healthy);
    let not_taken_up = NodeView {
        spec_revision: "new".into(),
        ..at("cp-1", "old", Healthy)
    };
    let no_phase = NodeView {
        phase: None,
        ..at("cp-1", "new", Healthy)
    };
    let mut cases = vec![not_taken_up, no_phase];
    for p in [Pending, Applying, WaitingForKubelet] {
        cases.push(NodeView {
            phase: Some(p),
            applied_revision: Some("old".into()),
            ..at("cp-1", "new", p)
        });
    }
    for flying in cases {
        assert!(flying.in_flight(), "{flying:?}");
        let d = simple(&[flying.clone(), behind.clone()], "new");
        assert_eq!(d.start, None, "{flying:?}");
        assert_eq!(d.node_in_flight.as_deref(), Some("cp-1"));
        assert_eq!(d.phase, RolloutPhase::Progressing);
        assert!(d.events.is_empty());
    }
}

#[test]
fn healthy_node_advances_to_the_next() {
    let nodes = [
        at("cp-1", "new", Healthy),
        at("cp-2", "old", Healthy),
        at("cp-3", "old", Healthy),
    ];
    let prev = Previous {
        revision: Some("new".into()),
        node_in_flight: Some("cp-1".into()),
        ..Default::default()
    };
    let d = decide_with(&nodes, "new", false, &[], &prev);
    assert_eq!(d.start.as_deref(), Some("cp-2"));
    assert_eq!((d.updated, d.ready), (1, 1));
    assert_eq!(
        reasons(&d),
        vec![reason::NODE_UPDATED, reason::NODE_UPDATE_STARTED]
    );
    assert_eq!(d.events[0].note, "node cp-1 is healthy at revision new");
    assert_eq!(
        cond(&d, condition::PROGRESSING).message,
        "node cp-2: Pending (revision new, 1 of 3 updated)"
    );
}

#[test]
fn rolled_back_or_failed_node_halts_until_the_revision_changes() {
    for (phase, event) in [
        (RolledBack, reason::NODE_ROLLED_BACK),
        (Failed, reason::NODE_FAILED),
    ] {
        let bad = NodeView {
            reason: Some("HealthTimeout".into()),
            message: Some("kube-apiserver not ready after 300s".into()),
            applied_revision: Some("old".into()),
            ..at("cp-1", "new", phase)
        };
        let nodes = [bad.clone(), at("cp-2", "old", Healthy)];
        let prev = Previous {
            revision: Some("new".into()),
            node_in_flight: Some("cp-1".into()),
            ..Default::default()
        };
        let d = decide_with(&nodes, "new", false, &[], &prev);
        assert_eq!(d.start, None);
        assert_eq!(d.phase, RolloutPhase::Halted);
        let h = d.halted.as_ref().expect("halted");
        assert_eq!((h.node.as_str(), h.phase), ("cp-1", phase));
        let deg = cond(&d, condition::DEGRADED);
        assert!(deg.status);
        assert_eq!(deg.reason, "HealthTimeout");
        assert!(
            deg.message.contains("kube-apiserver not ready after 300s"),
            "{}",
            deg.message
        );
        assert!(!cond(&d, condition::READY).status);
        assert!(!cond(&d, condition::PROGRESSING).status);
        assert_eq!(reasons(&d), vec![event, reason::ROLLOUT_HALTED]);

        // The next reconcile (status written) emits nothing new and still starts nothing.
        let prev = Previous {
            revision: Some("new".into()),
            node_in_flight: None,
            ready: false,
            degraded_reason: Some("HealthTimeout".into()),
            ..Default::default()
        };
        let d = decide_with(&nodes, "new", false, &[], &prev);
        assert_eq!(d.start, None);
        assert!(d.events.is_empty(), "{:?}", d.events);

        // Even unpaused and with every other node waiting, a new revision is needed.
        let d = simple(&nodes, "newer");
        assert_eq!(d.halted, None);
        assert_eq!(d.start.as_deref(), Some("cp-1"));
    }
}

#[test]
fn halt_reason_falls_back_to_the_phase_when_the_node_gives_none_usable() {
    let bad = NodeView {
        reason: Some("not a reason!".into()),
        ..at("cp-1", "new", RolledBack)
    };
    let d = simple(&[bad], "new");
    assert_eq!(cond(&d, condition::DEGRADED).reason, "RolledBack");
}

#[test]
fn pause_lets_the_node_in_flight_finish_and_starts_no_other() {
    let flying = NodeView {
        applied_revision: Some("old".into()),
        ..at("cp-1", "new", WaitingForKubelet)
    };
    let nodes = [flying, at("cp-2", "old", Healthy)];
    let d = decide_with(&nodes, "new", true, &[], &Previous::default());
    assert_eq!(d.start, None);
    assert_eq!(d.node_in_flight.as_deref(), Some("cp-1"));
    assert_eq!(d.phase, RolloutPhase::Progressing);
    assert!(cond(&d, condition::PROGRESSING).message.contains("paused"));

    let nodes = [at("cp-1", "new", Healthy), at("cp-2", "old", Healthy)];
    let d = decide_with(&nodes, "new", true, &[], &Previous::default());
    assert_eq!(d.start, None);
    assert_eq!(d.node_in_flight, None);
    assert_eq!(d.phase, RolloutPhase::Paused);
    let p = cond(&d, condition::PROGRESSING);
    assert!(!p.status);
    assert_eq!(p.reason, "RolloutPaused");
    assert!(p.message.contains("1 of 2 nodes updated"), "{}", p.message);

    // Unpausing continues.
    assert_eq!(simple(&nodes, "new").start.as_deref(), Some("cp-2"));
}

#[test]
fn new_generation_waits_for_the_node_in_flight_then_starts_from_the_first_node() {
    // cp-1 got r1 and is healthy, cp-2 is in flight at r1, and the spec moved on to r2.
    let flying = NodeView {
        applied_revision: Some("r0".into()),
        ..at("cp-2", "r1", Applying)
    };
    let nodes = [at("cp-1", "r1", Healthy), flying, at("cp-3", "r0", Healthy)];
    let d = simple(&nodes, "r2");
    assert_eq!(d.start, None);
    assert_eq!(d.node_in_flight.as_deref(), Some("cp-2"));
    assert_eq!(
        cond(&d, condition::PROGRESSING).message,
        "node cp-2: Applying (revision r1); revision r2 starts when it settles (0 of 3 updated)"
    );

    // cp-2 settles (healthy or not: it is not at the current revision, so it does not halt).
    for settled in [Healthy, RolledBack, Failed] {
        let nodes = [
            at("cp-1", "r1", Healthy),
            at("cp-2", "r1", settled),
            at("cp-3", "r0", Healthy),
        ];
        let prev = Previous {
            revision: Some("r2".into()),
            node_in_flight: Some("cp-2".into()),
            ..Default::default()
        };
        let d = decide_with(&nodes, "r2", false, &[], &prev);
        assert_eq!(d.halted, None);
        assert_eq!(d.start.as_deref(), Some("cp-1"), "{settled:?}");
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[1].reason, reason::NODE_UPDATE_STARTED);
    }
}

#[test]
fn nodes_without_facts_wait_and_the_config_says_so() {
    let waiting = NodeView {
        name: "cp-2".into(),
        has_cpn: true,
        ..Default::default()
    };
    let d = simple(std::slice::from_ref(&waiting), "r1");
    assert_eq!(d.start, None);
    assert_eq!(d.waiting_for_facts, vec!["cp-2".to_string()]);
    assert_eq!(d.phase, RolloutPhase::Progressing);
    let p = cond(&d, condition::PROGRESSING);
    assert!(p.status);
    assert_eq!(p.reason, "WaitingForAgents");
    assert_eq!(
        p.message,
        "waiting for the agent on node cp-2 to report its node facts (0 of 1 updated)"
    );
    assert_eq!(waiting.shown_phase(), "WaitingForAgent");

    // A node with facts goes ahead; the message still names the one without.
    let d = simple(&[waiting, fresh("cp-1")], "r1");
    assert_eq!(d.start.as_deref(), Some("cp-1"));
    assert!(
        cond(&d, condition::PROGRESSING)
            .message
            .ends_with("; waiting for the agent on node cp-2 to report its node facts")
    );
}

#[test]
fn complete_rollout_is_ready_and_says_so_once() {
    let nodes = [at("cp-1", "r1", Healthy), at("cp-2", "r1", Healthy)];
    let prev = Previous {
        revision: Some("r1".into()),
        node_in_flight: Some("cp-2".into()),
        ..Default::default()
    };
    let d = decide_with(&nodes, "r1", false, &[], &prev);
    assert_eq!(d.phase, RolloutPhase::Complete);
    assert_eq!((d.nodes, d.updated, d.ready), (2, 2, 2));
    let r = cond(&d, condition::READY);
    assert!(r.status);
    assert_eq!(r.message, "2 of 2 nodes healthy at revision r1");
    assert!(!cond(&d, condition::PROGRESSING).status);
    assert!(!cond(&d, condition::DEGRADED).status);
    assert_eq!(
        reasons(&d),
        vec![reason::NODE_UPDATED, reason::ROLLOUT_COMPLETED]
    );

    let prev = Previous {
        revision: Some("r1".into()),
        ready: true,
        ..Default::default()
    };
    assert!(
        decide_with(&nodes, "r1", false, &[], &prev)
            .events
            .is_empty()
    );
}

#[test]
fn a_node_healthy_but_still_on_disk_at_another_revision_is_not_ready() {
    // Adoption in progress: phase Healthy reported, but applied revision not yet the new one.
    let n = NodeView {
        applied_revision: Some("r0".into()),
        ..at("cp-1", "r1", Healthy)
    };
    let d = simple(&[n], "r1");
    assert_eq!((d.updated, d.ready), (0, 0));
    assert_ne!(d.phase, RolloutPhase::Complete);
}

#[test]
fn no_nodes_is_not_ready_and_not_progressing() {
    let d = simple(&[], "r1");
    assert_eq!(d.phase, RolloutPhase::NoNodes);
    assert_eq!(d.start, None);
    for c in &d.conditions {
        assert!(!c.status, "{c:?}");
    }
    assert_eq!(cond(&d, condition::READY).reason, "NoMatchingNodes");
}

#[test]
fn condition_reasons_follow_the_api_pattern() {
    for ok in ["HealthTimeout", "A", "Rolled_Back", "a1:b"] {
        assert!(is_condition_reason(ok), "{ok}");
    }
    for bad in ["", "1abc", "has space", "Trailing:", "Dash-ed"] {
        assert!(!is_condition_reason(bad), "{bad}");
    }
    for d in [
        simple(&[fresh("a")], "r"),
        simple(&[], "r"),
        simple(&[at("a", "r", Healthy)], "r"),
        decide_with(
            &[at("a", "q", Healthy)],
            "r",
            true,
            &[],
            &Previous::default(),
        ),
    ] {
        for c in &d.conditions {
            assert!(is_condition_reason(&c.reason), "{c:?}");
        }
    }
}

// ---- property tests ----

fn arb_phase() -> impl Strategy<Value = Option<NodePhase>> {
    prop_oneof![
        Just(None),
        Just(Some(Pending)),
        Just(Some(Applying)),
        Just(Some(WaitingForKubelet)),
        Just(Some(Healthy)),
        Just(Some(RolledBack)),
        Just(Some(Failed)),
    ]
}

fn arb_rev() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("r0".to_string()),
        Just("r1".to_string()),
        Just("r2".to_string())
    ]
}

fn arb_node(name: String) -> impl Strategy<Value = NodeView> {
    (
        arb_rev(),
        proptest::option::of(arb_rev()),
        proptest::option::of(arb_rev()),
        arb_phase(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(move |(spec, target, applied, phase, facts, rb)| NodeView {
            name: name.clone(),
            has_cpn: true,
            spec_revision: spec,
            target_revision: target,
            applied_revision: applied,
            phase,
            reason: None,
            message: None,
            has_facts: facts,
            rolling_back: rb % 4 == 0,
            unreachable: false,
        })
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeView>> {
    (1usize..=7).prop_flat_map(|n| {
        (0..n)
            .map(|i| arb_node(format!("cp-{i}")))
            .collect::<Vec<_>>()
    })
}

proptest! {
    /// Whatever the nodes report, the operator starts a node only when none is in flight, the
    /// rollout is not halted or paused, and the node has facts and is behind; Lease holders
    /// only when no other node is behind (a re-target keeps the node in flight, whatever it is).
    #[test]
    fn a_start_is_always_safe(
        nodes in arb_nodes(),
        rev in prop_oneof![Just("r1"), Just("r2")],
        paused in any::<bool>(),
        holder_mask in any::<u8>(),
    ) {
        let holders: BTreeSet<String> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| holder_mask & (1 << i) != 0)
            .map(|(_, n)| n.name.clone())
            .collect();
        let prev = Previous::default();
        let d = decide(&RolloutInput { revision: rev, paused, nodes: &nodes, lease_holders: &holders, previous: &prev, now: now(), progress_deadline_seconds: 900 });
        let halted = nodes.iter().any(|n| matches!(n.settled_at(rev), Some(RolledBack | Failed)));
        prop_assert_eq!(halted, d.halted.is_some());
        if let Some(s) = &d.start {
            prop_assert!(!halted);
            prop_assert!(!paused);
            let n = nodes.iter().find(|n| &n.name == s).unwrap();
            // No node in flight, or the one in flight is re-targeted while it neither writes
            // files nor rolls back.
            prop_assert!(nodes.iter().all(|o| !o.in_flight() || o.name == *s));
            prop_assert_eq!(d.retarget, n.in_flight());
            if n.in_flight() {
                prop_assert!(n.phase != Some(Applying) && !n.rolling_back);
            }
            prop_assert!(n.has_facts);
            prop_assert_ne!(&n.spec_revision, rev);
            if holders.contains(s) && !d.retarget {
                prop_assert!(nodes.iter().all(|o| holders.contains(&o.name) || !o.has_facts || o.spec_revision == rev));
            }
        }
        if halted { prop_assert_eq!(d.phase, RolloutPhase::Halted); }
        for c in &d.conditions { prop_assert!(is_condition_reason(&c.reason)); }
    }
}

/// One step of the simulated world.
#[derive(Clone, Debug)]
enum Step {
    /// The operator reconciles (a restarted operator is the same: `decide` keeps no state).
    Reconcile,
    /// An operator replica reconciles, writes its status (the claim), and stalls before its
    /// ControlPlaneNode write, which carries the resourceVersion it read.
    Stall,
    /// The stalled write arrives; the API server refuses it if the ControlPlaneNode changed.
    Land,
    /// The agent on node `i` makes one move allowed by the protocol; `choice` picks among them.
    Agent(usize, u8),
    /// The spec changes to another revision.
    NewGeneration(u8),
    /// `spec.rollout.paused` flips.
    TogglePause,
    /// The Lease holders change.
    Leases(u8),
    /// Minutes pass.
    Tick(u8),
    /// Node `i`'s ControlPlaneNode is deleted and re-created empty (or its node leaves the
    /// selector and comes back).
    Recreate(usize),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Reconcile),
        1 => Just(Step::Stall),
        1 => Just(Step::Land),
        6 => (0usize..7, any::<u8>()).prop_map(|(i, c)| Step::Agent(i, c)),
        1 => (0u8..4).prop_map(Step::NewGeneration),
        1 => Just(Step::TogglePause),
        1 => any::<u8>().prop_map(Step::Leases),
        1 => any::<u8>().prop_map(Step::Tick),
        1 => (0usize..7).prop_map(Step::Recreate),
    ]
}

/// The agent's moves (docs/architecture.md, agent phases): take up a new spec revision, advance
/// the phase, settle; or report facts. An agent may also restart and report `Pending` again for
/// the revision it is working on.
fn agent_step(n: &mut NodeView, choice: u8) {
    if !n.has_facts {
        n.has_facts = true;
        n.phase = Some(Pending);
        return;
    }
    if n.spec_revision.is_empty() {
        return;
    }
    if n.target_revision.as_deref() != Some(n.spec_revision.as_str()) {
        // A new revision is taken up only after a write or a restore is finished.
        if n.phase == Some(Applying) {
            n.applied_revision = n.target_revision.clone();
            n.phase = Some(WaitingForKubelet);
            return;
        }
        if n.rolling_back {
            n.rolling_back = false;
            n.phase = Some(RolledBack);
            return;
        }
        n.target_revision = Some(n.spec_revision.clone());
        n.phase = Some(Pending);
        return;
    }
    if n.rolling_back {
        n.rolling_back = false;
        n.phase = Some(if choice.is_multiple_of(3) {
            Failed
        } else {
            RolledBack
        });
        return;
    }
    match n.phase {
        Some(Pending) => n.phase = Some(Applying),
        Some(Applying) => {
            n.applied_revision = n.target_revision.clone();
            n.phase = Some(if choice.is_multiple_of(7) {
                Failed
            } else {
                WaitingForKubelet
            });
        }
        Some(WaitingForKubelet) => match choice % 5 {
            0 => n.rolling_back = true,
            1 => n.phase = Some(Pending), // agent restarted mid-wait
            _ => n.phase = Some(Healthy),
        },
        None => n.phase = Some(Pending),
        // Settled: nothing to do until a new spec revision.
        Some(Healthy | RolledBack | Failed) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// With agents following the protocol, in any interleaving of agent moves, reconciles
    /// (including from a restarted operator), new generations, pauses, Lease moves, passing
    /// time and re-created ControlPlaneNodes, no two nodes are ever in flight, a halted
    /// rollout never starts a node, a node is never given a new revision while it writes files
    /// or rolls back, and a revision the operator saw fail on a node is never given to that
    /// node again.
    #[test]
    fn never_two_nodes_in_flight(
        count in 1usize..=7,
        facts_mask in any::<u8>(),
        steps in proptest::collection::vec(arb_step(), 1..300),
    ) {
        let revs = ["r0", "r1", "r2", "r3"];
        let mut rev = "r0";
        let mut paused = false;
        let mut holders = BTreeSet::new();
        let mut prev = Previous::default();
        let mut clock = now();
        let mut seen_failed: BTreeSet<(String, String)> = BTreeSet::new();
        // A stalled ControlPlaneNode write: node, revision, and the node's resourceVersion as
        // read. Versions count every change of a node (as resourceVersions do).
        let mut stalled: Option<(usize, String, u64)> = None;
        let mut nodes: Vec<NodeView> = (0..count)
            .map(|i| NodeView {
                name: format!("cp-{i}"),
                has_cpn: true,
                has_facts: facts_mask & (1 << i) != 0,
                ..Default::default()
            })
            .collect();
        let mut versions: Vec<u64> = vec![0; nodes.len()];
        for step in steps {
            let before = nodes.clone();
            match step {
                Step::Land => {
                    if let Some((i, r, seen)) = stalled.take()
                        && versions[i] == seen
                    {
                        nodes[i].spec_revision = r;
                    }
                }
                Step::Reconcile | Step::Stall => {
                    for n in &nodes {
                        if matches!(n.settled_at(&n.spec_revision), Some(RolledBack | Failed)) {
                            seen_failed.insert((n.name.clone(), n.spec_revision.clone()));
                        }
                    }
                    let d = decide(&RolloutInput { revision: rev, paused, nodes: &nodes, lease_holders: &holders, previous: &prev, now: clock, progress_deadline_seconds: 900 });
                    if d.halted.is_some() {
                        prop_assert_eq!(&d.start, &None);
                    }
                    if let Some(s) = &d.start {
                        prop_assert!(!seen_failed.contains(&(s.clone(), rev.to_string())), "{} retried {}", s, rev);
                        let i = nodes.iter().position(|n| &n.name == s).unwrap();
                        let n = &mut nodes[i];
                        prop_assert!(n.phase != Some(Applying) || !n.in_flight());
                        prop_assert!(!n.rolling_back || !n.in_flight());
                        if matches!(step, Step::Stall) && stalled.is_none() {
                            stalled = Some((i, rev.to_string(), versions[i]));
                        } else {
                            n.spec_revision = rev.to_string();
                        }
                    }
                    prev = Previous {
                        revision: Some(rev.to_string()),
                        node_in_flight: d.node_in_flight.clone(),
                        ready: d.phase == RolloutPhase::Complete,
                        degraded_reason: d.halted.as_ref().map(|h| h.reason.clone()),
                        in_flight_revision: d.in_flight_revision.clone(),
                        in_flight_since: d.in_flight_since,
                        failed: d.failed_revisions.clone(),
                    };
                }
                Step::Tick(minutes) => {
                    clock += SignedDuration::from_mins(i64::from(minutes));
                }
                Step::Recreate(i) => {
                    if let Some(n) = nodes.get_mut(i) {
                        let name = n.name.clone();
                        let facts = n.has_facts;
                        *n = NodeView { name, has_cpn: true, has_facts: facts, phase: Some(Pending), ..Default::default() };
                    }
                }
                Step::Agent(i, choice) => {
                    if let Some(n) = nodes.get_mut(i) {
                        agent_step(n, choice);
                    }
                }
                Step::NewGeneration(r) => rev = revs[r as usize],
                Step::TogglePause => paused = !paused,
                Step::Leases(mask) => {
                    holders = nodes
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, n)| n.name.clone())
                        .collect();
                }
            }
            for (i, (now, was)) in nodes.iter().zip(&before).enumerate() {
                if now != was {
                    versions[i] += 1;
                }
            }
            let flying = nodes.iter().filter(|n| n.in_flight()).count();
            prop_assert!(flying <= 1, "two nodes in flight: {:?}", nodes);
        }
    }
}

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
