//! Claims, recreated and changed ControlPlaneNodes, deadlines and fixes.

use super::*;

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
