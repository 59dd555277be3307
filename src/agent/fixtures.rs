//! Test fixtures: a mock API server (tower-test, the kube-rs way) with a fake kubelet behind
//! it that reads the real manifest directory of a test and moves mirror pods accordingly.
//!
//! The mock answers the requests the agent makes — mirror pod list/watch (streaming watch
//! bodies), `ControlPlaneNode/status` apply patches, Events, Secrets — records every request
//! (method, path with query, JSON body, status code), and can play an API outage (503 for
//! everything, open watches dropped).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use http::{Request, Response};
use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::health::{Endpoint, HealthCheck};
use super::runtime::{ContainerRunState, ContainerRuntime, ContainerSeen};
use crate::api::Component;
use crate::render::sha256_hex;

/// Body type of the mock's responses: a stream, so watches can stay open.
pub type MockBody = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// Status code answered.
    pub status: u16,
    /// Virtual time of the request, from the cluster's creation.
    pub at: Duration,
}

/// A mirror pod as the fake kubelet shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakePod {
    /// `kubernetes.io/config.hash`.
    pub hash: String,
    /// Ready condition.
    pub ready: bool,
    /// Container restarts.
    pub restart_count: i32,
    /// Last termination: reason and exit code.
    pub last_terminated: Option<(String, i32)>,
}

#[derive(Default)]
struct Inner {
    cpn: Option<Value>,
    pods: BTreeMap<String, FakePod>,
    api_down: bool,
    requests: Vec<Recorded>,
    secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    rv: u64,
}

/// The mock API server's state.
pub struct Cluster {
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
    start: Instant,
}

fn frame(v: &Value) -> Result<Frame<Bytes>, Infallible> {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Ok(Frame::data(Bytes::from(b)))
}

fn one(status: u16, v: Value) -> Response<MockBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(StreamBody::new(
            stream::once(async move { frame(&v) }).boxed(),
        ))
        .unwrap()
}

