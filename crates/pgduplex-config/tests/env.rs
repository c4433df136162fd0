//! `${VAR}` expansion.

use crate::support::{minimal, ok, problem, problems};

#[test]
fn variables_are_expanded_anywhere_outside_comments() {
    let config = ok(r#"
# A commented line may name a variable nobody set: ${NOT_SET}
[left]
url = "postgres://app:${LEFT_PASSWORD}@${DB_HOST}/app" # and ${NOT_SET_EITHER}
[right]
url = "postgres://app@${DB_HOST}:6432/app?password=${RIGHT_PASSWORD}"
[install]
max_attempts = ${ATTEMPTS}
"#);
    assert_eq!(config.install.max_attempts, 9);
    assert_eq!(
        config.left.connection.password.as_ref().unwrap().expose(),
        "l3ft-Pa55"
    );
    assert_eq!(
        config.left.connection.hosts,
        vec![pgduplex_config::Host::Tcp("db.internal".into())]
    );
    assert_eq!(
        config.right.connection.password.as_ref().unwrap().expose(),
        "r1ght-Pa55"
    );
}

#[test]
fn escaped_reference_is_literal() {
    // `$${` keeps `${` in the value: here the URL's dbname becomes `${x}` (encoded).
    let config = ok(&minimal("").replace("left.example.com/app", "left.example.com/a$${x}"));
    assert_eq!(config.left.connection.dbname.as_deref(), Some("a${x}"));
}

#[test]
fn missing_variable_names_it_and_its_line() {
    let text = "[left]\nurl = \"postgres://app:${LEFT_PASSWORD}@h/db\"\n[right]\nurl = \"postgres://app:${NOPE_PASSWORD}@h/db\"\n";
    let p = problem(text);
    assert_eq!(p.line, Some(4));
    assert_eq!(p.column, Some(23));
    assert_eq!(p.key, "right.url");
    assert!(p.message.contains("`NOPE_PASSWORD` is not set"), "{p}");
    assert_eq!(
        p.to_string(),
        "pgduplex.toml:4:23: right.url: environment variable `NOPE_PASSWORD` is not set; set it, or write `$${` for a literal `${`"
    );
}

#[test]
fn every_missing_variable_is_reported() {
    let ps = problems("[left]\nurl = \"${A}\"\n[right]\nurl = \"${B}\"\nx = ${C}\n");
    let names: Vec<_> = ps.iter().map(|p| (p.line, p.message.clone())).collect();
    assert_eq!(ps.len(), 3, "{names:?}");
    assert_eq!(ps[0].line, Some(2));
    assert_eq!(ps[1].line, Some(4));
    assert_eq!(ps[2].line, Some(5));
    // A bare `${C}` is not valid TOML before expansion, so no key is known.
    assert_eq!(ps[2].key, "");
}

#[test]
fn malformed_reference() {
    let p = problem(&minimal("[replication]\nsync = \"${not valid}\"\n"));
    assert_eq!(p.line, Some(7));
    assert_eq!(p.key, "replication.sync");
    assert!(p.message.contains("does not begin a reference"), "{p}");
}

#[test]
fn positions_after_an_expansion_point_into_the_original_text() {
    // The value of LEFT_PASSWORD is longer than the reference; the column of the
    // bad key after it must still be the one in the file.
    let text = "left = { url = \"postgres://a:${LEFT_PASSWORD}@h/d\", urll = 1 }\n[right]\nurl = \"postgres://a@h/d\"\n";
    let p = problem(text);
    assert_eq!(p.key, "left.urll");
    assert_eq!(
        (p.line, p.column),
        (Some(1), Some(text.find("urll").unwrap() + 1))
    );
}

#[test]
fn a_value_that_breaks_toml_gets_a_hint_and_is_not_shown() {
    let env = std::collections::HashMap::from([("PW", "bad\"quote-SECRET")]);
    let text = "[left]\nurl = \"postgres://a:${PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n";
    let err = pgduplex_config::Config::parse(text, std::path::Path::new("p.toml"), &|n| {
        env.get(n).map(|v| v.to_string())
    })
    .unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    let p = &err.problems()[0];
    assert_eq!(p.line, Some(2));
    assert!(p.message.starts_with("invalid TOML"), "{p}");
    assert!(
        p.hint.as_deref().unwrap().contains("inserted verbatim"),
        "{p}"
    );
}

#[test]
fn a_missing_variable_does_not_hide_other_problems_nor_add_its_own() {
    let text = "[left]\nurl = \"postgres://app:${LEFT_PASSWORD}@h/db\"\n[right]\nurl = \"postgres://${NO_USER}@h/db\"\nsslmode = \"verify_full\"\n[install]\nmax_attempts = ${NO_ATTEMPTS}0\n";
    let ps = problems(text);
    let keys: Vec<(&str, Option<usize>)> = ps.iter().map(|p| (p.key.as_str(), p.line)).collect();
    // right.url would have no user and install.max_attempts would be 0 without the
    // variables: those consequences are not reported.
    assert_eq!(
        keys,
        vec![
            ("right.url", Some(4)),
            ("right.sslmode", Some(5)),
            ("install.max_attempts", Some(7)),
        ],
        "{ps:#?}"
    );
    assert!(ps[0].message.contains("`NO_USER`"));
    assert!(ps[2].message.contains("`NO_ATTEMPTS`"));
}
