//! Every `extraArgs` entry of every managed component, against the flag table of the target
//! version: unknown, removed, not-yet-added and deprecated flags, values by type, repeats,
//! protected flags, the merge policy, and whether path flags point inside the Pod's volumes.

use super::effective::{Effective, EffectivePod};
use super::values::check_value;
use super::{Problem, Report};
use crate::api::{CommonSettings, Component, ControlPlaneConfigSpec};
use crate::flags::policy::{Merge, is_protected, merge_of};
use crate::flags::{FlagInfo, FlagStatus, FlagType, KubeVersion, find, lookup};
use crate::render::args::split_list;
use crate::render::{defaults, is_managed, settings};

/// Flags that make the component print something and exit: the static Pod would restart
/// forever.
const EXITING_FLAGS: [&str; 3] = ["help", "version", "write-config-to"];

/// Flags whose file the component writes, so a covering volume must be writable.
pub(crate) const WRITTEN_FLAGS: [&str; 3] = ["audit-log-path", "cert-dir", "debug-socket-path"];

/// The flag name an `extraArgs` entry means: without leading dashes; `None` when the name is
/// otherwise malformed (the structural checks report that).
pub(super) fn flag_name(raw: &str) -> Option<&str> {
    let name = raw.trim_start_matches('-');
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then_some(name)
}

/// The field of the last `extraArgs` entry of a flag, if the user gave it.
pub(super) fn arg_field(spec: &ControlPlaneConfigSpec, c: Component, name: &str) -> Option<String> {
    settings(spec, c)
        .extra_args
        .iter()
        .rposition(|a| flag_name(&a.name) == Some(name))
        .map(|i| format!("spec.{}.extraArgs[{i}]", c.spec_field()))
}

pub(super) fn check(
    spec: &ControlPlaneConfigSpec,
    version: &KubeVersion,
    effective: Option<&Effective>,
    r: &mut Report,
) {
    for c in Component::ALL {
        let s = settings(spec, c);
        let base = format!("spec.{}", c.spec_field());
        if !is_managed(spec, c) {
            if !s.extra_args.is_empty() {
                r.push(
                    Problem::warning(
                        format!("{base}.extraArgs"),
                        format!("{c} has managed: false, so kubeplane does not use these flags"),
                    )
                    .fix(format!(
                        "remove them, or set {base}.managed: true to have kubeplane write {c}"
                    )),
                );
            }
            continue;
        }
        let mut found = Report::default();
        check_entries(c, &base, s, version, &mut found);
        check_repeats(c, &base, s, version, &mut found);
        check_protected(c, &base, s, &mut found);
        if c == Component::ApiServer {
            check_api_server_merge(&base, s, &mut found);
        }
        if let Some(pod) = effective.and_then(|e| e.pod(c)) {
            check_mounts(spec, c, &base, pod, version, &mut found);
        }
        // In the order of the entries, so each entry's problems read together.
        found.problems.sort_by_key(|p| entry_index(&p.field));
        for p in found.problems {
            r.push(p);
        }
    }
}

