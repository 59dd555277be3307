//! The test kit's fake Kubernetes API server, the only one: in memory, JSON only, no
//! authentication, no admission, no real server-side apply field ownership. It serves what
//! `kubeplane operator` and `kubeplane agent` ask for: get/list/watch (with label and field
//! selectors, resource versions, metadata-only `PartialObjectMetadata` responses), create, merge
//! and apply patches (spec changes bump `metadata.generation`, the `status` subresource does
//! not, and a status write to a missing object is `404`), and delete. It records every request
//! (method, path with query, JSON body, status code, tokio time: virtual in a paused test). A
//! simulated agent answers every new `ControlPlaneNode` revision the operator writes: `Pending`,
//! then `Healthy` after `agent_delay`. [`Fake::go_down`] and [`Fake::come_back`] play an API
//! server restart: requests fail with 503 meanwhile, open watches end, and a watch resumed from
//! a resource version older than the restart gets `410 Expired` (`too old resource version`),
//! as from a real API server whose watch cache started anew.
//!
//! Served over HTTP ([`Fake::serve`]: the operator benchmark and `tests/operator_process.rs`
//! run a real operator process against it, the agent idle benchmark a real agent process), or
//! handed to a `kube::Client` in-process ([`Fake::client`]: the agent's unit tests, through
//! [`super::cluster`], in virtual time).

mod handler;
mod request;
mod seed;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::watch as signal;

use self::request::kind_of;
pub use self::seed::{complete, kubeconfig, seed};

/// Key of a stored object: resource (plural), namespace (empty for cluster-scoped), name.
type Key = (String, String, String);

/// One change of the store, as a watch reports it.
struct Logged {
    rv: u64,
    resource: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// A write the bench wants to time.
#[derive(Clone, Debug)]
pub struct CpnWrite {
    /// When the server received it.
    pub at: Instant,
    /// The node.
    pub node: String,
    /// `spec.revision` written.
    pub revision: String,
}

/// One request the server received.
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
    /// When, from the server's creation (tokio time: virtual in a paused test).
    pub at: Duration,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Logged>,
    cpn_writes: Vec<CpnWrite>,
    /// Every request, in order.
    requests: Vec<Recorded>,
    /// Every `ControlPlaneNode` status write: when, node, phase.
    phases: Vec<(Instant, String, String)>,
    /// Field manager owning each Lease's `spec.holderIdentity`, for apply conflicts.
    holder_managers: BTreeMap<Key, String>,
    /// While `true`, every request is answered 503 (an API server restarting).
    down: bool,
    /// Bumped by every restart; open watches of an older epoch end.
    epoch: u64,
    /// Watches resumed from a resource version below this get 410 Expired.
    oldest_watchable: u64,
}

/// The fake API server's state.
pub struct Fake {
    inner: Mutex<Inner>,
    changed: signal::Sender<u64>,
    agent_delay: Duration,
    start: tokio::time::Instant,
}

