//! The node's apply → wait → rollback state machine, shared by the agent and
//! `kubeplane apply`.
//!
//! For a node spec (one revision's manifests and side files) the engine:
//! 1. resolves side files (inline, or a Secret whose SHA-256 must match the rendered digest);
//! 2. plans each component, kube-apiserver first: *keep* (on disk and confirmed), *wait*
//!    (on disk, not yet confirmed: a resumed attempt), *adopt* (an equivalent manifest is
//!    already on disk: recorded, not rewritten, so nothing restarts), or *write*;
//! 3. records the revision in history (and, on first contact, the files found on disk as
//!    the `pre-kubeplane` baseline);
//! 4. writes and waits in two steps ([`kubelet_wait`](super::kubelet_wait)): kube-apiserver,
//!    then kube-controller-manager and kube-scheduler together (both written, write-ahead one
//!    file at a time, then waited for at once: they depend on the API, not on each other);
//! 5. on a timeout restores the last-known-good revision (or the baseline), waits for it the
//!    same way, and ends `RolledBack` — or `Failed` when that does not come back either.
//!
//! Observation (mirror pods, endpoint health) comes in through the [`MirrorPods`] and
//! [`HealthCheck`] traits, time through tokio, so the machine is tested without a cluster.
//!
//! The pieces: [`apply`] (the forward path), [`wait`] (kubelet waits, cut short by a newer
//! spec), [`rollback`] (restoring last-known-good), [`pull`] (images before restarts),
//! [`side_files`] (inline and Secret-backed files), [`phase`] (state, status and how an
//! attempt settles), [`certificates`] (restarts on renewal).

mod apply;
mod certificates;
mod phase;
mod pull;
mod rollback;
mod side_files;
mod wait;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use self::pull::{IMAGE_PULL_TIMEOUT, images_to_pull};
pub use self::rollback::{RESTORED_ANNOTATION, Restore, restore_set, restored_manifest};
pub use self::side_files::{KubeSecrets, NoSecrets, Secrets};

use super::certs;
use super::desired::Desired;
use super::files::{FileError, NodeDirs};
use super::health::HealthCheck;
use super::history::{History, HistoryError};
use super::kubelet_wait::MirrorPods;
use super::lb_drain::{Drained, LoadBalancerDrain};
use super::runtime::ContainerRuntime;
use super::state::{AgentState, Lifecycle, StateError, StateStore};
use super::status::{AgentEvent, StatusBoard};
use crate::api::{Component, ControlPlaneNodeSpec};
use crate::render::{self, sha256_hex};

/// The node spec last applied, under the state directory (a restart without the API resumes
/// from it).
pub const SPEC_FILE: &str = "spec.json";

/// Host used for probes without a host (the Pod IP of a host-network Pod: this node).
pub const LOCAL_HOST: &str = "127.0.0.1";

/// Health timeout used when a manifest carries none.
const DEFAULT_TIMEOUT: Duration =
    Duration::from_secs(render::defaults::HEALTH_TIMEOUT_SECONDS as u64);

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The directories are unusable.
    #[error(transparent)]
    File(#[from] FileError),
    /// The state file is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// History is unusable.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// How an apply ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to act on yet (no manifests), or waiting for something outside (a Secret):
    /// `retry` says whether trying again later may help.
    Pending {
        /// PascalCase reason.
        reason: String,
        /// What is missing.
        message: String,
        /// Whether a later retry may succeed without a new spec.
        retry: bool,
    },
    /// Files written, not waited for (`--no-wait`).
    Written,
    /// Every component runs the revision and is healthy.
    Healthy,
    /// A component did not become healthy; last-known-good was restored and is healthy.
    RolledBack {
        /// PascalCase reason.
        reason: String,
        /// What was seen.
        message: String,
    },
    /// A newer node spec arrived while a component of this one was being waited for (never
    /// while a restore is written or waited for): the engine stopped waiting; the newer spec
    /// is applied next, from what is on disk.
    Superseded,
    /// The revision could not be applied, nor last-known-good restored.
    Failed {
        /// PascalCase reason.
        reason: String,
        /// What was seen.
        message: String,
    },
}

impl Outcome {
    /// Whether the outcome means the revision is not running (rolled back or failed).
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::RolledBack { .. } | Outcome::Failed { .. })
    }
}

/// Where the engine lives and what it can see.
pub struct EngineParts {
    /// Node name (mirror pod names, uid computation).
    pub node_name: String,
    /// Manifest and state directories.
    pub dirs: NodeDirs,
    /// How many revisions history keeps.
    pub history: usize,
    /// Mirror pods; `None` without an API (`kubeplane apply`).
    pub pods: Option<Arc<dyn MirrorPods>>,
    /// The container runtime (local evidence without the API); `None` when not configured.
    pub runtime: Option<Arc<dyn ContainerRuntime>>,
    /// Endpoint health.
    pub health: Arc<dyn HealthCheck>,
    /// Secret reader.
    pub secrets: Arc<dyn Secrets>,
    /// Where status and events go.
    pub board: StatusBoard,
    /// The desired files, shared with the drift handler.
    pub desired: Arc<Desired>,
}

