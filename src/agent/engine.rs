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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use tracing::Instrument;

use super::certs::{self, CertInfo};
use super::desired::Desired;
use super::files::{FileError, NodeDirs};
use super::health::{Endpoint, HealthCheck};
use super::history::{BASELINE, History, HistoryError, RevisionFiles};
use super::kubelet_wait::{self, Diagnosis, Expect, MirrorPods, Verdict, WaitSpec};
use super::plan::{self, Action, Step};
use super::runtime::ContainerRuntime;
use super::state::{
    AgentState, ComponentState, FailedRevision, FailureReason, Lifecycle, Settlement, StateError,
    StateStore,
};
use super::status::{AgentEvent, StatusBoard};
use crate::api::{
    Component, ComponentStatus, ControlPlaneNodeSpec, FileSource, NodePhase, SecretKeyRef,
};
use crate::render::{self, sha256_hex};

/// The node spec last applied, under the state directory (a restart without the API resumes
/// from it).
pub const SPEC_FILE: &str = "spec.json";

/// Host used for probes without a host (the Pod IP of a host-network Pod: this node).
pub const LOCAL_HOST: &str = "127.0.0.1";

/// Health timeout used when a manifest carries none.
const DEFAULT_TIMEOUT: Duration =
    Duration::from_secs(render::defaults::HEALTH_TIMEOUT_SECONDS as u64);

/// Reads Secret keys for Secret-backed side files.
pub trait Secrets: Send + Sync {
    /// The bytes of one key of a Secret.
    fn get<'a>(&'a self, r: &'a SecretKeyRef) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

/// Secrets through the API.
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    /// Reads Secrets with this client.
    pub fn new(client: Client) -> Self {
        KubeSecrets { client }
    }
}

impl Secrets for KubeSecrets {
    fn get<'a>(&'a self, r: &'a SecretKeyRef) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let ns = r.namespace.as_deref().unwrap_or("kube-system");
            let key = r
                .key
                .as_deref()
                .unwrap_or(render::defaults::ENCRYPTION_SECRET_KEY);
            let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
            let s = api
                .get(&r.name)
                .await
                .map_err(|e| format!("reading Secret {ns}/{}: {e}", r.name))?;
            s.data
                .and_then(|mut d| d.remove(key))
                .map(|b| b.0)
                .ok_or_else(|| format!("Secret {ns}/{} has no key {key:?}", r.name))
        })
    }
}

/// No Secrets (`kubeplane apply` has no API): a Secret-backed file must already be on disk
/// with the rendered digest.
pub struct NoSecrets;

impl Secrets for NoSecrets {
    fn get<'a>(&'a self, r: &'a SecretKeyRef) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            Err(format!(
                "kubeplane apply has no API to read Secret {}/{} (key {}); put the file in place first",
                r.namespace.as_deref().unwrap_or("kube-system"),
                r.name,
                r.key
                    .as_deref()
                    .unwrap_or(render::defaults::ENCRYPTION_SECRET_KEY)
            ))
        })
    }
}

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

/// How long a restored last-known-good component is waited for: the failed revision's
/// timeout, but never less than the default. A short `healthTimeoutSeconds` detects a bad
/// revision quickly; it says nothing about how long the good one takes to restart (on a real
/// kubelet with kubeadm's probes, kube-scheduler needs about 30 s), and cutting that wait
/// short would report a healthy rollback as `Failed`.
fn restore_timeout(failed_revision_timeout: Duration) -> Duration {
    failed_revision_timeout.max(DEFAULT_TIMEOUT)
}

/// How long the agent waits for one image pull before it fails the revision.
pub const IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// The images of a manifest that may be pulled ahead: every container's and init container's,
/// except those with `imagePullPolicy: Never` (the node is meant to have them already).
pub fn images_to_pull(manifest: &[u8]) -> Vec<String> {
    let Some(pod) = parse_pod(manifest) else {
        return Vec::new();
    };
    let Some(spec) = pod.spec else {
        return Vec::new();
    };
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .filter(|c| c.image_pull_policy.as_deref() != Some("Never"))
        .filter_map(|c| c.image)
        .filter(|i| !i.is_empty())
        .collect()
}

pub(super) fn parse_pod(bytes: &[u8]) -> Option<Pod> {
    super::files::parse_pod(bytes).ok()
}