/// The `extraArgs` index a field names (`usize::MAX` for other fields).
fn entry_index(field: &str) -> usize {
    field
        .split_once(".extraArgs[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(i, _)| i.parse().ok())
        .unwrap_or(usize::MAX)
}

/// What to do instead of a removed or deprecated flag.
fn instead(flag: &FlagInfo) -> String {
    match (&flag.replacement, &flag.note) {
        (Some(rep), Some(note)) => format!("use --{rep} instead ({note})"),
        (Some(rep), None) => format!("use --{rep} instead"),
        (None, Some(note)) => format!("remove it; {note}"),
        (None, None) => "remove it".to_string(),
    }
}

fn check_entries(
    c: Component,
    base: &str,
    s: CommonSettings<'_>,
    version: &KubeVersion,
    r: &mut Report,
) {
    for (i, arg) in s.extra_args.iter().enumerate() {
        let Some(name) = flag_name(&arg.name) else {
            continue;
        };
        let field = format!("{base}.extraArgs[{i}]");
        let status = lookup(c, name, version);
        match &status {
            FlagStatus::Unknown {
                suggestion,
                elsewhere,
            } => {
                let fix = if let Some(other) = elsewhere.first() {
                    format!(
                        "--{name} is a {other} flag: move it to spec.{}.extraArgs",
                        other.spec_field()
                    )
                } else if let Some(s) = suggestion {
                    format!("did you mean --{s}?")
                } else {
                    format!(
                        "see `kubeplane flags {c} --version 1.{}` for the flags it accepts",
                        version.minor
                    )
                };
                r.push(
                    Problem::error(
                        format!("{field}.name"),
                        format!("{c} {version} has no flag --{name}; it would refuse to start"),
                    )
                    .value(&arg.name)
                    .fix(fix),
                );
                continue;
            }
            FlagStatus::Removed { flag, removed_in } => {
                r.push(
                    Problem::error(
                        format!("{field}.name"),
                        format!(
                            "--{name} was removed from {c} in Kubernetes {removed_in}; {c} {version} refuses to start with it"
                        ),
                    )
                    .value(&arg.name)
                    .fix(instead(flag)),
                );
                continue;
            }
            FlagStatus::NotYet { since, .. } => {
                r.push(
                    Problem::error(
                        format!("{field}.name"),
                        format!(
                            "--{name} is accepted by {c} from Kubernetes {since} on; {c} {version} refuses to start with it"
                        ),
                    )
                    .value(&arg.name)
                    .fix(format!(
                        "remove it, or set spec.kubernetesVersion to v{since}.0 or later"
                    )),
                );
                continue;
            }
            FlagStatus::Deprecated { flag, since } => {
                r.push(
                    Problem::warning(
                        format!("{field}.name"),
                        format!("--{name} is deprecated since Kubernetes {since}"),
                    )
                    .value(&arg.name)
                    .fix(instead(flag)),
                );
            }
            FlagStatus::Accepted { .. } => {}
        }
        let Some(flag) = status.flag() else { continue };
        if EXITING_FLAGS.contains(&name) {
            r.push(
                Problem::error(
                    format!("{field}.name"),
                    format!(
                        "--{name} makes {c} print its output and exit, so its static Pod would restart forever"
                    ),
                )
                .value(&arg.name)
                .fix("remove it; run the binary by hand to see that output"),
            );
            continue;
        }
        if let Err(e) = check_value(flag, &arg.value) {
            r.push(
                Problem::error(format!("{field}.value"), e.message)
                    .value(&arg.value)
                    .fix(e.fix),
            );
        } else if name == "secure-port" && arg.value.trim_start_matches(['+', '0']).is_empty() {
            r.push(
                Problem::error(
                    format!("{field}.value"),
                    format!(
                        "--secure-port=0 turns off {c}'s HTTPS serving; its probes and kubeplane's health checks need it"
                    ),
                )
                .value(&arg.value)
                .fix("give a port, or drop the entry to keep the default"),
            );
        }
    }
}

/// A flag that takes one value, given more than once: kubeplane writes every entry and the
/// component keeps only the last.
fn check_repeats(
    c: Component,
    base: &str,
    s: CommonSettings<'_>,
    version: &KubeVersion,
    r: &mut Report,
) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, arg) in s.extra_args.iter().enumerate() {
        let Some(name) = flag_name(&arg.name) else {
            continue;
        };
        if !seen.contains(&name) {
            seen.push(name);
            continue;
        }
        let status = lookup(c, name, version);
        let single = status
            .flag()
            .is_some_and(|f| !f.repeatable && merge_of(c, name) == Merge::Replace);
        if status.is_accepted() && single {
            let count = s
                .extra_args
                .iter()
                .filter(|a| flag_name(&a.name) == Some(name))
                .count();
            let last = s
                .extra_args
                .iter()
                .rfind(|a| flag_name(&a.name) == Some(name))
                .map(|a| a.value.as_str())
                .unwrap_or_default();
            r.push(
                Problem::error(
                    format!("{base}.extraArgs[{i}].name"),
                    format!(
                        "--{name} is given {count} times but takes one value; {c} would use only the last ({last:?})"
                    ),
                )
                .value(&arg.name)
                .fix("give it once"),
            );
        }
    }
}

fn check_protected(c: Component, base: &str, s: CommonSettings<'_>, r: &mut Report) {
    let allowed = |name: &str| s.allow_protected_overrides.iter().any(|a| a.0 == name);
    let mut reported: Vec<&str> = Vec::new();
    for (i, arg) in s.extra_args.iter().enumerate() {
        let Some(name) = flag_name(&arg.name) else {
            continue;
        };
        if is_protected(c, name) && !allowed(name) && !reported.contains(&name) {
            reported.push(name);
            r.push(
                Problem::error(
                    format!("{base}.extraArgs[{i}].name"),
                    format!(
                        "--{name} is protected: it points at the cluster's certificates, keys or token issuer, and a wrong value locks clients out or breaks every service-account token"
                    ),
                )
                .value(&arg.name)
                .fix(format!(
                    "to replace it on purpose, add {name:?} to {base}.allowProtectedOverrides"
                )),
            );
        }
    }
    for (i, name) in s.allow_protected_overrides.iter().enumerate() {
        let n = name.0.as_str();
        if n.is_empty() || n.starts_with('-') || is_protected(c, n) {
            continue;
        }
        r.push(
            Problem::warning(
                format!("{base}.allowProtectedOverrides[{i}]"),
                format!(
                    "--{n} is not a protected flag of {c}; extraArgs may set it without opt-in"
                ),
            )
            .value(n)
            .fix(format!(
                "remove it from allowProtectedOverrides (protected flags of {c}: {})",
                crate::flags::policy::protected(c).join(", ")
            )),
        );
    }
}

