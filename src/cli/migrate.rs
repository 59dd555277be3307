//! `kubeplane migrate`: reads the units and the config, checks kubelet, then prints the plan
//! (`--dry-run`) or runs it with `systemctl` ([`crate::migrate`]).
//!
//! Exit codes: `0` every component migrated (dry run: the plan can run); `1` a component did
//! not become healthy and was moved back to its unit (dry run: kubelet is not ready); `2`
//! nothing was changed because the input is wrong, or the way back failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::hardway::load_units;
use super::{CliError, check_address, load_config};
use crate::adopt::hardway::unit_component;
use crate::agent::health::HttpsCheck;
use crate::api::NodeFacts;
use crate::migrate::{self, MigrateError, Systemctl, Timing, UnitInfo, kubelet, unit_endpoint};
use crate::render::defaults;

/// Arguments of `kubeplane migrate`.
#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// A systemd unit to move (repeatable, one per component); kube-apiserver moves first.
    #[arg(long = "systemd-unit", value_name = "FILE", required = true)]
    pub systemd_units: Vec<PathBuf>,
    /// The ControlPlaneConfig to run them with (`kubeplane import --systemd-unit …` writes one).
    #[arg(long = "config", short = 'f', value_name = "FILE")]
    pub config: PathBuf,
    /// This node's name.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// kubelet's static Pod directory.
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/manifests")]
    pub manifest_dir: PathBuf,
    /// kubeplane's state directory on the node (the record of what ran before goes to
    /// DIR/migrate/).
    #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR)]
    pub state_dir: PathBuf,
    /// Address kube-apiserver advertises, unless the config's spec.nodes sets one.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// Print the steps and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds each static Pod may take to become healthy. Default: the config's
    /// rollout.healthTimeoutSeconds (300).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Read the EnvironmentFile= NODE_PATH from LOCAL_FILE instead (repeatable).
    #[arg(long = "environment-file", value_name = "NODE_PATH=LOCAL_FILE")]
    pub environment_files: Vec<String>,
    /// Where to look for the running kubelet (tests).
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
    /// The container runtime's CRI socket (kubelet's --container-runtime-endpoint), the
    /// agent's local evidence: a static Pod counts as healthy only when the runtime runs a
    /// container of its uid created after the write (an endpoint answered by the unit's
    /// process does not count), and as stopped only when none runs. `none`: the endpoint
    /// alone decides. Default: the running kubelet's (its --container-runtime-endpoint or
    /// its config's containerRuntimeEndpoint), else containerd's socket.
    #[arg(long, value_name = "ENDPOINT", env = "CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,
}

fn io(source: std::io::Error) -> CliError {
    CliError::Io {
        path: "stdout".into(),
        source,
    }
}

/// `kubeplane migrate`.
pub fn migrate(args: &MigrateArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match migrate_inner(args, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(2)
        }
    }
}

fn migrate_inner(
    args: &MigrateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    check_address(args.address.as_deref())?;
    let config = load_config(&args.config, err)?;
    let (units, env_files) = load_units(&args.systemd_units, &args.environment_files)?;
    let mut infos = Vec::new();
    for (unit, text) in &units {
        let (component, cmd, skip) =
            unit_component(unit, &env_files).map_err(|e| CliError::Refused(e.to_string()))?;
        let flags: Vec<String> = cmd.args[skip..].iter().map(|w| w.text.clone()).collect();
        let mut argv = vec![cmd.path.text.clone()];
        argv.extend(cmd.args.iter().map(|w| w.text.clone()));
        infos.push(UnitInfo {
            component,
            name: migrate::unit_name(Path::new(&unit.path)),
            path: unit.path.clone(),
            text: text.clone(),
            argv,
            env_files: unit
                .environment_files()
                .unwrap_or_default()
                .into_iter()
                .map(|r| {
                    let content = env_files.get(&r.path).cloned().flatten();
                    (r.path, content)
                })
                .collect(),
            endpoint: unit_endpoint(component, &flags),
        });
    }
    let node = NodeFacts {
        node_name: args.node.clone(),
        advertise_address: args.address.clone(),
        manifest_dir: Some(args.manifest_dir.display().to_string()),
        state_dir: Some(args.state_dir.display().to_string()),
        ..Default::default()
    };
    let plan = migrate::plan(&config, &node, infos, args.timeout.map(Duration::from_secs))
        .map_err(|e| CliError::Refused(e.to_string()))?;

    let manifest_dir = args.manifest_dir.display().to_string();
    let kubelets = kubelet::kubelet_processes(&args.proc_root);
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let kubelet_ok = kubelet::check(&manifest_dir, &kubelets, &read);

    if args.dry_run {
        match &kubelet_ok {
            Ok(msg) => writeln!(out, "0. check: {msg}").map_err(io)?,
            Err(msg) => writeln!(out, "0. check FAILS: {msg}").map_err(io)?,
        }
        for line in migrate::describe(&plan) {
            writeln!(out, "{line}").map_err(io)?;
        }
        writeln!(out, "dry run: nothing was changed").map_err(io)?;
        return Ok(if kubelet_ok.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let msg = kubelet_ok.map_err(CliError::Refused)?;
    let runtime_endpoint = args
        .container_runtime_endpoint
        .clone()
        .or_else(|| {
            kubelets
                .first()
                .and_then(|argv| kubelet::runtime_endpoint(argv, &read))
        })
        .unwrap_or_else(|| crate::agent::runtime::DEFAULT_ENDPOINT.to_string());
    writeln!(out, "{msg}").map_err(io)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Refused(format!("cannot start the async runtime: {e}")))?;
    let services = Systemctl::default();
    let health = HttpsCheck::new();
    let result = runtime.block_on(async {
        let mut log = |l: &str| eprintln!("{l}");
        let endpoint = runtime_endpoint;
        let cri = crate::agent::runtime_from_arg(&endpoint);
        match &cri {
            Some(rt) => match rt.containers_of_pod("kubeplane-migrate-probe").await {
                Ok(_) => log(&format!(
                    "evidence: the container runtime at {endpoint} and each component's endpoint"
                )),
                Err(e) => log(&format!(
                    "evidence: the container runtime at {endpoint} does not answer ({e}); each component's endpoint only (--container-runtime-endpoint names kubelet's runtime socket)"
                )),
            },
            None => log("evidence: each component's endpoint only (no container runtime)"),
        }
        migrate::run(
            &plan,
            &services,
            &health,
            cri.as_deref(),
            Timing::default(),
            &mut log,
        )
        .await
    });
    match result {
        Ok(outcomes) => {
            for o in outcomes {
                writeln!(
                    out,
                    "{}: migrated in {:.1} s, unavailable on this node for {:.1} s",
                    o.component,
                    o.took.as_secs_f64(),
                    o.unavailable.as_secs_f64()
                )
                .map_err(io)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ MigrateError::Failed { .. }) => {
            let _ = writeln!(err, "error: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(CliError::Refused(e.to_string())),
    }
}
