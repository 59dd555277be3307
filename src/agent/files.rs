//! Files on the node: the directories the agent owns and atomic, symlink-refusing writes.
//!
//! Every write goes through [`NodeDirs::write_manifest`] or [`NodeDirs::write_side_file`]:
//! the content is staged beside its target, written and fsynced, renamed into place, and the
//! target directory is fsynced. A manifest is staged as a dot-file in the manifest directory
//! itself ([`STAGING_PREFIX`]): kubelet ignores dot-files there (`pkg/kubelet/config/file.go`
//! lists the directory with the glob `[^.]*`, and `file_linux.go` `produceWatchEvent` drops
//! events of names starting with a dot), and the rename stays within one directory, so one
//! mount. That is what lets the agent's pod mount the manifest directory and its state
//! directory as two separate hostPaths (rename(2) fails with `EXDEV` across mounts) and never
//! the kubernetes directory holding the cluster-admin kubeconfigs. Side files and the agent's
//! own files are staged under `<state-dir>/staging`. A dot-file of kubeplane's own left by a
//! crash is removed at start. kubelet parses every non-dot file in the manifest directory, so
//! nothing but a complete managed manifest ever appears there. Files are opened with `O_NOFOLLOW`, a manifest
//! directory or target that is a symlink is refused, managed files get mode 0600, and only
//! the managed names (`<component>.yaml`) and paths under `<state-dir>/files/` are writable.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::Component;

/// Mode of every managed file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories the agent creates under its state directory.
pub const DIR_MODE: u32 = 0o700;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operation was refused before touching the disk.
    #[error("refused to write {path}: {reason}")]
    Refused {
        /// The path.
        path: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `write`, `rename`, …).
        op: &'static str,
        /// The path.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// `Result` with a [`FileError`].