/// `authorization-mode` replaces the defaults (the order of authorizers matters), so a
/// replacement that drops `Node` or `RBAC` is worth a warning; the API server refuses some
/// combinations outright.
fn check_api_server_merge(base: &str, s: CommonSettings<'_>, r: &mut Report) {
    let entries = |flag: &'static str| {
        s.extra_args
            .iter()
            .enumerate()
            .filter(move |(_, a)| flag_name(&a.name) == Some(flag))
    };
    let items = |flag: &'static str| -> Vec<&str> {
        entries(flag)
            .flat_map(|(_, a)| split_list(&a.value))
            .collect()
    };

    if let Some((i, _)) = entries("authorization-mode").next() {
        let field = format!("{base}.extraArgs[{i}].value");
        if entries("authorization-config").next().is_some() {
            r.push(
                Problem::error(
                    field.clone(),
                    "kube-apiserver refuses --authorization-mode together with --authorization-config",
                )
                .fix("list the authorizers in the AuthorizationConfiguration file and drop the authorization-mode entry"),
            );
        } else {
            let modes = items("authorization-mode");
            let joined = modes.join(",");
            for (mode, why) in [
                (
                    "Node",
                    "kubelets lose the Node authorizer that lets each one read the Pods, Secrets and ConfigMaps of its own node",
                ),
                (
                    "RBAC",
                    "Roles and RoleBindings stop granting anything, including the ones the control plane itself relies on",
                ),
            ] {
                if !modes.contains(&mode) {
                    r.push(
                        Problem::warning(
                            field.clone(),
                            format!(
                                "--authorization-mode replaces kubeadm's Node,RBAC (it is not merged, because the order of authorizers matters) and this list has no {mode}: {why}"
                            ),
                        )
                        .value(&joined)
                        .fix(format!(
                            "include {mode}, for example Node,RBAC,{}",
                            modes
                                .iter()
                                .filter(|m| !["Node", "RBAC"].contains(m))
                                .copied()
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                        .trim_end_matches(',')
                        .to_string()),
                    );
                }
            }
        }
    }

    let enabled = items("enable-admission-plugins");
    for (i, arg) in entries("disable-admission-plugins") {
        for plugin in split_list(&arg.value) {
            if enabled.contains(&plugin) {
                r.push(
                    Problem::error(
                        format!("{base}.extraArgs[{i}].value"),
                        format!(
                            "admission plugin {plugin} is both enabled (enable-admission-plugins) and disabled here; kube-apiserver refuses to start"
                        ),
                    )
                    .value(&arg.value)
                    .fix(format!("keep {plugin} in only one of the two lists")),
                );
            }
        }
    }
}

/// Paths a flag's value names (absolute paths only: relative ones are type errors).
pub(crate) fn paths_of<'v>(flag: &FlagInfo, value: &'v str) -> Vec<&'v str> {
    let paths: Vec<&str> = match (flag.name.as_str(), flag.type_) {
        (_, FlagType::Path) => vec![value],
        ("service-account-key-file", _) => split_list(value).collect(),
        ("audit-log-path", _) if value != "-" => vec![value],
        ("tls-sni-cert-key", _) => value
            .split(':')
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .take(2)
            .collect(),
        _ => Vec::new(),
    };
    paths
        .into_iter()
        .filter(|p| super::spec::is_clean_abs_path(p))
        .collect()
}

/// Every path a component's effective flags name must lie inside one of its Pod's volumes:
/// a static Pod sees nothing of the host it does not mount.
fn check_mounts(
    spec: &ControlPlaneConfigSpec,
    c: Component,
    base: &str,
    pod: &EffectivePod,
    version: &KubeVersion,
    r: &mut Report,
) {
    let certs = spec
        .certificates_dir
        .clone()
        .unwrap_or_else(|| defaults::CERTIFICATES_DIR.to_string());
    let certs = certs.trim_end_matches('/');
    let mounts_certs = pod.mount_covering(&format!("{certs}/ca.crt")).is_some();
    let mut reported: Vec<(&str, &str)> = Vec::new();
    for (name, value) in &pod.flags {
        let Some(flag) = find(c, name) else { continue };
        if !flag.accepted_in(version.minor) || EXITING_FLAGS.contains(&name.as_str()) {
            continue;
        }
        for path in paths_of(flag, value) {
            if pod.mount_covering(path).is_some() || reported.contains(&(name.as_str(), path)) {
                continue;
            }
            reported.push((name, path));
            let field = arg_field(spec, c, name)
                .map(|f| format!("{f}.value"))
                .unwrap_or_else(|| base.to_string());
            let dir = parent(path);
            let read_only = !WRITTEN_FLAGS.contains(&name.as_str());
            let mut fix = format!(
                "add an entry to {base}.extraVolumes with hostPath and mountPath {dir} (readOnly: {read_only})"
            );
            if mounts_certs && read_only {
                fix.push_str(&format!(
                    ", or keep the file under certificatesDir ({certs}), which kubeplane mounts, or set spec.certificatesDir to the directory holding it"
                ));
            }
            r.push(
                Problem::error(
                    field,
                    format!(
                        "--{name} names {path}, which is in no volume of the {c} Pod, so the container cannot see it"
                    ),
                )
                .value(value.as_str())
                .fix(fix),
            );
        }
    }
}

fn parent(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}
