//! What writing a rendered file would change on disk: a semantic summary of two Pods
//! (flags, volumes, image, every other field) and a small unified line diff. Pure.

mod lines;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::manifest::{Parsed, VolumeUse, component_of, container, parse_pod, volume_uses};
use crate::api::{FileSource, RenderedFile};
use crate::render::equivalence::{CommandFlag, parse_command};
use crate::render::{RenderedPod, equivalent, normalize, pod_to_yaml, sha256_hex};

pub use self::lines::unified_diff;

/// One difference between the Pod on disk (`from`) and the one kubeplane would write (`to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A flag the new Pod has and the current one lacks (every occurrence, as written).
    FlagAdded {
        /// Flag name.
        name: String,
        /// The new occurrences, like `--v=2`.
        to: Vec<String>,
    },
    /// A flag the current Pod has and the new one lacks.
    FlagRemoved {
        /// Flag name.
        name: String,
        /// The current occurrences.
        from: Vec<String>,
    },
    /// A flag with other values (or another number or order of repeats).
    FlagChanged {
        /// Flag name.
        name: String,
        /// The current occurrences.
        from: Vec<String>,
        /// The new occurrences.
        to: Vec<String>,
    },
    /// A volume (with its mounts) only the new Pod has.
    VolumeAdded {
        /// Volume name.
        name: String,
        /// What it mounts, in words.
        to: String,
    },
    /// A volume only the current Pod has.
    VolumeRemoved {
        /// Volume name.
        name: String,
        /// What it mounts, in words.
        from: String,
    },
    /// A volume or its mounts differ.
    VolumeChanged {
        /// Volume name.
        name: String,
        /// Current, in words.
        from: String,
        /// New, in words.
        to: String,
    },
    /// The container image differs.
    ImageChanged {
        /// Current image.
        from: Option<String>,
        /// New image.
        to: Option<String>,
    },
    /// Any other field, by path (`spec.containers[0].livenessProbe.periodSeconds`).
    Field {
        /// Field path.
        path: String,
        /// Current value (compact JSON for non-strings); `None` when absent.
        from: Option<String>,
        /// New value; `None` when absent.
        to: Option<String>,
    },
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(none)")
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::FlagAdded { to, .. } => write!(f, "flag added: {}", to.join(" ")),
            Change::FlagRemoved { from, .. } => write!(f, "flag removed: {}", from.join(" ")),
            Change::FlagChanged { from, to, .. } => {
                write!(f, "flag changed: {} -> {}", from.join(" "), to.join(" "))
            }
            Change::VolumeAdded { name, to } => write!(f, "volume added: {name}: {to}"),
            Change::VolumeRemoved { name, from } => write!(f, "volume removed: {name}: {from}"),
            Change::VolumeChanged { name, from, to } => {
                write!(f, "volume changed: {name}: {from} -> {to}")
            }
            Change::ImageChanged { from, to } => {
                write!(f, "image changed: {} -> {}", opt(from), opt(to))
            }
            Change::Field { path, from, to } => {
                write!(f, "{path}: {} -> {}", opt(from), opt(to))
            }
        }
    }
}

/// A flag occurrence as written on the command line.
fn flag_text(f: &CommandFlag) -> String {
    match (&f.value, f.separate) {
        (Some(v), true) => format!("--{} {v}", f.name),
        (Some(v), false) => format!("--{}={v}", f.name),
        (None, _) => format!("--{}", f.name),
    }
}

/// The flags of a container's `command` (after the binary) and `args`, by name, each with
/// its occurrences in order.
fn flag_map(words: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in parse_command(words).flags {
        map.entry(f.name.clone()).or_default().push(flag_text(&f));
    }
    map
}

fn command_words(pod: &Pod, index: usize) -> (Vec<String>, Vec<String>) {
    let c = container(pod, index);
    (
        c.and_then(|c| c.command.clone()).unwrap_or_default(),
        c.and_then(|c| c.args.clone()).unwrap_or_default(),
    )
}

