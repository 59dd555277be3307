//! Test fixtures: the test kit's API server as one node sees it ([`crate::testkit::cluster`])
//! with a fake kubelet behind it that reads the real manifest directory of a test and moves
//! mirror pods accordingly, and the container runtime and endpoint health that kubelet gives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::health::{Endpoint, HealthCheck};
use super::runtime::{ContainerRunState, ContainerRuntime, ContainerSeen};
use crate::api::Component;
use crate::render::sha256_hex;
pub use crate::testkit::cluster::{Cluster, FakePod};

/// What the fake kubelet does with a manifest it finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behaviour {
    /// kubelet starts it (else the old pod keeps running: "hash never changed").
    pub picks_up: bool,
    /// The mirror pod becomes Ready.
    pub ready: bool,
    /// Restart count shown.
    pub restart_count: i32,
    /// Last termination shown.
    pub last_terminated: Option<(String, i32)>,
    /// The local endpoint answers.
    pub endpoint_ok: bool,
}

impl Behaviour {
    /// Starts, Ready, endpoint healthy.
    pub fn healthy() -> Self {
        Behaviour {
            picks_up: true,
            ready: true,
            restart_count: 0,
            last_terminated: None,
            endpoint_ok: true,
        }
    }

    /// Starts and crash-loops.
    pub fn crashing() -> Self {
        Behaviour {
            picks_up: true,
            ready: false,
            restart_count: 5,
            last_terminated: Some(("Error".into(), 1)),
            endpoint_ok: false,
        }
    }

    /// Never picked up.
    pub fn ignored() -> Self {
        Behaviour {
            picks_up: false,
            ..Behaviour::healthy()
        }
    }
}

type BehaviourFn = Box<dyn Fn(Component, &str) -> Behaviour + Send + Sync>;

#[derive(Clone, Debug)]
struct Running {
    hash: String,
    endpoint_ok: bool,
    endpoint_from: Instant,
    /// When the container was created (wall clock, as a runtime reports it).
    created: std::time::SystemTime,
    /// The container exited (exit code), for a crashing behaviour.
    exited: Option<i32>,
}

/// A fake kubelet: every (virtual) second it reads the test's manifest directory and, for a
/// manifest whose hash (its `metadata.uid`, else a content hash) differs from the running
/// one, asks its behaviour what happens, and after `pickup_delay` shows the new mirror pod.
pub struct Kubelet {
    cluster: Arc<Cluster>,
    dir: PathBuf,
    node: String,
    behaviour: Mutex<BehaviourFn>,
    running: Mutex<BTreeMap<Component, Running>>,
    first_seen: Mutex<BTreeMap<(Component, String), Instant>>,
    /// Delay between a file change and the new mirror pod.
    pub pickup_delay: Duration,
    /// When kube-apiserver is restarted: how long the API is down.
    pub apiserver_outage: Mutex<Option<Duration>>,
    /// When kube-apiserver is restarted: how long its endpoint fails after the restart.
    pub apiserver_warmup: Duration,
    /// The container runtime does not answer ([`FakeRuntime`]).
    pub runtime_down: Mutex<bool>,
}

impl Kubelet {
    /// A kubelet for `node` over `dir`, everything healthy.
    pub fn new(cluster: Arc<Cluster>, dir: PathBuf, node: &str) -> Arc<Kubelet> {
        Arc::new(Kubelet {
            cluster,
            dir,
            node: node.to_string(),
            behaviour: Mutex::new(Box::new(|_, _| Behaviour::healthy())),
            running: Mutex::new(BTreeMap::new()),
            first_seen: Mutex::new(BTreeMap::new()),
            pickup_delay: Duration::from_secs(3),
            apiserver_outage: Mutex::new(None),
            apiserver_warmup: Duration::from_secs(6),
            runtime_down: Mutex::new(false),
        })
    }

    /// The pod of `hash` behaves as `b`; every other one is healthy.
    pub fn fail(&self, hash: String, b: Behaviour) {
        self.behave(move |_, h| {
            if h == hash {
                b.clone()
            } else {
                Behaviour::healthy()
            }
        });
    }

    /// Replaces the behaviour.
    pub fn behave(&self, f: impl Fn(Component, &str) -> Behaviour + Send + Sync + 'static) {
        *self.behaviour.lock().unwrap() = Box::new(f);
    }

