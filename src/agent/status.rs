//! What the agent reports: the `ControlPlaneNode` status (server-side apply on the status
//! subresource, field manager `kubeplane-agent`) and Events (`kube::runtime::events`).
//!
//! The engine and the drift handler write into a [`StatusBoard`]; one reporter task sends it:
//! [`spawn_api_reporter`] to the API, retrying with exponential backoff (backon) while the
//! API is unavailable and always sending the newest status once it is back;
//! [`spawn_local_printer`] to a terminal for `kubeplane apply`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{ControlPlaneNode, ControlPlaneNodeStatus};

/// The agent's field manager for `ControlPlaneNode/status`.
pub const FIELD_MANAGER: &str = "kubeplane-agent";

/// An Event to publish about the node's `ControlPlaneNode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEvent {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// PascalCase reason (`Healthy`, `RolledBack`, `DriftRestored`, …).
    pub reason: String,
    /// PascalCase action (`Apply`, `Rollback`, `Heal`, `Restart`).
    pub action: String,
    /// What happened, in words a user can act on.
    pub note: String,
}

impl AgentEvent {
    /// A `Normal` event.
    pub fn normal(reason: &str, action: &str, note: impl Into<String>) -> Self {
        AgentEvent {
            warning: false,
            reason: reason.into(),
            action: action.into(),
            note: note.into(),
        }
    }

    /// A `Warning` event.
    pub fn warning(reason: &str, action: &str, note: impl Into<String>) -> Self {
        AgentEvent {
            warning: true,
            ..AgentEvent::normal(reason, action, note)
        }
    }
}

