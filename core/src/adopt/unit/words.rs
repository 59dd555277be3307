//! Splitting a command line into words with systemd's quoting and escapes.

use super::*;

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
pub(super) enum Escapes {
    /// C-style escapes; an unknown one is an error (`EXTRACT_CUNESCAPE`).
    C,
    /// A backslash keeps the next character (`EXTRACT_UNQUOTE` without `EXTRACT_CUNESCAPE`).
    Plain,
}

/// Splits by systemd's `extract_first_word` with `EXTRACT_UNQUOTE`: quotes open anywhere in
/// a word, separators are [`WHITESPACE`](is_ws). `relax`: an unterminated quote or a trailing
/// backslash ends the word instead of being an error. Each word keeps a flag saying whether
/// any of it was quoted.
pub(super) fn split_words(
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
pub(super) fn c_unescape(rest: &[(char, usize)]) -> Option<(char, usize)> {
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