pub type Result<T, E = FileError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn refused(path: &Path, reason: impl Into<String>) -> FileError {
    FileError::Refused {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The manifest directory and the agent's state directory, with the layout of
/// `docs/architecture.md` ("Node layout").
#[derive(Clone, Debug)]
pub struct NodeDirs {
    manifest_dir: PathBuf,
    state_dir: PathBuf,
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Name prefix of every staged file: a dot-file (kubelet ignores those in its manifest
/// directory), and recognisably kubeplane's, so [`NodeDirs::prepare`] removes only its own
/// leftovers from the manifest directory.
pub const STAGING_PREFIX: &str = ".kubeplane-staging.";

impl NodeDirs {
    /// The two directories; nothing is touched until [`NodeDirs::prepare`].
    pub fn new(manifest_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        NodeDirs {
            manifest_dir: manifest_dir.into(),
            state_dir: state_dir.into(),
        }
    }

    /// The manifest directory kubelet reads.
    pub fn manifest_dir(&self) -> &Path {
        &self.manifest_dir
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where writes are staged before the rename.
    pub fn staging_dir(&self) -> PathBuf {
        self.state_dir.join("staging")
    }

    /// Where the last revisions of every managed file are kept.
    pub fn history_dir(&self) -> PathBuf {
        self.state_dir.join("history")
    }

    /// Where stray copies of managed manifests are moved.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.state_dir.join("quarantine")
    }

    /// Where managed side files live.
    pub fn files_dir(&self) -> PathBuf {
        self.state_dir.join("files")
    }

    /// The state file.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// The path of a manifest in the manifest directory.
    pub fn manifest_path(&self, component: Component) -> PathBuf {
        self.manifest_dir.join(component.manifest_file())
    }

    /// Creates the state directory layout, refuses a manifest directory that is a symlink,
    /// and removes staging files a crash left behind (in `<state-dir>/staging`, and
    /// kubeplane's own dot-files in the manifest directory). The two directories may be on
    /// different filesystems or mounts. Returns how many stale staging files were removed.
    pub fn prepare(&self) -> Result<usize> {
        ensure_real_dir(&self.manifest_dir, false)?;
        ensure_real_dir(&self.state_dir, true)?;
        for dir in [
            self.staging_dir(),
            self.history_dir(),
            self.quarantine_dir(),
            self.files_dir(),
        ] {
            ensure_real_dir(&dir, true)?;
        }
        let staging = self.staging_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&staging).map_err(io_err("read", &staging))? {
            let entry = entry.map_err(io_err("read", &staging))?;
            let path = entry.path();
            let is_dir = entry.file_type().map_err(io_err("stat", &path))?.is_dir();
            if is_dir {
                fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
            } else {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&staging)?;
        }
        let mut removed_here = 0;
        let dir = &self.manifest_dir;
        for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
            let entry = entry.map_err(io_err("read", dir))?;
            let own = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(STAGING_PREFIX));
            let path = entry.path();
            // Only regular files (or symlinks, removed as links): never a directory.
            if own && !entry.file_type().map_err(io_err("stat", &path))?.is_dir() {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                removed_here += 1;
            }
        }
        if removed_here > 0 {
            fsync_dir(dir)?;
        }
        Ok(removed + removed_here)
    }

    /// Writes a managed manifest atomically. `file_name` must be the manifest file of one of
    /// the `managed` components.
    pub fn write_manifest(
        &self,
        file_name: &str,
        managed: &[Component],
        content: &[u8],
    ) -> Result<PathBuf> {
        let target = self.manifest_dir.join(file_name);
        check_managed_name(&target, file_name, managed)?;
        ensure_real_dir(&self.manifest_dir, false)?;
        // Staged as a dot-file beside the target: one directory, one mount.
        atomic_write(&self.manifest_dir, &target, content)?;
        Ok(target)
    }

    /// Removes a managed manifest (restoring a revision that did not have it).
    pub fn remove_manifest(&self, file_name: &str, managed: &[Component]) -> Result<bool> {
        let target = self.manifest_dir.join(file_name);
        check_managed_name(&target, file_name, managed)?;
        match fs::remove_file(&target) {
            Ok(()) => {
                fsync_dir(&self.manifest_dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &target)(e)),
        }
    }

    /// Reads a manifest without following symlinks; `None` when it does not exist.
    pub fn read_manifest(&self, file_name: &str) -> Result<Option<Vec<u8>>> {
        read_nofollow(&self.manifest_dir.join(file_name))
    }

    /// When a manifest was last modified (`None` when missing or unreadable).
    pub fn manifest_mtime(&self, file_name: &str) -> Option<std::time::SystemTime> {
        fs::symlink_metadata(self.manifest_dir.join(file_name))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Checks that a side file path lies under `<state-dir>/files/` with no `..`, `.` or
    /// symlinked directory on the way, and returns it.
    pub fn check_side_file_path(&self, path: &Path) -> Result<PathBuf> {
        let files = self.files_dir();
        if !path.is_absolute() {
            return Err(refused(
                path,
                format!(
                    "side files must be absolute paths under {}",
                    files.display()
                ),
            ));
        }
        if path
            .components()
            .any(|p| matches!(p, PathPart::ParentDir | PathPart::CurDir))
        {
            return Err(refused(path, "the path contains `..`"));
        }
        let rel = path.strip_prefix(&files).map_err(|_| {
            refused(
                path,
                format!(
                    "side files must live under {} (render with the agent's --state-dir)",
                    files.display()
                ),
            )
        })?;
        if rel.as_os_str().is_empty() {
            return Err(refused(path, "the path names the files directory itself"));
        }
        Ok(path.to_path_buf())
    }

    /// Writes a side file atomically under `<state-dir>/files/`, creating its directories.
    pub fn write_side_file(&self, path: &Path, content: &[u8]) -> Result<()> {
        let path = self.check_side_file_path(path)?;
        let files = self.files_dir();
        ensure_real_dir(&files, true)?;
        // Create and check every directory between files/ and the file, refusing symlinks.
        let rel = path.strip_prefix(&files).unwrap_or(Path::new(""));
        let mut dir = files.clone();
        if let Some(parent) = rel.parent() {
            for part in parent.components() {
                dir.push(part);
                ensure_real_dir(&dir, true)?;
            }
        }
        atomic_write(&self.staging_dir(), &path, content)
    }

    /// Reads a side file without following symlinks; `None` when it does not exist.
    pub fn read_side_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let path = self.check_side_file_path(path)?;
        read_nofollow(&path)
    }
}

/// Refuses any name that is not the manifest file of a managed component.
fn check_managed_name(target: &Path, file_name: &str, managed: &[Component]) -> Result<()> {
    let ok = managed.iter().any(|c| c.manifest_file() == file_name);
    if ok {
        Ok(())
    } else {
        let names: Vec<&str> = managed.iter().map(|c| c.manifest_file()).collect();
        Err(refused(
            target,
            format!(
                "{file_name:?} is not a managed manifest (managed: {}); kubeplane writes nothing else into the manifest directory",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ))
    }
}

/// Makes sure `dir` is a real directory (not a symlink), creating it (mode 0700) when
/// `create` is set.
fn ensure_real_dir(dir: &Path, create: bool) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(refused(
            dir,
            "the directory is a symlink; kubeplane does not follow symlinks (point the flag at the real directory)",
        )),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(refused(dir, "exists and is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            fs::create_dir_all(dir).map_err(io_err("mkdir", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_err("chmod", dir))?;
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(io_err("stat", dir)(e)),
    }
}

/// Parses a static Pod manifest (YAML or JSON). The YAML is read into a JSON value first and
/// the Pod taken from that, as kubelet does (YAML → JSON → object); this also keeps a single
/// Pod deserializer in the binary.
pub fn parse_pod(bytes: &[u8]) -> std::result::Result<k8s_openapi::api::core::v1::Pod, String> {
    let value: serde_json::Value = serde_saphyr::from_slice(bytes).map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Reads a file with `O_NOFOLLOW`: a symlink is an error, a missing file is `None`.
pub fn read_nofollow(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(
                path,
                "is a symlink; kubeplane does not follow symlinks",
            ));
        }
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(io_err("read", path))?;
    Ok(Some(buf))
}

/// Writes `content` to `target` atomically through `staging_dir` (same mount as the
/// target, or the target's own directory): stage a dot-file named [`STAGING_PREFIX`]… with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600, write, fsync, rename, fsync the target's
/// directory. A target that is a symlink is refused.
pub fn atomic_write(staging_dir: &Path, target: &Path, content: &[u8]) -> Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| refused(target, "has no parent directory"))?;
    let name = target
        .file_name()
        .and_then(OsStr::to_str)
        .ok_or_else(|| refused(target, "has no UTF-8 file name"))?;
    match fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(refused(
                target,
                "is a symlink; kubeplane does not follow or replace symlinks (remove it by hand)",
            ));
        }
        Ok(m) if m.is_dir() => return Err(refused(target, "is a directory")),
        _ => {}
    }
    let staged = staging_dir.join(format!(
        "{STAGING_PREFIX}{}.{}.{}",
        std::process::id(),
        STAGING_COUNTER.fetch_add(1, Ordering::Relaxed),
        name
    ));
    let result = (|| {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&staged)
            .map_err(io_err("create", &staged))?;
        // The umask may have narrowed the mode; make it exactly 0600.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_err("chmod", &staged))?;
        file.write_all(content).map_err(io_err("write", &staged))?;
        file.sync_all().map_err(io_err("fsync", &staged))?;
        drop(file);
        fs::rename(&staged, target).map_err(io_err("rename", target))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result
}

