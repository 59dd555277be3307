//! One reconciliation of a `ControlPlaneConfig`: validate, compute the revision, read the
//! selected Nodes, the `ControlPlaneNode`s and the leader Leases from the API, let
//! [`rollout::decide`] pick the next step, then write `ControlPlaneNode`s, the config's status
//! and Events.
//!
//! Everything is read from the API server on every reconcile (consistent reads, not the watch
//! caches): a cache that has not yet seen the operator's own last write could make a node look
//! settled when it was just started, and start a second one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use super::metrics::{CertificateExpiry, Metrics};
use super::rollout::{
    self, ConditionValue, Decision, EventKind, NodeView, PlannedEvent, Previous, RolloutInput,
    RolloutPhase, condition, reason,
};
use super::selection::{self, CONFIG_LABEL, UNSELECTED_LABEL};
use super::waves;
use crate::api::{
    ControlPlaneConfig, ControlPlaneConfigStatus, ControlPlaneNode, ControlPlaneNodeSpec,
    LeaderStatus, NodeFacts, find_condition, set_condition,
};
use crate::render::{self, RenderInput};
use crate::validation;

mod api;
mod status;
pub use api::*;
use status::*;

/// Field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "kubeplane-operator";

/// Namespace of the kube-controller-manager and kube-scheduler leader Leases.
pub const COMPONENT_LEASE_NAMESPACE: &str = crate::render::defaults::NAMESPACE;

/// The leader Leases whose holders are updated last.
pub const COMPONENT_LEASES: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

/// Events may carry at most 1 kB of note.
const MAX_NOTE: usize = 1024;

/// Requeue delay after a status write refused with 409 Conflict.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// Why a reconciliation failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed.
    #[error("cannot {action}: {source}")]
    Kube {
        /// What the operator tried to do.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The config has no name or uid (it was never stored by the API server).
    #[error(
        "ControlPlaneConfig without metadata.{0}: only objects read from the API server can be reconciled"
    )]
    Incomplete(&'static str),
    /// An object changed after it was read (another operator replica, an agent, a user): the
    /// write that carried the read `metadata.resourceVersion` was refused with 409 Conflict.
    #[error("{0} changed after it was read (resourceVersion {1}); reconciling again")]
    Conflict(String, String),
}

impl Error {
    /// A short label for the `kubeplane_reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "Kube",
            Error::Incomplete(_) => "Incomplete",
            Error::Conflict(..) => "Conflict",
        }
    }
}

