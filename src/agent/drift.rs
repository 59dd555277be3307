//! Drift: the manifest directory watched with `notify` (inotify on the directory itself,
//! not on the files, so replaced and new files are seen too).
//!
//! - A managed manifest whose content differs from the desired bytes (edited, replaced or
//!   deleted by hand) is restored (`--drift-mode enforce`, the default) or only reported
//!   (`observe`), and recorded in `status.drift`.
//! - A backup-like copy of a managed manifest (`kube-apiserver.yaml.bak`, `…yaml~`,
//!   `….orig`, `….old`, anything named after a managed manifest) or any other non-dot file
//!   whose content declares a Pod named like a managed component is moved to
//!   `<state-dir>/quarantine/` and recorded in `status.quarantined`: kubelet would run it as
//!   a second copy of the component. Strays are handled after a short settle time so a tool
//!   writing a temporary file and renaming it (`sed -i`) is not disturbed.
//! - Dot files are ignored (kubelet ignores them too: an editor's `.swp`); other static Pods
//!   (kube-vip, haproxy, an unmanaged etcd) are left alone and listed in `status.unmanaged`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::desired::Desired;
use super::files::{self, NodeDirs};
use super::quarantine;
use super::status::{AgentEvent, StatusBoard};
use crate::api::{Component, DriftRecord, QuarantineRecord};
use crate::render::sha256_hex;

/// How long a stray file must exist before it is quarantined.
pub const STRAY_SETTLE: Duration = Duration::from_millis(250);

/// How many drift and quarantine records status keeps.
pub const MAX_RECORDS: usize = 10;

/// A second restore of the same file waits this long after the first; each further one twice
/// as long, up to [`FIGHT_MAX_BACKOFF`]: another tool that keeps rewriting a manifest must not
/// restart its component on every flip.
pub const FIGHT_FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two restores of the same file.
pub const FIGHT_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Restores further apart than this start the count again.
pub const FIGHT_WINDOW: Duration = Duration::from_secs(300);

/// From this many restores in a row (each within [`FIGHT_WINDOW`] of the last) the file is
/// reported as fought over (`DriftFight` Event).
pub const FIGHT_REPORT_AFTER: u32 = 3;

/// Restores per file, to back off when something keeps rewriting one. Pure: time comes in.
#[derive(Debug, Default)]
pub struct Fights {
    files: BTreeMap<String, Fight>,
}

#[derive(Debug, Clone, Copy)]
struct Fight {
    restores: u32,
    last: Instant,
    next_allowed: Instant,
}

impl Fights {
    /// `Ok` when `name` may be restored at `now`, else the time it may.
    pub fn allowed(&self, name: &str, now: Instant) -> Result<(), Instant> {
        match self.files.get(name) {
            Some(f) if now < f.next_allowed => Err(f.next_allowed),
            _ => Ok(()),
        }
    }

    /// Records a restore of `name` at `now`. Returns the count of restores in a row and the
    /// wait before the next one when the file counts as fought over.
    pub fn restored(&mut self, name: &str, now: Instant) -> Option<(u32, Duration)> {
        let restores = match self.files.get(name) {
            Some(f) if now.saturating_duration_since(f.last) <= FIGHT_WINDOW => f.restores + 1,
            _ => 1,
        };
        let backoff = FIGHT_FIRST_BACKOFF
            .saturating_mul(1u32 << (restores - 1).min(16))
            .min(FIGHT_MAX_BACKOFF);
        self.files.insert(
            name.to_string(),
            Fight {
                restores,
                last: now,
                next_allowed: now + backoff,
            },
        );
        (restores >= FIGHT_REPORT_AFTER).then_some((restores, backoff))
    }
}

/// What to do about a managed file changed by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftMode {
    /// Restore the file.
    Enforce,
    /// Only report it.
    Observe,
}