/// A volume and its mounts in words: `hostPath /etc/ssl/certs (DirectoryOrCreate) at
/// /etc/ssl/certs read-only`.
fn describe(u: &VolumeUse) -> String {
    let source = match &u.volume {
        None => "(no such volume in the Pod)".to_string(),
        Some(v) => match &v.host_path {
            Some(h) => format!(
                "hostPath {} ({})",
                h.path,
                h.type_
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .unwrap_or("no type")
            ),
            None => {
                let mut json = serde_json::to_value(v).unwrap_or_default();
                if let Some(o) = json.as_object_mut() {
                    o.remove("name");
                }
                json.to_string()
            }
        },
    };
    if u.mounts.is_empty() {
        return format!("{source}, not mounted");
    }
    let mounts: Vec<String> = u
        .mounts
        .iter()
        .map(|m| {
            let mut s = format!("at {}", m.mount_path);
            match m.read_only {
                Some(true) => s.push_str(" read-only"),
                Some(false) => s.push_str(" readOnly: false"),
                None => {}
            }
            let mut rest = serde_json::to_value(m).unwrap_or_default();
            if let Some(o) = rest.as_object_mut() {
                for k in ["name", "mountPath", "readOnly"] {
                    o.remove(k);
                }
                if !o.is_empty() {
                    s.push(' ');
                    s.push_str(&rest.to_string());
                }
            }
            s
        })
        .collect();
    format!("{source} {}", mounts.join(", "))
}

