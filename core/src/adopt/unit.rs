//! Reading a systemd service unit the way systemd does, to recover the exact command line a
//! "hard way" control-plane component runs with. Pure: the caller reads the unit, its drop-ins
//! and its `EnvironmentFile=`s; nothing here does I/O.
//!
//! The rules, from systemd's manual pages (cited where they are implemented):
//! - systemd.syntax(7), "Introduction": `key=value` entries in `[Section]`s; whitespace around
//!   `=` is ignored; empty lines and lines starting with `#` or `;` are comments; "Lines
//!   ending in a backslash are concatenated with the following line while reading and the
//!   backslash is replaced by a space character"; "When a comment line or lines follow a line
//!   ending with a backslash, the comment block is ignored, so the continued line is
//!   concatenated with whatever follows the comment block" (systemd ≥ 253;
//!   <https://manpages.ubuntu.com/manpages/plucky/man7/systemd.syntax.7.html>).
//! - systemd.syntax(7), "Quoting": double and single quotes wrap an item, C-style escapes
//!   (`\n`, `\t`, `\\`, `\"`, `\xHH`, `\NNN`, `\uHHHH`, `\s`) are recognized, a quote opens
//!   wherever it appears in a word (systemd's `extract_first_word`), and an unknown escape or
//!   an unterminated quote makes systemd refuse the line.
//! - systemd.service(5), "Command lines": an `ExecStart=` command is split into words by
//!   those quoting rules; the first word may carry the prefixes `@` (the second word becomes
//!   `argv[0]`), `-` (a failure exit is ignored), `:` (no variable substitution), `+`, `!`
//!   and `!!` (privileges); "Use `${FOO}` as part of a word, or as a word of its own … it
//!   will be erased and replaced by the exact value of the environment variable (if any)
//!   including all whitespace it contains, always resulting in exactly a single argument.
//!   Use `$FOO` as a separate word on the command line, in which case it will be replaced by
//!   the value of the environment variable split at whitespace, resulting in zero or more
//!   arguments. For this type of expansion, quotes are respected when splitting into words,
//!   and afterwards removed." `$$` is a literal `$`. Only `${FOO}` is replaced inside a word:
//!   `--v=$LEVEL` is passed literally. An undefined variable expands to nothing.
//! - systemd.exec(5), `Environment=`: each line is unquoted by systemd.syntax(7) rules into
//!   `NAME=value` assignments; "Variable expansion is not performed inside the strings";
//!   the empty assignment resets the list; a later assignment of a name wins.
//! - systemd.exec(5), `EnvironmentFile=`: absolute paths, "optionally prefixed with `-`,
//!   which indicates that if the file does not exist, it will not be read and no error or
//!   warning message is logged"; the empty assignment resets the list; "Settings from these
//!   files override settings made with `Environment=`", later files override earlier ones.
//!   The file syntax: "Empty lines, lines without an `=` separator, or lines starting with
//!   `;` or `#` will be ignored"; an unquoted value follows shell backslash rules, keeps
//!   interior whitespace and quotes after its first character, loses leading and trailing
//!   whitespace, and "a line ending with a backslash will be continued to the following one,
//!   with the newline itself discarded"; a single-quoted value "can span multiple lines and
//!   contain any character verbatim other than single quote"; in a double-quoted value, which
//!   can span lines too, "Backslash followed by any of ``"\`$`` will preserve that character.
//!   A backslash followed by newline is a line continuation, and the newline itself is
//!   discarded. A backslash followed by any other character is ignored; both the backslash
//!   and the following character are preserved verbatim."
//!
//! Whitespace, for every split above, is systemd's `WHITESPACE`: space, tab, newline and
//! carriage return only. A no-break space (U+00A0, common in commands pasted from web pages)
//! is not whitespace to systemd: it stays inside words, or forms words of its own.

use std::collections::BTreeMap;
use std::fmt;

/// systemd's `WHITESPACE`.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Where something came from: a file and a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
}

