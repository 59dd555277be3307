//! Waiting for kubelet: a component is updated when its mirror pod
//! `kube-system/<name>-<lowercased node>` carries the expected `kubernetes.io/config.hash`,
//! is Ready, and its local endpoint answers, continuously for `minReadySeconds`.
//!
//! The decision is a small synchronous state machine, [`Tracker`], fed with observations and
//! the time; [`wait`] drives it from a stream of mirror pod observations ([`MirrorPods`],
//! kube-rs watcher in production), a polled [`HealthCheck`], and tokio time. While the API is
//! unavailable (this node's API server restarting), mirror pod state is *unknown*, not bad:
//! the endpoint alone carries the continuity, and the wait completes as soon as the API shows
//! the expected hash again.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, watcher::Event};
use kube::{Api, Client};
use tokio::time::Instant;

use super::health::{Endpoint, HealthCheck};
use super::runtime::{self, ContainerRuntime, RuntimeEvidence};
use super::state::FailureReason;
use crate::api::{Component, ComponentStatus};

mod mirror;
pub use mirror::*;

/// The annotation kubelet sets on a mirror pod: the manifest's `metadata.uid`, or a hash
/// kubelet computes when the manifest has none.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";

/// How often the local endpoint is checked while waiting (kubeadm's readiness probes use a
/// 1-second period too).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Environment variable that shortens [`POLL_INTERVAL`] (milliseconds, 10–1000): for the
/// crash campaign's thousands of waits against a fake kubelet, not for production.
pub const POLL_INTERVAL_ENV: &str = "KUBEPLANE_POLL_INTERVAL_MS";

fn poll_interval() -> Duration {
    std::env::var(POLL_INTERVAL_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(POLL_INTERVAL, |ms| {
            Duration::from_millis(ms.clamp(10, 1000))
        })
}

/// Which `kubernetes.io/config.hash` counts as updated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this hash (the manifest's `metadata.uid`).
    Hash(String),
    /// Any hash (an adopted manifest without a uid: kubelet computes its own, which is
    /// recorded once seen).
    Any,
    /// Any hash but this one (restoring a manifest without a uid after a revision with this
    /// hash failed).
    Not(String),
}

impl Expect {
    fn matches(&self, hash: Option<&str>) -> bool {
        match self {
            Expect::Hash(h) => hash == Some(h.as_str()),
            Expect::Any => hash.is_some(),
            Expect::Not(h) => hash.is_some_and(|x| x != h),
        }
    }

    /// The exact hash expected, if any.
    pub fn expected(&self) -> Option<String> {
        match self {
            Expect::Hash(h) => Some(h.clone()),
            _ => None,
        }
    }
}

/// What to wait for.
#[derive(Clone, Debug)]
pub struct WaitSpec {
    /// The component.
    pub component: Component,
    /// Name of its mirror pod in `kube-system`.
    pub pod_name: String,
    /// The hash to see.
    pub expect: Expect,
    /// Its local endpoint, if the Pod has an HTTP probe.
    pub endpoint: Option<Endpoint>,
    /// How long to wait before giving up.
    pub timeout: Duration,
    /// How long it must stay healthy.
    pub min_ready: Duration,
    /// Whether the mirror pod can be observed (false for `kubeplane apply`, which has no API).
    pub use_api: bool,
    /// When the file was written: a container counts as the new manifest's only if the
    /// runtime created it at or after this time.
    pub written_at: std::time::SystemTime,
}

/// Why a component was not updated in time: a PascalCase reason and a message that says what
/// was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// Why, as a reason of the wait's kind (`HashNeverChanged`, `ContainerExited`, …).
    pub reason: FailureReason,
    /// What was seen, in words.
    pub message: String,
}

/// The result of a wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Updated; the hash kubelet reports (for [`Expect::Any`], the one to remember).
    Updated {
        /// Observed `kubernetes.io/config.hash`, when the API showed it.
        observed_hash: Option<String>,
    },
    /// Not updated within the timeout.
    TimedOut(Diagnosis),
}

