//! Reading one unit: its component, its flags and their fates, and notes about the unit's
//! other settings.

use super::*;

/// Reads one unit: its component, notes about its settings, and the fate of every flag
/// (kept flags in `kept`, each with the index of its report).
pub(super) fn read_unit(
    unit: &Unit,
    env_files: &EnvFiles,
    version: &KubeVersion,
    parsed: &[Parsed],
    findings: &mut Vec<Finding>,
    reports: &mut Vec<FlagReport>,
) -> Result<Parsed, HardWayError> {
    let cmd = command(unit, env_files)?;
    let Some((component, skip)) = component_of(&cmd) else {
        return Err(HardWayError::NotAComponent {
            origin: cmd.path.origin.clone(),
            executable: cmd.path.text.clone(),
        });
    };
    if let Some(other) = parsed.iter().find(|p| p.component == component) {
        return Err(HardWayError::Duplicate {
            component,
            files: vec![other.unit.clone(), unit.path.clone()],
        });
    }
    unit_notes(unit, &cmd, component, findings);
    let raw = parse_flags(component, &cmd.args[skip..], findings);
    let working_dir = unit
        .service_value("WorkingDirectory")
        .map(|d| d.value.trim_start_matches('-').to_string())
        .filter(|d| d.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let mut kept: Vec<(String, String, usize)> = Vec::new();
    for f in &raw {
        let idx = reports.len();
        let mut report = FlagReport {
            component,
            name: f.name.clone(),
            value: f.value.clone(),
            origin: f.origin.clone(),
            fate: Fate::Refused,
        };
        let status = lookup(component, &f.name, version);
        match status {
            FlagStatus::Unknown {
                suggestion,
                elsewhere,
            } => {
                let mut fix = match suggestion {
                    Some(s) => format!("did you mean --{s}?"),
                    None => "remove it".to_string(),
                };
                if !elsewhere.is_empty() {
                    let names: Vec<&str> = elsewhere.iter().map(|c| c.name()).collect();
                    fix.push_str(&format!(" (it is a flag of {})", names.join(", ")));
                }
                findings.push(
                    Finding::error(format!(
                        "not a flag of {component} {version}, which refuses to start with it (\"unknown flag\"); the import leaves it out"
                    ))
                    .at(&f.origin)
                    .flag(component, &f.name, f.value.as_deref())
                    .fix(fix),
                );
            }
            FlagStatus::NotYet { since, .. } => {
                findings.push(
                    Finding::error(format!(
                        "{component} accepts this flag from {since} on, not in {version}; the import leaves it out"
                    ))
                    .at(&f.origin)
                    .flag(component, &f.name, f.value.as_deref())
                    .fix(format!("import for {since} or later (--kubernetes-version), or remove it")),
                );
            }
            FlagStatus::Removed { flag, removed_in } => {
                let carried = CARRIED
                    .iter()
                    .find(|(c, old, _)| *c == component && *old == f.name)
                    .map(|(_, _, new)| *new)
                    .filter(|new| !raw.iter().any(|r| r.name == *new));
                match (carried, &f.value) {
                    (Some(new), Some(v)) => {
                        report.fate = Fate::Replaced {
                            by: new.to_string(),
                            removed_in,
                        };
                        kept.push((new.to_string(), v.clone(), idx));
                    }
                    _ => {
                        report.fate = Fate::Dropped {
                            removed_in,
                            replacement: flag.replacement.clone(),
                            impact: impact(component, &f.name, f.value.as_deref(), &raw),
                        };
                    }
                }
            }
            FlagStatus::Accepted { flag } | FlagStatus::Deprecated { flag, .. } => {
                let mut value = match &f.value {
                    Some(v) => v.clone(),
                    None => bare_value(component, &f.name),
                };
                if flag.type_ == FlagType::Path && !value.is_empty() && !value.starts_with('/') {
                    let abs = format!("{}/{}", working_dir.trim_end_matches('/'), value);
                    findings.push(
                        Finding::note(format!(
                            "a relative path, which the unit resolves in its working directory {working_dir}; the static Pod gets the absolute path {abs}"
                        ))
                        .at(&f.origin)
                        .flag(component, &f.name, Some(&value)),
                    );
                    value = abs;
                }
                if let Err(e) = check_value(flag, &value) {
                    findings.push(
                        Finding::error(format!(
                            "{}; {component} refuses to start with it; the import leaves it out",
                            e.message
                        ))
                        .at(&f.origin)
                        .flag(component, &f.name, Some(&value))
                        .fix(e.fix),
                    );
                } else if let Some(v) = check_wrong(component, &f.name, &value, &f.origin, findings)
                {
                    if let FlagStatus::Deprecated { since, .. } = status {
                        let instead = flag
                            .replacement
                            .as_ref()
                            .map(|r| format!("use --{r}"))
                            .or_else(|| flag.note.clone())
                            .unwrap_or_else(|| "plan to remove it".into());
                        findings.push(
                            Finding::warning(format!(
                                "deprecated since {since}; kept (it still works in {version})"
                            ))
                            .at(&f.origin)
                            .flag(component, &f.name, Some(&v))
                            .fix(instead),
                        );
                    }
                    kept.push((f.name.clone(), v, idx));
                }
            }
        }
        reports.push(report);
    }
    // A flag given twice that does not accumulate: the component uses the last value.
    let mut seen: Vec<String> = Vec::new();
    for i in (0..kept.len()).rev() {
        let name = kept[i].0.clone();
        let repeatable = find(component, &name).is_some_and(|f| f.repeatable);
        if !repeatable && seen.contains(&name) {
            reports[kept[i].2].fate = Fate::Overridden;
            kept.remove(i);
        } else {
            seen.push(name);
        }
    }
    Ok(Parsed {
        component,
        unit: unit.path.clone(),
        command: cmd,
        kept,
    })
}

/// Notes about the unit's other settings: what a static Pod does differently.
pub(super) fn unit_notes(unit: &Unit, cmd: &Command, c: Component, findings: &mut Vec<Finding>) {
    for (origin, w) in &cmd.warnings {
        findings.push(
            Finding::warning(format!("{w} (as systemd does)"))
                .at(origin)
                .of(c),
        );
    }
    for f in &cmd.missing_optional {
        findings.push(
            Finding::note(format!(
                "EnvironmentFile=-{} does not exist; the '-' makes systemd skip it, and so does the import",
                f.path
            ))
            .at(&f.origin)
            .of(c),
        );
    }
    let mut undefined: Vec<&str> = Vec::new();
    for (name, defined, origin) in &cmd.references {
        if !defined && !undefined.contains(&name.as_str()) {
            undefined.push(name);
            findings.push(
                Finding::note(format!("${name} is not defined by the unit or its environment files, so systemd expands it to nothing"))
                    .at(origin)
                    .of(c),
            );
        }
    }
    if cmd.prefixes.ignore_failure {
        findings.push(Finding::note("the '-' prefix of ExecStart (ignore a failing exit) has no meaning for a static Pod: kubelet restarts the container whenever it exits").at(&cmd.path.origin).of(c));
    }
    if let Some(p) = &cmd.prefixes.privileged {
        findings.push(Finding::note(format!("the '{p}' prefix ran the command with full privileges; a kubeplane static Pod runs as root with the runtime's default capabilities")).at(&cmd.path.origin).of(c));
    }
    type Note = fn(&str) -> String;
    let notes: [(&str, Note); 5] = [
        ("User", |v| {
            format!(
                "the unit runs as user {v}; the static Pod runs as root, as kubeadm's do, so files it writes become root's and it can read files only root can"
            )
        }),
        ("LimitNOFILE", |v| {
            format!(
                "LimitNOFILE={v} does not carry over: the container gets the container runtime's open-files limit"
            )
        }),
        ("WorkingDirectory", |v| {
            format!(
                "WorkingDirectory={v} does not carry over; relative paths in flags are made absolute against it"
            )
        }),
        ("Restart", |v| {
            format!(
                "Restart={v} does not carry over: kubelet restarts a static Pod's container whenever it exits, with back-off"
            )
        }),
        ("Type", |v| {
            format!("Type={v} does not carry over: kubelet judges the Pod by its probes")
        }),
    ];
    for (key, text) in notes {
        if let Some(d) = unit.service_value(key) {
            findings.push(Finding::note(text(&d.value)).at(&d.origin).of(c));
        }
    }
}
