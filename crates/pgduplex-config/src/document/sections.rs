//! The sections of the configuration file, each read into its typed part of
//! [`Config`](crate::Config): `[left]`/`[right]` (connection, TLS files, password
//! file), `[tables]`, `[replication]`, `[install]`, `[onetimecopy]` and the
//! `[[table]]` overrides. The generic readers (types, choices, unknown keys) and the
//! spans they report are in the parent module.

use super::*;

impl Cx<'_> {
    /// `[left]` / `[right]`. Long (about 165 lines) on purpose: the keys are read
    /// one after another in the order they override each other (`url`, then the
    /// keys that override it, then the TLS files that depend on both), each
    /// reporting its own problems; split up, every piece would need the parsed URL,
    /// its span and the settings gathered so far.
    pub(super) fn side(&mut self, root: &dyn TableLike, side: Side) -> Option<SideConfig> {
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

    pub(super) fn tables(&mut self, root: &dyn TableLike) -> Option<TableSelection> {
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

    pub(super) fn replication(&mut self, root: &dyn TableLike) -> Option<ReplicationConfig> {
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

    pub(super) fn install(&mut self, root: &dyn TableLike) -> Option<InstallConfig> {
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

    pub(super) fn onetimecopy(&mut self, root: &dyn TableLike) -> Option<OnetimecopyConfig> {
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

    pub(super) fn table_overrides(&mut self, root: &dyn TableLike) -> Option<Vec<TableOverride>> {
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
