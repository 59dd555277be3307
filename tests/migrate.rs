//! `migrate`'s sequencing and way back, with a service manager that really starts and stops
//! processes ([`ProcessServices`]) and a stand-in kubelet that runs a Pod's process while its
//! manifest is in the directory. The "components" are this test binary run as
//! `fake_component`: a plain HTTP server answering 200 on its port.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kubeplane::agent::health::{Endpoint, HealthCheck};
use kubeplane::agent::runtime::fake::FakeRuntime;
use kubeplane::agent::runtime::{ContainerRunState, ContainerSeen};
use kubeplane::api::{Component, NodeFacts, parse_config};
use kubeplane::migrate::{
    self, MigrateError, Order, ProcessServices, ServiceManager, Timing, UnitInfo, unit_endpoint,
};

/// The helper process: serves HTTP 200 on `FAKE_COMPONENT_PORT` until killed.
#[test]
#[ignore = "a helper process the other tests start"]
fn fake_component() {
    let Ok(port) = std::env::var("FAKE_COMPONENT_PORT") else {
        return;
    };
    let l = TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}

fn component_command() -> Vec<String> {
    vec![
        std::env::current_exe().unwrap().display().to_string(),
        "--ignored".into(),
        "--exact".into(),
        "fake_component".into(),
        "--test-threads=1".into(),
    ]
}

fn spawn_component(port: u16) -> Child {
    let cmd = component_command();
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("FAKE_COMPONENT_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Plain HTTP instead of TLS: 200 = healthy.
struct PlainCheck;

impl HealthCheck for PlainCheck {
    fn check<'a>(&'a self, ep: &'a Endpoint) -> BoxFuture<'a, Result<(), String>> {
        let addr = format!("{}:{}", ep.host, ep.port);
        let path = ep.path.clone();
        async move {
            let got = tokio::task::spawn_blocking(move || {
                let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
                let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1))
                    .map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(1)))
                    .map_err(|e| e.to_string())?;
                s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
                    .map_err(|e| e.to_string())?;
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                Ok::<_, String>(buf)
            })
            .await
            .map_err(|e| e.to_string())?;
            match got {
                Ok(b) if b.starts_with(b"HTTP/1.1 200") => Ok(()),
                Ok(_) => Err("not 200".to_string()),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }
}

/// A stand-in kubelet: while `<component>.yaml` is in the directory it runs the Pod's
/// process on the Pod's port (or nothing, for a component listed as broken), and stops it
/// when the file goes. Logs `pod started X` / `pod stopped X` with times.
struct FakeKubelet {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    fn start(dir: PathBuf, pods: Vec<(Component, u16)>, broken: Vec<Component>) -> Self {
        Self::start_with(dir, pods, broken, None)
    }

