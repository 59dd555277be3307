//! `migrate`'s sequencing and way back, with a service manager that really starts and stops
//! processes ([`ProcessServices`]) and a stand-in kubelet that runs a Pod's process while its
//! manifest is in the directory. The "components" are this test binary run as
//! `fake_component`: a plain HTTP server answering 200 on its port.

mod common;
#[path = "migrate/refusals.rs"]
mod refusals;
#[path = "migrate/sequencing.rs"]
mod sequencing;

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
