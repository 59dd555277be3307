use super::fake::{CriServer, FakeRuntime};
use super::*;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
}

fn c(name: &str, state: ContainerRunState, created_ms: u64, attempt: u32) -> ContainerSeen {
    ContainerSeen {
        id: format!("{name}-{created_ms}-{attempt}-0123456789abcdef"),
        name: name.into(),
        pod_uid: "uid-new".into(),
        state,
        created_at: at(created_ms),
        started_at: None,
        exit_code: None,
        attempt,
    }
}

use ContainerRunState::{Created, Exited, Running, Unknown};

const WRITE: u64 = 10_000;

#[test]
fn no_container_is_not_created() {
    assert_eq!(
        evidence(&[], at(WRITE), "kube-apiserver"),
        RuntimeEvidence::NotCreated
    );
    // Another container name of the same pod does not count.
    let other = [c("sidecar", Running, WRITE + 5, 0)];
    assert_eq!(
        evidence(&other, at(WRITE), "kube-apiserver"),
        RuntimeEvidence::NotCreated
    );
}

#[test]
fn a_container_from_before_the_write_is_not_evidence_of_the_write() {
    let old = [c("kube-apiserver", Running, WRITE - 1, 0)];
    assert_eq!(
        evidence(&old, at(WRITE), "kube-apiserver"),
        RuntimeEvidence::OnlyBeforeWrite {
            created_at: at(WRITE - 1),
            running: true
        }
    );
    let old = [c("kube-apiserver", Exited, WRITE - 1, 0)];
    let e = evidence(&old, at(WRITE), "kube-apiserver");
    assert!(
        matches!(e, RuntimeEvidence::OnlyBeforeWrite { running: false, .. }),
        "{e:?}"
    );
    assert!(!e.running());
}

#[test]
fn created_at_the_write_counts_and_states_map() {
    let created = [c("kube-apiserver", Created, WRITE, 0)];
    assert_eq!(
        evidence(&created, at(WRITE), "kube-apiserver"),
        RuntimeEvidence::Created { since: at(WRITE) }
    );
    let running = [c("kube-apiserver", Running, WRITE + 3, 0)];
    let e = evidence(&running, at(WRITE), "kube-apiserver");
    assert_eq!(
        e,
        RuntimeEvidence::Running {
            since: at(WRITE + 3),
            id: running[0].id.clone()
        }
    );
    assert!(e.running());
    assert!(e.describe().contains("kube-apiserve"), "{}", e.describe());
    let unknown = [c("kube-apiserver", Unknown, WRITE + 3, 0)];
    assert_eq!(
        evidence(&unknown, at(WRITE), "kube-apiserver"),
        RuntimeEvidence::Unknown {
            id: unknown[0].id.clone()
        }
    );
}

#[test]
fn running_since_is_the_start_when_known() {
    let mut r = c("kube-scheduler", Running, WRITE + 1, 0);
    r.started_at = Some(at(WRITE + 900));
    assert_eq!(
        evidence(&[r.clone()], at(WRITE), "kube-scheduler"),
        RuntimeEvidence::Running {
            since: at(WRITE + 900),
            id: r.id
        }
    );
}

#[test]
fn the_newest_attempt_decides_a_crash_loop() {
    // Attempt 2 exited (code 1) after attempt 1; an old container of before the write
    // runs (kubelet has not stopped it yet): the newest after the write decides.
    let mut exited = c("kube-apiserver", Exited, WRITE + 2_000, 2);
    exited.exit_code = Some(1);
    let list = [
        c("kube-apiserver", Running, WRITE - 5_000, 0),
        c("kube-apiserver", Exited, WRITE + 100, 1),
        exited,
    ];
    assert_eq!(
        evidence(&list, at(WRITE), "kube-apiserver"),
        RuntimeEvidence::Exited {
            code: Some(1),
            restarts: 2
        }
    );
    // Then attempt 3 runs: running again, since its own start.
    let mut list = list.to_vec();
    list.push(c("kube-apiserver", Running, WRITE + 2_500, 3));
    let e = evidence(&list, at(WRITE), "kube-apiserver");
    assert!(
        matches!(&e, RuntimeEvidence::Running { since, .. } if *since == at(WRITE + 2_500)),
        "{e:?}"
    );
    // Order of the listing does not matter.
    list.reverse();
    assert_eq!(evidence(&list, at(WRITE), "kube-apiserver"), e);
}

