//! Reconcile scenarios against a mocked API server, one per rollout transition. Each asserts
//! every request the operator makes, in order, and that it makes no other.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fixtures::*;
use super::reconcile::reconcile;
use super::rollout::reason;
use crate::api::NodePhase::*;
use crate::api::{ApiServer, Arg, ControlPlaneConfigStatus, Encryption, Rollout, SecretKeyRef};
use kube::ResourceExt;

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

#[tokio::test]
async fn invalid_spec_degrades_and_touches_no_node() {
    let mut spec = valid_spec();
    spec.kubernetes_version = "v1.20.0".into();
    let world = World::new(config(6, spec), &["cp-1"]).with_cpns(vec![cpn("cp-1", "", Pending)]);
    let check: Box<dyn FnOnce(&Value) + Send> = Box::new(|s: &Value| {
        let d = condition(s, "Degraded");
        assert_eq!(
            (d["status"].as_str(), d["reason"].as_str()),
            (Some("True"), Some("InvalidSpec"))
        );
        assert!(
            d["message"].as_str().unwrap().contains("kubernetesVersion"),
            "{d}"
        );
        assert_eq!(condition(s, "Ready")["status"], "False");
    });
    play(
        world.clone(),
        Scenario::Blocked(
            world,
            vec![
                Write::Status(check),
                Write::Event(reason::VALIDATION_FAILED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn missing_encryption_secret_degrades_with_a_clear_message() {
    let mut spec = valid_spec();
    spec.api_server = Some(ApiServer {
        encryption: Some(Encryption {
            secret_ref: Some(SecretKeyRef {
                name: "encryption".into(),
                ..Default::default()
            }),
            managed: None,
        }),
        ..Default::default()
    });
    let world = World::new(config(1, spec), &["cp-1"]);
    let check: Box<dyn FnOnce(&Value) + Send> = Box::new(|s: &Value| {
        let d = condition(s, "Degraded");
        assert_eq!(d["reason"], "EncryptionSecretMissing");
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .contains("kube-system/encryption does not exist"),
            "{d}"
        );
    });
    play(
        world.clone(),
        Scenario::Blocked(world, vec![Write::Status(check)]),
    )
    .await;
}

#[tokio::test]
async fn encryption_secret_digest_is_part_of_the_revision() {
    let mut spec = valid_spec();
    spec.api_server = Some(ApiServer {
        encryption: Some(Encryption {
            secret_ref: Some(SecretKeyRef {
                name: "encryption".into(),
                ..Default::default()
            }),
            managed: None,
        }),
        ..Default::default()
    });
    let mut world =
        World::new(config(1, spec.clone()), &["cp-1"]).with_cpns(vec![cpn("cp-1", "", Pending)]);
    world.secret = Some(BTreeMap::from([(
        "config.yaml".to_string(),
        b"kind: EncryptionConfiguration\n".to_vec(),
    )]));
    let rev = world.revision();
    assert_ne!(rev, crate::render::revision(&spec, None));
    let check = with_check(status_says(Some("cp-1"), false, true, false), move |s| {
        assert_eq!(s["revision"], json!(rev));
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
async fn new_nodes_get_an_empty_cpn_and_wait_for_their_agent() {
    let world = World::new(config(1, valid_spec()), &["cp-1", "cp-2"]);
    let check = with_check(status_says(None, false, true, false), |s| {
        let p = condition(s, "Progressing");
        assert_eq!(p["reason"], "WaitingForAgents");
        assert!(
            p["message"].as_str().unwrap().starts_with(
                "waiting for the agents on nodes cp-1, cp-2 to report their node facts"
            ),
            "{p}"
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::CreateEmpty("cp-1"),
                Write::CreateEmpty("cp-2"),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_node_leaving_the_selector_keeps_its_cpn_marked_and_uncounted() {
    let mut world = World::new(config(1, valid_spec()), &["cp-1", "cp-4"]);
    // cp-4 lost its control-plane label (now a worker). The revision names what the selected
    // nodes get, so cp-1's bytes alone.
    world.nodes[1].1 =
        BTreeMap::from([("node-role.kubernetes.io/worker".to_string(), String::new())]);
    let rev = world.revision();
    world = world.with_cpns(vec![cpn("cp-1", &rev, Healthy), cpn("cp-4", &rev, Healthy)]);
    let check = with_check(status_says(None, true, false, false), |s| {
        assert_eq!(s["nodes"], 1);
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::MarkUnselected("cp-4", true),
                Write::Event(reason::ROLLOUT_COMPLETED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn lease_holders_are_updated_last() {
    let mut world = World::new(config(1, valid_spec()), &["cp-1", "cp-2", "cp-3"]).with_cpns(vec![
        cpn("cp-1", "r-old", Healthy),
        cpn("cp-2", "r-old", Healthy),
        cpn("cp-3", "r-old", Healthy),
    ]);
    world
        .leases
        .insert("kube-controller-manager", "cp-1_5d0f1c3e-aaaa".into());
    world
        .leases
        .insert("kube-scheduler", "cp-2_77c1d2e4-bbbb".into());
    let check = with_check(status_says(Some("cp-3"), false, true, false), |s| {
        let leaders = s["leaders"].as_array().expect("leaders");
        assert_eq!(leaders.len(), 2);
        assert_eq!(leaders[0]["component"], "kube-controller-manager");
        assert_eq!(leaders[0]["holder"], "cp-1_5d0f1c3e-aaaa");
        assert_eq!(leaders[0]["node"], "cp-1");
        assert_eq!(leaders[0]["transitions"], 4);
        assert_eq!(leaders[0]["renewTime"], "2023-11-14T22:15:00.000000Z");
        assert_eq!(leaders[1]["node"], "cp-2");
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::Start("cp-3"),
                Write::Event(reason::NODE_UPDATE_STARTED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_node_claimed_by_another_config_is_a_conflict() {
    let mut other = cpn("cp-1", "r-x", Healthy);
    other.metadata.labels = Some(BTreeMap::from([(
        super::selection::CONFIG_LABEL.into(),
        "other".into(),
    )]));
    let world = World::new(config(1, valid_spec()), &["cp-1"]).with_cpns(vec![other]);
    let check: Box<dyn FnOnce(&Value) + Send> = Box::new(|s: &Value| {
        let d = condition(s, "Degraded");
        assert_eq!(
            (d["status"].as_str(), d["reason"].as_str()),
            (Some("True"), Some("NodeConflict"))
        );
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .contains("node cp-1 is managed by ControlPlaneConfig other")
        );
    });
    play(
        world.clone(),
        Scenario::Conflict(world, vec![Write::Status(check)]),
    )
    .await;
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_for_a_retry() {
    let world = World::new(config(1, valid_spec()), &["cp-1"]);
    let (ctx, mut verifier) = test_context();
    let handle = tokio::spawn(async move {
        let (_, send) = verifier.0.next_request().await.expect("GET config");
        send.send_response(
            http::Response::builder()
                .status(500)
                .body(kube::client::Body::from(
                    br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out","reason":"InternalError","code":500}"#.to_vec(),
                ))
                .unwrap(),
        );
        assert!(
            verifier.0.next_request().await.is_none(),
            "nothing after a failed read"
        );
    });
    let err = reconcile(arc(&world), ctx).await.expect_err("fails");
    assert!(
        err.to_string().contains("get ControlPlaneConfig prod"),
        "{err}"
    );
    assert_eq!(err.metric_label(), "Kube");
    finish(handle).await;
}

#[tokio::test]
async fn rollout_settings_are_not_a_new_revision_but_a_node_address_is() {
    // minReadySeconds, health timeouts and the deadline change no file: same revision, so a
    // complete rollout stays complete and no node is touched.
    let mut spec = valid_spec();
    spec.rollout = Some(Rollout {
        min_ready_seconds: Some(30),
        progress_deadline_seconds: Some(1800),
        ..Default::default()
    });
    let base = World::new(config(2, valid_spec()), &["cp-1", "cp-2"]);
    let rev = base.revision();
    let world = World::new(config(3, spec), &["cp-1", "cp-2"])
        .with_cpns(vec![cpn("cp-1", &rev, Healthy), cpn("cp-2", &rev, Healthy)]);
    let world = world.clone().with_status(prev_status(&base, None));
    let check = with_check(status_says(None, true, false, false), move |s| {
        assert_eq!(s["revision"], json!(rev));
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world.clone(),
            vec![
                Write::Status(check),
                Write::Event(reason::ROLLOUT_COMPLETED),
            ],
        ),
    )
    .await;

    // cp-2's agent reports a new address: its kube-apiserver manifest changes, so the revision
    // does, and the rollout starts again (history keyed by revision then holds the bytes that
    // ran).
    let old = base.revision();
    let mut moved = cpn("cp-2", &old, Healthy);
    if let Some(f) = moved.status.as_mut().and_then(|s| s.node_facts.as_mut()) {
        f.advertise_address = Some("10.0.0.99".into());
    }
    let world = World::new(config(2, valid_spec()), &["cp-1", "cp-2"])
        .with_cpns(vec![cpn("cp-1", &old, Healthy), moved])
        .with_status(prev_status(&base, None));
    let check = with_check(status_says(Some("cp-1"), false, true, false), move |s| {
        let new = s["revision"].as_str().expect("revision");
        assert_ne!(new, old, "a changed address is a new revision");
        assert_eq!(s["nodeInFlightRevision"], json!(new));
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
async fn a_conflict_on_the_claim_writes_no_controlplanenode() {
    // Another operator leader (or a user) changed the config after this one read it: the
    // status write that claims cp-1 is refused with 409, and cp-1's ControlPlaneNode is not
    // written.
    let world = World::new(config(1, valid_spec()), &["cp-1", "cp-2"])
        .with_cpns(vec![cpn("cp-1", "", Pending), cpn("cp-2", "", Pending)]);
    let (ctx, verifier) = test_context();
    let handle = verifier.run(Scenario::Reconcile(
        world.clone(),
        vec![Write::StatusConflict],
    ));
    let action = reconcile(arc(&world), ctx)
        .await
        .expect("a conflict is not an error");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(1))
    );
    finish(handle).await; // asserts that no request follows the refused claim
}

#[tokio::test]
async fn a_recreated_controlplanenode_does_not_forget_a_failed_revision() {
    // cp-1 rolled back at the current revision; then its ControlPlaneNode was deleted and its
    // agent re-created it empty (or the node's label flapped). The failure is in the config's
    // status: cp-1 does not get the revision again, and nothing else starts.
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn("cp-1", "", Pending),
        cpn("cp-2", "r-old", Healthy),
    ]);
    let mut prev = prev_status(&world, None);
    prev.failed_revisions = vec![crate::api::FailedRevision {
        node: "cp-1".into(),
        revision: rev.clone(),
        phase: "RolledBack".into(),
        reason: "HealthTimeout".into(),
        message: Some("kube-apiserver never became ready".into()),
        at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        ),
    }];
    world = world.with_status(prev);
    let check = with_check(status_says(None, false, false, true), move |s| {
        let d = condition(s, "Degraded");
        assert_eq!(d["reason"], "HealthTimeout");
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .contains("node cp-1 rolled back"),
            "{d}"
        );
        assert_eq!(s["failedRevisions"][0]["node"], "cp-1");
        assert_eq!(s["failedRevisions"][0]["revision"], json!(rev));
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![Write::Status(check), Write::Event(reason::ROLLOUT_HALTED)],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_node_selected_again_loses_the_unselected_label() {
    let mut world = World::new(config(1, valid_spec()), &["cp-1"]);
    let rev = world.revision();
    let mut back = cpn("cp-1", &rev, Healthy);
    back.labels_mut()
        .insert(super::selection::UNSELECTED_LABEL.into(), "true".into());
    world = world.with_cpns(vec![back]);
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(status_says(None, true, false, false)),
                Write::MarkUnselected("cp-1", false),
                Write::Event(reason::ROLLOUT_COMPLETED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_node_stuck_past_the_progress_deadline_degrades_the_config() {
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn_moving("cp-1", &rev, &rev, WaitingForKubelet),
        cpn("cp-2", "r-old", Healthy),
    ]);
    let mut prev = prev_status(&world, Some("cp-1"));
    prev.node_in_flight_revision = Some(rev.clone());
    // Whole seconds, as the API server stores times.
    let since = k8s_openapi::jiff::Timestamp::from_second(
        k8s_openapi::jiff::Timestamp::now().as_second() - 3600,
    )
    .unwrap();
    prev.node_in_flight_since = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since));
    world = world.with_status(prev);
    let check = with_check(status_says(Some("cp-1"), false, false, true), move |s| {
        let d = condition(s, "Degraded");
        assert_eq!(d["reason"], "ProgressDeadlineExceeded");
        let m = d["message"].as_str().unwrap();
        assert!(
            m.contains("node cp-1 has been WaitingForKubelet at revision")
                && m.contains("for 1h0m")
                && m.contains("(900s)"),
            "{m}"
        );
        // The clock is not restarted by this reconcile.
        assert_eq!(s["nodeInFlightSince"], json!(since.to_string()));
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![Write::Status(check), Write::Event(reason::ROLLOUT_HALTED)],
        ),
    )
    .await;
}

#[tokio::test]
async fn a_start_onto_a_changed_controlplanenode_is_refused_and_decided_again() {
    // The claim is written, but cp-1's ControlPlaneNode changed after it was read (its agent
    // reported, or another replica wrote it): the write carrying the read resourceVersion is
    // refused, and nothing else is written; the next reconcile decides again.
    let world = World::new(config(1, valid_spec()), &["cp-1", "cp-2"])
        .with_cpns(vec![cpn("cp-1", "", Pending), cpn("cp-2", "", Pending)]);
    let (ctx, verifier) = test_context();
    let handle = verifier.run(Scenario::Reconcile(
        world.clone(),
        vec![
            Write::Status(status_says(Some("cp-1"), false, true, false)),
            Write::StartConflict("cp-1"),
        ],
    ));
    let action = reconcile(arc(&world), ctx).await.expect("not an error");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(1))
    );
    finish(handle).await;
}

#[tokio::test]
async fn a_fix_replaces_the_revision_a_node_is_waiting_on() {
    // cp-1 waits (WaitingForKubelet) on r1, which a user now fixed: the new revision goes to
    // cp-1 at once instead of after its health timeout, and nothing starts elsewhere.
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2"]);
    let rev = world.revision();
    world = world.with_cpns(vec![
        cpn_moving("cp-1", "r1", "r1", WaitingForKubelet),
        cpn("cp-2", "r0", Healthy),
    ]);
    let mut prev = prev_status(&world, Some("cp-1"));
    prev.revision = Some("r1".into());
    prev.node_in_flight_revision = Some("r1".into());
    world = world.with_status(prev);
    let check = with_check(status_says(Some("cp-1"), false, true, false), move |s| {
        assert_eq!(s["nodeInFlightRevision"], json!(rev));
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world.clone(),
            vec![
                Write::Status(check),
                Write::Start("cp-1"),
                Write::Event(reason::NODE_RETARGETED),
            ],
        ),
    )
    .await;

    // Not while the agent restores last-known-good: cp-1 finishes first.
    let mut restoring = cpn_moving("cp-1", "r1", "r1", WaitingForKubelet);
    if let Some(s) = restoring.status.as_mut() {
        s.rolling_back = Some(true);
    }
    let world = world.with_cpns(vec![restoring, cpn("cp-2", "r0", Healthy)]);
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![Write::Status(status_says(Some("cp-1"), false, true, false))],
        ),
    )
    .await;
}

/// The nodes run v1.35.4 (their ControlPlaneNodes hold its rendered manifests), the spec says
/// v1.36.2: the first node gets wave 1 — the new kube-apiserver beside the kube-controller-manager
/// and kube-scheduler it runs — and the status says so.
#[tokio::test]
async fn a_minor_upgrade_starts_with_kube_apiserver_alone() {
    let old_spec = crate::api::ControlPlaneConfigSpec {
        kubernetes_version: "v1.35.4".into(),
        ..valid_spec()
    };
    let old = World::new(config(1, old_spec.clone()), &["cp-1", "cp-2", "cp-3"]);
    let old_rev = old.revision();
    let cpns: Vec<_> = ["cp-1", "cp-2", "cp-3"]
        .iter()
        .map(|n| {
            let mut c = cpn(n, &old_rev, Healthy);
            let r = crate::render::render(&crate::render::RenderInput {
                spec: &old_spec,
                node: &facts(n, &fixture_ip(n)),
                encryption_config_sha256: None,
            })
            .unwrap();
            c.spec = crate::render::node_spec("prod", &old_spec, &old_rev, &r);
            if let Some(s) = c.status.as_mut() {
                s.applied_revision = Some(old_rev.clone());
            }
            c
        })
        .collect();
    let world = World::new(config(2, valid_spec()), &["cp-1", "cp-2", "cp-3"]).with_cpns(cpns);
    let full = world.revision();
    let full_check = full.clone();
    let check = with_check(status_says(Some("cp-1"), false, true, false), move |s| {
        assert_eq!(s["upgrade"]["fromVersion"], "v1.35.4", "{s}");
        assert_eq!(s["upgrade"]["toVersion"], "v1.36.2");
        assert_eq!(s["upgrade"]["wave"], 1);
        assert_eq!(s["upgrade"]["revision"], json!(full_check));
        assert_ne!(
            s["revision"],
            json!(full_check),
            "wave 1 has its own revision"
        );
        let msg = condition(s, "Progressing")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("wave 1 of 2: kube-apiserver on every node"),
            "{msg}"
        );
    });
    let cpn_check = Box::new(move |body: &Value| {
        assert_ne!(body["spec"]["revision"], json!(full));
        assert_eq!(body["spec"]["kubernetesVersion"], "v1.36.2");
        let images: Vec<String> = body["spec"]["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let c = m["content"].as_str().unwrap();
                c.lines()
                    .find_map(|l| l.trim().strip_prefix("image: "))
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            images,
            [
                "registry.k8s.io/kube-apiserver:v1.36.2",
                "registry.k8s.io/kube-controller-manager:v1.35.4",
                "registry.k8s.io/kube-scheduler:v1.35.4",
            ]
        );
    });
    play(
        world.clone(),
        Scenario::Reconcile(
            world,
            vec![
                Write::Status(check),
                Write::StartChecked("cp-1", cpn_check),
                Write::Event(super::waves::reason::UPGRADE_WAVE_STARTED),
                Write::Event(reason::NODE_UPDATE_STARTED),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn version_skip_degrades_naming_both_versions_and_touches_no_node() {
    let mut spec = valid_spec();
    spec.kubernetes_version = "v1.36.2".into();
    let mut old = cpn("cp-1", "r-old", Healthy);
    old.spec.kubernetes_version = "v1.34.3".into();
    let world = World::new(config(7, spec), &["cp-1"]).with_cpns(vec![old]);
    let check: Box<dyn FnOnce(&Value) + Send> = Box::new(|s: &Value| {
        let d = condition(s, "Degraded");
        assert_eq!(
            (d["status"].as_str(), d["reason"].as_str()),
            (Some("True"), Some("UnsupportedVersionSkew"))
        );
        let m = d["message"].as_str().unwrap();
        assert!(
            m.contains("cp-1 run v1.34.3") && m.contains("v1.34.3 → v1.36.2 skips 1.35"),
            "{m}"
        );
        assert!(m.contains("go to v1.35.x first"), "{m}");
    });
    play(
        world.clone(),
        Scenario::Conflict(world, vec![Write::Status(check)]),
    )
    .await;
}

#[tokio::test]
async fn a_minor_upgrade_with_a_gate_the_target_locks_degrades_before_any_node() {
    let mut spec = valid_spec();
    spec.api_server = Some(ApiServer {
        extra_args: vec![crate::api::Arg::new("feature-gates", "NodeSwap=false")],
        ..Default::default()
    });
    let mut old = cpn("cp-1", "r-old", Healthy);
    old.spec.kubernetes_version = "v1.35.4".into();
    let world = World::new(config(8, spec), &["cp-1"]).with_cpns(vec![old]);
    let check: Box<dyn FnOnce(&Value) + Send> = Box::new(|s: &Value| {
        let d = condition(s, "Degraded");
        assert_eq!(
            (d["status"].as_str(), d["reason"].as_str()),
            (Some("True"), Some("UpgradeCheckFailed"))
        );
        let m = d["message"].as_str().unwrap();
        assert!(
            m.contains("NodeSwap is GA and locked to true in 1.36"),
            "{m}"
        );
    });
    play(
        world.clone(),
        Scenario::Conflict(world, vec![Write::Status(check)]),
    )
    .await;
}

/// A node lost (its Node's Ready condition Unknown) while its ControlPlaneNode still says
/// Healthy: the status does not count it ready, names it, and the new revision starts nowhere
/// (a second API server is not taken down).
#[tokio::test]
async fn an_unreachable_node_is_named_and_no_other_node_starts() {
    let mut world = World::new(config(2, valid_spec()), &["cp-1", "cp-2", "cp-3"]);
    world = world.with_cpns(vec![
        cpn("cp-1", "r-old", Healthy),
        cpn("cp-2", "r-old", Healthy),
        cpn("cp-3", "r-old", Healthy),
    ]);
    world.unreachable = vec!["cp-3".into()];
    let check = with_check(status_says(None, false, true, false), move |s| {
        let p = condition(s, "Progressing");
        assert_eq!(p["reason"], "NodeUnreachable", "{p}");
        assert!(
            p["message"]
                .as_str()
                .unwrap()
                .contains("node cp-3 unreachable"),
            "{p}"
        );
        assert_eq!(s["readyNodes"], 0);
    });
    // Node status changes trigger no reconcile (metadata-only watch): the config is looked at
    // again soon, so the rollout resumes once the node is back. Seen on the HA cluster: a
    // node's Ready went Unknown during its own kube-apiserver restart, and the upgrade waited
    // for the 60 s resync after it was Ready again.
    let (ctx, verifier) = test_context();
    let handle = verifier.run(Scenario::Reconcile(
        world.clone(),
        vec![Write::Status(check)],
    ));
    let action = reconcile(arc(&world), ctx)
        .await
        .expect("reconcile succeeds");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(super::reconcile::UNREACHABLE_RECHECK)
    );
    finish(handle).await;
}
