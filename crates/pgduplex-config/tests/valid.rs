//! Valid files: every field read, defaults, lookups.

use std::path::Path;
use std::time::Duration;

use pgduplex_config::{
    host_name, ConflictPolicy, Host, RootCert, Side, SslMode, TargetSessionAttrs,
    DEFAULT_CONFLICT_POLICY, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_SYNC_NAME,
};

use crate::support::{minimal, ok, parse_at};

const EXAMPLE: &str = include_str!("../../../config/pgduplex.example.toml");

#[test]
fn the_example_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("right-password");
    std::fs::write(&secret, "r1ght-Pa55\n").unwrap();
    let text = EXAMPLE.replace("/run/secrets/right-password", secret.to_str().unwrap());
    let config = parse_at(&text, Path::new("config/pgduplex.example.toml"))
        .unwrap_or_else(|e| panic!("{e}"));

    let left = &config.left.connection;
    assert_eq!(config.left.side, Side::Left);
    assert_eq!(left.hosts, vec![Host::Tcp("old-db.example.com".into())]);
    assert_eq!(left.ports, vec![5432]);
    assert_eq!(left.user.as_deref(), Some("app"));
    assert_eq!(left.dbname.as_deref(), Some("app"));
    assert_eq!(left.password.as_ref().unwrap().expose(), "l3ft-Pa55");
    assert_eq!(left.tls.mode, SslMode::Require);

    let right = &config.right.connection;
    assert_eq!(config.right.side, Side::Right);
    assert_eq!(right.password.as_ref().unwrap().expose(), "r1ght-Pa55");
    assert_eq!(right.tls.mode, SslMode::VerifyFull);
    assert_eq!(right.tls.root_cert, Some(RootCert::System));

    assert!(config.tables.selects("public.accounts"));
    assert!(!config.tables.selects("public.tmp_import"));
    assert!(!config.tables.selects("audit.log"));
    assert_eq!(config.replication.conflict, ConflictPolicy::LeftWins);
    assert_eq!(
        config.conflict_for("public.accounts"),
        ConflictPolicy::RightWins
    );
    assert_eq!(
        config.conflict_for("public.orders"),
        ConflictPolicy::LeftWins
    );
    assert_eq!(config.source, Path::new("config/pgduplex.example.toml"));
}

#[test]
fn every_option_of_the_contract_is_in_the_example() {
    for key in [
        "url",
        "password_file",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "[tables]",
        "include",
        "exclude",
        "[replication]",
        "sync",
        "daemon_name",
        "conflict",
        "allow_apply_triggers",
        "[install]",
        "lock_timeout_ms",
        "max_attempts",
        "[onetimecopy]",
        "copy_format",
        "rebuild_indexes",
        "[[table]]",
        "name",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
        "options",
    ] {
        assert!(
            EXAMPLE.contains(key),
            "{key} is not documented in the example"
        );
    }
}

#[test]
fn a_full_file() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let text = r#"
[left]
url = "postgresql://app:${LEFT_PASSWORD}@a1:5433,a2/app?application_name=mover&connect_timeout=10&options=-c%20work_mem%3D64MB&target_session_attrs=any"
sslmode = "verify-ca"
sslrootcert = "ca.pem"
sslcert = "client.pem"
sslkey = "client.key"

[right]
url = "postgres://replicator:${RIGHT_PASSWORD}@[2001:db8::1]:6432/app?sslmode=require"

[tables]
include = ['^public\.', '^billing\.']
exclude = ['_old$']

[replication]
sync = "orders_1"
daemon_name = "mover on db-7"
conflict = "latest_wins"
allow_apply_triggers = true

[install]
lock_timeout_ms = 1500
max_attempts = 7

[[table]]
name = "billing.invoices"
conflict = "ignore"

[[table]]
name = '"My Schema"."My.Table"'
conflict = "right_wins"

[[table]]
name = "public.plain"
"#;
    let config =
        parse_at(text, &dir.path().join("pgduplex.toml")).unwrap_or_else(|e| panic!("{e}"));
    let left = &config.left.connection;
    assert_eq!(
        left.hosts,
        vec![Host::Tcp("a1".into()), Host::Tcp("a2".into())]
    );
    assert_eq!(left.ports, vec![5433, 5432]);
    assert_eq!(left.application_name.as_deref(), Some("mover"));
    assert_eq!(left.connect_timeout, Some(Duration::from_secs(10)));
    assert_eq!(left.options.as_deref(), Some("-c work_mem=64MB"));
    assert_eq!(left.target_session_attrs, TargetSessionAttrs::Any);
    assert_eq!(left.tls.mode, SslMode::VerifyCa);
    assert_eq!(
        left.tls.root_cert,
        Some(RootCert::File(dir.path().join("ca.pem")))
    );
    assert_eq!(left.tls.client_cert, Some(dir.path().join("client.pem")));
    assert_eq!(left.tls.client_key, Some(dir.path().join("client.key")));

    let right = &config.side(Side::Right).connection;
    assert_eq!(right.hosts, vec![Host::Tcp("2001:db8::1".into())]);
    assert_eq!(right.ports, vec![6432]);
    assert_eq!(right.user.as_deref(), Some("replicator"));
    assert_eq!(right.tls.mode, SslMode::Require);
    assert_eq!(right.tls.effective_mode(), SslMode::Require);

    assert!(config.tables.selects("public.x"));
    assert!(config.tables.selects("billing.y"));
    assert!(!config.tables.selects("billing.y_old"));
    assert!(!config.tables.selects("other.z"));
    assert_eq!(config.tables.include().len(), 2);
    assert_eq!(config.tables.exclude().len(), 1);

    assert_eq!(config.replication.sync, "orders_1");
    assert_eq!(
        config.replication.daemon_name.as_deref(),
        Some("mover on db-7")
    );
    assert_eq!(config.replication.daemon_name(), "mover on db-7");
    assert_eq!(config.replication.conflict, ConflictPolicy::LatestWins);
    assert!(config.replication.allow_apply_triggers);
    assert_eq!(config.install.lock_timeout, Duration::from_millis(1500));
    assert_eq!(config.install.max_attempts, 7);

    assert_eq!(config.table_overrides.len(), 3);
    assert_eq!(config.table_overrides[1].schema, "My Schema");
    assert_eq!(config.table_overrides[1].table, "My.Table");
    assert_eq!(
        config.conflict_for("billing.invoices"),
        ConflictPolicy::Ignore
    );
    assert_eq!(
        config.conflict_for("My Schema.My.Table"),
        ConflictPolicy::RightWins
    );
    assert_eq!(
        config.conflict_for_table("My Schema", "My.Table"),
        ConflictPolicy::RightWins
    );
    // An entry without `conflict` falls back to the global policy.
    assert_eq!(
        config.conflict_for("public.plain"),
        ConflictPolicy::LatestWins
    );
    assert_eq!(
        config.conflict_for("public.other"),
        ConflictPolicy::LatestWins
    );
}

