//! The operator: reconciles each `ControlPlaneConfig` into one `ControlPlaneNode` per selected
//! node and rolls revisions out one node at a time (docs/architecture.md, "The
//! ControlPlaneNode protocol").
//!
//! - [`rollout`]: the pure decision (which node moves, what the status says, which Events);
//! - [`reconcile`]: one reconciliation against the API;
//! - [`controller`]: what triggers reconciliations;
//! - [`leader`]: leader election between replicas;
//! - [`metrics`]: the operator's Prometheus metrics;
//! - [`progress`]: `kubeplane rollout status`;
//! - [`selection`]: node selectors and Lease holders.
//!
//! [`run`] is `kubeplane operator`.

pub mod controller;
pub mod encryption;
pub mod leader;
pub mod metrics;
pub mod progress;
pub mod reconcile;
pub mod rollout;
pub mod selection;
pub mod waves;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scenarios;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tracing::{error, info, warn};

pub use progress::{StatusRequest, rollout_status};

use crate::telemetry::{self, Health, TelemetryError};

/// What `kubeplane operator` runs with (built from its command line in [`crate::cli`]).
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Address of the /healthz, /readyz and /metrics server.
    pub metrics_addr: String,
    /// Name of the Lease the replicas elect their leader with.
    pub lease_name: String,
    /// Namespace of that Lease.
    pub lease_namespace: String,
}

/// Why `kubeplane operator` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The HTTP server could not start or stopped.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// No Kubernetes client could be built.
    #[error(
        "cannot build a Kubernetes client from KUBECONFIG, ~/.kube/config or the in-cluster service account: {0}"
    )]
    Client(#[source] kube::Error),
    /// Another replica took over, or the lease could not be renewed.
    #[error("lost leadership of Lease {0}; exiting so that only the leader reconciles")]
    LostLeadership(String),
    /// The lease task ended.
    #[error("the leader-election task for Lease {lease} ended: {detail}")]
    LeaseTaskEnded {
        /// `namespace/name`.
        lease: String,
        /// How it ended.
        detail: String,
    },
    /// The controller could not start.
    #[error(transparent)]
    Controller(#[from] controller::ControllerError),
    /// The controller stopped without being asked to.
    #[error("the controller stopped unexpectedly")]
    ControllerStopped,
}

/// `kubeplane operator`: exits 0 after SIGTERM/SIGINT, 1 on any error (including a lost lease).
pub async fn operator_command(args: &OperatorConfig) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "operator stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn task_outcome<T, E: std::fmt::Display>(
    r: Result<Result<T, E>, tokio::task::JoinError>,
) -> String {
    match r {
        Ok(Ok(_)) => "finished".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Runs the operator: HTTP server, leader election, and the controller while leading.
pub async fn run(args: &OperatorConfig) -> Result<(), OperatorError> {
    let mut registry = telemetry::registry();
    let metrics = metrics::Metrics::register(&mut registry);
    let health = Health::new();
    let listener = telemetry::bind(&args.metrics_addr).await?;
    let mut server = tokio::spawn(telemetry::serve(listener, registry, health.clone()));

    let mut config = kube::Config::infer()
        .await
        .map_err(|e| OperatorError::Client(kube::Error::InferConfig(e)))?;
    // kube-client's default retry answers 429/503/504 with up to 15 retries doubling from 5 ms
    // (the last waits minutes), invisible to the watches: after an API server restart (503
    // while it starts) a watch sat in those retries for 10 s and more. The watches retry on
    // their own, briefly (controller::recovering), and a failed reconcile is requeued.
    config.default_retry = false;
    let api = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(OperatorError::Client)?;
    let lease = format!("{}/{}", args.lease_namespace, args.lease_name);
    let identity = leader::identity();
    info!(%identity, %lease, %api, "joining the leader election");

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    // The API server may be unreachable (starting, restarting, a network problem): retry with
    // backoff, not-ready and saying where and why, instead of exiting.
    let mut failures = 0u32;
    let leader::Election {
        mut is_leader,
        mut task,
    } = loop {
        let attempt = leader::elect(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
        );
        let err = tokio::select! {
            r = attempt => match r {
                Ok(e) => break e,
                Err(e) => e,
            },
            r = &mut server => return Err(server_stopped(r)),
            () = &mut shutdown => {
                info!("shutting down before joining the leader election");
                return Ok(());
            }
        };
        failures = failures.saturating_add(1);
        let delay = reconcile::backoff(failures).min(Duration::from_secs(10));
        let cause = controller::error_chain(&err);
        warn!(%api, %lease, %cause, retry_in = ?delay, "cannot join the leader election; is the API server reachable?");
        health.set_not_ready(format!(
            "cannot reach the API server at {api} (Lease {lease}): {cause}; retrying"
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            r = &mut server => return Err(server_stopped(r)),
            () = &mut shutdown => {
                info!("shutting down before joining the leader election");
                return Ok(());
            }
        }
    };
    health.set_ready(format!("standby: waiting for Lease {lease}"));

    // Standby until leader.
    tokio::select! {
        r = leader::acquired(&mut is_leader) => {
            if r.is_err() {
                return Err(OperatorError::LeaseTaskEnded { lease, detail: task_outcome(task.await) });
            }
        }
        r = &mut task => return Err(OperatorError::LeaseTaskEnded { lease, detail: task_outcome(r) }),
        r = &mut server => return Err(server_stopped(r)),
        () = &mut shutdown => {
            info!("shutting down while standby");
            release(is_leader, task).await;
            return Ok(());
        }
    }
    info!(%identity, %lease, "became leader; starting the controller");
    health.set_not_ready("leader: starting the controller");

    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        metrics,
        Some(identity.clone()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = controller::run(client, &api, ctx, health.clone(), async move {
        let _ = stopped.await;
    });
    tokio::pin!(controller);

    let outcome = tokio::select! {
        r = &mut controller => match r {
            Ok(()) => Err(OperatorError::ControllerStopped),
            Err(e) => Err(e.into()),
        },
        () = leader::lost(&mut is_leader) => Err(OperatorError::LostLeadership(lease.clone())),
        r = &mut task => Err(OperatorError::LeaseTaskEnded { lease: lease.clone(), detail: task_outcome(r) }),
        r = &mut server => Err(server_stopped(r)),
        () = &mut shutdown => Ok(()),
    };
    match outcome {
        Ok(()) => {
            info!("shutting down: finishing running reconciles, then releasing the lease");
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(20), &mut controller)
                .await
                .is_err()
            {
                warn!("reconciles did not finish within 20s");
            }
            release(is_leader, task).await;
            Ok(())
        }
        Err(e) => {
            health.set_not_ready(e.to_string());
            Err(e)
        }
    }
}

fn server_stopped(r: Result<Result<(), TelemetryError>, tokio::task::JoinError>) -> OperatorError {
    match r {
        Ok(Err(e)) => e.into(),
        Ok(Ok(())) => OperatorError::Telemetry(TelemetryError::Serve(std::io::Error::other(
            "the server returned",
        ))),
        Err(e) => OperatorError::Telemetry(TelemetryError::Serve(std::io::Error::other(e))),
    }
}

/// Gives the Lease up: dropping the receiver makes the lease task release it and return.
async fn release(
    is_leader: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<
        Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
    >,
) {
    drop(is_leader);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => info!("lease released"),
        Ok(r) => warn!(outcome = %task_outcome(r), "lease task ended with an error"),
        Err(_) => warn!("lease not released within 5s; it expires on its own"),
    }
}