/// The wait's state machine: observations in, "updated yet?" out. No I/O, no clock of its
/// own.
#[derive(Clone, Debug)]
pub struct Tracker {
    spec: WaitSpec,
    pod: Option<MirrorPodState>,
    pod_missing: bool,
    /// Last API error, while the API is unavailable.
    api_error: Option<String>,
    api_down_since: Option<Instant>,
    /// The API outages seen during this wait, added up.
    api_outage: Duration,
    /// What the container runtime shows, or why it could not be asked; `None` when no
    /// runtime is asked (no runtime, or no uid to look for).
    runtime: Option<Result<RuntimeEvidence, String>>,
    endpoint: Option<Result<(), String>>,
    ok_since: Option<Instant>,
    expected_hash_seen: bool,
    ever_ready_with_hash: bool,
}

impl Tracker {
    /// A tracker for one wait.
    pub fn new(spec: WaitSpec) -> Self {
        Tracker {
            spec,
            pod: None,
            pod_missing: false,
            api_error: None,
            api_down_since: None,
            api_outage: Duration::ZERO,
            runtime: None,
            endpoint: None,
            ok_since: None,
            expected_hash_seen: false,
            ever_ready_with_hash: false,
        }
    }

    /// The wait's spec.
    pub fn spec(&self) -> &WaitSpec {
        &self.spec
    }

    /// Feeds a mirror pod observation.
    pub fn on_pod(&mut self, now: Instant, ev: PodEvent) {
        match ev {
            PodEvent::Seen(p) => {
                self.api_back(now);
                if self.spec.expect.matches(p.hash.as_deref()) {
                    self.expected_hash_seen = true;
                    if p.ready {
                        self.ever_ready_with_hash = true;
                    }
                }
                self.pod = Some(p);
                self.pod_missing = false;
            }
            PodEvent::Missing => {
                self.api_back(now);
                self.pod_missing = true;
            }
            PodEvent::ApiError(e) => {
                if self.api_down_since.is_none() {
                    self.api_down_since = Some(now);
                }
                self.api_error = Some(e);
            }
        }
        self.settle(now);
    }

    fn api_back(&mut self, now: Instant) {
        if let Some(since) = self.api_down_since.take() {
            self.api_outage += now - since;
        }
        self.api_error = None;
    }

    /// The API outages of this wait so far, the current one included.
    pub fn api_outage(&self, now: Instant) -> Duration {
        self.api_outage + self.api_down_since.map_or(Duration::ZERO, |s| now - s)
    }

    /// Feeds what the container runtime shows of the expected uid.
    pub fn on_runtime(&mut self, now: Instant, view: Result<RuntimeEvidence, String>) {
        self.runtime = Some(view);
        self.settle(now);
    }

    /// The pod criterion as the API shows it (`None`: unknown).
    fn api_verdict(&self) -> Option<bool> {
        if !self.spec.use_api || self.api_error.is_some() {
            return None;
        }
        if self.pod_missing {
            return Some(false);
        }
        let p = self.pod.as_ref()?;
        Some(self.spec.expect.matches(p.hash.as_deref()) && p.ready)
    }

    /// The pod criterion as the container runtime shows it (`None`: not asked or
    /// unreachable).
    fn runtime_verdict(&self) -> Option<bool> {
        match &self.runtime {
            Some(Ok(v)) => Some(v.running()),
            _ => None,
        }
    }

    /// Feeds an endpoint check result.
    pub fn on_endpoint(&mut self, now: Instant, result: Result<(), String>) {
        self.endpoint = Some(result);
        self.settle(now);
    }

    /// Whether the mirror pod criterion holds: `Some(true)` met, `Some(false)` not met,
    /// `None` unknown (not observed yet, or the API is unavailable).
    ///
    /// The API decides when it can be seen; while it cannot (this node's API server
    /// restarting, or `kubeplane apply`), the container runtime does: a container of the
    /// manifest's uid created after the write and running. Without either (no API and no
    /// runtime reachable), only the endpoint is left and the criterion counts as met.
    pub fn pod_ok(&self) -> Option<bool> {
        if let Some(v) = self.api_verdict() {
            return Some(v);
        }
        if let Some(v) = self.runtime_verdict() {
            return Some(v);
        }
        if !self.spec.use_api {
            return Some(true);
        }
        None
    }

