//! `ExecStart=`: the command a unit runs, with its environment expanded.

use super::*;

/// `ExecStart=` prefixes (systemd.service(5), table "Special executable prefixes").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// `-`: a failure exit code is ignored.
    pub ignore_failure: bool,
    /// `@`: the second word is `argv[0]`.
    pub argv0: bool,
    /// `:`: no environment variable substitution.
    pub no_substitution: bool,
    /// `+`, `!` or `!!`: run with full or elevated privileges, not as `User=`.
    pub privileged: Option<String>,
}

/// The command a unit runs, after substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The executable, as written.
    pub path: Word,
    /// Arguments after the executable (and after `argv[0]` with the `@` prefix).
    pub args: Vec<Word>,
    /// The prefixes of the first word.
    pub prefixes: Prefixes,
    /// Variables referenced by `$NAME` or `${NAME}`, with whether each was defined.
    pub references: Vec<(String, bool, Origin)>,
    /// The environment the process gets from the unit (after `EnvironmentFile=` overrides).
    pub environment: Vec<(String, Variable)>,
    /// Environment files named with `-` that do not exist.
    pub missing_optional: Vec<EnvFileRef>,
    /// Warnings systemd would log (ignored lines, invalid names, unclosed quotes).
    pub warnings: Vec<(Origin, String)>,
}

/// Every environment file a unit names, with its content: `None` when the file does not
/// exist.
pub type EnvFiles = BTreeMap<String, Option<String>>;

/// The environment of the unit (systemd.exec(5): `Environment=`, then `EnvironmentFile=`
/// overriding it), as an ordered list of unique names.
pub(super) fn environment(
    unit: &Unit,
    env_files: &EnvFiles,
    warnings: &mut Vec<(Origin, String)>,
    missing_optional: &mut Vec<EnvFileRef>,
) -> Result<Vec<(String, Variable)>, UnitError> {
    let mut env: Vec<(String, Variable)> = Vec::new();
    let set = |env: &mut Vec<(String, Variable)>, name: String, v: Variable| {
        env.retain(|(n, _)| *n != name);
        env.push((name, v));
    };
    for d in unit.service("Environment") {
        if d.value.is_empty() {
            env.clear();
            continue;
        }
        for (word, _) in split_words(
            &d.value_located,
            &d.origin.file,
            d.origin.line,
            Escapes::C,
            false,
        )? {
            let text = resolve_specifiers(&word.text(), &unit.path, &d.origin)?;
            match text.split_once('=') {
                Some((name, value)) if is_env_name(name) => {
                    // Keep the line of each character of the value.
                    let skip = word.chars.len().saturating_sub(value.chars().count());
                    let located = Located {
                        chars: if text == word.text() {
                            word.chars[skip..].to_vec()
                        } else {
                            value
                                .chars()
                                .map(|c| (c, word.first_line(d.origin.line)))
                                .collect()
                        },
                    };
                    set(
                        &mut env,
                        name.to_string(),
                        Variable {
                            value: value.to_string(),
                            origin: d.origin.clone(),
                            located,
                        },
                    );
                }
                _ => warnings.push((
                    d.origin.clone(),
                    format!("Environment= item {text:?} is not NAME=VALUE with a valid name; systemd ignores it"),
                )),
            }
        }
    }
    for f in unit.environment_files()? {
        match env_files.get(&f.path) {
            Some(Some(text)) => {
                let (vars, w) = parse_env_file(&f.path, text);
                warnings.extend(w);
                for (name, v) in vars {
                    set(&mut env, name, v);
                }
            }
            Some(None) if f.optional => missing_optional.push(f),
            Some(None) => {
                return Err(UnitError::new(
                    f.origin.clone(),
                    format!(
                        "EnvironmentFile={} does not exist, so systemd refuses to start the unit",
                        f.path
                    ),
                    "pass the unit as it is on the node (run import there), or create the file",
                ));
            }
            None => {
                return Err(UnitError::new(
                    f.origin.clone(),
                    format!("the content of EnvironmentFile={} was not given", f.path),
                    "read the file and pass it (kubeplane import reads it from the node)",
                ));
            }
        }
    }
    Ok(env)
}

