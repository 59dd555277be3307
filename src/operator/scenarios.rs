//! Reconcile scenarios against a mocked API server, one per rollout transition. Each asserts
//! every request the operator makes, in order, and that it makes no other.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fixtures::*;
use super::reconcile::reconcile;
use super::rollout::reason;
use super::{selection, waves};
use crate::api::NodePhase::*;
use crate::api::{ApiServer, Arg, ControlPlaneConfigStatus, Encryption, Rollout, SecretKeyRef};
use kube::ResourceExt;

mod config;
mod races;
mod upgrade;

fn status_says(
    in_flight: Option<&'static str>,
    ready: bool,
    progressing: bool,
    degraded: bool,
) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |s: &Value| {
        assert_eq!(s["nodeInFlight"], json!(in_flight), "{s}");
        for (t, want) in [
            ("Ready", ready),
            ("Progressing", progressing),
            ("Degraded", degraded),
        ] {
            let c = condition(s, t);
            assert_eq!(c["status"], if want { "True" } else { "False" }, "{t}: {c}");
            assert!(c["lastTransitionTime"].is_string(), "{c}");
        }
    })
}

fn with_check(
    base: Box<dyn FnOnce(&Value) + Send>,
    more: impl FnOnce(&Value) + Send + 'static,
) -> Box<dyn FnOnce(&Value) + Send> {
    Box::new(move |s: &Value| {
        base(s);
        more(s);
    })
}

fn prev_status(world: &World, in_flight: Option<&str>) -> ControlPlaneConfigStatus {
    ControlPlaneConfigStatus {
        observed_generation: world.cpc.metadata.generation,
        revision: Some(world.revision()),
        node_in_flight: in_flight.map(String::from),
        ..Default::default()
    }
}

async fn play(world: World, scenario: Scenario) {
    let (ctx, verifier) = test_context();
    let handle = verifier.run(scenario);
    reconcile(arc(&world), ctx)
        .await
        .expect("reconcile succeeds");
    finish(handle).await;
}