struct Inner {
    status: Mutex<ControlPlaneNodeStatus>,
    version: watch::Sender<u64>,
    acked: watch::Sender<u64>,
    events_queued: watch::Sender<u64>,
    events_done: watch::Sender<u64>,
    events_tx: mpsc::UnboundedSender<AgentEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<AgentEvent>>>,
    object: Mutex<Option<ObjectReference>>,
    /// Events queued since start, per (reason, type): the agent's `events_total` metric.
    event_counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// The status and events the agent wants reported; cheap to clone, shared by the engine, the
/// drift handler and the reporter task.
#[derive(Clone)]
pub struct StatusBoard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusBoard {
    /// An empty board.
    pub fn new() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        StatusBoard {
            inner: Arc::new(Inner {
                status: Mutex::new(ControlPlaneNodeStatus::default()),
                version: watch::Sender::new(0),
                acked: watch::Sender::new(0),
                events_queued: watch::Sender::new(0),
                events_done: watch::Sender::new(0),
                events_tx,
                events_rx: Mutex::new(Some(events_rx)),
                object: Mutex::new(None),
                event_counts: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Changes the status; the reporter sends it if it changed.
    pub fn update(&self, f: impl FnOnce(&mut ControlPlaneNodeStatus)) {
        let mut s = lock(&self.inner.status);
        let before = s.clone();
        f(&mut s);
        if *s != before {
            drop(s);
            self.inner.version.send_modify(|v| *v += 1);
        }
    }

    /// Carries over what a restarted agent cannot recompute at once from the status already
    /// on the object: per-component observations and the drift and quarantine records. Only
    /// fills what the board does not have yet.
    pub fn seed(&self, previous: &ControlPlaneNodeStatus) {
        self.update(|s| {
            if s.components.is_empty() {
                s.components = previous.components.clone();
            }
            if s.drift.is_empty() {
                s.drift = previous.drift.clone();
            }
            if s.quarantined.is_empty() {
                s.quarantined = previous.quarantined.clone();
            }
        });
    }

    /// The status as it is now.
    pub fn snapshot(&self) -> ControlPlaneNodeStatus {
        lock(&self.inner.status).clone()
    }

    fn versioned(&self) -> (u64, ControlPlaneNodeStatus) {
        let s = lock(&self.inner.status);
        (*self.inner.version.borrow(), s.clone())
    }

    /// Queues an Event.
    pub fn event(&self, ev: AgentEvent) {
        tracing::info!(reason = %ev.reason, warning = ev.warning, "{}", ev.note);
        let kind = if ev.warning { "Warning" } else { "Normal" };
        *lock(&self.inner.event_counts)
            .entry((ev.reason.clone(), kind))
            .or_default() += 1;
        self.inner.events_queued.send_modify(|v| *v += 1);
        let _ = self.inner.events_tx.send(ev);
    }

    /// How many Events were queued since start, per reason and type (`Normal`/`Warning`),
    /// sorted.
    pub fn event_counts(&self) -> Vec<(String, &'static str, u64)> {
        lock(&self.inner.event_counts)
            .iter()
            .map(|((reason, kind), n)| (reason.clone(), *kind, *n))
            .collect()
    }

    /// Sets the object Events are about (the node's `ControlPlaneNode`). When it is a new
    /// object (first seen, or re-created: another uid), the status is sent again: a status
    /// the API refused because the object did not exist yet is only ever sent this way.
    pub fn set_object(&self, r: ObjectReference) {
        let new_object = {
            let mut o = lock(&self.inner.object);
            let new = o.as_ref().map(|x| &x.uid) != Some(&r.uid);
            *o = Some(r);
            new
        };
        if new_object {
            self.inner.version.send_modify(|v| *v += 1);
        }
    }

    fn object(&self) -> Option<ObjectReference> {
        lock(&self.inner.object).clone()
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<AgentEvent>> {
        lock(&self.inner.events_rx).take()
    }

    /// Waits until the reporter has sent the current status and every queued Event, or the
    /// timeout passes. Returns whether everything was sent.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let target = *self.inner.version.borrow();
        let events = *self.inner.events_queued.borrow();
        let mut acked = self.inner.acked.subscribe();
        let mut done = self.inner.events_done.subscribe();
        tokio::time::timeout(timeout, async {
            let _ = acked.wait_for(|v| *v >= target).await;
            let _ = done.wait_for(|v| *v >= events).await;
        })
        .await
        .is_ok()
    }

    fn ack(&self, version: u64) {
        self.inner.acked.send_modify(|v| *v = (*v).max(version));
    }

    fn event_done(&self) {
        self.inner.events_done.send_modify(|v| *v += 1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The body of the status apply patch.
pub fn status_patch(status: &ControlPlaneNodeStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "kubeplane.io/v1alpha1",
        "kind": "ControlPlaneNode",
        "status": status,
    })
}

/// The longest wait between two attempts to reach the API: its return is noticed within
/// about this long (the API server may be this node's own, restarted by the agent).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times()
}

/// Sends the board to the API: every status change as a server-side apply patch on
/// `controlplanenodes/<node>/status` (field manager `kubeplane-agent`, forced), every Event
/// through a `Recorder`. Failures are retried with backoff until the API answers; a status
/// retry always sends the newest status.
pub fn spawn_api_reporter(board: StatusBoard, client: Client, node: String) -> JoinHandle<()> {
    let api: Api<ControlPlaneNode> = Api::all(client.clone());
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(node.clone()),
        },
    );
    let mut version = board.inner.version.subscribe();
    let mut events = board.take_events();
    let status_board = board.clone();
    // Status and Events are two loops of one task, polled concurrently: an Event being
    // retried never holds back the status the operator waits for.
    let status_loop = async move {
        let board = status_board;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        while version.changed().await.is_ok() {
            version.borrow_and_update();
            let sent = (|| async {
                let (v, status) = board.versioned();
                api.patch_status(&node, &params, &Patch::Apply(status_patch(&status)))
                    .await
                    .map(|_| v)
            })
            .retry(backoff())
            .sleep(tokio::time::sleep)
            // A missing object is not retried: it is sent when the object appears
            // (`StatusBoard::set_object`), not up to 30 s later, and an agent that
            // starts before its ControlPlaneNode exists does not warn every 30 s.
            .when(|e| !is_not_found(e))
            .notify(|e, d| {
                tracing::warn!(error = %e, retry_in = ?d, "status of ControlPlaneNode {node} not sent");
            })
            .await;
            match sent {
                Ok(v) => board.ack(v),
                Err(e) if is_not_found(&e) => tracing::debug!(
                    "ControlPlaneNode {node} does not exist yet; its status is sent once it does"
                ),
                Err(_) => {}
            }
        }
    };
    let event_loop = async move {
        while let Some(ev) = recv(&mut events).await {
            if let Some(reference) = board.object() {
                let event = Event {
                    type_: if ev.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: ev.reason.clone(),
                    note: Some(truncate_note(&ev.note)),
                    action: ev.action.clone(),
                    secondary: None,
                };
                // Retried while the API is away (an outage of a few minutes while this node's
                // API server restarts), so the story is told when it returns.
                let r = (|| async { recorder.publish(&event, &reference).await })
                    .retry(backoff().with_max_times(EVENT_RETRIES))
                    .sleep(tokio::time::sleep)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, reason = %ev.reason, "event not published");
                }
            }
            board.event_done();
        }
    };
    tokio::spawn(async move {
        tokio::join!(status_loop, event_loop);
    })
}