#[test]
fn same_attempt_the_latest_creation_wins_and_exit_code_may_be_unknown() {
    let list = [
        c("kube-apiserver", Running, WRITE + 10, 0),
        c("kube-apiserver", Exited, WRITE + 20, 0),
    ];
    let e = evidence(&list, at(WRITE), "kube-apiserver");
    assert_eq!(
        e,
        RuntimeEvidence::Exited {
            code: None,
            restarts: 0
        }
    );
    assert!(e.describe().contains("code unknown"), "{}", e.describe());
}

#[test]
fn endpoints_parse_like_kubelets_flag() {
    assert_eq!(
        socket_path(DEFAULT_ENDPOINT).unwrap(),
        PathBuf::from("/run/containerd/containerd.sock")
    );
    assert_eq!(
        socket_path("/var/run/crio/crio.sock").unwrap(),
        PathBuf::from("/var/run/crio/crio.sock")
    );
    for bad in ["tcp://127.0.0.1:1234", "unix://relative.sock", "", "x.sock"] {
        let e = CriRuntime::new(bad).unwrap_err();
        assert!(e.contains("endpoint"), "{bad}: {e}");
    }
    let rt = CriRuntime::new("unix:///run/k3s/containerd/containerd.sock").unwrap();
    assert_eq!(
        rt.socket(),
        Path::new("/run/k3s/containerd/containerd.sock")
    );
}

fn seen(uid: &str, name: &str, state: ContainerRunState, attempt: u32) -> ContainerSeen {
    ContainerSeen {
        id: format!("id-{uid}-{name}-{attempt}"),
        name: name.into(),
        pod_uid: uid.into(),
        state,
        created_at: at(attempt as u64 * 1000),
        started_at: (state != Created).then(|| at(attempt as u64 * 1000 + 5)),
        exit_code: (state == Exited).then_some(137),
        attempt,
    }
}

fn table() -> FakeRuntime {
    FakeRuntime::with(vec![
        seen("uid-a", "kube-apiserver", Exited, 0),
        seen("uid-a", "kube-apiserver", Running, 1),
        seen("uid-b", "kube-apiserver", Created, 0),
        seen("uid-c", "kube-scheduler", Unknown, 0),
    ])
}

#[tokio::test]
async fn lists_the_containers_of_a_uid_over_a_real_cri_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let _server = CriServer::start(&socket, table()).unwrap();
    let rt = CriRuntime::new(&format!("unix://{}", socket.display())).unwrap();

    let mut a = rt.containers_of_pod("uid-a").await.unwrap();
    a.sort_by_key(|c| c.attempt);
    // The newest container of the name gets start time and exit code from
    // ContainerStatus; older ones only what ListContainers says.
    let mut want_old = seen("uid-a", "kube-apiserver", Exited, 0);
    want_old.started_at = None;
    want_old.exit_code = None;
    assert_eq!(
        a,
        vec![want_old, seen("uid-a", "kube-apiserver", Running, 1)]
    );
    assert_eq!(
        evidence(&a, at(500), "kube-apiserver"),
        RuntimeEvidence::Running {
            since: at(1005),
            id: "id-uid-a-kube-apiserver-1".into()
        }
    );

    let b = rt.containers_of_pod("uid-b").await.unwrap();
    assert_eq!(b, vec![seen("uid-b", "kube-apiserver", Created, 0)]);
    let c = rt.containers_of_pod("uid-c").await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].state, Unknown);
    assert!(rt.containers_of_pod("uid-none").await.unwrap().is_empty());
}