#[tokio::test]
async fn start_gives_the_first_node_the_revision() {
    let world = World::new(config(1, valid_spec()), &["cp-1", "cp-2", "cp-3"]).with_cpns(vec![
        cpn("cp-1", "", Pending),
        cpn("cp-2", "", Pending),
        cpn("cp-3", "", Pending),
    ]);
    let rev = world.revision();
    let check = with_check(status_says(Some("cp-1"), false, true, false), move |s| {
        assert_eq!(s["revision"], json!(rev));
        assert_eq!(
            (s["nodes"].as_i64(), s["updatedNodes"].as_i64()),
            (Some(3), Some(0))
        );
        assert_eq!(
            condition(s, "Progressing")["message"],
            json!(format!(
                "node cp-1: Pending (revision {rev}, 0 of 3 updated)"
            ))
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::Start("cp-1"),
                Write::Event(reason::NODE_UPDATE_STARTED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn advance_starts_the_next_node_once_the_first_is_healthy() {
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2", "cp-3"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn("cp-1", &rev, Healthy),
        cpn("cp-2", "r-old", Healthy),
        cpn("cp-3", "r-old", Healthy),
    ]);
    let prev = prev_status(&world, Some("cp-1"));
    world = world.with_status(prev);
    let check = with_check(status_says(Some("cp-2"), false, true, false), |s| {
        assert_eq!(
            (s["updatedNodes"].as_i64(), s["readyNodes"].as_i64()),
            (Some(1), Some(1))
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::Start("cp-2"),
                Write::Event(reason::NODE_UPDATED),
                Write::Event(reason::NODE_UPDATE_STARTED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_node_in_flight_holds_everyone_else() {
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn_moving("cp-1", &rev, &rev, WaitingForKubelet),
        cpn("cp-2", "r-old", Healthy),
    ]);
    let prev = prev_status(&world, Some("cp-1"));
    world = world.with_status(prev);
    let check = with_check(status_says(Some("cp-1"), false, true, false), move |s| {
        assert_eq!(
            condition(s, "Progressing")["message"],
            json!(format!(
                "node cp-1: WaitingForKubelet (revision {rev}, 0 of 2 updated)"
            ))
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(world, vec![Write::Status(check)]),
    )
    .await;
}

#[tokio::test]
async fn rolled_back_node_halts_the_rollout_and_nothing_else_is_patched() {
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2", "cp-3"]);
    let rev = world.revision();
    let mut bad = cpn("cp-1", &rev, RolledBack);
    if let Some(s) = bad.status.as_mut() {
        s.applied_revision = Some("r-old".into());
        s.reason = Some("HealthTimeout".into());
        s.message = Some("kube-apiserver did not become ready within 300s".into());
    }
    world = world.with_cpns(vec![
        bad,
        cpn("cp-2", "r-old", Healthy),
        cpn("cp-3", "r-old", Healthy),
    ]);
    let prev = prev_status(&world, Some("cp-1"));
    world = world.with_status(prev);
    let check = with_check(status_says(None, false, false, true), |s| {
        let d = condition(s, "Degraded");
        assert_eq!(d["reason"], "HealthTimeout");
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .contains("node cp-1 rolled back"),
            "{d}"
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world.clone(),
            vec![
                Write::Status(check),
                Write::Event(reason::NODE_ROLLED_BACK),
                Write::Event(reason::ROLLOUT_HALTED),
            ],
        ),
    )
    .await;

    // Reconciled again (status now says Degraded): still nothing patched, no repeated Events.
    let mut halted = prev_status(&world, None);
    halted.conditions.push(crate::api::Condition {
        type_: "Degraded".into(),
        status: "True".into(),
        reason: "HealthTimeout".into(),
        message: String::new(),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        ),
        observed_generation: Some(2),
    });
    let world = world.with_status(halted);
    let check = with_check(status_says(None, false, false, true), |s| {
        // The transition time of an unchanged condition is kept.
        assert_eq!(
            condition(s, "Degraded")["lastTransitionTime"],
            "2023-11-14T22:13:20Z"
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(world, vec![Write::Status(check)]),
    )
    .await;
}

#[tokio::test]
async fn pause_starts_no_node() {
    let mut spec = valid_spec();
    spec.rollout = Some(Rollout {
        paused: Some(true),
        ..Default::default()
    });
    let mut world = World::new(config(3, spec), &["cp-1", "cp-2"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn("cp-1", &rev, Healthy),
        cpn("cp-2", "r-old", Healthy),
    ]);
    let prev = prev_status(&world, None);
    world = world.with_status(prev);
    // Pausing is not a new revision: the status names the one the unpaused spec has, which
    // cp-1 runs, so cp-1 is not rolled again when the rollout is resumed.
    let unpaused = World::new(config(3, valid_spec()), &["cp-1", "cp-2"]).revision();
    assert_eq!(rev, unpaused);
    let check = with_check(status_says(None, false, false, false), move |s| {
        assert_eq!(condition(s, "Progressing")["reason"], "RolloutPaused");
        assert_eq!(s["revision"], json!(unpaused));
        assert_eq!(s["updatedNodes"], 1);
    });
    play(
        world.clone(),
        Scenario::Reconcile(world, vec![Write::Status(check)]),
    )
    .await;
}

#[tokio::test]
async fn new_generation_waits_for_the_node_in_flight_then_rolls_out_the_newest_revision() {
    // Generation 1 had revision r1 (cp-1 updated, cp-2 applying); generation 2 changed the spec.
    let mut spec = valid_spec();
    spec.api_server = Some(ApiServer {
        extra_args: vec![Arg::new("audit-log-maxage", "7")],
        ..Default::default()
    });
    let world = World::new(config(2, spec), &["cp-1", "cp-2", "cp-3"]);
    let r2 = world.revision();
    let r1 = "r1";
    let waiting = world.clone().with_cpns(vec![
        cpn("cp-1", r1, Healthy),
        cpn_moving("cp-2", r1, r1, Applying),
        cpn("cp-3", "r0", Healthy),
    ]);
    let check = with_check(status_says(Some("cp-2"), false, true, false), move |s| {
        assert_eq!(s["revision"], json!(r2));
        let msg = condition(s, "Progressing")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(&format!("revision {r2} starts when it settles")),
            "{msg}"
        );
    });
    play(
        waiting.clone(),
        Scenario::Reconcile(waiting, vec![Write::Status(check)]),
    )
    .await;

    // cp-2 settles at r1: the newest revision starts again from the first node.
    let settled = world
        .with_cpns(vec![
            cpn("cp-1", r1, Healthy),
            cpn("cp-2", r1, Healthy),
            cpn("cp-3", "r0", Healthy),
        ])
        .with_status(ControlPlaneConfigStatus {
            observed_generation: Some(1),
            revision: Some(r1.into()),
            node_in_flight: Some("cp-2".into()),
            ..Default::default()
        });
    play(
        settled.clone(),
        Scenario::Reconcile(
            settled,
            vec![
                Write::Status(status_says(Some("cp-1"), false, true, false)),
                Write::Start("cp-1"),
                Write::Event(reason::NODE_UPDATED),
                Write::Event(reason::NODE_UPDATE_STARTED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn restarted_operator_resumes_from_the_api_alone() {
    // A new operator (fresh context, no memory) finds cp-2 in flight and no status at all.
    let mut world = World::new(config(4, valid_spec()), &["cp-1", "cp-2", "cp-3"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn("cp-1", &rev, Healthy),
        cpn_moving("cp-2", &rev, "r-old", Healthy), // agent has not taken the revision up yet
        cpn("cp-3", "r-old", Healthy),
    ]);
    play(
        world.clone(),
        Scenario::Reconcile(
            world.clone(),
            vec![Write::Status(status_says(Some("cp-2"), false, true, false))],
        ),
    )
    .await;

    // Once cp-2 is healthy, the next fresh operator moves cp-3, never two at once.
    let world = world.with_cpns(vec![
        cpn("cp-1", &rev, Healthy),
        cpn("cp-2", &rev, Healthy),
        cpn("cp-3", "r-old", Healthy),
    ]);
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(status_says(Some("cp-3"), false, true, false)),
                Write::Start("cp-3"),
                Write::Event(reason::NODE_UPDATE_STARTED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn complete_rollout_is_ready() {
    let mut world = World::new(config(5, valid_spec()), &["cp-1", "cp-2"]);
    let rev = world.revision();
    world = world.with_cpns(vec![cpn("cp-1", &rev, Healthy), cpn("cp-2", &rev, Healthy)]);
    let prev = prev_status(&world, Some("cp-2"));
    world = world.with_status(prev);
    let check = with_check(status_says(None, true, false, false), |s| {
        assert_eq!(
            (s["updatedNodes"].as_i64(), s["readyNodes"].as_i64()),
            (Some(2), Some(2))
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::Event(reason::NODE_UPDATED),
                Write::Event(reason::ROLLOUT_COMPLETED),
            ],
        ),
    )
    .await;
}
