//! The operator's Prometheus metrics (names get the `kubeplane_` prefix from the registry):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kubeplane_reconciles_total` | counter | `config` |
//! | `kubeplane_reconcile_errors_total` | counter | `config`, `error` |
//! | `kubeplane_reconcile_duration_seconds` | histogram | |
//! | `kubeplane_rollout_phase` | gauge, 1 for the current phase, 0 for the others | `config`, `phase` |
//! | `kubeplane_nodes` | gauge | `config`, `phase` |
//! | `kubeplane_certificate_expiry_seconds` | gauge, computed at scrape time, negative once expired | `config`, `node`, `component`, `path` |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::rollout::RolloutPhase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabels {
    config: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    config: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    config: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CertLabels {
    config: String,
    node: String,
    component: String,
    path: String,
}

/// Node phases shown by `kubeplane_nodes`: the agent's phases and `WaitingForAgent` (no facts).
pub const NODE_PHASES: [&str; 7] = [
    "WaitingForAgent",
    "Pending",
    "Applying",
    "WaitingForKubelet",
    "Healthy",
    "RolledBack",
    "Failed",
];

/// One certificate's expiry, as an agent reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// The node.
    pub node: String,
    /// The component using it.
    pub component: String,
    /// The file.
    pub path: String,
    /// Its notAfter.
    pub not_after: Timestamp,
}

/// Certificate expiries per config, turned into seconds-to-expiry at each scrape.
#[derive(Debug, Default)]
struct CertificateCollector {
    by_config: Mutex<BTreeMap<String, Vec<CertificateExpiry>>>,
}

