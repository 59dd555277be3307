//! Rewriting every stored object of the encrypted resources with the write key: each object
//! is read and replaced with its `resourceVersion` (what the Kubernetes documentation does with
//! `kubectl get secrets -A -o json | kubectl replace -f -`). kube-apiserver stores an object
//! again when it was read with a key that is not the first one, so after one pass started
//! once every API server writes with the new key, no object needs the old key. A 409 Conflict
//! means someone changed the object after it was read, which stored it with the new key too;
//! a 404 means it was deleted: both count as done.
//!
//! A pass goes page by page (a list continue token in `status.encryption.migration`), a few
//! seconds per reconcile, at most `migration.objectsPerSecond`. A continue token that expired
//! (410 Gone after etcd compaction) restarts the resource from the beginning: rewriting an
//! object twice is harmless.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams, TypeMeta};
use kube::{Client, ResourceExt};
use tracing::{debug, info};

use crate::api::MigrationStatus;

/// Time one reconcile spends rewriting before it reports progress.
const BUDGET: Duration = Duration::from_secs(10);

/// Resolves `RESOURCE` or `RESOURCE.GROUP` to its preferred version through discovery.
pub async fn resolve(client: &Client, resource: &str) -> Result<ApiResource, String> {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let discovery = kube::Discovery::new(client.clone())
        .filter(&[group])
        .run()
        .await
        .map_err(|e| format!("discovery of group {group:?}: {e}"))?;
    for g in discovery.groups() {
        for (ar, _caps) in g.recommended_resources() {
            if ar.plural == plural && ar.group == group {
                return Ok(ar);
            }
        }
    }
    Err(format!(
        "the API server serves no resource {resource:?}; fix spec.apiServer.encryption.managed.resources"
    ))
}

/// Goes on with the pass in `progress` for `resources` (a new pass when `progress` is for
/// another key or absent); returns the updated progress. `Err` for a failure that stops the
/// pass (discovery, a list refused).
pub async fn step(
    client: &Client,
    resources: &[String],
    key: &str,
    objects_per_second: i32,
    progress: Option<&MigrationStatus>,
) -> Result<MigrationStatus, String> {
    let mut p = match progress {
        Some(p) if p.key.as_deref() == Some(key) && !p.complete => p.clone(),
        _ => MigrationStatus {
            key: Some(key.to_string()),
            started: Some(Time(Timestamp::now())),
            ..Default::default()
        },
    };
    let pause = Duration::from_secs_f64(1.0 / f64::from(objects_per_second.max(1)));
    let page = u32::try_from(objects_per_second.clamp(10, 500)).unwrap_or(100);
    let started = Instant::now();
    while started.elapsed() < BUDGET {
        let Some(resource) = usize::try_from(p.resource_index)
            .ok()
            .and_then(|i| resources.get(i))
        else {
            // Gone through every resource: complete when nothing failed, else once more.
            if p.failed == 0 {
                p.complete = true;
                p.resource = None;
                info!(key, migrated = p.migrated, "rewrite pass complete");
            } else {
                info!(
                    key,
                    failed = p.failed,
                    "rewrite pass had failures; starting again"
                );
                p.resource_index = 0;
                p.failed = 0;
                p.continue_token = None;
            }
            return Ok(p);
        };
        p.resource = Some(resource.clone());
        let ar = resolve(client, resource).await?;
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let mut lp = ListParams::default().limit(page);
        if let Some(t) = &p.continue_token {
            lp = lp.continue_token(t);
        }
        let list = match all.list(&lp).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 410 => {
                info!(
                    resource,
                    "list continue token expired; starting the resource again"
                );
                p.continue_token = None;
                continue;
            }
            Err(e) => return Err(format!("list {resource}: {e}")),
        };
        for mut obj in list.items {
            obj.types = Some(TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            });
            let api: Api<DynamicObject> = match obj.namespace() {
                Some(ns) => Api::namespaced_with(client.clone(), &ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            match api
                .replace(&obj.name_any(), &PostParams::default(), &obj)
                .await
            {
                Ok(_) => p.migrated += 1,
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => p.migrated += 1,
                Err(e) => {
                    // The object's name only: its content is never logged.
                    debug!(resource, namespace = ?obj.namespace(), name = %obj.name_any(), error = %e, "replace failed");
                    p.failed += 1;
                }
            }
            tokio::time::sleep(pause).await;
        }
        p.continue_token = list.metadata.continue_.filter(|t| !t.is_empty());
        if p.continue_token.is_none() {
            p.resource_index += 1;
        }
    }
    Ok(p)
}
