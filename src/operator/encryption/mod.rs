//! Managed encryption at rest (`spec.apiServer.encryption.managed`): the I/O around the pure
//! lifecycle in [`crate::encryption::machine`]. Each reconcile reads the keys Secret (the
//! source of truth: state and rendered configuration in one object), looks at where every
//! node stands, asks the machine, and does what it says: generate a key (the operating
//! system's CSPRNG through rustls' ring provider), write the Secret (one update, with its
//! `resourceVersion`), back retired keys up, rewrite objects ([`rewrite`]), count what etcd
//! stores ([`etcd`]). The rendered configuration's digest then goes into the revision like any
//! side file, and the normal one-node-at-a-time rollout carries it to every API server.
//!
//! Key material lives only in the two Secrets and the nodes' files: never in status, Events,
//! logs or metrics (`Key`'s `Debug` is redacted; messages carry key names only).

pub mod etcd;
pub mod rewrite;
mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use super::reconcile::{Context, Error, FIELD_MANAGER, Result};
use super::rollout::{EventKind, PlannedEvent};
use crate::api::{
    Component, ControlPlaneConfig, ControlPlaneNode, EncryptionStatus, FileSource, KeyCount,
    ManagedEncryption, NodeEncryption, NodePhase, VerificationStatus,
};
use crate::encryption::machine::{self, Check, NodeView, Outcome, Rewrite};
use crate::encryption::{
    CONFIG_KEY, Desired, Key, KeyState, RETIRED_SUFFIX, STATE_KEY, Step, render_config, sha256_hex,
};
use crate::render::defaults::NAMESPACE;
use secrets::{backup, write_keys};

/// Requeue while objects are being rewritten.
const REWRITE_REQUEUE: Duration = Duration::from_secs(1);
/// Requeue right after a step was written (the revision changes at once).
const STEP_REQUEUE: Duration = Duration::from_secs(2);
/// Label on the Secrets kubeplane keeps keys in.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kubeplane");