/// A digest of everything in a node spec: a new digest is a new attempt.
pub fn spec_digest(spec: &ControlPlaneNodeSpec) -> String {
    sha256_hex(&serde_json::to_vec(spec).unwrap_or_default())
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
        };
        engine.restore_desired();
        engine.publish();
        Ok(engine)
    }

    /// Resume first: finishes what the state file says was under way when the agent (or
    /// `kubeplane apply`) stopped — an interrupted rollback goes on to last-known-good, a
    /// write not yet confirmed is waited for (and rolled back past its timeout) — using only
    /// state, history, the saved node spec and local evidence: no API needed. `None` when
    /// nothing was under way.
    pub async fn resume(&mut self) -> Option<Outcome> {
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

    /// Lets a newer node spec cut a forward wait short: `rx` carries the digest
    /// ([`spec_digest`]) of the newest spec the agent has seen.
    pub fn watch_newer(&mut self, rx: tokio::sync::watch::Receiver<Option<String>>) {
        self.newer = Some(rx);
    }

    /// Resolves once a node spec other than `digest` has arrived (never without a watch).
    fn superseded(&self, digest: String) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self.newer.clone();
        async move {
            let Some(mut rx) = rx else {
                return std::future::pending().await;
            };
            loop {
                if rx
                    .borrow_and_update()
                    .as_deref()
                    .is_some_and(|d| d != digest)
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
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

    /// Writes the state and the status derived from it.
    fn save(&mut self) {
        if let Err(e) = self.store.save(&self.state) {
            tracing::error!(error = %e, "could not save state.json");
            self.board.event(AgentEvent::warning(
                "StateNotSaved",
                "Apply",
                format!("{e}; the agent may repeat work after a restart"),
            ));
        }
        self.publish();
    }

    fn publish(&self) {
        let st = &self.state;
        let generation = self.generation;
        let since = st
            .phase_since
            .as_deref()
            .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(Time);
        self.board.update(|s| {
            s.observed_generation = generation.or(s.observed_generation);
            s.phase = st.phase.or(Some(NodePhase::Pending));
            s.target_revision = st.target_revision.clone();
            s.applied_revision = st.applied_revision.clone();
            s.last_known_good_revision = st.last_known_good_revision.clone();
            s.reason = st.reason.clone();
            s.message = st.message.clone();
            s.phase_since = since;
            // The operator never gives a node a newer revision while it restores.
            s.rolling_back = matches!(st.lifecycle, Lifecycle::RollingBack { .. }).then_some(true);
        });
    }

    /// Sets the phase; on a change of phase, records when and publishes an Event.
    fn set_phase(&mut self, phase: NodePhase, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let changed = self.state.phase != Some(phase);
        if changed {
            self.state.phase_since = Some(now().0.to_string());
        }
        let same = !changed
            && self.state.reason.as_deref() == Some(reason)
            && self.state.message.as_deref() == Some(message.as_str());
        self.state.phase = Some(phase);
        self.state.reason = Some(reason.to_string());
        self.state.message = Some(message.clone());
        if changed {
            let warning = matches!(phase, NodePhase::RolledBack | NodePhase::Failed);
            let ev_reason = phase.as_str();
            let note = format!("{reason}: {message}");
            let ev = if warning {
                AgentEvent::warning(ev_reason, "Apply", note)
            } else {
                AgentEvent::normal(ev_reason, "Apply", note)
            };
            self.board.event(ev);
        }
        if !same && !changed {
            // A phase change is logged with its Event.
            tracing::info!(phase = phase.as_str(), reason, "{message}");
        }
        self.save();
    }

    fn component_status(&self, st: ComponentStatus) {
        self.board.update(
            |s| match s.components.iter_mut().find(|c| c.name == st.name) {
                Some(c) => *c = st,
                None => {
                    s.components.push(st);
                    s.components.sort_by_key(|c| Component::parse(&c.name));
                }
            },
        );
    }

    /// The status of a component the wait confirmed: replaces the wait's last snapshot (which,
    /// after a wait judged without the API, still said "API unavailable").
    fn confirmed_status(&self, c: Component, expected: Option<String>, observed: Option<String>) {
        if observed.is_some() {
            // Seen through the API: the wait's last snapshot is current.
            return;
        }
        let by_api = false;
        self.component_status(ComponentStatus {
            name: c.name().to_string(),
            observed_hash: observed.or_else(|| expected.clone()),
            expected_hash: expected,
            ready: true,
            healthy: true,
            message: (!by_api).then(|| {
                "confirmed by local evidence (the container runtime ran the new uid and the endpoint answered); the mirror pod was not seen".to_string()
            }),
            ..Default::default()
        });
    }

    /// Reads the spec's certificates, reports their expiry, returns what was read.
    pub fn read_certificates(&self) -> Vec<CertInfo> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        let infos: Vec<CertInfo> = spec.certificates.iter().map(certs::read).collect();
        let statuses = certs::statuses(&infos);
        self.board.update(|s| s.certificates = statuses);
        infos
    }

    /// Applies a node spec. `wait: false` writes and returns ([`Outcome::Written`]).
    pub async fn apply(
        &mut self,
        spec: &ControlPlaneNodeSpec,
        generation: Option<i64>,
        wait: bool,
    ) -> Outcome {
        let span = tracing::info_span!("apply", node = %self.node, revision = %spec.revision);
        self.apply_inner(spec, generation, wait)
            .instrument(span)
            .await
    }

    async fn apply_inner(
        &mut self,
        spec: &ControlPlaneNodeSpec,
        generation: Option<i64>,
        wait: bool,
    ) -> Outcome {
        self.generation = generation;
        // Resume first: an interrupted rollback is finished before anything else, whatever
        // the new spec says (it never writes the failed revision back).
        if matches!(self.state.lifecycle, Lifecycle::RollingBack { .. }) {
            let outcome = self.finish_rollback().await;
            let digest = spec_digest(spec);
            let same = self.state.target_revision.as_deref() == Some(spec.revision.as_str())
                && self.state.target_digest.as_deref() == Some(digest.as_str());
            if same || spec.manifests.is_empty() {
                return outcome;
            }
        }
        if spec.manifests.is_empty() {
            let message = "no manifests rendered for this node yet: node facts reported, waiting for the operator";
            if matches!(self.state.lifecycle, Lifecycle::Settled { .. }) {
                // A re-created ControlPlaneNode (its config deleted and applied again) starts
                // empty. Only the status says so: the state keeps the settled phase, reason and
                // message, so the same revision given again is settled at once, with its own
                // story, instead of staying `Pending` forever.
                self.board.update(|s| {
                    s.phase = Some(NodePhase::Pending);
                    s.reason = Some("NoManifests".into());
                    s.message = Some(message.into());
                });
            } else {
                self.set_phase(NodePhase::Pending, "NoManifests", message);
            }
            return Outcome::Pending {
                reason: "NoManifests".into(),
                message: message.into(),
                retry: false,
            };
        }
        let digest = spec_digest(spec);
        let same_attempt = self.state.target_digest.as_deref() == Some(digest.as_str())
            && self.state.target_revision.as_deref() == Some(spec.revision.as_str());
        self.spec = Some(spec.clone());
        let infos = self.read_certificates();
        if same_attempt && matches!(self.state.lifecycle, Lifecycle::Settled { .. }) {
            // A state an earlier agent wrote may say `Pending` under a settled lifecycle (an
            // empty re-created ControlPlaneNode overwrote it): tell the settlement again.
            if self.state.phase == Some(NodePhase::Pending) {
                self.restate_settlement();
            }
            self.publish();
            return self.settled_outcome();
        }
        let rev = spec.revision.clone();
        // Memory of failure: a revision that failed here is not tried again until the node
        // spec changes, even if the ControlPlaneNode was deleted and created again.
        if let Some(f) = self.state.failed(&rev, &digest).cloned() {
            self.state.target_revision = Some(rev.clone());
            self.state.target_digest = Some(digest);
            let message = format!(
                "revision {rev} already failed on this node ({}{} at {}); it is not tried again: change the ControlPlaneConfig for a new revision",
                f.reason,
                f.component.map(|c| format!(", {c}")).unwrap_or_default(),
                f.at
            );
            self.state.lifecycle = Lifecycle::Settled {
                revision: rev.clone(),
                settlement: match f.component {
                    Some(c) if self.state.applied_revision.as_deref() != Some(rev.as_str()) => {
                        Settlement::RolledBack {
                            failed_component: c,
                            reason: f.reason,
                            restored: self.state.applied_revision.clone().unwrap_or_default(),
                        }
                    }
                    _ => Settlement::Failed { reason: f.reason },
                },
            };
            let phase = match self.state.lifecycle {
                Lifecycle::Settled {
                    settlement: Settlement::RolledBack { .. },
                    ..
                } => NodePhase::RolledBack,
                _ => NodePhase::Failed,
            };
            self.set_phase(phase, f.reason.as_str(), message);
            return self.settled_outcome();
        }
        if let Err(e) = self.save_spec(spec) {
            tracing::warn!(error = %e, "could not save the node spec; a restart without the API cannot resume this attempt");
        }

        // Side files.
        let side = match self.resolve_files(spec).await {
            Ok(s) => s,
            Err(FileProblem::Wait(reason, message)) => {
                self.state.target_revision = Some(rev);
                self.set_phase(NodePhase::Pending, reason, message.clone());
                return Outcome::Pending {
                    reason: reason.into(),
                    message,
                    retry: true,
                };
            }
            Err(FileProblem::Invalid(message)) => {
                self.state.target_revision = Some(rev);
                self.state.target_digest = Some(digest);
                return self.fail(FailureReason::InvalidSpec, None, message);
            }
        };

        let steps = match self.plan(spec) {
            Ok(s) => s,
            Err(message) => {
                self.state.target_revision = Some(rev);
                self.state.target_digest = Some(digest);
                return self.fail(FailureReason::InvalidSpec, None, message);
            }
        };

        self.state.target_revision = Some(rev.clone());
        self.state.target_digest = Some(digest);

        // Baseline: the files found before kubeplane's first write, restorable if the first
        // revision fails.
        if self.state.last_known_good_revision.is_none()
            && self.state.baseline_revision.is_none()
            && self.state.components.is_empty()
            && let Err(e) = self.record_baseline(spec)
        {
            tracing::warn!(error = %e, "could not record the pre-kubeplane baseline");
        }

        let record = RevisionFiles {
            revision: rev.clone(),
            manifests: steps
                .iter()
                .map(|s| (s.component, Some(s.bytes.clone())))
                .collect(),
            files: side.iter().cloned().collect(),
        };
        if let Err(e) = self.history.record(&record) {
            return self.fail(
                FailureReason::HistoryNotWritten,
                None,
                format!("{e}; nothing was written to the manifest directory"),
            );
        }

        let files_changed = side.iter().any(|(p, b)| {
            self.dirs
                .read_side_file(std::path::Path::new(p))
                .ok()
                .flatten()
                .as_deref()
                != Some(b.as_slice())
        });
        let nothing = !files_changed && steps.iter().all(|s| matches!(s.action, Action::Keep));
        if nothing {
            // Everything is on disk and confirmed (for example the same render again).
            {
                let mut g = self.desired.lock();
                for s in &steps {
                    g.set(s.component, s.bytes.clone());
                }
            }
            return self.healthy(&rev, "every component already runs this revision");
        }

        // Images before restarts: kubelet runs no second instance of a static pod, so a pull
        // it starts after the write is downtime. Nothing is written until they are present.
        if let Err(outcome) = self.pull_images(&rev, &steps).await {
            return outcome;
        }

        if files_changed || steps.iter().any(|s| matches!(s.action, Action::Write)) {
            if let Some(first) = steps.first() {
                self.state.lifecycle = Lifecycle::Applying {
                    revision: rev.clone(),
                    component: first.component,
                };
            }
            self.set_phase(
                NodePhase::Applying,
                "Writing",
                format!("writing revision {rev}"),
            );
        }
        for (path, bytes) in &side {
            let p = std::path::Path::new(path);
            if self.dirs.read_side_file(p).ok().flatten().as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            if let Err(e) = self.dirs.write_side_file(p, bytes) {
                return self.fail(FailureReason::WriteFailed, None, e.to_string());
            }
            self.state.files.insert(path.clone(), sha256_hex(bytes));
        }

        let min_ready = Duration::from_secs(spec.min_ready_seconds.max(0) as u64);
        // One step per group (kube-apiserver, then kube-controller-manager and kube-scheduler
        // together): every file of a group is written (write-ahead, one at a time) before the
        // group is waited for.
        for group in step_groups(&steps) {
            // The group's components to wait for: (step, written at, timeout).
            let mut waits: Vec<(&Step, SystemTime, Duration)> = Vec::new();
            for step in group {
                let c = step.component;
                let previous = self.state.components.get(&c).cloned();
                // When the file of this component was written: now for a write, the recorded
                // time for a resumed wait.
                let mut written_at = SystemTime::now();
                match step.action {
                    Action::Keep => {
                        self.desired.lock().set(c, step.bytes.clone());
                        continue;
                    }
                    Action::Write => {
                        let span = tracing::info_span!("write", component = %c);
                        let _g = span.enter();
                        // Write-ahead: the state says what is about to happen before it happens.
                        self.state.lifecycle = Lifecycle::Applying {
                            revision: rev.clone(),
                            component: c,
                        };
                        self.save();
                        let result = {
                            let mut g = self.desired.lock();
                            g.set(c, step.bytes.clone());
                            let managed = g.managed();
                            self.dirs
                                .write_manifest(c.manifest_file(), &managed, &step.bytes)
                        };
                        if let Err(e) = result {
                            return self.fail(FailureReason::WriteFailed, Some(c), e.to_string());
                        }
                        written_at = self
                            .dirs
                            .manifest_mtime(c.manifest_file())
                            .unwrap_or_else(SystemTime::now);
                        tracing::info!("wrote {}", c.manifest_file());
                        self.state.applied_revision = Some(rev.clone());
                        self.state.components.insert(
                            c,
                            ComponentState {
                                revision: rev.clone(),
                                content_sha256: sha256_hex(&step.bytes),
                                rendered_hash: Some(step.rendered_hash.clone()),
                                config_hash: match &step.expect {
                                    Expect::Hash(h) => Some(h.clone()),
                                    _ => None,
                                },
                                adopted: false,
                                confirmed: false,
                                restart_annotation: step.restart_annotation.clone(),
                                certificates: certs::digests(c, &infos),
                            },
                        );
                    }
                    Action::Adopt => {
                        self.desired.lock().set(c, step.bytes.clone());
                        tracing::info!(component = %c, "adopted the manifest on disk: it means the same Pod as the render");
                        self.state.components.insert(
                            c,
                            ComponentState {
                                revision: rev.clone(),
                                content_sha256: sha256_hex(&step.bytes),
                                rendered_hash: Some(step.rendered_hash.clone()),
                                config_hash: None,
                                adopted: true,
                                confirmed: false,
                                restart_annotation: None,
                                certificates: certs::digests(c, &infos),
                            },
                        );
                    }
                    Action::Wait => {
                        self.desired.lock().set(c, step.bytes.clone());
                        // A resumed wait: the file was written when the state says.
                        if let Lifecycle::Waiting {
                            revision,
                            component,
                            since,
                        } = &self.state.lifecycle
                            && *revision == rev
                            && *component == c
                            && let Some(t) = parse_time(since)
                        {
                            written_at = t;
                        } else if let Some(t) = self.dirs.manifest_mtime(c.manifest_file()) {
                            written_at = t;
                        }
                        if previous.as_ref().is_none_or(|p| {
                            p.content_sha256 != sha256_hex(&step.bytes) || p.revision != rev
                        }) {
                            self.state.components.insert(
                                c,
                                ComponentState {
                                    revision: rev.clone(),
                                    content_sha256: sha256_hex(&step.bytes),
                                    rendered_hash: Some(step.rendered_hash.clone()),
                                    config_hash: match &step.expect {
                                        Expect::Hash(h) => Some(h.clone()),
                                        _ => None,
                                    },
                                    certificates: certs::digests(c, &infos),
                                    ..Default::default()
                                },
                            );
                        }
                    }
                }
                if wait || !matches!(step.action, Action::Wait) {
                    self.state.lifecycle = Lifecycle::Waiting {
                        revision: rev.clone(),
                        component: c,
                        since: format_time(written_at),
                    };
                }
                self.save();
                self.component_status(ComponentStatus {
                    name: c.name().to_string(),
                    expected_hash: match &step.expect {
                        Expect::Hash(h) => Some(h.clone()),
                        _ => None,
                    },
                    message: matches!(step.action, Action::Adopt).then(|| {
                        "adopted: the manifest on disk already means this Pod".to_string()
                    }),
                    ..Default::default()
                });
                if !wait {
                    continue;
                }
                // A resumed wait gets what is left of its timeout (but enough to observe).
                let timeout = if matches!(step.action, Action::Wait) {
                    let elapsed = SystemTime::now()
                        .duration_since(written_at)
                        .unwrap_or_default();
                    step.timeout
                        .saturating_sub(elapsed)
                        .max(min_ready + RESUME_GRACE)
                        .min(step.timeout)
                } else {
                    step.timeout
                };
                waits.push((step, written_at, timeout));
            }
            if waits.is_empty() {
                continue;
            }
            let names: Vec<&str> = waits.iter().map(|(s, _, _)| s.component.name()).collect();
            self.set_phase(
                NodePhase::WaitingForKubelet,
                "WaitingForKubelet",
                format!(
                    "waiting for kubelet to run {} of revision {rev}",
                    names.join(" and ")
                ),
            );
            let newer = self.superseded(spec_digest(spec));
            let verdicts = tokio::select! {
                v = self.wait_group(&waits, min_ready) => v,
                () = newer => {
                    tracing::info!(components = ?names, "a newer node spec arrived: no longer waiting for revision {rev}");
                    return Outcome::Superseded;
                }
            };
            for (step, verdict) in verdicts {
                let c = step.component;
                match verdict {
                    Verdict::Updated { observed_hash } => {
                        if let Some(cs) = self.state.components.get_mut(&c) {
                            cs.confirmed = true;
                            if cs.config_hash.is_none() {
                                cs.config_hash = observed_hash.clone();
                            }
                        }
                        self.save();
                        self.confirmed_status(c, step.expect.expected(), observed_hash);
                        tracing::info!(component = %c, "updated and healthy");
                    }
                    Verdict::TimedOut(diag) => {
                        let restore_timeout = restore_timeout(step.timeout);
                        return self
                            .start_rollback(&rev, c, diag, restore_timeout, min_ready)
                            .await;
                    }
                }
            }
        }
        self.state.applied_revision = Some(rev.clone());
        if !wait {
            self.set_phase(
                NodePhase::WaitingForKubelet,
                "NotWaited",
                format!("revision {rev} written; not waiting for kubelet (--no-wait)"),
            );
            return Outcome::Written;
        }
        self.healthy(
            &rev,
            format!("revision {rev}: every component updated and healthy"),
        )
    }

    /// Pulls, through the container runtime, every image a manifest about to be written
    /// names and the runtime does not have (one at a time, each within
    /// [`IMAGE_PULL_TIMEOUT`], the phase saying which). A failed pull fails the revision
    /// (`ImagePullFailed`) before any file is written. Without a runtime, or one that cannot
    /// say whether it has an image, nothing is pulled ahead (kubelet pulls, as before). An
    /// `imagePullPolicy: Never` image that is missing is left to kubelet, which reports it.
    async fn pull_images(&mut self, rev: &str, steps: &[Step]) -> Result<(), Outcome> {
        let Some(runtime) = self.runtime.clone() else {
            return Ok(());
        };
        let mut wanted: Vec<(Component, String)> = Vec::new();
        for s in steps.iter().filter(|s| matches!(s.action, Action::Write)) {
            for image in images_to_pull(&s.bytes) {
                if !wanted.iter().any(|(_, i)| *i == image) {
                    wanted.push((s.component, image));
                }
            }
        }
        let mut missing = Vec::new();
        for (c, image) in wanted {
            match runtime.image_present(&image).await {
                Ok(true) => {}
                Ok(false) => missing.push((c, image)),
                Err(e) => {
                    tracing::info!(%image, error = %e, "cannot ask the container runtime for images; kubelet pulls them");
                    return Ok(());
                }
            }
        }
        let total = missing.len();
        for (i, (c, image)) in missing.into_iter().enumerate() {
            let message = format!(
                "pulling {image} for {c} ({} of {total}) before writing revision {rev}",
                i + 1
            );
            tracing::info!(%image, component = %c, "pulling the image before the write");
            self.set_phase(NodePhase::Pending, "PullingImage", message);
            let started = std::time::Instant::now();
            if let Err(e) = runtime.pull_image(&image, IMAGE_PULL_TIMEOUT).await {
                return Err(self.fail(
                    FailureReason::ImagePullFailed,
                    Some(c),
                    format!(
                        "{e}; nothing was written, the node runs what it ran: make the image pullable by the container runtime (registry, name, credentials in its configuration) or load it on the node, then change the ControlPlaneConfig for a new revision"
                    ),
                ));
            }
            tracing::info!(%image, seconds = started.elapsed().as_secs_f64(), "image pulled");
        }
        Ok(())
    }

    /// Sets the phase the settled lifecycle stands for (its detailed message was overwritten).
    fn restate_settlement(&mut self) {
        let Lifecycle::Settled {
            revision,
            settlement,
        } = self.state.lifecycle.clone()
        else {
            return;
        };
        match settlement {
            Settlement::Healthy => self.set_phase(
                NodePhase::Healthy,
                "Healthy",
                format!("revision {revision}: every component updated and healthy"),
            ),
            Settlement::RolledBack {
                failed_component,
                reason,
                restored,
            } => self.set_phase(
                NodePhase::RolledBack,
                reason.as_str(),
                format!(
                    "revision {revision}: {failed_component} did not become healthy ({reason}); revision {restored} was restored"
                ),
            ),
            Settlement::Failed { reason } => self.set_phase(
                NodePhase::Failed,
                reason.as_str(),
                format!("revision {revision} failed ({reason})"),
            ),
        }
    }

    fn healthy(&mut self, rev: &str, message: impl Into<String>) -> Outcome {
        self.state.applied_revision = Some(rev.to_string());
        self.state.last_known_good_revision = Some(rev.to_string());
        self.state.lifecycle = Lifecycle::Settled {
            revision: rev.to_string(),
            settlement: Settlement::Healthy,
        };
        self.set_phase(NodePhase::Healthy, "Healthy", message);
        let mut protect: Vec<&str> = vec![rev];
        if let Some(b) = self.state.baseline_revision.as_deref() {
            protect.push(b);
        }
        let revs: Vec<String> = self
            .state
            .components
            .values()
            .map(|c| c.revision.clone())
            .collect();
        protect.extend(revs.iter().map(String::as_str));
        if let Err(e) = self.history.rotate(&protect) {
            tracing::warn!(error = %e, "could not rotate history");
        }
        Outcome::Healthy
    }

    /// Settles the current attempt `Failed`; a failure of a component (not of the spec) is
    /// remembered so the revision is not tried again on this node.
    fn fail(
        &mut self,
        reason: FailureReason,
        component: Option<Component>,
        message: impl Into<String>,
    ) -> Outcome {
        let message = message.into();
        let revision = self.state.target_revision.clone().unwrap_or_default();
        if let Some(digest) = self.state.target_digest.clone() {
            self.state.remember_failure(FailedRevision {
                revision: revision.clone(),
                digest,
                component,
                reason,
                at: now().0.to_string(),
            });
        }
        self.state.lifecycle = Lifecycle::Settled {
            revision,
            settlement: Settlement::Failed { reason },
        };
        self.set_phase(NodePhase::Failed, reason.as_str(), message.clone());
        Outcome::Failed {
            reason: reason.as_str().into(),
            message,
        }
    }

    fn settled_outcome(&self) -> Outcome {
        let message = self.state.message.clone().unwrap_or_default();
        match &self.state.lifecycle {
            Lifecycle::Settled {
                settlement: Settlement::RolledBack { reason, .. },
                ..
            } => Outcome::RolledBack {
                reason: reason.as_str().into(),
                message,
            },
            Lifecycle::Settled {
                settlement: Settlement::Failed { reason },
                ..
            } => Outcome::Failed {
                reason: reason.as_str().into(),
                message,
            },
            _ => Outcome::Healthy,
        }
    }

    /// Decides what to do with each component, kube-apiserver first ([`plan::plan`]).
    fn plan(&self, spec: &ControlPlaneNodeSpec) -> Result<Vec<Step>, String> {
        plan::plan(spec, &self.state.components, &self.node, &self.dirs)
    }

    fn record_baseline(&mut self, spec: &ControlPlaneNodeSpec) -> Result<(), String> {
        let mut manifests = BTreeMap::new();
        let mut any = false;
        for m in &spec.manifests {
            let bytes = self
                .dirs
                .read_manifest(m.component.manifest_file())
                .map_err(|e| e.to_string())?;
            any |= bytes.is_some();
            manifests.insert(m.component, bytes);
        }
        if !any {
            return Ok(());
        }
        let mut files = BTreeMap::new();
        for f in &spec.files {
            if let Ok(Some(b)) = self.dirs.read_side_file(std::path::Path::new(&f.path)) {
                files.insert(f.path.clone(), b);
            }
        }
        self.history
            .record(&RevisionFiles {
                revision: BASELINE.into(),
                manifests,
                files,
            })
            .map_err(|e| e.to_string())?;
        self.state.baseline_revision = Some(BASELINE.into());
        tracing::info!("recorded the manifests found on disk as history entry {BASELINE}");
        Ok(())
    }

    async fn resolve_files(
        &self,
        spec: &ControlPlaneNodeSpec,
    ) -> Result<Vec<(String, Vec<u8>)>, FileProblem> {
        let mut out = Vec::new();
        for f in &spec.files {
            let path = std::path::Path::new(&f.path);
            self.dirs
                .check_side_file_path(path)
                .map_err(|e| FileProblem::Invalid(format!("spec.files: {e}")))?;
            let bytes = match &f.source {
                FileSource::Inline(s) => {
                    let b = s.clone().into_bytes();
                    if sha256_hex(&b) != f.sha256 {
                        return Err(FileProblem::Invalid(format!(
                            "spec.files {}: the inline content's SHA-256 is {}, not the recorded {}",
                            f.path,
                            sha256_hex(&b),
                            f.sha256
                        )));
                    }
                    b
                }
                FileSource::Secret(r) => {
                    let on_disk = self.dirs.read_side_file(path).ok().flatten();
                    match on_disk.filter(|b| sha256_hex(b) == f.sha256) {
                        Some(b) => b,
                        None => {
                            let b = self.secrets.get(r).await.map_err(|e| {
                                FileProblem::Wait("SecretUnavailable", format!("{}: {e}", f.path))
                            })?;
                            let got = sha256_hex(&b);
                            if got != f.sha256 {
                                return Err(FileProblem::Wait(
                                    "SecretChanged",
                                    format!(
                                        "Secret {}/{} key {} now has SHA-256 {got}, but revision {} was rendered with {}: the Secret changed after rendering; nothing was written, waiting for a revision rendered from the current Secret",
                                        r.namespace.as_deref().unwrap_or("kube-system"),
                                        r.name,
                                        r.key
                                            .as_deref()
                                            .unwrap_or(render::defaults::ENCRYPTION_SECRET_KEY),
                                        spec.revision,
                                        f.sha256
                                    ),
                                ));
                            }
                            b
                        }
                    }
                }
            };
            out.push((f.path.clone(), bytes));
        }
        Ok(out)
    }

    async fn wait_component(
        &self,
        c: Component,
        expect: Expect,
        pod: &Pod,
        timeout: Duration,
        min_ready: Duration,
        written_at: SystemTime,
    ) -> Verdict {
        let endpoint = Endpoint::from_pod(pod, LOCAL_HOST);
        let ws = WaitSpec {
            component: c,
            pod_name: c.mirror_pod_name(&self.node),
            expect,
            endpoint,
            timeout,
            min_ready,
            use_api: self.pods.is_some(),
            written_at,
        };
        let board = self.board.clone();
        let span = tracing::info_span!("wait", component = %c);
        kubelet_wait::wait(
            ws,
            self.pods.as_deref(),
            self.runtime.as_deref(),
            &*self.health,
            |st| {
                let st = st.clone();
                board.update(
                    |s| match s.components.iter_mut().find(|x| x.name == st.name) {
                        Some(x) => *x = st,
                        None => s.components.push(st),
                    },
                );
            },
        )
        .instrument(span)
        .await
    }

    /// Waits for the components of one group at once. Returns their verdicts in the order
    /// they came, ending with the first `TimedOut` (the others are no longer waited for: the
    /// whole revision is rolled back anyway).
    async fn wait_group<'s>(
        &self,
        waits: &[(&'s Step, SystemTime, Duration)],
        min_ready: Duration,
    ) -> Vec<(&'s Step, Verdict)> {
        use futures::StreamExt as _;
        let mut pending: futures::stream::FuturesUnordered<_> = waits
            .iter()
            .map(|(step, written_at, timeout)| async move {
                let v = self
                    .wait_component(
                        step.component,
                        step.expect.clone(),
                        &step.pod,
                        *timeout,
                        min_ready,
                        *written_at,
                    )
                    .await;
                (*step, v)
            })
            .collect();
        let mut out = Vec::new();
        while let Some((step, v)) = pending.next().await {
            let failed = matches!(v, Verdict::TimedOut(_));
            out.push((step, v));
            if failed {
                break;
            }
        }
        out
    }

    /// `failed` of revision `rev` did not become healthy: records (write-ahead) that
    /// last-known-good (or the pre-kubeplane baseline) is being restored, then restores it.
    async fn start_rollback(
        &mut self,
        rev: &str,
        failed: Component,
        diag: Diagnosis,
        timeout: Duration,
        min_ready: Duration,
    ) -> Outcome {
        let target = self
            .state
            .last_known_good_revision
            .clone()
            .filter(|l| l != rev)
            .or_else(|| self.state.baseline_revision.clone());
        let Some(target) = target else {
            return self.fail(
                diag.reason,
                Some(failed),
                format!(
                    "{}; there is no last-known-good revision to restore, so revision {rev} stays on disk: fix the ControlPlaneConfig (a new revision is a new attempt)",
                    diag.message
                ),
            );
        };
        self.board.event(AgentEvent::warning(
            "RollingBack",
            "Rollback",
            format!("{}; restoring {}", diag.message, describe_target(&target)),
        ));
        self.state.lifecycle = Lifecycle::RollingBack {
            failed_revision: rev.to_string(),
            failed_component: failed,
            reason: diag.reason,
            message: diag.message.clone(),
            to_revision: target,
            since: now().0.to_string(),
            timeout_seconds: timeout.as_secs(),
            min_ready_seconds: min_ready.as_secs(),
        };
        // The drift handler restores last-known-good from now on, never the failed revision.
        self.restore_desired();
        self.save();
        self.finish_rollback().await
    }

    /// Finishes the rollback the state records: writes the restore bytes where the disk
    /// differs, waits for each restored component, settles `RolledBack` or `Failed`. Needs
    /// nothing but state and history: a restarted agent runs it before anything else,
    /// without the API.
    async fn finish_rollback(&mut self) -> Outcome {
        let Lifecycle::RollingBack {
            failed_revision,
            failed_component,
            reason,
            message,
            to_revision,
            since,
            timeout_seconds,
            min_ready_seconds,
        } = self.state.lifecycle.clone()
        else {
            return self.settled_outcome();
        };
        let span = tracing::warn_span!("rollback", component = %failed_component, revision = %failed_revision, to = %to_revision);
        self.finish_rollback_inner(RollbackPlan {
            failed_revision,
            failed_component,
            reason,
            message,
            to_revision,
            since: parse_time(&since).unwrap_or_else(SystemTime::now),
            timeout: Duration::from_secs(timeout_seconds.max(1)),
            min_ready: Duration::from_secs(min_ready_seconds),
        })
        .instrument(span)
        .await
    }

    async fn finish_rollback_inner(&mut self, p: RollbackPlan) -> Outcome {
        let what = describe_target(&p.to_revision);
        self.state.target_revision = Some(p.failed_revision.clone());
        self.set_phase(
            NodePhase::Applying,
            "RollingBack",
            format!("{}; restoring {what}", p.message),
        );
        let files = match self.history.load(&p.to_revision) {
            Ok(Some(f)) => f,
            Ok(None) => {
                return self.fail(
                    FailureReason::LastKnownGoodMissing,
                    Some(p.failed_component),
                    format!(
                        "{}; {what} is not in {} any more, so nothing could be restored",
                        p.message,
                        self.dirs.history_dir().display()
                    ),
                );
            }
            Err(e) => {
                return self.fail(
                    FailureReason::LastKnownGoodMissing,
                    Some(p.failed_component),
                    format!("{}; {what} could not be read: {e}", p.message),
                );
            }
        };
        for (path, bytes) in &files.files {
            let fp = std::path::Path::new(path);
            if self.dirs.read_side_file(fp).ok().flatten().as_deref() != Some(bytes.as_slice()) {
                if let Err(e) = self.dirs.write_side_file(fp, bytes) {
                    return self.fail(
                        FailureReason::RestoreFailed,
                        Some(p.failed_component),
                        format!("{}; restoring {path} failed: {e}", p.message),
                    );
                }
                self.state.files.insert(path.clone(), sha256_hex(bytes));
            }
        }

        let restore = restore_set(&files, &p.failed_revision, &self.node, |c| {
            self.dirs.read_manifest(c.manifest_file()).ok().flatten()
        });
        let mut to_wait: Vec<(Component, String, Pod)> = Vec::new();
        for (c, entry) in restore {
            match entry {
                Restore::Remove => {
                    let result = {
                        let mut g = self.desired.lock();
                        let managed = {
                            let mut m = g.managed();
                            if !m.contains(&c) {
                                m.push(c);
                            }
                            m
                        };
                        g.remove(c);
                        self.dirs.remove_manifest(c.manifest_file(), &managed)
                    };
                    if let Err(e) = result {
                        return self.fail(
                            FailureReason::RestoreFailed,
                            Some(p.failed_component),
                            format!("{}; removing {c}: {e}", p.message),
                        );
                    }
                    self.state.components.remove(&c);
                }
                Restore::Unchanged(bytes) => {
                    // Never touched by the failed revision: left running as it is.
                    self.desired.lock().set(c, bytes.clone());
                    let sha = sha256_hex(&bytes);
                    let keep = self
                        .state
                        .components
                        .get(&c)
                        .is_some_and(|s| s.content_sha256 == sha);
                    if !keep {
                        let uid = parse_pod(&bytes).and_then(|p| p.metadata.uid);
                        self.state.components.insert(
                            c,
                            ComponentState {
                                revision: p.to_revision.clone(),
                                content_sha256: sha,
                                rendered_hash: uid.clone(),
                                config_hash: uid,
                                adopted: p.to_revision == BASELINE,
                                confirmed: true,
                                ..Default::default()
                            },
                        );
                    }
                }
                Restore::Write { bytes, uid } => {
                    let sha = sha256_hex(&bytes);
                    let disk = self.dirs.read_manifest(c.manifest_file()).ok().flatten();
                    let result = {
                        let mut g = self.desired.lock();
                        g.set(c, bytes.clone());
                        let managed = g.managed();
                        if disk.as_deref() == Some(bytes.as_slice()) {
                            Ok(())
                        } else {
                            self.dirs
                                .write_manifest(c.manifest_file(), &managed, &bytes)
                                .map(|_| ())
                        }
                    };
                    if let Err(e) = result {
                        return self.fail(
                            FailureReason::RestoreFailed,
                            Some(p.failed_component),
                            format!("{}; restoring {c}: {e}", p.message),
                        );
                    }
                    let confirmed = self
                        .state
                        .components
                        .get(&c)
                        .is_some_and(|s| s.confirmed && s.content_sha256 == sha);
                    self.state.components.insert(
                        c,
                        ComponentState {
                            revision: p.to_revision.clone(),
                            content_sha256: sha,
                            rendered_hash: Some(uid.clone()),
                            config_hash: Some(uid.clone()),
                            adopted: p.to_revision == BASELINE,
                            confirmed,
                            ..Default::default()
                        },
                    );
                    if !confirmed {
                        let pod = parse_pod(&bytes).unwrap_or_default();
                        to_wait.push((c, uid, pod));
                    }
                }
            }
        }
        self.state.applied_revision = Some(p.to_revision.clone());
        self.save();
        self.set_phase(
            NodePhase::WaitingForKubelet,
            "RollingBack",
            format!("{}; restored {what}, waiting for it", p.message),
        );

        for (c, uid, pod) in to_wait {
            // A resumed rollback gets what is left of its timeout (but enough to observe).
            let elapsed = SystemTime::now()
                .duration_since(p.since)
                .unwrap_or_default();
            let timeout = if elapsed < Duration::from_secs(1) {
                p.timeout
            } else {
                p.timeout
                    .saturating_sub(elapsed)
                    .max(p.min_ready + RESUME_GRACE)
                    .min(p.timeout)
            };
            match self
                .wait_component(
                    c,
                    Expect::Hash(uid.clone()),
                    &pod,
                    timeout,
                    p.min_ready,
                    p.since,
                )
                .await
            {
                Verdict::Updated { observed_hash } => {
                    if let Some(cs) = self.state.components.get_mut(&c) {
                        cs.confirmed = true;
                    }
                    self.save();
                    self.confirmed_status(c, Some(uid.clone()), observed_hash);
                }
                Verdict::TimedOut(d2) => {
                    return self.fail(
                        FailureReason::LastKnownGoodUnhealthy,
                        Some(p.failed_component),
                        format!(
                            "{}; restored {what}, but it did not come back either: {}",
                            p.message, d2.message
                        ),
                    );
                }
            }
        }
        for cs in self.state.components.values_mut() {
            cs.confirmed = true;
        }
        if let Some(digest) = self.state.target_digest.clone() {
            self.state.remember_failure(FailedRevision {
                revision: p.failed_revision.clone(),
                digest,
                component: Some(p.failed_component),
                reason: p.reason,
                at: now().0.to_string(),
            });
        }
        self.state.lifecycle = Lifecycle::Settled {
            revision: p.failed_revision.clone(),
            settlement: Settlement::RolledBack {
                failed_component: p.failed_component,
                reason: p.reason,
                restored: p.to_revision.clone(),
            },
        };
        let message = format!("{}; restored {what}, healthy again", p.message);
        self.set_phase(NodePhase::RolledBack, p.reason.as_str(), message.clone());
        Outcome::RolledBack {
            reason: p.reason.as_str().to_string(),
            message,
        }
    }

    /// Restarts the components whose certificates changed on disk since their last start,
    /// by bumping the restart annotation, and waits for each. Returns the restarted ones.
    pub async fn restart_for_certificates(&mut self) -> Vec<Component> {
        let Some(spec) = self.spec.clone() else {
            return Vec::new();
        };
        let infos = self.read_certificates();
        let mut restarted = Vec::new();
        for c in Component::ALL {
            let now = certs::digests(c, &infos);
            let Some(cs) = self.state.components.get(&c).cloned() else {
                continue;
            };
            if cs.certificates == now {
                continue;
            }
            // Only a certificate whose known content changed restarts; one seen for the first
            // time (or readable again) is just remembered.
            let changed: Vec<String> = now
                .iter()
                .filter(|(p, d)| cs.certificates.get(*p).is_some_and(|old| old != *d))
                .map(|(p, _)| p.clone())
                .collect();
            if changed.is_empty() || !cs.confirmed {
                if let Some(x) = self.state.components.get_mut(&c) {
                    x.certificates = now;
                }
                self.save();
                continue;
            }
            let base = self
                .history
                .load(&cs.revision)
                .ok()
                .flatten()
                .and_then(|r| r.manifests.get(&c).cloned().flatten());
            let Some(base) = base else {
                tracing::warn!(component = %c, "certificate changed but the manifest is not in history; not restarting");
                continue;
            };
            let value = certs::restart_value(&now);
            let (bytes, uid) = match certs::with_restart_annotation(&base, &value, &self.node) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(component = %c, error = %e, "cannot add the restart annotation");
                    continue;
                }
            };
            let span = tracing::info_span!("certificate_restart", component = %c);
            let _g = span.enter();
            self.board.event(AgentEvent::normal(
                "CertificateRestart",
                "Restart",
                format!(
                    "{} changed on disk; restarting {c} so it loads the new certificate ({}: {value})",
                    changed.join(", "),
                    certs::RESTART_ANNOTATION
                ),
            ));
            let result = {
                let mut g = self.desired.lock();
                g.set(c, bytes.clone());
                let managed = g.managed();
                self.dirs
                    .write_manifest(c.manifest_file(), &managed, &bytes)
            };
            if let Err(e) = result {
                self.board.event(AgentEvent::warning(
                    "CertificateRestartFailed",
                    "Restart",
                    format!("could not write {}: {e}", c.manifest_file()),
                ));
                continue;
            }
            if let Some(x) = self.state.components.get_mut(&c) {
                x.restart_annotation = Some(value);
                x.content_sha256 = sha256_hex(&bytes);
                x.config_hash = Some(uid.clone());
                x.confirmed = false;
                x.certificates = now;
            }
            self.save();
            drop(_g);
            let timeout = spec
                .manifests
                .iter()
                .find(|m| m.component == c)
                .map_or(DEFAULT_TIMEOUT, |m| timeout_of(m.health_timeout_seconds));
            let pod = parse_pod(&bytes).unwrap_or_default();
            let min_ready = Duration::from_secs(spec.min_ready_seconds.max(0) as u64);
            match self
                .wait_component(
                    c,
                    Expect::Hash(uid),
                    &pod,
                    timeout,
                    min_ready,
                    SystemTime::now(),
                )
                .await
            {
                Verdict::Updated { .. } => {
                    if let Some(x) = self.state.components.get_mut(&c) {
                        x.confirmed = true;
                    }
                    self.save();
                    self.board.event(AgentEvent::normal(
                        "CertificateRestarted",
                        "Restart",
                        format!("{c} restarted with the renewed certificate and is healthy"),
                    ));
                }
                Verdict::TimedOut(d) => {
                    self.board.event(AgentEvent::warning(
                        "CertificateRestartUnhealthy",
                        "Restart",
                        format!(
                            "{}; the manifest was not rolled back because the old one would load the same new certificate: check the certificate",
                            d.message
                        ),
                    ));
                }
            }
            restarted.push(c);
        }
        restarted
    }
}