    /// The hash kubelet uses for a manifest: its uid, else a content hash.
    pub fn hash_of(bytes: &[u8]) -> String {
        let pod = super::files::parse_pod(bytes).ok();
        pod.and_then(|p| p.metadata.uid)
            .unwrap_or_else(|| format!("kubelet-{}", &sha256_hex(bytes)[..16]))
    }

    /// Runs the loop (spawn it).
    pub async fn run(self: Arc<Self>) {
        loop {
            self.sync();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One pass over the manifest directory.
    pub fn sync(&self) {
        let now = Instant::now();
        for c in Component::ALL {
            let name = c.mirror_pod_name(&self.node);
            let file = self.dir.join(c.manifest_file());
            let Ok(bytes) = std::fs::read(&file) else {
                if self.running.lock().unwrap().remove(&c).is_some() {
                    self.cluster.set_pod(&name, None);
                }
                continue;
            };
            let hash = Kubelet::hash_of(&bytes);
            let current = self.running.lock().unwrap().get(&c).map(|r| r.hash.clone());
            if current.as_deref() == Some(hash.as_str()) {
                continue;
            }
            let b = (self.behaviour.lock().unwrap())(c, &hash);
            if !b.picks_up {
                continue;
            }
            let seen = *self
                .first_seen
                .lock()
                .unwrap()
                .entry((c, hash.clone()))
                .or_insert(now);
            if now - seen < self.pickup_delay {
                continue;
            }
            let mut endpoint_from = now;
            if c == Component::ApiServer && current.is_some() {
                endpoint_from = now + self.apiserver_warmup;
                if let Some(outage) = *self.apiserver_outage.lock().unwrap() {
                    self.cluster.set_api_down(true);
                    let cluster = self.cluster.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(outage).await;
                        cluster.set_api_down(false);
                    });
                }
            }
            self.running.lock().unwrap().insert(
                c,
                Running {
                    hash: hash.clone(),
                    endpoint_ok: b.endpoint_ok,
                    endpoint_from,
                    created: std::time::SystemTime::now(),
                    exited: (!b.ready)
                        .then(|| b.last_terminated.as_ref().map(|(_, code)| *code))
                        .flatten(),
                },
            );
            self.cluster.set_pod(
                &name,
                Some(FakePod {
                    hash,
                    ready: b.ready,
                    restart_count: b.restart_count,
                    last_terminated: b.last_terminated,
                }),
            );
        }
    }

    /// Whether a component's endpoint answers now.
    pub fn endpoint_ok(&self, c: Component) -> bool {
        self.running
            .lock()
            .unwrap()
            .get(&c)
            .is_some_and(|r| r.endpoint_ok && Instant::now() >= r.endpoint_from)
    }
}

/// The fake kubelet's containers as a container runtime reports them: one container per
/// running pod, labelled with the pod's uid (its hash).
pub struct FakeRuntime(pub Arc<Kubelet>);

impl ContainerRuntime for FakeRuntime {
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>> {
        Box::pin(async move {
            if *self.0.runtime_down.lock().unwrap() {
                return Err("unix:///run/containerd/containerd.sock: connection refused".into());
            }
            let running = self.0.running.lock().unwrap();
            Ok(running
                .iter()
                .filter(|(_, r)| r.hash == pod_uid)
                .map(|(c, r)| ContainerSeen {
                    id: format!("{}-{}", c.name(), &r.hash[..8.min(r.hash.len())]),
                    name: c.name().to_string(),
                    pod_uid: r.hash.clone(),
                    state: if r.exited.is_some() {
                        ContainerRunState::Exited
                    } else {
                        ContainerRunState::Running
                    },
                    created_at: r.created,
                    started_at: Some(r.created),
                    exit_code: r.exited,
                    attempt: 0,
                })
                .collect())
        })
    }
}

/// Endpoint health as the fake kubelet's pods give it, by port (6443, 10257, 10259).
pub struct FakeHealth(pub Arc<Kubelet>);

impl HealthCheck for FakeHealth {
    fn check<'a>(&'a self, ep: &'a Endpoint) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let c = match ep.port {
                6443 => Component::ApiServer,
                10257 => Component::ControllerManager,
                _ => Component::Scheduler,
            };
            if self.0.endpoint_ok(c) {
                Ok(())
            } else {
                Err("connect: Connection refused (os error 111)".into())
            }
        })
    }
}
