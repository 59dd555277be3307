//! `EnvironmentFile=` files and `Environment=` assignments, as systemd reads them.

use super::*;

/// One `EnvironmentFile=` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFileRef {
    /// The absolute path.
    pub path: String,
    /// `-` prefix: a missing file is ignored.
    pub optional: bool,
    /// The directive.
    pub origin: Origin,
}

/// Variables in the order set.
pub type Assignments = Vec<(String, Variable)>;

/// Warnings systemd would log, with where.
pub type Warnings = Vec<(Origin, String)>;

/// A variable's value and where it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The value.
    pub value: String,
    /// Where it was set.
    pub origin: Origin,
    pub(super) located: Located,
}

/// `%` specifiers of systemd.unit(5) that depend only on the unit's name; any other is
/// refused (import cannot know the host's values).
pub(super) fn resolve_specifiers(
    word: &str,
    unit_path: &str,
    origin: &Origin,
) -> Result<String, UnitError> {
    if !word.contains('%') {
        return Ok(word.to_string());
    }
    let name = unit_name(unit_path);
    let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, i),
        None => (stem, ""),
    };
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('n') => out.push_str(name),
            Some('N') => out.push_str(stem),
            Some('p') => out.push_str(prefix),
            Some('i') | Some('I') => out.push_str(instance),
            Some(other) => {
                return Err(UnitError::new(
                    origin.clone(),
                    format!(
                        "specifier %{other} in {word:?} depends on the host, and kubeplane import does not resolve it"
                    ),
                    "replace it with its value on this node (systemctl show -p ExecStart UNIT shows what systemd made of it)",
                ));
            }
            None => {
                return Err(UnitError::new(
                    origin.clone(),
                    format!("{word:?} ends with a lone %, which systemd refuses"),
                    "write %% for a literal percent sign",
                ));
            }
        }
    }
    Ok(out)
}

/// Parses an environment file (systemd.exec(5), `EnvironmentFile=`). Assignments with an
/// invalid name are skipped, as systemd does, and listed in the second value.
pub fn parse_env_file(path: &str, text: &str) -> (Assignments, Warnings) {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut state = S::PreKey;
    let mut key = String::new();
    let mut key_line = 1;
    let mut value = Located::default();
    // Length of the value up to its last character that is not unquoted trailing whitespace.
    let mut keep = 0usize;
    let mut line = 1usize;
    let finish = |key: &mut String,
                  value: &mut Located,
                  keep: usize,
                  key_line: usize,
                  out: &mut Vec<(String, Variable)>,
                  warnings: &mut Vec<(Origin, String)>| {
        value.chars.truncate(keep);
        let name = key.trim_matches(is_ws).to_string();
        if is_env_name(&name) {
            out.push((
                name,
                Variable {
                    value: value.text(),
                    origin: Origin::new(path, key_line),
                    located: std::mem::take(value),
                },
            ));
        } else {
            warnings.push((
                Origin::new(path, key_line),
                format!("{name:?} is not a valid variable name; systemd ignores the assignment"),
            ));
        }
        key.clear();
        value.chars.clear();
    };
    for c in text.chars() {
        match state {
            S::PreKey => {
                if c == '#' || c == ';' {
                    state = S::Comment;
                } else if !is_ws(c) {
                    state = S::Key;
                    key_line = line;
                    key.push(c);
                }
            }
            S::Key => {
                if c == '\n' {
                    // No '=': ignored.
                    key.clear();
                    state = S::PreKey;
                } else if c == '=' {
                    state = S::PreValue;
                    keep = 0;
                } else {
                    key.push(c);
                }
            }
            S::PreValue => {
                if c == '\n' {
                    finish(&mut key, &mut value, 0, key_line, &mut out, &mut warnings);
                    state = S::PreKey;
                } else if c == '\'' {
                    state = S::Single;
                } else if c == '"' {
                    state = S::Double;
                } else if c == '\\' {
                    state = S::ValueEscape;
                } else if !is_ws(c) {
                    value.push(c, line);
                    keep = value.chars.len();
                    state = S::Value;
                }
            }
            S::Value => {
                if c == '\n' {
                    finish(
                        &mut key,
                        &mut value,
                        keep,
                        key_line,
                        &mut out,
                        &mut warnings,
                    );
                    state = S::PreKey;
                } else if c == '\\' {
                    state = S::ValueEscape;
                } else {
                    value.push(c, line);
                    if !is_ws(c) {
                        keep = value.chars.len();
                    }
                }
            }
            S::ValueEscape => {
                state = S::Value;
                if c != '\n' {
                    value.push(c, line);
                    keep = value.chars.len();
                }
            }
            S::Single => {
                if c == '\'' {
                    state = S::Value;
                } else {
                    value.push(c, line);
                    keep = value.chars.len();
                }
            }
            S::Double => {
                if c == '"' {
                    state = S::Value;
                } else if c == '\\' {
                    state = S::DoubleEscape;
                } else {
                    value.push(c, line);
                    keep = value.chars.len();
                }
            }
            S::DoubleEscape => {
                state = S::Double;
                if matches!(c, '"' | '\\' | '`' | '$') {
                    value.push(c, line);
                } else if c != '\n' {
                    value.push('\\', line);
                    value.push(c, line);
                }
                keep = value.chars.len();
            }
            S::Comment => {
                if c == '\n' {
                    state = S::PreKey;
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        S::PreKey | S::Key | S::Comment => {}
        S::Single | S::Double | S::DoubleEscape => {
            warnings.push((
                Origin::new(path, key_line),
                format!(
                    "the quoted value of {} is not closed before the end of the file; systemd takes the rest of the file as its value",
                    key.trim_matches(is_ws)
                ),
            ));
            let k = value.chars.len();
            finish(&mut key, &mut value, k, key_line, &mut out, &mut warnings);
        }
        S::PreValue | S::Value | S::ValueEscape => {
            finish(
                &mut key,
                &mut value,
                keep,
                key_line,
                &mut out,
                &mut warnings,
            );
        }
    }
    (out, warnings)
}

/// A valid environment variable name for systemd (`env_name_is_valid`): not empty, no `=`,
/// not starting with a digit, only ASCII letters, digits and `_`.
pub(super) fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
