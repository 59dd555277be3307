//! The agent's Prometheus metrics, read from its [`StatusBoard`] at each scrape (names get the
//! `kubeplane_` prefix from the registry; every series carries the `node` label):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kubeplane_agent_phase` | gauge, 1 for the node's current phase, 0 for the others (all 0 before the first revision) | `phase` |
//! | `kubeplane_agent_events_total` | counter, Events emitted since the agent started (`DriftRestored`, `Quarantined`, `RollingBack`, `CertificateRestarted`, …) | `reason`, `type` |
//! | `kubeplane_agent_component_ready` | gauge, 1 while the mirror pod is Ready | `component` |
//! | `kubeplane_agent_component_healthy` | gauge, 1 while the local endpoint answers | `component` |
//! | `kubeplane_agent_component_restarts` | gauge, the mirror pod's container restart count, when seen | `component` |
//! | `kubeplane_agent_drift_records` | gauge, hand edits recorded in `status.drift` | |
//! | `kubeplane_agent_quarantined_files` | gauge, files recorded in `status.quarantined` | |
//! | `kubeplane_agent_unmanaged_files` | gauge, files in the manifest directory left alone | |
//! | `kubeplane_certificate_expiry_seconds` | gauge, seconds until notAfter at scrape time, negative once expired | `component`, `path` |
//!
//! The operator exports the same certificate gauge with a `config` label, from the status the
//! agents report; the agent's own copy works while the API server is down.

use k8s_openapi::jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::status::StatusBoard;
use crate::api::NodePhase;
use crate::telemetry;

/// Reads the board at each scrape.
#[derive(Debug)]
struct AgentCollector {
    node: String,
    board: StatusBoard,
}

/// Writes one gauge family: `series` are (label pairs, value).
fn gauge<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'a str, String)>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.board.snapshot();
        let node = || ("node", self.node.clone());
        let one_if = |b: bool| if b { 1.0 } else { 0.0 };

        gauge(
            &mut encoder,
            "agent_phase",
            "1 for the phase of the node's target revision, 0 for the others",
            NodePhase::ALL.iter().map(|p| {
                (
                    vec![node(), ("phase", p.as_str().to_string())],
                    one_if(status.phase == Some(*p)),
                )
            }),
        )?;

        let counts = self.board.event_counts();
        let mut family = encoder.encode_descriptor(
            "agent_events",
            "Events the agent emitted since it started, by reason and type",
            None,
            MetricType::Counter,
        )?;
        for (reason, kind, n) in counts {
            let labels = [node(), ("reason", reason), ("type", kind.to_string())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }

        let per_component = |f: fn(&crate::api::ComponentStatus) -> Option<f64>| {
            status
                .components
                .iter()
                .filter_map(|c| f(c).map(|v| (vec![node(), ("component", c.name.clone())], v)))
                .collect::<Vec<_>>()
        };
        gauge(
            &mut encoder,
            "agent_component_ready",
            "1 while the component's mirror pod is Ready",
            per_component(|c| Some(if c.ready { 1.0 } else { 0.0 })),
        )?;
        gauge(
            &mut encoder,
            "agent_component_healthy",
            "1 while the component's local HTTPS endpoint answers",
            per_component(|c| Some(if c.healthy { 1.0 } else { 0.0 })),
        )?;
        gauge(
            &mut encoder,
            "agent_component_restarts",
            "Restart count of the component's container in its mirror pod",
            per_component(|c| c.restart_count.map(f64::from)),
        )?;

        for (name, help, n) in [
            (
                "agent_drift_records",
                "Hand edits of managed files recorded in status.drift",
                status.drift.len(),
            ),
            (
                "agent_quarantined_files",
                "Stray copies of managed manifests moved to the quarantine directory",
                status.quarantined.len(),
            ),
            (
                "agent_unmanaged_files",
                "Files in the manifest directory kubeplane leaves alone",
                status.unmanaged.len(),
            ),
        ] {
            gauge(&mut encoder, name, help, [(vec![node()], n as f64)])?;
        }

        let now = Timestamp::now();
        gauge(
            &mut encoder,
            "certificate_expiry_seconds",
            "Seconds until a certificate the node's components use expires (negative once expired)",
            status.certificates.iter().filter_map(|c| {
                let not_after = c.not_after.as_ref()?.0;
                let labels = vec![
                    node(),
                    ("component", c.component.clone()),
                    ("path", c.path.clone()),
                ];
                Some((labels, not_after.duration_since(now).as_secs_f64().round()))
            }),
        )?;
        Ok(())
    }
}

