//! `kubeplane`: parses arguments and wires the roles together.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kubeplane::cli;

/// kubeplane keeps a cluster's control-plane static pods in the state one ControlPlaneConfig
/// declares.
#[derive(Parser, Debug)]
#[command(name = "kubeplane", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KUBEPLANE_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `kubeplane=debug`.
    #[arg(long, global = true, default_value = "info", env = "KUBEPLANE_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print, or write under a directory, the exact files the agent would write on a node.
    Render(cli::RenderArgs),
    /// List every problem in a ControlPlaneConfig; exit non-zero if there is an error.
    Validate(cli::ValidateArgs),
    /// Print the CustomResourceDefinitions.
    Crd,
    /// List the flags a component accepts in a Kubernetes version, with type and status.
    Flags(cli::FlagsArgs),
    /// Print the ControlPlaneConfig that reproduces a node's existing control-plane manifests
    /// (--manifest-dir), or runs its systemd units as static Pods (--systemd-unit). Exit 0:
    /// exact; 1: the render would change a manifest, a unit holds a wrong value, or the config
    /// is invalid; 2: error.
    Import(cli::ImportArgs),
    /// Show, per file, what writing the render for a node would change on disk.
    /// Exit 0: nothing would change; 1: something would; 2: error.
    Diff(cli::DiffArgs),
    /// Move the components this node runs as systemd units to the config's static Pods, one at
    /// a time, kube-apiserver first, with a way back. Exit 0: done; 1: a component went back to
    /// its unit (dry run: kubelet not ready); 2: error, nothing changed.
    Migrate(cli::MigrateArgs),
    /// Plan a Kubernetes version change: `upgrade plan -f FILE` prints the waves, nodes, images
    /// and checks. Exit 0: it can proceed; 1: it cannot; 2: bad input.
    Upgrade(cli::UpgradeArgs),
    /// Run the operator: reconcile ControlPlaneConfigs into ControlPlaneNodes, one node at a time.
    Operator(cli::OperatorArgs),
    /// Follow the rollout of a ControlPlaneConfig.
    Rollout(cli::RolloutArgs),
    /// Managed encryption at rest: `encryption status NAME` shows the key lifecycle's step.
    Encryption(cli::EncryptionArgs),
    /// Run the node agent: keep this node's manifest directory in line with its ControlPlaneNode.
    Agent(cli::AgentArgs),
    /// Render a ControlPlaneConfig for this node, write it, wait for it, roll back on failure (no API).
    Apply(cli::ApplyArgs),
}

/// The process's one tokio runtime, for the subcommands that do async work: multi-threaded
/// with `worker_threads` workers (`None`: one per core).
fn runtime(worker_threads: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build().unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        std::process::exit(1)
    })
}

/// Workers of the node roles' runtime (`agent`, `apply`, `migrate`): the agent runs on every
/// control-plane node and its idle footprint counts; two workers keep a wait and the API
/// reporter apart.
const NODE_WORKERS: Option<usize> = Some(2);

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log_level);
    // The async subcommands write through an unlocked stdout: their tasks (the status printer
    // of `apply`) print from the runtime's worker threads.
    let mut stdout = std::io::stdout();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match cli.command {
        Command::Render(args) => cli::render(&args, &mut out, &mut err),
        Command::Validate(args) => cli::validate(&args, &mut out, &mut err),
        Command::Crd => cli::crd(&mut out),
        Command::Flags(args) => cli::flags(&args, &mut out, &mut err),
        Command::Import(args) => cli::import(&args, &mut out, &mut err),
        Command::Diff(args) => cli::diff(&args, &mut out, &mut err),
        Command::Upgrade(args) => cli::upgrade(&args, &mut out, &mut err),
        Command::Migrate(args) => {
            drop(out);
            runtime(NODE_WORKERS).block_on(cli::migrate(&args, &mut stdout, &mut err))
        }
        Command::Operator(args) => runtime(None).block_on(cli::operator(&args)),
        Command::Rollout(args) => {
            drop(out);
            runtime(None).block_on(cli::rollout(&args, &mut stdout, &mut err))
        }
        Command::Encryption(args) => {
            drop(out);
            runtime(None).block_on(cli::encryption(&args, &mut stdout, &mut err))
        }
        Command::Agent(args) => runtime(NODE_WORKERS).block_on(cli::agent(&args)),
        Command::Apply(args) => {
            drop(out);
            runtime(NODE_WORKERS).block_on(cli::apply(&args, &mut stdout, &mut err))
        }
    }
}
