use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::api::NodePhase::{self, *};

mod deadline;
mod properties;

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
