//! The forward path: write, wait for the mirror pod and the endpoint, groups of components,
//! the API away while kube-apiserver restarts, an agent restart in the middle of a wait.

use super::*;

#[tokio::test(start_paused = true)]
async fn hash_moves_ready_and_endpoint_ok_is_healthy() {
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, Some(3), true).await, Outcome::Healthy);

    for c in Component::ALL {
        assert_eq!(env.manifest(c), content_of(&spec, c));
        let mode = std::fs::metadata(env.dirs.manifest_path(c)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["targetRevision"], spec.revision.as_str());
    assert_eq!(status["appliedRevision"], spec.revision.as_str());
    assert_eq!(status["lastKnownGoodRevision"], spec.revision.as_str());
    let comps = status["components"].as_array().unwrap();
    assert_eq!(comps.len(), 3);
    for (c, s) in Component::ALL.iter().zip(comps) {
        assert_eq!(s["name"], c.name());
        assert_eq!(s["expectedHash"], hash_of(&spec, *c).as_str());
        assert_eq!(s["observedHash"], hash_of(&spec, *c).as_str());
        assert_eq!(s["ready"], true);
        assert_eq!(s["healthy"], true);
    }
    let reasons = env.event_reasons();
    for r in ["Applying", "WaitingForKubelet", "Healthy"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{r} missing from {reasons:?}"
        );
    }
    // kube-apiserver is written and waited for first: its mirror pod is watched first.
    let first_watch = env
        .cluster
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/api/v1/namespaces/kube-system/pods"))
        .unwrap();
    assert!(
        first_watch.path.contains("kube-apiserver-cp-1"),
        "{}",
        first_watch.path
    );

    // A second apply of the same spec changes nothing.
    let inode = env.inode(Component::Scheduler);
    assert_eq!(engine.apply(&spec, Some(3), true).await, Outcome::Healthy);
    assert_eq!(env.inode(Component::Scheduler), inode);
}

/// When the first mirror pod request for `pod` was made (virtual time).
fn first_pod_request(env: &Env, pod: &str, after: Duration) -> Duration {
    env.cluster
        .requests()
        .into_iter()
        .find(|r| {
            r.at >= after
                && r.path.starts_with("/api/v1/namespaces/kube-system/pods")
                && r.path.contains(pod)
        })
        .unwrap_or_else(|| panic!("no request for {pod}"))
        .at
}

fn apart(a: Duration, b: Duration) -> Duration {
    a.abs_diff(b)
}

#[tokio::test(start_paused = true)]
async fn controller_manager_and_scheduler_restart_together_after_the_apiserver() {
    // Issue 11 item 4: they depend on the API, not on each other. Before, the scheduler was
    // written only once the controller-manager was confirmed (pickup 3 s + minReady 5 s).
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, Some(1), true).await, Outcome::Healthy);
    let zero = Duration::ZERO;
    let api = first_pod_request(&env, "kube-apiserver-cp-1", zero);
    let kcm = first_pod_request(&env, "kube-controller-manager-cp-1", zero);
    let sched = first_pod_request(&env, "kube-scheduler-cp-1", zero);
    assert!(
        kcm >= api + Duration::from_secs(8),
        "kube-apiserver confirmed first: {api:?} {kcm:?}"
    );
    assert!(
        apart(kcm, sched) < Duration::from_secs(2),
        "waited for together: {kcm:?} {sched:?}"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    assert!(engine.state().components.values().all(|c| c.confirmed));
}

