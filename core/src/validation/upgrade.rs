//! Version changes: the rules of the Kubernetes version-skew policy
//! (<https://kubernetes.io/releases/version-skew-policy/>) and the checks of a target version
//! that must pass before any node is touched. Pure: no I/O.
//!
//! The skew policy lets kube-apiserver instances of an HA control plane differ by at most one
//! minor version, and kube-controller-manager and kube-scheduler must not be newer than any API
//! server they talk to. So a change of `spec.kubernetesVersion` moves at most one minor
//! version forward; a minor downgrade is refused unless `spec.upgrade.allowMinorDowngrade`
//! says so (and then also one minor at a time); the patch version is free. The agent's own
//! rollback of a failed upgrade is not a change of the spec and is not judged here.
//!
//! The same rule is enforced where a change is seen: the CRD's CEL transition rule on `spec`
//! (admission), [`check_change`] here (the operator, before it rolls a version change out, and
//! `kubeplane upgrade plan`).

use crate::api::{Component, ControlPlaneConfigSpec, ControlPlaneNodeSpec};
use crate::flags::upgrade::{self as data, GateStage, GateState};
use crate::flags::{FlagStatus, KubeVersion, Minor, lookup};
use crate::render;

use super::Problem;
use super::effective::{Effective, EffectivePod, render_effective};

const VERSION_FIELD: &str = "spec.kubernetesVersion";

/// Whether the spec allows a minor downgrade (`spec.upgrade.allowMinorDowngrade`).
pub fn allow_minor_downgrade(spec: &ControlPlaneConfigSpec) -> bool {
    spec.upgrade
        .as_ref()
        .and_then(|u| u.allow_minor_downgrade)
        .unwrap_or(false)
}

/// What kind of change a version change is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The same version.
    None,
    /// Only the patch version (or pre-release suffix) changes.
    Patch,
    /// One or more minor versions forward.
    MinorUp,
    /// One or more minor versions back.
    MinorDown,
}

/// The kind of change from `old` to `new`.
pub fn change_kind(old: &KubeVersion, new: &KubeVersion) -> ChangeKind {
    use std::cmp::Ordering::*;
    match new.minor.cmp(&old.minor) {
        Greater => ChangeKind::MinorUp,
        Less => ChangeKind::MinorDown,
        Equal if old == new => ChangeKind::None,
        Equal => ChangeKind::Patch,
    }
}

