//! `kubeplane import --systemd-unit FILE …`: reads the units, their drop-ins and their
//! environment files around the pure [`crate::adopt::hardway`], prints the config on stdout
//! and the report (every flag, every mount, every finding) on stderr.
//!
//! Exit codes: `0` the config runs the units' components with their flags (minus the dropped
//! ones) and is valid; `1` the config was printed, but a finding is an error (a wrong value to
//! fix) or the config does not validate; `2` nothing could be imported.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::adopt::{ImportArgs, hostname};
use super::{CliError, print_report};
use crate::adopt::hardway::{
    Fate, HardWayImport, HardWayInput, import_units as import, unit_component,
};
use crate::adopt::unit::{EnvFiles, Unit, parse_unit};
use crate::api::Component;
use crate::render;

/// Reads a text file; `None` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            CliError::Refused(format!(
                "{}: not UTF-8 text, which systemd refuses too",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CliError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// A unit with its drop-ins: `FILE.d/*.conf` beside it, sorted by name.
fn read_unit(path: &Path) -> Result<Unit, CliError> {
    let text = read_text(path)?.ok_or_else(|| {
        CliError::Refused(format!(
            "{}: no such file (pass the unit file: systemctl cat UNIT names it)",
            path.display()
        ))
    })?;
    let mut drop_in_dir = path.as_os_str().to_owned();
    drop_in_dir.push(".d");
    let drop_in_dir = PathBuf::from(drop_in_dir);
    let mut drop_ins = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&drop_in_dir) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        paths.sort();
        for p in paths {
            if let Some(t) = read_text(&p)? {
                drop_ins.push((p.display().to_string(), t));
            }
        }
    }
    Ok(parse_unit(&path.display().to_string(), &text, &drop_ins))
}

fn io(source: std::io::Error) -> CliError {
    CliError::Io {
        path: "stdout".into(),
        source,
    }
}

/// The verb of a flag line of the report.
fn verb(f: &Fate) -> &'static str {
    match f {
        Fate::Default { .. } => "default",
        Fate::Field { .. } => "field",
        Fate::PerNode { .. } => "node",
        Fate::ExtraArg { .. } => "kept",
        Fate::Replaced { .. } => "carried",
        Fate::Dropped { .. } => "dropped",
        Fate::Overridden => "overridden",
        Fate::Refused => "refused",
    }
}

/// The report on stderr.
fn print(imported: &HardWayImport, err: &mut dyn Write) {
    for s in &imported.sources {
        let c = s.component;
        let flags: Vec<_> = imported.flags.iter().filter(|f| f.component == c).collect();
        let _ = writeln!(
            err,
            "imported {c} from {} (ExecStart: {}, {} flag(s)):",
            s.unit,
            s.executable,
            flags.len()
        );
        for f in flags {
            let value = f
                .value
                .as_deref()
                .map(|v| format!("={v}"))
                .unwrap_or_default();
            let _ = writeln!(
                err,
                "  {:<10} --{}{value} ({}): {}",
                verb(&f.fate),
                f.name,
                f.origin,
                f.fate
            );
        }
        for a in imported.added.iter().filter(|a| a.component == c) {
            let _ = writeln!(
                err,
                "  {:<10} --{}={}: {}",
                "added", a.name, a.value, a.reason
            );
        }
        for m in imported.mounts.iter().filter(|m| m.component == c) {
            let how = if m.read_only {
                "read-only"
            } else {
                "read-write"
            };
            let source = if m.default {
                format!("volume {}, rendered by kubeplane", m.volume)
            } else {
                format!("{}.extraVolumes {}", field(c), m.volume)
            };
            let flags: Vec<String> = m.flags.iter().map(|f| format!("--{f}")).collect();
            let _ = writeln!(
                err,
                "  {:<10} {} {how} ({source}): {}",
                "mount",
                m.path,
                flags.join(", ")
            );
        }
    }
    for f in &imported.findings {
        let _ = writeln!(err, "{f}");
    }
    print_report(&imported.report, err);
}

fn field(c: Component) -> &'static str {
    match c {
        Component::ApiServer => "spec.apiServer",
        Component::ControllerManager => "spec.controllerManager",
        Component::Scheduler => "spec.scheduler",
    }
}

/// The comment block at the head of the printed config: where it came from and what it left
/// out, so the file keeps the record.
fn header(imported: &HardWayImport) -> String {
    let mut h = String::from("# Imported by `kubeplane import` from systemd units");
    h.push_str(&format!(" on node {}:\n", imported.node.node_name));
    for s in &imported.sources {
        h.push_str(&format!("#   {}: {}\n", s.component, s.unit));
    }
    for s in &imported.sources {
        let c = s.component;
        let dropped: Vec<String> = imported
            .flags
            .iter()
            .filter(|f| f.component == c)
            .filter_map(|f| match &f.fate {
                Fate::Dropped { removed_in, .. } => {
                    Some(format!("--{} (removed in {removed_in})", f.name))
                }
                Fate::Refused => Some(format!("--{} (wrong, see the import's errors)", f.name)),
                _ => None,
            })
            .collect();
        if !dropped.is_empty() {
            h.push_str(&format!("# {c}: left out {}\n", dropped.join(", ")));
        }
        let added: Vec<String> = imported
            .added
            .iter()
            .filter(|a| a.component == c)
            .map(|a| format!("--{}={}", a.name, a.value))
            .collect();
        if !added.is_empty() {
            h.push_str(&format!("# {c}: added {}\n", added.join(", ")));
        }
    }
    h.push_str(&format!(
        "# Check it: kubeplane validate -f FILE; kubeplane render -f FILE --node {}\n",
        imported.node.node_name
    ));
    h
}

