//! The fake kubelet of `kubeplane::agent::runtime::fake` (feature `testkit`, on for the
//! crate's tests) follows the real kubelet's static-pod rules, and its CRI socket tells what
//! runs.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use kubeplane::agent::health::{Endpoint, HealthCheck, HttpsCheck};
use kubeplane::agent::runtime::fake::{
    FAIL_MARKER, FakeKubelet, FakeKubeletOptions, KubeletEventKind, static_pod_yaml,
};
use kubeplane::agent::runtime::{
    ContainerRunState, ContainerRuntime, CriRuntime, RuntimeEvidence, evidence,
};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Writes a manifest as the agent does: a dot-file, then a rename.
fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn endpoint(port: u16, path: &str) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        path: path.into(),
        https: true,
        timeout: Duration::from_secs(1),
    }
}

async fn check(port: u16, path: &str) -> Result<(), String> {
    HttpsCheck::new().check(&endpoint(port, path)).await
}

fn fast() -> FakeKubeletOptions {
    FakeKubeletOptions {
        start_delay: Duration::from_millis(200),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_manifest_runs_after_the_delay_and_is_seen_through_cri() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), fast()).unwrap();
    let cri = CriRuntime::new(kubelet.cri_socket.to_str().unwrap()).unwrap();
    let port = free_port();

    let written = SystemTime::now();
    let t0 = Instant::now();
    write(
        dir.path(),
        "kube-scheduler.yaml",
        &static_pod_yaml("kube-scheduler", "uid-1", port, &["--v=2"]),
    );
    // Not before the delay.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(kubelet.running_uid("kube-scheduler"), None);
    assert!(check(port, "/livez").await.is_err());
    assert!(
        kubelet
            .wait_running("kube-scheduler", "uid-1", Duration::from_secs(5))
            .await
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(kubelet.endpoint_port("kube-scheduler"), Some(port));

    // Healthy on its probe paths over HTTPS, 404 elsewhere.
    check(port, "/livez").await.unwrap();
    check(port, "/readyz").await.unwrap();
    let e = check(port, "/metrics").await.unwrap_err();
    assert!(e.contains("404"), "{e}");

    // The CRI socket reports the container, labelled with the uid and the container name.
    let seen = cri.containers_of_pod("uid-1").await.unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].name, "kube-scheduler");
    assert_eq!(seen[0].state, ContainerRunState::Running);
    assert!(seen[0].created_at >= written);
    assert!(
        matches!(
            evidence(&seen, written, "kube-scheduler"),
            RuntimeEvidence::Running { .. }
        ),
        "{seen:?}"
    );
    assert!(cri.containers_of_pod("uid-2").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_new_uid_stops_the_old_container_then_starts_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), fast()).unwrap();
    let cri = CriRuntime::new(kubelet.cri_socket.to_str().unwrap()).unwrap();
    let port = free_port();
    let yaml = |uid: &str| static_pod_yaml("kube-apiserver", uid, port, &["--secure-port=6443"]);

    write(dir.path(), "kube-apiserver.yaml", &yaml("old"));
    assert!(
        kubelet
            .wait_running("kube-apiserver", "old", Duration::from_secs(5))
            .await
    );
    check(port, "/livez").await.unwrap();

    let written = SystemTime::now();
    write(dir.path(), "kube-apiserver.yaml", &yaml("new"));
    // The old container stops (its endpoint goes away) before the new one starts.
    let deadline = Instant::now() + Duration::from_secs(2);
    while kubelet.running_uid("kube-apiserver").is_some() {
        assert!(
            Instant::now() < deadline,
            "the old container was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(check(port, "/livez").await.is_err());
    let old = cri.containers_of_pod("old").await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].state, ContainerRunState::Exited);
    assert_eq!(
        evidence(
            &cri.containers_of_pod("new").await.unwrap(),
            written,
            "kube-apiserver"
        ),
        RuntimeEvidence::NotCreated
    );

    assert!(
        kubelet
            .wait_running("kube-apiserver", "new", Duration::from_secs(5))
            .await
    );
    check(port, "/livez").await.unwrap();
    let new = cri.containers_of_pod("new").await.unwrap();
    assert!(
        evidence(&new, written, "kube-apiserver").running(),
        "{new:?}"
    );

    // The history tells the story in order.
    let story: Vec<(String, &'static str)> = kubelet
        .history()
        .into_iter()
        .map(|e| {
            let what = match e.kind {
                KubeletEventKind::ManifestSeen { .. } => "seen",
                KubeletEventKind::Started { .. } => "started",
                KubeletEventKind::Stopped { .. } => "stopped",
                _ => "other",
            };
            (e.uid, what)
        })
        .collect();
    let expect = [
        ("old", "seen"),
        ("old", "started"),
        ("old", "stopped"),
        ("new", "seen"),
        ("new", "started"),
    ];
    assert_eq!(
        story,
        expect.map(|(u, w)| (u.to_string(), w)).to_vec(),
        "{:#?}",
        kubelet.history()
    );
    let times: Vec<SystemTime> = kubelet.history().iter().map(|e| e.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn a_failing_revision_is_never_healthy_and_crash_loops() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FakeKubeletOptions {
        start_delay: Duration::from_millis(50),
        crash_after: Duration::from_millis(150),
        crash_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let kubelet = FakeKubelet::start(dir.path(), opts).unwrap();
    let cri = CriRuntime::new(kubelet.cri_socket.to_str().unwrap()).unwrap();
    let port = free_port();
    let written = SystemTime::now();
    write(
        dir.path(),
        "kube-apiserver.yaml",
        &static_pod_yaml("kube-apiserver", "bad", port, &["--v=2", FAIL_MARKER]),
    );

    let mut max_restarts = 0;
    let mut saw_running = false;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if let Err(e) = check(port, "/livez").await {
            assert!(!e.is_empty());
        } else {
            panic!("a failing revision answered healthy");
        }
        let seen = cri.containers_of_pod("bad").await.unwrap();
        // kubelet keeps the running container and one dead one per name.
        assert!(seen.len() <= 2, "{seen:?}");
        match evidence(&seen, written, "kube-apiserver") {
            RuntimeEvidence::Exited { code, restarts } => {
                assert_eq!(code, Some(1));
                max_restarts = max_restarts.max(restarts);
            }
            RuntimeEvidence::Running { .. } => saw_running = true,
            RuntimeEvidence::NotCreated => {}
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_running);
    assert!(max_restarts >= 2, "restarts {max_restarts}");
    let crashes = kubelet
        .history()
        .iter()
        .filter(|e| matches!(e.kind, KubeletEventKind::Crashed { exit_code: 1, .. }))
        .count();
    assert!(crashes >= 3, "{:#?}", kubelet.history());

    // A good revision replaces it and is healthy.
    write(
        dir.path(),
        "kube-apiserver.yaml",
        &static_pod_yaml("kube-apiserver", "good", port, &["--v=2"]),
    );
    assert!(
        kubelet
            .wait_running("kube-apiserver", "good", Duration::from_secs(5))
            .await
    );
    check(port, "/livez").await.unwrap();
}

#[tokio::test]
async fn a_predicate_chooses_failing_pods_and_healthy_after_delays_health() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FakeKubeletOptions {
        start_delay: Duration::from_millis(50),
        healthy_after: Duration::from_millis(400),
        ..Default::default()
    }
    .failing_if_arg_contains("--etcd-servers=https://127.0.0.1:1");
    let kubelet = FakeKubelet::start(dir.path(), opts).unwrap();
    let port = free_port();
    write(
        dir.path(),
        "kube-apiserver.yaml",
        &static_pod_yaml("kube-apiserver", "ok", port, &[]),
    );
    assert!(
        kubelet
            .wait_running("kube-apiserver", "ok", Duration::from_secs(5))
            .await
    );
    let e = check(port, "/livez").await.unwrap_err();
    assert!(e.contains("500"), "{e}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    check(port, "/livez").await.unwrap();

    write(
        dir.path(),
        "kube-apiserver.yaml",
        &static_pod_yaml(
            "kube-apiserver",
            "broken",
            port,
            &["--etcd-servers=https://127.0.0.1:1"],
        ),
    );
    assert!(
        kubelet
            .wait_running("kube-apiserver", "broken", Duration::from_secs(5))
            .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(check(port, "/livez").await.is_err());
}

#[tokio::test]
async fn unparseable_or_removed_files_stop_their_pod_and_dot_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), fast()).unwrap();
    let (p1, p2) = (free_port(), free_port());
    write(
        dir.path(),
        "kube-apiserver.yaml",
        &static_pod_yaml("kube-apiserver", "a1", p1, &[]),
    );
    write(
        dir.path(),
        "kube-scheduler.yaml",
        &static_pod_yaml("kube-scheduler", "s1", p2, &[]),
    );
    // A dot-file (the agent's staging file) never runs.
    std::fs::write(
        dir.path().join(".kube-apiserver.yaml.kubeplane-tmp"),
        static_pod_yaml("kube-apiserver", "staged", p1, &[]),
    )
    .unwrap();
    assert!(
        kubelet
            .wait_running("kube-apiserver", "a1", Duration::from_secs(5))
            .await
    );
    assert!(
        kubelet
            .wait_running("kube-scheduler", "s1", Duration::from_secs(5))
            .await
    );

    // A truncated file stops kube-apiserver (and only it).
    std::fs::write(
        dir.path().join("kube-apiserver.yaml"),
        "apiVersion: v1\nkind: Po",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while kubelet.running_uid("kube-apiserver").is_some() {
        assert!(Instant::now() < deadline, "{:#?}", kubelet.history());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(check(p1, "/livez").await.is_err());
    assert_eq!(kubelet.running_uid("kube-scheduler").as_deref(), Some("s1"));
    let h = kubelet.history();
    assert!(
        h.iter().any(|e| e.component == "kube-apiserver"
            && matches!(&e.kind, KubeletEventKind::Unparseable { file, .. } if file == "kube-apiserver.yaml")),
        "{h:#?}"
    );

    // Removing the file stops kube-scheduler.
    std::fs::remove_file(dir.path().join("kube-scheduler.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while kubelet.running_uid("kube-scheduler").is_some() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        kubelet
            .history()
            .iter()
            .any(|e| e.uid == "s1" && e.kind == KubeletEventKind::Removed)
    );
    assert!(!kubelet.history().iter().any(|e| e.uid == "staged"));

    // Restoring the same uid starts it again.
    write(
        dir.path(),
        "kube-apiserver.yaml",
        &static_pod_yaml("kube-apiserver", "a1", p1, &[]),
    );
    assert!(
        kubelet
            .wait_running("kube-apiserver", "a1", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn same_uid_other_spec_restarts_the_container_with_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), fast()).unwrap();
    let port = free_port();
    write(
        dir.path(),
        "kube-scheduler.yaml",
        &static_pod_yaml("kube-scheduler", "u", port, &["--v=2"]),
    );
    assert!(
        kubelet
            .wait_running("kube-scheduler", "u", Duration::from_secs(5))
            .await
    );
    write(
        dir.path(),
        "kube-scheduler.yaml",
        &static_pod_yaml("kube-scheduler", "u", port, &["--v=4"]),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = kubelet.runtime.containers_of_pod("u").await.unwrap();
        if all
            .iter()
            .any(|c| c.attempt == 1 && c.state == ContainerRunState::Running)
        {
            assert!(
                all.iter()
                    .any(|c| c.attempt == 0 && c.state == ContainerRunState::Exited)
            );
            break;
        }
        assert!(Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Rewriting identical bytes (or the same Pod) changes nothing.
    let before = kubelet.history().len();
    write(
        dir.path(),
        "kube-scheduler.yaml",
        &static_pod_yaml("kube-scheduler", "u", port, &["--v=4"]),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kubelet.history().len(), before, "{:#?}", kubelet.history());
}

/// The fake runs on its own thread: a test that blocks (waiting for a child process, as the
/// crash campaign does) does not stall it, and it outlives a killed child.
#[test]
fn works_from_a_blocking_test_and_outlives_a_killed_child() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), fast()).unwrap();
    let port = free_port();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    write(
        dir.path(),
        "kube-scheduler.yaml",
        &static_pod_yaml("kube-scheduler", "x", port, &[]),
    );
    std::thread::sleep(Duration::from_millis(600));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(kubelet.running_uid("kube-scheduler").as_deref(), Some("x"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        check(port, "/livez").await.unwrap();
        let cri = CriRuntime::new(kubelet.cri_socket.to_str().unwrap()).unwrap();
        assert_eq!(cri.containers_of_pod("x").await.unwrap().len(), 1);
    });
    // Dropping it stops everything and removes the socket.
    let socket = kubelet.cri_socket.clone();
    drop(kubelet);
    assert!(!socket.exists());
}
