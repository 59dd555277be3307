//! Rollback to last-known-good: how a failure is diagnosed, the restore waited for, and no
//! last-known-good to restore.

use super::*;

#[tokio::test(start_paused = true)]
async fn hash_never_changes_rolls_back_with_hash_never_changed() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let api_inode = env.inode(Component::ApiServer);

    let bad = node_spec(&[], &[("v", "4")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    let h = bad_hash.clone();
    env.kubelet.fail(h.clone(), Behaviour::ignored());
    let out = engine.apply(&bad, Some(2), true).await;
    let message = rolled_back(&out, "HashNeverChanged");
    assert!(
        message.starts_with("kube-scheduler not updated within 60s"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "hash never changed: mirror pod kube-system/kube-scheduler-cp-1 still shows kubernetes.io/config.hash={} (expected {bad_hash})",
            hash_of(&good, Component::Scheduler)
        )),
        "{message}"
    );
    assert!(message.contains(&format!(
        "restored last-known-good revision {}",
        good.revision
    )));
    assert_eq!(
        env.manifest(Component::Scheduler),
        crate::agent::engine::restored_manifest(
            &content_of(&good, Component::Scheduler),
            &bad.revision,
            NODE
        )
        .0
    );
    assert_eq!(
        env.inode(Component::ApiServer),
        api_inode,
        "unchanged component touched"
    );

    let status = env.last_status().await;
    assert_eq!(status["phase"], "RolledBack");
    assert_eq!(status["reason"], "HashNeverChanged");
    assert_eq!(status["targetRevision"], bad.revision.as_str());
    assert_eq!(status["appliedRevision"], good.revision.as_str());
    assert_eq!(status["lastKnownGoodRevision"], good.revision.as_str());
    assert_eq!(status["message"], message);
    let reasons = env.event_reasons();
    assert!(reasons.contains(&"RollingBack".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"RolledBack".to_string()), "{reasons:?}");
    let rb = env
        .cluster
        .events()
        .into_iter()
        .find(|e| e["reason"] == "RolledBack")
        .unwrap();
    assert_eq!(rb["type"], "Warning");

    // The same revision is not retried.
    let inode = env.inode(Component::Scheduler);
    assert_eq!(engine.apply(&bad, Some(2), true).await, out);
    assert_eq!(env.inode(Component::Scheduler), inode);
}

#[tokio::test(start_paused = true)]
async fn pod_not_ready_rolls_back_naming_restart_count_and_last_state() {
    let env = env();
    let mut engine = env.engine();
    let good = apply_good(&mut engine, &env).await;
    let bad = node_spec(&[], &[("v", "4")], &env);
    let h = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(h.clone(), Behaviour::crashing());
    let out = engine.apply(&bad, None, true).await;
    let message = rolled_back(&out, "PodNotReady");
    assert!(message.contains("pod not Ready: mirror pod kube-system/kube-scheduler-cp-1 has the new hash but is not Ready"), "{message}");
    assert!(message.contains("restartCount 5"), "{message}");
    assert!(
        message
            .contains("last state Terminated: Error, exit code 1; now Waiting: CrashLoopBackOff"),
        "{message}"
    );
    assert!(
        message.contains("endpoint https://127.0.0.1:10259/livez failing: connect"),
        "{message}"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "RolledBack");
    assert_eq!(status["reason"], "PodNotReady");
    // After the rollback the scheduler runs the good manifest again, under a fresh uid (so
    // kubelet starts it as a new pod) that marks it as restored after the bad revision.
    let pod = env.cluster.pod("kube-scheduler-cp-1").unwrap();
    let good_bytes = good
        .manifests
        .iter()
        .find(|m| m.component == Component::Scheduler)
        .unwrap()
        .content
        .clone();
    let (restored, uid) =
        crate::agent::engine::restored_manifest(good_bytes.as_bytes(), &bad.revision, NODE);
    assert_eq!(env.manifest(Component::Scheduler), restored);
    assert_eq!(Some(pod.hash.clone()), uid);
    assert_ne!(pod.hash, hash_of(&good, Component::Scheduler));
}