/// Now, on tokio's clock (virtual in a paused test, else the wall clock).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Fake {
    /// An empty server; the simulated agent waits `agent_delay` between `Pending` and `Healthy`.
    pub fn new(agent_delay: Duration) -> Arc<Self> {
        let (changed, _) = signal::channel(0);
        Arc::new(Fake {
            inner: Mutex::new(Inner::default()),
            changed,
            agent_delay,
            start: tokio::time::Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an object (as a creation or an update) and logs an event. The server sets
    /// `metadata.uid`, `creationTimestamp`, `resourceVersion` and, for kubeplane's resources,
    /// `generation` (bumped when `spec` changes).
    pub fn put(&self, resource: &str, namespace: &str, obj: Value) -> Value {
        self.store(resource, namespace, obj, false)
    }

    /// Stores an object as a test's fixture gives it: a `metadata.uid` and
    /// `metadata.generation` set in `obj` are kept.
    pub fn put_as_given(&self, resource: &str, namespace: &str, obj: Value) -> Value {
        self.store(resource, namespace, obj, true)
    }

    fn store(&self, resource: &str, namespace: &str, mut obj: Value, as_given: bool) -> Value {
        let given = as_given.then(|| {
            (
                obj["metadata"]["uid"].clone(),
                obj["metadata"]["generation"].clone(),
            )
        });
        let mut inner = self.lock();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (resource.to_string(), namespace.to_string(), name);
        let (api_version, kind) = kind_of(resource);
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        let existing = inner.objects.get(&key).cloned();
        inner.rv += 1;
        let rv = inner.rv;
        match &existing {
            Some(old) => {
                obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if old.get("spec") != obj.get("spec") {
                    generation += 1;
                }
                if resource.starts_with("controlplane") {
                    obj["metadata"]["generation"] = json!(generation);
                }
            }
            None => {
                inner.uid += 1;
                obj["metadata"]["uid"] =
                    json!(format!("00000000-0000-4000-8000-{:012}", inner.uid));
                obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                if resource.starts_with("controlplane") {
                    obj["metadata"]["generation"] = json!(1);
                }
            }
        }
        if let Some((uid, generation)) = given {
            for (field, value) in [("uid", uid), ("generation", generation)] {
                if !value.is_null() {
                    obj["metadata"][field] = value;
                }
            }
        }
        if !namespace.is_empty() {
            obj["metadata"]["namespace"] = json!(namespace);
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.objects.insert(key, obj.clone());
        let kind = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.logged(inner, resource, namespace, kind, obj.clone());
        obj
    }

    /// Logs a change of the store at the current resource version and wakes the watches.
    fn logged(
        &self,
        mut inner: std::sync::MutexGuard<'_, Inner>,
        resource: &str,
        namespace: &str,
        kind: &'static str,
        object: Value,
    ) {
        let rv = inner.rv;
        inner.log.push(Logged {
            rv,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            kind,
            object,
        });
        drop(inner);
        self.changed.send_replace(rv);
    }

    /// The stored object, if any.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every stored object of `resource` in `namespace` (empty: cluster-scoped), by name.
    pub fn objects(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((r, ns, _), _)| r == resource && ns == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Deletes an object (a `DELETED` watch event); the object, if there was one.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut inner = self.lock();
        let obj = inner
            .objects
            .remove(&(resource.into(), namespace.into(), name.into()))?;
        inner.rv += 1;
        self.logged(inner, resource, namespace, "DELETED", obj.clone());
        Some(obj)
    }

    /// Every `ControlPlaneNode` write with a non-empty revision so far.
    pub fn cpn_writes(&self) -> Vec<CpnWrite> {
        self.lock().cpn_writes.clone()
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests.len() as u64
    }

    /// Every request so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Every `ControlPlaneNode` status write so far: when, node, `status.phase`.
    pub fn phases(&self) -> Vec<(Instant, String, String)> {
        self.lock().phases.clone()
    }

    /// The API server goes down (restarts): open watches end, requests get 503 until
    /// [`Fake::come_back`].
    pub fn go_down(&self) {
        let mut inner = self.lock();
        inner.down = true;
        inner.epoch += 1;
        inner.oldest_watchable = inner.rv + 1;
        let rv = inner.rv;
        drop(inner);
        self.changed.send_replace(rv);
    }

    /// The API server is back, with a fresh watch cache: watches resumed from before the
    /// restart get 410 Expired.
    pub fn come_back(&self) {
        self.lock().down = false;
    }

    /// The server as an HTTP service: every request goes to the one handler.
    fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .fallback(
                |State(f): State<Arc<Fake>>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| { f.handle(method, uri, headers, body) },
            )
            .with_state(self.clone())
    }

    /// A kube client talking to this server in-process (no socket): requests and watches go
    /// through the same handler as over HTTP, on the caller's runtime and clock.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// Serves on 127.0.0.1 (a free port); returns the address.
    pub async fn serve(self: &Arc<Self>) -> SocketAddr {
        self.serve_at("127.0.0.1:0".parse().expect("address")).await
    }

    /// Serves on `addr`; returns the address.
    pub async fn serve_at(self: &Arc<Self>, addr: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = self.router();
        // TCP_NODELAY, as a Go API server sets it: with Nagle on, a watch event written while
        // the previous one is not yet acknowledged waits for the client's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake API server");
        });
        addr
    }
}