    fn endpoint_ok(&self) -> bool {
        matches!(
            (&self.spec.endpoint, &self.endpoint),
            (None, _) | (Some(_), Some(Ok(())))
        )
    }

    /// Resets or starts the continuity clock: any negative evidence resets it; it starts once
    /// the endpoint answers and nothing speaks against the pod.
    fn settle(&mut self, now: Instant) {
        let negative = self.pod_ok() == Some(false)
            || matches!(
                (&self.spec.endpoint, &self.endpoint),
                (Some(_), Some(Err(_)))
            );
        if negative {
            self.ok_since = None;
        } else if self.endpoint_ok() && self.ok_since.is_none() {
            self.ok_since = Some(now);
        }
    }

    /// `Some(verdict)` once updated: the pod criterion met now, and no negative evidence for
    /// `min_ready`.
    pub fn updated(&self, now: Instant) -> Option<Verdict> {
        let since = self.ok_since?;
        if self.pod_ok() == Some(true) && self.endpoint_ok() && now - since >= self.spec.min_ready {
            Some(Verdict::Updated {
                observed_hash: self.pod.as_ref().and_then(|p| p.hash.clone()),
            })
        } else {
            None
        }
    }

    /// When the continuity clock, if running, reaches `min_ready`.
    pub fn ready_at(&self) -> Option<Instant> {
        self.ok_since.map(|s| s + self.spec.min_ready)
    }

