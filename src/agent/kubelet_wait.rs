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
use super::runtime::{self, ContainerRuntime};
use super::state::FailureReason;
use crate::api::{Component, ComponentStatus};

mod mirror;
mod tracker;
pub use mirror::*;
pub use tracker::Tracker;

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
mod tests;