fn status_obj(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%3D", "=").replace("%2C", ","))
    })
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Arc<Cluster> {
        Arc::new(Cluster {
            inner: Mutex::new(Inner::default()),
            version: watch::Sender::new(0),
            start: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// A kube client talking to this cluster (spawns the mock server task).
    pub fn client(self: &Arc<Self>) -> Client {
        let (svc, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let resp = me.respond(req).await;
                    send.send_response(resp);
                });
            }
        });
        Client::new(svc, "default")
    }

    /// Sets (or removes) a mirror pod in kube-system.
    pub fn set_pod(&self, name: &str, pod: Option<FakePod>) {
        {
            let mut g = self.lock();
            g.rv += 1;
            match pod {
                Some(p) => g.pods.insert(name.to_string(), p),
                None => g.pods.remove(name),
            };
        }
        self.bump();
    }

    /// A mirror pod as shown now.
    pub fn pod(&self, name: &str) -> Option<FakePod> {
        self.lock().pods.get(name).cloned()
    }

    /// Sets the node's `ControlPlaneNode` (served by list and watch).
    pub fn set_cpn(&self, name: &str, generation: i64, spec: Value) {
        {
            let mut g = self.lock();
            g.rv += 1;
            let rv = g.rv.to_string();
            g.cpn = Some(json!({
                "apiVersion": "kubeplane.io/v1alpha1", "kind": "ControlPlaneNode",
                "metadata": {"name": name, "uid": "cpn-uid", "generation": generation,
                             "resourceVersion": rv},
                "spec": spec
            }));
        }
        self.bump();
    }

    /// Deletes the node's `ControlPlaneNode` (a `DELETED` watch event).
    pub fn delete_cpn(&self) {
        {
            let mut g = self.lock();
            g.rv += 1;
            g.cpn = None;
        }
        self.bump();
    }

    /// Starts or ends an API outage.
    pub fn set_api_down(&self, down: bool) {
        self.lock().api_down = down;
        self.bump();
    }

    /// Adds a Secret.
    pub fn set_secret(&self, ns: &str, name: &str, key: &str, value: &[u8]) {
        self.lock()
            .secrets
            .entry((ns.into(), name.into()))
            .or_default()
            .insert(key.into(), value.to_vec());
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Status patches the API accepted, in order.
    pub fn accepted_status_patches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.contains("/status") && r.status == 200)
            .collect()
    }

    /// Events the API accepted.
    pub fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.contains("/events") && r.status == 201)
            .filter_map(|r| r.body)
            .collect()
    }

    fn record(&self, method: &str, path: &str, body: Option<Value>, status: u16) {
        let at = Instant::now() - self.start;
        self.lock().requests.push(Recorded {
            method: method.into(),
            path: path.into(),
            body,
            status,
            at,
        });
    }

    fn pod_json(&self, name: &str, p: &FakePod, rv: u64) -> Value {
        let mut cs = json!({"name": "c", "image": "i", "imageID": "", "ready": p.ready,
                            "restartCount": p.restart_count, "state": {"running": {}}});
        if let Some((reason, code)) = &p.last_terminated {
            cs["lastState"] = json!({"terminated": {"exitCode": code, "reason": reason}});
            cs["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": rv.to_string(),
                         "annotations": {"kubernetes.io/config.hash": p.hash}},
            "status": {"conditions": [{"type": "Ready", "status": if p.ready {"True"} else {"False"}}],
                       "containerStatuses": [cs]}
        })
    }

    async fn respond(self: Arc<Self>, req: Request<kube::client::Body>) -> Response<MockBody> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let full = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        };
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if self.lock().api_down {
            self.record(&method, &full, body, 503);
            return one(
                503,
                status_obj(503, "ServiceUnavailable", "apiserver is restarting"),
            );
        }
        let (status, resp) = match (method.as_str(), path.as_str()) {
            ("GET", "/api/v1/namespaces/kube-system/pods") => {
                let name = query_value(&query, "fieldSelector")
                    .and_then(|f| f.strip_prefix("metadata.name=").map(str::to_string))
                    .unwrap_or_default();
                if query_value(&query, "watch").as_deref() == Some("true") {
                    self.record(&method, &full, body, 200);
                    return self.clone().watch_pods(name);
                }
                let (rv, pod) = {
                    let g = self.lock();
                    (g.rv, g.pods.get(&name).cloned())
                };
                let items: Vec<Value> = pod.iter().map(|p| self.pod_json(&name, p, rv)).collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList",
                           "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
                )
            }
            ("GET", "/apis/kubeplane.io/v1alpha1/controlplanenodes") => {
                if query_value(&query, "watch").as_deref() == Some("true") {
                    self.record(&method, &full, body, 200);
                    return self.clone().watch_cpn();
                }
                let g = self.lock();
                (
                    200,
                    json!({"apiVersion": "kubeplane.io/v1alpha1", "kind": "ControlPlaneNodeList",
                           "metadata": {"resourceVersion": g.rv.to_string()},
                           "items": g.cpn.iter().cloned().collect::<Vec<_>>()}),
                )
            }
            ("PATCH", p)
                if p.starts_with("/apis/kubeplane.io/v1alpha1/controlplanenodes/")
                    && p.ends_with("/status") =>
            {
                let name = p
                    .trim_start_matches("/apis/kubeplane.io/v1alpha1/controlplanenodes/")
                    .trim_end_matches("/status");
                let status = body
                    .as_ref()
                    .map(|b| b["status"].clone())
                    .unwrap_or_default();
                (
                    200,
                    json!({"apiVersion": "kubeplane.io/v1alpha1", "kind": "ControlPlaneNode",
                           "metadata": {"name": name, "uid": "cpn-uid"},
                           "spec": {"configName": "c", "revision": ""}, "status": status}),
                )
            }
            ("POST", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/") => {
                (201, body.clone().unwrap_or_default())
            }
            ("PATCH", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/") => {
                // The Recorder patches a repeated event's series.
                let name = p.rsplit('/').next().unwrap_or_default().to_string();
                (
                    200,
                    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                           "metadata": {"name": name, "namespace": "default"},
                           "eventTime": "2026-01-01T00:00:00.000000Z"}),
                )
            }
            ("GET", p) if p.contains("/secrets/") => {
                let parts: Vec<&str> = p.split('/').collect();
                // /api/v1/namespaces/<ns>/secrets/<name>
                let (ns, name) = (parts[4].to_string(), parts[6].to_string());
                let secret = self
                    .lock()
                    .secrets
                    .get(&(ns.clone(), name.clone()))
                    .cloned();
                match secret {
                    Some(data) => {
                        use base64::Engine as _;
                        let data: BTreeMap<String, String> = data
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    base64::engine::general_purpose::STANDARD.encode(v),
                                )
                            })
                            .collect();
                        (
                            200,
                            json!({"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": name, "namespace": ns}, "data": data}),
                        )
                    }
                    None => (404, status_obj(404, "NotFound", "secret not found")),
                }
            }
            _ => (
                404,
                status_obj(
                    404,
                    "NotFound",
                    &format!("mock: no route for {method} {full}"),
                ),
            ),
        };
        self.record(&method, &full, body, status);
        one(status, resp)
    }

    /// A watch on the `ControlPlaneNode`: every change, until an outage drops the connection.
    fn watch_cpn(self: Arc<Self>) -> Response<MockBody> {
        let rx = self.version.subscribe();
        let last = self.lock().cpn.clone();
        let s = stream::unfold((self, rx, last), |(me, mut rx, mut last)| async move {
            loop {
                let (down, cur) = {
                    let g = me.lock();
                    (g.api_down, g.cpn.clone())
                };
                if down {
                    return None;
                }
                if cur != last {
                    let gone = last.take();
                    last = cur.clone();
                    let ev = match (cur, gone) {
                        (Some(obj), _) => json!({"type": "MODIFIED", "object": obj}),
                        (None, Some(obj)) => json!({"type": "DELETED", "object": obj}),
                        (None, None) => continue,
                    };
                    return Some((frame(&ev), (me, rx, last)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(s.boxed()))
            .unwrap()
    }

    /// A watch on one mirror pod: the current state, then every change, until an outage
    /// drops the connection.
    fn watch_pods(self: Arc<Self>, name: String) -> Response<MockBody> {
        let rx = self.version.subscribe();
        let st = (self, name, rx, None::<Option<FakePod>>);
        let s = stream::unfold(st, |(me, name, mut rx, mut last)| async move {
            loop {
                let (down, rv, cur) = {
                    let g = me.lock();
                    (g.api_down, g.rv, g.pods.get(&name).cloned())
                };
                if down {
                    return None;
                }
                if last.as_ref() != Some(&cur) {
                    let ev = match (&cur, &last) {
                        (Some(p), _) => {
                            json!({"type": "MODIFIED", "object": me.pod_json(&name, p, rv)})
                        }
                        (None, Some(Some(p))) => {
                            json!({"type": "DELETED", "object": me.pod_json(&name, p, rv)})
                        }
                        (None, _) => {
                            last = Some(cur);
                            continue;
                        }
                    };
                    last = Some(cur);
                    return Some((frame(&ev), (me, name, rx, last)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(s.boxed()))
            .unwrap()
    }
}

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
