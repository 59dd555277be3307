//! Certificates: expiry reported, and a component restarted (restart annotation bumped)
//! when a certificate it loads is renewed on disk.

use std::time::{Duration, SystemTime};

use super::{DEFAULT_TIMEOUT, Engine, parse_pod, timeout_of};
use crate::agent::certs::{self, CertInfo};
use crate::agent::kubelet_wait::{Expect, Verdict};
use crate::agent::status::AgentEvent;
use crate::api::Component;
use crate::render::sha256_hex;

impl Engine {
    /// Reads the spec's certificates, reports their expiry, returns what was read.
    pub fn read_certificates(&self) -> Vec<CertInfo> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        let infos: Vec<CertInfo> = spec.certificates.iter().map(certs::read).collect();
        let statuses = certs::statuses(&infos);
        self.board.update(|s| s.certificates = statuses);
        infos
    }

    /// Restarts the components whose certificates changed on disk since their last start,
    /// by bumping the restart annotation, and waits for each. Returns the restarted ones.
    pub async fn restart_for_certificates(&mut self) -> Vec<Component> {
        let Some(spec) = self.spec.clone() else {
            return Vec::new();
        };
        let infos = self.read_certificates();
        let mut restarted = Vec::new();
        for c in Component::ALL {
            let now = certs::digests(c, &infos);
            let Some(cs) = self.state.components.get(&c).cloned() else {
                continue;
            };
            if cs.certificates == now {
                continue;
            }
            // Only a certificate whose known content changed restarts; one seen for the first
            // time (or readable again) is just remembered.
            let changed: Vec<String> = now
                .iter()
                .filter(|(p, d)| cs.certificates.get(*p).is_some_and(|old| old != *d))
                .map(|(p, _)| p.clone())
                .collect();
            if changed.is_empty() || !cs.confirmed {
                if let Some(x) = self.state.components.get_mut(&c) {
                    x.certificates = now;
                }
                self.save();
                continue;
            }
            let base = self
                .history
                .load(&cs.revision)
                .ok()
                .flatten()
                .and_then(|r| r.manifests.get(&c).cloned().flatten());
            let Some(base) = base else {
                tracing::warn!(component = %c, "certificate changed but the manifest is not in history; not restarting");
                continue;
            };
            let value = certs::restart_value(&now);
            let (bytes, uid) = match certs::with_restart_annotation(&base, &value, &self.node) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(component = %c, error = %e, "cannot add the restart annotation");
                    continue;
                }
            };
            self.drain_before_write(c).await;
            let span = tracing::info_span!("certificate_restart", component = %c);
            let _g = span.enter();
            self.board.event(AgentEvent::normal(
                "CertificateRestart",
                "Restart",
                format!(
                    "{} changed on disk; restarting {c} so it loads the new certificate ({}: {value})",
                    changed.join(", "),
                    certs::RESTART_ANNOTATION
                ),
            ));
            let result = {
                let mut g = self.desired.lock();
                g.set(c, bytes.clone());
                let managed = g.managed();
                self.dirs
                    .write_manifest(c.manifest_file(), &managed, &bytes)
            };
            if let Err(e) = result {
                self.board.event(AgentEvent::warning(
                    "CertificateRestartFailed",
                    "Restart",
                    format!("could not write {}: {e}", c.manifest_file()),
                ));
                continue;
            }
            if let Some(x) = self.state.components.get_mut(&c) {
                x.restart_annotation = Some(value);
                x.content_sha256 = sha256_hex(&bytes);
                x.config_hash = Some(uid.clone());
                x.confirmed = false;
                x.certificates = now;
            }
            self.save();
            drop(_g);
            let timeout = spec
                .manifests
                .iter()
                .find(|m| m.component == c)
                .map_or(DEFAULT_TIMEOUT, |m| timeout_of(m.health_timeout_seconds));
            let pod = parse_pod(&bytes).unwrap_or_default();
            let min_ready = Duration::from_secs(spec.min_ready_seconds.max(0) as u64);
            match self
                .wait_component(
                    c,
                    Expect::Hash(uid),
                    &pod,
                    timeout,
                    min_ready,
                    SystemTime::now(),
                )
                .await
            {
                Verdict::Updated { .. } => {
                    if let Some(x) = self.state.components.get_mut(&c) {
                        x.confirmed = true;
                    }
                    self.save();
                    self.board.event(AgentEvent::normal(
                        "CertificateRestarted",
                        "Restart",
                        format!("{c} restarted with the renewed certificate and is healthy"),
                    ));
                }
                Verdict::TimedOut(d) => {
                    self.board.event(AgentEvent::warning(
                        "CertificateRestartUnhealthy",
                        "Restart",
                        format!(
                            "{}; the manifest was not rolled back because the old one would load the same new certificate: check the certificate",
                            d.message
                        ),
                    ));
                }
            }
            self.back_in_pool();
            restarted.push(c);
        }
        restarted
    }
}