    /// Why the component is not updated, from everything seen.
    pub fn diagnose(&self) -> Diagnosis {
        let pod_name = format!("kube-system/{}", self.spec.pod_name);
        let mut parts: Vec<String> = Vec::new();
        let mut reason: Option<FailureReason> = None;
        let runtime_view = match &self.runtime {
            Some(Ok(v)) => Some(v),
            _ => None,
        };
        let uid = self.spec.expect.expected();
        let swapped = matches!(
            runtime_view,
            Some(
                RuntimeEvidence::Running { .. }
                    | RuntimeEvidence::Exited { .. }
                    | RuntimeEvidence::Created { .. }
            )
        );
        if self.spec.use_api {
            if let Some(e) = &self.api_error {
                parts.push(format!(
                    "the API server is unavailable, so the mirror pod cannot be seen: {e}"
                ));
                reason.get_or_insert(FailureReason::ApiUnavailable);
            }
            let expected = self
                .spec
                .expect
                .expected()
                .map(|h| format!("expected {h}"))
                .unwrap_or_else(|| match &self.spec.expect {
                    Expect::Not(h) => format!("expected any hash but {h}"),
                    _ => "expected kubelet to report one".to_string(),
                });
            if self.api_error.is_some() {
                // The mirror pod cannot be seen: what the runtime and the endpoint show below
                // is the diagnosis, not the last mirror pod seen before the outage.
            } else if !self.expected_hash_seen && swapped {
                // kubelet did swap the pod (the runtime runs the new uid); the API just never
                // showed it, or showed it not Ready.
                parts.insert(
                    0,
                    format!(
                        "kubelet started the new manifest, but mirror pod {pod_name} never showed it Ready ({})",
                        self.pod.as_ref().map_or_else(
                            || "not seen".to_string(),
                            |p| format!(
                                "last seen with {CONFIG_HASH_ANNOTATION}={}",
                                p.hash.as_deref().unwrap_or("<none>")
                            )
                        )
                    ),
                );
                reason = Some(FailureReason::PodNotReady);
            } else if !self.expected_hash_seen {
                if self.pod_missing || (self.pod.is_none() && self.api_error.is_none()) {
                    parts.insert(
                        0,
                        format!(
                            "hash never changed: mirror pod {pod_name} not found ({expected}); kubelet has not started the manifest (check that it parses: journalctl -u kubelet)"
                        ),
                    );
                    reason = Some(FailureReason::MirrorPodMissing);
                } else if let Some(p) = &self.pod {
                    parts.insert(
                        0,
                        format!(
                            "hash never changed: mirror pod {pod_name} still shows {CONFIG_HASH_ANNOTATION}={} ({expected}); kubelet did not pick the new manifest up (check that it parses: journalctl -u kubelet)",
                            p.hash.as_deref().unwrap_or("<none>")
                        ),
                    );
                    reason = Some(FailureReason::HashNeverChanged);
                }
            } else if let Some(p) = self.pod.as_ref().filter(|p| !p.ready) {
                let mut s = format!(
                    "pod not Ready: mirror pod {pod_name} has the new hash but is not Ready"
                );
                if let Some(n) = p.restart_count {
                    s.push_str(&format!("; restartCount {n}"));
                }
                if let Some(l) = &p.last_state {
                    s.push_str(&format!("; last state {l}"));
                }
                parts.insert(0, s);
                reason = Some(FailureReason::PodNotReady);
            } else if self.pod_missing {
                parts.insert(
                    0,
                    format!("mirror pod {pod_name} disappeared after showing the new hash"),
                );
                reason = Some(FailureReason::MirrorPodMissing);
            }
        }
        match (&self.runtime, &uid) {
            (Some(Ok(v)), Some(uid)) => {
                parts.push(format!("pod uid {uid}: {}", v.describe()));
                match v {
                    RuntimeEvidence::NotCreated | RuntimeEvidence::OnlyBeforeWrite { .. }
                        if reason.is_none_or(|r| r == FailureReason::ApiUnavailable) =>
                    {
                        reason = Some(FailureReason::ContainerNotStarted);
                    }
                    RuntimeEvidence::Exited { .. }
                        if reason.is_none_or(|r| {
                            matches!(
                                r,
                                FailureReason::ApiUnavailable | FailureReason::PodNotReady
                            )
                        }) =>
                    {
                        reason = Some(FailureReason::ContainerExited);
                    }
                    _ => {}
                }
            }
            (Some(Err(e)), _) => {
                parts.push(format!("the container runtime could not be asked: {e}"))
            }
            _ => {}
        }
        if let Some(ep) = &self.spec.endpoint {
            match &self.endpoint {
                Some(Err(e)) => {
                    parts.push(format!("endpoint {} failing: {e}", ep.url()));
                    reason.get_or_insert(FailureReason::EndpointFailing);
                }
                None => {
                    parts.push(format!("endpoint {} never answered", ep.url()));
                    reason.get_or_insert(FailureReason::EndpointFailing);
                }
                Some(Ok(())) => {}
            }
        }
        // While the API is unavailable, local evidence says why, when there is any.
        if self.api_error.is_some()
            && let Some(v) = runtime_view
        {
            let endpoint_failing =
                self.spec.endpoint.is_some() && !matches!(self.endpoint, Some(Ok(())));
            reason = Some(match v {
                RuntimeEvidence::NotCreated | RuntimeEvidence::OnlyBeforeWrite { .. } => {
                    FailureReason::ContainerNotStarted
                }
                RuntimeEvidence::Exited { .. } => FailureReason::ContainerExited,
                _ if endpoint_failing => FailureReason::EndpointFailing,
                _ => FailureReason::NotStable,
            });
        }
        if parts.is_empty() {
            parts.push(format!(
                "healthy only intermittently, never for {}s in a row",
                self.spec.min_ready.as_secs()
            ));
            reason = Some(FailureReason::NotStable);
        }
        if self.api_outage > Duration::ZERO || self.api_down_since.is_some() {
            let now = Instant::now();
            parts.push(format!(
                "the API server was unavailable for {}s during the wait{}",
                self.api_outage(now).as_secs(),
                if self.api_down_since.is_some() {
                    " (still unavailable)"
                } else {
                    ""
                }
            ));
        }
        Diagnosis {
            reason: reason.unwrap_or(FailureReason::NotStable),
            message: format!(
                "{} not updated within {}s: {}",
                self.spec.component,
                self.spec.timeout.as_secs(),
                parts.join("; ")
            ),
        }
    }

