use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{
    Condition, ControlPlaneConfigSpec, ControlPlaneConfigStatus, ControlPlaneNodeSpec,
    ControlPlaneNodeStatus, NodeFacts, NodePhase,
};

fn cond(t: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: t.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(Timestamp::from_second(1_700_000_000).unwrap()),
        observed_generation: Some(3),
    }
}

fn cpc(generation: i64, observed: i64, conditions: Vec<Condition>) -> ControlPlaneConfig {
    let mut c = ControlPlaneConfig::new("prod", ControlPlaneConfigSpec::default());
    c.metadata.generation = Some(generation);
    c.status = Some(ControlPlaneConfigStatus {
        observed_generation: Some(observed),
        revision: Some("abc".into()),
        nodes: 3,
        updated_nodes: 1,
        ready_nodes: 1,
        conditions,
        ..Default::default()
    });
    c
}

fn node(
    name: &str,
    spec_rev: &str,
    target: Option<&str>,
    phase: Option<NodePhase>,
    facts: bool,
) -> ControlPlaneNode {
    let mut c = ControlPlaneNode::new(
        name,
        ControlPlaneNodeSpec {
            config_name: "prod".into(),
            revision: spec_rev.into(),
            ..Default::default()
        },
    );
    c.metadata.labels = Some(BTreeMap::from([(CONFIG_LABEL.into(), "prod".into())]));
    c.status = Some(ControlPlaneNodeStatus {
        node_facts: facts.then(NodeFacts::default),
        target_revision: target.map(String::from),
        applied_revision: target.map(String::from),
        phase,
        ..Default::default()
    });
    c
}

fn rolling() -> Vec<ControlPlaneNode> {
    vec![
        node("cp-3", "", None, Some(NodePhase::Pending), false),
        node("cp-1", "abc", Some("abc"), Some(NodePhase::Healthy), true),
        node(
            "cp-2",
            "abc",
            Some("abc"),
            Some(NodePhase::WaitingForKubelet),
            true,
        ),
        node("cp-9", "old", Some("old"), Some(NodePhase::Healthy), true),
    ]
}

#[test]
fn in_progress_lists_every_node_like_kubectl() {
    let c = cpc(
        3,
        3,
        vec![
            cond("Ready", false, "RolloutInProgress", ""),
            cond(
                "Progressing",
                true,
                "NodeUpdating",
                "node cp-2: WaitingForKubelet (revision abc, 1 of 3 updated)",
            ),
            cond("Degraded", false, "AsExpected", ""),
        ],
    );
    let mut nodes = rolling();
    // A node of another config is not shown.
    nodes[3].metadata.labels = Some(BTreeMap::from([(CONFIG_LABEL.into(), "other".into())]));
    nodes.push(node(
        "cp-4",
        "old",
        Some("old"),
        Some(NodePhase::Healthy),
        true,
    ));
    let p = progress(&c, &nodes);
    let lines: Vec<&str> = p.nodes.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        vec![
            "node cp-1: Healthy (revision abc, 1 of 4 updated)",
            "node cp-2: WaitingForKubelet (revision abc, 1 of 4 updated)",
            "node cp-3: WaitingForAgent (revision none, 1 of 4 updated)",
            "node cp-4: Queued (revision old, 1 of 4 updated)",
        ]
    );
    assert_eq!(
        p.summary,
        "Waiting for cpc/prod rollout to finish: node cp-2: WaitingForKubelet (revision abc, 1 of 3 updated)"
    );
    assert_eq!(p.outcome, Outcome::InProgress);
    assert_eq!(p.outcome.exit_code(), 2);
}

#[test]
fn complete_at_the_current_generation_exits_zero() {
    let c = cpc(
        3,
        3,
        vec![cond(
            "Ready",
            true,
            "RolloutComplete",
            "3 of 3 nodes healthy at revision abc",
        )],
    );
    let p = progress(&c, &[]);
    assert_eq!(p.outcome, Outcome::Complete);
    assert_eq!(p.outcome.exit_code(), 0);
    assert!(
        p.summary
            .starts_with("cpc/prod successfully rolled out: revision abc"),
        "{}",
        p.summary
    );
}

#[test]
fn ready_for_an_older_generation_is_not_complete() {
    let c = cpc(4, 3, vec![cond("Ready", true, "RolloutComplete", "")]);
    let p = progress(&c, &[]);
    assert_eq!(p.outcome, Outcome::InProgress);
    assert_eq!(
        p.summary,
        "Waiting for the operator to observe generation 4 of cpc/prod"
    );
    let mut never = cpc(1, 0, vec![]);
    never.status = None;
    assert_eq!(progress(&never, &[]).outcome, Outcome::InProgress);
}

#[test]
fn degraded_exits_one_with_the_reason() {
    let c = cpc(
        3,
        3,
        vec![
            cond("Ready", false, "RolloutHalted", ""),
            cond(
                "Degraded",
                true,
                "HealthTimeout",
                "rollout halted: node cp-2 rolled back at revision abc",
            ),
        ],
    );
    let mut bad = node(
        "cp-2",
        "abc",
        Some("abc"),
        Some(NodePhase::RolledBack),
        true,
    );
    bad.status.as_mut().unwrap().reason = Some("HealthTimeout".into());
    let p = progress(&c, &[bad]);
    assert_eq!(p.outcome.exit_code(), 1);
    assert!(p.outcome.is_final());
    assert_eq!(
        p.summary,
        "error: cpc/prod is degraded (HealthTimeout): rollout halted: node cp-2 rolled back at revision abc"
    );
    assert_eq!(
        p.nodes[0].1,
        "node cp-2: RolledBack (revision abc, 1 of 3 updated): HealthTimeout"
    );
}

#[test]
fn watching_prints_only_what_changed() {
    let c = cpc(3, 3, vec![cond("Progressing", true, "NodeUpdating", "x")]);
    let first = progress(&c, &rolling()[..3]);
    let mut out = Vec::new();
    print_changes(None, &first, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 4);

    let mut moved = rolling();
    moved[2] = node("cp-2", "abc", Some("abc"), Some(NodePhase::Healthy), true);
    let second = progress(&c, &moved[..3]);
    let mut out = Vec::new();
    print_changes(Some(&first), &second, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "node cp-2: Healthy (revision abc, 1 of 3 updated)\n"
    );
    let mut out = Vec::new();
    print_changes(Some(&second), &second, &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn nodes_that_left_the_selector_are_not_listed() {
    let c = cpc(3, 3, vec![]);
    let mut gone = node(
        "cp-7",
        "abc",
        Some("abc"),
        Some(NodePhase::RolledBack),
        true,
    );
    gone.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(
            crate::operator::selection::UNSELECTED_LABEL.into(),
            "true".into(),
        );
    let mut cpns = rolling();
    cpns.push(gone);
    let p = progress(&c, &cpns);
    assert!(p.nodes.iter().all(|(n, _)| n != "cp-7"), "{:?}", p.nodes);
    assert_eq!(p.nodes.len(), rolling().len());
}