/// How often an Event is retried (every [`MAX_RETRY_DELAY`] once the backoff has grown: about
/// ten minutes of API outage).
const EVENT_RETRIES: usize = 300;

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<AgentEvent>>) -> Option<AgentEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Event notes are limited to 1 kB by the API.
fn truncate_note(s: &str) -> String {
    if s.len() <= 1000 {
        return s.to_string();
    }
    let mut end = 1000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Prints Events (`kubeplane apply` has no API): one line each, warnings marked.
pub fn spawn_local_printer(board: StatusBoard, mut out: Box<dyn Write + Send>) -> JoinHandle<()> {
    let mut version = board.inner.version.subscribe();
    let mut events = board.take_events();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = version.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let v = *version.borrow_and_update();
                    board.ack(v);
                }
                ev = recv(&mut events) => {
                    let Some(ev) = ev else { break };
                    let level = if ev.warning { "warning" } else { "info" };
                    let _ = writeln!(out, "{level}: {}: {}", ev.reason, ev.note);
                    let _ = out.flush();
                    board.event_done();
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::mock;

    #[test]
    fn seed_fills_only_what_is_missing() {
        let b = StatusBoard::new();
        b.update(|s| s.unmanaged = vec!["kube-vip.yaml".into()]);
        let previous = ControlPlaneNodeStatus {
            components: vec![crate::api::ComponentStatus {
                name: "kube-scheduler".into(),
                ..Default::default()
            }],
            unmanaged: vec!["old".into()],
            ..Default::default()
        };
        b.seed(&previous);
        let s = b.snapshot();
        assert_eq!(s.components.len(), 1);
        assert_eq!(s.unmanaged, vec!["kube-vip.yaml"]);
    }

    #[test]
    fn update_bumps_version_only_on_change() {
        let b = StatusBoard::new();
        b.update(|s| s.reason = Some("A".into()));
        assert_eq!(*b.inner.version.borrow(), 1);
        b.update(|s| s.reason = Some("A".into()));
        assert_eq!(*b.inner.version.borrow(), 1);
        assert_eq!(b.snapshot().reason.as_deref(), Some("A"));
    }

    #[tokio::test]
    async fn local_printer_prints_events_and_acknowledges() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let b = StatusBoard::new();
        let buf = Buf::default();
        spawn_local_printer(b.clone(), Box::new(buf.clone()));
        b.update(|s| s.reason = Some("X".into()));
        b.event(AgentEvent::warning(
            "RolledBack",
            "Rollback",
            "kube-scheduler failed",
        ));
        assert!(b.flush(Duration::from_secs(5)).await);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "warning: RolledBack: kube-scheduler failed\n");
    }

    fn respond(send: mock::Send, code: u16, body: serde_json::Value) {
        send.send_response(mock::json_response(code, &body));
    }

    /// The next status patch: asserts method, path and field manager; returns the status sent.
    async fn next_patch(handle: &mut mock::Handle) -> (serde_json::Value, mock::Send) {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::PATCH);
        assert_eq!(
            req.uri().path(),
            "/apis/kubeplane.io/v1alpha1/controlplanenodes/cp-1/status"
        );
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("fieldManager=kubeplane-agent"), "{query}");
        assert!(query.contains("force=true"), "{query}");
        let body = req.into_body().collect_bytes().await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["kind"], "ControlPlaneNode");
        (body["status"].clone(), send)
    }

    fn cpn_ref(uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("kubeplane.io/v1alpha1".into()),
            kind: Some("ControlPlaneNode".into()),
            name: Some("cp-1".into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    /// Found on a real cluster: an agent started before its ControlPlaneNode existed retried
    /// the status with backoff up to 30 s, warning each time, so the node facts reached the
    /// operator up to 30 s after the object appeared. Now a 404 is not retried, and a new
    /// object sends the status at once; other errors are still retried.
    #[tokio::test(start_paused = true)]
    async fn a_missing_object_is_not_retried_and_gets_the_status_when_it_appears() {
        let (client, mut handle) = mock::pair();
        let board = StatusBoard::new();
        let reporter = spawn_api_reporter(board.clone(), client, "cp-1".into());
        board.update(|s| s.reason = Some("NoManifests".into()));
        let (status, send) = next_patch(&mut handle).await;
        assert_eq!(status["reason"], "NoManifests");
        respond(
            send,
            404,
            mock::status(
                404,
                "NotFound",
                "controlplanenodes.kubeplane.io \"cp-1\" not found",
            ),
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(120), handle.next_request())
                .await
                .is_err(),
            "a missing object was retried"
        );
        assert!(
            !board.flush(Duration::from_millis(10)).await,
            "not acknowledged"
        );

        // The operator creates the object: the agent sees it, the status goes out now.
        board.set_object(cpn_ref("uid-1"));
        let (status, send) = next_patch(&mut handle).await;
        assert_eq!(status["reason"], "NoManifests");
        respond(
            send,
            503,
            serde_json::json!({"kind": "Status", "code": 503}),
        );
        // Other errors are retried, after the backoff.
        let (status, send) = next_patch(&mut handle).await;
        assert_eq!(status["reason"], "NoManifests");
        respond(
            send,
            200,
            serde_json::json!({"apiVersion": "kubeplane.io/v1alpha1", "kind": "ControlPlaneNode",
                "metadata": {"name": "cp-1", "uid": "uid-1"},
                "spec": {"configName": "c", "revision": ""}}),
        );
        assert!(board.flush(Duration::from_secs(5)).await);

        // The same object again sends nothing; a re-created one (new uid) does.
        board.set_object(cpn_ref("uid-1"));
        assert!(
            tokio::time::timeout(Duration::from_secs(60), handle.next_request())
                .await
                .is_err()
        );
        board.set_object(cpn_ref("uid-2"));
        let (status, _send) = next_patch(&mut handle).await;
        assert_eq!(status["reason"], "NoManifests");
        reporter.abort();
    }

    #[test]
    fn long_notes_are_cut_at_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate_note(&s);
        assert!(t.len() <= 1004);
        assert!(t.ends_with('…'));
    }
}