/// The rules for changing `spec.kubernetesVersion` from `old_version` (what the nodes run) to
/// `new_version`: at most one minor forward; a minor downgrade only with `allow_downgrade`, and
/// then one minor at a time; any patch. Versions outside kubeplane's supported range are
/// judged too (the old one may be older than what kubeplane renders).
pub fn check_change(old_version: &str, new_version: &str, allow_downgrade: bool) -> Vec<Problem> {
    let old = match KubeVersion::parse_any(old_version) {
        Ok(v) => v,
        Err(e) => {
            return vec![
                Problem::error(
                    VERSION_FIELD,
                    format!("the version the nodes run, {old_version:?}, cannot be judged: {e}"),
                )
                .value(old_version)
                .fix("report the running version as v1.MINOR.PATCH"),
            ];
        }
    };
    let new = match KubeVersion::parse_any(new_version) {
        Ok(v) => v,
        // Reported by the structural checks of the spec.
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    match change_kind(&old, &new) {
        ChangeKind::None | ChangeKind::Patch => {}
        ChangeKind::MinorUp if new.minor == old.minor + 1 => {}
        ChangeKind::MinorUp => {
            let skipped: Vec<String> = (old.minor + 1..new.minor)
                .map(|m| Minor(m).to_string())
                .collect();
            out.push(
                Problem::error(
                    VERSION_FIELD,
                    format!(
                        "{old} → {new} skips {}: the control plane moves one minor version at a time (kubernetes.io/releases/version-skew-policy: API servers of one cluster differ by at most one minor, and controller-manager and scheduler are never newer than an API server)",
                        skipped.join(", ")
                    ),
                )
                .value(new_version)
                .fix(format!(
                    "go to v1.{}.x first, then on to {new}",
                    old.minor + 1
                )),
            );
        }
        ChangeKind::MinorDown if !allow_downgrade => out.push(
            Problem::error(
                VERSION_FIELD,
                format!(
                    "{old} → {new} is a minor downgrade, which kubeplane refuses unless the spec says so (objects written by 1.{} may use fields or storage versions 1.{} does not know)",
                    old.minor, new.minor
                ),
            )
            .value(new_version)
            .fix(format!(
                "keep a v1.{}.x version, or set spec.upgrade.allowMinorDowngrade: true to go back to 1.{}",
                old.minor, new.minor
            )),
        ),
        ChangeKind::MinorDown if new.minor + 1 < old.minor => out.push(
            Problem::error(
                VERSION_FIELD,
                format!(
                    "{old} → {new} goes back {} minor versions; even an allowed downgrade moves one minor at a time (kubernetes.io/releases/version-skew-policy)",
                    old.minor - new.minor
                ),
            )
            .value(new_version)
            .fix(format!("go back to v1.{}.x first", old.minor - 1)),
        ),
        ChangeKind::MinorDown => {}
    }
    out
}

/// [`check_change`] against every version the nodes run (`(node, version)`), each distinct
/// version judged once; the nodes are named in the message.
pub fn check_fleet(
    nodes: &[(String, String)],
    new_version: &str,
    allow_downgrade: bool,
) -> Vec<Problem> {
    let mut versions: Vec<&str> = nodes.iter().map(|(_, v)| v.as_str()).collect();
    versions.sort_unstable();
    versions.dedup();
    let mut out = Vec::new();
    for v in versions {
        let names: Vec<&str> = nodes
            .iter()
            .filter(|(_, nv)| nv == v)
            .map(|(n, _)| n.as_str())
            .collect();
        for mut p in check_change(v, new_version, allow_downgrade) {
            p.message = format!("node(s) {} run {v}: {}", names.join(", "), p.message);
            out.push(p);
        }
    }
    out
}

/// The Kubernetes versions a node was last given: the image tag of every manifest in its
/// `ControlPlaneNode` spec (during a wave-1 upgrade kube-apiserver is newer than the other
/// components), else the spec's `kubernetesVersion`. Tags that are not versions (a custom
/// image) are skipped.
pub fn node_versions(spec: &ControlPlaneNodeSpec) -> Vec<String> {
    let mut out: Vec<String> = spec
        .manifests
        .iter()
        .filter_map(|m| {
            let image = m
                .content
                .lines()
                .find_map(|l| l.trim().strip_prefix("image: "))?;
            let image = image.trim().trim_matches('"');
            let image = image.split('@').next().unwrap_or(image);
            let (_, tag) = image.rsplit_once(':')?;
            KubeVersion::parse_any(tag).ok().map(|v| v.to_string())
        })
        .collect();
    if out.is_empty() && !spec.kubernetes_version.is_empty() {
        out.push(spec.kubernetes_version.clone());
    }
    out.sort();
    out.dedup();
    out
}

/// The lowest version the nodes run (`(node, version)`), when some node runs another minor
/// than `target`: the "from" of a minor change. `None` for a patch or flag change, or when
/// nothing runs yet.
pub fn minor_change_from(nodes: &[(String, String)], target: &str) -> Option<KubeVersion> {
    let to = KubeVersion::parse_any(target).ok()?;
    let running: Vec<KubeVersion> = nodes
        .iter()
        .filter_map(|(_, v)| KubeVersion::parse_any(v).ok())
        .collect();
    if running.iter().all(|v| v.minor == to.minor) {
        return None;
    }
    running.into_iter().min_by_key(|v| (v.minor, v.patch))
}

/// Where a flag value comes from: the `extraArgs` entry that sets it, else the rendered default.
fn flag_field(spec: &ControlPlaneConfigSpec, component: Component, flag: &str) -> String {
    let settings = render::settings(spec, component);
    let key = match component {
        Component::ApiServer => "apiServer",
        Component::ControllerManager => "controllerManager",
        Component::Scheduler => "scheduler",
    };
    match settings.extra_args.iter().rposition(|a| a.name == flag) {
        Some(i) => format!("spec.{key}.extraArgs[{i}]"),
        None => format!("{} --{flag} (kubeplane's default)", component.name()),
    }
}

/// Go's `strconv.ParseBool`, which `--feature-gates` values go through.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The checks of a target version before any node is touched: feature gates removed, locked
/// or deprecated in it (`--feature-gates`), admission plugins it does not have
/// (`--enable-admission-plugins`, `--disable-admission-plugins`, `--admission-control`),
/// API group/versions it does not serve (`--runtime-config`), and flags removed, renamed or
/// not yet added between `from` and the spec's version. Each problem names the version and the
/// fix. A spec whose version does not parse or render yields nothing here (the structural
/// checks report it).
pub fn check_target(spec: &ControlPlaneConfigSpec, from: &KubeVersion) -> Vec<Problem> {
    let Ok(to) = KubeVersion::parse(&spec.kubernetes_version) else {
        return Vec::new();
    };
    let Ok(effective) = render_effective(spec) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    gates(spec, &effective, &to, &mut out);
    if let Some(api) = effective.pod(Component::ApiServer) {
        plugins(spec, api, &to, &mut out);
        runtime_config(spec, api, &to, &mut out);
    }
    flags_between(spec, &effective, from, &to, &mut out);
    out
}

fn gates(
    spec: &ControlPlaneConfigSpec,
    effective: &Effective,
    to: &KubeVersion,
    out: &mut Vec<Problem>,
) {
    for pod in &effective.pods {
        let c = pod.component;
        let field = flag_field(spec, c, "feature-gates");
        let mut prefixed = false;
        let mut plain = false;
        for value in pod.values("feature-gates") {
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (key, val) = item.split_once('=').unwrap_or((item, ""));
                let name = match key.split_once(':') {
                    Some(("kube", n)) => {
                        prefixed = true;
                        n
                    }
                    // Another component's gates (`wardle:Feature`): not ours to judge.
                    Some(_) => continue,
                    None => {
                        plain = true;
                        key
                    }
                };
                let Some(val) = parse_bool(val.trim()) else {
                    // The value syntax is judged by the flag checks of `validate`.
                    continue;
                };
                if let Some(p) = gate_problem(name, val, to, c) {
                    out.push(p.value(item).field_of(&field));
                }
            }
        }
        if prefixed && plain && to.minor >= 36 {
            out.push(
                Problem::error(
                    field,
                    format!(
                        "{c} {to} refuses --feature-gates that mix kube:Name and plain Name entries (\"set kube feature gates with default empty prefix or kube: prefix consistently\")",
                        c = c.name()
                    ),
                )
                .fix("write every kube gate the same way, all with kube: or none"),
            );
        }
    }
}

