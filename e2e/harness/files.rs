//! The manifest directory's backup and snapshots, and the files the harness writes.

use super::*;

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A regular file of the manifest directory, as found.
#[derive(Clone, Debug)]
struct Saved {
    name: String,
    bytes: Vec<u8>,
    mode: u32,
}

/// The manifest directory as the scenario found it.
#[derive(Clone, Debug, Default)]
pub struct Backup {
    files: Vec<Saved>,
}

/// Every regular file of `dir` (dot files too), by name. Directories are skipped.
fn regular_files(dir: &Path) -> std::io::Result<Vec<(String, fs::Metadata)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = fs::symlink_metadata(e.path())?;
        if meta.is_dir() {
            continue;
        }
        out.push((e.file_name().to_string_lossy().into_owned(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Backup {
    /// Copies every file of `manifest_dir` into memory and into `backup_dir` (outside it).
    pub fn take(manifest_dir: &Path, backup_dir: &Path) -> Backup {
        fs::create_dir_all(backup_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", backup_dir.display()));
        let mut files = Vec::new();
        let found = regular_files(manifest_dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", manifest_dir.display()));
        for (name, meta) in found {
            if meta.file_type().is_symlink() {
                panic!(
                    "{}/{name} is a symlink: the suite only runs on a manifest directory of plain files",
                    manifest_dir.display()
                );
            }
            let bytes = fs::read(manifest_dir.join(&name))
                .unwrap_or_else(|e| panic!("read {}/{name}: {e}", manifest_dir.display()));
            fs::write(backup_dir.join(&name), &bytes)
                .unwrap_or_else(|e| panic!("back up {name} to {}: {e}", backup_dir.display()));
            files.push(Saved {
                name,
                bytes,
                mode: meta.permissions().mode() & 0o7777,
            });
        }
        let _ = fs::write(
            backup_dir.join("..").join("RESTORE.txt"),
            format!(
                "The files in backup/ are {} as the e2e scenario found it. The suite restores them\n\
                 itself; if the test process was killed, copy them back (and remove the files it\n\
                 added) by hand.\n",
                manifest_dir.display()
            ),
        );
        Backup { files }
    }

    /// The bytes of a file as found.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes.as_slice())
    }

    /// Puts the directory back: files the run added are removed, changed files rewritten
    /// atomically (dot-file sibling, fsync, rename, fsync the directory), unchanged files
    /// left alone. Returns what it did, one line each.
    pub fn restore(&self, manifest_dir: &Path) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        let keep: BTreeSet<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        let now = regular_files(manifest_dir).map_err(|e| e.to_string())?;
        for (name, _) in &now {
            if !keep.contains(name.as_str()) {
                fs::remove_file(manifest_dir.join(name))
                    .map_err(|e| format!("remove {name}: {e}"))?;
                done.push(format!("removed {name}, which the run added"));
            }
        }
        for f in &self.files {
            let path = manifest_dir.join(&f.name);
            if fs::read(&path).ok().as_deref() == Some(f.bytes.as_slice()) {
                continue;
            }
            write_atomically(&path, &f.bytes, f.mode)?;
            done.push(format!("restored {}", f.name));
        }
        Ok(done)
    }
}

/// Writes a file the way kubeplane does ([`kubeplane::fsio::atomic_write`]): a dot-file
/// sibling (kubelet ignores dot files), fsync, rename over the target, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().ok_or("no parent directory")?;
    kubeplane::fsio::atomic_write(dir, path, bytes, mode)
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// Content, mode, inode and mtime (ns) of every file of a directory.
pub type DirSnapshot = BTreeMap<String, (Vec<u8>, u32, u64, i128)>;

/// A snapshot of every file in `dir`.
pub fn snapshot(dir: &Path) -> DirSnapshot {
    regular_files(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .into_iter()
        .map(|(name, m)| {
            let bytes = fs::read(dir.join(&name)).unwrap_or_default();
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            (name, (bytes, m.mode(), m.ino(), mtime))
        })
        .collect()
}

/// A short description of a difference between two snapshots.
pub fn snapshot_diff(before: &DirSnapshot, after: &DirSnapshot) -> String {
    let mut out = String::new();
    for (name, b) in before {
        match after.get(name) {
            None => {
                let _ = writeln!(out, "{name}: removed");
            }
            Some(a) if a != b => {
                let _ = writeln!(
                    out,
                    "{name}: content {} mode {} inode {} mtime {}",
                    if a.0 == b.0 { "same" } else { "changed" },
                    if a.1 == b.1 { "same" } else { "changed" },
                    if a.2 == b.2 { "same" } else { "changed" },
                    if a.3 == b.3 { "same" } else { "changed" },
                );
            }
            _ => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        let _ = writeln!(out, "{name}: added");
    }
    out
}
