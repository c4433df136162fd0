//! The configuration file's structure: the known-key tree, type checks, and building
//! the typed [`Config`] from a `toml_edit` document.
//!
//! Built by hand rather than with serde `deny_unknown_fields`: serde stops at the
//! first error and its messages quote values, while users need every problem at once,
//! each with its line, column and dotted key path, a suggestion for a mistyped key,
//! and never a value (a `url` holds a password). `toml_edit::ImDocument` keeps the
//! byte span of every key and value for that.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::connection::{RootCert, Secret};
use crate::error::{ConfigError, LineIndex, Problem};
use crate::onetimecopy::{CopyFormat, CopyMode, FkStrategy, OnetimecopyConfig};
use crate::replication::{self, ConflictPolicy, InstallConfig, ReplicationConfig};
use crate::tables::{self, TableOverride, TableSelection};
use crate::vars::{self, Expanded, VarError};
use crate::{suggest, url, Config, Side, SideConfig};

mod sections;

type Span = Option<Range<usize>>;

const TOP_KEYS: &[&str] = &[
    "left",
    "right",
    "tables",
    "replication",
    "install",
    "onetimecopy",
    "table",
];
const SIDE_KEYS: &[&str] = &[
    "url",
    "password_file",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
];
const TABLES_KEYS: &[&str] = &["include", "exclude"];
const REPLICATION_KEYS: &[&str] = &[
    "sync",
    "daemon_name",
    "conflict",
    "allow_apply_triggers",
    "batch_rows",
    "batch_megabytes",
    "poll_interval_ms",
    "max_clock_skew_ms",
];
const INSTALL_KEYS: &[&str] = &["lock_timeout_ms", "max_attempts"];
const ONETIMECOPY_KEYS: &[&str] = &[
    "mode",
    "from",
    "jobs",
    "range_rows",
    "defer_indexes",
    "fk",
    "copy_format",
    "rebuild_indexes",
];
const TABLE_KEYS: &[&str] = &["name", "conflict"];

/// Where each section's keys live, for "`x` belongs in [y]" hints.
const SECTIONS: &[(&str, &[&str])] = &[
    ("[left] and [right]", SIDE_KEYS),
    ("[tables]", TABLES_KEYS),
    ("[replication]", REPLICATION_KEYS),
    ("[install]", INSTALL_KEYS),
    ("[onetimecopy]", ONETIMECOPY_KEYS),
    ("[[table]] entries", TABLE_KEYS),
];

