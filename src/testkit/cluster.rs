//! The agent's side of the mocked API: an in-memory cluster as one node's agent sees it,
//! behind a [`mock::pair`] client — the node's mirror pods in `kube-system` (list and streaming
//! watch), its `ControlPlaneNode` (list, watch, deletion), Secrets, `ControlPlaneNode/status`
//! apply patches and Events. It records every request (method, path with query, JSON body,
//! status code, virtual time) and can play an API outage (503 for everything, open watches
//! dropped). The fake kubelet that moves the mirror pods is `agent::fixtures::Kubelet`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use http::{Request, Response};
use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::mock;

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

/// A watch response: `200`, then the events of `s` as they come.
fn streaming(s: BoxStream<'static, Result<Frame<Bytes>, Infallible>>) -> Response<MockBody> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(s))
        .unwrap()
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

fn query_value(query: &str, key: &str) -> Option<String> {
    mock::query(query).remove(key)
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
        let (client, mut handle) = mock::pair::<MockBody>();
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
        client
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
            "metadata": {"name": name, "namespace": crate::render::defaults::NAMESPACE, "resourceVersion": rv.to_string(),
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
                mock::status(503, "ServiceUnavailable", "apiserver is restarting"),
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
                    Some(data) => (200, mock::secret(&ns, &name, &data)),
                    None => (404, mock::status(404, "NotFound", "secret not found")),
                }
            }
            _ => (
                404,
                mock::status(
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
        streaming(s.boxed())
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
        streaming(s.boxed())
    }
}