    /// Also reports its containers to `runtime`, as a container runtime would: a container
    /// named after the component, labelled with the manifest's `metadata.uid`, running while
    /// the process runs (exited at once for a broken one), exited when the file goes.
    fn start_with(
        dir: PathBuf,
        pods: Vec<(Component, u16)>,
        broken: Vec<Component>,
        runtime: Option<FakeRuntime>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mut running: Vec<(Component, Option<Child>)> = Vec::new();
            while !s.load(Ordering::SeqCst) {
                for (c, port) in &pods {
                    let present = dir.join(c.manifest_file()).exists();
                    let pos = running.iter().position(|(r, _)| r == c);
                    match (present, pos) {
                        (true, None) => {
                            l.lock()
                                .unwrap()
                                .push((Instant::now(), format!("pod started {c}")));
                            let child = (!broken.contains(c)).then(|| spawn_component(*port));
                            if let Some(rt) = &runtime {
                                let uid = manifest_uid(&dir.join(c.manifest_file()));
                                let state = if child.is_some() {
                                    ContainerRunState::Running
                                } else {
                                    ContainerRunState::Exited
                                };
                                rt.update(|cs| cs.push(container(c, &uid, state)));
                            }
                            running.push((*c, child));
                        }
                        (false, Some(i)) => {
                            let (_, child) = running.remove(i);
                            if let Some(mut ch) = child {
                                let _ = ch.kill();
                                let _ = ch.wait();
                            }
                            if let Some(rt) = &runtime {
                                rt.update(|cs| {
                                    for x in cs.iter_mut().filter(|x| x.name == c.name()) {
                                        x.state = ContainerRunState::Exited;
                                    }
                                });
                            }
                            l.lock()
                                .unwrap()
                                .push((Instant::now(), format!("pod stopped {c}")));
                        }
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for (_, child) in running {
                if let Some(mut ch) = child {
                    let _ = ch.kill();
                    let _ = ch.wait();
                }
            }
        });
        FakeKubelet {
            stop,
            log,
            thread: Some(thread),
        }
    }
}

/// The `metadata.uid` of a manifest file (empty when unreadable).
fn manifest_uid(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_saphyr::from_str::<Pod>(&text)
        .ok()
        .and_then(|p| p.metadata.uid)
        .unwrap_or_default()
}

fn container(c: &Component, uid: &str, state: ContainerRunState) -> ContainerSeen {
    let now = SystemTime::now();
    ContainerSeen {
        id: format!("{uid}-{}", c.name()),
        name: c.name().to_string(),
        pod_uid: uid.to_string(),
        state,
        created_at: now,
        started_at: (state == ContainerRunState::Running).then_some(now),
        exit_code: (state == ContainerRunState::Exited).then_some(1),
        attempt: 0,
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Node {
    _tmp: tempfile::TempDir,
    manifests: PathBuf,
    state: PathBuf,
}

fn node() -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&manifests).unwrap();
    Node {
        manifests,
        state,
        _tmp: tmp,
    }
}

/// A config managing kube-controller-manager and kube-scheduler on the given ports.
fn config(kcm_port: u16, sched_port: u16, timeout_s: u32) -> kubeplane::api::ControlPlaneConfig {
    let text = format!(
        r#"apiVersion: kubeplane.io/v1alpha1
kind: ControlPlaneConfig
metadata: {{name: t}}
spec:
  kubernetesVersion: v1.36.2
  apiServer: {{managed: false}}
  controllerManager:
    extraArgs: [{{name: secure-port, value: "{kcm_port}"}}]
  scheduler:
    extraArgs: [{{name: secure-port, value: "{sched_port}"}}]
  rollout:
    minReadySeconds: 1
    healthTimeoutSeconds: {{controllerManager: {timeout_s}, scheduler: {timeout_s}}}
"#
    );
    parse_config(&text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn unit(c: Component, port: u16) -> UnitInfo {
    let args = vec![
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".to_string(),
    ];
    UnitInfo {
        component: c,
        name: format!("{}.service", c.name()),
        path: format!("/etc/systemd/system/{}.service", c.name()),
        text: format!(
            "[Service]\nExecStart=/usr/local/bin/{} {}\n",
            c.name(),
            args.join(" ")
        ),
        argv: args.clone(),
        env_files: [(
            "/etc/kubernetes/x.conf".to_string(),
            Some("ARGS=\"--v=2\"\n".to_string()),
        )]
        .into(),
        endpoint: unit_endpoint(c, &args),
    }
}

fn facts(n: &Node) -> NodeFacts {
    NodeFacts {
        node_name: "cp-1".into(),
        manifest_dir: Some(n.manifests.display().to_string()),
        state_dir: Some(n.state.display().to_string()),
        ..Default::default()
    }
}

fn services(units: &[(Component, u16)]) -> ProcessServices {
    let s = ProcessServices::new();
    for (c, port) in units {
        s.add(
            &format!("{}.service", c.name()),
            component_command(),
            vec![("FAKE_COMPONENT_PORT".into(), port.to_string())],
        );
        s.start(&format!("{}.service", c.name())).unwrap();
    }
    s
}

fn timing() -> Timing {
    Timing {
        stop_timeout: Duration::from_secs(10),
        poll: Duration::from_millis(100),
    }
}

async fn wait_up(port: u16) {
    let ep = unit_endpoint(Component::Scheduler, &[format!("--secure-port={port}")]);
    for _ in 0..100 {
        if PlainCheck.check(&ep).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("port {port} never answered");
}

/// Events of the service manager and the kubelet, in time order.
fn events(s: &ProcessServices, k: &FakeKubelet) -> Vec<String> {
    let mut all = s.log();
    all.extend(k.log.lock().unwrap().iter().cloned());
    all.sort_by_key(|(t, _)| *t);
    all.into_iter()
        .map(|(_, e)| e)
        .filter(|e| !e.starts_with("start "))
        .collect()
}

fn record(n: &Node, c: Component) -> serde_json::Value {
    let path = n.state.join("migrate").join(format!("{}.json", c.name()));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

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
    // Once the unit is stopped, the staging directory becomes a file: the write fails.
    let staging = n.state.join("staging");
    s.after_stop(Box::new(move |_| {
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::write(&staging, "not a directory");
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
    assert!(!n.manifests.join("kube-scheduler.yaml").exists());
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
