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

/// Field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "kubeplane-operator";

/// Namespace of the kube-controller-manager and kube-scheduler leader Leases.
pub const COMPONENT_LEASE_NAMESPACE: &str = "kube-system";

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
    let digest = match render::encryption_secret(&cpc.spec) {
        None => None,
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
        .list_metadata(&ListParams::default().labels(&selection::label_selector(&selector)))
        .await
        .map_err(kube_err("list Nodes"))?;
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
            ours.get(n)
                .map_or_else(|| NodeView::without_cpn(n), NodeView::from_cpn)
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
    Ok(Action::requeue(ctx.resync))
}

fn observed_generation(cpc: &ControlPlaneConfig) -> Option<i64> {
    cpc.status.as_ref().and_then(|s| s.observed_generation)
}

fn degraded_reason(cpc: &ControlPlaneConfig) -> Option<String> {
    let st = cpc.status.as_ref()?;
    let c = find_condition(&st.conditions, condition::DEGRADED)?;
    c.is_true().then(|| c.reason.clone())
}

fn previous(cpc: &ControlPlaneConfig) -> Previous {
    let st = cpc.status.as_ref();
    Previous {
        revision: st.and_then(|s| s.revision.clone()),
        node_in_flight: st.and_then(|s| s.node_in_flight.clone()),
        ready: st
            .and_then(|s| find_condition(&s.conditions, condition::READY))
            .is_some_and(|c| c.is_true()),
        degraded_reason: degraded_reason(cpc),
        in_flight_revision: st.and_then(|s| s.node_in_flight_revision.clone()),
        in_flight_since: st
            .and_then(|s| s.node_in_flight_since.as_ref())
            .map(|t| t.0),
        failed: st.map(|s| s.failed_revisions.clone()).unwrap_or_default(),
    }
}

/// The previous conditions with the new values set; transition times kept where the status
/// did not change.
fn merge_conditions(
    cpc: &ControlPlaneConfig,
    values: &[ConditionValue],
    generation: Option<i64>,
) -> Vec<crate::api::Condition> {
    let mut conditions = cpc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(Timestamp::now());
    for v in values {
        set_condition(
            &mut conditions,
            crate::api::Condition {
                type_: v.type_.to_string(),
                status: if v.status { "True" } else { "False" }.into(),
                reason: v.reason.clone(),
                message: v.message.clone(),
                last_transition_time: now.clone(),
                observed_generation: generation,
            },
        );
    }
    conditions.sort_by_key(|c| {
        [
            condition::READY,
            condition::PROGRESSING,
            condition::DEGRADED,
        ]
        .iter()
        .position(|t| *t == c.type_)
        .unwrap_or(usize::MAX)
    });
    conditions
}

/// Writes a status that says the rollout cannot go on (`Degraded=True`, `reason`), keeping the
/// node counts and leaders last observed.
async fn block(
    ctx: &Context,
    cpc: &ControlPlaneConfig,
    why: &str,
    message: &str,
    warnings: Vec<String>,
) -> Result<()> {
    let name = cpc.name_any();
    warn!(reason = why, %message, "rollout blocked");
    let generation = cpc.metadata.generation;
    let mut status = cpc.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.warnings = warnings;
    let values: Vec<ConditionValue> = [
        condition::READY,
        condition::PROGRESSING,
        condition::DEGRADED,
    ]
    .into_iter()
    .map(|t| ConditionValue {
        type_: t,
        status: t == condition::DEGRADED,
        reason: why.to_string(),
        message: message.to_string(),
    })
    .collect();
    status.conditions = merge_conditions(cpc, &values, generation);
    apply_status(ctx, cpc, &status).await?;
    ctx.metrics.set_rollout_phase(&name, RolloutPhase::Invalid);
    Ok(())
}

/// SHA-256 of the encryption configuration in the referenced Secret; `Err(message)` when the
/// Secret or key is missing (a problem the user fixes, not a transient error).
async fn encryption_digest(
    ctx: &Context,
    r: &crate::api::SecretKeyRef,
) -> Result<Result<String, String>> {
    let ns = r
        .namespace
        .clone()
        .unwrap_or_else(|| render::defaults::ENCRYPTION_SECRET_NAMESPACE.into());
    let key = r
        .key
        .clone()
        .unwrap_or_else(|| render::defaults::ENCRYPTION_SECRET_KEY.into());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(kube_err(format!("get Secret {ns}/{}", r.name)))?;
    let Some(secret) = secret else {
        return Ok(Err(format!(
            "spec.apiServer.encryption.secretRef: Secret {ns}/{} does not exist; create it with the EncryptionConfiguration under key {key:?}",
            r.name
        )));
    };
    match secret.data.as_ref().and_then(|d| d.get(&key)) {
        Some(bytes) => Ok(Ok(render::sha256_hex(&bytes.0))),
        None => Ok(Err(format!(
            "spec.apiServer.encryption.secretRef: Secret {ns}/{} has no key {key:?}; add the EncryptionConfiguration under that key or set secretRef.key",
            r.name
        ))),
    }
}

/// The holders of the component Leases, and the selected nodes among them.
async fn read_leaders(
    ctx: &Context,
    selected: &[String],
) -> Result<(Vec<LeaderStatus>, BTreeSet<String>)> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), COMPONENT_LEASE_NAMESPACE);
    let mut leaders = Vec::new();
    let mut holders = BTreeSet::new();
    for component in COMPONENT_LEASES {
        let Some(lease) = leases.get_opt(component).await.map_err(kube_err(format!(
            "get Lease {COMPONENT_LEASE_NAMESPACE}/{component}"
        )))?
        else {
            continue;
        };
        let status = leader_status(component, &lease, selected);
        if let Some(n) = &status.node {
            holders.insert(n.clone());
        }
        leaders.push(status);
    }
    Ok((leaders, holders))
}