/// The command line of a unit's `ExecStart=`, with variables substituted as systemd does.
pub fn command(unit: &Unit, env_files: &EnvFiles) -> Result<Command, UnitError> {
    let mut warnings = unit.warnings.clone();
    let mut missing_optional = Vec::new();
    let env = environment(unit, env_files, &mut warnings, &mut missing_optional)?;
    let unit_origin = Origin::new(&unit.path, 1);
    let mut execs: Vec<&Directive> = Vec::new();
    for d in unit.service("ExecStart") {
        if d.value.is_empty() {
            execs.clear();
        } else {
            execs.push(d);
        }
    }
    let exec = match execs.as_slice() {
        [] => {
            return Err(UnitError::new(
                unit_origin,
                "the unit has no ExecStart= in [Service]",
                "pass the .service file that starts the component",
            ));
        }
        [one] => *one,
        [_, second, ..] => {
            return Err(UnitError::new(
                second.origin.clone(),
                "a second ExecStart=: systemd allows several only for Type=oneshot, which a control-plane component is not",
                "keep the one command that starts the component",
            ));
        }
    };
    let file = exec.origin.file.clone();
    let mut words = split_words(
        &exec.value_located,
        &file,
        exec.origin.line,
        Escapes::C,
        false,
    )?;
    if words.iter().any(|(w, q)| !q && w.text() == ";") {
        return Err(UnitError::new(
            exec.origin.clone(),
            "ExecStart= holds several commands separated by ';'",
            "keep the one command that starts the component",
        ));
    }
    // Prefixes of the first word.
    let mut prefixes = Prefixes::default();
    let Some((first, _)) = words.first_mut() else {
        return Err(UnitError::new(
            exec.origin.clone(),
            "ExecStart= is empty",
            "pass the .service file that starts the component",
        ));
    };
    loop {
        match first.chars.first().map(|(c, _)| *c) {
            Some('-') => prefixes.ignore_failure = true,
            Some('@') => prefixes.argv0 = true,
            Some(':') => prefixes.no_substitution = true,
            Some('+') => prefixes.privileged = Some("+".into()),
            Some('!') => {
                let p = prefixes.privileged.take().unwrap_or_default();
                prefixes.privileged = Some(format!("{p}!"));
            }
            Some('|') => {
                return Err(UnitError::new(
                    exec.origin.clone(),
                    "the | prefix runs the command through a shell, which kubeplane import does not model",
                    "write the command without the shell prefix",
                ));
            }
            _ => break,
        }
        first.chars.remove(0);
    }
    let mut located: Vec<(Located, bool)> = words;
    if prefixes.argv0 {
        if located.len() < 2 {
            return Err(UnitError::new(
                exec.origin.clone(),
                "the @ prefix needs a second word (argv[0])",
                "remove the @ or add argv[0]",
            ));
        }
        located.remove(1);
    }
    let mut references = Vec::new();
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let mut out: Vec<Word> = Vec::new();
    for (idx, (w, _)) in located.iter().enumerate() {
        let text = resolve_specifiers(&w.text(), &unit.path, &exec.origin)?;
        let line = w.first_line(exec.origin.line);
        let origin = Origin::new(&file, line);
        if prefixes.no_substitution {
            out.push(Word { text, origin });
            continue;
        }
        if idx == 0 && text.contains('$') {
            return Err(UnitError::new(
                origin,
                format!("the executable {text:?} is a variable; systemd needs a literal path"),
                "write the executable's path",
            ));
        }
        // `$NAME` as a word of its own: split at whitespace, quotes respected.
        if idx > 0
            && let Some(name) = text.strip_prefix('$')
            && !name.starts_with(['{', '$'])
            && is_env_name(name)
        {
            match lookup(name) {
                Some(v) => {
                    references.push((name.to_string(), true, origin.clone()));
                    for (word, _) in split_words(
                        &v.located,
                        &v.origin.file,
                        v.origin.line,
                        Escapes::Plain,
                        true,
                    )? {
                        out.push(Word {
                            text: word.text(),
                            origin: Origin::new(&v.origin.file, word.first_line(v.origin.line)),
                        });
                    }
                }
                None => references.push((name.to_string(), false, origin.clone())),
            }
            continue;
        }
        let replaced = replace_braced(
            &text,
            &|n| lookup(n).map(|v| v.value.clone()),
            &mut |n, d| references.push((n.to_string(), d, origin.clone())),
        );
        out.push(Word {
            text: replaced,
            origin,
        });
    }
    let path = out.remove(0);
    Ok(Command {
        path,
        args: out,
        prefixes,
        references,
        environment: env,
        missing_optional,
        warnings,
    })
}

/// Replaces `${NAME}` (also `${NAME:-default}` and `${NAME:+alternate}`) and `$$` in a word;
/// a `$` not followed by `{` or `$` stays as it is.
pub(super) fn replace_braced(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    seen: &mut dyn FnMut(&str, bool),
) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let (name, op) = match inner.find(":-").or_else(|| inner.find(":+")) {
                Some(i) => (&inner[..i], Some((&inner[i..i + 2], &inner[i + 2..]))),
                None => (inner, None),
            };
            let value = lookup(name);
            seen(name, value.is_some());
            let value = value.unwrap_or_default();
            match op {
                Some((":-", default)) if value.is_empty() => out.push_str(default),
                Some((":+", alt)) => {
                    if !value.is_empty() {
                        out.push_str(alt);
                    }
                }
                _ => out.push_str(&value),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
