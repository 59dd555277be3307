//! Invalid specs, encryption Secrets, nodes joining and leaving, claims, API errors.

use super::*;

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