#[tokio::test]
async fn exit_code_of_the_newest_exited_container() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let mut crashed = seen("uid-x", "kube-apiserver", Exited, 3);
    crashed.exit_code = Some(1);
    let _server = CriServer::start(&socket, FakeRuntime::with(vec![crashed])).unwrap();
    let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
    let got = rt.containers_of_pod("uid-x").await.unwrap();
    assert_eq!(
        evidence(&got, at(0), "kube-apiserver"),
        RuntimeEvidence::Exited {
            code: Some(1),
            restarts: 3
        }
    );
}

#[tokio::test]
async fn a_missing_socket_is_an_error_naming_it_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing-here.sock");
    let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
    let started = std::time::Instant::now();
    let e = rt.containers_of_pod("uid-a").await.unwrap_err();
    eprintln!("{e}");
    assert!(e.contains(&socket.display().to_string()), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
    assert!(started.elapsed() < CALL_TIMEOUT, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_restarted_runtime_is_reached_again() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let runtime = table();
    let server = CriServer::start(&socket, runtime.clone()).unwrap();
    let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
    assert_eq!(rt.containers_of_pod("uid-b").await.unwrap().len(), 1);

    // The runtime dies: calls fail, naming the socket.
    server.stop();
    let e = rt.containers_of_pod("uid-b").await.unwrap_err();
    assert!(e.contains(&socket.display().to_string()), "{e}");

    // It comes back (a new process, same socket path, other containers).
    runtime.update(|all| all.push(seen("uid-b", "kube-apiserver", Running, 1)));
    let _server = CriServer::start(&socket, runtime).unwrap();
    let again = rt.containers_of_pod("uid-b").await.unwrap();
    assert_eq!(again.len(), 2);
}

#[tokio::test]
async fn a_runtime_that_does_not_answer_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // Accepts connections and never says a word.
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let rt = CriRuntime::new(socket.to_str().unwrap())
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let e = rt.containers_of_pod("uid-a").await.unwrap_err();
    assert!(e.contains("silent.sock"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn images_are_asked_for_and_pulled_over_cri() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let fake = FakeRuntime::new();
    fake.images(|i| {
        i.present.insert("registry.k8s.io/pause:3.10.2".into());
        i.failing.insert(
            "registry.example/broken:v1".into(),
            "pull access denied".into(),
        );
    });
    let _server = CriServer::start(&socket, fake.clone()).unwrap();
    let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
    let api = "registry.k8s.io/kube-apiserver:v1.36.2";
    assert!(
        rt.image_present("registry.k8s.io/pause:3.10.2")
            .await
            .unwrap()
    );
    assert!(!rt.image_present(api).await.unwrap());
    let got = rt
        .pull_image(api, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(got.starts_with("sha256:"), "{got}");
    assert!(rt.image_present(api).await.unwrap());
    let e = rt
        .pull_image("registry.example/broken:v1", None, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        e.contains("could not pull registry.example/broken:v1") && e.contains("pull access denied"),
        "{e}"
    );
    fake.images(|i| i.pull_time = Duration::from_secs(5));
    let e = rt
        .pull_image("registry.k8s.io/slow:v1", None, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        e.contains("did not pull registry.k8s.io/slow:v1 within"),
        "{e}"
    );
    assert_eq!(
        fake.images(|i| i.pulls.clone()),
        [api, "registry.example/broken:v1", "registry.k8s.io/slow:v1"]
    ); // Credentials travel in the CRI request (PullImageRequest.auth).
    let auth = crate::agent::pull_auth::RegistryAuth {
        server: "registry.example:5000".into(),
        username: "puller".into(),
        password: "s3cret".into(),
    };
    fake.images(|i| i.pull_time = Duration::ZERO);
    rt.pull_image(
        "registry.example:5000/private:v1",
        Some(&auth),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(
        fake.images(|i| i.pull_users.clone()),
        [None, None, None, Some("puller".to_string())]
    );
}

#[tokio::test]
async fn the_in_memory_runtime_filters_by_uid() {
    let t = table();
    let a = t.containers_of_pod("uid-a").await.unwrap();
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|c| c.pod_uid == "uid-a"));
}