/// Sets a problem's field (the builder the checks above use).
trait FieldOf {
    fn field_of(self, field: &str) -> Self;
}

impl FieldOf for Problem {
    fn field_of(mut self, field: &str) -> Self {
        self.field = field.to_string();
        self
    }
}

fn gate_problem(name: &str, val: bool, to: &KubeVersion, c: Component) -> Option<Problem> {
    let gate = data::gate(name)?;
    let t = Minor(to.minor);
    let comp = c.name();
    match gate.state_in(to.minor) {
        GateState::Known(Some(s)) if s.locked && s.default != val => Some(
            Problem::error(
                "",
                format!(
                    "the feature gate {name} is {} and locked to {} in {t}: {comp} {to} refuses to start with {name}={val}",
                    s.stage.as_str(),
                    s.default
                ),
            )
            .fix(format!(
                "remove {name} from --feature-gates before going to {to}; {}",
                if s.default { "its feature can no longer be turned off" } else { "the behaviour it kept is gone" }
            )),
        ),
        GateState::Known(Some(s)) if s.locked => Some(
            Problem::warning(
                "",
                format!(
                    "the feature gate {name} is {} and locked to {} in {t}: setting it does nothing, and a later release removes it",
                    s.stage.as_str(),
                    s.default
                ),
            )
            .fix(format!("remove {name} from --feature-gates")),
        ),
        GateState::Known(Some(s)) if s.stage == GateStage::Deprecated => Some(
            Problem::warning("", format!("the feature gate {name} is deprecated in {t} (default {}) and goes away in a later release", s.default))
                .fix(format!("stop relying on {name} and remove it from --feature-gates")),
        ),
        GateState::Known(_) => None,
        GateState::Removed { in_, exact, last } => {
            let when = if exact {
                format!("was removed in {in_}")
            } else {
                format!("is gone by {in_}")
            };
            let kept = last.map(|s| s.default);
            // Asking for what the release does anyway is harmless (v1.36.2 only logs the
            // unknown gate); asking for anything else asks for behaviour that is gone.
            let message = format!(
                "the feature gate {name} {when}: {comp} {to} does not know it (v1.36.2 logs \"unrecognized feature gate\" and ignores it), so {name}={val} no longer has any effect"
            );
            Some(
                if kept == Some(val) {
                    Problem::warning("", message)
                } else {
                    Problem::error("", message)
                }
                .fix(match kept {
                    Some(true) => format!("remove {name} from --feature-gates; its feature is always on in {t}"),
                    Some(false) => format!("remove {name} from --feature-gates; the behaviour it turned on is gone in {t}"),
                    None => format!("remove {name} from --feature-gates"),
                }),
            )
        }
        GateState::MaybeRemoved { last_seen, removed_by, .. } => Some(
            Problem::warning(
                "",
                format!(
                    "the feature gate {name} is known in {last_seen} and gone by {removed_by}; whether {t} still has it is not established"
                ),
            )
            .fix(format!("remove {name} from --feature-gates before going to {to}")),
        ),
    }
}