#[tokio::test(start_paused = true)]
async fn last_known_good_failing_too_is_failed() {
    let env = env();
    let mut engine = env.engine();
    let good = apply_good(&mut engine, &env).await;
    let bad = node_spec(&[], &[("v", "4")], &env);
    let h = hash_of(&bad, Component::Scheduler);
    let broken = Arc::new(AtomicBool::new(false));
    env.kubelet.behave(move |c, hash| {
        if hash == h {
            broken.store(true, Ordering::SeqCst);
        }
        if c == Component::Scheduler && broken.load(Ordering::SeqCst) {
            Behaviour::crashing()
        } else {
            Behaviour::healthy()
        }
    });
    let out = engine.apply(&bad, None, true).await;
    let message = failed(&out, "LastKnownGoodUnhealthy");
    assert!(message.contains("pod not Ready"), "{message}");
    assert!(
        message.contains(&format!(
            "restored last-known-good revision {}, but it did not come back either",
            good.revision
        )),
        "{message}"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "LastKnownGoodUnhealthy");
    assert!(env.event_reasons().contains(&"Failed".to_string()));
}

/// Found on a real cluster (kubelet v1.36.2, kubeadm's probes): a bad revision with
/// `healthTimeoutSeconds.scheduler: 20` was rolled back, but the restored kube-scheduler was
/// waited for with the same 20 s, while kubelet needs ~12 s to swap the pod and ~10 s more for
/// the startup probe: a good rollback ended `Failed` (`LastKnownGoodUnhealthy`). The restore
/// is waited for at least the default timeout.
#[tokio::test(start_paused = true)]
async fn a_short_timeout_of_the_bad_revision_does_not_cut_the_wait_for_last_known_good() {
    let env = env();
    let mut engine = env.engine();
    let good = apply_good(&mut engine, &env).await;
    let mut spec = config(&[], &[("v", "4")]);
    spec.rollout
        .as_mut()
        .and_then(|r| r.health_timeout_seconds.as_mut())
        .unwrap()
        .scheduler = Some(10);
    let facts = facts_in(env.dirs.state_dir());
    let bad = node_spec_for(&spec, &facts);
    assert_eq!(
        bad.manifests
            .iter()
            .find(|m| m.component == Component::Scheduler)
            .unwrap()
            .health_timeout_seconds,
        10
    );
    // The restored scheduler runs under the fresh uid of the restored manifest.
    let (bad_hash, good_hash): (String, String) = (
        hash_of(&bad, Component::Scheduler),
        crate::agent::engine::restored_manifest(
            &content_of(&good, Component::Scheduler),
            &bad.revision,
            NODE,
        )
        .1
        .unwrap(),
    );
    let restored_hash = good_hash.clone();
    // kubelet takes 25 s (plus its pickup delay) to bring the restored scheduler back.
    let restore_asked: Arc<std::sync::Mutex<Option<tokio::time::Instant>>> = Arc::default();
    env.kubelet.behave(move |_, hash| {
        if hash == bad_hash {
            return Behaviour::crashing();
        }
        if hash == good_hash {
            let now = tokio::time::Instant::now();
            let first = *restore_asked.lock().unwrap().get_or_insert(now);
            if now - first < Duration::from_secs(25) {
                return Behaviour::ignored();
            }
        }
        Behaviour::healthy()
    });
    let start = tokio::time::Instant::now();
    let out = engine.apply(&bad, None, true).await;
    let message = rolled_back(&out, "PodNotReady");
    assert!(
        message.contains("kube-scheduler not updated within 10s"),
        "{message}"
    );
    assert!(message.ends_with("healthy again"), "{message}");
    assert!(
        start.elapsed() > Duration::from_secs(35),
        "{:?}",
        start.elapsed()
    );
    let pod = env.cluster.pod("kube-scheduler-cp-1").unwrap();
    assert_eq!(pod.hash, restored_hash);
    assert!(pod.ready);
    assert_eq!(env.last_status().await["phase"], "RolledBack");
}

#[tokio::test(start_paused = true)]
async fn first_revision_failing_without_last_known_good_is_failed() {
    let env = env();
    let mut engine = env.engine();
    env.kubelet.behave(|c, _| {
        if c == Component::Scheduler {
            Behaviour::crashing()
        } else {
            Behaviour::healthy()
        }
    });
    let spec = node_spec(&[], &[], &env);
    let out = engine.apply(&spec, None, true).await;
    let message = failed(&out, "PodNotReady");
    assert!(
        message.contains("there is no last-known-good revision to restore"),
        "{message}"
    );
    // The revision stays on disk.
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&spec, Component::Scheduler)
    );
    assert_eq!(env.last_status().await["phase"], "Failed");
}
