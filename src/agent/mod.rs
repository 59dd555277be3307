//! The node agent (`kubeplane agent`) and its local twin (`kubeplane apply`).
//!
//! The agent runs on every control-plane node (DaemonSet, hostNetwork, hostPaths of the
//! manifest directory and its state directory only: never the kubeconfigs beside them). It
//! watches its own `ControlPlaneNode` (field selector
//! `metadata.name=<node>`), reports node facts, and makes the manifest directory match the
//! spec following the protocol of `docs/architecture.md`:
//!
//! - [`files`]: atomic, symlink-refusing writes of managed files;
//! - [`history`], [`state`]: the last N revisions and `state.json`, surviving restarts;
//! - [`plan`]: what to do with each component (keep, wait, adopt, write);
//! - [`engine`]: apply → wait → rollback, kube-apiserver first, then the controller-manager
//!   and the scheduler together;
//! - [`kubelet_wait`]: mirror pod hash + Ready + local endpoint for `minReadySeconds`;
//! - [`health`]: the local HTTPS endpoint check;
//! - [`drift`], [`quarantine`], [`desired`]: hand edits healed, strays moved out;
//! - [`certs`]: certificate expiry and restarts on renewal;
//! - [`lb_drain`]: out of the load balancer (haproxy agent check) before kube-apiserver restarts;
//! - [`status`]: `ControlPlaneNode/status` by server-side apply, and Events;
//! - [`local`]: `kubeplane apply`.

pub mod certs;
pub mod desired;
pub mod drift;
pub mod engine;
pub mod files;
pub mod health;
pub mod history;
pub mod kubelet_wait;
pub mod lb_drain;
pub mod local;
pub mod metrics;
pub mod plan;
pub mod pull_auth;
pub mod quarantine;
pub mod runtime;
pub mod state;
pub mod status;

#[cfg(test)]
pub(crate) mod fixtures;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use self::desired::Desired;
use self::drift::{DriftHandler, DriftMode};
use self::engine::{Engine, EngineError, EngineParts, KubeSecrets, Outcome};
use self::files::NodeDirs;
use self::health::HttpsCheck;
use self::kubelet_wait::KubeMirrorPods;
use self::status::{AgentEvent, StatusBoard};
use crate::api::ControlPlaneNode;
use crate::telemetry::{self, Health, TelemetryError};

/// How long to wait before trying a revision again that waits on something outside the
/// spec (a Secret that is unreadable or changed).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long certificate changes are collected before restarting (a renewal writes several
/// files in a row).
pub const CERT_DEBOUNCE: Duration = Duration::from_secs(2);

/// What `kubeplane agent` runs with (built from its command line in [`crate::cli`]).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Name of this node: the agent acts on the ControlPlaneNode of that name.
    pub node_name: String,
    /// The directory kubelet reads static Pod manifests from.
    pub manifest_dir: PathBuf,
    /// The agent's state directory (history, state.json, side files, quarantine). May be on
    /// another filesystem or mount than the manifest directory (manifests are staged as
    /// dot-files beside their target).
    pub state_dir: PathBuf,
    /// What to do with a managed manifest changed by hand.
    pub drift_mode: DriftMode,
    /// How many revisions of every managed file to keep under <state-dir>/history.
    pub history: usize,
    /// Root under which the optional host CA directories are looked up (`/` on a node).
    pub host_root: PathBuf,
    /// Address of the agent's HTTP server: `/healthz`, `/readyz`, `/metrics`.
    pub metrics_addr: String,
    /// The container runtime's CRI socket; `none` turns local evidence off.
    pub container_runtime_endpoint: String,
    /// Where to answer the load balancer's agent checks (`ADDR:PORT`); `None`: no drain
    /// before kube-apiserver restarts ([`lb_drain`]).
    pub lb_agent_check_addr: Option<String>,
    /// Seconds between a load balancer hearing `drain` and the kube-apiserver restart.
    pub lb_drain_seconds: u64,
}

/// The container runtime named by `--container-runtime-endpoint` (`none`: no runtime).
pub fn runtime_from_arg(endpoint: &str) -> Option<Arc<dyn runtime::ContainerRuntime>> {
    if endpoint.is_empty() || endpoint == "none" {
        return None;
    }
    match runtime::CriRuntime::new(endpoint) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::warn!(endpoint, error = %e, "container runtime endpoint unusable; judging by the API and the local endpoint only");
            None
        }
    }
}