/// The agent's registry: its metrics, read from `board`, labelled with `node`.
pub fn registry(node: &str, board: StatusBoard) -> Registry {
    let mut registry = telemetry::registry();
    registry.register_collector(Box::new(AgentCollector {
        node: node.to_string(),
        board,
    }));
    registry
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::agent::status::AgentEvent;
    use crate::api::{CertificateStatus, ComponentStatus, QuarantineRecord};

    fn scrape(registry: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, registry).unwrap();
        out
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn metrics_follow_the_status_board_at_each_scrape() {
        let board = StatusBoard::new();
        let registry = registry("cp-1", board.clone());

        let before = scrape(&registry);
        assert_eq!(
            value(
                &before,
                r#"kubeplane_agent_phase{node="cp-1",phase="Healthy"}"#
            ),
            Some(0.0),
            "{before}"
        );
        assert!(
            !before.contains("kubeplane_agent_events_total{"),
            "{before}"
        );

        let expires = Timestamp::now() + std::time::Duration::from_secs(86_400);
        board.update(|s| {
            s.phase = Some(NodePhase::Healthy);
            s.components = vec![ComponentStatus {
                name: "kube-scheduler".into(),
                ready: true,
                healthy: false,
                restart_count: Some(3),
                ..Default::default()
            }];
            let record = |file: &str| QuarantineRecord {
                file: file.into(),
                moved_to: format!("/state/quarantine/{file}"),
                reason: "backup copy of kube-scheduler.yaml".into(),
                at: Time(Timestamp::now()),
            };
            s.quarantined = vec![
                record("kube-scheduler.yaml.bak"),
                record("kube-scheduler.yaml~"),
            ];
            s.certificates = vec![
                CertificateStatus {
                    component: "kube-scheduler".into(),
                    path: "/etc/kubernetes/scheduler.conf".into(),
                    not_after: Some(Time(expires)),
                    error: None,
                },
                CertificateStatus {
                    component: "kube-scheduler".into(),
                    path: "/missing.crt".into(),
                    not_after: None,
                    error: Some("no such file".into()),
                },
            ];
        });
        board.event(AgentEvent::warning("DriftRestored", "Heal", "x"));
        board.event(AgentEvent::warning("DriftRestored", "Heal", "y"));
        board.event(AgentEvent::normal("Healthy", "Apply", "z"));

        let after = scrape(&registry);
        let v = |series: &str| value(&after, series);
        assert_eq!(
            v(r#"kubeplane_agent_phase{node="cp-1",phase="Healthy"}"#),
            Some(1.0)
        );
        assert_eq!(
            v(r#"kubeplane_agent_phase{node="cp-1",phase="Pending"}"#),
            Some(0.0)
        );
        assert_eq!(
            v(r#"kubeplane_agent_events_total{node="cp-1",reason="DriftRestored",type="Warning"}"#),
            Some(2.0),
            "{after}"
        );
        assert_eq!(
            v(r#"kubeplane_agent_events_total{node="cp-1",reason="Healthy",type="Normal"}"#),
            Some(1.0)
        );
        let c = r#"{node="cp-1",component="kube-scheduler"}"#;
        assert_eq!(v(&format!("kubeplane_agent_component_ready{c}")), Some(1.0));
        assert_eq!(
            v(&format!("kubeplane_agent_component_healthy{c}")),
            Some(0.0)
        );
        assert_eq!(
            v(&format!("kubeplane_agent_component_restarts{c}")),
            Some(3.0)
        );
        assert_eq!(
            v(r#"kubeplane_agent_quarantined_files{node="cp-1"}"#),
            Some(2.0)
        );
        assert_eq!(
            v(r#"kubeplane_agent_drift_records{node="cp-1"}"#),
            Some(0.0)
        );
        let secs = v(concat!(
            r#"kubeplane_certificate_expiry_seconds{node="cp-1",component="kube-scheduler","#,
            r#"path="/etc/kubernetes/scheduler.conf"}"#
        ))
        .expect(&after);
        assert!((86_000.0..=86_400.0).contains(&secs), "{secs}");
        assert!(
            !after.contains("/missing.crt"),
            "a certificate that could not be read has no expiry: {after}"
        );
    }
}
