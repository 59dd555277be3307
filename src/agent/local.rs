//! `kubeplane apply`: the agent's write → wait → rollback cycle driven by a local file, with
//! no operator and no API server — for the first node of a new cluster and for recovery.
//!
//! The file is parsed, validated (refused on errors), rendered for this node with local
//! facts, turned into a node spec, and handed to the same [`Engine`] the agent uses. Without
//! an API there is no mirror pod to check: a component counts as updated when its local
//! endpoint answers for `minReadySeconds`. A second run with the same input changes nothing
//! on disk.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::desired::Desired;
use super::engine::{Engine, EngineParts, NoSecrets, Outcome};
use super::facts;
use super::files::NodeDirs;
use super::health::HttpsCheck;
use super::status::{self, StatusBoard};
use crate::api::Component;
use crate::cli;
use crate::render::{self, defaults, sha256_hex};

/// Arguments of `kubeplane apply`.
#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// The ControlPlaneConfig file.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// This node's name (mirror pod names, config hashes).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: String,
    /// The directory kubelet reads static Pod manifests from.
    #[arg(long, value_name = "DIR", env = "KUBEPLANE_MANIFEST_DIR")]
    pub manifest_dir: PathBuf,
    /// The state directory (history, state.json, side files); any filesystem.
    #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR, env = "KUBEPLANE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Address kube-apiserver advertises, unless the config's spec.nodes sets one. Default:
    /// NODE_IP, else the --advertise-address of the kube-apiserver manifest on disk, else the
    /// first interface address.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// Write the files and exit without waiting for the components.
    #[arg(long)]
    pub no_wait: bool,
    /// How many revisions of every managed file to keep.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub history: usize,
    /// Root under which the optional host CA directories are looked up (tests; `/` on a
    /// node).
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub host_root: PathBuf,
    /// The container runtime's CRI socket (kubelet's --container-runtime-endpoint): a
    /// component counts as updated only once a container of its new manifest runs there.
    /// `none` judges by the local endpoint alone.
    #[arg(
        long,
        value_name = "ENDPOINT",
        default_value = super::runtime::DEFAULT_ENDPOINT,
        env = "CONTAINER_RUNTIME_ENDPOINT"
    )]
    pub container_runtime_endpoint: String,
}

/// `kubeplane apply`. Exit status 0 when the revision is healthy (or written, with
/// `--no-wait`), 1 when it was refused, rolled back or failed.
pub fn apply(args: &ApplyArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let cfg = match cli::load_valid_config(&args.file, "written", err) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env_ip = std::env::var(facts::NODE_IP_ENV).ok();
    let node = facts::collect(
        &args.node,
        &args.manifest_dir,
        &args.state_dir,
        args.address.as_deref().or(env_ip.as_deref()),
        &args.host_root,
    );
    // A Secret-backed encryption configuration cannot be read here; if the file is already
    // on disk, its digest makes the render exact.
    let encryption_digest = render::encryption_secret(&cfg.spec).and_then(|_| {
        let path = PathBuf::from(render::files_dir(
            &args.state_dir.display().to_string(),
            Component::ApiServer,
        ))
        .join("encryption-config.yaml");
        super::files::read_nofollow(&path)
            .ok()
            .flatten()
            .map(|b| sha256_hex(&b))
    });
    let rendered = match cli::render_node(&cfg, &node, encryption_digest.as_deref(), err) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The revision names exactly the bytes this node gets (as the operator's does for all
    // selected nodes): here the one node `kubeplane apply` renders.
    let revision = render::revision_of([(args.node.as_str(), &rendered)]);
    let name = cfg.metadata.name.clone().unwrap_or_else(|| "local".into());
    let spec = render::node_spec(&name, &cfg.spec, &revision, &rendered);

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wait = !args.no_wait;
    if wait {
        let _ = writeln!(
            out,
            "note: kubeplane apply has no API server: instead of the mirror pod, the container runtime ({}) must run a container of the new manifest's uid, and the local endpoint must answer for {}s",
            args.container_runtime_endpoint, spec.min_ready_seconds
        );
    }
    let _ = out.flush();
    let outcome = rt.block_on(async {
        let board = StatusBoard::new();
        let printer = status::spawn_local_printer(board.clone(), Box::new(std::io::stdout()));
        let engine = Engine::open(EngineParts {
            node_name: args.node.clone(),
            dirs: NodeDirs::new(&args.manifest_dir, &args.state_dir),
            history: args.history,
            pods: None,
            runtime: super::runtime_from_arg(&args.container_runtime_endpoint),
            health: Arc::new(HttpsCheck::new()),
            secrets: Arc::new(NoSecrets),
            board: board.clone(),
            desired: Arc::new(Desired::new()),
        });
        let result = match engine {
            Ok(mut engine) => Ok(engine.apply(&spec, None, wait).await),
            Err(e) => Err(e),
        };
        board.flush(Duration::from_secs(2)).await;
        printer.abort();
        result
    });
    match outcome {
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::FAILURE
        }
        Ok(Outcome::Healthy) => {
            let _ = writeln!(out, "revision {revision} is healthy on node {}", args.node);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Written) => {
            let _ = writeln!(
                out,
                "revision {revision} written to {} (not waited for: --no-wait)",
                args.manifest_dir.display()
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
