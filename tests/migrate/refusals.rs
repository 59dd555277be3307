//! Refusals, failed writes, and the evidence that a pod is really running.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing() {
    let n = node();
    let port = common::free_port();
    let s = services(&[(Component::Scheduler, port)]);
    // A manifest already there.
    std::fs::write(n.manifests.join("kube-scheduler.yaml"), "x").unwrap();
    let plan = migrate::plan(
        &config(common::free_port(), port, 30),
        &facts(&n),
        vec![unit(Component::Scheduler, port)],
        None,
    )
    .unwrap();
    let err = migrate::run(&plan, &s, &PlainCheck, None, timing(), &mut |_: &str| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::ManifestExists(_)), "{err}");
    assert!(s.is_active("kube-scheduler.service").unwrap());
    assert_eq!(s.log().len(), 1, "only the test's own start");

    // A unit of a component the config leaves alone.
    let mut cfg = config(20001, 20002, 30);
    cfg.spec.scheduler.as_mut().unwrap().managed = Some(false);
    let err = migrate::plan(
        &cfg,
        &facts(&n),
        vec![unit(Component::Scheduler, port)],
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, MigrateError::NotManaged(Component::Scheduler)),
        "{err}"
    );
    // Two units for one component.
    let err = migrate::plan(
        &config(20001, 20002, 30),
        &facts(&n),
        vec![
            unit(Component::Scheduler, 20001),
            unit(Component::Scheduler, 20002),
        ],
        None,
    )
    .unwrap_err();
    assert!(matches!(err, MigrateError::Duplicate(_)), "{err}");
    // An invalid config.
    let mut cfg = config(20001, 20002, 30);
    cfg.spec.kubernetes_version = "v1.20.0".into();
    let err = migrate::plan(&cfg, &facts(&n), vec![], None).unwrap_err();
    assert!(matches!(err, MigrateError::Invalid(_)), "{err}");
    // The plan in words.
    let plan = migrate::plan(
        &config(20001, 20002, 30),
        &facts(&n),
        vec![unit(Component::Scheduler, 20002)],
        None,
    )
    .unwrap();
    let text = migrate::describe(&plan).join("\n");
    assert!(
        text.contains("stop kube-scheduler.service") && text.contains("on failure"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_cannot_be_written_after_the_stop_brings_the_unit_back() {
    let port = common::free_port();
    let n = node();
    let s = services(&[(Component::Scheduler, port)]);
    wait_up(port).await;
    // Once the unit is stopped, a symlink takes the manifest's place: the agent never writes
    // through one, so the write fails. (Manifests are staged beside their target, so the
    // state directory's staging cannot be the thing that fails.)
    let target = n.manifests.join("kube-scheduler.yaml");
    let elsewhere = n.manifests.parent().unwrap().join("elsewhere.yaml");
    std::fs::write(&elsewhere, "someone else's file").unwrap();
    let link_to = elsewhere.clone();
    s.after_stop(Box::new(move |_| {
        let _ = std::os::unix::fs::symlink(&link_to, &target);
    }));
    let plan = migrate::plan(
        &config(common::free_port(), port, 30),
        &facts(&n),
        vec![unit(Component::Scheduler, port)],
        None,
    )
    .unwrap();
    let err = migrate::run(&plan, &s, &PlainCheck, None, timing(), &mut |_: &str| {})
        .await
        .unwrap_err();
    let MigrateError::Failed { reason, after, .. } = &err else {
        panic!("{err}")
    };
    assert!(reason.contains("could not write the manifest"), "{reason}");
    assert!(
        after.contains("started kube-scheduler.service again, and it is healthy"),
        "{after}"
    );
    assert!(s.is_active("kube-scheduler.service").unwrap());
    assert!(
        std::fs::symlink_metadata(n.manifests.join("kube-scheduler.yaml")).is_err(),
        "the way back removed what was in the manifest's place"
    );
    assert_eq!(
        std::fs::read_to_string(&elsewhere).unwrap(),
        "someone else's file",
        "nothing written through the symlink"
    );
}

/// With the container runtime as evidence (the agent's), the switch is confirmed by a
/// container of the manifest's uid that kubelet created after the write, and the record and
/// outcomes are as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_confirms_the_pods_container() {
    let (kcm, sched) = (common::free_port(), common::free_port());
    let n = node();
    let units = [
        (Component::ControllerManager, kcm),
        (Component::Scheduler, sched),
    ];
    let s = services(&units);
    wait_up(kcm).await;
    wait_up(sched).await;
    let rt = FakeRuntime::new();
    let _k = FakeKubelet::start_with(
        n.manifests.clone(),
        units.to_vec(),
        vec![],
        Some(rt.clone()),
    );
    let plan = migrate::plan(
        &config(kcm, sched, 30),
        &facts(&n),
        vec![
            unit(Component::ControllerManager, kcm),
            unit(Component::Scheduler, sched),
        ],
        None,
    )
    .unwrap();
    let outcomes = migrate::run(
        &plan,
        &s,
        &PlainCheck,
        Some(&rt),
        timing(),
        &mut |_: &str| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes.len(), 2);
    for step in &plan.steps {
        let c = rt
            .containers()
            .into_iter()
            .find(|c| c.name == step.unit.component.name())
            .unwrap();
        assert_eq!(c.pod_uid, step.uid, "the container runs the manifest's uid");
        assert_eq!(c.state, ContainerRunState::Running);
        assert_eq!(record(&n, step.unit.component)["phase"], "migrated");
    }
}

/// Something else answers on the Pod's port (a leftover process) while kubelet's container
/// for the new manifest crashes: by the endpoint alone that passes for a healthy Pod; with the
/// container runtime it does not, and the way back keeps the unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answered_by_another_process_is_not_the_pod() {
    for with_runtime in [false, true] {
        let (pod_port, unit_port) = (common::free_port(), common::free_port());
        let n = node();
        let s = services(&[(Component::Scheduler, unit_port)]);
        wait_up(unit_port).await;
        let mut leftover = spawn_component(pod_port);
        wait_up(pod_port).await;
        let rt = FakeRuntime::new();
        let _k = FakeKubelet::start_with(
            n.manifests.clone(),
            vec![(Component::Scheduler, pod_port)],
            vec![Component::Scheduler],
            Some(rt.clone()),
        );
        let plan = migrate::plan(
            &config(common::free_port(), pod_port, 30),
            &facts(&n),
            vec![unit(Component::Scheduler, unit_port)],
            Some(Duration::from_secs(3)),
        )
        .unwrap();
        assert_eq!(plan.steps[0].order, Order::StartFirst);
        let timing = Timing {
            stop_timeout: Duration::from_secs(2),
            poll: Duration::from_millis(100),
        };
        let runtime: Option<&dyn kubeplane::agent::runtime::ContainerRuntime> =
            with_runtime.then_some(&rt);
        let got = migrate::run(&plan, &s, &PlainCheck, runtime, timing, &mut |_: &str| {}).await;
        let _ = leftover.kill();
        let _ = leftover.wait();
        if with_runtime {
            let err = got.unwrap_err();
            let MigrateError::Failed { reason, after, .. } = &err else {
                panic!("{err}")
            };
            assert!(reason.contains("not healthy within 3 s"), "{reason}");
            assert!(
                reason.contains("exited"),
                "names the runtime's evidence: {reason}"
            );
            assert!(after.contains("kept running"), "{after}");
            assert!(s.is_active("kube-scheduler.service").unwrap());
            assert!(s.is_enabled("kube-scheduler.service"));
            assert!(!n.manifests.join("kube-scheduler.yaml").exists());
        } else {
            // What the endpoint alone concludes: the reason the runtime is asked.
            assert!(got.is_ok(), "{got:?}");
            assert!(!s.is_active("kube-scheduler.service").unwrap());
        }
    }
}

