//! The test kit's fake Kubernetes API server: in memory, plain HTTP, JSON only, no
//! authentication, no admission, no real server-side apply field ownership. It serves what
//! `kubeplane operator` and `kubeplane agent` ask for: get/list/watch (with label and field
//! selectors, resource versions, metadata-only `PartialObjectMetadata` responses), create, merge
//! and apply patches (spec changes bump `metadata.generation`, the `status` subresource does
//! not), and delete. A simulated agent answers every new `ControlPlaneNode` revision the
//! operator writes: `Pending`, then `Healthy` after `agent_delay`. [`Fake::go_down`] and
//! [`Fake::come_back`] play an API server restart: requests fail with 503 meanwhile, open
//! watches end, and a watch resumed from a resource version older than the restart gets
//! `410 Expired` (`too old resource version`), as from a real API server whose watch cache
//! started anew.
//!
//! Used by the operator benchmark and `tests/operator_process.rs` (a real operator process
//! against it), and by the agent idle benchmark (a real agent process).

mod request;
mod seed;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use self::request::{
    Target, fields_match, kind_of, labels_match, merge, metadata_only, parse_path,
};
pub use self::seed::{complete, kubeconfig, seed};
use super::mock;

/// Key of a stored object: resource (plural), namespace (empty for cluster-scoped), name.
type Key = (String, String, String);

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

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Logged>,
    cpn_writes: Vec<CpnWrite>,
    requests: u64,
    /// Every request: when, and `METHOD path?query`.
    request_log: Vec<(Instant, String)>,
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
    changed: watch::Sender<u64>,
    agent_delay: Duration,
}