fn plugins(
    spec: &ControlPlaneConfigSpec,
    api: &EffectivePod,
    to: &KubeVersion,
    out: &mut Vec<Problem>,
) {
    let known = data::admission_plugins(Minor(to.minor));
    for flag in [
        "enable-admission-plugins",
        "disable-admission-plugins",
        "admission-control",
    ] {
        let field = flag_field(spec, Component::ApiServer, flag);
        for value in api.values(flag) {
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if let Some(p) = data::removed_plugin(name)
                    && let Some((minor, exact)) = p.gone_in(to.minor)
                {
                    let when = if exact {
                        format!("was removed in {minor}")
                    } else {
                        format!("is gone by {minor}")
                    };
                    out.push(
                            Problem::error(
                                field.clone(),
                                format!(
                                    "the admission plugin {name} {when}: kube-apiserver {to} refuses to start with it in --{flag}"
                                ),
                            )
                            .value(name)
                            .fix(format!("remove {name} from --{flag}; {}", p.note)),
                        );
                    continue;
                }
                if let Some(known) = known
                    && !known.iter().any(|k| k == name)
                {
                    out.push(
                            Problem::error(
                                field.clone(),
                                format!(
                                    "kube-apiserver {to} has no admission plugin {name} (its --help lists {} plugins) and refuses to start with it in --{flag}",
                                    known.len()
                                ),
                            )
                            .value(name)
                            .fix(format!("remove {name} from --{flag}, or check its spelling against kube-apiserver --help")),
                        );
                }
            }
        }
    }
}

fn runtime_config(
    spec: &ControlPlaneConfigSpec,
    api: &EffectivePod,
    to: &KubeVersion,
    out: &mut Vec<Problem>,
) {
    let field = flag_field(spec, Component::ApiServer, "runtime-config");
    for value in api.values("runtime-config") {
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let key = item.split_once('=').map_or(item, |(k, _)| k);
            let mut parts = key.split('/');
            let (Some(group), Some(version)) = (parts.next(), parts.next()) else {
                continue;
            };
            let gv = format!("{group}/{version}");
            if let Some(api) = data::removed_api(&gv)
                && api.removed.0 <= to.minor
            {
                out.push(
                        Problem::error(
                            field.clone(),
                            format!(
                                "{gv} is not served since {}: kube-apiserver {to} refuses to start with it in --runtime-config",
                                api.removed
                            ),
                        )
                        .value(item)
                        .fix(format!("remove {key} from --runtime-config; use {}", api.use_)),
                    );
            }
        }
    }
}

fn flags_between(
    spec: &ControlPlaneConfigSpec,
    effective: &Effective,
    from: &KubeVersion,
    to: &KubeVersion,
    out: &mut Vec<Problem>,
) {
    if from.minor == to.minor {
        return;
    }
    for pod in &effective.pods {
        let c = pod.component;
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in &pod.flags {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            let before = lookup(c, name, from);
            if !before.is_accepted() {
                // Already refused by the running version: `validate` of the old spec said so.
                continue;
            }
            let field = flag_field(spec, c, name);
            match lookup(c, name, to) {
                FlagStatus::Removed { flag, removed_in } => out.push(
                    Problem::error(
                        field,
                        format!(
                            "--{name} is accepted by {c} {from} but removed in {removed_in}: {c} {to} refuses to start with it",
                            c = c.name()
                        ),
                    )
                    .fix(match &flag.replacement {
                        Some(r) => format!("replace --{name} with --{r} before going to {to}"),
                        None => flag.note.clone().unwrap_or_else(|| format!("remove --{name}")),
                    }),
                ),
                FlagStatus::NotYet { since, .. } => out.push(
                    Problem::error(
                        field,
                        format!(
                            "--{name} only exists since {since}: {c} {to} refuses to start with it",
                            c = c.name()
                        ),
                    )
                    .fix(format!("remove --{name} before going back to {to}")),
                ),
                FlagStatus::Deprecated { flag, since } if !matches!(before, FlagStatus::Deprecated { .. }) => {
                    out.push(
                        Problem::warning(
                            field,
                            format!("--{name} is deprecated in {since} ({c} {to} still accepts it)", c = c.name()),
                        )
                        .fix(match &flag.replacement {
                            Some(r) => format!("move to --{r}"),
                            None => flag.note.clone().unwrap_or_else(|| format!("plan to remove --{name}")),
                        }),
                    )
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
