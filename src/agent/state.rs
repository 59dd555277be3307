//! `<state-dir>/state.json`: what the agent applied, what was last known good, and per
//! component what it expects kubelet to report. Written atomically; survives agent restarts
//! and reboots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{self, FileError};
use crate::api::{Component, NodePhase};

/// Version of the state file format (2: the typed [`Lifecycle`] and the failed revisions).
pub const STATE_VERSION: u32 = 2;

/// How many failed revisions a node remembers.
pub const FAILED_REVISIONS_KEPT: usize = 10;

/// Why a revision did not become healthy, or could not be applied or restored. Written to
/// status as the phase's `reason` ([`FailureReason::as_str`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The mirror pod kept the old `kubernetes.io/config.hash`: kubelet did not run the file.
    HashNeverChanged,
    /// The mirror pod does not exist (kubelet stopped the component, or never started it).
    MirrorPodMissing,
    /// The mirror pod has the new hash but is not Ready.
    PodNotReady,
    /// The component's local endpoint does not answer or answers with an error.
    EndpointFailing,
    /// Healthy only intermittently, never for `minReadySeconds` in a row.
    NotStable,
    /// The API server was unavailable and nothing else could tell.
    ApiUnavailable,
    /// The container runtime shows no container of the new manifest's uid.
    ContainerNotStarted,
    /// The container of the new manifest's uid exited.
    ContainerExited,
    /// The node spec itself is unusable.
    InvalidSpec,
    /// A file could not be written.
    WriteFailed,
    /// History could not be written (nothing was written to the manifest directory).
    HistoryNotWritten,
    /// Restoring last-known-good failed.
    RestoreFailed,
    /// Last-known-good is not in history.
    LastKnownGoodMissing,
    /// Last-known-good was restored but did not become healthy either.
    LastKnownGoodUnhealthy,
    /// The revision failed and there is nothing to restore.
    NoLastKnownGood,
    /// An image of the revision could not be pulled before any file was written.
    ImagePullFailed,
}

impl FailureReason {
    /// The reason as written in status and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::HashNeverChanged => "HashNeverChanged",
            FailureReason::MirrorPodMissing => "MirrorPodMissing",
            FailureReason::PodNotReady => "PodNotReady",
            FailureReason::EndpointFailing => "EndpointFailing",
            FailureReason::NotStable => "NotStable",
            FailureReason::ApiUnavailable => "ApiUnavailable",
            FailureReason::ContainerNotStarted => "ContainerNotStarted",
            FailureReason::ContainerExited => "ContainerExited",
            FailureReason::InvalidSpec => "InvalidSpec",
            FailureReason::WriteFailed => "WriteFailed",
            FailureReason::HistoryNotWritten => "HistoryNotWritten",
            FailureReason::RestoreFailed => "RestoreFailed",
            FailureReason::LastKnownGoodMissing => "LastKnownGoodMissing",
            FailureReason::LastKnownGoodUnhealthy => "LastKnownGoodUnhealthy",
            FailureReason::NoLastKnownGood => "NoLastKnownGood",
            FailureReason::ImagePullFailed => "ImagePullFailed",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt at a revision ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Settlement {
    /// Every managed component runs the revision and is healthy.
    Healthy,
    /// `failed_component` did not become healthy; `restored` runs again, healthy.
    #[serde(rename_all = "camelCase")]
    RolledBack {
        /// The component that failed.
        failed_component: Component,
        /// Why.
        reason: FailureReason,
        /// The revision that was restored.
        restored: String,
    },
    /// The revision could not be applied, nor last-known-good restored.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// Why.
        reason: FailureReason,
    },
}

