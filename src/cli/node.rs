//! The command lines of the two roles that work on a node's manifest directory:
//! `kubeplane agent` and `kubeplane apply`. Both take the node and its directories from one
//! flattened argument group, [`NodeDirs`], and hand plain config structs
//! ([`AgentConfig`], [`LocalNode`]) to [`crate::agent`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{load_valid_config, render_node};
use crate::agent::drift::DriftMode;
use crate::agent::engine::Outcome;
use crate::agent::local::{self, LocalNode};
use crate::agent::{AgentConfig, runtime};
use crate::render::{self, defaults};

/// The manifest directory kubelet reads by default (kubeadm's `staticPodPath`).
pub const DEFAULT_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";

/// The node and its directories: shared by `kubeplane agent` and `kubeplane apply`.
#[derive(Args, Debug, Clone)]
pub struct NodeDirs {
    /// Name of this node: its ControlPlaneNode, mirror pod names, config hashes.
    // `--node-name`, the agent's name for it before, stays a hidden alias.
    #[arg(long, alias = "node-name", value_name = "NAME", env = "NODE_NAME")]
    pub node: String,
    /// The directory kubelet reads static Pod manifests from (`kubeplane agent`: default
    /// /etc/kubernetes/manifests; `kubeplane apply`: required).
    #[arg(long, value_name = "DIR", env = "KUBEPLANE_MANIFEST_DIR")]
    pub manifest_dir: Option<PathBuf>,
    /// The state directory (history, state.json, side files, quarantine). Must be on the
    /// manifest directory's filesystem.
    #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR, env = "KUBEPLANE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// How many revisions of every managed file to keep under <state-dir>/history.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub history: usize,
    /// Root under which the optional host CA directories are looked up (tests; `/` on a
    /// node).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub host_root: PathBuf,
    /// The container runtime's CRI socket (kubelet's --container-runtime-endpoint): local
    /// evidence that kubelet runs a new manifest while the API is unavailable (`kubeplane
    /// apply`: a component counts as updated only once a container of its new manifest runs
    /// there). `none` judges by the API and the local endpoint alone.
    #[arg(
        long,
        value_name = "ENDPOINT",
        default_value = runtime::DEFAULT_ENDPOINT,
        env = "CONTAINER_RUNTIME_ENDPOINT"
    )]
    pub container_runtime_endpoint: String,
}

/// What to do with a managed manifest changed by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DriftModeArg {
    /// Restore the file.
    Enforce,
    /// Only report it.
    Observe,
}

impl From<DriftModeArg> for DriftMode {
    fn from(m: DriftModeArg) -> Self {
        match m {
            DriftModeArg::Enforce => DriftMode::Enforce,
            DriftModeArg::Observe => DriftMode::Observe,
        }
    }
}

/// Arguments of `kubeplane agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The node and its directories.
    #[command(flatten)]
    pub node: NodeDirs,
    /// What to do with a managed manifest changed by hand: restore it, or only report it.
    #[arg(long, value_enum, default_value_t = DriftModeArg::Enforce)]
    pub drift_mode: DriftModeArg,
    /// Address of the agent's HTTP server: `/healthz`, `/readyz`, `/metrics`. The agent runs
    /// with hostNetwork, so the default listens on loopback only.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8081",
        env = "KUBEPLANE_METRICS_ADDR"
    )]
    pub metrics_addr: String,
    /// Answer the load balancer's agent checks (haproxy `agent-check`) on this address
    /// (`ADDR:PORT`, e.g. `0.0.0.0:6445`): `ready`, or `drain` from before a kube-apiserver
    /// manifest is written until the new kube-apiserver is healthy. Off when unset.
    #[arg(long, value_name = "ADDR", env = "KUBEPLANE_LB_AGENT_CHECK_ADDR")]
    pub lb_agent_check_addr: Option<String>,
    /// Seconds from a load balancer hearing `drain` to the kube-apiserver restart: at least
    /// the agent-check interval of every load balancer (haproxy `agent-inter`, default 2 s).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::agent::lb_drain::DEFAULT_DRAIN_SECONDS,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub lb_drain_seconds: u64,
}