/// Every difference between the Pod on disk and the one kubeplane would write, ignoring
/// what [`equivalent`] ignores (uid, flag order, status). Flags, image and volumes of the
/// component's container are summarized by name; every other field is listed by path.
/// Empty exactly when the two are equivalent.
pub fn changes(current: &Pod, desired: &Pod) -> Vec<Change> {
    let (a, b) = (normalize(current), normalize(desired));
    let ia = component_of(&a).map_or(0, |(_, i)| i);
    let ib = component_of(&b).map_or(0, |(_, i)| i);
    let mut out = Vec::new();

    let ((cmd_a, args_a), (cmd_b, args_b)) = (command_words(&a, ia), command_words(&b, ib));
    let mut words_a = cmd_a.clone();
    words_a.extend(args_a.iter().cloned());
    let mut words_b = cmd_b.clone();
    words_b.extend(args_b.iter().cloned());
    let (fa, fb) = (flag_map(&words_a), flag_map(&words_b));
    for (name, from) in &fa {
        match fb.get(name) {
            None => out.push(Change::FlagRemoved {
                name: name.clone(),
                from: from.clone(),
            }),
            Some(to) if to != from => out.push(Change::FlagChanged {
                name: name.clone(),
                from: from.clone(),
                to: to.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, to) in &fb {
        if !fa.contains_key(name) {
            out.push(Change::FlagAdded {
                name: name.clone(),
                to: to.clone(),
            });
        }
    }
    // What flags do not cover: the binary, positional words, and how words split between
    // command and args.
    let (pa, pb) = (parse_command(&words_a), parse_command(&words_b));
    let path = format!("spec.containers[{ib}]");
    if pa.leading != pb.leading || pa.trailing != pb.trailing {
        out.push(Change::Field {
            path: format!("{path}.command (words that are not flags)"),
            from: Some(format!("{:?}", [pa.leading, pa.trailing].concat())),
            to: Some(format!("{:?}", [pb.leading, pb.trailing].concat())),
        });
    }
    if fa == fb && (flag_map(&cmd_a) != flag_map(&cmd_b) || flag_map(&args_a) != flag_map(&args_b))
    {
        out.push(Change::Field {
            path: format!("{path}.args (flags moved between command and args)"),
            from: Some(format!("{args_a:?}")),
            to: Some(format!("{args_b:?}")),
        });
    }

    let image = |p: &Pod, i| container(p, i).and_then(|c| c.image.clone());
    if image(&a, ia) != image(&b, ib) {
        out.push(Change::ImageChanged {
            from: image(&a, ia),
            to: image(&b, ib),
        });
    }

    let va: BTreeMap<String, String> = volume_uses(&a, ia)
        .iter()
        .map(|u| (u.name.clone(), describe(u)))
        .collect();
    let vb: BTreeMap<String, String> = volume_uses(&b, ib)
        .iter()
        .map(|u| (u.name.clone(), describe(u)))
        .collect();
    for (name, from) in &va {
        match vb.get(name) {
            None => out.push(Change::VolumeRemoved {
                name: name.clone(),
                from: from.clone(),
            }),
            Some(to) if to != from => out.push(Change::VolumeChanged {
                name: name.clone(),
                from: from.clone(),
                to: to.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, to) in &vb {
        if !va.contains_key(name) {
            out.push(Change::VolumeAdded {
                name: name.clone(),
                to: to.clone(),
            });
        }
    }
    // The order of volumes and mounts is a change too (the Pod differs), though rarely one
    // that matters.
    if out.iter().all(|c| {
        !matches!(
            c,
            Change::VolumeAdded { .. }
                | Change::VolumeRemoved { .. }
                | Change::VolumeChanged { .. }
        )
    }) && volume_uses(&a, ia) != volume_uses(&b, ib)
    {
        out.push(Change::Field {
            path: "spec.volumes / volumeMounts (order)".into(),
            from: Some(va.keys().cloned().collect::<Vec<_>>().join(",")),
            to: Some(vb.keys().cloned().collect::<Vec<_>>().join(",")),
        });
    }

    let rest = |p: &Pod, i: usize| -> Value {
        let mut p = p.clone();
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = None;
            if let Some(c) = spec.containers.get_mut(i) {
                c.command = None;
                c.args = None;
                c.image = None;
                c.volume_mounts = None;
            }
            // Compare the component's container at the same position on both sides.
            if i < spec.containers.len() {
                let c = spec.containers.remove(i);
                spec.containers.insert(0, c);
            }
        }
        serde_json::to_value(&p).unwrap_or_default()
    };
    json_diff("", &rest(&a, ia), &rest(&b, ib), &mut out);
    if out.is_empty() && a != b {
        // Not equivalent, yet nothing above differs: the containers' order or how a flag's
        // value is split into words. Say so rather than claim there is no change.
        out.push(Change::Field {
            path: "spec.containers (order of containers or of command words)".into(),
            from: Some(format!("{words_a:?}")),
            to: Some(format!("{words_b:?}")),
        });
    }
    out
}

fn show(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_diff(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (ea, eb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), ea, eb, out);
            }
        }
        _ if a == b => {}
        _ => out.push(Change::Field {
            path: path.to_string(),
            from: show(a),
            to: show(b),
        }),
    }
}

/// What writing one file would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// The file holds exactly these bytes already.
    Unchanged,
    /// The file means the same Pod ([`equivalent`]): the agent adopts it without rewriting it,
    /// so the component is not restarted.
    Equivalent,
    /// The file does not exist; it would be created.
    New,
    /// The file would be rewritten.
    Changed {
        /// The differences in words.
        changes: Vec<Change>,
        /// A unified line diff (empty when the content must not be shown).
        diff: String,
    },
    /// What the file would hold is not known here.
    Unknown {
        /// Why, and how to find out.
        reason: String,
    },
}

impl FileStatus {
    /// Whether the file would be written (anything but unchanged or equivalent).
    pub fn would_change(&self) -> bool {
        !matches!(self, FileStatus::Unchanged | FileStatus::Equivalent)
    }
}

/// Compares a manifest on disk (`None`: no such file) with the rendered one. The line diff
/// is between normalized YAML (sorted keys, flags sorted by name, no `metadata.uid`), so it
/// shows what changes, not how the file was formatted.
pub fn compare_manifest(path: &str, current: Option<&[u8]>, desired: &RenderedPod) -> FileStatus {
    let (on_disk, rendered) = labels(path);
    let Some(bytes) = current else {
        return FileStatus::New;
    };
    if bytes == desired.yaml.as_bytes() {
        return FileStatus::Unchanged;
    }
    let desired_yaml = pod_to_yaml(&normalize(&desired.pod)).unwrap_or_default();
    let text = String::from_utf8_lossy(bytes);
    let parsed = std::str::from_utf8(bytes)
        .map_err(|_| "not UTF-8 text".to_string())
        .and_then(parse_pod);
    match parsed {
        Ok(Parsed::Pod(pod)) => {
            if equivalent(&pod, &desired.pod) {
                return FileStatus::Equivalent;
            }
            let current_yaml = pod_to_yaml(&normalize(&pod)).unwrap_or_default();
            FileStatus::Changed {
                changes: changes(&pod, &desired.pod),
                diff: unified_diff(
                    &current_yaml,
                    &desired_yaml,
                    &format!("{on_disk}, normalized: sorted keys and flags, no uid"),
                    &rendered,
                ),
            }
        }
        Ok(Parsed::NotAPod(why)) => FileStatus::Changed {
            changes: vec![Change::Field {
                path: "file".into(),
                from: Some(format!("not a Pod ({why})")),
                to: Some(format!("the {} Pod", desired.component)),
            }],
            diff: unified_diff(&text, &desired.yaml, &on_disk, &rendered),
        },
        Err(why) => FileStatus::Changed {
            changes: vec![Change::Field {
                path: "file".into(),
                from: Some(format!("does not parse ({why})")),
                to: Some(format!("the {} Pod", desired.component)),
            }],
            diff: unified_diff(&text, &desired.yaml, &on_disk, &rendered),
        },
    }
}

/// Compares a side file on disk with the rendered one. `secret_content` is the content of a
/// Secret-sourced file when known (the encryption configuration); such content is compared
/// by digest and never shown.
pub fn compare_side_file(
    path: &str,
    current: Option<&[u8]>,
    desired: &RenderedFile,
    secret_content: Option<&[u8]>,
) -> FileStatus {
    let (content, secret): (Option<&[u8]>, bool) = match &desired.source {
        FileSource::Inline(c) => (Some(c.as_bytes()), false),
        FileSource::Secret(_) => (secret_content, true),
    };
    let Some(content) = content else {
        let FileSource::Secret(s) = &desired.source else {
            return FileStatus::Unknown {
                reason: "content unknown".into(),
            };
        };
        return FileStatus::Unknown {
            reason: format!(
                "content comes from Secret {}/{} key {}; pass --encryption-config FILE to compare",
                s.namespace.as_deref().unwrap_or_default(),
                s.name,
                s.key.as_deref().unwrap_or_default()
            ),
        };
    };
    match current {
        None => FileStatus::New,
        Some(c) if c == content => FileStatus::Unchanged,
        Some(c) if secret => FileStatus::Changed {
            changes: vec![Change::Field {
                path: "content (sha256)".into(),
                from: Some(sha256_hex(c)),
                to: Some(sha256_hex(content)),
            }],
            diff: String::new(),
        },
        Some(c) => FileStatus::Changed {
            changes: Vec::new(),
            diff: {
                let (on_disk, rendered) = labels(path);
                unified_diff(
                    &String::from_utf8_lossy(c),
                    &String::from_utf8_lossy(content),
                    &on_disk,
                    &rendered,
                )
            },
        },
    }
}

fn labels(path: &str) -> (String, String) {
    (format!("{path} (on disk)"), format!("{path} (rendered)"))
}

#[cfg(test)]
mod tests;