/// What a file of the manifest directory is, by the pure layer's one rule
/// ([`crate::adopt::classify_file`]: by name, then by the Pod it holds).
pub use crate::adopt::{FileKind as Kind, classify_file as classify};

/// The outcome of checking one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A managed file differed and was restored.
    Restored(String),
    /// A managed file differs and was left (observe mode).
    Reported(String),
    /// A stray was moved to quarantine.
    Quarantined(String, PathBuf),
    /// A file kubeplane leaves alone.
    Unmanaged(String),
    /// A managed file differs, but it was restored moments ago (something keeps rewriting
    /// it): it is checked again at the given time.
    Deferred(String, Instant),
}

/// Whether a notify event can mean changed content. Reads (open, access, close after
/// reading) and metadata changes cannot — and must be ignored: the agent's own reads of a
/// file would otherwise trigger another check, and another read, forever.
pub fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// Checks and heals the manifest directory.
pub struct DriftHandler {
    dirs: NodeDirs,
    desired: Arc<Desired>,
    mode: DriftMode,
    board: StatusBoard,
    unmanaged: Mutex<BTreeSet<String>>,
    /// Digest of the last reported content per file, so observe mode reports a change once.
    reported: Mutex<BTreeMap<String, String>>,
    checks: std::sync::atomic::AtomicU64,
    fights: Mutex<Fights>,
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

impl DriftHandler {
    /// A handler over the node's directories.
    pub fn new(dirs: NodeDirs, desired: Arc<Desired>, mode: DriftMode, board: StatusBoard) -> Self {
        DriftHandler {
            dirs,
            desired,
            mode,
            board,
            unmanaged: Mutex::new(BTreeSet::new()),
            reported: Mutex::new(BTreeMap::new()),
            checks: std::sync::atomic::AtomicU64::new(0),
            fights: Mutex::new(Fights::default()),
        }
    }

    /// How many file checks the handler has made (each one reads a file).
    pub fn checks(&self) -> u64 {
        self.checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The manifest directory.
    pub fn manifest_dir(&self) -> &Path {
        self.dirs.manifest_dir()
    }

    /// Checks one managed file against the desired bytes, restoring it in enforce mode.
    /// `None` when it matches (including the agent's own writes) or is not managed.
    pub fn check_managed(&self, c: Component) -> Option<Finding> {
        let name = c.manifest_file();
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let desired = self.desired.lock();
        let want = desired.get(c)?;
        // A file listed as unmanaged before kubeplane took it over is no longer one.
        self.set_unmanaged(name, false);
        let have = self.dirs.read_manifest(name);
        let (differs, how) = match &have {
            Ok(Some(b)) if b.as_slice() == want => (false, ""),
            Ok(Some(_)) => (true, "edited by hand"),
            Ok(None) => (true, "deleted"),
            Err(_) => (true, "replaced by a symlink or unreadable"),
        };
        if !differs {
            self.reported
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            return None;
        }
        match self.mode {
            DriftMode::Enforce => {
                let now = Instant::now();
                if let Err(at) = self
                    .fights
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .allowed(name, now)
                {
                    return Some(Finding::Deferred(name.to_string(), at));
                }
                if have.is_err() {
                    let _ = std::fs::remove_file(self.dirs.manifest_path(c));
                }
                let managed = desired.managed();
                match self.dirs.write_manifest(name, &managed, want) {
                    Ok(_) => {
                        drop(desired);
                        let fight = self
                            .fights
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .restored(name, now);
                        if let Some((restores, backoff)) = fight {
                            self.board.event(AgentEvent::warning(
                                "DriftFight",
                                "Heal",
                                format!(
                                    "{} was rewritten and restored {restores} times in a row: another tool keeps changing it; the next restore waits {}s (backing off up to {}s). Stop that tool or let it own the file (drift mode observe)",
                                    self.dirs.manifest_path(c).display(),
                                    backoff.as_secs(),
                                    FIGHT_MAX_BACKOFF.as_secs()
                                ),
                            ));
                        }
                        self.record_drift(name, "Restored");
                        self.board.event(AgentEvent::warning(
                            "DriftRestored",
                            "Heal",
                            format!(
                                "{} was {how}; restored it (drift mode enforce). Change the ControlPlaneConfig instead of the file.",
                                self.dirs.manifest_path(c).display()
                            ),
                        ));
                        Some(Finding::Restored(name.to_string()))
                    }
                    Err(e) => {
                        drop(desired);
                        tracing::error!(error = %e, file = name, "could not restore drifted manifest");
                        self.board.event(AgentEvent::warning(
                            "DriftRestoreFailed",
                            "Heal",
                            format!("{name} was {how} and could not be restored: {e}"),
                        ));
                        None
                    }
                }
            }
            DriftMode::Observe => {
                drop(desired);
                let digest = match &have {
                    Ok(Some(b)) => sha256_hex(b),
                    Ok(None) => "deleted".into(),
                    Err(_) => "unreadable".into(),
                };
                let first = self
                    .reported
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_string(), digest.clone())
                    != Some(digest);
                if first {
                    self.record_drift(name, "Reported");
                    self.board.event(AgentEvent::warning(
                        "DriftDetected",
                        "Heal",
                        format!(
                            "{} was {how}; left as it is (drift mode observe)",
                            self.dirs.manifest_path(c).display()
                        ),
                    ));
                }
                Some(Finding::Reported(name.to_string()))
            }
        }
    }

