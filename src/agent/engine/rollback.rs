//! Rollback: a component of the revision did not become healthy, so last-known-good (or
//! the pre-kubeplane baseline) is restored under a fresh uid and waited for; the rollback is
//! recorded write-ahead and finished from state and history alone after a restart.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use tracing::Instrument;

use super::wait::RESUME_GRACE;
use super::{DEFAULT_TIMEOUT, Engine, Outcome, now, parse_pod, parse_time};
use crate::agent::history::{BASELINE, RevisionFiles};
use crate::agent::kubelet_wait::{Diagnosis, Expect, Verdict};
use crate::agent::state::{ComponentState, FailedRevision, FailureReason, Lifecycle, Settlement};
use crate::agent::status::AgentEvent;
use crate::api::{Component, NodePhase};
use crate::render::{self, sha256_hex};

impl Engine {
    /// `failed` of revision `rev` did not become healthy: records (write-ahead) that
    /// last-known-good (or the pre-kubeplane baseline) is being restored, then restores it.
    pub(super) async fn start_rollback(
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
    pub(super) async fn finish_rollback(&mut self) -> Outcome {
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
                    if disk.as_deref() != Some(bytes.as_slice()) {
                        self.drain_before_write(c).await;
                    }
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
}

/// How long a restored last-known-good component is waited for: the failed revision's
/// timeout, but never less than the default. A short `healthTimeoutSeconds` detects a bad
/// revision quickly; it says nothing about how long the good one takes to restart (on a real
/// kubelet with kubeadm's probes, kube-scheduler needs about 30 s), and cutting that wait
/// short would report a healthy rollback as `Failed`.
pub(super) fn restore_timeout(failed_revision_timeout: Duration) -> Duration {
    failed_revision_timeout.max(DEFAULT_TIMEOUT)
}

/// The annotation a restored manifest carries: the revision whose failure it undoes. It
/// changes the manifest's `metadata.uid`, so kubelet starts the restored Pod as a new pod
/// (kubelet does not start again a static pod uid it has just terminated; OpenShift's
/// startup-monitor fallback mints a fresh uid for the same reason).
pub const RESTORED_ANNOTATION: &str = "kubeplane.io/restored-after";

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

/// The restored manifest: `bytes` with [`RESTORED_ANNOTATION`]`=failed_revision` and its uid
/// recomputed. Deterministic, so a resumed rollback computes the same bytes. A file that does
/// not parse (a hand-made baseline) is restored as it was.
pub fn restored_manifest(
    bytes: &[u8],
    failed_revision: &str,
    node: &str,
) -> (Vec<u8>, Option<String>) {
    let Ok(mut pod) = crate::agent::files::parse_pod(bytes) else {
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