/// What the reconcile takes from managed encryption.
#[derive(Debug)]
pub struct Prepared {
    /// SHA-256 of the configuration the nodes should get; `None` before the Secret exists.
    pub digest: Option<String>,
    /// `status.encryption`.
    pub status: EncryptionStatus,
    /// Reconcile again this soon (rewriting, or a step just written).
    pub requeue: Option<Duration>,
    /// An Event to publish: (warning, reason, note).
    pub event: Option<(bool, &'static str, String)>,
}

/// Event reason: a step of the key lifecycle was written.
pub const REASON_STEP: &str = "EncryptionStep";
/// Event reason: the lifecycle halted.
pub const REASON_HALTED: &str = "EncryptionHalted";

fn kube_err(action: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

/// Whether a node's kube-apiserver runs healthy with the configuration of digest `sha` from
/// the keys Secret `secret`.
pub fn carries(cpn: &ControlPlaneNode, secret: &str, sha: &str) -> bool {
    let file = cpn.spec.files.iter().any(|f| {
        f.component == Component::ApiServer
            && f.sha256 == sha
            && matches!(&f.source, FileSource::Secret(r) if r.name == secret)
    });
    let settled = cpn.status.as_ref().is_some_and(|s| {
        s.phase == Some(NodePhase::Healthy)
            && s.applied_revision.as_deref() == Some(cpn.spec.revision.as_str())
    });
    file && settled && !cpn.spec.revision.is_empty()
}

/// The nodes as the lifecycle sees them: every selected node, and every node that left the
/// selector but keeps its ControlPlaneNode.
pub fn node_views(
    selected: &[String],
    ours: &BTreeMap<String, ControlPlaneNode>,
    secret: &str,
    sha: Option<&str>,
) -> Vec<NodeView> {
    let names: BTreeSet<&String> = selected.iter().chain(ours.keys()).collect();
    names
        .into_iter()
        .map(|n| NodeView {
            name: n.clone(),
            selected: selected.contains(n),
            current: match (ours.get(n), sha) {
                (Some(c), Some(sha)) => carries(c, secret, sha),
                _ => false,
            },
        })
        .collect()
}

/// A pass-through configuration some node runs (a Secret other than the keys Secret): taking
/// over would drop its keys.
fn foreign_configuration(
    ours: &BTreeMap<String, ControlPlaneNode>,
    secret: &str,
) -> Option<String> {
    ours.values().find_map(|c| {
        c.spec.files.iter().find_map(|f| match &f.source {
            FileSource::Secret(r) if f.component == Component::ApiServer && r.name != secret => {
                Some(format!(
                    "node {} runs the EncryptionConfiguration of Secret {}/{}",
                    c.name_any(),
                    r.namespace.as_deref().unwrap_or(NAMESPACE),
                    r.name
                ))
            }
            _ => None,
        })
    })
}

/// Fresh key bytes from the operating system's CSPRNG, base64.
fn fresh_key() -> Result<String, String> {
    let mut buf = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| "the operating system's random source failed".to_string())?;
    Ok(STANDARD.encode(buf))
}

fn data(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
}

/// The reconcile's managed-encryption stage: [`reconcile`], then its Event published.
pub async fn stage(
    ctx: &Context,
    cpc: &ControlPlaneConfig,
    managed: &ManagedEncryption,
    selected: &[String],
    ours: &BTreeMap<String, ControlPlaneNode>,
) -> Result<Prepared> {
    let prepared = reconcile(ctx, cpc, managed, selected, ours).await?;
    if let Some((warning, reason, note)) = prepared.event.clone() {
        let kind = if warning {
            EventKind::Warning
        } else {
            EventKind::Normal
        };
        let event = PlannedEvent {
            kind,
            reason,
            note,
            node: None,
        };
        super::reconcile::publish(ctx, cpc, &event).await;
    }
    Ok(prepared)
}

/// One reconcile of managed encryption. See the module documentation.
pub async fn reconcile(
    ctx: &Context,
    cpc: &ControlPlaneConfig,
    managed: &ManagedEncryption,
    selected: &[String],
    ours: &BTreeMap<String, ControlPlaneNode>,
) -> Result<Prepared> {
    let mut prepared = decide_and_act(ctx, cpc, managed, selected, ours).await?;
    for n in &mut prepared.status.nodes {
        n.revision = ours
            .get(&n.node)
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.applied_revision.clone());
    }
    Ok(prepared)
}

