//! The write-ahead lifecycle (issue 16): resume first, local evidence, memory of failure, a
//! newer spec, a ControlPlaneNode re-created empty.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_agent_killed_during_the_rollback_finishes_it_and_never_writes_the_failed_revision_back()
{
    let env = env();
    let (good, bad) = good_then_crashing_scheduler(&env, Duration::from_secs(60)).await;
    let mut engine = env.engine();
    // Killed 100 s in: the bad scheduler timed out (60 s), the restore is being waited for.
    let cut = tokio::time::timeout(Duration::from_secs(100), engine.apply(&bad, Some(2), true));
    assert!(cut.await.is_err(), "the rollback was still under way");
    drop(engine);
    let restored = restored_of(&good, &bad, Component::Scheduler);
    assert_eq!(env.manifest(Component::Scheduler), restored);
    let crate::agent::state::Lifecycle::RollingBack {
        failed_component,
        reason,
        to_revision,
        ..
    } = env.lifecycle()
    else {
        panic!("{:?}", env.lifecycle())
    };
    assert_eq!(failed_component, Component::Scheduler);
    assert_eq!(reason, crate::agent::state::FailureReason::PodNotReady);
    assert_eq!(to_revision, good.revision);

    // The restarted agent: before any spec, drift enforcement already wants last-known-good.
    let mut engine = env.engine();
    assert_eq!(
        engine.desired().lock().get(Component::Scheduler),
        Some(restored.as_slice()),
        "drift must restore last-known-good, never the failed revision"
    );
    let out = engine.resume().await.expect("a rollback to resume");
    // The failed component is named (not the first managed one).
    let message = rolled_back(&out, "PodNotReady");
    assert!(
        message.starts_with("kube-scheduler not updated"),
        "{message}"
    );
    assert_eq!(env.manifest(Component::Scheduler), restored);
    // The same (bad) spec from the API afterwards changes nothing.
    let ino = env.inode(Component::Scheduler);
    let again = engine.apply(&bad, Some(2), true).await;
    assert!(matches!(again, Outcome::RolledBack { .. }), "{again:?}");
    assert_eq!(env.inode(Component::Scheduler), ino);
}