    /// Checks any file of the manifest directory: managed files are compared (and healed),
    /// strays quarantined, others listed as unmanaged.
    pub fn check(&self, name: &str) -> Option<Finding> {
        let managed = self.desired.lock().managed();
        if let Kind::Managed(c) = classify(name, None, &managed) {
            return self.check_managed(c);
        }
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dirs.manifest_dir().join(name);
        let meta = std::fs::symlink_metadata(&path);
        let exists = meta.is_ok();
        if !exists || meta.as_ref().is_ok_and(|m| m.is_dir()) {
            self.set_unmanaged(name, false);
            return None;
        }
        let content = files::read_nofollow(&path).ok().flatten();
        match classify(name, content.as_deref(), &managed) {
            Kind::Stray(c, why) => {
                self.set_unmanaged(name, false);
                match quarantine::quarantine(&self.dirs, name, now()) {
                    Ok(to) => {
                        let record = QuarantineRecord {
                            file: name.to_string(),
                            moved_to: to.display().to_string(),
                            reason: why.clone(),
                            at: Time(now()),
                        };
                        self.board.update(|s| {
                            s.quarantined.push(record);
                            trim(&mut s.quarantined);
                        });
                        self.board.event(AgentEvent::warning(
                            "Quarantined",
                            "Heal",
                            format!(
                                "moved {name} ({why}) out of the manifest directory to {}: kubelet would run it next to the managed {c}",
                                to.display()
                            ),
                        ));
                        Some(Finding::Quarantined(name.to_string(), to))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, file = name, "could not quarantine stray manifest");
                        None
                    }
                }
            }
            Kind::Unmanaged => {
                self.set_unmanaged(name, true);
                Some(Finding::Unmanaged(name.to_string()))
            }
            Kind::Managed(_) | Kind::Ignored => None,
        }
    }

