//! The agent around the engine: facts, readiness, its ControlPlaneNode deleted and created
//! again.

use super::*;

#[tokio::test(start_paused = true)]
async fn the_agent_reports_facts_and_pending_then_applies_its_control_plane_node() {
    let env = env();
    let args = agent_args(&env);
    std::fs::create_dir_all(args.host_root.join("etc/pki/ca-trust")).unwrap();
    let empty = serde_json::json!({"configName": "test", "revision": ""});
    env.cluster.set_cpn(NODE, 1, empty);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let health = Arc::new(FakeHealth(env.kubelet.clone()));
    let readiness = crate::telemetry::Health::new();
    let board = crate::agent::status::StatusBoard::new();
    let metrics = crate::agent::metrics::registry(NODE, board.clone());
    let scrape = || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics).unwrap();
        out
    };
    let agent = tokio::spawn(crate::agent::run_with(
        args,
        env.client.clone(),
        health,
        async {
            let _ = stop_rx.await;
        },
        readiness.clone(),
        board,
    ));
    let patch_with = |reason: &str, revision: Option<&str>| {
        env.cluster.accepted_status_patches().into_iter().find(|r| {
            let s = &r.body.as_ref().unwrap()["status"];
            s["reason"] == reason && revision.is_none_or(|rev| s["targetRevision"] == rev)
        })
    };
    let mut pending = None;
    for _ in 0..600 {
        pending = patch_with("NoManifests", None);
        if pending.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = pending.expect("Pending reported");
    assert_eq!(pending.path, STATUS_PATH);
    let status = &pending.body.unwrap()["status"];
    assert_eq!(status["phase"], "Pending");
    let facts = &status["nodeFacts"];
    assert_eq!(facts["nodeName"], NODE);
    assert_eq!(
        facts["hostCaDirectories"],
        serde_json::json!(["/etc/pki/ca-trust"])
    );
    assert_eq!(
        facts["manifestDir"],
        env.dirs.manifest_dir().display().to_string().as_str()
    );
    assert_eq!(
        std::fs::read_dir(env.dirs.manifest_dir()).unwrap().count(),
        0
    );

    // The operator renders the node: the agent applies it.
    let spec = node_spec(&[], &[], &env);
    env.cluster
        .set_cpn(NODE, 2, serde_json::to_value(&spec).unwrap());
    let mut healthy = None;
    for _ in 0..6000 {
        healthy = patch_with("Healthy", Some(&spec.revision));
        if healthy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthy = healthy.expect("Healthy reported");
    let status = &healthy.body.unwrap()["status"];
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["nodeFacts"]["nodeName"], NODE);
    for c in Component::ALL {
        assert_eq!(env.manifest(c), content_of(&spec, c));
    }
    let (ready, detail) = readiness.readiness();
    assert!(
        ready,
        "the agent is ready once it watches its ControlPlaneNode: {detail}"
    );
    assert!(detail.contains(NODE), "{detail}");
    let text = scrape();
    let phase = format!("kubeplane_agent_phase{{node=\"{NODE}\",phase=\"Healthy\"}} 1");
    assert!(
        text.contains(&phase),
        "the agent's /metrics shows its phase: {text}"
    );
    let ready = format!(
        "kubeplane_agent_component_ready{{node=\"{NODE}\",component=\"kube-scheduler\"}} 1"
    );
    assert!(text.contains(&ready), "{text}");
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
    assert!(!readiness.readiness().0, "not ready after shutdown");
}

fn agent_args(env: &Env) -> crate::agent::AgentConfig {
    let root = env.dirs.state_dir().parent().unwrap().join("root");
    std::fs::create_dir_all(&root).unwrap();
    crate::agent::AgentConfig {
        node_name: NODE.into(),
        manifest_dir: env.dirs.manifest_dir().to_path_buf(),
        state_dir: env.dirs.state_dir().to_path_buf(),
        drift_mode: crate::agent::drift::DriftMode::Enforce,
        history: 5,
        host_root: root,
        metrics_addr: "127.0.0.1:0".into(),
        container_runtime_endpoint: "none".into(),
        lb_agent_check_addr: None,
        lb_drain_seconds: 4,
    }
}

/// Waits (tokio time) until `cond` holds; whether it did.
async fn until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