/// Moves the file `from` to `to`, which must not exist. A rename when both are on one mount;
/// across mounts (the manifest directory and the state directory are two hostPath mounts in
/// the agent's pod) rename(2) fails with `EXDEV`, and the file is copied instead: written
/// atomically to `to` through `staging_dir` (on `to`'s mount) and fsynced, then `from` is
/// unlinked and its directory fsynced. A crash in between leaves both copies, never none.
pub fn move_file(from: &Path, to: &Path, staging_dir: &Path) -> Result<()> {
    match fs::symlink_metadata(to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Ok(_) => return Err(refused(to, "exists already; a move never overwrites")),
        Err(e) => return Err(io_err("stat", to)(e)),
    }
    match fs::rename(from, to) {
        Ok(()) => {
            if let Some(dir) = to.parent() {
                fsync_dir(dir)?;
            }
            if let Some(dir) = from.parent() {
                fsync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => copy_then_remove(from, to, staging_dir),
        Err(e) => Err(io_err("rename", to)(e)),
    }
}

/// The cross-mount half of [`move_file`]: copy (durably), then unlink the source.
fn copy_then_remove(from: &Path, to: &Path, staging_dir: &Path) -> Result<()> {
    let bytes = read_nofollow(from)?.ok_or_else(|| FileError::Io {
        op: "read",
        path: from.display().to_string(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })?;
    atomic_write(staging_dir, to, &bytes)?;
    fs::remove_file(from).map_err(io_err("remove", from))?;
    if let Some(dir) = from.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory, so a rename or unlink in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err("open", dir))?;
    f.sync_all().map_err(io_err("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn dirs() -> (tempfile::TempDir, NodeDirs) {
        let tmp = tempfile::tempdir().unwrap();
        let d = NodeDirs::new(tmp.path().join("manifests"), tmp.path().join("state"));
        fs::create_dir(d.manifest_dir()).unwrap();
        d.prepare().unwrap();
        (tmp, d)
    }

    const ALL: &[Component] = &Component::ALL;

    #[test]
    fn writes_managed_manifest_with_mode_0600_and_nothing_else() {
        let (_t, d) = dirs();
        let p = d
            .write_manifest("kube-scheduler.yaml", ALL, b"a: 1\n")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"a: 1\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(d.manifest_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("kube-scheduler.yaml")]);
        assert_eq!(fs::read_dir(d.staging_dir()).unwrap().count(), 0);
        // Overwrite replaces the inode (rename), content complete.
        let ino = fs::metadata(&p).unwrap().ino();
        d.write_manifest("kube-scheduler.yaml", ALL, b"a: 2\n")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"a: 2\n");
        assert_ne!(fs::metadata(&p).unwrap().ino(), ino);
    }

    #[test]
    fn refuses_unmanaged_names() {
        let (_t, d) = dirs();
        for name in [
            "etcd.yaml",
            "kube-apiserver.yaml.bak",
            "../x.yaml",
            ".hidden",
        ] {
            let e = d.write_manifest(name, ALL, b"x").unwrap_err();
            assert!(matches!(e, FileError::Refused { .. }), "{name}: {e}");
        }
        // A component that is not managed is refused too.
        let e = d
            .write_manifest("kube-scheduler.yaml", &[Component::ApiServer], b"x")
            .unwrap_err();
        assert!(
            e.to_string().contains("managed: kube-apiserver.yaml"),
            "{e}"
        );
        assert_eq!(fs::read_dir(d.manifest_dir()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_symlinked_target_and_symlinked_manifest_dir() {
        let (t, d) = dirs();
        let outside = t.path().join("outside.yaml");
        fs::write(&outside, "original").unwrap();
        symlink(&outside, d.manifest_path(Component::Scheduler)).unwrap();
        let e = d
            .write_manifest("kube-scheduler.yaml", ALL, b"new")
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "original");
        let e = d.read_manifest("kube-scheduler.yaml").unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");

        let real = t.path().join("real-manifests");
        fs::create_dir(&real).unwrap();
        let link = t.path().join("linked-manifests");
        symlink(&real, &link).unwrap();
        let d2 = NodeDirs::new(&link, t.path().join("state"));
        assert!(d2.prepare().unwrap_err().to_string().contains("symlink"));
        let e = d2
            .write_manifest("kube-scheduler.yaml", ALL, b"x")
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn side_files_only_under_files_dir() {
        let (t, d) = dirs();
        let ok = d.files_dir().join("kube-apiserver/audit-policy.yaml");
        d.write_side_file(&ok, b"policy").unwrap();
        assert_eq!(fs::read(&ok).unwrap(), b"policy");
        assert_eq!(
            fs::metadata(&ok).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for bad in [
            PathBuf::from("/etc/passwd"),
            d.files_dir().join("../state.json"),
            d.files_dir().join("kube-apiserver/../../state.json"),
            PathBuf::from("relative/file"),
            d.files_dir(),
        ] {
            let e = d.write_side_file(&bad, b"x").unwrap_err();
            assert!(
                matches!(e, FileError::Refused { .. }),
                "{}: {e}",
                bad.display()
            );
        }
        // A symlinked directory on the way is refused.
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, d.files_dir().join("kube-scheduler")).unwrap();
        let e = d
            .write_side_file(&d.files_dir().join("kube-scheduler/x.yaml"), b"x")
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn prepare_cleans_stale_staging_files() {
        let (_t, d) = dirs();
        fs::write(
            d.staging_dir()
                .join(format!("{STAGING_PREFIX}123.0.kube-apiserver.yaml")),
            "half",
        )
        .unwrap();
        fs::create_dir(d.staging_dir().join("dir")).unwrap();
        assert_eq!(d.prepare().unwrap(), 2);
        assert_eq!(fs::read_dir(d.staging_dir()).unwrap().count(), 0);
    }

    #[test]
    fn manifests_are_staged_beside_their_target_not_in_the_state_dir() {
        // The agent's pod mounts the manifest directory and the state directory separately:
        // a manifest write must not go through <state-dir>/staging (rename(2) across two
        // mounts fails with EXDEV). Make the state staging directory unusable: manifest
        // writes still work, side files (staged in the state dir) do not.
        let (_t, d) = dirs();
        fs::remove_dir(d.staging_dir()).unwrap();
        fs::write(d.staging_dir(), "not a directory").unwrap();
        let p = d
            .write_manifest("kube-apiserver.yaml", ALL, b"a: 1\n")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"a: 1\n");
        let names: Vec<_> = fs::read_dir(d.manifest_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["kube-apiserver.yaml"], "no staging file left");
        assert!(
            d.write_side_file(&d.files_dir().join("x/y.yaml"), b"x")
                .is_err()
        );
    }

    #[test]
    fn prepare_removes_only_its_own_dot_files_from_the_manifest_dir() {
        let (_t, d) = dirs();
        let m = d.manifest_dir();
        let own = format!("{STAGING_PREFIX}123.0.kube-apiserver.yaml");
        fs::write(m.join(&own), "half a manifest").unwrap();
        fs::write(m.join(".kube-apiserver.yaml.swp"), "an editor's").unwrap();
        fs::write(m.join("kube-vip.yaml"), "someone else's").unwrap();
        fs::create_dir(m.join(format!("{STAGING_PREFIX}dir"))).unwrap();
        assert_eq!(d.prepare().unwrap(), 1);
        assert!(!m.join(&own).exists());
        assert!(m.join(".kube-apiserver.yaml.swp").exists());
        assert!(m.join("kube-vip.yaml").exists());
        assert!(m.join(format!("{STAGING_PREFIX}dir")).is_dir());
        assert!(STAGING_PREFIX.starts_with('.'), "kubelet must ignore it");
    }

    #[test]
    fn directories_on_different_filesystems_are_fine() {
        // /dev/shm (tmpfs) and the temporary directory are different filesystems on Linux
        // hosts and CI; the agent's two hostPath mounts are different mounts in any case.
        let shm = Path::new("/dev/shm");
        let t = tempfile::tempdir().unwrap();
        let Ok(s) = tempfile::tempdir_in(shm) else {
            eprintln!("skipped: no /dev/shm");
            return;
        };
        let d = NodeDirs::new(t.path().join("manifests"), s.path().join("state"));
        fs::create_dir(d.manifest_dir()).unwrap();
        d.prepare().unwrap();
        d.write_manifest("kube-scheduler.yaml", ALL, b"s\n")
            .unwrap();
        d.write_side_file(&d.files_dir().join("a/b.yaml"), b"b")
            .unwrap();
        // A move across them is a copy, then an unlink.
        let from = d.manifest_dir().join("kube-scheduler.yaml.bak");
        fs::write(&from, "stray").unwrap();
        let to = d.quarantine_dir().join("stray");
        move_file(&from, &to, &d.staging_dir()).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read_to_string(&to).unwrap(), "stray");
        assert_eq!(fs::read_dir(d.staging_dir()).unwrap().count(), 0);
    }

    #[test]
    fn copy_then_remove_is_a_move_and_never_overwrites() {
        let (t, d) = dirs();
        let from = d.manifest_dir().join("kube-apiserver.yaml~");
        fs::write(&from, "copy").unwrap();
        let to = d.quarantine_dir().join("q1");
        copy_then_remove(&from, &to, &d.staging_dir()).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read_to_string(&to).unwrap(), "copy");
        assert_eq!(
            fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A missing or symlinked source is an error and creates nothing.
        assert!(copy_then_remove(&from, &d.quarantine_dir().join("q2"), &d.staging_dir()).is_err());
        let outside = t.path().join("outside");
        fs::write(&outside, "x").unwrap();
        symlink(&outside, &from).unwrap();
        let e =
            copy_then_remove(&from, &d.quarantine_dir().join("q3"), &d.staging_dir()).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!d.quarantine_dir().join("q3").exists());
        // move_file refuses an existing target.
        fs::remove_file(&from).unwrap();
        fs::write(&from, "again").unwrap();
        let e = move_file(&from, &to, &d.staging_dir()).unwrap_err();
        assert!(e.to_string().contains("exists"), "{e}");
        assert_eq!(fs::read_to_string(&to).unwrap(), "copy");
        assert!(from.exists());
    }

    #[test]
    fn remove_manifest_is_limited_to_managed_names() {
        let (_t, d) = dirs();
        d.write_manifest("kube-scheduler.yaml", ALL, b"x").unwrap();
        assert!(d.remove_manifest("kube-scheduler.yaml", ALL).unwrap());
        assert!(!d.remove_manifest("kube-scheduler.yaml", ALL).unwrap());
        assert!(d.remove_manifest("etcd.yaml", ALL).is_err());
    }
}