/// A component's leader as its Lease says.
pub fn leader_status(component: &str, lease: &Lease, selected: &[String]) -> LeaderStatus {
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty());
    LeaderStatus {
        component: component.to_string(),
        node: holder
            .as_deref()
            .and_then(|h| selection::holder_node(h, selected)),
        holder,
        transitions: spec.and_then(|s| s.lease_transitions),
        renew_time: spec.and_then(|s| s.renew_time.clone()),
    }
}

/// Server-side applies a `ControlPlaneNode`'s spec, labels and owner. With
/// `resource_version` (the one read in this reconcile) the write is refused with 409 Conflict
/// ([`Error::Conflict`]) when the object changed since: a write of a stalled operator replica
/// that lands after another replica moved the rollout on must not give the node an old
/// revision.
async fn apply_cpn(
    ctx: &Context,
    config: &str,
    node: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    spec: &ControlPlaneNodeSpec,
    resource_version: Option<&str>,
) -> Result<()> {
    let api: Api<ControlPlaneNode> = Api::all(ctx.client.clone());
    let mut body = json!({
        "apiVersion": ControlPlaneNode::api_version(&()),
        "kind": ControlPlaneNode::kind(&()),
        "metadata": {
            "name": node,
            "labels": { CONFIG_LABEL: config },
            "ownerReferences": [owner],
        },
        "spec": spec,
    });
    if let Some(rv) = resource_version {
        body["metadata"]["resourceVersion"] = json!(rv);
    }
    match api
        .patch(
            node,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 && resource_version.is_some() => {
            Err(Error::Conflict(
                format!("ControlPlaneNode {node}"),
                resource_version.unwrap_or_default().into(),
            ))
        }
        Err(e) => Err(kube_err(format!("apply ControlPlaneNode {node}"))(e)),
    }
}

/// Writes the config's status (server-side apply) with the config's `metadata.resourceVersion`
/// as read at the start of the reconcile: the API server refuses it with 409 Conflict when the
/// config changed since ([`Error::Conflict`]). Every status write carries it, so a replica
/// working from an older read can neither claim a node nor erase another replica's claim.
async fn apply_status(
    ctx: &Context,
    cpc: &ControlPlaneConfig,
    status: &ControlPlaneConfigStatus,
) -> Result<()> {
    let name = cpc.name_any();
    let rv = cpc
        .metadata
        .resource_version
        .clone()
        .ok_or(Error::Incomplete("resourceVersion"))?;
    let api: Api<ControlPlaneConfig> = Api::all(ctx.client.clone());
    let body = json!({
        "apiVersion": ControlPlaneConfig::api_version(&()),
        "kind": ControlPlaneConfig::kind(&()),
        "metadata": { "name": name, "resourceVersion": rv },
        "status": status,
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Err(Error::Conflict(format!("ControlPlaneConfig {name}"), rv))
        }
        Err(e) => Err(kube_err(format!(
            "apply status of ControlPlaneConfig {name}"
        ))(e)),
    }
}

/// Sets (`true`) or removes the [`UNSELECTED_LABEL`] of a `ControlPlaneNode` with a merge
/// patch, which leaves the server-side-applied spec, labels and owner alone.
async fn mark_unselected(ctx: &Context, node: &str, unselected: bool) -> Result<()> {
    let api: Api<ControlPlaneNode> = Api::all(ctx.client.clone());
    let value = if unselected {
        json!("true")
    } else {
        json!(null)
    };
    let patch = json!({ "metadata": { "labels": { UNSELECTED_LABEL: value } } });
    match api
        .patch(
            node,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err(format!("label ControlPlaneNode {node}"))(e)),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Publishes an Event on the config; a failure is logged, not fatal (Events are best effort).
async fn publish(ctx: &Context, cpc: &ControlPlaneConfig, ev: &PlannedEvent) {
    let event = Event {
        type_: match ev.kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        },
        reason: ev.reason.to_string(),
        note: Some(truncate(&ev.note, MAX_NOTE)),
        action: "Reconcile".into(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, &cpc.object_ref(&())).await {
        Ok(()) => info!(reason = ev.reason, note = %ev.note, "event"),
        Err(e) => warn!(reason = ev.reason, error = %e, "cannot publish event"),
    }
}

fn record_metrics(
    ctx: &Context,
    name: &str,
    d: &Decision,
    views: &[NodeView],
    ours: &BTreeMap<String, ControlPlaneNode>,
) {
    ctx.metrics.set_rollout_phase(name, d.phase);
    let mut phases: BTreeMap<&str, i64> = BTreeMap::new();
    for v in views {
        *phases.entry(v.shown_phase()).or_default() += 1;
    }
    ctx.metrics.set_node_phases(name, &phases);
    let certs = views
        .iter()
        .filter_map(|v| ours.get(&v.name))
        .flat_map(|cpn| {
            let node = cpn.name_any();
            cpn.status
                .iter()
                .flat_map(|s| s.certificates.iter())
                .filter_map(move |c| {
                    Some(CertificateExpiry {
                        node: node.clone(),
                        component: c.component.clone(),
                        path: c.path.clone(),
                        not_after: c.not_after.as_ref()?.0,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ctx.metrics.set_certificates(name, certs);
}

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