/// `Result` of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on the configs.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// How often a config is reconciled without any change, to refresh the Lease holders and
    /// notice a changed encryption Secret.
    pub resync: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context publishing Events as `kubeplane-operator` (instance `instance`).
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Context {
            client,
            recorder,
            metrics,
            resync: Duration::from_secs(60),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Requeue delay after `failures` consecutive failures: 1 s doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// The controller's error policy: count the error and requeue with per-config exponential
/// backoff.
pub fn error_policy(cpc: Arc<ControlPlaneConfig>, err: &Error, ctx: Arc<Context>) -> Action {
    let name = cpc.name_any();
    ctx.metrics.reconcile_failed(&name, err.metric_label());
    let n = {
        let mut f = ctx.failures();
        let n = f.entry(name.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(n);
    warn!(config = %name, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Reconciles one config. See the module documentation.
pub async fn reconcile(cpc: Arc<ControlPlaneConfig>, ctx: Arc<Context>) -> Result<Action> {
    let name = cpc.name_any();
    let _timer = ctx.metrics.reconcile_started(&name);
    let span = info_span!("reconcile", config = %name, generation = tracing::field::Empty, revision = tracing::field::Empty);
    let action = reconcile_inner(&name, &ctx).instrument(span).await?;
    ctx.failures().remove(&name);
    Ok(action)
}

async fn reconcile_inner(name: &str, ctx: &Context) -> Result<Action> {
    let configs: Api<ControlPlaneConfig> = Api::all(ctx.client.clone());
    // The newest object, with the status this operator wrote last.
    let Some(cpc) = configs
        .get_opt(name)
        .await
        .map_err(kube_err(format!("get ControlPlaneConfig {name}")))?
    else {
        debug!("config is gone");
        ctx.metrics.forget(name);
        return Ok(Action::await_change());
    };
    if cpc.uid().is_none() {
        return Err(Error::Incomplete("uid"));
    }
    let generation = cpc.metadata.generation;
    tracing::Span::current().record("generation", generation.unwrap_or_default());

    // 1. Validation first: nothing is read or written for a spec that cannot be rolled out.
    let report = validation::validate(&cpc.spec);
    let warnings: Vec<String> = report.warnings().map(ToString::to_string).collect();
    if !report.is_ok() {
        let message = report
            .errors()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let repeat = degraded_reason(&cpc).as_deref() == Some("InvalidSpec")
            && observed_generation(&cpc) == generation;
        block(ctx, &cpc, "InvalidSpec", &message, warnings).await?;
        if !repeat {
            publish(
                ctx,
                &cpc,
                &PlannedEvent {
                    kind: EventKind::Warning,
                    reason: reason::VALIDATION_FAILED,
                    note: format!("spec refused, no node touched: {message}"),
                    node: None,
                },
            )
            .await;
        }
        info!(%message, "spec is invalid; waiting for a change");
        return Ok(Action::await_change());
    }

    // 2. The encryption configuration's digest (part of the rendered side file, so of the
    // revision).
    let managed_encryption = cpc
        .spec
        .api_server
        .as_ref()
        .and_then(|a| a.encryption.as_ref())
        .and_then(|e| e.managed.clone());
    let mut digest = match render::encryption_secret(&cpc.spec) {
        None => None,
        // Managed: the keys Secret is read (and written) once the nodes are known (3b).
        Some(_) if managed_encryption.is_some() => None,
        Some(r) => match encryption_digest(ctx, &r).await? {
            Ok(d) => Some(d),
            Err(message) => {
                block(ctx, &cpc, "EncryptionSecretMissing", &message, warnings).await?;
                return Ok(Action::requeue(ctx.resync));
            }
        },
    };
    // 3. What the API says: selected Nodes, ControlPlaneNodes, Lease holders.
    let selector = selection::node_selector(&cpc.spec);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node_list = nodes
        .list(&ListParams::default().labels(&selection::label_selector(&selector)))
        .await
        .map_err(kube_err("list Nodes"))?;
    // Nodes whose kubelet stopped posting status (Ready Unknown): down or cut off.
    let unreachable: BTreeSet<String> = node_list
        .items
        .iter()
        .filter(|n| selection::unreachable(n))
        .map(|n| n.name_any())
        .collect();
    let mut selected: Vec<String> = node_list
        .items
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| selection::matches(&selector, n.labels()))
        .map(|n| n.name_any())
        .collect();
    selected.sort();

    let cpn_api: Api<ControlPlaneNode> = Api::all(ctx.client.clone());
    let all_cpns = cpn_api
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list ControlPlaneNodes"))?;
    let mut ours: BTreeMap<String, ControlPlaneNode> = BTreeMap::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for cpn in all_cpns.items {
        let owner = cpn.labels().get(CONFIG_LABEL).cloned();
        if owner.as_deref() == Some(name) {
            ours.insert(cpn.name_any(), cpn);
        } else if let Some(other) = owner {
            claimed.insert(cpn.name_any(), other);
        }
    }
    let conflicts: Vec<String> = selected
        .iter()
        .filter_map(|n| {
            claimed
                .get(n)
                .map(|other| format!("node {n} is managed by ControlPlaneConfig {other}"))
        })
        .collect();
    if !conflicts.is_empty() {
        let message = format!(
            "{}; make the nodeSelectors of the configs disjoint (a ControlPlaneNode is kept when its node leaves the selector: delete it with kubectl delete cpn NODE to hand the node over)",
            conflicts.join("; ")
        );
        block(ctx, &cpc, "NodeConflict", &message, warnings).await?;
        return Ok(Action::requeue(ctx.resync));
    }
    // 3b. Managed encryption: the key lifecycle's step (operator::encryption), whose rendered
    // configuration goes into the revision like any side file.
    let (mut encryption_status, mut encryption_requeue) = (None, None);
    if let Some(managed) = &managed_encryption {
        let p = super::encryption::stage(ctx, &cpc, managed, &selected, &ours).await?;
        (digest, encryption_status, encryption_requeue) = (p.digest, Some(p.status), p.requeue);
    }
    // The version-skew policy (kubernetes.io/releases/version-skew-policy) against the versions
    // each node was last given (every manifest's image tag): more than one minor forward, or a
    // minor downgrade the spec does not allow, is refused before any node is touched. The
    // agent's own rollback of a failed node never changes its ControlPlaneNode's spec, so it is
    // not judged as a downgrade.
    let running: Vec<(String, String)> = selected
        .iter()
        .filter_map(|n| ours.get(n))
        .flat_map(|c| {
            validation::upgrade::node_versions(&c.spec)
                .into_iter()
                .map(|v| (c.name_any(), v))
        })
        .collect();
    let skew = validation::upgrade::check_fleet(
        &running,
        &cpc.spec.kubernetes_version,
        validation::upgrade::allow_minor_downgrade(&cpc.spec),
    );
    if !skew.is_empty() {
        let message = skew
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        block(ctx, &cpc, "UnsupportedVersionSkew", &message, warnings).await?;
        return Ok(Action::requeue(ctx.resync));
    }
    // A minor change also gets the target version's checks (feature gates removed or locked,
    // admission plugins, --runtime-config, flags between the versions) against the lowest
    // version a node runs: what would stop a component from starting is refused here.
    if let Some(from) =
        validation::upgrade::minor_change_from(&running, &cpc.spec.kubernetes_version)
    {
        let errors: Vec<String> = validation::upgrade::check_target(&cpc.spec, &from)
            .iter()
            .filter(|p| p.is_error())
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            block(
                ctx,
                &cpc,
                "UpgradeCheckFailed",
                &errors.join("; "),
                warnings,
            )
            .await?;
            return Ok(Action::requeue(ctx.resync));
        }
    }

    // 4. Render every selected node whose agent reported facts: the revision names exactly
    // these bytes (render::revision_of).
    let mut rendered: BTreeMap<String, render::Rendered> = BTreeMap::new();
    for node in &selected {
        let Some(facts) = ours
            .get(node)
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.node_facts.clone())
        else {
            continue;
        };
        let facts = NodeFacts {
            node_name: node.clone(),
            ..facts
        };
        match render::render(&RenderInput {
            spec: &cpc.spec,
            node: &facts,
            encryption_config_sha256: digest.as_deref(),
        }) {
            Ok(r) => {
                rendered.insert(node.clone(), r);
            }
            Err(e) => {
                let message = format!("cannot render node {node}: {e}; no node is updated");
                block(ctx, &cpc, "RenderFailed", &message, warnings).await?;
                return Ok(Action::requeue(ctx.resync));
            }
        }
    }
    let full_revision = render::revision_of(rendered.iter().map(|(n, r)| (n.as_str(), r)));

    let (leaders, holders) = read_leaders(ctx, &selected).await?;

    let views: Vec<NodeView> = selected
        .iter()
        .map(|n| {
            let mut v = ours
                .get(n)
                .map_or_else(|| NodeView::without_cpn(n), NodeView::from_cpn);
            v.unreachable = unreachable.contains(n);
            v
        })
        .collect();

    // 5. A minor upgrade rolls in waves (operator::waves): wave 1 has a revision of its own.
    let full_specs: BTreeMap<String, ControlPlaneNodeSpec> = rendered
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                render::node_spec(name, &cpc.spec, &full_revision, r),
            )
        })
        .collect();
    let current: BTreeMap<String, ControlPlaneNodeSpec> = ours
        .iter()
        .map(|(n, c)| (n.clone(), c.spec.clone()))
        .collect();
    let previous_upgrade = cpc.status.as_ref().and_then(|s| s.upgrade.clone());
    let waves::Stage {
        revision,
        specs,
        upgrade,
    } = waves::stage(
        &cpc.spec.kubernetes_version,
        &full_revision,
        full_specs,
        &current,
        &views,
        previous_upgrade.as_ref(),
    );
    tracing::Span::current().record("revision", revision.as_str());

    // 6. Decide.
    let previous = previous(&cpc);
    let paused = cpc
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.paused)
        .unwrap_or(false);
    let mut decision = rollout::decide(&RolloutInput {
        revision: &revision,
        paused,
        nodes: &views,
        lease_holders: &holders,
        previous: &previous,
        now: Timestamp::now(),
        progress_deadline_seconds: i64::from(render::progress_deadline_seconds(&cpc.spec)),
    });
    waves::annotate(&mut decision, previous_upgrade.as_ref(), upgrade.as_ref());
    // A started node always has facts, so it was rendered.
    let started: Option<(String, ControlPlaneNodeSpec)> = decision
        .start
        .as_ref()
        .and_then(|n| Some((n.clone(), specs.get(n)?.clone())));

    // 7. Status first: it claims the node that starts (status.nodeInFlight) with the config's
    // resourceVersion as precondition. A concurrent writer (a second operator leader, a user)
    // makes it fail with 409 Conflict, and then no ControlPlaneNode is written.
    let status = ControlPlaneConfigStatus {
        observed_generation: generation,
        revision: Some(revision.clone()),
        nodes: decision.nodes,
        updated_nodes: decision.updated,
        ready_nodes: decision.ready,
        node_in_flight: decision.node_in_flight.clone(),
        node_in_flight_revision: decision.in_flight_revision.clone(),
        node_in_flight_since: decision.in_flight_since.map(Time),
        failed_revisions: decision.failed_revisions.clone(),
        conditions: merge_conditions(&cpc, &decision.conditions, generation),
        warnings,
        leaders,
        upgrade,
        encryption: encryption_status,
    };
    match apply_status(ctx, &cpc, &status).await {
        Ok(()) => {}
        Err(Error::Conflict(config, rv)) => {
            info!(
                %config, resource_version = %rv, would_start = ?decision.start,
                "the config changed since it was read; nothing written, reconciling again"
            );
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
        Err(e) => return Err(e),
    }

    // 8. ControlPlaneNodes: new ones (facts first), the started node, the selection marks.
    let owner = cpc
        .controller_owner_ref(&())
        .ok_or(Error::Incomplete("uid"))?;
    for node in selected.iter().filter(|n| !ours.contains_key(*n)) {
        let empty = ControlPlaneNodeSpec {
            config_name: name.to_string(),
            ..Default::default()
        };
        apply_cpn(ctx, name, node, &owner, &empty, None).await?;
        info!(node = %node, "created ControlPlaneNode; waiting for its agent's node facts");
    }
    if let Some((node, spec)) = &started {
        // The node's ControlPlaneNode as read (it exists: its facts came from it).
        let rv = ours
            .get(node)
            .and_then(|c| c.metadata.resource_version.as_deref());
        match apply_cpn(ctx, name, node, &owner, spec, rv).await {
            Ok(()) => {}
            Err(Error::Conflict(what, rv)) => {
                // Its agent reported in between, or another replica wrote it: decide again.
                // The claim in the status keeps every other node from starting meanwhile.
                info!(%what, resource_version = %rv, "changed since it was read; reconciling again");
                return Ok(Action::requeue(CONFLICT_RETRY));
            }
            Err(e) => return Err(e),
        }
        if decision.retarget {
            info!(node = %node, "node in flight given the newer revision");
        } else {
            info!(node = %node, "node update started");
        }
    }
    // A node that left the selector keeps its ControlPlaneNode (what ran and failed there),
    // marked and left out of the counts: a label flap must not make the operator forget.
    for (node, cpn) in &ours {
        let is_selected = selected.binary_search(node).is_ok();
        let marked = cpn.labels().get(UNSELECTED_LABEL).map(String::as_str) == Some("true");
        if is_selected == marked {
            mark_unselected(ctx, node, !is_selected).await?;
            if is_selected {
                info!(node = %node, "node selected again");
            } else {
                info!(node = %node, "node left the selector; its ControlPlaneNode is kept, labelled {UNSELECTED_LABEL}=true");
            }
        }
    }

    // 9. Events, after the writes, so a failed write does not repeat them.
    for ev in &decision.events {
        publish(ctx, &cpc, ev).await;
    }

    // 10. Metrics.
    record_metrics(ctx, name, &decision, &views, &ours);
    debug!(phase = decision.phase.as_str(), in_flight = ?decision.node_in_flight, "reconciled");
    // A selected node whose Node is Ready=Unknown holds the rollout; Node watches carry
    // metadata only (status heartbeats would reconcile every config on every node), so its
    // return is noticed by looking again soon.
    let mut requeue = encryption_requeue.map_or(ctx.resync, |r| r.min(ctx.resync));
    if selected.iter().any(|n| unreachable.contains(n)) {
        requeue = requeue.min(UNREACHABLE_RECHECK);
    }
    Ok(Action::requeue(requeue))
}

/// How soon a config with an unreachable node is reconciled again: the rollout resumes within
/// this of the Node's Ready condition coming back.
pub const UNREACHABLE_RECHECK: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let s = "é".repeat(1000);
        let t = truncate(&s, MAX_NOTE);
        assert!(t.len() <= MAX_NOTE && t.ends_with("..."));
        assert_eq!(truncate("short", MAX_NOTE), "short");
    }
}