async fn decide_and_act(
    ctx: &Context,
    cpc: &ControlPlaneConfig,
    managed: &ManagedEncryption,
    selected: &[String],
    ours: &BTreeMap<String, ControlPlaneNode>,
) -> Result<Prepared> {
    let desired = Desired::from_spec(managed);
    let previous = cpc.status.as_ref().and_then(|s| s.encryption.clone());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let name = desired.secret_name.clone();
    let found = secrets
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("get Secret {NAMESPACE}/{name}")))?;

    let mut status = previous.clone().unwrap_or_default();

    let state: Option<KeyState> = match &found {
        None => None,
        Some(s) => match data(s, STATE_KEY).map(|b| serde_json::from_slice::<KeyState>(&b)) {
            Some(Ok(st)) => Some(st),
            Some(Err(e)) => {
                let m = format!(
                    "Secret {NAMESPACE}/{name} key {STATE_KEY} cannot be read ({e}); nothing is changed; restore the Secret from a backup"
                );
                return Ok(halted(status, m, None, None, &[]));
            }
            None => {
                let m = format!(
                    "Secret {NAMESPACE}/{name} has no key {STATE_KEY}: it was not written by kubeplane; nothing is changed; rename spec.apiServer.encryption.managed.secretName or move that Secret away"
                );
                return Ok(halted(status, m, None, None, &[]));
            }
        },
    };
    if state.is_none()
        && let Some(foreign) = foreign_configuration(ours, &name)
    {
        let m = format!(
            "{foreign}: managed encryption cannot take over keys it did not generate (objects encrypted with them would become unreadable); keep spec.apiServer.encryption.secretRef, or first turn that configuration's encryption off and rewrite the objects"
        );
        return Ok(halted(status, m, None, None, &[]));
    }
    let stored_sha = found
        .as_ref()
        .and_then(|s| data(s, CONFIG_KEY))
        .map(|b| sha256_hex(&b));
    let views = node_views(selected, ours, &name, stored_sha.as_deref());
    let fresh = fresh_key().map_err(|e| Error::Kube {
        action: "generate a key".into(),
        source: kube::Error::Service(e.into()),
    })?;

    // The rewrite belongs to the current target key.
    let target = state.as_ref().map(|s| s.target.clone());
    let progress = previous
        .as_ref()
        .and_then(|p| p.migration.clone())
        .filter(|m| m.key == target);
    let rewrite = if progress.as_ref().is_some_and(|m| m.complete) {
        Rewrite::Complete
    } else {
        Rewrite::Pending
    };
    let etcd_access = managed.verification.as_ref().and_then(|v| v.etcd.clone());
    let mut input = machine::Input {
        desired: &desired,
        state: state.as_ref(),
        reported_step: previous.as_ref().and_then(|p| p.step.as_deref()),
        nodes: &views,
        rewrite,
        check: if etcd_access.is_some() {
            Check::NotRead
        } else {
            Check::NotConfigured
        },
        now_unix: Timestamp::now().as_second(),
        fresh_secret: &fresh,
    };
    let mut outcome = machine::next(&input);
    if outcome == Outcome::Check
        && let (Some(access), Some(st)) = (&etcd_access, &state)
    {
        let check = match count_in_etcd(ctx, cpc, access, &st.resources).await {
            Ok(counts) => {
                status.verification = Some(VerificationStatus {
                    method: "etcd".into(),
                    counts: counts
                        .iter()
                        .map(|(k, n)| KeyCount {
                            key: k.clone(),
                            count: *n,
                        })
                        .collect(),
                });
                Check::Counts(counts.into_iter().collect())
            }
            Err(e) => Check::Failed(e),
        };
        input.check = check;
        outcome = machine::next(&input);
    }

    let mut prepared = Prepared {
        digest: stored_sha.clone(),
        status: EncryptionStatus::default(),
        requeue: None,
        event: None,
    };
    let mut current_state = state.clone();
    status.migration = progress.clone();
    match outcome {
        Outcome::Write {
            state: next,
            retire,
            message,
        } => {
            if !retire.is_empty() {
                backup(&secrets, &name, &next.resources, &retire).await?;
            }
            let rendered = next.render();
            write_keys(&secrets, &name, found.as_ref(), &next, &rendered).await?;
            info!(step = next.step.as_str(), keys = ?next.key_names(), "{message}");
            if next.step == Step::OldKeyRetired && state.as_ref().map(|s| s.step) != Some(next.step)
            {
                status.last_rotation_time = Some(Time(Timestamp::now()));
            }
            prepared.digest = Some(sha256_hex(rendered.as_bytes()));
            prepared.requeue = Some(STEP_REQUEUE);
            prepared.event = Some((
                false,
                REASON_STEP,
                format!("{}: {message}", next.step.as_str()),
            ));
            status.health = Some("Progressing".into());
            status.message = Some(message);
            if next.step == Step::Migrating {
                status.migration = None;
            }
            current_state = Some(next);
        }
        Outcome::Wait(message) => {
            status.health = Some("Progressing".into());
            status.message = Some(message);
        }
        Outcome::Rewrite(message) => {
            let st = state.as_ref().expect("a rewrite has a state");
            match rewrite::step(
                &ctx.client,
                &st.resources,
                &st.target,
                desired.objects_per_second,
                progress.as_ref(),
            )
            .await
            {
                Ok(p) => {
                    if p.complete && etcd_access.is_none() {
                        status.verification = Some(VerificationStatus {
                            method: "rewrite".into(),
                            counts: Vec::new(),
                        });
                    }
                    status.message = Some(format!(
                        "{message}: {} rewritten{}",
                        p.migrated,
                        p.resource
                            .as_deref()
                            .map(|r| format!(", now {r}"))
                            .unwrap_or_default()
                    ));
                    status.health = Some("Progressing".into());
                    status.migration = Some(p);
                    prepared.requeue = Some(REWRITE_REQUEUE);
                }
                Err(e) => {
                    let m = format!(
                        "{message}: {e}; every key is still in the configuration, nothing is lost; the rewrite resumes when the cause is fixed (the operator needs list and update on the resources: chart value rbac.managedEncryption)"
                    );
                    return Ok(halted(
                        status,
                        m,
                        stored_sha,
                        current_state.as_ref(),
                        &views,
                    ));
                }
            }
        }
        Outcome::Halt(message) => {
            if state.as_ref().is_some_and(|s| s.step == Step::Migrating)
                && matches!(input.check, Check::Counts(_))
            {
                // Objects remain under an old key after a complete pass: rewrite again.
                status.migration = None;
            }
            let same =
                previous.as_ref().and_then(|p| p.message.as_deref()) == Some(message.as_str());
            let mut p = halted(status, message, stored_sha, current_state.as_ref(), &views);
            if same {
                p.event = None;
            }
            return Ok(p);
        }
        Outcome::Stable(message) => {
            status.health = Some("Stable".into());
            status.message = Some(message);
        }
        Outcome::Check => {
            status.health = Some("Progressing".into());
        }
    }
    prepared.status = fill(
        status,
        current_state.as_ref(),
        &views,
        prepared.digest.as_deref(),
    );
    Ok(prepared)
}

