//! The reconcile's reads and writes of the API: blocking conditions, the encryption Secret's
//! digest, the component Leases, ControlPlaneNode and config status applies, Events, metrics.

use super::*;

/// Writes a status that says the rollout cannot go on (`Degraded=True`, `reason`), keeping the
/// node counts and leaders last observed.
pub(super) async fn block(
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
pub(super) async fn encryption_digest(
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
pub(super) async fn read_leaders(
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
pub(super) async fn apply_cpn(
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
pub(super) async fn apply_status(
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
pub(super) async fn mark_unselected(ctx: &Context, node: &str, unselected: bool) -> Result<()> {
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

pub(super) fn truncate(s: &str, max: usize) -> String {
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
pub(crate) async fn publish(ctx: &Context, cpc: &ControlPlaneConfig, ev: &PlannedEvent) {
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

pub(super) fn record_metrics(
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