    /// The component's status as seen now.
    pub fn status(&self) -> ComponentStatus {
        let pod = self.pod.as_ref();
        let now = Instant::now();
        let message = if let Some(e) = &self.api_error {
            Some(match self.runtime_verdict() {
                Some(_) => format!(
                    "API unavailable for {}s ({e}); relying on the container runtime and the local endpoint",
                    self.api_outage(now).as_secs()
                ),
                None => format!(
                    "API unavailable for {}s ({e}); relying on the local endpoint",
                    self.api_outage(now).as_secs()
                ),
            })
        } else if let Some(Err(e)) = &self.endpoint {
            self.spec
                .endpoint
                .as_ref()
                .map(|ep| format!("{} failing: {e}", ep.url()))
        } else if !self.spec.use_api {
            Some(match &self.runtime {
                Some(Ok(_)) => {
                    "no API: judged by the container runtime and the local endpoint".into()
                }
                Some(Err(e)) => {
                    format!("no API, container runtime unreachable ({e}): local endpoint only")
                }
                None => "no API: mirror pod not checked, local endpoint only".into(),
            })
        } else if self.api_outage > Duration::ZERO {
            Some(format!(
                "API was unavailable for {}s; local evidence was checked meanwhile",
                self.api_outage.as_secs()
            ))
        } else {
            None
        };
        ComponentStatus {
            name: self.spec.component.name().to_string(),
            expected_hash: self.spec.expect.expected(),
            observed_hash: pod.and_then(|p| p.hash.clone()),
            ready: pod.is_some_and(|p| p.ready) && !self.pod_missing,
            healthy: self.endpoint_ok() && self.endpoint.is_some(),
            restart_count: pod.and_then(|p| p.restart_count),
            last_state: pod.and_then(|p| p.last_state.clone()),
            message,
        }
    }
}