/// The node's lifecycle: what the agent is doing, recorded (atomically, fsync) *before* each
/// side effect, so a restarted agent finishes it before anything else
/// (`docs/architecture.md` has the diagram).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Lifecycle {
    /// Nothing applied yet.
    #[default]
    Idle,
    /// About to write `component`'s manifest of `revision` (and, for the first component,
    /// the revision's side files).
    #[serde(rename_all = "camelCase")]
    Applying {
        /// Revision being applied.
        revision: String,
        /// Component about to be written.
        component: Component,
    },
    /// `component`'s manifest of `revision` is on disk since `since` (RFC 3339): waiting for
    /// kubelet to run it and for it to stay healthy.
    #[serde(rename_all = "camelCase")]
    Waiting {
        /// Revision being applied.
        revision: String,
        /// Component waited for.
        component: Component,
        /// When its file was written.
        since: String,
    },
    /// `failed_component` of `failed_revision` did not become healthy: `to_revision` is being
    /// restored (and waited for). Drift enforcement restores `to_revision` meanwhile.
    #[serde(rename_all = "camelCase")]
    RollingBack {
        /// The revision that failed.
        failed_revision: String,
        /// The component that failed.
        failed_component: Component,
        /// Why.
        reason: FailureReason,
        /// What was seen.
        message: String,
        /// The revision being restored (last-known-good, or the pre-kubeplane baseline).
        to_revision: String,
        /// When the rollback started (RFC 3339).
        since: String,
        /// How long each restored component is waited for, in seconds.
        timeout_seconds: u64,
        /// How long it must stay healthy, in seconds.
        min_ready_seconds: u64,
    },
    /// The attempt at `revision` ended.
    #[serde(rename_all = "camelCase")]
    Settled {
        /// The revision attempted.
        revision: String,
        /// How it ended.
        #[serde(flatten)]
        settlement: Settlement,
    },
}

impl Lifecycle {
    /// Whether an attempt is under way: a restarted agent resumes it first.
    pub fn in_flight(&self) -> bool {
        matches!(
            self,
            Lifecycle::Applying { .. } | Lifecycle::Waiting { .. } | Lifecycle::RollingBack { .. }
        )
    }
}

/// A revision that failed on this node: it is not tried again there until the node spec
/// changes, whatever happens to the ControlPlaneNode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailedRevision {
    /// The revision.
    pub revision: String,
    /// Digest of the node spec that failed.
    pub digest: String,
    /// The component that failed.
    pub component: Option<Component>,
    /// Why.
    pub reason: FailureReason,
    /// When (RFC 3339).
    pub at: String,
}

