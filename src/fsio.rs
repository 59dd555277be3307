//! Crash-safe file I/O, the one place for it: atomic writes (stage, fsync, rename, fsync the
//! directory), reads that refuse symlinks, directory fsyncs. Used by the agent
//! ([`crate::agent::files`]: manifests, side files, state, history), `kubeplane render --out`
//! and the e2e suite.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Name prefix of every staged file: a dot-file (kubelet ignores those in its manifest
/// directory), and recognisably kubeplane's.
pub const STAGING_PREFIX: &str = ".kubeplane-staging.";

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

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

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn refused(path: &Path, reason: impl Into<String>) -> FileError {
    FileError::Refused {
        path: path.display().to_string(),
        reason: reason.into(),
    }
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

/// Writes `content` to `target` atomically through `staging_dir` (same filesystem as the
/// target, or the target's own directory): stage a dot-file named [`STAGING_PREFIX`]… with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and exactly `mode`, write, fsync, rename, fsync the target's
/// directory. A target that is a symlink or a directory is refused; on any error the staged
/// file is removed and the target is untouched.
pub fn atomic_write(staging_dir: &Path, target: &Path, content: &[u8], mode: u32) -> Result<()> {
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
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&staged)
            .map_err(io_err("create", &staged))?;
        // The umask may have narrowed the mode; make it exactly 0600.
        file.set_permissions(fs::Permissions::from_mode(mode))
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
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_with_exactly_the_mode_and_leaves_no_staged_file_beside_it() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("a.yaml");
        for (content, mode) in [(&b"one"[..], 0o644), (&b"two"[..], 0o600)] {
            atomic_write(t.path(), &target, content, mode).unwrap();
            assert_eq!(fs::read(&target).unwrap(), content);
            let m = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode);
        }
        assert_eq!(names(t.path()), vec!["a.yaml"]);
        assert!(
            STAGING_PREFIX.starts_with('.'),
            "kubelet must ignore staged files"
        );
    }

    #[test]
    fn a_symlink_or_directory_target_is_refused_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        let link = t.path().join("link.yaml");
        symlink(&outside, &link).unwrap();
        let e = atomic_write(t.path(), &link, b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        fs::create_dir(t.path().join("d.yaml")).unwrap();
        let e = atomic_write(t.path(), &t.path().join("d.yaml"), b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(names(t.path()), vec!["d.yaml", "link.yaml", "outside"]);
    }

    #[test]
    fn a_failed_write_removes_its_staged_file() {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path().join("staging");
        fs::create_dir(&staging).unwrap();
        // The rename fails: the target's directory does not exist.
        let target = t.path().join("missing/a.yaml");
        let e = atomic_write(&staging, &target, b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
        assert!(names(&staging).is_empty());
    }

    #[test]
    fn read_nofollow_refuses_a_symlink_and_says_none_for_a_missing_file() {
        let t = tempfile::tempdir().unwrap();
        assert!(read_nofollow(&t.path().join("none")).unwrap().is_none());
        fs::write(t.path().join("f"), "x").unwrap();
        symlink(t.path().join("f"), t.path().join("l")).unwrap();
        assert_eq!(read_nofollow(&t.path().join("f")).unwrap().unwrap(), b"x");
        let e = read_nofollow(&t.path().join("l")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
    }
}