/// Reads units (with drop-ins) and every environment file they name; `mappings` are
/// `NODE_PATH=LOCAL_FILE` overrides. Each unit comes with its text.
pub(super) fn load_units(
    paths: &[PathBuf],
    mappings: &[String],
) -> Result<(Vec<(Unit, String)>, EnvFiles), CliError> {
    let mut units = Vec::new();
    for p in paths {
        let unit = read_unit(p)?;
        let text = read_text(p)?.unwrap_or_default();
        units.push((unit, text));
    }
    let mut env_files = EnvFiles::new();
    for mapping in mappings {
        let Some((node_path, local)) = mapping.split_once('=') else {
            return Err(CliError::Refused(format!(
                "--environment-file {mapping:?}: write NODE_PATH=LOCAL_FILE, like /etc/kubernetes/config/kube-controller-manager.conf=./kube-controller-manager.conf"
            )));
        };
        let content = read_text(Path::new(local))?.ok_or_else(|| {
            CliError::Refused(format!(
                "--environment-file {mapping}: {local}: no such file"
            ))
        })?;
        env_files.insert(node_path.to_string(), Some(content));
    }
    for (u, _) in &units {
        let refs = u
            .environment_files()
            .map_err(|e| CliError::Refused(e.to_string()))?;
        for r in refs {
            if !env_files.contains_key(&r.path) {
                let content = read_text(Path::new(&r.path))?;
                env_files.insert(r.path.clone(), content);
            }
        }
    }
    Ok((units, env_files))
}

/// `kubeplane import --systemd-unit …`.
pub(super) fn import_units(
    args: &ImportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let (units, env_files) = load_units(&args.systemd_units, &args.environment_files)?;
    let units: Vec<Unit> = units.into_iter().map(|(u, _)| u).collect();
    let node = args.node.clone().or_else(hostname);
    // Kubeconfigs the flags name, where readable: the files they name are mounted too.
    let mut kubeconfigs = BTreeMap::new();
    for u in &units {
        let Ok((_, cmd, _)) = unit_component(u, &env_files) else {
            continue;
        };
        let words: Vec<&str> = cmd.args.iter().map(|w| w.text.as_str()).collect();
        for (i, w) in words.iter().enumerate() {
            let Some(body) = w.strip_prefix("--") else {
                continue;
            };
            let path = match body.split_once('=') {
                Some((n, v)) if n.ends_with("kubeconfig") => v,
                None if body.ends_with("kubeconfig") => words.get(i + 1).copied().unwrap_or(""),
                _ => continue,
            };
            if path.starts_with('/')
                && let Ok(Some(text)) = read_text(Path::new(path))
            {
                kubeconfigs.insert(path.to_string(), text);
            }
        }
    }
    // Service-account verification keys, where readable: a CA certificate is an error.
    let mut key_files = BTreeMap::new();
    for u in &units {
        let Ok((_, cmd, _)) = unit_component(u, &env_files) else {
            continue;
        };
        for w in &cmd.args {
            if let Some(v) = w.text.strip_prefix("--service-account-key-file=") {
                for p in v.split(',').map(str::trim).filter(|p| p.starts_with('/')) {
                    if let Ok(bytes) = std::fs::read(p) {
                        key_files.insert(p.to_string(), bytes);
                    }
                }
            }
        }
    }
    let imported = import(&HardWayInput {
        units: &units,
        env_files: &env_files,
        kubeconfigs: &kubeconfigs,
        key_files: &key_files,
        node_name: node.as_deref(),
        advertise_address: args.address.as_deref(),
        kubernetes_version: args
            .kubernetes_version
            .as_deref()
            .unwrap_or(crate::adopt::hardway::DEFAULT_TARGET_VERSION),
        config_name: args.name.as_deref(),
    })
    .map_err(|e| CliError::Refused(e.to_string()))?;
    print(&imported, err);
    let yaml = render::to_yaml(&imported.config).map_err(CliError::Refused)?;
    out.write_all(header(&imported).as_bytes())
        .and_then(|()| out.write_all(yaml.as_bytes()))
        .map_err(io)?;
    let mut failed = false;
    let errors = imported.findings.iter().filter(|f| f.is_error()).count();
    if errors > 0 {
        let _ = writeln!(
            err,
            "error: {errors} value(s) in the unit(s) are wrong (see above); the config keeps the unit's behaviour where it can, but fix them before or after adopting"
        );
        failed = true;
    }
    if !imported.report.is_ok() {
        let _ = writeln!(
            err,
            "error: the imported config does not validate (see above); edit it before applying it"
        );
        failed = true;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
