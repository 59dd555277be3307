//! The order of stops and starts, and the way back from a pod that never gets healthy.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_ports_stop_the_unit_first_then_the_pod_takes_over_one_component_at_a_time() {
    let (kcm, sched) = (common::free_port(), common::free_port());
    let n = node();
    let units = [
        (Component::ControllerManager, kcm),
        (Component::Scheduler, sched),
    ];
    let s = services(&units);
    wait_up(kcm).await;
    wait_up(sched).await;
    let k = FakeKubelet::start(n.manifests.clone(), units.to_vec(), vec![]);
    // Given scheduler first: the plan still moves kube-controller-manager first.
    let plan = migrate::plan(
        &config(kcm, sched, 30),
        &facts(&n),
        vec![
            unit(Component::Scheduler, sched),
            unit(Component::ControllerManager, kcm),
        ],
        None,
    )
    .unwrap();
    assert!(plan.steps.iter().all(|s| s.order == Order::StopFirst));
    let mut lines = Vec::new();
    let outcomes = migrate::run(&plan, &s, &PlainCheck, None, timing(), &mut |l: &str| {
        lines.push(l.to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        events(&s, &k),
        [
            "stop kube-controller-manager.service",
            "pod started kube-controller-manager",
            "disable kube-controller-manager.service",
            "stop kube-scheduler.service",
            "pod started kube-scheduler",
            "disable kube-scheduler.service",
        ]
    );
    for (c, _) in units {
        let unit = format!("{}.service", c.name());
        assert!(!s.is_active(&unit).unwrap() && !s.is_enabled(&unit));
        assert!(n.manifests.join(c.manifest_file()).exists());
        let r = record(&n, c);
        assert_eq!(r["phase"], "migrated");
        assert!(r["unit"]["text"].as_str().unwrap().contains("ExecStart="));
        assert_eq!(
            r["unit"]["environmentFiles"]["/etc/kubernetes/x.conf"],
            "ARGS=\"--v=2\"\n"
        );
    }
    // The gap is measured: from the stop until the Pod answered.
    for o in &outcomes {
        assert!(
            o.unavailable > Duration::ZERO && o.unavailable < Duration::from_secs(10),
            "{o:?}"
        );
    }
    assert_eq!(outcomes[0].component, Component::ControllerManager);
    assert!(lines.iter().any(|l| l.contains("migrated in")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_ports_start_the_pod_first_and_stop_the_unit_once_it_is_healthy() {
    let (pod, old) = (common::free_port(), common::free_port());
    let n = node();
    let s = services(&[(Component::Scheduler, old)]);
    wait_up(old).await;
    let k = FakeKubelet::start(
        n.manifests.clone(),
        vec![(Component::Scheduler, pod)],
        vec![],
    );
    let plan = migrate::plan(
        &config(common::free_port(), pod, 30),
        &facts(&n),
        vec![unit(Component::Scheduler, old)],
        None,
    )
    .unwrap();
    assert_eq!(plan.steps[0].order, Order::StartFirst);
    let outcomes = migrate::run(&plan, &s, &PlainCheck, None, timing(), &mut |_: &str| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        events(&s, &k),
        [
            "pod started kube-scheduler",
            "stop kube-scheduler.service",
            "disable kube-scheduler.service"
        ]
    );
    assert_eq!(outcomes[0].unavailable, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_never_gets_healthy_is_removed_and_the_unit_comes_back() {
    let (kcm, sched) = (common::free_port(), common::free_port());
    let n = node();
    let units = [
        (Component::ControllerManager, kcm),
        (Component::Scheduler, sched),
    ];
    let s = services(&units);
    wait_up(kcm).await;
    wait_up(sched).await;
    // kube-controller-manager's Pod is fine, kube-scheduler's never answers.
    let k = FakeKubelet::start(
        n.manifests.clone(),
        units.to_vec(),
        vec![Component::Scheduler],
    );
    let plan = migrate::plan(
        &config(kcm, sched, 30),
        &facts(&n),
        vec![
            unit(Component::ControllerManager, kcm),
            unit(Component::Scheduler, sched),
        ],
        Some(Duration::from_secs(3)),
    )
    .unwrap();
    let started = Instant::now();
    let err = migrate::run(&plan, &s, &PlainCheck, None, timing(), &mut |_: &str| {})
        .await
        .unwrap_err();
    let MigrateError::Failed {
        component,
        reason,
        after,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*component, Component::Scheduler);
    assert!(reason.contains("not healthy within 3 s"), "{reason}");
    assert!(
        after.contains("started kube-scheduler.service again, and it is healthy"),
        "{after}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        events(&s, &k),
        [
            "stop kube-controller-manager.service",
            "pod started kube-controller-manager",
            "disable kube-controller-manager.service",
            "stop kube-scheduler.service",
            "pod started kube-scheduler",
            "pod stopped kube-scheduler",
        ]
    );
    // The unit runs and answers again, still enabled; the manifest is gone.
    assert!(s.is_active("kube-scheduler.service").unwrap());
    assert!(s.is_enabled("kube-scheduler.service"));
    assert!(
        PlainCheck
            .check(&unit(Component::Scheduler, sched).endpoint)
            .await
            .is_ok()
    );
    assert!(!n.manifests.join("kube-scheduler.yaml").exists());
    assert_eq!(record(&n, Component::Scheduler)["phase"], "rolled back");
    // The component migrated before stays migrated.
    assert_eq!(
        record(&n, Component::ControllerManager)["phase"],
        "migrated"
    );
    let log: Vec<String> = s.log().into_iter().map(|(_, e)| e).collect();
    assert_eq!(log.last().unwrap(), "start kube-scheduler.service");
}
