//! Minor version upgrades in waves. The version-skew policy
//! (kubernetes.io/releases/version-skew-policy, "kube-controller-manager, kube-scheduler, and
//! cloud-controller-manager") says those components must not be newer than the kube-apiserver
//! instances they communicate with; behind a load balancer that is every kube-apiserver. A
//! rollout that moves node after node, all components of a node at once, breaks it on the first
//! node: its new kube-controller-manager reaches the old kube-apiserver of the second node
//! through the VIP. So a minor change rolls in two waves, each one node at a time by the usual
//! rules ([`super::rollout::decide`]):
//!
//! 1. kube-apiserver at the new version on every node; each node keeps the kube-controller-manager
//!    and kube-scheduler manifests it runs (taken from its `ControlPlaneNode`), so wave 1 has a
//!    revision of its own;
//! 2. the full revision: kube-controller-manager and kube-scheduler follow (kube-apiserver's
//!    bytes are the same as in wave 1, so the agent leaves it running).
//!
//! A patch change or a flag change is one wave, as before. Pure: the wave comes from the
//! config's previous status (`status.upgrade`) and what the `ControlPlaneNode`s run, so a
//! restarted operator continues where the last one was; without the status it finds the same
//! wave again from the nodes.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::rollout::{Decision, EventKind, NodeView, PlannedEvent, condition};
use crate::api::{Component, ControlPlaneNodeSpec, UpgradeStatus};
use crate::flags::KubeVersion;
use crate::render::RENDERER_VERSION;

/// Number of waves of a minor upgrade.
pub const WAVES: i32 = 2;

/// What a wave does, for status messages.
pub fn describe(wave: i32) -> &'static str {
    match wave {
        1 => "kube-apiserver on every node, one node at a time",
        _ => "kube-controller-manager and kube-scheduler on every node, one node at a time",
    }
}

fn minor(version: &str) -> Option<u32> {
    KubeVersion::parse(version).ok().map(|v| v.minor)
}

/// The upgrade in effect for a spec at `target`: the previous status's when it still applies,
/// else a new one when some node runs an older minor than the target (`running`: the
/// `spec.kubernetesVersion` of each selected node's `ControlPlaneNode`, empty for a node that
/// was never given a revision), else none. `apiserver_managed`: the spec renders kube-apiserver
/// (without it there is nothing to do first).
pub fn upgrade_in_effect(
    target: &str,
    previous: Option<&UpgradeStatus>,
    running: &[&str],
    apiserver_managed: bool,
) -> Option<UpgradeStatus> {
    let to = minor(target)?;
    if !apiserver_managed {
        return None;
    }
    // The same upgrade; a patch or flag change on the way re-targets the wave. A spec that
    // went back to the version it came from, or elsewhere, is decided afresh below (going
    // back is a normal rollout: older controllers beside newer API servers are within the
    // policy).
    if let Some(p) = previous
        && minor(&p.to_version) == Some(to)
    {
        return Some(UpgradeStatus {
            to_version: target.to_string(),
            ..p.clone()
        });
    }
    let lowest = running
        .iter()
        .filter_map(|v| minor(v).map(|m| (m, *v)))
        .min_by_key(|(m, _)| *m)?;
    (lowest.0 < to).then(|| UpgradeStatus {
        from_version: lowest.1.to_string(),
        to_version: target.to_string(),
        wave: 1,
        revision: String::new(),
    })
}

/// The wave after this reconcile: wave 1 ends when every selected node is healthy at the
/// wave-1 revision, wave 2 (and the upgrade) when every node is healthy at the full revision.
pub fn advance(
    upgrade: UpgradeStatus,
    nodes: &[NodeView],
    wave1_revision: &str,
    full_revision: &str,
) -> Option<UpgradeStatus> {
    match upgrade.wave {
        1 if nodes.iter().all(|n| n.ready(wave1_revision)) => {
            Some(UpgradeStatus { wave: 2, ..upgrade })
        }
        1 => Some(upgrade),
        _ if nodes.iter().all(|n| n.ready(full_revision)) => None,
        _ => Some(upgrade),
    }
}

