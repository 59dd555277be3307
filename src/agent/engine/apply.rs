//! The forward path: plan each component, record the revision, write and wait in groups
//! (kube-apiserver, then kube-controller-manager and kube-scheduler together).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracing::Instrument;

use super::rollback::restore_timeout;
use super::side_files::FileProblem;
use super::wait::RESUME_GRACE;
use super::{Engine, Outcome, format_time, parse_time, spec_digest};
use crate::agent::certs::{self, CertInfo};
use crate::agent::history::{BASELINE, RevisionFiles};
use crate::agent::kubelet_wait::Verdict;
use crate::agent::plan::{self, Action, Step};
use crate::agent::state::{ComponentState, FailureReason, Lifecycle, Settlement};
use crate::api::{Component, ComponentStatus, ControlPlaneNodeSpec, NodePhase};
use crate::render::sha256_hex;

impl Engine {
    /// Applies a node spec. `wait: false` writes and returns ([`Outcome::Written`]).
    pub async fn apply(
        &mut self,
        spec: &ControlPlaneNodeSpec,
        generation: Option<i64>,
        wait: bool,
    ) -> Outcome {
        let span = tracing::info_span!("apply", node = %self.node, revision = %spec.revision);
        let outcome = self
            .apply_inner(spec, generation, wait)
            .instrument(span)
            .await;
        self.back_in_pool();
        outcome
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
        if let Err(outcome) = self
            .pull_images(&rev, &steps, &spec.image_pull_secrets)
            .await
        {
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
                        self.drain_before_write(c).await;
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
                                restart_annotation: step.restart_annotation.clone(),
                                ..on_disk(&rev, step, &infos)
                            },
                        );
                    }
                    Action::Adopt => {
                        self.desired.lock().set(c, step.bytes.clone());
                        tracing::info!(component = %c, "adopted the manifest on disk: it means the same Pod as the render");
                        self.state.components.insert(
                            c,
                            ComponentState {
                                config_hash: None,
                                adopted: true,
                                ..on_disk(&rev, step, &infos)
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
                            self.state.components.insert(c, on_disk(&rev, step, &infos));
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
                    expected_hash: step.expect.expected(),
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
}

/// What the state records for the file of `step`, of revision `rev`, once it is on disk: not
/// yet confirmed, not adopted, no restart annotation.
fn on_disk(rev: &str, step: &Step, infos: &[CertInfo]) -> ComponentState {
    ComponentState {
        revision: rev.to_string(),
        content_sha256: sha256_hex(&step.bytes),
        rendered_hash: Some(step.rendered_hash.clone()),
        config_hash: step.expect.expected(),
        certificates: certs::digests(step.component, infos),
        ..Default::default()
    }
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