/// Backoff of the agent's watches: the API server it talks to may be this node's, restarted
/// by the agent itself, and its return must be noticed within a second or two (the default
/// watcher backoff grows to 30 s and more).
pub fn quick_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The node's directories or state are unusable.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The manifest directory cannot be watched.
    #[error("cannot watch {dir}: {source}")]
    Watch {
        /// The directory.
        dir: String,
        /// Why.
        source: notify::Error,
    },
    /// The HTTP server could not start.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The load balancer's agent-check address cannot be listened on.
    #[error(
        "cannot listen for load balancer agent checks on {addr} (--lb-agent-check-addr): {source}"
    )]
    AgentCheck {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `kubeplane agent`: the agent with the default client (in-cluster, or `KUBECONFIG`), until
/// SIGTERM/Ctrl-C.
pub async fn run(args: AgentConfig) -> Result<(), AgentError> {
    let health = Health::new();
    let board = StatusBoard::new();
    let listener = telemetry::bind(&args.metrics_addr).await?;
    tokio::spawn(telemetry::serve(
        listener,
        metrics::registry(&args.node_name, board.clone()),
        health.clone(),
    ));
    health.set_not_ready("connecting to the API server");
    let client = Client::try_default().await?;
    run_with(
        args,
        client,
        Arc::new(HttpsCheck::new()),
        shutdown(),
        health,
        board,
    )
    .await
}

/// The agent: facts, drift, certificates, and the engine driven by the node's
/// `ControlPlaneNode`, until `shutdown` completes. `health` checks the local endpoints
/// ([`HttpsCheck`] in production); `board` collects the status (and feeds the metrics).
pub async fn run_with(
    args: AgentConfig,
    client: Client,
    health: Arc<dyn health::HealthCheck>,
    shutdown: impl std::future::Future<Output = ()>,
    readiness: Health,
    board: StatusBoard,
) -> Result<(), AgentError> {
    let node = args.node_name.clone();
    let dirs = NodeDirs::new(&args.manifest_dir, &args.state_dir);
    let desired = Arc::new(Desired::new());
    let mut engine = Engine::open(EngineParts {
        node_name: node.clone(),
        dirs: dirs.clone(),
        history: args.history,
        pods: Some(Arc::new(KubeMirrorPods::new(client.clone()))),
        runtime: runtime_from_arg(&args.container_runtime_endpoint),
        health,
        secrets: Arc::new(KubeSecrets::new(client.clone())),
        board: board.clone(),
        desired: desired.clone(),
    })?;
    if let Some(addr) = &args.lb_agent_check_addr {
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|source| AgentError::AgentCheck {
                addr: addr.clone(),
                source,
            })?;
        let lb = lb_drain::LoadBalancerDrain::new(Duration::from_secs(args.lb_drain_seconds));
        tracing::info!(addr = %addr, drain_seconds = args.lb_drain_seconds, "answering load balancer agent checks: drained before kube-apiserver restarts");
        tokio::spawn(lb.clone().serve(listener));
        engine.set_load_balancer(lb);
    }
    let node_ip = std::env::var(crate::facts::NODE_IP_ENV).ok();
    let report_facts = |board: &StatusBoard| {
        let f = crate::facts::collect(
            &node,
            &args.manifest_dir,
            &args.state_dir,
            node_ip.as_deref(),
            &args.host_root,
        );
        board.update(|s| s.node_facts = Some(f));
    };
    report_facts(&board);

    // Resume first: whatever state.json says was under way (a rollback, an unconfirmed
    // write) is finished before drift handling and before any API watch, with local evidence
    // only if the API is down.
    tokio::pin!(shutdown);
    tokio::select! {
        outcome = engine.resume() => {
            if let Some(o) = outcome {
                tracing::info!(outcome = ?o, "resumed what was under way at start");
            }
        }
        _ = &mut shutdown => return Ok(()),
    }
    // Only now the API: status (with whatever the resume did) and Events.
    let reporter = status::spawn_api_reporter(board.clone(), client.clone(), node.clone());

    let drift = Arc::new(DriftHandler::new(
        dirs.clone(),
        desired.clone(),
        args.drift_mode,
        board.clone(),
    ));
    let (_dir_watcher, drift_rx) =
        drift::watch(dirs.manifest_dir()).map_err(|source| AgentError::Watch {
            dir: dirs.manifest_dir().display().to_string(),
            source,
        })?;
    drift.scan();
    tokio::spawn(drift.clone().run(drift_rx));

    let (mut cert_watch, mut cert_rx) = certs::CertWatcher::new();

    let (cpn_tx, mut cpn_rx) = watch::channel(Watched::Listing);
    // The digest of the newest spec, so a newer revision can cut a forward wait short.
    let (digest_tx, digest_rx) = watch::channel::<Option<String>>(None);
    engine.watch_newer(digest_rx);
    let api: Api<ControlPlaneNode> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, config).backoff(quick_backoff()).boxed();
        let mut listed = NodeWatch::default();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if let Some(w) = listed.next(ev) {
                        if let Watched::Present(cpn) = &w {
                            digest_tx.send_replace(Some(engine::spec_digest(&cpn.spec)));
                        }
                        cpn_tx.send_replace(w);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching the ControlPlaneNode"),
            }
        }
    });
    tracing::info!(node = %node, manifest_dir = %dirs.manifest_dir().display(), "agent started");
    readiness.set_not_ready(format!(
        "listing ControlPlaneNode {node} (the API server is not reachable yet, or the agent may not list it)"
    ));

    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut seeded = false;
    // Whether a ControlPlaneNode drives this node; `None` until the first list.
    let mut managed: Option<bool> = None;
    loop {
        let watched = tokio::select! {
            changed = cpn_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                cpn_rx.borrow_and_update().clone()
            }
            _ = async { tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)).await }, if retry_at.is_some() => {
                retry_at = None;
                cpn_rx.borrow().clone()
            }
            Some(()) = cert_rx.recv(), if managed != Some(false) => {
                tokio::time::sleep(CERT_DEBOUNCE).await;
                while cert_rx.try_recv().is_ok() {}
                tokio::select! {
                    _ = engine.restart_for_certificates() => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
            _ = &mut shutdown => break,
        };
        let cpn = match watched {
            Watched::Listing => continue,
            Watched::Absent => {
                retry_at = None;
                let message = unmanaged_message(&node, managed, engine.release());
                if managed == Some(true) {
                    tracing::info!(node = %node, "{message}");
                    board.event(AgentEvent::normal(
                        "NodeUnmanaged",
                        "Release",
                        message.clone(),
                    ));
                } else if managed.is_none() {
                    tracing::info!(node = %node, "{message}");
                }
                managed = Some(false);
                readiness.set_ready(message);
                continue;
            }
            Watched::Present(cpn) => cpn,
        };
        if managed == Some(false) {
            engine.reclaim();
            tracing::info!(node = %node, "ControlPlaneNode {node} appeared: kubeplane manages this node again");
        }
        managed = Some(true);
        readiness.set_ready(format!("watching ControlPlaneNode {node}"));
        board.set_object(cpn.object_ref(&()));
        if !seeded {
            seeded = true;
            if let Some(previous) = &cpn.status {
                board.seed(previous);
            }
        }
        report_facts(&board);
        let generation = cpn.metadata.generation;
        let outcome = tokio::select! {
            o = engine.apply(&cpn.spec, generation, true) => o,
            _ = &mut shutdown => break,
        };
        if let Outcome::Pending { retry: true, .. } = outcome {
            retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER);
        }
        cert_watch.retarget(&engine.read_certificates());
        // Certificates that changed while the agent was down restart their components now.
        tokio::select! {
            _ = engine.restart_for_certificates() => {}
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down");
    readiness.set_not_ready("shutting down");
    board.flush(Duration::from_secs(5)).await;
    reporter.abort();
    Ok(())
}