#[tokio::test(start_paused = true)]
async fn an_unselected_agent_is_ready_and_a_deleted_control_plane_node_releases_the_node() {
    // Issue 11: the agent was never Ready until a ControlPlaneConfig selected its node, so
    // `helm install --wait` failed on a fresh install; and a deleted ControlPlaneNode went
    // unnoticed.
    let env = env();
    // No ControlPlaneConfig selects the node yet.
    env.cluster.delete_cpn();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let readiness = crate::telemetry::Health::new();
    let agent = tokio::spawn(crate::agent::run_with(
        agent_args(&env),
        env.client.clone(),
        Arc::new(FakeHealth(env.kubelet.clone())),
        async {
            let _ = stop_rx.await;
        },
        readiness.clone(),
        crate::agent::status::StatusBoard::new(),
    ));
    let detail = || readiness.readiness().1;

    // No ControlPlaneNode: Ready, and it says why it does nothing.
    assert!(until(|| readiness.readiness().0).await, "{}", detail());
    assert!(
        detail().contains("no ControlPlaneConfig selects node cp-1"),
        "{}",
        detail()
    );
    assert_eq!(
        std::fs::read_dir(env.dirs.manifest_dir()).unwrap().count(),
        0
    );

    // Selected: applied.
    let spec = node_spec(&[], &[], &env);
    env.cluster
        .set_cpn(NODE, 1, serde_json::to_value(&spec).unwrap());
    let healthy = |rev: &str| {
        env.cluster.accepted_status_patches().iter().any(|r| {
            let s = &r.body.as_ref().unwrap()["status"];
            s["phase"] == "Healthy" && s["targetRevision"] == rev
        })
    };
    assert!(until(|| healthy(&spec.revision)).await);
    assert_eq!(detail(), "watching ControlPlaneNode cp-1");

    // Deleted: still Ready, the node released with an Event and the manifests untouched.
    let before: Vec<Vec<u8>> = Component::ALL.iter().map(|c| env.manifest(*c)).collect();
    env.cluster.delete_cpn();
    assert!(
        until(|| detail().contains("no longer managed")).await,
        "{}",
        detail()
    );
    assert!(readiness.readiness().0);
    assert!(
        detail().contains(&format!(
            "the manifests stay as they are (revision {})",
            spec.revision
        )),
        "{}",
        detail()
    );
    assert!(
        until(|| env.event_reasons().iter().any(|r| r == "NodeUnmanaged")).await,
        "{:?}",
        env.event_reasons()
    );
    let after: Vec<Vec<u8>> = Component::ALL.iter().map(|c| env.manifest(*c)).collect();
    assert_eq!(before, after);

    // Selected again, with a change: managed and applied again.
    let spec2 = node_spec(&[], &[("v", "3")], &env);
    env.cluster
        .set_cpn(NODE, 2, serde_json::to_value(&spec2).unwrap());
    assert!(until(|| healthy(&spec2.revision)).await);
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&spec2, Component::Scheduler)
    );
    assert_eq!(detail(), "watching ControlPlaneNode cp-1");
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_released_node_is_not_healed_until_it_is_managed_again() {
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let drift = crate::agent::drift::DriftHandler::new(
        env.dirs.clone(),
        engine.desired(),
        crate::agent::drift::DriftMode::Enforce,
        env.board.clone(),
    );
    let path = env.dirs.manifest_path(Component::Scheduler);

    assert_eq!(engine.release(), Some(spec.revision.clone()));
    assert!(engine.desired().lock().managed().is_empty());
    std::fs::write(&path, "handed back by hand\n").unwrap();
    assert_eq!(drift.check_managed(Component::Scheduler), None);
    assert_eq!(
        drift.check("kube-scheduler.yaml"),
        Some(crate::agent::drift::Finding::Unmanaged(
            "kube-scheduler.yaml".into()
        ))
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"handed back by hand\n");
    // Certificates restart nothing while released.
    assert!(engine.restart_for_certificates().await.is_empty());

    engine.reclaim();
    assert_eq!(engine.desired().lock().managed().len(), 3);
    assert!(matches!(
        drift.check_managed(Component::Scheduler),
        Some(crate::agent::drift::Finding::Restored(_))
    ));
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&spec, Component::Scheduler)
    );
}

#[test]
fn node_watch_events_tell_present_and_absent() {
    use kube::runtime::watcher::Event;
    let cpn = || {
        crate::api::ControlPlaneNode::new(
            NODE,
            serde_json::from_value(serde_json::json!({"configName": "c", "revision": "r"}))
                .unwrap(),
        )
    };
    let mut w = crate::agent::NodeWatch::default();
    assert!(w.next(Event::Init).is_none());
    assert!(matches!(
        w.next(Event::InitDone),
        Some(crate::agent::Watched::Absent)
    ));
    assert!(w.next(Event::Init).is_none());
    assert!(matches!(
        w.next(Event::InitApply(cpn())),
        Some(crate::agent::Watched::Present(_))
    ));
    assert!(
        w.next(Event::InitDone).is_none(),
        "a list with the object is not Absent"
    );
    assert!(matches!(
        w.next(Event::Delete(cpn())),
        Some(crate::agent::Watched::Absent)
    ));
    assert!(matches!(
        w.next(Event::Apply(cpn())),
        Some(crate::agent::Watched::Present(_))
    ));
    // A re-list after the object is gone.
    assert!(w.next(Event::Init).is_none());
    assert!(matches!(
        w.next(Event::InitDone),
        Some(crate::agent::Watched::Absent)
    ));

    let m = crate::agent::unmanaged_message(NODE, Some(true), Some("r1".into()));
    assert!(
        m.contains("no longer managed")
            && m.contains("revision r1")
            && m.contains("docs/operator.md"),
        "{m}"
    );
    let m = crate::agent::unmanaged_message(NODE, None, None);
    assert!(m.contains("no ControlPlaneConfig selects node cp-1"), "{m}");
}

#[tokio::test]
async fn an_agent_check_address_in_use_stops_the_agent_naming_it() {
    let env = env();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = agent_args(&env);
    args.lb_agent_check_addr = Some(addr.clone());
    let health = Arc::new(FakeHealth(env.kubelet.clone()));
    let err = crate::agent::run_with(
        args,
        env.client.clone(),
        health,
        std::future::pending(),
        crate::telemetry::Health::new(),
        crate::agent::status::StatusBoard::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&addr) && err.contains("--lb-agent-check-addr"),
        "{err}"
    );
}
