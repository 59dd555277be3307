use super::*;
use crate::agent::runtime::RuntimeEvidence;

fn spec(expect: Expect, use_api: bool) -> WaitSpec {
    WaitSpec {
        component: Component::Scheduler,
        pod_name: "kube-scheduler-cp-1".into(),
        expect,
        endpoint: Some(Endpoint {
            host: "127.0.0.1".into(),
            port: 10259,
            path: "/livez".into(),
            https: true,
            timeout: Duration::from_secs(1),
        }),
        timeout: Duration::from_secs(60),
        min_ready: Duration::from_secs(10),
        use_api,
        written_at: std::time::SystemTime::now(),
    }
}

fn seen(hash: &str, ready: bool) -> PodEvent {
    PodEvent::Seen(MirrorPodState {
        hash: Some(hash.into()),
        ready,
        ..Default::default()
    })
}

#[test]
fn updated_needs_hash_ready_endpoint_for_min_ready() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_endpoint(s(0), Ok(()));
    t.on_pod(s(0), seen("old", true));
    assert_eq!(t.updated(s(30)), None, "old hash");
    t.on_pod(s(5), seen("new", false));
    assert_eq!(t.updated(s(30)), None, "not ready");
    t.on_pod(s(6), seen("new", true));
    assert_eq!(t.updated(s(15)), None, "9s < minReady");
    t.on_endpoint(s(10), Err("connect: refused".into()));
    assert_eq!(t.updated(s(20)), None, "endpoint failed: clock reset");
    t.on_endpoint(s(11), Ok(()));
    assert_eq!(t.updated(s(20)), None);
    assert_eq!(
        t.updated(s(21)),
        Some(Verdict::Updated {
            observed_hash: Some("new".into())
        })
    );
}

#[test]
fn api_outage_is_unknown_not_negative_and_the_endpoint_carries_continuity() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_pod(s(0), seen("old", true));
    t.on_pod(s(1), PodEvent::ApiError("connection refused".into()));
    t.on_endpoint(s(2), Ok(()));
    assert_eq!(t.pod_ok(), None);
    assert_eq!(t.updated(s(20)), None, "needs the API to confirm the hash");
    assert!(
        t.status()
            .message
            .unwrap()
            .contains("relying on the local endpoint")
    );
    t.on_pod(s(20), seen("new", true));
    assert!(t.updated(s(20)).is_some(), "endpoint healthy since 2s");
    assert!(
        t.status()
            .message
            .unwrap()
            .contains("API was unavailable for 19s")
    );
}

#[test]
fn diagnoses_name_what_was_seen() {
    let t0 = Instant::now();
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_pod(t0, seen("old", true));
    t.on_endpoint(t0, Ok(()));
    let d = t.diagnose();
    assert_eq!(d.reason, FailureReason::HashNeverChanged);
    assert!(
        d.message
            .contains("still shows kubernetes.io/config.hash=old (expected new)")
    );

    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_pod(
        t0,
        PodEvent::Seen(MirrorPodState {
            hash: Some("new".into()),
            ready: false,
            restart_count: Some(4),
            last_state: Some("Terminated: Error, exit code 1".into()),
        }),
    );
    t.on_endpoint(t0, Err("connect: Connection refused".into()));
    let d = t.diagnose();
    assert_eq!(d.reason, FailureReason::PodNotReady);
    assert!(d.message.contains("restartCount 4"), "{}", d.message);
    assert!(d.message.contains("Terminated: Error, exit code 1"));
    assert!(
        d.message
            .contains("https://127.0.0.1:10259/livez failing: connect")
    );

    let mut t = Tracker::new(spec(Expect::Hash("new".into()), false));
    t.on_endpoint(t0, Err("HTTP 500 Internal Server Error".into()));
    let d = t.diagnose();
    assert_eq!(d.reason, FailureReason::EndpointFailing);
    assert!(!d.message.contains("mirror pod"), "{}", d.message);

    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_pod(t0, PodEvent::Missing);
    assert_eq!(t.diagnose().reason, FailureReason::MirrorPodMissing);
}