#[tokio::test(start_paused = true)]
async fn a_failing_controller_manager_rolls_back_the_scheduler_written_with_it() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let api_inode = env.inode(Component::ApiServer);
    let facts = facts_in(env.dirs.state_dir());
    let mut cfg = config(&[], &[("v", "4")]);
    cfg.controller_manager = Some(
        serde_json::from_value(serde_json::json!({"extraArgs": [{"name": "v", "value": "4"}]}))
            .unwrap(),
    );
    let bad = node_spec_for(&cfg, &facts);
    env.kubelet.fail(
        hash_of(&bad, Component::ControllerManager),
        Behaviour::ignored(),
    );
    let out = engine.apply(&bad, Some(2), true).await;
    let message = rolled_back(&out, "HashNeverChanged");
    assert!(
        message.starts_with("kube-controller-manager not updated within 60s"),
        "{message}"
    );
    // Both components of the step are back at last-known-good; kube-apiserver untouched.
    for c in [Component::ControllerManager, Component::Scheduler] {
        assert_eq!(
            env.manifest(c),
            crate::agent::engine::restored_manifest(&content_of(&good, c), &bad.revision, NODE).0,
            "{c}"
        );
    }
    assert_eq!(env.inode(Component::ApiServer), api_inode);
    assert_eq!(
        engine.state().last_known_good_revision.as_deref(),
        Some(good.revision.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_the_two_component_step_resumes_both_waits() {
    let env = env();
    let spec = node_spec(&[], &[], &env);
    {
        let mut engine = env.engine();
        assert_eq!(engine.apply(&spec, None, false).await, Outcome::Written);
        // The write-ahead record names the step's last file; both are on disk, unconfirmed.
        assert!(matches!(
            &engine.state().lifecycle,
            crate::agent::state::Lifecycle::Waiting {
                component: Component::Scheduler,
                ..
            }
        ));
        assert!(engine.state().components.values().all(|c| !c.confirmed));
    }
    let inodes: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    let restart = env
        .cluster
        .requests()
        .last()
        .map(|r| r.at)
        .unwrap_or_default();
    let mut engine = env.engine();
    assert_eq!(engine.resume().await, Some(Outcome::Healthy));
    assert!(engine.state().components.values().all(|c| c.confirmed));
    let after: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    assert_eq!(inodes, after, "nothing rewritten");
    let kcm = first_pod_request(&env, "kube-controller-manager-cp-1", restart);
    let sched = first_pod_request(&env, "kube-scheduler-cp-1", restart);
    assert!(
        apart(kcm, sched) < Duration::from_secs(2),
        "{kcm:?} {sched:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn api_unavailable_while_apiserver_restarts_relies_on_endpoint_and_reports_after() {
    let env = env();
    let mut engine = env.engine();
    apply_good(&mut engine, &env).await;
    assert!(env.board.flush(Duration::from_secs(60)).await);
    *env.kubelet.apiserver_outage.lock().unwrap() = Some(Duration::from_secs(40));

    let next = node_spec(&[("v", "2")], &[], &env);
    let before = env.cluster.requests().len();
    let out = engine.apply(&next, None, true).await;
    assert_eq!(out, Outcome::Healthy);

    let requests = env.cluster.requests()[before..].to_vec();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == 503).collect();
    assert!(!refused.is_empty(), "the outage never happened");
    let outage_start = refused.first().unwrap().at;
    let outage_end = refused.last().unwrap().at;
    assert!(
        refused
            .iter()
            .any(|r| r.method == "PATCH" && r.path == STATUS_PATH),
        "status was not retried during the outage"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.path.contains("kube-apiserver-cp-1")),
        "mirror pod not retried during the outage"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.status == 200 && r.at > outage_start && r.at < outage_end),
        "a request succeeded during the outage"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    let api = &status["components"][0];
    assert_eq!(api["name"], "kube-apiserver");
    assert_eq!(
        api["observedHash"],
        hash_of(&next, Component::ApiServer).as_str()
    );
    let msg = api["message"].as_str().unwrap();
    assert!(msg.contains("API was unavailable for"), "{msg}");
    let healthy_patch = env
        .cluster
        .accepted_status_patches()
        .into_iter()
        .find(|r| {
            r.body.as_ref().unwrap()["status"]["phase"] == "Healthy"
                && r.body.as_ref().unwrap()["status"]["targetRevision"] == next.revision.as_str()
        })
        .unwrap();
    assert!(
        healthy_patch.at > outage_end,
        "reported after the API came back"
    );
    assert!(!env.event_reasons().contains(&"RolledBack".to_string()));
}

#[tokio::test(start_paused = true)]
async fn state_survives_an_agent_restart_and_the_wait_resumes_without_rewriting() {
    let env = env();
    let spec = node_spec(&[], &[], &env);
    {
        let mut engine = env.engine();
        assert_eq!(engine.apply(&spec, None, false).await, Outcome::Written);
    }
    let inodes: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    // A new engine over the same directories (an agent restart).
    let mut engine = env.engine();
    assert_eq!(
        engine.state().target_revision.as_deref(),
        Some(spec.revision.as_str())
    );
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let after: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    assert_eq!(inodes, after, "files were rewritten");
    let engine = env.engine();
    assert_eq!(
        engine.state().last_known_good_revision.as_deref(),
        Some(spec.revision.as_str())
    );
    assert!(engine.state().components.values().all(|c| c.confirmed));
}
