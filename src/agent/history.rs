//! `<state-dir>/history/<revision>/`: the last N revisions of every managed file, so the
//! last-known-good revision is always restorable.
//!
//! Layout of one entry: `meta.json` (sequence number, which manifests were present, their
//! digests), `manifests/<component>.yaml`, and `files/<path below <state-dir>/files>`. An
//! entry is written into `staging/` and renamed into place whole, so a crash leaves either no
//! entry or a complete one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{self, FileError, NodeDirs};
use crate::api::Component;
use crate::render::sha256_hex;

/// Name of the history entry holding the files found before kubeplane first wrote any.
pub const BASELINE: &str = "pre-kubeplane";

/// The files of one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionFiles {
    /// Revision name.
    pub revision: String,
    /// Manifest bytes per component; `None` when the revision had no file for it.
    pub manifests: BTreeMap<Component, Option<Vec<u8>>>,
    /// Side files: absolute path → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    revision: String,
    sequence: u64,
    /// Component → SHA-256 of its manifest, `None` when absent.
    manifests: BTreeMap<Component, Option<String>>,
    /// Side file path → SHA-256.
    files: BTreeMap<String, String>,
}

/// Why history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file operation failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// An entry is damaged.
    #[error("history entry {path}: {reason}")]
    Damaged {
        /// The entry.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The history directory.
#[derive(Clone, Debug)]
pub struct History {
    dir: PathBuf,
    staging: PathBuf,
    files_dir: PathBuf,
    keep: usize,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HistoryError + 'a {
    move |source| {
        HistoryError::File(FileError::Io {
            op,
            path: path.display().to_string(),
            source,
        })
    }
}

/// A revision name usable as a directory name.
fn check_name(revision: &str) -> Result<(), HistoryError> {
    let ok = !revision.is_empty()
        && revision.len() <= 100
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !revision.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(HistoryError::Damaged {
            path: revision.to_string(),
            reason: "a revision name must be 1-100 characters of [A-Za-z0-9._-], not starting with a dot".into(),
        })
    }
}

impl History {
    /// History under the node's state directory, keeping `keep` entries (at least 1).
    pub fn new(dirs: &NodeDirs, keep: usize) -> Self {
        History {
            dir: dirs.history_dir(),
            staging: dirs.staging_dir(),
            files_dir: dirs.files_dir(),
            keep: keep.max(1),
        }
    }

    /// Whether an entry exists.
    pub fn contains(&self, revision: &str) -> bool {
        check_name(revision).is_ok() && self.dir.join(revision).join("meta.json").is_file()
    }

    /// Records the files of a revision, unless an entry with the same name exists already
    /// (a revision's files never change). Returns whether an entry was written.
    pub fn record(&self, rev: &RevisionFiles) -> Result<bool, HistoryError> {
        check_name(&rev.revision)?;
        let entry = self.dir.join(&rev.revision);
        if entry.join("meta.json").is_file() {
            return Ok(false);
        }
        let sequence = self
            .entries()?
            .iter()
            .map(|m| m.sequence)
            .max()
            .unwrap_or(0)
            + 1;
        let tmp = self.staging.join(format!("history-{}", rev.revision));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("manifests")).map_err(io("mkdir", &tmp))?;
        let mut meta = Meta {
            revision: rev.revision.clone(),
            sequence,
            ..Default::default()
        };
        for (component, content) in &rev.manifests {
            meta.manifests
                .insert(*component, content.as_deref().map(sha256_hex));
            if let Some(bytes) = content {
                let p = tmp.join("manifests").join(component.manifest_file());
                write_plain(&p, bytes)?;
            }
        }
        for (path, bytes) in &rev.files {
            let rel = self.relative_side_path(path)?;
            let p = tmp.join("files").join(rel);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
            }
            write_plain(&p, bytes)?;
            meta.files.insert(path.clone(), sha256_hex(bytes));
        }
        let meta_bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        write_plain(&tmp.join("meta.json"), &meta_bytes)?;
        files::fsync_dir(&tmp)?;
        let _ = fs::remove_dir_all(&entry);
        fs::rename(&tmp, &entry).map_err(io("rename", &entry))?;
        files::fsync_dir(&self.dir)?;
        Ok(true)
    }

    fn relative_side_path<'p>(&self, path: &'p str) -> Result<&'p Path, HistoryError> {
        Path::new(path)
            .strip_prefix(&self.files_dir)
            .ok()
            .filter(|r| {
                !r.as_os_str().is_empty()
                    && r.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .ok_or_else(|| HistoryError::Damaged {
                path: path.to_string(),
                reason: format!("side files must live under {}", self.files_dir.display()),
            })
    }

    /// Loads an entry.
    pub fn load(&self, revision: &str) -> Result<Option<RevisionFiles>, HistoryError> {
        check_name(revision)?;
        let entry = self.dir.join(revision);
        let Some(meta) = self.meta(&entry)? else {
            return Ok(None);
        };
        let mut out = RevisionFiles {
            revision: meta.revision.clone(),
            ..Default::default()
        };
        for (component, digest) in &meta.manifests {
            let content = match digest {
                None => None,
                Some(d) => {
                    let p = entry.join("manifests").join(component.manifest_file());
                    let bytes = files::read_nofollow(&p)?.ok_or_else(|| damaged(&p, "missing"))?;
                    if &sha256_hex(&bytes) != d {
                        return Err(damaged(&p, "content does not match its recorded digest"));
                    }
                    Some(bytes)
                }
            };
            out.manifests.insert(*component, content);
        }
        for (path, digest) in &meta.files {
            let rel = self.relative_side_path(path)?;
            let p = entry.join("files").join(rel);
            let bytes = files::read_nofollow(&p)?.ok_or_else(|| damaged(&p, "missing"))?;
            if &sha256_hex(&bytes) != digest {
                return Err(damaged(&p, "content does not match its recorded digest"));
            }
            out.files.insert(path.clone(), bytes);
        }
        Ok(Some(out))
    }

    /// Revision names, oldest first.
    pub fn revisions(&self) -> Result<Vec<String>, HistoryError> {
        Ok(self.entries()?.into_iter().map(|m| m.revision).collect())
    }

    /// Removes the oldest entries beyond `keep`, never one named in `protect` (the applied,
    /// last-known-good and baseline revisions). Returns the removed names.
    pub fn rotate(&self, protect: &[&str]) -> Result<Vec<String>, HistoryError> {
        let entries = self.entries()?;
        let mut removable: Vec<&Meta> = entries
            .iter()
            .filter(|m| !protect.contains(&m.revision.as_str()))
            .collect();
        let protected = entries.len() - removable.len();
        let budget = self.keep.saturating_sub(protected);
        let excess = removable.len().saturating_sub(budget);
        let mut removed = Vec::new();
        removable.truncate(excess);
        for m in removable {
            let p = self.dir.join(&m.revision);
            fs::remove_dir_all(&p).map_err(io("remove", &p))?;
            removed.push(m.revision.clone());
        }
        if !removed.is_empty() {
            files::fsync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    fn meta(&self, entry: &Path) -> Result<Option<Meta>, HistoryError> {
        let p = entry.join("meta.json");
        let Some(bytes) = files::read_nofollow(&p)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| damaged(&p, &e.to_string()))
    }

    /// Every entry's meta, oldest first.
    fn entries(&self) -> Result<Vec<Meta>, HistoryError> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("read", &self.dir)(e)),
        };
        for e in rd {
            let e = e.map_err(io("read", &self.dir))?;
            if let Ok(Some(m)) = self.meta(&e.path()) {
                out.push(m);
            }
        }
        out.sort_by_key(|m| m.sequence);
        Ok(out)
    }
}