/// A node's wave-1 spec: kube-apiserver (its manifest, side files and certificates) from the
/// full spec, everything else as the node runs it now (`current`, its `ControlPlaneNode`'s
/// spec; none for a node that never got a revision: then only kube-apiserver is in it, and the
/// agent leaves the other files alone). `revision` is filled in by [`wave1_revision`].
pub fn wave1_spec(
    full: &ControlPlaneNodeSpec,
    current: Option<&ControlPlaneNodeSpec>,
) -> ControlPlaneNodeSpec {
    let api = |c: Component| c == Component::ApiServer;
    let keep = current.filter(|c| !c.manifests.is_empty());
    let mut manifests: Vec<_> = full
        .manifests
        .iter()
        .filter(|m| api(m.component))
        .cloned()
        .collect();
    let mut files: Vec<_> = full
        .files
        .iter()
        .filter(|f| api(f.component))
        .cloned()
        .collect();
    let mut certificates: Vec<_> = full
        .certificates
        .iter()
        .filter(|c| api(c.component))
        .cloned()
        .collect();
    if let Some(cur) = keep {
        manifests.extend(cur.manifests.iter().filter(|m| !api(m.component)).cloned());
        files.extend(cur.files.iter().filter(|f| !api(f.component)).cloned());
        certificates.extend(
            cur.certificates
                .iter()
                .filter(|c| !api(c.component))
                .cloned(),
        );
    }
    // Apply order: kube-apiserver first, then the others in the canonical order.
    manifests.sort_by_key(|m| Component::ALL.iter().position(|c| *c == m.component));
    certificates.sort();
    ControlPlaneNodeSpec {
        config_name: full.config_name.clone(),
        revision: String::new(),
        kubernetes_version: full.kubernetes_version.clone(),
        manifests,
        files,
        certificates,
        min_ready_seconds: full.min_ready_seconds,
        image_pull_secrets: full.image_pull_secrets.clone(),
    }
}

/// The wave-1 revision: as [`crate::render::revision_of`], over the wave-1 specs (node name,
/// each manifest's file name and bytes, each side file), marked as wave 1 of the full
/// revision, so it differs from every full revision.
pub fn wave1_revision<'a>(
    full_revision: &str,
    nodes: impl IntoIterator<Item = (&'a str, &'a ControlPlaneNodeSpec)>,
) -> String {
    let mut nodes: Vec<(&str, &ControlPlaneNodeSpec)> = nodes.into_iter().collect();
    nodes.sort_by_key(|(n, _)| *n);
    let mut h = Sha256::new();
    let field = |h: &mut Sha256, tag: &[u8], value: &[u8]| {
        h.update(tag);
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    };
    field(&mut h, b"kubeplane-renderer", RENDERER_VERSION.as_bytes());
    field(&mut h, b"\0wave1-of", full_revision.as_bytes());
    for (name, spec) in nodes {
        field(&mut h, b"\0node", name.as_bytes());
        for m in &spec.manifests {
            field(&mut h, b"\0manifest", m.file_name.as_bytes());
            field(&mut h, b"\0content", m.content.as_bytes());
        }
        for f in &spec.files {
            let json = serde_json::to_vec(f).unwrap_or_default();
            field(&mut h, b"\0file", &json);
        }
    }
    let digest = h.finalize();
    digest[..5].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the nodes are given now.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The revision rolled out now: the wave-1 revision in wave 1, else the full one.
    pub revision: String,
    /// Each rendered node's spec at that revision.
    pub specs: BTreeMap<String, ControlPlaneNodeSpec>,
    /// The upgrade in progress after this decision (`status.upgrade`).
    pub upgrade: Option<UpgradeStatus>,
}

