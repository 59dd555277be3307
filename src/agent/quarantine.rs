//! `<state-dir>/quarantine/`: stray copies of managed manifests moved out of the manifest
//! directory, where kubelet would otherwise run them as a second Pod (or fail on a name
//! clash). Each file keeps its name behind a UTC timestamp, so nothing is lost.

use std::fs;
use std::path::PathBuf;

use super::files::{self, FileError, NodeDirs};

/// Moves `name` from the manifest directory to the quarantine directory and returns where it
/// went. A rename when both are on one mount; else (the agent's pod mounts the manifest
/// directory and the state directory separately) copy, fsync, remove
/// ([`files::move_file`]).
pub fn quarantine(
    dirs: &NodeDirs,
    name: &str,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<PathBuf, FileError> {
    let from = dirs.manifest_dir().join(name);
    let qdir = dirs.quarantine_dir();
    let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
    let mut to = qdir.join(format!("{stamp}-{name}"));
    let mut n = 1;
    while fs::symlink_metadata(&to).is_ok() {
        to = qdir.join(format!("{stamp}-{n}-{name}"));
        n += 1;
    }
    files::move_file(&from, &to, &dirs.staging_dir())?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_the_file_keeping_its_name_and_never_overwrites() {
        let t = tempfile::tempdir().unwrap();
        let d = NodeDirs::new(t.path().join("m"), t.path().join("s"));
        fs::create_dir(d.manifest_dir()).unwrap();
        d.prepare().unwrap();
        let now = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap();
        fs::write(d.manifest_dir().join("kube-apiserver.yaml.bak"), "one").unwrap();
        let a = quarantine(&d, "kube-apiserver.yaml.bak", now).unwrap();
        fs::write(d.manifest_dir().join("kube-apiserver.yaml.bak"), "two").unwrap();
        let b = quarantine(&d, "kube-apiserver.yaml.bak", now).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            a.file_name().unwrap().to_str().unwrap(),
            "20270115T080000.000Z-kube-apiserver.yaml.bak"
        );
        assert_eq!(fs::read_to_string(&a).unwrap(), "one");
        assert_eq!(fs::read_to_string(&b).unwrap(), "two");
        assert_eq!(fs::read_dir(d.manifest_dir()).unwrap().count(), 0);
        assert!(quarantine(&d, "missing.yaml", now).is_err());
    }
}