/// Waits until the component is updated or the timeout passes. `progress` is called with the
/// component's status whenever it changes.
pub async fn wait(
    spec: WaitSpec,
    pods: Option<&dyn MirrorPods>,
    runtime: Option<&dyn ContainerRuntime>,
    health: &dyn HealthCheck,
    mut progress: impl FnMut(&ComponentStatus),
) -> Verdict {
    let uid = spec.expect.expected();
    let written_at = spec.written_at;
    let container = spec.component.name();
    let start = Instant::now();
    let deadline = start + spec.timeout;
    let mut stream: BoxStream<'static, PodEvent> = match (spec.use_api, pods) {
        (true, Some(p)) => p.watch(&spec.pod_name),
        _ => futures::stream::pending().boxed(),
    };
    let endpoint = spec.endpoint.clone();
    let mut tracker = Tracker::new(spec);
    let mut tick = tokio::time::interval(poll_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tracker.status();
    progress(&last);
    loop {
        let now = Instant::now();
        if let Some(v) = tracker.updated(now) {
            return v;
        }
        if now >= deadline {
            return Verdict::TimedOut(tracker.diagnose());
        }
        let wake = tracker
            .ready_at()
            .filter(|t| *t > now)
            .map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            ev = stream.next() => {
                let ev = ev.unwrap_or_else(|| PodEvent::ApiError("watch ended".into()));
                tracker.on_pod(Instant::now(), ev);
            }
            _ = tick.tick() => {
                if let (Some(rt), Some(uid)) = (runtime, uid.as_deref()) {
                    let view = rt
                        .containers_of_pod(uid)
                        .await
                        .map(|cs| runtime::evidence(&cs, written_at, container));
                    tracker.on_runtime(Instant::now(), view);
                }
                if let Some(ep) = &endpoint {
                    let r = health.check(ep).await;
                    tracker.on_endpoint(Instant::now(), r);
                } else {
                    tracker.settle(Instant::now());
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        let st = tracker.status();
        if st != last {
            progress(&st);
            last = st;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expect: Expect, use_api: bool) -> WaitSpec {
        WaitSpec {
            component: Component::Scheduler,
            pod_name: "kube-scheduler-cp-1".into(),
            expect,
            endpoint: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 10259,
                path: "/livez".into(),
                https: true,
                timeout: Duration::from_secs(1),
            }),
            timeout: Duration::from_secs(60),
            min_ready: Duration::from_secs(10),
            use_api,
            written_at: std::time::SystemTime::now(),
        }
    }

    fn seen(hash: &str, ready: bool) -> PodEvent {
        PodEvent::Seen(MirrorPodState {
            hash: Some(hash.into()),
            ready,
            ..Default::default()
        })
    }

    #[test]
    fn updated_needs_hash_ready_endpoint_for_min_ready() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_endpoint(s(0), Ok(()));
        t.on_pod(s(0), seen("old", true));
        assert_eq!(t.updated(s(30)), None, "old hash");
        t.on_pod(s(5), seen("new", false));
        assert_eq!(t.updated(s(30)), None, "not ready");
        t.on_pod(s(6), seen("new", true));
        assert_eq!(t.updated(s(15)), None, "9s < minReady");
        t.on_endpoint(s(10), Err("connect: refused".into()));
        assert_eq!(t.updated(s(20)), None, "endpoint failed: clock reset");
        t.on_endpoint(s(11), Ok(()));
        assert_eq!(t.updated(s(20)), None);
        assert_eq!(
            t.updated(s(21)),
            Some(Verdict::Updated {
                observed_hash: Some("new".into())
            })
        );
    }

    #[test]
    fn api_outage_is_unknown_not_negative_and_the_endpoint_carries_continuity() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_pod(s(0), seen("old", true));
        t.on_pod(s(1), PodEvent::ApiError("connection refused".into()));
        t.on_endpoint(s(2), Ok(()));
        assert_eq!(t.pod_ok(), None);
        assert_eq!(t.updated(s(20)), None, "needs the API to confirm the hash");
        assert!(
            t.status()
                .message
                .unwrap()
                .contains("relying on the local endpoint")
        );
        t.on_pod(s(20), seen("new", true));
        assert!(t.updated(s(20)).is_some(), "endpoint healthy since 2s");
        assert!(
            t.status()
                .message
                .unwrap()
                .contains("API was unavailable for 19s")
        );
    }

    #[test]
    fn diagnoses_name_what_was_seen() {
        let t0 = Instant::now();
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_pod(t0, seen("old", true));
        t.on_endpoint(t0, Ok(()));
        let d = t.diagnose();
        assert_eq!(d.reason, FailureReason::HashNeverChanged);
        assert!(
            d.message
                .contains("still shows kubernetes.io/config.hash=old (expected new)")
        );

        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_pod(
            t0,
            PodEvent::Seen(MirrorPodState {
                hash: Some("new".into()),
                ready: false,
                restart_count: Some(4),
                last_state: Some("Terminated: Error, exit code 1".into()),
            }),
        );
        t.on_endpoint(t0, Err("connect: Connection refused".into()));
        let d = t.diagnose();
        assert_eq!(d.reason, FailureReason::PodNotReady);
        assert!(d.message.contains("restartCount 4"), "{}", d.message);
        assert!(d.message.contains("Terminated: Error, exit code 1"));
        assert!(
            d.message
                .contains("https://127.0.0.1:10259/livez failing: connect")
        );

        let mut t = Tracker::new(spec(Expect::Hash("new".into()), false));
        t.on_endpoint(t0, Err("HTTP 500 Internal Server Error".into()));
        let d = t.diagnose();
        assert_eq!(d.reason, FailureReason::EndpointFailing);
        assert!(!d.message.contains("mirror pod"), "{}", d.message);

        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_pod(t0, PodEvent::Missing);
        assert_eq!(t.diagnose().reason, FailureReason::MirrorPodMissing);
    }

    #[test]
    fn a_swapped_pod_is_not_hash_never_changed_and_outages_add_up() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_pod(s(0), seen("old", true));
        // kubelet swapped the pod (the runtime runs the new uid) but the API kept showing the
        // old hash.
        t.on_runtime(
            s(1),
            Ok(RuntimeEvidence::Running {
                since: std::time::SystemTime::now(),
                id: "abc".into(),
            }),
        );
        let d = t.diagnose();
        assert_ne!(d.reason, FailureReason::HashNeverChanged, "{}", d.message);
        assert!(
            d.message.contains("kubelet started the new manifest"),
            "{}",
            d.message
        );
        // Two outages of 10 s and 20 s: 30 s, not the longest one; an ongoing one counts too.
        t.on_pod(s(10), PodEvent::ApiError("refused".into()));
        t.on_pod(s(20), seen("old", true));
        t.on_pod(s(30), PodEvent::ApiError("refused".into()));
        t.on_pod(s(50), seen("old", true));
        assert_eq!(t.api_outage(s(50)), Duration::from_secs(30));
        t.on_pod(s(60), PodEvent::ApiError("refused".into()));
        assert_eq!(t.api_outage(s(65)), Duration::from_secs(35));
    }

    #[test]
    fn with_the_api_down_the_diagnosis_comes_from_local_evidence() {
        let t0 = Instant::now();
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), true));
        t.on_pod(t0, seen("old", true));
        t.on_pod(t0, PodEvent::ApiError("connection refused".into()));
        t.on_runtime(
            t0,
            Ok(RuntimeEvidence::Running {
                since: std::time::SystemTime::now(),
                id: "c1".into(),
            }),
        );
        t.on_endpoint(t0, Err("HTTP 500".into()));
        let d = t.diagnose();
        assert_eq!(d.reason, FailureReason::EndpointFailing, "{}", d.message);
        assert!(
            !d.message.contains("never showed it Ready"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("the API server is unavailable"),
            "{}",
            d.message
        );
        t.on_runtime(
            t0,
            Ok(RuntimeEvidence::Exited {
                code: Some(1),
                restarts: 3,
            }),
        );
        assert_eq!(t.diagnose().reason, FailureReason::ContainerExited);
    }

    #[test]
    fn without_the_api_the_runtime_decides_and_the_old_process_does_not_count() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), false));
        // The old process answers the endpoint; no container of the new uid.
        t.on_endpoint(s(0), Ok(()));
        t.on_runtime(s(0), Ok(RuntimeEvidence::NotCreated));
        assert_eq!(t.updated(s(30)), None);
        assert_eq!(t.diagnose().reason, FailureReason::ContainerNotStarted);
        t.on_runtime(
            s(31),
            Ok(RuntimeEvidence::Running {
                since: std::time::SystemTime::now(),
                id: "c1".into(),
            }),
        );
        t.on_endpoint(s(31), Ok(()));
        assert!(t.updated(s(41)).is_some());
        // An unreachable runtime leaves the endpoint alone to judge (as before).
        let mut t = Tracker::new(spec(Expect::Hash("new".into()), false));
        t.on_runtime(s(0), Err("unix:///x.sock unreachable".into()));
        t.on_endpoint(s(0), Ok(()));
        assert!(t.updated(s(10)).is_some());
    }

    #[test]
    fn expect_any_and_not() {
        assert!(Expect::Any.matches(Some("x")));
        assert!(!Expect::Any.matches(None));
        assert!(Expect::Not("bad".into()).matches(Some("x")));
        assert!(!Expect::Not("bad".into()).matches(Some("bad")));
    }

    #[test]
    fn mirror_pod_state_reads_hash_readiness_and_last_state() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kube-scheduler-cp-1",
                         "annotations": {"kubernetes.io/config.hash": "abc"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "kube-scheduler", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 3,
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}
                }]
            }
        }))
        .unwrap();
        let s = MirrorPodState::from_pod(&pod);
        assert_eq!(s.hash.as_deref(), Some("abc"));
        assert!(!s.ready);
        assert_eq!(s.restart_count, Some(3));
        assert_eq!(
            s.last_state.as_deref(),
            Some("Terminated: Error, exit code 1; now Waiting: CrashLoopBackOff")
        );
    }
}
