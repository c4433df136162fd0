//! `${VAR}` expansion on the raw configuration text, before TOML parsing.
//!
//! Done explicitly, in one pass over the text (vector's `config/vars.rs`), rather than
//! as hidden environment reads inside serde defaults: what the file means is then
//! visible in the file. Rules:
//!
//! - `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) is replaced by the variable's value,
//!   inserted verbatim. A variable that is not set is an error naming it and its line
//!   (never a value). A `$` not followed by `{` is left alone, so `$` in a password
//!   needs no escaping.
//! - `$${` is a literal `${` (always: a plain `$` right before a reference cannot be
//!   written, which no real configuration needs).
//! - References inside TOML comments are not expanded, so a commented-out line of the
//!   example file does not require its variables to be set.
//!
//! Because values are inserted verbatim, a `"` or `\` in a value changes the TOML
//! string it lands in; a password with URL-special characters must be percent-encoded
//! in a URL anyway. `password_file` avoids both.
//!
//! Positions: the expanded text is what gets parsed, so every span is mapped back to
//! the original text through the recorded substitutions; messages then point where
//! the user looks.

/// The expanded text and how to map its offsets back to the original.
pub(crate) struct Expanded {
    pub(crate) text: String,
    substitutions: Vec<Substitution>,
}

/// One replaced reference: `original` bytes of the file became `expanded` bytes.
struct Substitution {
    original_start: usize,
    original_len: usize,
    expanded_start: usize,
    expanded_len: usize,
    /// A `$${` escape rather than a variable.
    escape: bool,
}

/// A reference that could not be expanded, at a byte offset of the original text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VarError {
    /// `${NAME}` with NAME not set; `expanded` is where it would have been inserted.
    Missing {
        name: String,
        offset: usize,
        expanded: usize,
    },
    /// `${` not followed by a valid name and `}`.
    Malformed { offset: usize, expanded: usize },
}

