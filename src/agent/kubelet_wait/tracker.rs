//! The wait's decision, a synchronous state machine: mirror pod events, container runtime
//! evidence and endpoint checks in, with the time; "updated yet?", a status and, past the
//! timeout, a diagnosis out.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    CONFIG_HASH_ANNOTATION, Diagnosis, Expect, MirrorPodState, PodEvent, Verdict, WaitSpec,
};
use crate::agent::runtime::RuntimeEvidence;
use crate::agent::state::FailureReason;
use crate::api::ComponentStatus;

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
    pub(super) fn settle(&mut self, now: Instant) {
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
        let pod_name = format!(
            "{}/{}",
            crate::render::defaults::NAMESPACE,
            self.spec.pod_name
        );
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