/// Expands, parses and validates; see [`Config::parse`].
pub(crate) fn parse(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let lines = LineIndex::new(text);
    let problem = |offset: usize, key: String, message: String, hint: Option<String>| {
        let (line, column) = lines.position(offset);
        Problem {
            file: source.to_path_buf(),
            line: Some(line),
            column: Some(column),
            key,
            message,
            hint,
        }
    };

    let (expanded, var_errors) = vars::expand(text, env);
    let parsed = ImDocument::parse(expanded.text.as_str());
    // Name the key each bad reference is in: from the expanded document, else from
    // the unexpanded text, when either parses.
    let raw = match (&parsed, var_errors.is_empty()) {
        (Err(_), false) => ImDocument::parse(text).ok(),
        _ => None,
    };
    let key_at = |offset: usize, expanded_offset: usize| {
        match (&parsed, &raw) {
            (Ok(doc), _) => key_path_at(doc.as_table(), "", expanded_offset),
            (Err(_), Some(doc)) => key_path_at(doc.as_table(), "", offset),
            (Err(_), None) => None,
        }
        .unwrap_or_default()
    };
    let mut var_problems: Vec<Problem> = var_errors
        .into_iter()
        .map(|e| match e {
            VarError::Missing {
                name,
                offset,
                expanded,
            } => problem(
                offset,
                key_at(offset, expanded),
                format!("environment variable `{name}` is not set"),
                Some("set it, or write `$${` for a literal `${`".into()),
            ),
            VarError::Malformed { offset, expanded } => problem(
                offset,
                key_at(offset, expanded),
                "`${` does not begin a reference `${NAME}`".into(),
                Some("NAME is letters, digits and `_`; write `$${` for a literal `${`".into()),
            ),
        })
        .collect();

    let doc = match parsed {
        Ok(doc) => doc,
        Err(err) => {
            // A byte span of the expanded text (checked by a test with non-ASCII text).
            let offset = err.span().map_or(0, |s| s.start);
            let original = expanded.original_offset(offset);
            let line = line_range(text, original);
            let hint = expanded.substituted_within(line).then(|| {
                "a `${VAR}` on this line is inserted verbatim: a `\"` or `\\` in its value breaks the string (percent-encode it in a URL, or use password_file)".to_owned()
            });
            // The message lists what the parser expected; it does not quote the text.
            let message = err
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let syntax = problem(
                original,
                String::new(),
                format!("invalid TOML: {message}"),
                hint,
            );
            // A syntax error on the line of a bad reference is its consequence.
            if !var_problems.iter().any(|p| p.line == syntax.line) {
                var_problems.push(syntax);
            }
            var_problems.sort_by_key(|p| (p.line, p.column));
            return Err(ConfigError::Invalid {
                problems: var_problems,
            });
        }
    };

    let mut cx = Cx {
        file: source,
        lines: &lines,
        expanded: &expanded,
        base_dir: source.parent().unwrap_or(Path::new("")),
        problems: Vec::new(),
    };
    let config = cx.config(doc.as_table(), source);
    let mut problems = cx.problems;
    if problems.is_empty() && var_problems.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    // A value with a bad reference was checked with the reference removed: what is
    // wrong with it then is a consequence, not news.
    problems.retain(|p| {
        !var_problems.iter().any(|v| {
            !v.key.is_empty()
                && (p.key == v.key
                    || p.key.starts_with(&format!("{}.", v.key))
                    || p.key.starts_with(&format!("{}[", v.key)))
        })
    });
    problems.append(&mut var_problems);
    // File order; problems without a position (a missing section) last.
    problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
    Err(ConfigError::Invalid { problems })
}

/// Validation state: collects problems while building.
struct Cx<'a> {
    file: &'a Path,
    lines: &'a LineIndex<'a>,
    expanded: &'a Expanded,
    base_dir: &'a Path,
    problems: Vec<Problem>,
}

/// A key found in a table.
struct Field<'t> {
    path: String,
    key_span: Span,
    item: &'t Item,
}

impl Field<'_> {
    /// The value's position, else the key's.
    fn span(&self) -> Span {
        self.item.span().or_else(|| self.key_span.clone())
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn field<'t>(table: &'t dyn TableLike, parent: &str, key: &str) -> Option<Field<'t>> {
    let (k, item) = table.get_key_value(key)?;
    if item.is_none() {
        return None;
    }
    Some(Field {
        path: join(parent, key),
        key_span: k.span(),
        item,
    })
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
        Item::Value(Value::Array(_)) => "an array",
        Item::Value(Value::InlineTable(_)) => "an inline table",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