fn status_error(code: u16, reason: &str, message: &str) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &mock::status(code, reason, message),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl Fake {
    /// An empty server; the simulated agent waits `agent_delay` between `Pending` and `Healthy`.
    pub fn new(agent_delay: Duration) -> Arc<Self> {
        let (changed, _) = watch::channel(0);
        Arc::new(Fake {
            inner: Mutex::new(Inner::default()),
            changed,
            agent_delay,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an object (as a creation) and logs an event.
    pub fn put(&self, resource: &str, namespace: &str, mut obj: Value) -> Value {
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
        if !namespace.is_empty() {
            obj["metadata"]["namespace"] = json!(namespace);
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.objects.insert(key, obj.clone());
        inner.log.push(Logged {
            rv,
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            kind: if existing.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            object: obj.clone(),
        });
        drop(inner);
        self.changed.send_replace(rv);
        obj
    }

    /// The stored object, if any.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every `ControlPlaneNode` write with a non-empty revision so far.
    pub fn cpn_writes(&self) -> Vec<CpnWrite> {
        self.lock().cpn_writes.clone()
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Every request so far: when, and `METHOD path?query`.
    pub fn request_log(&self) -> Vec<(Instant, String)> {
        self.lock().request_log.clone()
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

    fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut inner = self.lock();
        let obj = inner
            .objects
            .remove(&(resource.into(), namespace.into(), name.into()))?;
        inner.rv += 1;
        let rv = inner.rv;
        inner.log.push(Logged {
            rv,
            resource: resource.into(),
            namespace: namespace.into(),
            kind: "DELETED",
            object: obj.clone(),
        });
        drop(inner);
        self.changed.send_replace(rv);
        Some(obj)
    }

    fn list(&self, t: &Target, q: &BTreeMap<String, String>, meta: bool) -> Value {
        let inner = self.lock();
        let labels = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == t.resource && (t.namespace.is_empty() || *ns == t.namespace)
            })
            .filter(|(_, o)| labels_match(&labels, o) && fields_match(&fields, o))
            .map(|(_, o)| if meta { metadata_only(o) } else { o.clone() })
            .collect();
        let (api_version, kind) = kind_of(&t.resource);
        let (api_version, kind) = if meta {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
            )
        } else {
            (api_version.to_string(), format!("{kind}List"))
        };
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items})
    }

    fn watch(self: Arc<Self>, t: Target, q: BTreeMap<String, String>, meta: bool) -> Response {
        let since: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (epoch, oldest) = {
            let inner = self.lock();
            (inner.epoch, inner.oldest_watchable)
        };
        if since != 0 && since < oldest {
            // As a real API server: 200, then one ERROR event, then the end of the stream.
            let line = format!(
                "{}\n",
                json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {since} ({oldest})")}})
            );
            return (StatusCode::OK, [("content-type", "application/json")], line).into_response();
        }
        let labels = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let rx = self.changed.subscribe();
        let state = (
            self,
            t,
            labels,
            fields,
            since,
            VecDeque::<String>::new(),
            rx,
        );
        let stream = futures::stream::unfold(
            state,
            move |(fake, t, labels, fields, mut since, mut queue, mut rx)| async move {
                loop {
                    if let Some(line) = queue.pop_front() {
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(line)),
                            (fake, t, labels, fields, since, queue, rx),
                        ));
                    }
                    {
                        let inner = fake.lock();
                        if inner.epoch != epoch {
                            return None; // the API server restarted: the connection is gone
                        }
                        let start = inner.log.partition_point(|e| e.rv <= since);
                        for e in &inner.log[start..] {
                            since = e.rv;
                            let here = e.resource == t.resource
                                && (t.namespace.is_empty() || e.namespace == t.namespace)
                                && labels_match(&labels, &e.object)
                                && fields_match(&fields, &e.object);
                            if here {
                                let obj = if meta {
                                    metadata_only(&e.object)
                                } else {
                                    e.object.clone()
                                };
                                queue.push_back(format!(
                                    "{}\n",
                                    json!({"type": e.kind, "object": obj})
                                ));
                            }
                        }
                    }
                    if queue.is_empty() && rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        );
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from_stream(stream),
        )
            .into_response()
    }

    /// Server-side apply ownership of a Lease's holder, as far as leader election needs it: an
    /// apply that changes a holder another manager set is a conflict (409); any write that sets
    /// or clears the holder takes or drops ownership.
    fn lease_ownership(
        &self,
        t: &Target,
        name: &str,
        old: &Value,
        body: &Value,
        apply: bool,
        manager: &str,
    ) -> Result<(), String> {
        let key = (t.resource.clone(), t.namespace.clone(), name.to_string());
        let Some(new_holder) = body["spec"].get("holderIdentity") else {
            return Ok(());
        };
        let mut inner = self.lock();
        let owner = inner.holder_managers.get(&key).cloned();
        let old_holder = &old["spec"]["holderIdentity"];
        if apply
            && !old_holder.is_null()
            && old_holder != new_holder
            && owner.as_deref().is_some_and(|o| o != manager)
        {
            return Err(format!(
                "Apply failed with 1 conflict: conflict with {owner:?}: .spec.holderIdentity"
            ));
        }
        if new_holder.is_null() {
            inner.holder_managers.remove(&key);
        } else {
            inner.holder_managers.insert(key, manager.to_string());
        }
        Ok(())
    }

    /// The simulated agent: takes a new revision up, then reports it healthy.
    fn agent(self: &Arc<Self>, node: String, revision: String) {
        let fake = self.clone();
        tokio::spawn(async move {
            fake.set_cpn_status(&node, &revision, "Pending");
            tokio::time::sleep(fake.agent_delay).await;
            fake.set_cpn_status(&node, &revision, "Healthy");
        });
    }

    fn set_cpn_status(&self, node: &str, revision: &str, phase: &str) {
        let Some(mut obj) = self.get("controlplanenodes", "", node) else {
            return;
        };
        if obj["spec"]["revision"] != revision {
            return; // the operator moved on
        }
        let healthy = phase == "Healthy";
        let status = &mut obj["status"];
        status["targetRevision"] = json!(revision);
        status["phase"] = json!(phase);
        status["phaseSince"] = json!("2026-01-01T00:00:00Z");
        if healthy {
            status["appliedRevision"] = json!(revision);
            status["lastKnownGoodRevision"] = json!(revision);
        }
        self.put("controlplanenodes", "", obj);
    }

    async fn handle(
        self: Arc<Self>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let down = {
            let mut inner = self.lock();
            inner.requests += 1;
            let line = match uri.query() {
                Some(q) => format!("{method} {}?{q}", uri.path()),
                None => format!("{method} {}", uri.path()),
            };
            inner.request_log.push((Instant::now(), line));
            inner.down
        };
        if down {
            return status_error(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            );
        }
        let Some(t) = parse_path(uri.path()) else {
            return status_error(404, "NotFound", &format!("no route {}", uri.path()));
        };
        let q = mock::query(uri.query().unwrap_or(""));
        let meta = headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return status_error(400, "BadRequest", &format!("body is not JSON: {e}"));
                }
            }
        };
        match (method, &t.name) {
            (Method::GET, None) => {
                if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    self.watch(t, q, meta)
                } else {
                    json_response(StatusCode::OK, &self.list(&t, &q, meta))
                }
            }
            (Method::GET, Some(name)) => match self.get(&t.resource, &t.namespace, name) {
                Some(o) if meta => json_response(StatusCode::OK, &metadata_only(&o)),
                Some(o) => json_response(StatusCode::OK, &o),
                None => status_error(404, "NotFound", &format!("{} {name} not found", t.resource)),
            },
            (Method::POST, None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.get(&t.resource, &t.namespace, &name).is_some() {
                    return status_error(
                        409,
                        "AlreadyExists",
                        &format!("{} {name} already exists", t.resource),
                    );
                }
                let stored = self.put(&t.resource, &t.namespace, body);
                json_response(StatusCode::CREATED, &stored)
            }
            (Method::PATCH, Some(name)) => {
                let ctype = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let apply = ctype.starts_with("application/apply-patch");
                let existing = self.get(&t.resource, &t.namespace, name);
                if existing.is_none() && !apply {
                    return status_error(
                        404,
                        "NotFound",
                        &format!("{} {name} not found", t.resource),
                    );
                }
                // A resourceVersion in the body is a precondition, as on a real API server.
                if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
                    && existing
                        .as_ref()
                        .is_none_or(|o| o["metadata"]["resourceVersion"] != rv)
                {
                    return status_error(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                            t.resource
                        ),
                    );
                }
                let mut obj = existing.unwrap_or_else(|| json!({"metadata": {"name": name}}));
                if t.resource == "leases" {
                    let manager = q.get("fieldManager").cloned().unwrap_or_default();
                    if let Err(conflict) =
                        self.lease_ownership(&t, name, &obj, &body, apply, &manager)
                    {
                        return status_error(409, "Conflict", &conflict);
                    }
                    merge(&mut obj, &body);
                } else if t.status {
                    // Server-side apply of status by one manager: its status replaces the old one.
                    obj["status"] = body["status"].clone();
                    if t.resource == "controlplanenodes"
                        && let Some(phase) = body["status"]["phase"].as_str()
                    {
                        let at = (Instant::now(), name.clone(), phase.to_string());
                        self.lock().phases.push(at);
                    }
                } else if apply {
                    // One manager owns metadata labels/ownerReferences and spec: replace them.
                    if let Some(m) = body.get("metadata") {
                        merge(&mut obj["metadata"], m);
                    }
                    if let Some(s) = body.get("spec") {
                        obj["spec"] = s.clone();
                    }
                } else {
                    merge(&mut obj, &body);
                }
                let stored = self.put(&t.resource, &t.namespace, obj);
                if t.resource == "controlplanenodes" && !t.status {
                    let revision = stored["spec"]["revision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if !revision.is_empty() && stored["status"]["targetRevision"] != revision {
                        self.lock().cpn_writes.push(CpnWrite {
                            at: Instant::now(),
                            node: name.clone(),
                            revision: revision.clone(),
                        });
                        self.agent(name.clone(), revision);
                    }
                }
                json_response(StatusCode::OK, &stored)
            }
            (Method::DELETE, Some(name)) => match self.delete(&t.resource, &t.namespace, name) {
                Some(o) => json_response(StatusCode::OK, &o),
                None => status_error(404, "NotFound", &format!("{} {name} not found", t.resource)),
            },
            (m, _) => status_error(405, "MethodNotAllowed", &format!("{m} {}", uri.path())),
        }
    }

    /// Serves on 127.0.0.1 (a free port); returns the address.
    pub async fn serve(self: &Arc<Self>) -> SocketAddr {
        self.serve_at("127.0.0.1:0".parse().expect("address")).await
    }

    /// Serves on `addr`; returns the address.
    pub async fn serve_at(self: &Arc<Self>, addr: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fake = self.clone();
        let app = Router::new().fallback(
            move |State(f): State<Arc<Fake>>,
                  method: Method,
                  uri: Uri,
                  headers: HeaderMap,
                  body: Bytes| { f.handle(method, uri, headers, body) },
        );
        let app = app.with_state(fake);
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