#[tokio::test(start_paused = true)]
async fn a_rollback_interrupted_before_its_write_is_finished_by_the_next_start() {
    let env = env();
    let (good, bad) = good_then_crashing_scheduler(&env, Duration::ZERO).await;
    let mut engine = env.engine();
    let _ = tokio::time::timeout(Duration::from_secs(100), engine.apply(&bad, Some(2), true)).await;
    drop(engine);
    // Put the failed revision back on disk, as if the agent died between recording the
    // rollback and writing the restore (the state says RollingBack).
    assert!(matches!(
        env.lifecycle(),
        crate::agent::state::Lifecycle::RollingBack { .. }
            | crate::agent::state::Lifecycle::Settled { .. }
    ));
    let mut st: crate::agent::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    st.lifecycle = crate::agent::state::Lifecycle::RollingBack {
        failed_revision: bad.revision.clone(),
        failed_component: Component::Scheduler,
        reason: crate::agent::state::FailureReason::PodNotReady,
        message: "kube-scheduler not updated within 60s".into(),
        to_revision: good.revision.clone(),
        since: k8s_openapi::jiff::Timestamp::now().to_string(),
        timeout_seconds: 300,
        min_ready_seconds: 0,
    };
    std::fs::write(env.dirs.state_file(), serde_json::to_vec(&st).unwrap()).unwrap();
    std::fs::write(
        env.dirs.manifest_path(Component::Scheduler),
        content_of(&bad, Component::Scheduler),
    )
    .unwrap();
    let mut engine = env.engine();
    let out = engine.resume().await.unwrap();
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
    assert_eq!(
        env.manifest(Component::Scheduler),
        restored_of(&good, &bad, Component::Scheduler)
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_api_a_failing_write_is_rolled_back_by_local_evidence_after_a_restart() {
    let env = env();
    let mut engine = env.local_engine();
    let good = apply_good(&mut engine, &env).await;
    let bad = node_spec(&[], &[("v", "9")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(bad_hash.clone(), Behaviour::crashing());
    // Killed 30 s into the 60 s wait.
    let _ = tokio::time::timeout(Duration::from_secs(30), engine.apply(&bad, None, true)).await;
    drop(engine);
    assert!(
        matches!(
            env.lifecycle(),
            crate::agent::state::Lifecycle::Waiting {
                component: Component::Scheduler,
                ..
            }
        ),
        "{:?}",
        env.lifecycle()
    );
    // Restarted with no API and no ControlPlaneNode: the saved spec and local evidence.
    let mut engine = env.local_engine();
    let out = engine
        .resume()
        .await
        .expect("the interrupted wait is resumed");
    let message = rolled_back(&out, "ContainerExited");
    assert!(message.contains("exited (code 1)"), "{message}");
    assert_eq!(
        env.manifest(Component::Scheduler),
        restored_of(&good, &bad, Component::Scheduler)
    );
}

#[tokio::test(start_paused = true)]
async fn local_evidence_does_not_take_the_old_process_for_the_new_one() {
    let env = env();
    let mut engine = env.local_engine();
    apply_good(&mut engine, &env).await;
    // kubelet never picks the new scheduler up: the old one keeps answering its endpoint.
    let bad = node_spec(&[], &[("v", "5")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(bad_hash.clone(), Behaviour::ignored());
    let out = engine.apply(&bad, None, true).await;
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("the old process answering must not count as the new revision: {out:?}")
    };
    assert_eq!(reason, "ContainerNotStarted", "{message}");
    assert!(
        message.contains("has no container for the new pod uid"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_revision_is_not_tried_again_after_a_restart_or_a_recreated_node_object() {
    let env = env();
    let (_good, bad) = good_then_crashing_scheduler(&env, Duration::ZERO).await;
    let mut engine = env.engine();
    assert!(matches!(
        engine.apply(&bad, Some(2), true).await,
        Outcome::RolledBack { .. }
    ));
    let ino = env.inode(Component::Scheduler);
    // Another revision in between (the state's last attempt moves on, Pending on a Secret…)
    // must not erase the memory: a fresh engine and the same bad spec again.
    let mut st: crate::agent::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    st.lifecycle = crate::agent::state::Lifecycle::Idle;
    st.target_revision = Some("other".into());
    st.target_digest = Some("other".into());
    std::fs::write(env.dirs.state_file(), serde_json::to_vec(&st).unwrap()).unwrap();
    let mut engine = env.engine();
    let out = engine.apply(&bad, Some(7), true).await;
    let Outcome::RolledBack { message, .. } = &out else {
        panic!("{out:?}")
    };
    assert!(message.contains("already failed on this node"), "{message}");
    assert_eq!(env.inode(Component::Scheduler), ino, "nothing written");
}

#[test]
fn a_state_file_of_format_1_in_the_middle_of_a_rollback_resumes_it() {
    let v1 = serde_json::json!({
        "version": 1,
        "targetRevision": "bad",
        "targetDigest": "d",
        "phase": "WaitingForKubelet",
        "reason": "RollingBack",
        "message": "kube-scheduler not updated within 60s",
        "appliedRevision": "bad",
        "lastKnownGoodRevision": "good",
        "components": {
            "kube-apiserver": {"revision": "good", "contentSha256": "a", "confirmed": true},
            "kube-scheduler": {"revision": "bad", "contentSha256": "b", "confirmed": false}
        }
    });
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("staging")).unwrap();
    std::fs::write(t.path().join("state.json"), v1.to_string()).unwrap();
    let st =
        crate::agent::state::StateStore::new(t.path().join("state.json"), t.path().join("staging"))
            .load()
            .unwrap();
    let crate::agent::state::Lifecycle::RollingBack {
        failed_component,
        to_revision,
        ..
    } = st.lifecycle
    else {
        panic!("{:?}", st.lifecycle)
    };
    assert_eq!(failed_component, Component::Scheduler);
    assert_eq!(to_revision, "good");
}

#[tokio::test(start_paused = true)]
async fn a_newer_spec_cuts_the_wait_for_a_failing_one_short_but_never_a_restore() {
    let env = env();
    let mut engine = env.engine();
    let (tx, rx) = tokio::sync::watch::channel::<Option<String>>(None);
    engine.watch_newer(rx);
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let bad = node_spec(&[], &[("v", "6")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(bad_hash.clone(), Behaviour::crashing());
    tx.send_replace(Some(crate::agent::engine::spec_digest(&bad)));
    let fixed = node_spec(&[], &[("v", "3")], &env);
    let start = tokio::time::Instant::now();
    let fixed_digest = crate::agent::engine::spec_digest(&fixed);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        tx2.send_replace(Some(fixed_digest));
    });
    assert_eq!(engine.apply(&bad, Some(2), true).await, Outcome::Superseded);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "cut short after 20 s, not the 60 s timeout: {waited:?}"
    );
    // The fix rolls out from what is on disk; the cut-short revision is not remembered as
    // failed (it never got its full chance).
    assert_eq!(engine.apply(&fixed, Some(3), true).await, Outcome::Healthy);
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&fixed, Component::Scheduler)
    );
    let st: crate::agent::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    assert!(st.failed_revisions.is_empty(), "{:?}", st.failed_revisions);

    // A restore is never cut short: a newer spec during a rollback waits for it.
    let bad2 = node_spec(&[], &[("v", "8")], &env);
    let bad2_hash = hash_of(&bad2, Component::Scheduler);
    env.kubelet.fail(bad2_hash.clone(), Behaviour::crashing());
    tx.send_replace(Some(crate::agent::engine::spec_digest(&bad2)));
    let tx3 = tx.clone();
    let other = crate::agent::engine::spec_digest(&good);
    tokio::spawn(async move {
        // After the 60 s timeout: the rollback is under way.
        tokio::time::sleep(Duration::from_secs(62)).await;
        tx3.send_replace(Some(other));
    });
    let out = engine.apply(&bad2, Some(4), true).await;
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_rollback_is_finished_before_a_new_spec_waits_on_a_secret() {
    let env = env();
    let (good, bad) = good_then_crashing_scheduler(&env, Duration::from_secs(60)).await;
    let mut engine = env.engine();
    let cut = tokio::time::timeout(Duration::from_secs(100), engine.apply(&bad, Some(2), true));
    assert!(cut.await.is_err());
    drop(engine);
    assert!(matches!(
        env.lifecycle(),
        crate::agent::state::Lifecycle::RollingBack { .. }
    ));
    // The next spec needs a Secret nobody can read yet.
    let mut cfg = config(&[], &[]);
    cfg.api_server = Some(
        serde_json::from_value(
            serde_json::json!({"encryption": {"secretRef": {"name": "missing"}}}),
        )
        .unwrap(),
    );
    let facts = facts_in(env.dirs.state_dir());
    let digest = render::sha256_hex(b"kind: EncryptionConfiguration\n");
    let r = render::render(&RenderInput {
        spec: &cfg,
        node: &facts,
        encryption_config_sha256: Some(&digest),
    })
    .unwrap();
    let waiting = render::node_spec("test", &cfg, &render::revision(&cfg, Some(&digest)), &r);
    let mut engine = env.engine();
    let out = engine.apply(&waiting, Some(3), true).await;
    assert!(matches!(out, Outcome::Pending { .. }), "{out:?}");
    // The rollback was finished first and is remembered; the failed revision is not on disk.
    assert_eq!(
        env.manifest(Component::Scheduler),
        restored_of(&good, &bad, Component::Scheduler)
    );
    let st: crate::agent::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    assert!(
        st.failed_revisions
            .iter()
            .any(|f| f.revision == bad.revision),
        "{:?}",
        st.failed_revisions
    );
    assert!(!matches!(
        st.lifecycle,
        crate::agent::state::Lifecycle::RollingBack { .. }
    ));
}

/// Found on the HA cluster: the config deleted and applied again re-creates each
/// ControlPlaneNode empty first, then with the same revision. The node must come back
/// `Healthy` at once (before the fix it stayed `Pending`/`NoManifests` and the rollout waited
/// for it forever).
#[tokio::test(start_paused = true)]
async fn a_recreated_empty_controlplanenode_then_the_same_revision_is_healthy_again() {
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, Some(1), true).await, Outcome::Healthy);
    let inode = env.inode(Component::ApiServer);
    let empty = ControlPlaneNodeSpec {
        config_name: spec.config_name.clone(),
        ..Default::default()
    };
    let out = engine.apply(&empty, Some(1), true).await;
    assert!(matches!(out, Outcome::Pending { .. }), "{out:?}");
    assert_eq!(env.last_status().await["reason"], "NoManifests");
    assert_eq!(engine.apply(&spec, Some(2), true).await, Outcome::Healthy);
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["targetRevision"], spec.revision.as_str());
    assert_eq!(env.inode(Component::ApiServer), inode, "nothing rewritten");
    // And after a restart of the agent in between.
    drop(engine);
    let mut engine = env.engine();
    assert!(matches!(
        engine.apply(&empty, Some(3), true).await,
        Outcome::Pending { .. }
    ));
    drop(engine);
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, Some(4), true).await, Outcome::Healthy);
    assert_eq!(env.last_status().await["phase"], "Healthy");
    // A state an agent without the fix wrote (`Pending`/`NoManifests` under a settled
    // lifecycle) is repaired when the same revision comes.
    drop(engine);
    let path = env.dirs.state_file();
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["phase"] = "Pending".into();
    state["reason"] = "NoManifests".into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, Some(5), true).await, Outcome::Healthy);
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["reason"], "Healthy");
}
