//! `kubeplane upgrade plan -f FILE [--from-version V | --from-cluster]`: what changing the
//! cluster to FILE's version would do (waves, nodes, images, checks). The plan itself is the
//! pure [`crate::validation::upgrade_plan::plan`]; this module only finds where the cluster
//! stands: `--from-version`, the file's own `status.upgrade.fromVersion`, or (`--from-cluster`)
//! the live `ControlPlaneConfig` of the same name and its `ControlPlaneNode`s.
//!
//! Exit 0: the change can proceed; 1: it cannot (the errors are printed); 2: bad input (the
//! file, the flags, or the cluster could not be read).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::api::{ControlPlaneConfig, ControlPlaneNode};
use crate::flags::KubeVersion;
use crate::operator::selection::CONFIG_LABEL;
use crate::validation::upgrade::node_versions;
use crate::validation::upgrade_plan::{PlanInput, PlanNode, plan};

use super::{CliError, load_config};

/// Arguments of `kubeplane upgrade`.
#[derive(Args, Debug, Clone)]
pub struct UpgradeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: UpgradeCommand,
}

/// The `upgrade` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum UpgradeCommand {
    /// What a version change would do: waves, nodes in order, images before → after, and the
    /// checks of the target version. Exit 0: it can proceed; 1: it cannot; 2: bad input.
    Plan(PlanArgs),
}

/// Arguments of `kubeplane upgrade plan`.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// The ControlPlaneConfig to go to.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// The version the cluster runs now (default: the file's status.upgrade.fromVersion).
    #[arg(long, value_name = "VERSION", conflicts_with = "from_cluster")]
    pub from_version: Option<String>,
    /// Read where the cluster stands from the live ControlPlaneConfig of the file's name and
    /// its ControlPlaneNodes (the cluster KUBECONFIG names).
    #[arg(long)]
    pub from_cluster: bool,
}

/// Where the cluster stands.
struct From {
    version: String,
    image_repository: Option<String>,
    nodes: Vec<PlanNode>,
}

/// Runs `kubeplane upgrade …`.
pub fn upgrade(args: &UpgradeArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match &args.command {
        UpgradeCommand::Plan(a) => plan_command(a, out, err),
    }
}

fn bad_input(e: impl std::fmt::Display, err: &mut dyn Write) -> ExitCode {
    let _ = writeln!(err, "error: {e}");
    ExitCode::from(2)
}

fn plan_command(args: &PlanArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let cfg = match load_config(&args.file, err) {
        Ok(c) => c,
        Err(e) => return bad_input(e, err),
    };
    let from = if args.from_cluster {
        match from_cluster(&cfg) {
            Ok(f) => f,
            Err(e) => return bad_input(e, err),
        }
    } else {
        let version = args.from_version.clone().or_else(|| {
            cfg.status
                .as_ref()
                .and_then(|s| s.upgrade.as_ref())
                .map(|u| u.from_version.clone())
        });
        let Some(version) = version else {
            return bad_input(
                format!(
                    "{}: the version the cluster runs is not known; give --from-version v1.MINOR.PATCH, or --from-cluster to read it from the cluster",
                    args.file.display()
                ),
                err,
            );
        };
        if let Err(e) = KubeVersion::parse_any(&version) {
            return bad_input(format!("--from-version: {e}"), err);
        }
        From {
            version,
            image_repository: None,
            nodes: Vec::new(),
        }
    };
    let p = plan(&PlanInput {
        spec: &cfg.spec,
        from_version: &from.version,
        from_image_repository: from.image_repository.as_deref(),
        nodes: &from.nodes,
    });
    let _ = out.write_all(p.to_text().as_bytes());
    if p.can_proceed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reads the live config of the file's name and its ControlPlaneNodes.
fn from_cluster(cfg: &ControlPlaneConfig) -> Result<From, CliError> {
    let name = cfg.name_any();
    let refused = |what: String| CliError::Refused(what);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| refused(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            refused(format!(
                "--from-cluster: no cluster to read ({e}); set KUBECONFIG, or give --from-version"
            ))
        })?;
        let configs: Api<ControlPlaneConfig> = Api::all(client.clone());
        let live = configs
            .get_opt(&name)
            .await
            .map_err(|e| refused(format!("--from-cluster: get ControlPlaneConfig {name}: {e}")))?
            .ok_or_else(|| {
                refused(format!(
                    "--from-cluster: the cluster has no ControlPlaneConfig {name:?} (the file's metadata.name); apply it first or give --from-version"
                ))
            })?;
        let cpns: Api<ControlPlaneNode> = Api::all(client);
        let list = cpns
            .list(&ListParams::default().labels(&format!("{CONFIG_LABEL}={name}")))
            .await
            .map_err(|e| refused(format!("--from-cluster: list ControlPlaneNodes of {name}: {e}")))?;
        Ok(from_live(&live, &list.items))
    })
}

/// Where the cluster stands, from its live config and ControlPlaneNodes: the lowest version
/// a node runs, the image repository the live spec uses (the default when it names none).
fn from_live(live: &ControlPlaneConfig, cpns: &[ControlPlaneNode]) -> From {
    let mut nodes: Vec<PlanNode> = cpns
        .iter()
        .map(|c| PlanNode {
            name: c.name_any(),
            versions: node_versions(&c.spec),
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let lowest = nodes
        .iter()
        .flat_map(|n| n.versions.iter())
        .filter_map(|v| KubeVersion::parse_any(v).ok())
        .min_by_key(|v| (v.minor, v.patch))
        .map(|v| v.to_string());
    From {
        version: lowest.unwrap_or_else(|| live.spec.kubernetes_version.clone()),
        // The live spec without imageRepository runs the default's images, whatever the new
        // spec names.
        image_repository: Some(
            live.spec
                .image_repository
                .clone()
                .unwrap_or_else(|| crate::render::defaults::IMAGE_REPOSITORY.to_string()),
        ),
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_spec_without_a_repository_runs_the_default_registry() {
        let live = |repo: Option<&str>| ControlPlaneConfig {
            metadata: Default::default(),
            spec: crate::api::ControlPlaneConfigSpec {
                kubernetes_version: "v1.35.6".into(),
                image_repository: repo.map(str::to_string),
                ..Default::default()
            },
            status: None,
        };
        let f = from_live(&live(None), &[]);
        assert_eq!(f.version, "v1.35.6");
        assert_eq!(f.image_repository.as_deref(), Some("registry.k8s.io"));
        let f = from_live(&live(Some("mirror.example/k8s")), &[]);
        assert_eq!(f.image_repository.as_deref(), Some("mirror.example/k8s"));
        // The plan then shows the old images where they came from.
        let mut new = live(Some("10.88.0.1:5000")).spec;
        new.kubernetes_version = "v1.36.2".into();
        let f = from_live(&live(None), &[]);
        let p = plan(&PlanInput {
            spec: &new,
            from_version: &f.version,
            from_image_repository: f.image_repository.as_deref(),
            nodes: &f.nodes,
        });
        let text = p.to_text();
        assert!(
            text.contains(
                "registry.k8s.io/kube-apiserver:v1.35.6 → 10.88.0.1:5000/kube-apiserver:v1.36.2"
            ),
            "{text}"
        );
    }
}