/// The annotation a restored manifest carries: the revision whose failure it undoes. It
/// changes the manifest's `metadata.uid`, so kubelet starts the restored Pod as a new pod
/// (kubelet does not start again a static pod uid it has just terminated; OpenShift's
/// startup-monitor fallback mints a fresh uid for the same reason).
pub const RESTORED_ANNOTATION: &str = "kubeplane.io/restored-after";

/// Time a resumed wait gets beyond `minReadySeconds` when little of its timeout is left.
const RESUME_GRACE: Duration = Duration::from_secs(30);

/// A rollback as the state records it.
struct RollbackPlan {
    failed_revision: String,
    failed_component: Component,
    reason: FailureReason,
    message: String,
    to_revision: String,
    since: SystemTime,
    timeout: Duration,
    min_ready: Duration,
}

/// What a rollback does with one component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The restored revision had no file for it: remove the file.
    Remove,
    /// The file on disk is the restored revision's, untouched: leave it running.
    Unchanged(Vec<u8>),
    /// Write these bytes (the restored revision's manifest with [`RESTORED_ANNOTATION`] and a
    /// fresh uid) and wait for `uid`.
    Write {
        /// The bytes.
        bytes: Vec<u8>,
        /// Their `metadata.uid`.
        uid: String,
    },
}

