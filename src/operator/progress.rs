//! `kubeplane rollout status NAME [--watch]`: per-node progress of a config's rollout, the way
//! `kubectl rollout status` shows a Deployment's.
//!
//! Exit codes: `0` the rollout is complete (`Ready=True` at the current generation), `1` it is
//! `Degraded` (the reason is printed) or the command failed, `2` it is still in progress (without
//! `--watch`, or when `--timeout` expires).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};

use super::rollout::{NodeView, condition, progress_line};
use super::selection::{CONFIG_LABEL, UNSELECTED_LABEL};
use crate::api::{ControlPlaneConfig, ControlPlaneNode, find_condition};

/// What `kubeplane rollout status` asks (built from its command line in [`crate::cli`]).
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// Name of the ControlPlaneConfig.
    pub name: String,
    /// Follow the rollout until it completes or is degraded.
    pub watch: bool,
    /// With `watch`: give up after this many seconds (exit 2). `None`: wait forever.
    pub timeout: Option<u64>,
}

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `Ready=True` at the current generation.
    Complete,
    /// `Degraded=True` at the current generation.
    Degraded {
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// Anything else.
    InProgress,
}

impl Outcome {
    /// The exit code of `kubeplane rollout status`.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Complete => 0,
            Outcome::Degraded { .. } => 1,
            Outcome::InProgress => 2,
        }
    }

    /// Whether watching can stop.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::InProgress)
    }
}

/// What `rollout status` prints for one state of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// One line per node, by node name.
    pub nodes: Vec<(String, String)>,
    /// The summary line.
    pub summary: String,
    /// Where the rollout stands.
    pub outcome: Outcome,
}

/// The progress of config `cpc` given its `ControlPlaneNode`s (others are ignored).
pub fn progress(cpc: &ControlPlaneConfig, cpns: &[ControlPlaneNode]) -> Progress {
    let name = cpc.name_any();
    let generation = cpc.metadata.generation;
    let status = cpc.status.clone().unwrap_or_default();
    let revision = status.revision.clone().unwrap_or_default();
    let mut mine: Vec<&ControlPlaneNode> = cpns
        .iter()
        .filter(|c| c.labels().get(CONFIG_LABEL).map(String::as_str) == Some(name.as_str()))
        // Kept for the node's history, not part of the rollout.
        .filter(|c| c.labels().get(UNSELECTED_LABEL).map(String::as_str) != Some("true"))
        .collect();
    mine.sort_by_key(|c| c.name_any());
    let total = status.nodes.max(mine.len() as i32);
    let updated = status.updated_nodes;
    let nodes = mine
        .iter()
        .map(|c| {
            let v = NodeView::from_cpn(c);
            let phase = if v.spec_revision != revision && !v.in_flight() && v.has_facts {
                "Queued"
            } else {
                v.shown_phase()
            };
            let mut line = progress_line(&v.name, phase, &v.spec_revision, updated, total);
            if let Some(reason) = v.reason.as_deref().filter(|_| {
                v.settled_at(&v.spec_revision)
                    .is_some_and(|p| p != crate::api::NodePhase::Healthy)
            }) {
                line.push_str(&format!(": {reason}"));
            }
            (v.name.clone(), line)
        })
        .collect();

    let current = status.observed_generation.is_some() && status.observed_generation >= generation;
    let cond = |t: &str| find_condition(&status.conditions, t).cloned();
    let (summary, outcome) = if !current {
        (
            format!(
                "Waiting for the operator to observe generation {} of cpc/{name}",
                generation.unwrap_or_default()
            ),
            Outcome::InProgress,
        )
    } else if let Some(d) = cond(condition::DEGRADED).filter(|c| c.is_true()) {
        (
            format!(
                "error: cpc/{name} is degraded ({}): {}",
                d.reason, d.message
            ),
            Outcome::Degraded {
                reason: d.reason,
                message: d.message,
            },
        )
    } else if cond(condition::READY).is_some_and(|c| c.is_true()) {
        (
            format!(
                "cpc/{name} successfully rolled out: revision {revision} on {} of {total} nodes",
                status.ready_nodes
            ),
            Outcome::Complete,
        )
    } else {
        let detail = cond(condition::PROGRESSING)
            .map(|c| c.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("{updated} of {total} nodes updated"));
        (
            format!("Waiting for cpc/{name} rollout to finish: {detail}"),
            Outcome::InProgress,
        )
    };
    Progress {
        nodes,
        summary,
        outcome,
    }
}

