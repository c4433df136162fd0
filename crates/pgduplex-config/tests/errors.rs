//! Invalid files: every problem reported at once, with position, key path and hint,
//! and never a value from the file.

use pgduplex_config::{Config, ConfigError, DAEMON_NAME_MAX_LEN};

use crate::support::{minimal, parse, problem, problem_at, problems};

#[test]
fn unknown_key_with_suggestion_and_line() {
    let text = "[left]\nurl = \"postgres://a@h/d\"\n\n[right]\nurll = \"postgres://a@h/d\"\n";
    let ps = problems(text);
    let p = problem_at(&ps, "right.urll");
    assert_eq!((p.line, p.column), (Some(5), Some(1)));
    assert_eq!(p.message, "unknown key");
    assert_eq!(p.hint.as_deref(), Some("did you mean `url`?"));
    assert_eq!(
        p.to_string(),
        "pgduplex.toml:5:1: right.urll: unknown key; did you mean `url`?"
    );
    // The url itself is then missing.
    let missing = problem_at(&ps, "right.url");
    assert_eq!(missing.line, Some(4));
    assert_eq!(missing.message, "required key is missing");
}

#[test]
fn unknown_keys_everywhere() {
    let text = minimal(
        r#"sslmod = "require"
[tables]
inclde = ["x"]
[replication]
conflicts = "left_wins"
lock_timeout_ms = 5
[install]
max_attempt = 3
[[table]]
name = "public.a"
conflcit = "ignore"
[extra]
"#,
    );
    let ps = problems(&text);
    let hints: Vec<(String, Option<String>)> =
        ps.iter().map(|p| (p.key.clone(), p.hint.clone())).collect();
    assert_eq!(
        hints,
        vec![
            (
                "right.sslmod".into(),
                Some("did you mean `sslmode`?".into())
            ),
            (
                "tables.inclde".into(),
                Some("did you mean `include`?".into())
            ),
            (
                "replication.conflicts".into(),
                Some("did you mean `conflict`?".into())
            ),
            (
                "replication.lock_timeout_ms".into(),
                Some("`lock_timeout_ms` belongs in [install]".into())
            ),
            (
                "install.max_attempt".into(),
                Some("did you mean `max_attempts`?".into())
            ),
            (
                "table[0].conflcit".into(),
                Some("did you mean `conflict`?".into())
            ),
            ("extra".into(), None),
        ],
        "{ps:#?}"
    );
    for p in &ps {
        assert_eq!(p.message, "unknown key", "{p}");
    }
}