/// The steps of a node in groups applied as one: kube-apiserver alone first (the others need
/// the API), then kube-controller-manager and kube-scheduler together (they depend on the
/// API, not on each other). `steps` are in component order.
fn step_groups(steps: &[Step]) -> Vec<&[Step]> {
    let split = steps
        .iter()
        .position(|s| s.component != Component::ApiServer)
        .unwrap_or(steps.len());
    let (api, rest) = steps.split_at(split);
    [api, rest].into_iter().filter(|g| !g.is_empty()).collect()
}

/// The restored manifest: `bytes` with [`RESTORED_ANNOTATION`]`=failed_revision` and its uid
/// recomputed. Deterministic, so a resumed rollback computes the same bytes. A file that does
/// not parse (a hand-made baseline) is restored as it was.
pub fn restored_manifest(
    bytes: &[u8],
    failed_revision: &str,
    node: &str,
) -> (Vec<u8>, Option<String>) {
    let Ok(mut pod) = super::files::parse_pod(bytes) else {
        return (bytes.to_vec(), None);
    };
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(RESTORED_ANNOTATION.to_string(), failed_revision.to_string());
    let uid = render::stamp_uid(&mut pod, node);
    match render::pod_to_yaml(&pod) {
        Ok(y) => (y.into_bytes(), Some(uid)),
        Err(_) => (bytes.to_vec(), None),
    }
}

