//! `spec.rollout`: how a new revision is rolled out across nodes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a new revision is rolled out.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Stop after the node in flight; no further node is started until this is `false`
    /// again. Default: `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,

    /// Seconds every updated component must stay healthy (mirror pod Ready, local endpoint
    /// answering) before its node counts as updated. Default: `10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub min_ready_seconds: Option<i32>,

    /// Seconds to wait for each component to become healthy after its manifest is written,
    /// before the agent restores the last known-good revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout_seconds: Option<HealthTimeouts>,

    /// Seconds a node may stay in flight (given a revision by the operator and not yet
    /// `Healthy`, `RolledBack` or `Failed` at it) before the config turns `Degraded` with reason
    /// `ProgressDeadlineExceeded`, naming the node, its phase and for how long. No other node
    /// starts meanwhile; a newer revision may still replace the one in flight on that node
    /// unless its agent is writing files or restoring the last known-good revision. It must be
    /// at least the longest `healthTimeoutSeconds` plus `minReadySeconds`. Like `paused` and
    /// the other rollout settings it is not part of the revision. Default: `900`, or that sum
    /// when it is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 86400))]
    pub progress_deadline_seconds: Option<i32>,

    /// Start-up probes of the control-plane Pods. `kubeadm` (default): kubeadm's startup
    /// probe (`initialDelaySeconds: 10`, `periodSeconds: 10`, `failureThreshold: 24`), so a
    /// restarted component counts as started up to 10 s after it already serves. `fast`: the
    /// same failure budget (250 s: delay + period × threshold) probed every second from the
    /// start (`periodSeconds: 1`, `failureThreshold: 250`, no initial delay), so a restart is
    /// detected within about a second and each node of a rollout finishes sooner. Liveness
    /// and readiness probes are kubeadm's either way, and per-component `probes.startup`
    /// overrides win over both profiles. It changes the rendered manifests, so switching it is
    /// a new revision (rolled out like any other change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_profile: Option<ProbeProfile>,
}

/// Start-up probe timing of the control-plane Pods (`spec.rollout.probeProfile`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ProbeProfile {
    /// kubeadm's startup probe: first check after 10 s, then every 10 s, 24 failures allowed.
    #[default]
    Kubeadm,
    /// The same 250 s budget checked every second from the start.
    Fast,
}

/// Per-component health timeouts in seconds. Default for each: `300`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthTimeouts {
    /// Timeout of kube-apiserver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 3600))]
    pub api_server: Option<i32>,
    /// Timeout of kube-controller-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 3600))]
    pub controller_manager: Option<i32>,
    /// Timeout of kube-scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 3600))]
    pub scheduler: Option<i32>,
}