    /// Checks every managed file and every file in the directory.
    pub fn scan(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let managed = self.desired.lock().managed();
        for c in &managed {
            out.extend(self.check_managed(*c));
        }
        let mut present = BTreeSet::new();
        if let Ok(rd) = std::fs::read_dir(self.dirs.manifest_dir()) {
            for e in rd.flatten() {
                if let Some(name) = e.file_name().to_str() {
                    present.insert(name.to_string());
                    if !matches!(classify(name, None, &managed), Kind::Managed(_)) {
                        out.extend(self.check(name));
                    }
                }
            }
        }
        // Forget unmanaged files that are gone.
        let gone: Vec<String> = self
            .unmanaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.set_unmanaged(&n, false);
        }
        out
    }

    fn set_unmanaged(&self, name: &str, present: bool) {
        let list = {
            let mut set = self.unmanaged.lock().unwrap_or_else(|p| p.into_inner());
            let changed = if present {
                set.insert(name.to_string())
            } else {
                set.remove(name)
            };
            if !changed {
                return;
            }
            set.iter().cloned().collect::<Vec<_>>()
        };
        self.board.update(|s| s.unmanaged = list);
    }

    fn record_drift(&self, name: &str, action: &str) {
        let record = DriftRecord {
            file: name.to_string(),
            action: action.to_string(),
            detected_at: Time(now()),
        };
        self.board.update(|s| {
            s.drift.push(record);
            trim(&mut s.drift);
        });
    }

    /// Runs a check (file reads, fsync'd writes, under the desired lock) on the blocking
    /// pool, off the async runtime. `None` if the check panicked.
    async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&DriftHandler) -> T + Send + 'static,
    ) -> Option<T> {
        let h = self.clone();
        tokio::task::spawn_blocking(move || f(&h)).await.ok()
    }

    /// Handles events from [`watch`] until the channel closes: managed files at once, other
    /// files after [`STRAY_SETTLE`]; a full scan when notify asks for one.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    ) {
        let dir = self.dirs.manifest_dir().to_path_buf();
        let mut pending: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            let next = pending.values().min().copied();
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    match ev {
                        Ok(ev) if !ev.need_rescan() && !is_change(&ev.kind) => {}
                        Ok(ev) if !ev.need_rescan() => {
                            let managed = self.desired.lock().managed();
                            for p in &ev.paths {
                                if p.parent() != Some(dir.as_path()) {
                                    continue;
                                }
                                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                                    continue;
                                };
                                match classify(name, None, &managed) {
                                    Kind::Managed(c) => {
                                        if let Some(Finding::Deferred(n, at)) = self.off_runtime(move |h| {
                                            let _span = tracing::debug_span!("drift", file = c.manifest_file()).entered();
                                            h.check_managed(c)
                                        }).await.flatten() {
                                            pending.insert(n, at);
                                        }
                                    }
                                    Kind::Ignored => {}
                                    _ => {
                                        pending.insert(name.to_string(), Instant::now() + STRAY_SETTLE);
                                    }
                                }
                            }
                        }
                        Ok(_) => {
                            defer(&mut pending, self.off_runtime(|h| h.scan()).await.unwrap_or_default());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "manifest directory watch error; rescanning");
                            defer(&mut pending, self.off_runtime(|h| h.scan()).await.unwrap_or_default());
                        }
                    }
                }
                _ = sleep_until_opt(next) => {
                    let now = Instant::now();
                    let due: Vec<String> = pending
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(n, _)| n.clone())
                        .collect();
                    for n in due {
                        pending.remove(&n);
                        let name = n.clone();
                        if let Some(Finding::Deferred(n, at)) = self.off_runtime(move |h| h.check(&name)).await.flatten() {
                            pending.insert(n, at);
                        }
                    }
                }
            }
        }
    }
}

/// Schedules the deferred restores among `findings`.
fn defer(pending: &mut BTreeMap<String, Instant>, findings: Vec<Finding>) {
    for f in findings {
        if let Finding::Deferred(n, at) = f {
            pending.insert(n, at);
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn trim<T>(v: &mut Vec<T>) {
    if v.len() > MAX_RECORDS {
        let excess = v.len() - MAX_RECORDS;
        v.drain(..excess);
    }
}

/// A notify watcher on a directory (non-recursive) whose events arrive on a tokio channel.
/// Keep the watcher alive as long as events are wanted.
pub fn watch(
    dir: &Path,
) -> notify::Result<(
    RecommendedWatcher,
    mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut w = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })?;
    w.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((w, rx))
}

#[cfg(test)]
mod tests;