/// A halt: `Degraded` with the message (which says what is safe), a Warning Event, and a
/// look again in 30 s.
fn halted(
    mut status: EncryptionStatus,
    message: String,
    digest: Option<String>,
    state: Option<&KeyState>,
    views: &[NodeView],
) -> Prepared {
    status.health = Some("Degraded".into());
    status.message = Some(message.clone());
    Prepared {
        status: fill(status, state, views, digest.as_deref()),
        digest,
        requeue: Some(Duration::from_secs(30)),
        event: Some((true, REASON_HALTED, message)),
    }
}

/// The status fields that follow from the state and the nodes.
fn fill(
    mut status: EncryptionStatus,
    state: Option<&KeyState>,
    views: &[NodeView],
    digest: Option<&str>,
) -> EncryptionStatus {
    if let Some(st) = state {
        status.step = Some(st.step.as_str().into());
        let active = st.active().cloned().unwrap_or_else(Key::identity);
        status.provider = Some(active.provider.name().into());
        status.active_key = Some(active.name);
        status.keys = st.key_names();
        status.observed_rotation = Some(st.observed_rotation);
    }
    status.config_sha256 = digest.map(ToString::to_string);
    status.nodes = views
        .iter()
        .map(|v| NodeEncryption {
            node: v.name.clone(),
            revision: None,
            current: v.current,
        })
        .collect();
    status
}

/// Counts stored objects per key in etcd with the configured access.
async fn count_in_etcd(
    ctx: &Context,
    cpc: &ControlPlaneConfig,
    access: &crate::api::EtcdAccess,
    resources: &[String],
) -> Result<BTreeMap<String, i64>, String> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let s = secrets
        .get_opt(&access.secret_name)
        .await
        .map_err(|e| format!("get Secret {NAMESPACE}/{}: {e}", access.secret_name))?
        .ok_or_else(|| format!("Secret {NAMESPACE}/{} does not exist", access.secret_name))?;
    let get = |k: &str| {
        data(&s, k)
            .ok_or_else(|| format!("Secret {NAMESPACE}/{} has no key {k}", access.secret_name))
    };
    let creds = etcd::Credentials {
        ca: get("ca.crt")?,
        cert: get("tls.crt")?,
        key: get("tls.key")?,
    };
    let endpoints: Vec<String> = if access.endpoints.is_empty() {
        cpc.spec
            .etcd
            .as_ref()
            .and_then(|e| e.external.as_ref())
            .map(|e| e.endpoints.iter().map(|b| b.0.clone()).collect())
            .unwrap_or_default()
    } else {
        access.endpoints.clone()
    };
    let client = etcd::Etcd::new(endpoints, &creds)?;
    let counts = client
        .count(access.prefix.as_deref().unwrap_or("/registry"), resources)
        .await?;
    if counts.is_empty() {
        warn!("etcd holds no object of the encrypted resources");
    }
    Ok(counts)
}

#[cfg(test)]
mod tests;