/// Prints what changed between `before` and `now` (everything when `before` is `None`).
pub fn print_changes(
    before: Option<&Progress>,
    now: &Progress,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let old: BTreeMap<&String, &String> = before
        .map(|p| p.nodes.iter().map(|(n, l)| (n, l)).collect())
        .unwrap_or_default();
    for (n, line) in &now.nodes {
        if old.get(n) != Some(&line) {
            writeln!(out, "{line}")?;
        }
    }
    if before.map(|p| &p.summary) != Some(&now.summary) {
        writeln!(out, "{}", now.summary)?;
    }
    Ok(())
}

/// Why `rollout status` could not show anything.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No client could be built.
    #[error("cannot build a Kubernetes client (KUBECONFIG or in-cluster): {0}")]
    Client(#[source] kube::Error),
    /// The config does not exist.
    #[error("controlplaneconfig {0:?} not found (kubectl get cpc lists them)")]
    NotFound(String),
    /// A request failed.
    #[error("cannot read {what}: {source}")]
    Kube {
        /// What was read.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Writing to stdout failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The watch ended before the rollout did.
    #[error("the watch ended before the rollout finished")]
    WatchEnded,
}

/// `kubeplane rollout status`.
pub async fn rollout_status(
    args: &StatusRequest,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> ExitCode {
    match status(args, out).await {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn status(
    args: &StatusRequest,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, StatusError> {
    let client = Client::try_default().await.map_err(StatusError::Client)?;
    let configs: Api<ControlPlaneConfig> = Api::all(client.clone());
    let cpns: Api<ControlPlaneNode> = Api::all(client.clone());
    let selector = format!("{CONFIG_LABEL}={}", args.name);
    if !args.watch {
        let cpc = configs
            .get_opt(&args.name)
            .await
            .map_err(|source| StatusError::Kube {
                what: format!("controlplaneconfig {}", args.name),
                source,
            })?
            .ok_or_else(|| StatusError::NotFound(args.name.clone()))?;
        let list = cpns
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| StatusError::Kube {
                what: "controlplanenodes".into(),
                source,
            })?;
        let p = progress(&cpc, &list.items);
        print_changes(None, &p, out)?;
        return Ok(p.outcome);
    }

    let follow = follow(args, configs, cpns, &selector, out);
    match args.timeout {
        None => follow.await,
        Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), follow).await {
            Ok(r) => r,
            Err(_) => {
                writeln!(out, "timed out after {secs}s waiting for cpc/{}", args.name)?;
                Ok(Outcome::InProgress)
            }
        },
    }
}

/// Watches the config and its nodes, printing each change, until the rollout is final.
async fn follow(
    args: &StatusRequest,
    configs: Api<ControlPlaneConfig>,
    cpns: Api<ControlPlaneNode>,
    selector: &str,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, StatusError> {
    // A clear error for a wrong name, before watching.
    if configs
        .get_opt(&args.name)
        .await
        .map_err(|source| StatusError::Kube {
            what: format!("controlplaneconfig {}", args.name),
            source,
        })?
        .is_none()
    {
        return Err(StatusError::NotFound(args.name.clone()));
    }
    let (cfg_reader, cfg_writer) = reflector::store();
    let (cpn_reader, cpn_writer) = reflector::store();
    let cfg_events = watcher(
        configs,
        watcher::Config::default().fields(&format!("metadata.name={}", args.name)),
    )
    .default_backoff()
    .reflect(cfg_writer)
    .map(|_| ());
    let cpn_events = watcher(cpns, watcher::Config::default().labels(selector))
        .default_backoff()
        .reflect(cpn_writer)
        .map(|_| ());
    let mut events = std::pin::pin!(stream::select(cfg_events, cpn_events));
    let mut shown: Option<Progress> = None;
    while events.next().await.is_some() {
        if is_ready(&cfg_reader) && is_ready(&cpn_reader) {
            let Some(cpc) = cfg_reader.state().into_iter().next() else {
                return Err(StatusError::NotFound(args.name.clone()));
            };
            let nodes: Vec<ControlPlaneNode> =
                cpn_reader.state().iter().map(|c| (**c).clone()).collect();
            let p = progress(&cpc, &nodes);
            print_changes(shown.as_ref(), &p, out)?;
            out.flush()?;
            if p.outcome.is_final() {
                return Ok(p.outcome);
            }
            shown = Some(p);
        }
    }
    Err(StatusError::WatchEnded)
}

/// Whether a store's initial list is done, without waiting.
fn is_ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(
        futures::FutureExt::now_or_never(store.wait_until_ready()),
        Some(Ok(()))
    )
}

#[cfg(test)]
mod tests;
