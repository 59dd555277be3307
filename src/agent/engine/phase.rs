//! The state saved, the phase and status published, and how an attempt settles
//! (`Healthy`, `Failed`, or the settlement told again).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Engine, Outcome, now};
use crate::agent::state::{FailedRevision, FailureReason, Lifecycle, Settlement};
use crate::agent::status::AgentEvent;
use crate::api::{Component, ComponentStatus, NodePhase};

impl Engine {
    /// Writes the state and the status derived from it.
    pub(super) fn save(&mut self) {
        if let Err(e) = self.store.save(&self.state) {
            tracing::error!(error = %e, "could not save state.json");
            self.board.event(AgentEvent::warning(
                "StateNotSaved",
                "Apply",
                format!("{e}; the agent may repeat work after a restart"),
            ));
        }
        self.publish();
    }

    pub(super) fn publish(&self) {
        let st = &self.state;
        let generation = self.generation;
        let since = st
            .phase_since
            .as_deref()
            .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(Time);
        self.board.update(|s| {
            s.observed_generation = generation.or(s.observed_generation);
            s.phase = st.phase.or(Some(NodePhase::Pending));
            s.target_revision = st.target_revision.clone();
            s.applied_revision = st.applied_revision.clone();
            s.last_known_good_revision = st.last_known_good_revision.clone();
            s.reason = st.reason.clone();
            s.message = st.message.clone();
            s.phase_since = since;
            // The operator never gives a node a newer revision while it restores.
            s.rolling_back = matches!(st.lifecycle, Lifecycle::RollingBack { .. }).then_some(true);
        });
    }

    /// Sets the phase; on a change of phase, records when and publishes an Event.
    pub(super) fn set_phase(&mut self, phase: NodePhase, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let changed = self.state.phase != Some(phase);
        if changed {
            self.state.phase_since = Some(now().0.to_string());
        }
        let same = !changed
            && self.state.reason.as_deref() == Some(reason)
            && self.state.message.as_deref() == Some(message.as_str());
        self.state.phase = Some(phase);
        self.state.reason = Some(reason.to_string());
        self.state.message = Some(message.clone());
        if changed {
            let warning = matches!(phase, NodePhase::RolledBack | NodePhase::Failed);
            let ev_reason = phase.as_str();
            let note = format!("{reason}: {message}");
            let ev = if warning {
                AgentEvent::warning(ev_reason, "Apply", note)
            } else {
                AgentEvent::normal(ev_reason, "Apply", note)
            };
            self.board.event(ev);
        }
        if !same && !changed {
            // A phase change is logged with its Event.
            tracing::info!(phase = phase.as_str(), reason, "{message}");
        }
        self.save();
    }

    pub(super) fn component_status(&self, st: ComponentStatus) {
        self.board.update(
            |s| match s.components.iter_mut().find(|c| c.name == st.name) {
                Some(c) => *c = st,
                None => {
                    s.components.push(st);
                    s.components.sort_by_key(|c| Component::parse(&c.name));
                }
            },
        );
    }

    /// The status of a component the wait confirmed: replaces the wait's last snapshot (which,
    /// after a wait judged without the API, still said "API unavailable").
    pub(super) fn confirmed_status(
        &self,
        c: Component,
        expected: Option<String>,
        observed: Option<String>,
    ) {
        if observed.is_some() {
            // Seen through the API: the wait's last snapshot is current.
            return;
        }
        let by_api = false;
        self.component_status(ComponentStatus {
            name: c.name().to_string(),
            observed_hash: observed.or_else(|| expected.clone()),
            expected_hash: expected,
            ready: true,
            healthy: true,
            message: (!by_api).then(|| {
                "confirmed by local evidence (the container runtime ran the new uid and the endpoint answered); the mirror pod was not seen".to_string()
            }),
            ..Default::default()
        });
    }

    /// Sets the phase the settled lifecycle stands for (its detailed message was overwritten).
    pub(super) fn restate_settlement(&mut self) {
        let Lifecycle::Settled {
            revision,
            settlement,
        } = self.state.lifecycle.clone()
        else {
            return;
        };
        match settlement {
            Settlement::Healthy => self.set_phase(
                NodePhase::Healthy,
                "Healthy",
                format!("revision {revision}: every component updated and healthy"),
            ),
            Settlement::RolledBack {
                failed_component,
                reason,
                restored,
            } => self.set_phase(
                NodePhase::RolledBack,
                reason.as_str(),
                format!(
                    "revision {revision}: {failed_component} did not become healthy ({reason}); revision {restored} was restored"
                ),
            ),
            Settlement::Failed { reason } => self.set_phase(
                NodePhase::Failed,
                reason.as_str(),
                format!("revision {revision} failed ({reason})"),
            ),
        }
    }

    pub(super) fn healthy(&mut self, rev: &str, message: impl Into<String>) -> Outcome {
        self.state.applied_revision = Some(rev.to_string());
        self.state.last_known_good_revision = Some(rev.to_string());
        self.state.lifecycle = Lifecycle::Settled {
            revision: rev.to_string(),
            settlement: Settlement::Healthy,
        };
        self.set_phase(NodePhase::Healthy, "Healthy", message);
        let mut protect: Vec<&str> = vec![rev];
        if let Some(b) = self.state.baseline_revision.as_deref() {
            protect.push(b);
        }
        let revs: Vec<String> = self
            .state
            .components
            .values()
            .map(|c| c.revision.clone())
            .collect();
        protect.extend(revs.iter().map(String::as_str));
        if let Err(e) = self.history.rotate(&protect) {
            tracing::warn!(error = %e, "could not rotate history");
        }
        Outcome::Healthy
    }

    /// Settles the current attempt `Failed`; a failure of a component (not of the spec) is
    /// remembered so the revision is not tried again on this node.
    pub(super) fn fail(
        &mut self,
        reason: FailureReason,
        component: Option<Component>,
        message: impl Into<String>,
    ) -> Outcome {
        let message = message.into();
        let revision = self.state.target_revision.clone().unwrap_or_default();
        if let Some(digest) = self.state.target_digest.clone() {
            self.state.remember_failure(FailedRevision {
                revision: revision.clone(),
                digest,
                component,
                reason,
                at: now().0.to_string(),
            });
        }
        self.state.lifecycle = Lifecycle::Settled {
            revision,
            settlement: Settlement::Failed { reason },
        };
        self.set_phase(NodePhase::Failed, reason.as_str(), message.clone());
        Outcome::Failed {
            reason: reason.as_str().into(),
            message,
        }
    }

    pub(super) fn settled_outcome(&self) -> Outcome {
        let message = self.state.message.clone().unwrap_or_default();
        match &self.state.lifecycle {
            Lifecycle::Settled {
                settlement: Settlement::RolledBack { reason, .. },
                ..
            } => Outcome::RolledBack {
                reason: reason.as_str().into(),
                message,
            },
            Lifecycle::Settled {
                settlement: Settlement::Failed { reason },
                ..
            } => Outcome::Failed {
                reason: reason.as_str().into(),
                message,
            },
            _ => Outcome::Healthy,
        }
    }
}