#[test]
fn helpful_hints_for_connection_keys_outside_the_url() {
    let text = minimal("password = \"hunter2\"\nport = 5433\n");
    let ps = problems(&text);
    assert!(problem_at(&ps, "right.password")
        .hint
        .as_deref()
        .unwrap()
        .contains("password_file"));
    assert!(problem_at(&ps, "right.port")
        .hint
        .as_deref()
        .unwrap()
        .contains("in `url`"));
    let shown = ConfigError::Invalid { problems: ps }.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn wrong_types() {
    let text = minimal(
        r#"[tables]
include = "^public\\."
exclude = [1]
[replication]
sync = 7
allow_apply_triggers = "yes"
[install]
lock_timeout_ms = 2.5
max_attempts = 0
"#,
    );
    let ps = problems(&text);
    let messages: Vec<(String, Option<usize>, String)> = ps
        .iter()
        .map(|p| (p.key.clone(), p.line, p.message.clone()))
        .collect();
    assert_eq!(
        messages,
        vec![
            (
                "tables.include".into(),
                Some(7),
                "expected an array of strings, found a string".into()
            ),
            (
                "tables.exclude[0]".into(),
                Some(8),
                "expected a string, found an integer".into()
            ),
            (
                "replication.sync".into(),
                Some(10),
                "expected a string, found an integer".into()
            ),
            (
                "replication.allow_apply_triggers".into(),
                Some(11),
                "expected a boolean (true or false), found a string".into()
            ),
            (
                "install.lock_timeout_ms".into(),
                Some(13),
                "expected an integer, found a float".into()
            ),
            (
                "install.max_attempts".into(),
                Some(14),
                "must be between 1 and 4294967295".into()
            ),
        ]
    );
}

#[test]
fn sections_of_the_wrong_shape() {
    let ps = problems(
        "left = \"postgres://a@h/d\"\n[right]\nurl = 5\n[[tables]]\ninclude = []\n[table]\nname = \"public.a\"\n",
    );
    let p = problem_at(&ps, "left");
    assert_eq!(p.message, "expected a table, found a string");
    assert_eq!(
        problem_at(&ps, "right.url").message,
        "expected a string, found an integer"
    );
    let p = problem_at(&ps, "tables");
    assert_eq!(p.message, "expected a table, found an array of tables");
    assert!(p.hint.as_deref().unwrap().contains("[[table]]"));
    let p = problem_at(&ps, "table");
    assert_eq!(p.message, "expected an array of tables, found a table");
    assert_eq!(p.line, Some(6));
}

#[test]
fn missing_sections_and_url() {
    let ps = problems("[right]\nsslmode = \"require\"\n");
    assert_eq!(ps.len(), 2, "{ps:#?}");
    let url = problem_at(&ps, "right.url");
    assert_eq!(url.line, Some(1));
    let left = problem_at(&ps, "left");
    assert_eq!(left.line, None);
    assert_eq!(left.message, "missing section");
    assert_eq!(
        left.to_string(),
        "pgduplex.toml: left: missing section; add [left] with url = \"postgres://user@host:5432/dbname\""
    );
    // Positionless problems come last.
    assert_eq!(ps.last().unwrap().key, "left");
    let ps = problems("");
    assert_eq!(ps.len(), 2);
}

#[test]
fn bad_enum_values_suggest_the_right_one() {
    let ps = problems(&minimal(
        "sslmode = \"verify_full\"\n[replication]\nconflict = \"left-wins\"\n[[table]]\nname = \"public.a\"\nconflict = \"newest\"\n",
    ));
    let p = problem_at(&ps, "right.sslmode");
    assert_eq!(p.message, "unknown sslmode");
    assert_eq!(p.hint.as_deref(), Some("did you mean `verify-full`?"));
    let p = problem_at(&ps, "replication.conflict");
    assert_eq!((p.line, p.column), (Some(8), Some(12)));
    assert_eq!(p.hint.as_deref(), Some("did you mean `left_wins`?"));
    let p = problem_at(&ps, "table[0].conflict");
    assert_eq!(
        p.hint.as_deref(),
        Some("use one of: left_wins, right_wins, latest_wins, ignore")
    );
}

#[test]
fn bad_regex_points_at_the_pattern() {
    let text =
        minimal("[tables]\ninclude = [\n  '^public\\.',\n  '^(audit',\n]\nexclude = ['[z-a]']\n");
    let ps = problems(&text);
    assert_eq!(ps.len(), 2, "{ps:#?}");
    let p = problem_at(&ps, "tables.include[1]");
    assert_eq!((p.line, p.column), (Some(9), Some(3)));
    assert_eq!(p.message, "invalid regular expression: unclosed group");
    let p = problem_at(&ps, "tables.exclude[0]");
    assert_eq!((p.line, p.column), (Some(11), Some(12)));
    assert!(!p.message.contains("z-a"), "{p}");
}

#[test]
fn empty_include_is_an_error() {
    let p = problem(&minimal("[tables]\ninclude = []\n"));
    assert_eq!(p.key, "tables.include");
    assert!(p.hint.as_deref().unwrap().contains("leave `include` out"));
}

#[test]
fn bad_sync_name() {
    let p = problem(&minimal("[replication]\nsync = \"Main-Sync\"\n"));
    assert_eq!(p.key, "replication.sync");
    assert!(p.message.contains("a-z, 0-9 and _"), "{p}");
    assert!(!p.to_string().contains("Main-Sync"));
}

#[test]
fn bad_daemon_name() {
    for bad in [
        "\"\"",
        "\"  \"",
        "\"a\\tb\"",
        &format!("\"{}\"", "h".repeat(DAEMON_NAME_MAX_LEN + 1)),
    ] {
        let p = problem(&minimal(&format!("[replication]\ndaemon_name = {bad}\n")));
        assert_eq!(p.key, "replication.daemon_name");
        assert_eq!((p.line, p.column), (Some(7), Some(15)), "{p}");
        assert!(p.message.contains("1 to 64 characters"), "{p}");
    }
    let p = problem(&minimal("[replication]\ndaemon_name = 7\n"));
    assert_eq!(p.message, "expected a string, found an integer");
    let p = problem(&minimal("[replication]\ndaemon = \"x\"\n"));
    assert_eq!(p.key, "replication.daemon");
    assert_eq!(p.hint.as_deref(), Some("did you mean `daemon_name`?"));
}

#[test]
fn toml_syntax_error() {
    let p = problem("[left]\nurl = \"postgres://a@h/d\"\n[right\n");
    assert_eq!(p.line, Some(3));
    assert_eq!(p.key, "");
    assert!(p.message.starts_with("invalid TOML: "), "{p}");
    assert!(!p.message.contains('\n'));
}

#[test]
fn syntax_error_column_after_non_ascii_text() {
    // Columns count characters, while spans are bytes.
    let p = problem("# é ü ö\n[left]\nurl = \"ü\" x\n");
    assert_eq!((p.line, p.column), (Some(3), Some(11)));
}

#[test]
fn invalid_url_problems_are_reported_at_the_url() {
    let ps = problems(&minimal("").replace(
        "right.example.com/app\"",
        "right.example.com:54x2/app?sslmod=require\"",
    ));
    assert_eq!(ps.len(), 2, "{ps:#?}");
    for p in &ps {
        assert_eq!(p.key, "right.url");
        assert_eq!((p.line, p.column), (Some(5), Some(7)));
    }
    assert_eq!(ps[0].message, "invalid URL: host 1: port is not a number");
    assert_eq!(
        ps[1].message,
        "invalid URL: parameter 1 is not a known parameter"
    );
    assert_eq!(ps[1].hint.as_deref(), Some("did you mean `sslmode`?"));
}

#[test]
fn url_without_user() {
    let p = problem(&minimal("").replace("app:${RIGHT_PASSWORD}@", ""));
    assert_eq!(p.key, "right.url");
    assert_eq!(p.message, "the URL names no user");
}

#[test]
fn load_reports_a_missing_file_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains("--config"), "{shown}");
    assert!(shown.contains("PGDUPLEX_CONFIG"), "{shown}");
}

#[test]
fn load_reads_the_file_and_names_it_in_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgduplex.toml");
    std::fs::write(
        &path,
        "[left]\nurl = \"postgres://a@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\nbogus = 1\n",
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:5:1: right.bogus: unknown key", path.display())
    );
    std::fs::write(
        &path,
        "[left]\nurl = \"postgres://a@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.source, path);
}

#[test]
fn load_rejects_non_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgduplex.toml");
    std::fs::write(&path, b"[left]\nurl = \"\xff\"\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!((p.line, p.column), (Some(2), Some(8)));
    assert!(p.message.contains("UTF-8"));
}

#[test]
fn display_lists_every_problem_one_per_line() {
    let err = parse("[left]\nurll = 1\n[right]\nurll = 2\n").unwrap_err();
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), err.problems().len());
    assert_eq!(err.problems().len(), 4);
}

#[test]
fn duplicate_toml_keys() {
    let p = problem("[left]\nurl = \"postgres://a@h/d\"\nurl = \"postgres://a@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n");
    assert_eq!(p.line, Some(3));
    assert!(p.message.contains("duplicate key"), "{p}");
}