/// The way back waits until the runtime runs no container of the removed manifest's uid, not
/// only until its endpoint stops answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_waits_for_the_runtime_too() {
    let port = common::free_port(); // nothing listens
    let ep = unit_endpoint(Component::Scheduler, &[format!("--secure-port={port}")]);
    let rt = FakeRuntime::new();
    rt.set(vec![container(
        &Component::Scheduler,
        "uid-1",
        ContainerRunState::Running,
    )]);
    let poll = Duration::from_millis(50);
    let err = migrate::evidence::stopped(
        "uid-1",
        &ep,
        Duration::from_millis(500),
        poll,
        &PlainCheck,
        Some(&rt),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("still runs kube-scheduler of pod uid uid-1"),
        "{err}"
    );
    // Another pod's container does not count; this one exiting ends the wait.
    rt.update(|cs| {
        cs[0].state = ContainerRunState::Exited;
        cs.push(container(
            &Component::Scheduler,
            "uid-2",
            ContainerRunState::Running,
        ));
    });
    migrate::evidence::stopped(
        "uid-1",
        &ep,
        Duration::from_secs(5),
        poll,
        &PlainCheck,
        Some(&rt),
    )
    .await
    .unwrap();
    // Without a runtime the endpoint alone decides.
    migrate::evidence::stopped(
        "uid-1",
        &ep,
        Duration::from_secs(5),
        poll,
        &PlainCheck,
        None,
    )
    .await
    .unwrap();
}