/// The stage of a rollout: `full` is each rendered node's spec at `full_revision` (the spec's
/// own), `current` each selected node's `ControlPlaneNode` spec as it is, `views` what the
/// selected nodes report, `previous` the config's previous `status.upgrade`.
pub fn stage(
    target_version: &str,
    full_revision: &str,
    full: BTreeMap<String, ControlPlaneNodeSpec>,
    current: &BTreeMap<String, ControlPlaneNodeSpec>,
    views: &[NodeView],
    previous: Option<&UpgradeStatus>,
) -> Stage {
    let running: Vec<&str> = views
        .iter()
        .filter_map(|v| current.get(&v.name))
        .filter(|c| !c.manifests.is_empty())
        .map(|c| c.kubernetes_version.as_str())
        .collect();
    let apiserver_managed = full.values().any(|s| {
        s.manifests
            .iter()
            .any(|m| m.component == Component::ApiServer)
    });
    let Some(upgrade) = upgrade_in_effect(target_version, previous, &running, apiserver_managed)
    else {
        return Stage {
            revision: full_revision.to_string(),
            specs: full,
            upgrade: None,
        };
    };
    let wave1: BTreeMap<String, ControlPlaneNodeSpec> = full
        .iter()
        .map(|(n, s)| (n.clone(), wave1_spec(s, current.get(n))))
        .collect();
    let r1 = wave1_revision(full_revision, wave1.iter().map(|(n, s)| (n.as_str(), s)));
    let upgrade = advance(upgrade, views, &r1, full_revision).map(|u| UpgradeStatus {
        revision: full_revision.to_string(),
        ..u
    });
    match upgrade {
        Some(u) if u.wave == 1 => Stage {
            specs: wave1
                .into_iter()
                .map(|(n, s)| {
                    (
                        n,
                        ControlPlaneNodeSpec {
                            revision: r1.clone(),
                            ..s
                        },
                    )
                })
                .collect(),
            revision: r1,
            upgrade: Some(u),
        },
        other => Stage {
            revision: full_revision.to_string(),
            specs: full,
            upgrade: other,
        },
    }
}

/// Event reasons of an upgrade.
pub mod reason {
    /// A wave of a minor upgrade started.
    pub const UPGRADE_WAVE_STARTED: &str = "UpgradeWaveStarted";
    /// Every node runs the new minor version, healthy.
    pub const UPGRADE_COMPLETED: &str = "UpgradeCompleted";
}

/// Tells the upgrade's story in the decision: the `Progressing` and `Degraded` messages say
/// which wave (a halt in wave 1 means kube-apiserver of the new version failed on that node),
/// and an Event marks each wave's start and the end.
pub fn annotate(
    decision: &mut Decision,
    previous: Option<&UpgradeStatus>,
    now: Option<&UpgradeStatus>,
) {
    if let Some(u) = now {
        for c in &mut decision.conditions {
            if c.status && (c.type_ == condition::PROGRESSING || c.type_ == condition::DEGRADED) {
                c.message = format!("{}; {}", c.message, message(u));
            }
        }
        if previous.map(|p| p.wave) != Some(u.wave) {
            decision.events.insert(
                0,
                PlannedEvent {
                    kind: EventKind::Normal,
                    reason: reason::UPGRADE_WAVE_STARTED,
                    note: message(u),
                    node: None,
                },
            );
        }
    } else if let Some(p) = previous {
        let completed = decision.phase == super::rollout::RolloutPhase::Complete;
        decision.events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: reason::UPGRADE_COMPLETED,
            note: if completed {
                format!(
                    "upgrade {} → {} done: every node runs {} (kube-apiserver first on every node, then the other components)",
                    p.from_version, p.to_version, p.to_version
                )
            } else {
                format!(
                    "upgrade {} → {} ended: the spec no longer asks for a newer minor version",
                    p.from_version, p.to_version
                )
            },
            node: None,
        });
    }
}

/// What status messages add during an upgrade.
pub fn message(u: &UpgradeStatus) -> String {
    format!(
        "upgrade {} → {}, wave {} of {WAVES}: {}",
        u.from_version,
        u.to_version,
        u.wave,
        describe(u.wave)
    )
}

#[cfg(test)]
mod tests;