#[test]
fn a_swapped_pod_is_not_hash_never_changed_and_outages_add_up() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_pod(s(0), seen("old", true));
    // kubelet swapped the pod (the runtime runs the new uid) but the API kept showing the
    // old hash.
    t.on_runtime(
        s(1),
        Ok(RuntimeEvidence::Running {
            since: std::time::SystemTime::now(),
            id: "abc".into(),
        }),
    );
    let d = t.diagnose();
    assert_ne!(d.reason, FailureReason::HashNeverChanged, "{}", d.message);
    assert!(
        d.message.contains("kubelet started the new manifest"),
        "{}",
        d.message
    );
    // Two outages of 10 s and 20 s: 30 s, not the longest one; an ongoing one counts too.
    t.on_pod(s(10), PodEvent::ApiError("refused".into()));
    t.on_pod(s(20), seen("old", true));
    t.on_pod(s(30), PodEvent::ApiError("refused".into()));
    t.on_pod(s(50), seen("old", true));
    assert_eq!(t.api_outage(s(50)), Duration::from_secs(30));
    t.on_pod(s(60), PodEvent::ApiError("refused".into()));
    assert_eq!(t.api_outage(s(65)), Duration::from_secs(35));
}

#[test]
fn with_the_api_down_the_diagnosis_comes_from_local_evidence() {
    let t0 = Instant::now();
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
    t.on_pod(t0, seen("old", true));
    t.on_pod(t0, PodEvent::ApiError("connection refused".into()));
    t.on_runtime(
        t0,
        Ok(RuntimeEvidence::Running {
            since: std::time::SystemTime::now(),
            id: "c1".into(),
        }),
    );
    t.on_endpoint(t0, Err("HTTP 500".into()));
    let d = t.diagnose();
    assert_eq!(d.reason, FailureReason::EndpointFailing, "{}", d.message);
    assert!(
        !d.message.contains("never showed it Ready"),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("the API server is unavailable"),
        "{}",
        d.message
    );
    t.on_runtime(
        t0,
        Ok(RuntimeEvidence::Exited {
            code: Some(1),
            restarts: 3,
        }),
    );
    assert_eq!(t.diagnose().reason, FailureReason::ContainerExited);
}

#[test]
fn without_the_api_the_runtime_decides_and_the_old_process_does_not_count() {
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), false));
    // The old process answers the endpoint; no container of the new uid.
    t.on_endpoint(s(0), Ok(()));
    t.on_runtime(s(0), Ok(RuntimeEvidence::NotCreated));
    assert_eq!(t.updated(s(30)), None);
    assert_eq!(t.diagnose().reason, FailureReason::ContainerNotStarted);
    t.on_runtime(
        s(31),
        Ok(RuntimeEvidence::Running {
            since: std::time::SystemTime::now(),
            id: "c1".into(),
        }),
    );
    t.on_endpoint(s(31), Ok(()));
    assert!(t.updated(s(41)).is_some());
    // An unreachable runtime leaves the endpoint alone to judge (as before).
    let mut t = Tracker::new(spec(Expect::Hash("new".into()), false));
    t.on_runtime(s(0), Err("unix:///x.sock unreachable".into()));
    t.on_endpoint(s(0), Ok(()));
    assert!(t.updated(s(10)).is_some());
}

#[test]
fn expect_any_and_not() {
    assert!(Expect::Any.matches(Some("x")));
    assert!(!Expect::Any.matches(None));
    assert!(Expect::Not("bad".into()).matches(Some("x")));
    assert!(!Expect::Not("bad".into()).matches(Some("bad")));
}

#[test]
fn mirror_pod_state_reads_hash_readiness_and_last_state() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-scheduler-cp-1",
                     "annotations": {"kubernetes.io/config.hash": "abc"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "kube-scheduler", "image": "i", "imageID": "", "ready": false,
                "restartCount": 3,
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}
            }]
        }
    }))
    .unwrap();
    let s = MirrorPodState::from_pod(&pod);
    assert_eq!(s.hash.as_deref(), Some("abc"));
    assert!(!s.ready);
    assert_eq!(s.restart_count, Some(3));
    assert_eq!(
        s.last_state.as_deref(),
        Some("Terminated: Error, exit code 1; now Waiting: CrashLoopBackOff")
    );
}
