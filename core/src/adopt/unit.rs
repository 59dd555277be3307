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
    located: Located,
}

/// `%` specifiers of systemd.unit(5) that depend only on the unit's name; any other is
/// refused (import cannot know the host's values).
fn resolve_specifiers(word: &str, unit_path: &str, origin: &Origin) -> Result<String, UnitError> {
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
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A word and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The word, unquoted and unescaped.
    pub text: String,
    /// Where its first character came from.
    pub origin: Origin,
}

/// How [`split_words`] treats backslashes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escapes {
    /// C-style escapes; an unknown one is an error (`EXTRACT_CUNESCAPE`).
    C,
    /// A backslash keeps the next character (`EXTRACT_UNQUOTE` without `EXTRACT_CUNESCAPE`).
    Plain,
}

/// Splits by systemd's `extract_first_word` with `EXTRACT_UNQUOTE`: quotes open anywhere in
/// a word, separators are [`WHITESPACE`](is_ws). `relax`: an unterminated quote or a trailing
/// backslash ends the word instead of being an error. Each word keeps a flag saying whether
/// any of it was quoted.
fn split_words(
    text: &Located,
    file: &str,
    default_line: usize,
    escapes: Escapes,
    relax: bool,
) -> Result<Vec<(Located, bool)>, UnitError> {
    let err = |line: usize, message: String, fix: &str| {
        Err(UnitError::new(Origin::new(file, line), message, fix))
    };
    let mut words = Vec::new();
    let chars = &text.chars;
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && is_ws(chars[i].0) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut word = Located::default();
        let mut quoted = false;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let (c, line) = chars[i];
            if c == '\\' {
                let Some(&(next, _)) = chars.get(i + 1) else {
                    if relax {
                        i += 1;
                        break;
                    }
                    return err(
                        line,
                        "a backslash ends the line with nothing to escape; systemd refuses the line".into(),
                        "remove the backslash, or write \\\\ for a literal one",
                    );
                };
                match escapes {
                    Escapes::Plain => {
                        word.push(next, line);
                        i += 2;
                    }
                    Escapes::C => {
                        let (decoded, used) = match c_unescape(&chars[i + 1..]) {
                            Some(x) => x,
                            None => {
                                return err(
                                    line,
                                    format!(
                                        "\\{next} is not an escape systemd knows, and it refuses the line"
                                    ),
                                    "write \\\\ for a literal backslash",
                                );
                            }
                        };
                        word.push(decoded, line);
                        i += 1 + used;
                    }
                }
                continue;
            }
            match quote {
                Some(q) if c == q => {
                    quote = None;
                    i += 1;
                }
                Some(_) => {
                    word.push(c, line);
                    i += 1;
                }
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    quoted = true;
                    i += 1;
                }
                None if is_ws(c) => break,
                None => {
                    word.push(c, line);
                    i += 1;
                }
            }
        }
        if let Some(q) = quote
            && !relax
        {
            return err(
                word.first_line(default_line),
                format!("the quote {q} is never closed; systemd refuses the line"),
                "close the quote",
            );
        }
        words.push((word, quoted));
    }
    Ok(words)
}

/// One C-style escape after a backslash (systemd's `cunescape_one`): the character and how
/// many input characters it used.
fn c_unescape(rest: &[(char, usize)]) -> Option<(char, usize)> {
    let c = rest.first()?.0;
    let simple = match c {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        '\\' | '"' | '\'' | ' ' => Some(c),
        's' => Some(' '),
        _ => None,
    };
    if let Some(s) = simple {
        return Some((s, 1));
    }
    let hex = |n: usize| -> Option<u32> {
        if rest.len() < 1 + n {
            return None;
        }
        let s: String = rest[1..=n].iter().map(|(c, _)| c).collect();
        u32::from_str_radix(&s, 16).ok()
    };
    match c {
        'x' => {
            let v = hex(2)?;
            (v != 0).then(|| char::from_u32(v).map(|ch| (ch, 3)))?
        }
        'u' => {
            let v = hex(4)?;
            (v != 0).then(|| char::from_u32(v).map(|ch| (ch, 5)))?
        }
        'U' => {
            let v = hex(8)?;
            (v != 0).then(|| char::from_u32(v).map(|ch| (ch, 9)))?
        }
        '0'..='7' => {
            if rest.len() < 3 {
                return None;
            }
            let s: String = rest[..3].iter().map(|(c, _)| c).collect();
            let v = u32::from_str_radix(&s, 8).ok()?;
            (v != 0 && v < 256).then(|| char::from_u32(v).map(|ch| (ch, 3)))?
        }
        _ => None,
    }
}

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
fn environment(
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
fn replace_braced(
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

#[cfg(test)]
#[path = "unit_tests.rs"]
mod tests;