impl Cx<'_> {
    fn report(&mut self, span: Span, key: &str, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = self
                    .lines
                    .position(self.expanded.original_offset(span.start));
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
            hint,
        });
    }

    fn wrong_type(&mut self, f: &Field, expected: &str, hint: Option<String>) {
        let message = format!("expected {expected}, found {}", type_name(f.item));
        self.report(f.span(), &f.path, message, hint);
    }

    fn string(&mut self, f: &Field) -> Option<String> {
        match f.item.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.wrong_type(f, "a string", None);
                None
            }
        }
    }

    fn boolean(&mut self, f: &Field) -> Option<bool> {
        match f.item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(f, "a boolean (true or false)", None);
                None
            }
        }
    }

    /// A positive integer that fits in `u32`.
    fn positive(&mut self, f: &Field) -> Option<u32> {
        let Some(n) = f.item.as_integer() else {
            self.wrong_type(f, "an integer", None);
            return None;
        };
        match u32::try_from(n) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                let message = format!("must be between 1 and {}", u32::MAX);
                self.report(f.span(), &f.path, message, None);
                None
            }
        }
    }

    fn table<'t>(&mut self, f: &Field<'t>) -> Option<&'t dyn TableLike> {
        match f.item.as_table_like() {
            Some(t) => Some(t),
            None => {
                let hint = match (f.path.as_str(), f.item) {
                    ("tables", Item::ArrayOfTables(_)) => {
                        Some("per-table options go in [[table]] entries".to_owned())
                    }
                    _ => None,
                };
                self.wrong_type(f, "a table", hint);
                None
            }
        }
    }

    /// One of a fixed set of string values; the message names the accepted values,
    /// never what was written.
    fn choice<T: Copy>(&mut self, f: &Field, values: &[(&'static str, T)]) -> Option<T> {
        let s = self.string(f)?;
        if let Some(&(_, v)) = values.iter().find(|(name, _)| *name == s) {
            return Some(v);
        }
        let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
        let hint = suggest::hint(&s, names.iter().copied())
            .unwrap_or_else(|| format!("use one of: {}", names.join(", ")));
        self.report(f.span(), &f.path, "unknown value", Some(hint));
        None
    }

    /// Reports every key of `table` not in `known`.
    fn unknown_keys(
        &mut self,
        table: &dyn TableLike,
        parent: &str,
        known: &[&str],
        special: &dyn Fn(&str) -> Option<String>,
    ) {
        for (key, item) in table.iter() {
            if known.contains(&key) || item.is_none() {
                continue;
            }
            let span = table
                .key(key)
                .and_then(|k| k.span())
                .or_else(|| item.span());
            let hint = special(key)
                .or_else(|| {
                    let homes: Vec<&str> = SECTIONS
                        .iter()
                        .filter(|(_, keys)| keys.contains(&key) && *keys != known)
                        .map(|(section, _)| *section)
                        .collect();
                    (!homes.is_empty())
                        .then(|| format!("`{key}` belongs in {}", homes.join(" or ")))
                })
                .or_else(|| suggest::hint(key, known.iter().copied()));
            self.report(span, &join(parent, key), "unknown key", hint);
        }
    }

    fn config(&mut self, root: &dyn TableLike, source: &Path) -> Option<Config> {
        self.unknown_keys(root, "", TOP_KEYS, &|key| {
            (key == "password" || url::PARAMETERS.contains(&key))
                .then(|| "connection settings belong in [left] and [right], in `url`".into())
        });
        let left = self.side(root, Side::Left);
        let right = self.side(root, Side::Right);
        let tables = self.tables(root);
        let replication = self.replication(root);
        let install = self.install(root);
        let onetimecopy = self.onetimecopy(root);
        let table_overrides = self.table_overrides(root);
        Some(Config {
            source: source.to_path_buf(),
            left: left?,
            right: right?,
            tables: tables?,
            replication: replication?,
            install: install?,
            onetimecopy: onetimecopy?,
            table_overrides: table_overrides?,
        })
    }
}

/// The one-line reason of a regex error, without the pattern the `regex` crate
/// quotes in its multi-line message.
fn regex_reason(err: &regex::Error) -> String {
    match err {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_owned(),
        regex::Error::CompiledTooBig(_) => "the compiled pattern is too big".to_owned(),
        _ => "cannot be compiled".to_owned(),
    }
}

/// The dotted path of the innermost value containing byte `offset`.
fn key_path_at(table: &dyn TableLike, parent: &str, offset: usize) -> Option<String> {
    let contains = |span: Span| span.is_some_and(|s| s.contains(&offset));
    for (key, item) in table.iter() {
        let path = join(parent, key);
        let found = match item {
            Item::Value(value) if contains(value.span()) => {
                Some(value_path_at(value, path, offset))
            }
            Item::Table(t) => key_path_at(t, &path, offset),
            Item::ArrayOfTables(array) => array
                .iter()
                .enumerate()
                .find_map(|(i, t)| key_path_at(t, &format!("{path}[{i}]"), offset)),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn value_path_at(value: &Value, path: String, offset: usize) -> String {
    match value {
        Value::Array(array) => array
            .iter()
            .enumerate()
            .find(|(_, v)| v.span().is_some_and(|s| s.contains(&offset)))
            .map(|(i, v)| value_path_at(v, format!("{path}[{i}]"), offset))
            .unwrap_or(path),
        Value::InlineTable(t) => key_path_at(t, &path, offset).unwrap_or(path),
        _ => path,
    }
}

/// The byte range of the line holding `offset`.
fn line_range(text: &str, offset: usize) -> Range<usize> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    start..end
}