impl Origin {
    fn new(file: &str, line: usize) -> Self {
        Origin {
            file: file.to_string(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Text that remembers the source line of every character.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Located {
    chars: Vec<(char, usize)>,
}

impl Located {
    fn push(&mut self, c: char, line: usize) {
        self.chars.push((c, line));
    }

    fn text(&self) -> String {
        self.chars.iter().map(|(c, _)| c).collect()
    }

    fn first_line(&self, default: usize) -> usize {
        self.chars.first().map(|(_, l)| *l).unwrap_or(default)
    }

    fn trim(&self) -> Located {
        let start = self
            .chars
            .iter()
            .position(|(c, _)| !is_ws(*c))
            .unwrap_or(self.chars.len());
        let end = self
            .chars
            .iter()
            .rposition(|(c, _)| !is_ws(*c))
            .map(|i| i + 1)
            .unwrap_or(start);
        Located {
            chars: self.chars[start..end.max(start)].to_vec(),
        }
    }
}

/// Why a unit, one of its lines, or an environment file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}; {fix}")]
pub struct UnitError {
    /// Where.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

impl UnitError {
    fn new(origin: Origin, message: impl Into<String>, fix: impl Into<String>) -> Self {
        UnitError {
            origin,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// One `key=value` line of a unit, continuations joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The section, without brackets (`Service`).
    pub section: String,
    /// The key (`ExecStart`).
    pub key: String,
    /// The value, leading and trailing whitespace removed.
    pub value: String,
    /// Where the directive starts.
    pub origin: Origin,
    value_located: Located,
}

/// A service unit: its file and drop-ins, parsed into directives in the order systemd
/// applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The unit file.
    pub path: String,
    /// Every directive of the unit, then of each drop-in in order.
    pub directives: Vec<Directive>,
    /// Lines systemd ignores with a warning (no `=`, outside any section).
    pub warnings: Vec<(Origin, String)>,
}

/// The unit's name (`kube-apiserver.service`): the last path component.
pub fn unit_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Parses a unit file and its drop-ins (`FILE.d/*.conf`, in the order systemd reads them:
/// sorted by file name) into directives (systemd.syntax(7), "Introduction").
pub fn parse_unit(path: &str, text: &str, drop_ins: &[(String, String)]) -> Unit {
    let mut unit = Unit {
        path: path.to_string(),
        directives: Vec::new(),
        warnings: Vec::new(),
    };
    parse_into(&mut unit, path, text);
    for (p, t) in drop_ins {
        parse_into(&mut unit, p, t);
    }
    unit
}

fn parse_into(unit: &mut Unit, file: &str, text: &str) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut section: Option<String> = None;
    // The logical line being continued, and where it started.
    let mut pending: Option<(Located, usize)> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let stripped = raw.trim_start_matches(is_ws);
        // Comment lines are ignored, also inside a continuation (systemd ≥ 253).
        if stripped.starts_with('#') || stripped.starts_with(';') {
            continue;
        }
        let (mut logical, start) = match pending.take() {
            Some((l, s)) => (l, s),
            None => {
                if stripped.is_empty() {
                    continue;
                }
                (Located::default(), n)
            }
        };
        let piece = if logical.chars.is_empty() {
            stripped
        } else {
            raw
        };
        // A trailing backslash that is not itself escaped continues the line.
        let mut escaped = false;
        for c in piece.chars() {
            escaped = !escaped && c == '\\';
        }
        if escaped {
            for c in piece[..piece.len() - 1].chars() {
                logical.push(c, n);
            }
            logical.push(' ', n);
            pending = Some((logical, start));
            continue;
        }
        for c in piece.chars() {
            logical.push(c, n);
        }
        finish_line(unit, file, &mut section, logical, start);
    }
    if let Some((logical, start)) = pending {
        finish_line(unit, file, &mut section, logical, start);
    }
}

fn finish_line(
    unit: &mut Unit,
    file: &str,
    section: &mut Option<String>,
    logical: Located,
    line: usize,
) {
    let text = logical.text();
    let trimmed = text.trim_matches(is_ws);
    if trimmed.is_empty() {
        return;
    }
    if trimmed.starts_with('[') {
        match trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(name) if !name.is_empty() && !name.contains(['[', ']']) => {
                *section = Some(name.to_string());
            }
            _ => unit.warnings.push((
                Origin::new(file, line),
                format!("{trimmed:?} is not a section header; systemd ignores the line"),
            )),
        }
        return;
    }
    let Some(eq) = logical.chars.iter().position(|(c, _)| *c == '=') else {
        unit.warnings.push((
            Origin::new(file, line),
            format!("{trimmed:?} has no '='; systemd ignores the line"),
        ));
        return;
    };
    let Some(sec) = section.clone() else {
        unit.warnings.push((
            Origin::new(file, line),
            format!("{trimmed:?} comes before any [Section]; systemd ignores it"),
        ));
        return;
    };
    let key: String = logical.chars[..eq].iter().map(|(c, _)| c).collect();
    let value = Located {
        chars: logical.chars[eq + 1..].to_vec(),
    }
    .trim();
    unit.directives.push(Directive {
        section: sec,
        key: key.trim_matches(is_ws).to_string(),
        value: value.text(),
        origin: Origin::new(file, line),
        value_located: value,
    });
}

impl Unit {
    /// The directives of a key in `[Service]`, in order.
    pub fn service<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Directive> + 'a {
        self.directives
            .iter()
            .filter(move |d| d.section == "Service" && d.key == key)
    }

    /// The last value of a `[Service]` key.
    pub fn service_value<'a>(&'a self, key: &'a str) -> Option<&'a Directive> {
        self.service(key).last()
    }

    /// The `EnvironmentFile=` entries in effect (after resets), in order.
    pub fn environment_files(&self) -> Result<Vec<EnvFileRef>, UnitError> {
        let mut out = Vec::new();
        for d in self.service("EnvironmentFile") {
            if d.value.is_empty() {
                out.clear();
                continue;
            }
            let (optional, path) = match d.value.strip_prefix('-') {
                Some(p) => (true, p.trim_start_matches(is_ws)),
                None => (false, d.value.as_str()),
            };
            let path = resolve_specifiers(path, &self.path, &d.origin)?;
            if !path.starts_with('/') {
                return Err(UnitError::new(
                    d.origin.clone(),
                    format!(
                        "EnvironmentFile={path:?} is not an absolute path, and systemd ignores it"
                    ),
                    "write the absolute path of the file, or remove the line",
                ));
            }
            if path.contains(['*', '?', '[']) {
                return Err(UnitError::new(
                    d.origin.clone(),
                    format!(
                        "EnvironmentFile={path:?} is a wildcard pattern, which kubeplane import does not expand"
                    ),
                    "name each file in its own EnvironmentFile= line",
                ));
            }
            out.push(EnvFileRef {
                path,
                optional,
                origin: d.origin.clone(),
            });
        }
        Ok(out)
    }
}

mod command;
mod env_file;
mod words;

pub use command::*;
pub use env_file::*;
pub use words::*;

#[cfg(test)]
#[path = "unit_tests.rs"]
mod tests;