/// What the agent knows of its node's `ControlPlaneNode`.
#[derive(Clone, Debug)]
pub enum Watched {
    /// Not listed yet (the API is not reachable, or the list is under way).
    Listing,
    /// Listed, and there is none: no ControlPlaneConfig selects the node (or kubeplane's
    /// operator is gone).
    Absent,
    /// The object.
    Present(Box<ControlPlaneNode>),
}

/// Turns the watch events of the node's `ControlPlaneNode` into [`Watched`] states: a
/// (re)list that ends without the object, or its deletion, means `Absent`.
#[derive(Debug, Default)]
pub struct NodeWatch {
    /// Whether the list under way has seen the object.
    seen_in_list: bool,
}

impl NodeWatch {
    /// The state after `ev`, when it tells one.
    pub fn next(&mut self, ev: watcher::Event<ControlPlaneNode>) -> Option<Watched> {
        match ev {
            watcher::Event::Init => {
                self.seen_in_list = false;
                None
            }
            watcher::Event::InitApply(cpn) => {
                self.seen_in_list = true;
                Some(Watched::Present(Box::new(cpn)))
            }
            watcher::Event::InitDone => (!self.seen_in_list).then_some(Watched::Absent),
            watcher::Event::Apply(cpn) => Some(Watched::Present(Box::new(cpn))),
            watcher::Event::Delete(_) => Some(Watched::Absent),
        }
    }
}

/// What the agent says when no `ControlPlaneNode` drives its node: `managed` is whether one
/// did until now (`None`: the agent just started), `revision` what kubeplane last wrote.
pub fn unmanaged_message(node: &str, managed: Option<bool>, revision: Option<String>) -> String {
    let kept = match &revision {
        Some(r) => format!("the manifests stay as they are (revision {r}) and keep running"),
        None => "the manifests stay as they are".to_string(),
    };
    if managed == Some(true) {
        format!(
            "ControlPlaneNode {node} was deleted (with its ControlPlaneConfig, by hand, or by uninstalling kubeplane with its CRDs): node {node} is no longer managed; {kept}, hand edits are no longer reverted. To hand the node back to kubeadm, see docs/operator.md (\"Deleting a ControlPlaneConfig, uninstalling\")"
        )
    } else {
        format!(
            "no ControlPlaneConfig selects node {node} (there is no ControlPlaneNode {node}); {kept}. Waiting for one"
        )
    }
}