fn damaged(p: &Path, reason: &str) -> HistoryError {
    HistoryError::Damaged {
        path: p.display().to_string(),
        reason: reason.to_string(),
    }
}

fn write_plain(p: &Path, bytes: &[u8]) -> Result<(), HistoryError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(files::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .map_err(io("create", p))?;
    f.write_all(bytes).map_err(io("write", p))?;
    f.sync_all().map_err(io("fsync", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(keep: usize) -> (tempfile::TempDir, NodeDirs, History) {
        let t = tempfile::tempdir().unwrap();
        let d = NodeDirs::new(t.path().join("m"), t.path().join("s"));
        fs::create_dir(d.manifest_dir()).unwrap();
        d.prepare().unwrap();
        let h = History::new(&d, keep);
        (t, d, h)
    }

    fn rev(d: &NodeDirs, name: &str) -> RevisionFiles {
        RevisionFiles {
            revision: name.into(),
            manifests: BTreeMap::from([
                (
                    Component::ApiServer,
                    Some(format!("api {name}").into_bytes()),
                ),
                (Component::Scheduler, None),
            ]),
            files: BTreeMap::from([(
                d.files_dir()
                    .join("kube-apiserver/audit-policy.yaml")
                    .display()
                    .to_string(),
                format!("policy {name}").into_bytes(),
            )]),
        }
    }

    #[test]
    fn record_and_load_round_trip_and_survive_a_new_instance() {
        let (_t, d, h) = setup(5);
        let r = rev(&d, "r1");
        assert!(h.record(&r).unwrap());
        assert!(!h.record(&r).unwrap(), "an entry is written once");
        let h2 = History::new(&d, 5);
        assert_eq!(h2.load("r1").unwrap().unwrap(), r);
        assert_eq!(h2.load("r2").unwrap(), None);
        assert!(h2.contains("r1"));
        assert_eq!(fs::read_dir(d.staging_dir()).unwrap().count(), 0);
    }

    #[test]
    fn rotation_keeps_n_newest_and_protected_entries() {
        let (_t, d, h) = setup(3);
        for i in 1..=6 {
            h.record(&rev(&d, &format!("r{i}"))).unwrap();
        }
        let removed = h.rotate(&["r1"]).unwrap();
        assert_eq!(removed, vec!["r2", "r3", "r4"]);
        assert_eq!(h.revisions().unwrap(), vec!["r1", "r5", "r6"]);
        assert!(h.load("r1").unwrap().is_some());
        assert_eq!(h.rotate(&["r1"]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn tampered_entry_is_reported_not_restored() {
        let (_t, d, h) = setup(3);
        h.record(&rev(&d, "r1")).unwrap();
        let p = d
            .history_dir()
            .join("r1/manifests")
            .join(Component::ApiServer.manifest_file());
        fs::write(&p, "tampered").unwrap();
        let e = h.load("r1").unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
    }

    #[test]
    fn bad_names_and_paths_are_refused() {
        let (_t, d, h) = setup(3);
        let mut r = rev(&d, "../x");
        assert!(h.record(&r).is_err());
        r.revision = "ok".into();
        r.files = BTreeMap::from([("/etc/passwd".to_string(), b"x".to_vec())]);
        assert!(h.record(&r).is_err());
    }
}
