//! `<state-dir>/state.json`: what the agent applied, what was last known good, and per
//! component what it expects kubelet to report. Written atomically; survives agent restarts
//! and reboots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{self, FileError};
use crate::api::{Component, NodePhase};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// Everything the agent must remember across restarts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// Format version.
    #[serde(default)]
    pub version: u32,
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
        match serde_json::from_slice::<AgentState>(&bytes) {
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
