//! Out of the load balancer before kube-apiserver restarts (issue 11 a): the agent check
//! answers `drain` before the write and until the new kube-apiserver is healthy, `ready`
//! after; a restore after a failed revision ends `ready`; a change that does not restart
//! kube-apiserver drains nothing.

use std::sync::Mutex;

use super::*;
use crate::agent::lb_drain::{Answer, LoadBalancerDrain};
use crate::render::sha256_hex;

/// What a load balancer polling every second saw: (virtual time since the start, answer,
/// digest of kube-apiserver.yaml on disk at that moment).
type Seen = Arc<Mutex<Vec<(Duration, Answer, Option<String>)>>>;

fn poll(env: &Env, lb: &LoadBalancerDrain) -> (Seen, tokio::time::Instant) {
    let seen: Seen = Arc::default();
    let t0 = tokio::time::Instant::now();
    let path = env.dirs.manifest_path(Component::ApiServer);
    let (lb, out) = (lb.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let on_disk = std::fs::read(&path).ok().map(|b| sha256_hex(&b));
            let answer = lb.answer();
            out.lock().unwrap().push((t0.elapsed(), answer, on_disk));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    (seen, t0)
}

fn digest(spec: &ControlPlaneNodeSpec) -> Option<String> {
    Some(sha256_hex(&content_of(spec, Component::ApiServer)))
}

#[tokio::test(start_paused = true)]
async fn drained_before_the_apiserver_write_and_ready_once_it_is_healthy() {
    let env = env();
    let mut engine = env.engine();
    let good = apply_good(&mut engine, &env).await;
    let lb = LoadBalancerDrain::new(Duration::from_secs(4));
    engine.set_load_balancer(lb.clone());
    let (seen, t0) = poll(&env, &lb);

    let next = node_spec(&[("v", "3")], &[], &env);
    assert_eq!(engine.apply(&next, Some(2), true).await, Outcome::Healthy);
    let done = t0.elapsed();
    assert_eq!(lb.answer(), Answer::Ready, "back in the pool once healthy");

    let seen = seen.lock().unwrap().clone();
    let first_drain = seen
        .iter()
        .find(|(_, a, _)| *a == Answer::Drain)
        .unwrap_or_else(|| panic!("never drained: {seen:?}"));
    assert_eq!(
        first_drain.2,
        digest(&good),
        "drained while the old kube-apiserver still ran"
    );
    let first_new = seen
        .iter()
        .find(|(_, _, d)| *d == digest(&next))
        .expect("the new manifest seen");
    assert!(
        first_new.0 >= first_drain.0 + Duration::from_secs(4),
        "written only the drain seconds after the load balancer heard it: {seen:?}"
    );
    for (t, a, d) in &seen {
        if *t > first_drain.0 && *t < done {
            assert_eq!(
                *a,
                Answer::Drain,
                "ready at {t:?} before the new kube-apiserver was healthy ({d:?})"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollback_stays_drained_until_the_restore_is_healthy_then_ready() {
    let env = env();
    let mut engine = env.engine();
    let good = apply_good(&mut engine, &env).await;
    let lb = LoadBalancerDrain::new(Duration::from_secs(4));
    engine.set_load_balancer(lb.clone());
    let (seen, t0) = poll(&env, &lb);

    let bad = node_spec(&[("v", "5")], &[], &env);
    env.kubelet
        .fail(hash_of(&bad, Component::ApiServer), Behaviour::ignored());
    let out = engine.apply(&bad, Some(2), true).await;
    rolled_back(&out, "HashNeverChanged");
    let done = t0.elapsed();
    assert_eq!(lb.answer(), Answer::Ready);

    let seen = seen.lock().unwrap().clone();
    let drained: Vec<_> = seen
        .iter()
        .filter(|(_, a, _)| *a == Answer::Drain)
        .collect();
    let first = drained.first().expect("drained");
    let last = drained.last().unwrap();
    assert!(
        seen.iter()
            .any(|(t, _, d)| *t < done && *d != digest(&good) && *d != digest(&bad)),
        "the restored manifest was on disk before the end: {seen:?}"
    );
    for (t, a, _) in &seen {
        if *t >= first.0 && *t < done {
            assert_eq!(*a, Answer::Drain, "ready at {t:?} during the rollback");
        }
    }
    assert!(last.0 < done);
    // The restore did not wait a second drain: one drain, one wait.
    let writes_after_drain = first.0 + Duration::from_secs(4);
    assert!(done > writes_after_drain);
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_change_drains_nothing() {
    let env = env();
    let mut engine = env.engine();
    apply_good(&mut engine, &env).await;
    let lb = LoadBalancerDrain::new(Duration::from_secs(4));
    engine.set_load_balancer(lb.clone());
    let (seen, _) = poll(&env, &lb);
    let next = node_spec(&[], &[("v", "3")], &env);
    assert_eq!(engine.apply(&next, Some(2), true).await, Outcome::Healthy);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 3, "{seen:?}");
    assert!(seen.iter().all(|(_, a, _)| *a == Answer::Ready), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_load_balancer_asking_the_restart_goes_ahead() {
    let env = env();
    let mut engine = env.engine();
    apply_good(&mut engine, &env).await;
    let lb = LoadBalancerDrain::new(Duration::from_secs(4));
    engine.set_load_balancer(lb.clone());
    let next = node_spec(&[("v", "3")], &[], &env);
    assert_eq!(engine.apply(&next, Some(2), true).await, Outcome::Healthy);
    assert_eq!(
        env.manifest(Component::ApiServer),
        content_of(&next, Component::ApiServer)
    );
    assert!(!lb.is_draining());
}
