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

    fn side(&mut self, root: &dyn TableLike, side: Side) -> Option<SideConfig> {
        let name = side.as_str();
        let Some(f) = field(root, "", name) else {
            self.report(
                None,
                name,
                "missing section",
                Some(format!(
                    "add [{name}] with url = \"postgres://user@host:5432/dbname\""
                )),
            );
            return None;
        };
        let table = self.table(&f)?;
        self.unknown_keys(table, name, SIDE_KEYS, &|key| match key {
            "password" => Some(
                "put the password in `url` (postgres://user:${PASSWORD}@host/dbname) or use `password_file`".into(),
            ),
            key if url::PARAMETERS.contains(&key) => {
                Some(format!("set `{key}` in `url` (postgres://user@host:port/dbname?{key}=...)"))
            }
            _ => None,
        });

        // `url` first: the other keys override what it says.
        let url_field = field(table, name, "url");
        let mut parsed = None;
        let mut url_span = f.key_span.clone();
        let url_path = join(name, "url");
        match &url_field {
            None => self.report(
                f.span(),
                &url_path,
                "required key is missing",
                Some("add url = \"postgres://user@host:5432/dbname\"".into()),
            ),
            Some(uf) => {
                url_span = uf.span();
                if let Some(text) = self.string(uf) {
                    match url::parse_parts(&text, self.base_dir) {
                        Ok(p) => parsed = Some(p),
                        Err(err) => {
                            for p in err.problems {
                                let message = format!("invalid URL: {}", p.message);
                                self.report(uf.span(), &uf.path, message, p.hint);
                            }
                        }
                    }
                }
            }
        }

        let sslmode = field(table, name, "sslmode").and_then(|f| {
            let value = self.string(&f)?;
            match url::parse_ssl_mode(&value) {
                Ok(mode) => Some(mode),
                Err((message, hint)) => {
                    self.report(f.span(), &f.path, message, hint);
                    None
                }
            }
        });
        let mut path_key = |key: &str| {
            let f = field(table, name, key)?;
            let value = self.string(&f)?;
            if value.is_empty() {
                self.report(f.span(), &f.path, "must not be empty", None);
                return None;
            }
            let span = f.span();
            Some((value, f.path, span))
        };
        let sslrootcert = path_key("sslrootcert");
        let sslcert = path_key("sslcert");
        let sslkey = path_key("sslkey");
        let password_file = path_key("password_file");

        // With a broken URL, go on with libpq's defaults so that the other keys are
        // still checked, but skip the checks that depend on what the URL says.
        let url_ok = parsed.is_some();
        let parsed = match parsed {
            Some(parsed) => parsed,
            None => url::parse_parts("postgres://", self.base_dir).ok()?,
        };
        let mut settings = parsed.settings;
        let mut sslmode_given = parsed.sslmode_given;
        let from_url = || (url_path.clone(), url_span.clone());
        if let Some(mode) = sslmode {
            settings.tls.mode = mode;
            sslmode_given = true;
        }
        let mut root_origin = from_url();
        if let Some((value, path, span)) = sslrootcert {
            settings.tls.root_cert = Some(url::root_cert(&value, self.base_dir));
            root_origin = (path, span);
        }
        let mut cert_origin = from_url();
        if let Some((value, path, span)) = sslcert {
            settings.tls.client_cert = Some(url::resolve(&value, self.base_dir));
            cert_origin = (path, span);
        }
        let mut key_origin = from_url();
        if let Some((value, path, span)) = sslkey {
            settings.tls.client_key = Some(url::resolve(&value, self.base_dir));
            key_origin = (path, span);
        }

        let before = self.problems.len();
        if let Err((message, hint)) = url::apply_system_root_rule(&mut settings.tls, sslmode_given)
        {
            if url_ok {
                self.report(root_origin.1.clone(), &root_origin.0, message, hint);
            }
        }
        if let Some(RootCert::File(path)) = &settings.tls.root_cert {
            self.check_file(path, "root certificate", &root_origin);
        }
        match (&settings.tls.client_cert, &settings.tls.client_key) {
            (Some(cert), Some(key)) => {
                self.check_file(cert, "client certificate", &cert_origin);
                self.check_file(key, "client key", &key_origin);
            }
            (Some(_), None) => self.report(
                cert_origin.1.clone(),
                &cert_origin.0,
                "sslcert is given without sslkey",
                Some("give both, or neither".into()),
            ),
            (None, Some(_)) => self.report(
                key_origin.1.clone(),
                &key_origin.0,
                "sslkey is given without sslcert",
                Some("give both, or neither".into()),
            ),
            (None, None) => {}
        }

        if let Some((value, path, span)) = password_file {
            if !url_ok {
                let file = url::resolve(&value, self.base_dir);
                self.read_password(&file, &path, span);
            } else if settings.password.is_some() {
                self.report(
                    span,
                    &path,
                    "the password is given twice: in `url` and in `password_file`",
                    Some("remove one of them".into()),
                );
            } else {
                let file = url::resolve(&value, self.base_dir);
                settings.password = self.read_password(&file, &path, span);
            }
        }
        if url_ok && settings.user.is_none() {
            self.report(
                url_span.clone(),
                &url_path,
                "the URL names no user",
                Some("write postgres://USER@host/dbname".into()),
            );
        }
        (url_ok && self.problems.len() == before).then_some(SideConfig {
            side,
            connection: settings,
        })
    }

    /// A certificate or key file must exist now rather than fail at the first
    /// connection, possibly hours later on the other side only. Paths are not
    /// secrets, so they are named.
    fn check_file(&mut self, path: &Path, what: &str, origin: &(String, Span)) {
        let message = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => return,
            Ok(_) => format!("{what} {} is not a file", path.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                format!("{what} {} not found", path.display())
            }
            Err(err) => format!("cannot read {what} {}: {}", path.display(), err.kind()),
        };
        self.report(origin.1.clone(), &origin.0, message, None);
    }

    fn read_password(&mut self, file: &Path, key: &str, span: Span) -> Option<Secret> {
        let shown = file.display();
        let message = match std::fs::read(file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(mut text) => {
                    // One trailing newline is what `echo` and editors add; anything
                    // else is kept, since it may be part of the password.
                    if text.ends_with('\n') {
                        text.pop();
                        if text.ends_with('\r') {
                            text.pop();
                        }
                    }
                    if !text.is_empty() {
                        return Some(Secret::new(text));
                    }
                    format!("password file {shown} is empty")
                }
                Err(_) => format!("password file {shown} is not valid UTF-8"),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                format!("password file {shown} not found")
            }
            Err(err) => format!("cannot read password file {shown}: {}", err.kind()),
        };
        self.report(span, key, message, None);
        None
    }

    fn tables(&mut self, root: &dyn TableLike) -> Option<TableSelection> {
        let Some(f) = field(root, "", "tables") else {
            return Some(TableSelection::default());
        };
        let table = self.table(&f)?;
        self.unknown_keys(table, "tables", TABLES_KEYS, &|_| None);
        let include = self.patterns(table, "include");
        let exclude = self.patterns(table, "exclude");
        Some(TableSelection::new(include?, exclude?))
    }

    fn patterns(&mut self, table: &dyn TableLike, key: &str) -> Option<Vec<Regex>> {
        let Some(f) = field(table, "tables", key) else {
            return Some(Vec::new());
        };
        let Some(array) = f.item.as_array() else {
            self.wrong_type(&f, "an array of strings", None);
            return None;
        };
        if array.is_empty() && key == "include" {
            self.report(
                f.span(),
                &f.path,
                "an empty list selects no table",
                Some("leave `include` out to select every table".into()),
            );
            return None;
        }
        let mut patterns = Vec::new();
        let mut ok = true;
        for (i, value) in array.iter().enumerate() {
            let path = format!("{}[{i}]", f.path);
            let span = value.span().or_else(|| f.span());
            let Some(pattern) = value.as_str() else {
                let message = format!(
                    "expected a string, found {}",
                    type_name(&Item::Value(value.clone()))
                );
                self.report(span, &path, message, None);
                ok = false;
                continue;
            };
            match Regex::new(pattern) {
                Ok(regex) => patterns.push(regex),
                Err(err) => {
                    let message = format!("invalid regular expression: {}", regex_reason(&err));
                    self.report(span, &path, message, None);
                    ok = false;
                }
            }
        }
        ok.then_some(patterns)
    }

    fn replication(&mut self, root: &dyn TableLike) -> Option<ReplicationConfig> {
        let mut config = ReplicationConfig::default();
        let Some(f) = field(root, "", "replication") else {
            return Some(config);
        };
        let table = self.table(&f)?;
        self.unknown_keys(table, "replication", REPLICATION_KEYS, &|_| None);
        let before = self.problems.len();
        if let Some(f) = field(table, "replication", "sync") {
            if let Some(sync) = self.string(&f) {
                if replication::valid_sync_name(&sync) {
                    config.sync = sync;
                } else {
                    let message = format!(
                        "must be 1 to {} characters of a-z, 0-9 and _, beginning with a letter",
                        replication::SYNC_NAME_MAX_LEN
                    );
                    self.report(f.span(), &f.path, message, None);
                }
            }
        }
        if let Some(f) = field(table, "replication", "daemon_name") {
            if let Some(name) = self.string(&f) {
                if replication::valid_daemon_name(&name) {
                    config.daemon_name = Some(name);
                } else {
                    let message = format!(
                        "must be 1 to {} characters, not blank, without control characters",
                        replication::DAEMON_NAME_MAX_LEN
                    );
                    self.report(f.span(), &f.path, message, None);
                }
            }
        }
        if let Some(f) = field(table, "replication", "conflict") {
            if let Some(policy) = self.conflict(&f) {
                config.conflict = policy;
            }
        }
        if let Some(f) = field(table, "replication", "allow_apply_triggers") {
            if let Some(allow) = self.boolean(&f) {
                config.allow_apply_triggers = allow;
            }
        }
        if let Some(f) = field(table, "replication", "batch_rows") {
            if let Some(n) = self.positive(&f) {
                config.batch_rows = n;
            }
        }
        if let Some(f) = field(table, "replication", "batch_megabytes") {
            if let Some(n) = self.positive(&f) {
                config.batch_megabytes = n;
            }
        }
        if let Some(f) = field(table, "replication", "poll_interval_ms") {
            if let Some(ms) = self.positive(&f) {
                config.poll_interval = Duration::from_millis(u64::from(ms));
            }
        }
        if let Some(f) = field(table, "replication", "max_clock_skew_ms") {
            if let Some(ms) = self.positive(&f) {
                config.max_clock_skew = Duration::from_millis(u64::from(ms));
            }
        }
        (self.problems.len() == before).then_some(config)
    }

    fn conflict(&mut self, f: &Field) -> Option<ConflictPolicy> {
        let values = ConflictPolicy::ALL.map(|p| (p.as_str(), p));
        self.choice(f, &values)
    }

    fn install(&mut self, root: &dyn TableLike) -> Option<InstallConfig> {
        let mut config = InstallConfig::default();
        let Some(f) = field(root, "", "install") else {
            return Some(config);
        };
        let table = self.table(&f)?;
        self.unknown_keys(table, "install", INSTALL_KEYS, &|_| None);
        let before = self.problems.len();
        if let Some(f) = field(table, "install", "lock_timeout_ms") {
            if let Some(ms) = self.positive(&f) {
                config.lock_timeout = Duration::from_millis(u64::from(ms));
            }
        }
        if let Some(f) = field(table, "install", "max_attempts") {
            if let Some(n) = self.positive(&f) {
                config.max_attempts = n;
            }
        }
        (self.problems.len() == before).then_some(config)
    }

    fn onetimecopy(&mut self, root: &dyn TableLike) -> Option<OnetimecopyConfig> {
        let mut config = OnetimecopyConfig::default();
        let Some(f) = field(root, "", "onetimecopy") else {
            return Some(config);
        };
        let table = self.table(&f)?;
        self.unknown_keys(table, "onetimecopy", ONETIMECOPY_KEYS, &|_| None);
        let before = self.problems.len();
        if let Some(f) = field(table, "onetimecopy", "mode") {
            let values = CopyMode::ALL.map(|m| (m.as_str(), m));
            if let Some(mode) = self.choice(&f, &values) {
                config.mode = mode;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "from") {
            if let Some(side) = self.choice(&f, &[("left", Side::Left), ("right", Side::Right)]) {
                config.from = side;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "jobs") {
            if let Some(n) = self.positive(&f) {
                config.jobs = n;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "range_rows") {
            if let Some(n) = self.positive(&f) {
                config.range_rows = n;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "defer_indexes") {
            if let Some(b) = self.boolean(&f) {
                config.defer_indexes = b;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "fk") {
            let values = FkStrategy::ALL.map(|s| (s.as_str(), s));
            if let Some(fk) = self.choice(&f, &values) {
                config.fk = fk;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "copy_format") {
            let values = CopyFormat::ALL.map(|c| (c.as_str(), c));
            if let Some(format) = self.choice(&f, &values) {
                config.copy_format = format;
            }
        }
        if let Some(f) = field(table, "onetimecopy", "rebuild_indexes") {
            if let Some(b) = self.boolean(&f) {
                config.rebuild_indexes = b;
            }
        }
        (self.problems.len() == before).then_some(config)
    }

    fn table_overrides(&mut self, root: &dyn TableLike) -> Option<Vec<TableOverride>> {
        let Some(f) = field(root, "", "table") else {
            return Some(Vec::new());
        };
        let entries: Vec<(&dyn TableLike, Span)> = match f.item {
            Item::ArrayOfTables(array) => array
                .iter()
                .map(|t| (t as &dyn TableLike, t.span()))
                .collect(),
            Item::Value(Value::Array(array)) if array.iter().all(Value::is_inline_table) => array
                .iter()
                .filter_map(|v| v.as_inline_table().map(|t| (t as &dyn TableLike, v.span())))
                .collect(),
            _ => {
                let hint = "write one [[table]] entry per table, with name = \"schema.table\"";
                self.wrong_type(&f, "an array of tables", Some(hint.into()));
                return None;
            }
        };
        let before = self.problems.len();
        let mut overrides = Vec::new();
        // Plain qualified name -> (index, line) of its first entry.
        let mut seen: Vec<(String, usize, Span)> = Vec::new();
        for (i, (entry, entry_span)) in entries.into_iter().enumerate() {
            let parent = format!("table[{i}]");
            self.unknown_keys(entry, &parent, TABLE_KEYS, &|_| None);
            let conflict = field(entry, &parent, "conflict").and_then(|f| self.conflict(&f));
            let Some(nf) = field(entry, &parent, "name") else {
                self.report(
                    entry_span.or_else(|| f.span()),
                    &join(&parent, "name"),
                    "required key is missing",
                    Some("add name = \"schema.table\"".into()),
                );
                continue;
            };
            let Some(name) = self.string(&nf) else {
                continue;
            };
            let (schema, table) = match tables::parse_qualified_name(&name) {
                Ok(parts) => parts,
                Err(err) => {
                    self.report(nf.span(), &nf.path, err.message, err.hint.map(Into::into));
                    continue;
                }
            };
            let o = TableOverride {
                schema,
                table,
                conflict,
            };
            let qualified = o.qualified();
            if let Some((_, first, first_span)) = seen.iter().find(|(q, _, _)| *q == qualified) {
                let line = first_span.as_ref().map(|s| {
                    self.lines
                        .position(self.expanded.original_offset(s.start))
                        .0
                });
                let message = match line {
                    Some(line) => format!("names the same table as table[{first}] (line {line})"),
                    None => format!("names the same table as table[{first}]"),
                };
                self.report(
                    nf.span(),
                    &nf.path,
                    message,
                    Some("merge the two entries".into()),
                );
                continue;
            }
            seen.push((qualified, i, nf.span()));
            overrides.push(o);
        }
        (self.problems.len() == before).then_some(overrides)
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