/// Everything the agent must remember across restarts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// What the agent is doing (write-ahead).
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Revisions that failed on this node, newest last (at most [`FAILED_REVISIONS_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_revisions: Vec<FailedRevision>,
    /// Revision of the last attempt (the phase belongs to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Digest of the last attempt's node spec (manifests, side files): a re-render with the
    /// same revision but other node facts is a new attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<String>,
    /// Phase of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// PascalCase reason of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human message of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the phase last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<String>,
    /// Revision whose files are on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// Last revision that became healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_good_revision: Option<String>,
    /// History entry holding the files found on disk before kubeplane first wrote any
    /// (restored when a first revision fails and there is no last-known-good yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_revision: Option<String>,
    /// Per managed component: what is on disk and what kubelet should report.
    #[serde(default)]
    pub components: BTreeMap<Component, ComponentState>,
    /// Side files on disk: path → SHA-256.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

impl AgentState {
    /// A state file of format 1 (no [`Lifecycle`]): the lifecycle read off its strings, so an
    /// agent upgraded in the middle of an attempt resumes it.
    fn upgrade_v1(&mut self) {
        let Some(revision) = self.target_revision.clone() else {
            return;
        };
        let failed_component = self
            .components
            .iter()
            .find(|(_, c)| c.revision == revision && !c.confirmed)
            .map(|(c, _)| *c);
        self.lifecycle = match (self.phase, self.reason.as_deref()) {
            (_, Some("RollingBack")) => {
                let to = self
                    .last_known_good_revision
                    .clone()
                    .filter(|l| *l != revision)
                    .or_else(|| self.baseline_revision.clone());
                match to {
                    Some(to_revision) => Lifecycle::RollingBack {
                        failed_revision: revision,
                        failed_component: failed_component.unwrap_or(Component::ApiServer),
                        reason: FailureReason::NotStable,
                        message: self.message.clone().unwrap_or_default(),
                        to_revision,
                        since: self.phase_since.clone().unwrap_or_default(),
                        timeout_seconds: crate::render::defaults::HEALTH_TIMEOUT_SECONDS as u64,
                        min_ready_seconds: 0,
                    },
                    None => Lifecycle::Idle,
                }
            }
            (Some(NodePhase::Healthy), _) => Lifecycle::Settled {
                revision,
                settlement: Settlement::Healthy,
            },
            (Some(NodePhase::RolledBack), _) => Lifecycle::Settled {
                revision,
                settlement: Settlement::RolledBack {
                    failed_component: failed_component.unwrap_or(Component::ApiServer),
                    reason: FailureReason::NotStable,
                    restored: self.applied_revision.clone().unwrap_or_default(),
                },
            },
            (Some(NodePhase::Failed), _) => Lifecycle::Settled {
                revision,
                settlement: Settlement::Failed {
                    reason: FailureReason::InvalidSpec,
                },
            },
            (Some(NodePhase::Applying | NodePhase::WaitingForKubelet), _) => match failed_component
            {
                Some(component) => Lifecycle::Waiting {
                    revision,
                    component,
                    since: self.phase_since.clone().unwrap_or_default(),
                },
                None => Lifecycle::Idle,
            },
            _ => Lifecycle::Idle,
        };
    }

    /// Whether `revision` with this spec digest failed on this node before.
    pub fn failed(&self, revision: &str, digest: &str) -> Option<&FailedRevision> {
        self.failed_revisions
            .iter()
            .rev()
            .find(|f| f.revision == revision && f.digest == digest)
    }

    /// Remembers a failed revision (the newest [`FAILED_REVISIONS_KEPT`] are kept).
    pub fn remember_failure(&mut self, f: FailedRevision) {
        self.failed_revisions
            .retain(|x| !(x.revision == f.revision && x.digest == f.digest));
        self.failed_revisions.push(f);
        let excess = self
            .failed_revisions
            .len()
            .saturating_sub(FAILED_REVISIONS_KEPT);
        self.failed_revisions.drain(..excess);
    }
}

/// What the agent put on disk for one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentState {
    /// History entry (revision) the file on disk comes from.
    pub revision: String,
    /// SHA-256 of the file on disk as the agent wrote or adopted it.
    pub content_sha256: String,
    /// `config_hash` of the rendered manifest this state came from (before any restart
    /// annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_hash: Option<String>,
    /// The `kubernetes.io/config.hash` kubelet reports for the file: its `metadata.uid`, or
    /// for an adopted file the hash kubelet computed, once observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The file was already on disk, equivalent to the rendered one, and left as it was.
    #[serde(default)]
    pub adopted: bool,
    /// kubelet runs this file and the component was healthy for `minReadySeconds`.
    #[serde(default)]
    pub confirmed: bool,
    /// Value of the `kubeplane.io/certificates-sha256` restart annotation added after a
    /// certificate changed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_annotation: Option<String>,
    /// SHA-256 of every certificate the component reads (path → digest), as of its last
    /// (re)start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, String>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file is not valid.
    #[error(
        "{path}: not a valid kubeplane state file ({reason}); it was moved to {moved_to} and the agent starts afresh"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
        /// Where the bad file went.
        moved_to: String,
    },
}

/// Loads and saves [`AgentState`] atomically.
#[derive(Clone, Debug)]
pub struct StateStore {
    path: PathBuf,
    staging: PathBuf,
}

/// Decodes a state file, upgrading an older format.
fn decode(bytes: &[u8]) -> Result<AgentState, serde_json::Error> {
    let mut s = serde_json::from_slice::<AgentState>(bytes)?;
    if s.version < 2 {
        s.upgrade_v1();
    }
    Ok(s)
}

impl StateStore {
    /// A store for `<state-dir>/state.json`, staging through `<state-dir>/staging`.
    pub fn new(path: impl Into<PathBuf>, staging: impl Into<PathBuf>) -> Self {
        StateStore {
            path: path.into(),
            staging: staging.into(),
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state; a missing file is the empty state. A corrupt file is moved aside
    /// (`state.json.corrupt`) and reported as [`StateError::Corrupt`]; the caller then starts
    /// from the empty state.
    pub fn load(&self) -> Result<AgentState, StateError> {
        let Some(bytes) = files::read_nofollow(&self.path)? else {
            return Ok(AgentState {
                version: STATE_VERSION,
                ..Default::default()
            });
        };
        match decode(&bytes) {
            Ok(s) => Ok(s),
            Err(e) => {
                let moved = self.path.with_extension("json.corrupt");
                std::fs::rename(&self.path, &moved).map_err(|source| FileError::Io {
                    op: "rename",
                    path: self.path.display().to_string(),
                    source,
                })?;
                Err(StateError::Corrupt {
                    path: self.path.display().to_string(),
                    reason: e.to_string(),
                    moved_to: moved.display().to_string(),
                })
            }
        }
    }

    /// Reads the state without touching the disk (for `kubeplane diff`): `None` when there is
    /// no state file, an error naming the file when it does not decode (the agent would move
    /// it aside and start from the empty state).
    pub fn peek(&self) -> Result<Option<AgentState>, String> {
        let Some(bytes) = files::read_nofollow(&self.path).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Saves the state atomically. Nothing is written when the file already holds exactly
    /// this state, so an idle agent or a repeated `kubeplane apply` leaves the disk alone.
    /// Returns whether the file was written.
    pub fn save(&self, state: &AgentState) -> Result<bool, StateError> {
        let mut state = state.clone();
        state.version = STATE_VERSION;
        let mut bytes = serde_json::to_vec_pretty(&state).unwrap_or_default();
        bytes.push(b'\n');
        if files::read_nofollow(&self.path)?.as_deref() == Some(&bytes[..]) {
            return Ok(false);
        }
        files::atomic_write(&self.staging, &self.path, &bytes)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, StateStore) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("staging")).unwrap();
        let s = StateStore::new(t.path().join("state.json"), t.path().join("staging"));
        (t, s)
    }

    #[test]
    fn missing_file_is_empty_state_and_round_trips() {
        let (_t, s) = store();
        let mut st = s.load().unwrap();
        assert_eq!(st.applied_revision, None);
        st.applied_revision = Some("abc".into());
        st.phase = Some(NodePhase::Healthy);
        st.components.insert(
            Component::Scheduler,
            ComponentState {
                revision: "abc".into(),
                content_sha256: "00".into(),
                config_hash: Some("h".into()),
                confirmed: true,
                ..Default::default()
            },
        );
        assert!(s.save(&st).unwrap());
        // A second store over the same file (a restarted agent) reads the same state.
        let again = StateStore::new(s.path(), s.path().parent().unwrap().join("staging"));
        let loaded = again.load().unwrap();
        assert_eq!(loaded.components, st.components);
        assert_eq!(loaded.phase, Some(NodePhase::Healthy));
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(text.contains("\"kube-scheduler\""), "{text}");
    }

    #[test]
    fn saving_the_same_state_does_not_touch_the_file() {
        use std::os::unix::fs::MetadataExt;
        let (_t, s) = store();
        let st = AgentState {
            applied_revision: Some("r1".into()),
            ..Default::default()
        };
        assert!(s.save(&st).unwrap());
        let ino = std::fs::metadata(s.path()).unwrap().ino();
        assert!(!s.save(&st).unwrap());
        assert_eq!(std::fs::metadata(s.path()).unwrap().ino(), ino);
        let st2 = AgentState {
            applied_revision: Some("r2".into()),
            ..Default::default()
        };
        assert!(s.save(&st2).unwrap());
        assert_ne!(std::fs::metadata(s.path()).unwrap().ino(), ino);
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_reported() {
        let (t, s) = store();
        std::fs::write(s.path(), "{not json").unwrap();
        let e = s.load().unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert!(t.path().join("state.json.corrupt").exists());
        assert_eq!(s.load().unwrap().applied_revision, None);
    }
}
