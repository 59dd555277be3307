//! The command lines of `kubeplane operator` and `kubeplane rollout`, turned into the plain
//! config structs of [`crate::operator`].

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::operator::{self, OperatorConfig, StatusRequest};

/// Arguments of `kubeplane operator`.
#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Name of the Lease the replicas elect their leader with.
    #[arg(long, value_name = "NAME", default_value = "kubeplane-operator")]
    pub lease_name: String,
    /// Namespace of that Lease.
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        default_value = crate::render::defaults::NAMESPACE
    )]
    pub lease_namespace: String,
}

impl OperatorArgs {
    /// The operator's configuration.
    pub fn config(&self) -> OperatorConfig {
        OperatorConfig {
            metrics_addr: self.metrics_addr.clone(),
            lease_name: self.lease_name.clone(),
            lease_namespace: self.lease_namespace.clone(),
        }
    }
}

/// `kubeplane operator`: exits 0 after SIGTERM/SIGINT, 1 on any error (including a lost lease).
pub async fn operator(args: &OperatorArgs) -> ExitCode {
    operator::operator_command(&args.config()).await
}

/// `kubeplane rollout …`.
#[derive(Args, Debug, Clone)]
pub struct RolloutArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// Subcommands of `kubeplane rollout`.
#[derive(Subcommand, Debug, Clone)]
pub enum RolloutCommand {
    /// Show a ControlPlaneConfig's rollout, node by node. Exit 0 when complete, 1 when degraded,
    /// 2 while still in progress.
    Status(RolloutStatusArgs),
}

/// Arguments of `kubeplane rollout status`.
#[derive(Args, Debug, Clone)]
pub struct RolloutStatusArgs {
    /// Name of the ControlPlaneConfig.
    pub name: String,
    /// Follow the rollout until it completes or is degraded.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch: give up after this many seconds (exit 2). Default: wait forever.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// `kubeplane rollout …`.
pub async fn rollout(
    args: &RolloutArgs,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> ExitCode {
    match &args.command {
        RolloutCommand::Status(a) => {
            let request = StatusRequest {
                name: a.name.clone(),
                watch: a.watch,
                timeout: a.timeout,
            };
            operator::rollout_status(&request, out, err).await
        }
    }
}