impl Collector for CertificateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Timestamp::now();
        let by_config = self.by_config.lock().unwrap_or_else(|e| e.into_inner());
        let mut family = encoder.encode_descriptor(
            "certificate_expiry_seconds",
            "Seconds until a certificate the control plane uses expires (negative once expired), from ControlPlaneNode status.certificates",
            None,
            MetricType::Gauge,
        )?;
        for (config, certs) in by_config.iter() {
            for c in certs {
                let labels = CertLabels {
                    config: config.clone(),
                    node: c.node.clone(),
                    component: c.component.clone(),
                    path: c.path.clone(),
                };
                let secs = c.not_after.duration_since(now).as_secs_f64();
                ConstGauge::new(secs.round()).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The operator's metrics. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    reconciles: Family<ConfigLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    rollout_phase: Family<PhaseLabels, Gauge>,
    nodes: Family<PhaseLabels, Gauge>,
    certificates: Arc<CertificateCollector>,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            reconciles: Family::default(),
            errors: Family::default(),
            // 1 ms .. ~16 s
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            rollout_phase: Family::default(),
            nodes: Family::default(),
            certificates: Arc::default(),
        };
        registry.register(
            "reconciles",
            "Reconciliations of ControlPlaneConfigs",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error kind",
            m.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation takes",
            m.duration.clone(),
        );
        registry.register(
            "rollout_phase",
            "Rollout phase of each ControlPlaneConfig: 1 for the current phase, 0 for the others",
            m.rollout_phase.clone(),
        );
        registry.register(
            "nodes",
            "Selected control-plane nodes of each ControlPlaneConfig, by phase",
            m.nodes.clone(),
        );
        registry.register_collector(Box::new(m.certificates.clone()));
        m
    }

    /// Counts a reconciliation and times it until the returned guard drops.
    pub fn reconcile_started(&self, config: &str) -> ReconcileTimer {
        self.reconciles
            .get_or_create(&ConfigLabels {
                config: config.to_string(),
            })
            .inc();
        ReconcileTimer {
            started: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_failed(&self, config: &str, error: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                config: config.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// Sets the rollout phase of a config (1 for `phase`, 0 for the others).
    pub fn set_rollout_phase(&self, config: &str, phase: RolloutPhase) {
        for p in RolloutPhase::ALL {
            self.rollout_phase
                .get_or_create(&PhaseLabels {
                    config: config.to_string(),
                    phase: p.as_str().to_string(),
                })
                .set(i64::from(p == phase));
        }
    }

    /// Sets the number of nodes per phase of a config; phases not in `counts` are 0.
    pub fn set_node_phases(&self, config: &str, counts: &BTreeMap<&str, i64>) {
        for p in NODE_PHASES {
            self.nodes
                .get_or_create(&PhaseLabels {
                    config: config.to_string(),
                    phase: p.to_string(),
                })
                .set(counts.get(p).copied().unwrap_or(0));
        }
    }

    /// Drops the gauges of a config that no longer exists.
    pub fn forget(&self, config: &str) {
        for p in RolloutPhase::ALL {
            self.rollout_phase.remove(&PhaseLabels {
                config: config.to_string(),
                phase: p.as_str().to_string(),
            });
        }
        for p in NODE_PHASES {
            self.nodes.remove(&PhaseLabels {
                config: config.to_string(),
                phase: p.to_string(),
            });
        }
        self.set_certificates(config, Vec::new());
    }

    /// Replaces the certificate expiries of a config.
    pub fn set_certificates(&self, config: &str, certs: Vec<CertificateExpiry>) {
        let mut by_config = self
            .certificates
            .by_config
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if certs.is_empty() {
            by_config.remove(config);
        } else {
            by_config.insert(config.to_string(), certs);
        }
    }
}

/// Observes the reconciliation's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    started: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reg: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, reg).expect("encode");
        s
    }

    #[test]
    fn every_metric_is_prefixed_and_labelled() {
        let mut reg = crate::telemetry::registry();
        let m = Metrics::register(&mut reg);
        drop(m.reconcile_started("prod"));
        m.reconcile_failed("prod", "Kube");
        m.set_rollout_phase("prod", RolloutPhase::Halted);
        m.set_node_phases("prod", &[("Healthy", 2), ("RolledBack", 1)].into());
        let soon = Timestamp::now() + std::time::Duration::from_secs(3600);
        m.set_certificates(
            "prod",
            vec![CertificateExpiry {
                node: "cp-1".into(),
                component: "kube-apiserver".into(),
                path: "/etc/kubernetes/pki/apiserver.crt".into(),
                not_after: soon,
            }],
        );
        let t = text(&reg);
        for line in [
            "kubeplane_reconciles_total{config=\"prod\"} 1",
            "kubeplane_reconcile_errors_total{config=\"prod\",error=\"Kube\"} 1",
            "kubeplane_reconcile_duration_seconds_count 1",
            "kubeplane_rollout_phase{config=\"prod\",phase=\"Halted\"} 1",
            "kubeplane_rollout_phase{config=\"prod\",phase=\"Complete\"} 0",
            "kubeplane_nodes{config=\"prod\",phase=\"Healthy\"} 2",
            "kubeplane_nodes{config=\"prod\",phase=\"RolledBack\"} 1",
            "kubeplane_nodes{config=\"prod\",phase=\"Pending\"} 0",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
        let cert = t
            .lines()
            .find(|l| l.starts_with("kubeplane_certificate_expiry_seconds{"))
            .expect("certificate series");
        assert!(
            cert.contains("node=\"cp-1\"")
                && cert.contains("path=\"/etc/kubernetes/pki/apiserver.crt\""),
            "{cert}"
        );
        let secs: f64 = cert.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((3590.0..=3600.0).contains(&secs), "{secs}");

        m.set_certificates("prod", Vec::new());
        assert!(!text(&reg).contains("kubeplane_certificate_expiry_seconds{"));
        m.forget("prod");
        let t = text(&reg);
        assert!(!t.contains("kubeplane_rollout_phase{"), "{t}");
        assert!(!t.contains("kubeplane_nodes{"), "{t}");
    }
}