impl AgentArgs {
    /// The agent's configuration.
    pub fn config(&self) -> AgentConfig {
        let n = &self.node;
        AgentConfig {
            node_name: n.node.clone(),
            manifest_dir: n
                .manifest_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_MANIFEST_DIR.into()),
            state_dir: n.state_dir.clone(),
            drift_mode: self.drift_mode.into(),
            history: n.history,
            host_root: n.host_root.clone(),
            metrics_addr: self.metrics_addr.clone(),
            container_runtime_endpoint: n.container_runtime_endpoint.clone(),
            lb_agent_check_addr: self.lb_agent_check_addr.clone().filter(|a| !a.is_empty()),
            lb_drain_seconds: self.lb_drain_seconds,
        }
    }
}

/// `kubeplane agent`: runs until SIGTERM or Ctrl-C.
pub async fn agent(args: &AgentArgs) -> ExitCode {
    match crate::agent::run(args.config()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Arguments of `kubeplane apply`.
#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// The ControlPlaneConfig file.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// The node and its directories.
    #[command(flatten)]
    pub node: NodeDirs,
    /// Address kube-apiserver advertises, unless the config's spec.nodes sets one. Default:
    /// NODE_IP, else the --advertise-address of the kube-apiserver manifest on disk, else the
    /// first interface address.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// Write the files and exit without waiting for the components.
    #[arg(long)]
    pub no_wait: bool,
}

/// `kubeplane apply`. Exit status 0 when the revision is healthy (or written, with
/// `--no-wait`), 1 when it was refused, rolled back or failed.
pub async fn apply(args: &ApplyArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let Some(manifest_dir) = args.node.manifest_dir.clone() else {
        let _ = writeln!(
            err,
            "error: the following required arguments were not provided:\n  --manifest-dir <DIR>"
        );
        return ExitCode::from(2);
    };
    let node = LocalNode {
        node_name: args.node.node.clone(),
        manifest_dir,
        state_dir: args.node.state_dir.clone(),
        history: args.node.history,
        container_runtime_endpoint: args.node.container_runtime_endpoint.clone(),
    };
    let cfg = match load_valid_config(&args.file, "written", err) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env_ip = std::env::var(crate::facts::NODE_IP_ENV).ok();
    let facts = crate::facts::collect(
        &node.node_name,
        &node.manifest_dir,
        &node.state_dir,
        args.address.as_deref().or(env_ip.as_deref()),
        &args.node.host_root,
    );
    let encryption_digest = local::encryption_digest_on_disk(&cfg.spec, &node.state_dir);
    let rendered = match render_node(&cfg, &facts, encryption_digest.as_deref(), err) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The revision names exactly the bytes this node gets (as the operator's does for all
    // selected nodes): here the one node `kubeplane apply` renders.
    let revision = render::revision_of([(node.node_name.as_str(), &rendered)]);
    let name = cfg.metadata.name.clone().unwrap_or_else(|| "local".into());
    let spec = render::node_spec(&name, &cfg.spec, &revision, &rendered);

    let wait = !args.no_wait;
    if wait {
        let _ = writeln!(
            out,
            "note: kubeplane apply has no API server: instead of the mirror pod, the container runtime ({}) must run a container of the new manifest's uid, and the local endpoint must answer for {}s",
            node.container_runtime_endpoint, spec.min_ready_seconds
        );
    }
    let _ = out.flush();
    let outcome = local::apply(&node, &spec, wait).await;
    match outcome {
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::FAILURE
        }
        Ok(Outcome::Healthy) => {
            let _ = writeln!(
                out,
                "revision {revision} is healthy on node {}",
                node.node_name
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::Written) => {
            let _ = writeln!(
                out,
                "revision {revision} written to {} (not waited for: --no-wait)",
                node.manifest_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::Pending {
            reason, message, ..
        }) => {
            let _ = writeln!(err, "error: {reason}: {message}");
            ExitCode::FAILURE
        }
        Ok(Outcome::RolledBack { reason, message }) => {
            let _ = writeln!(err, "error: rolled back ({reason}): {message}");
            ExitCode::FAILURE
        }
        Ok(Outcome::Superseded) => {
            let _ = writeln!(err, "error: superseded by a newer spec");
            ExitCode::FAILURE
        }
        Ok(Outcome::Failed { reason, message }) => {
            let _ = writeln!(err, "error: failed ({reason}): {message}");
            ExitCode::FAILURE
        }
    }
}