#[test]
fn defaults() {
    let config = ok(&minimal(""));
    let left = &config.left.connection;
    assert_eq!(left.ports, vec![5432]);
    assert_eq!(left.tls.mode, SslMode::Prefer);
    assert_eq!(left.tls.root_cert, None);
    assert_eq!(left.tls.client_cert, None);
    assert_eq!(left.tls.client_key, None);
    assert_eq!(left.connect_timeout, None);
    assert_eq!(left.application_name, None);
    assert_eq!(left.options, None);
    assert_eq!(left.target_session_attrs, TargetSessionAttrs::ReadWrite);
    assert!(config.tables.include().is_empty());
    assert!(config.tables.exclude().is_empty());
    assert!(config.tables.selects("anything.at_all"));
    assert_eq!(config.replication.sync, DEFAULT_SYNC_NAME);
    assert_eq!(config.replication.sync, "main");
    // Not given: the machine's host name, read when asked for.
    assert_eq!(config.replication.daemon_name, None);
    assert_eq!(config.replication.daemon_name(), host_name());
    assert_eq!(config.replication.conflict, DEFAULT_CONFLICT_POLICY);
    assert!(!config.replication.allow_apply_triggers);
    assert_eq!(config.install.lock_timeout, DEFAULT_LOCK_TIMEOUT);
    assert_eq!(config.install.lock_timeout, Duration::from_millis(200));
    assert_eq!(config.install.max_attempts, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(config.install.max_attempts, 50);
    assert!(config.table_overrides.is_empty());
    assert_eq!(config.conflict_for("public.x"), ConflictPolicy::LeftWins);
}

#[test]
fn inline_tables_and_dotted_keys_are_accepted() {
    let config = ok(r#"
left = { url = "postgres://a@l/db" }
right.url = "postgres://a@r/db"
right.sslmode = "disable"
table = [{ name = "public.t", conflict = "ignore" }]
"#);
    assert_eq!(config.right.connection.tls.mode, SslMode::Disable);
    assert_eq!(config.conflict_for("public.t"), ConflictPolicy::Ignore);
}

#[test]
fn side_keys_override_the_url() {
    let config = ok(&minimal("").replace(
        "left.example.com/app\"",
        "left.example.com/app?sslmode=require\"\nsslmode = \"disable\"",
    ));
    assert_eq!(config.left.connection.tls.mode, SslMode::Disable);
}

#[test]
fn side_lookup_and_other() {
    let config = ok(&minimal(""));
    for side in Side::BOTH {
        assert_eq!(config.side(side).side, side);
        assert_ne!(side.other(), side);
        assert_eq!(side.other().other(), side);
    }
    assert_eq!(Side::Left.to_string(), "left");
    assert_eq!(Side::Right.to_string(), "right");
}

#[test]
fn redacted_url_has_no_password() {
    let config = ok(r#"
[left]
url = "postgres://app:${LEFT_PASSWORD}@db.example.com:5432/app?sslmode=require"
[right]
url = "postgres://us%40er:${RIGHT_PASSWORD}@h1,[::1]:6000/my%20db?host=%2Ftmp,h2&application_name=a%20b"
"#);
    assert_eq!(
        config.left.connection.redacted(),
        "postgres://app@db.example.com:5432/app?sslmode=require"
    );
    let right = config.right.connection.redacted();
    assert_eq!(
        right,
        "postgres://us%40er@%2Ftmp:5432,h2:6000/my%20db?sslmode=prefer&application_name=a%20b"
    );
    for secret in config.secrets() {
        assert!(!right.contains(&secret));
        assert!(!format!("{config:?}").contains(&secret));
    }
    assert!(format!("{config:?}").contains("[redacted]"));
}

#[test]
fn secrets_lists_every_password() {
    let config = ok(&minimal(""));
    let mut secrets = config.secrets();
    secrets.sort();
    assert_eq!(secrets, vec!["l3ft-Pa55", "r1ght-Pa55"]);
}