/// The engine.
pub struct Engine {
    node: String,
    dirs: NodeDirs,
    desired: Arc<Desired>,
    store: StateStore,
    state: AgentState,
    history: History,
    pods: Option<Arc<dyn MirrorPods>>,
    runtime: Option<Arc<dyn ContainerRuntime>>,
    health: Arc<dyn HealthCheck>,
    secrets: Arc<dyn Secrets>,
    board: StatusBoard,
    spec: Option<ControlPlaneNodeSpec>,
    generation: Option<i64>,
    /// Digests of newer node specs as they arrive (the agent's ControlPlaneNode watch).
    newer: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// The load balancer's view of this node (`--lb-agent-check-addr`): drained before
    /// kube-apiserver restarts.
    lb: Option<LoadBalancerDrain>,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub(super) fn timeout_of(seconds: i32) -> Duration {
    if seconds > 0 {
        Duration::from_secs(seconds as u64)
    } else {
        DEFAULT_TIMEOUT
    }
}

pub(super) fn parse_pod(bytes: &[u8]) -> Option<Pod> {
    super::files::parse_pod(bytes).ok()
}

/// A digest of everything in a node spec: a new digest is a new attempt.
pub fn spec_digest(spec: &ControlPlaneNodeSpec) -> String {
    sha256_hex(&serde_json::to_vec(spec).unwrap_or_default())
}

fn format_time(t: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
        .to_string()
}

fn parse_time(s: &str) -> Option<SystemTime> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

impl Engine {
    /// Opens the node: prepares the directories (cleaning stale staging files), loads
    /// `state.json` (a corrupt one is moved aside and reported), and sets the desired files
    /// from state and history so drift is enforced before the first spec arrives.
    pub fn open(parts: EngineParts) -> Result<Engine, EngineError> {
        let removed = parts.dirs.prepare()?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed stale staging files left by an interrupted write"
            );
        }
        let store = StateStore::new(parts.dirs.state_file(), parts.dirs.staging_dir());
        let state = match store.load() {
            Ok(s) => s,
            Err(e @ StateError::Corrupt { .. }) => {
                tracing::error!(error = %e, "state file unusable");
                parts
                    .board
                    .event(AgentEvent::warning("StateReset", "Start", e.to_string()));
                store.load()?
            }
            Err(e) => return Err(e.into()),
        };
        let history = History::new(&parts.dirs, parts.history);
        let mut engine = Engine {
            node: parts.node_name,
            dirs: parts.dirs,
            desired: parts.desired,
            store,
            state,
            history,
            pods: parts.pods,
            runtime: parts.runtime,
            health: parts.health,
            secrets: parts.secrets,
            board: parts.board,
            spec: None,
            generation: None,
            newer: None,
            lb: None,
        };
        engine.restore_desired();
        engine.publish();
        Ok(engine)
    }

    /// Drains this node from the load balancer before kube-apiserver restarts (see
    /// [`super::lb_drain`]); back in the pool when the apply, restore or restart is over.
    pub fn set_load_balancer(&mut self, lb: LoadBalancerDrain) {
        self.lb = Some(lb);
    }

    /// Before a manifest of `c` is written: when it is kube-apiserver's, out of the load
    /// balancer first.
    async fn drain_before_write(&self, c: Component) {
        let (Component::ApiServer, Some(lb)) = (c, &self.lb) else {
            return;
        };
        match lb.drain().await {
            Drained::Heard => tracing::info!(
                "drained from the load balancer: no new connections reach this kube-apiserver"
            ),
            Drained::Already => {}
            Drained::Unasked => tracing::warn!(
                "no load balancer asked for this node's state (agent check) in time; restarting kube-apiserver without a drain"
            ),
        }
    }

    /// Back in the load balancer's pool (its health check still decides when traffic comes).
    fn back_in_pool(&self) {
        if let Some(lb) = &self.lb
            && lb.ready()
        {
            tracing::info!("back in the load balancer's pool");
        }
    }

    /// Resume first: finishes what the state file says was under way when the agent (or
    /// `kubeplane apply`) stopped — an interrupted rollback goes on to last-known-good, a
    /// write not yet confirmed is waited for (and rolled back past its timeout) — using only
    /// state, history, the saved node spec and local evidence: no API needed. `None` when
    /// nothing was under way.
    pub async fn resume(&mut self) -> Option<Outcome> {
        let outcome = self.resume_inner().await;
        self.back_in_pool();
        outcome
    }

    async fn resume_inner(&mut self) -> Option<Outcome> {
        match self.state.lifecycle.clone() {
            Lifecycle::RollingBack { .. } => {
                tracing::warn!("resuming an interrupted rollback");
                Some(self.finish_rollback().await)
            }
            Lifecycle::Applying { revision, .. } | Lifecycle::Waiting { revision, .. } => {
                match self.load_spec() {
                    Some(spec) if spec.revision == revision => {
                        tracing::info!(revision = %revision, "resuming an interrupted apply");
                        let generation = self.generation;
                        Some(self.apply(&spec, generation, true).await)
                    }
                    _ => {
                        tracing::warn!(revision = %revision, "an apply was interrupted, but its node spec was not saved; waiting for the ControlPlaneNode");
                        None
                    }
                }
            }
            Lifecycle::Idle | Lifecycle::Settled { .. } => None,
        }
    }

    fn spec_path(&self) -> std::path::PathBuf {
        self.dirs.state_dir().join(SPEC_FILE)
    }

    /// Saves the node spec being applied, so a restart without the API can resume it.
    fn save_spec(&self, spec: &ControlPlaneNodeSpec) -> Result<(), FileError> {
        let bytes = serde_json::to_vec(spec).unwrap_or_default();
        if super::files::read_nofollow(&self.spec_path())?.as_deref() == Some(&bytes[..]) {
            return Ok(());
        }
        super::files::atomic_write(&self.dirs.staging_dir(), &self.spec_path(), &bytes)
    }

    /// The node spec saved by the last apply.
    pub fn load_spec(&self) -> Option<ControlPlaneNodeSpec> {
        let bytes = super::files::read_nofollow(&self.spec_path())
            .ok()
            .flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The engine's persistent state.
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// The desired files, shared with the drift handler.
    pub fn desired(&self) -> Arc<Desired> {
        self.desired.clone()
    }

    /// The board status and events go to.
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// The spec last acted on.
    pub fn spec(&self) -> Option<&ControlPlaneNodeSpec> {
        self.spec.as_ref()
    }

    /// The node is no longer managed: its `ControlPlaneNode` is gone (the config was deleted,
    /// no longer selects the node, or kubeplane was uninstalled). The manifests stay exactly
    /// as they are, so the control plane keeps running; from now on hand edits are not
    /// reverted and renewed certificates restart nothing, until a ControlPlaneNode appears
    /// again ([`Engine::reclaim`]). State and history are kept (the `pre-kubeplane` entry
    /// hands the node back). Returns the revision on disk, if kubeplane wrote one.
    pub fn release(&mut self) -> Option<String> {
        let mut g = self.desired.lock();
        for c in g.managed() {
            g.remove(c);
        }
        drop(g);
        self.spec = None;
        self.state.applied_revision.clone()
    }

    /// Managed again after [`Engine::release`]: drift is enforced from state and history as
    /// at start, until the next apply.
    pub fn reclaim(&mut self) {
        self.restore_desired();
    }

    /// The desired bytes of each component, from state and history. During a rollback they
    /// are the restored revision's (as [`restore_set`] computes them), never the failed one's.
    fn restore_desired(&mut self) {
        if let Lifecycle::RollingBack {
            failed_revision,
            to_revision,
            ..
        } = &self.state.lifecycle
            && let Ok(Some(files)) = self.history.load(to_revision)
        {
            let plan = restore_set(&files, failed_revision, &self.node, |c| {
                self.dirs.read_manifest(c.manifest_file()).ok().flatten()
            });
            let mut g = self.desired.lock();
            for (c, r) in plan {
                match r {
                    Restore::Remove => g.remove(c),
                    Restore::Unchanged(b) | Restore::Write { bytes: b, .. } => g.set(c, b),
                }
            }
            return;
        }
        let mut g = self.desired.lock();
        for (c, cs) in &self.state.components {
            let from_history = self
                .history
                .load(&cs.revision)
                .ok()
                .flatten()
                .and_then(|r| r.manifests.get(c).cloned().flatten());
            let bytes = match (&from_history, &cs.restart_annotation) {
                (Some(b), Some(v)) => certs::with_restart_annotation(b, v, &self.node)
                    .ok()
                    .map(|(b, _)| b),
                (Some(b), None) => Some(b.clone()),
                (None, _) => None,
            };
            let bytes = bytes
                .filter(|b| sha256_hex(b) == cs.content_sha256)
                .or_else(|| {
                    // History lost: trust the file on disk if it still is what was written.
                    self.dirs
                        .read_manifest(c.manifest_file())
                        .ok()
                        .flatten()
                        .filter(|b| sha256_hex(b) == cs.content_sha256)
                });
            match bytes {
                Some(b) => g.set(*c, b),
                None => tracing::warn!(
                    component = %c,
                    "the file kubeplane last wrote is in neither history nor the manifest directory; drift is not enforced for it until the next apply"
                ),
            }
        }
    }
}