/// What a rollback to `files` does with each component, given what is on disk: a file still
/// exactly the restored revision's is left alone; any other is replaced by the restored
/// manifest (fresh uid). Pure; the same inputs give the same plan, before and after a crash.
pub fn restore_set(
    files: &RevisionFiles,
    failed_revision: &str,
    node: &str,
    disk: impl Fn(Component) -> Option<Vec<u8>>,
) -> Vec<(Component, Restore)> {
    let mut out = Vec::new();
    for c in Component::ALL {
        let Some(entry) = files.manifests.get(&c) else {
            continue;
        };
        match entry {
            None => out.push((c, Restore::Remove)),
            Some(bytes) => {
                if disk(c).as_deref() == Some(bytes.as_slice()) {
                    out.push((c, Restore::Unchanged(bytes.clone())));
                    continue;
                }
                match restored_manifest(bytes, failed_revision, node) {
                    (b, Some(uid)) => out.push((c, Restore::Write { bytes: b, uid })),
                    // Not a Pod we can stamp: put it back as it was; kubelet computes a hash.
                    (b, None) => out.push((c, Restore::Unchanged(b))),
                }
            }
        }
    }
    out
}

fn describe_target(target: &str) -> String {
    if target == BASELINE {
        format!("the manifests found before kubeplane's first write (history entry {BASELINE})")
    } else {
        format!("last-known-good revision {target}")
    }
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

enum FileProblem {
    /// Something outside may change (a Secret): report and wait.
    Wait(&'static str, String),
    /// The spec itself is wrong.
    Invalid(String),
}