impl Expanded {
    /// Maps a byte offset of the expanded text to the original text. An offset inside
    /// an inserted value maps to the `$` of its reference.
    pub(crate) fn original_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for s in &self.substitutions {
            if offset < s.expanded_start {
                break;
            }
            if offset < s.expanded_start + s.expanded_len {
                return s.original_start;
            }
            shift = (s.original_start + s.original_len) as isize
                - (s.expanded_start + s.expanded_len) as isize;
        }
        (offset as isize + shift) as usize
    }

    /// Whether any reference was expanded in the original byte range.
    pub(crate) fn substituted_within(&self, original: std::ops::Range<usize>) -> bool {
        self.substitutions.iter().any(|s| {
            !s.escape
                && s.original_start < original.end
                && original.start < s.original_start + s.original_len
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    Comment,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// One step of a small TOML lexer, only good enough to know whether we are in a
/// comment: moves `state` over the byte at `i` (and the rest of a `"""` or `'''`,
/// or the byte an escape covers) and returns the index of the next byte to look at.
/// Escapes in basic strings are skipped so that `\"` does not end the string.
fn lex_step(state: &mut Lex, bytes: &[u8], mut i: usize) -> usize {
    let b = bytes[i];
    let at = |i: usize, s: &str| bytes[i..].starts_with(s.as_bytes());
    match state {
        Lex::Comment => {
            if b == b'\n' {
                *state = Lex::Normal;
            }
        }
        Lex::Normal => {
            if b == b'#' {
                *state = Lex::Comment;
            } else if at(i, "\"\"\"") {
                *state = Lex::MultiBasic;
                i += 2;
            } else if b == b'"' {
                *state = Lex::Basic;
            } else if at(i, "'''") {
                *state = Lex::MultiLiteral;
                i += 2;
            } else if b == b'\'' {
                *state = Lex::Literal;
            }
        }
        Lex::Basic => {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' || b == b'\n' {
                *state = Lex::Normal;
            }
        }
        Lex::Literal => {
            if b == b'\'' || b == b'\n' {
                *state = Lex::Normal;
            }
        }
        Lex::MultiBasic => {
            if b == b'\\' {
                i += 1;
            } else if at(i, "\"\"\"") {
                *state = Lex::Normal;
                i += 2;
            }
        }
        Lex::MultiLiteral => {
            if at(i, "'''") {
                *state = Lex::Normal;
                i += 2;
            }
        }
    }
    i + 1
}

/// Expands every reference outside comments, and reports every reference that could
/// not be expanded. An unset variable expands to nothing and a malformed reference
/// stays as written, so that the rest of the file can still be checked.
pub(crate) fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> (Expanded, Vec<VarError>) {
    let bytes = raw.as_bytes();
    let mut text = String::with_capacity(raw.len());
    let mut substitutions = Vec::new();
    let mut errors = Vec::new();
    let mut copied = 0; // raw[..copied] has been handled
    let mut state = Lex::Normal;
    let mut i = 0;
    let at = |i: usize, s: &str| bytes[i..].starts_with(s.as_bytes());

    while i < bytes.len() {
        let b = bytes[i];
        if state != Lex::Comment && b == b'$' {
            if at(i, "$${") {
                text.push_str(&raw[copied..i]);
                substitutions.push(Substitution {
                    original_start: i,
                    original_len: 3,
                    expanded_start: text.len(),
                    expanded_len: 2,
                    escape: true,
                });
                text.push_str("${");
                i += 3;
                copied = i;
                continue;
            }
            if at(i, "${") {
                let name_start = i + 2;
                let name_len = raw[name_start..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                let name = &raw[name_start..name_start + name_len];
                let closed = bytes.get(name_start + name_len) == Some(&b'}');
                let valid = closed && name.bytes().next().is_some_and(|b| !b.is_ascii_digit());
                if !valid {
                    errors.push(VarError::Malformed {
                        offset: i,
                        expanded: text.len() + (i - copied),
                    });
                    i += 2;
                    continue;
                }
                let end = name_start + name_len + 1;
                let value = env(name).unwrap_or_else(|| {
                    errors.push(VarError::Missing {
                        name: name.to_owned(),
                        offset: i,
                        expanded: text.len() + (i - copied),
                    });
                    String::new()
                });
                text.push_str(&raw[copied..i]);
                substitutions.push(Substitution {
                    original_start: i,
                    original_len: end - i,
                    expanded_start: text.len(),
                    expanded_len: value.len(),
                    escape: false,
                });
                text.push_str(&value);
                copied = end;
                i = end;
                continue;
            }
        }
        // Not a reference: the lexer tells whether the next `$` is in a comment.
        i = lex_step(&mut state, bytes, i);
    }
    text.push_str(&raw[copied.min(raw.len())..]);
    (
        Expanded {
            text,
            substitutions,
        },
        errors,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            "LONG" => Some("0123456789".into()),
            _ => None,
        }
    }

    fn run(raw: &str) -> Result<String, Vec<VarError>> {
        match expand(raw, &env) {
            (expanded, errors) if errors.is_empty() => Ok(expanded.text),
            (_, errors) => Err(errors),
        }
    }

    #[test]
    fn expands_references_in_strings_and_bare_values() {
        assert_eq!(run("a = \"x${PW}y\"").unwrap(), "a = \"xs3cr3ty\"");
        assert_eq!(run("a = ${LONG}").unwrap(), "a = 0123456789");
        assert_eq!(run("a = '${EMPTY}'").unwrap(), "a = ''");
        assert_eq!(
            run("a = \"\"\"\n${PW}\"\"\"").unwrap(),
            "a = \"\"\"\ns3cr3t\"\"\""
        );
    }

    #[test]
    fn dollar_alone_and_escape() {
        assert_eq!(run("a = \"p$w$\"").unwrap(), "a = \"p$w$\"");
        assert_eq!(run("a = \"$${PW}\"").unwrap(), "a = \"${PW}\"");
        // Scanning is left to right: the first `$` is plain, then `$${` escapes.
        assert_eq!(run("a = \"$$${PW}\"").unwrap(), "a = \"$${PW}\"");
    }

    #[test]
    fn comments_are_not_expanded() {
        let raw = "# url = \"${NOPE}\"\na = \"#${PW}\" # ${NOPE}\nb = 1";
        assert_eq!(
            run(raw).unwrap(),
            "# url = \"${NOPE}\"\na = \"#s3cr3t\" # ${NOPE}\nb = 1"
        );
        // An escaped quote does not end the string, so the `#` after it is not a
        // comment.
        assert_eq!(
            run("a = \"\\\" # ${PW}\"").unwrap(),
            "a = \"\\\" # s3cr3t\""
        );
    }

    #[test]
    fn missing_and_malformed_are_all_reported() {
        let errors =
            run("a = \"${NOPE}\"\nb = \"${}\"\nc = \"${X\"\nd = \"${1A}\"\ne = \"${ALSO}\"")
                .unwrap_err();
        let found: Vec<(Option<&str>, usize, usize)> = errors
            .iter()
            .map(|e| match e {
                VarError::Missing {
                    name,
                    offset,
                    expanded,
                } => (Some(name.as_str()), *offset, *expanded),
                VarError::Malformed { offset, expanded } => (None, *offset, *expanded),
            })
            .collect();
        // Expanded offsets are 7 less after the first missing `${NOPE}`.
        assert_eq!(
            found,
            vec![
                (Some("NOPE"), 5, 5),
                (None, 19, 12),
                (None, 29, 22),
                (None, 39, 32),
                (Some("ALSO"), 51, 44),
            ]
        );
        // The rest of the text is still expanded, for the other checks.
        let (e, _) = expand("a = \"${NOPE}\" \"${PW}\" \"${}\"", &env);
        assert_eq!(e.text, "a = \"\" \"s3cr3t\" \"${}\"");
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let raw = "a = \"${PW}\" x\nb = \"$${\" ${LONG} y";
        let (e, errors) = expand(raw, &env);
        assert!(errors.is_empty());
        assert_eq!(e.text, "a = \"s3cr3t\" x\nb = \"${\" 0123456789 y");
        for needle in ["x", "b", "y"] {
            let expanded = e.text.find(needle).unwrap();
            assert_eq!(e.original_offset(expanded), raw.find(needle).unwrap());
        }
        // Inside an inserted value: the reference's `$`.
        assert_eq!(e.original_offset(e.text.find("cr").unwrap()), 5);
        assert!(e.substituted_within(0..14));
        // The escape alone does not count as a substitution.
        assert!(!e.substituted_within(15..24));
    }
}
