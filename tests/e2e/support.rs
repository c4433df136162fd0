//! The e2e side of the harness: configuration files for a test pair, running the
//! binary (to its end, or in the background through the kit's daemon handle), and
//! reading what pgduplex captured, with queries of the test's own (never through
//! pgduplex's code). The kit's harness ([`pgduplex_testkit::harness`]: `wait_for`,
//! `assert_converged`, ...) is re-exported from here.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use pgduplex_testkit::harness::{
    assert_converged, assert_drained, clients, last_conflicts, pending, sessions, wait_for, Daemon,
    DaemonCommand,
};
use pgduplex_testkit::{TestDb, TestPair};
use tokio_postgres::Client;

/// A configuration file in a temp dir; removed on drop.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pgduplex.toml");
        std::fs::write(&path, text).expect("write config");
        ConfigFile { _dir: dir, path }
    }

    /// `[left]`/`[right]` pointing at the pair's databases (superuser), plus `extra`.
    pub fn for_pair(pair: &TestPair, extra: &str) -> ConfigFile {
        Self::for_urls(&pair.left.url(), &pair.right.url(), extra)
    }

    pub fn for_urls(left: &str, right: &str, extra: &str) -> ConfigFile {
        ConfigFile::new(&format!(
            "[left]\nurl = {}\n\n[right]\nurl = {}\n\n{extra}\n",
            toml_string(left),
            toml_string(right)
        ))
    }
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What a run of the binary printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs `pgduplex --config <config> <args>` (blocking; call from spawn_blocking or
/// sync tests, or through [`pgduplex_async`]).
pub fn pgduplex(config: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_pgduplex"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("PGDUPLEX_CONFIG")
        .env("RUST_LOG", "info")
        .output()
        .expect("run pgduplex");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`pgduplex`] without blocking the runtime.
pub async fn pgduplex_async(config: &Path, args: &[&str]) -> Run {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        pgduplex(&config, &a)
    })
    .await
    .expect("join")
}

/// A delta row as the test reads it: operation and the key as jsonb text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub op: String,
    pub key: serde_json::Value,
}

pub fn d(op: &str, key: serde_json::Value) -> Delta {
    Delta {
        op: op.to_string(),
        key,
    }
}

/// The delta rows recorded for `schema.table`, in capture order, with the key
/// columns named as in the user's table (the delta table stores them as k1, k2, ...
/// and `pgduplex.replicated_table.key_columns` says which is which).
pub async fn deltas(client: &Client, schema: &str, table: &str) -> Vec<Delta> {
    let row = client
        .query_one(
            "SELECT id, key_columns FROM pgduplex.replicated_table WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .expect("table is recorded as replicated");
    let id: i32 = row.get(0);
    let key_columns: Vec<String> = row.get(1);
    let rows = client
        .query(
            &format!("SELECT op::text, to_jsonb(d)::text FROM pgduplex.delta_{id} d ORDER BY seq"),
            &[],
        )
        .await
        .expect("read deltas");
    rows.iter()
        .map(|r| {
            let all: serde_json::Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
            let mut key = serde_json::Map::new();
            for (i, name) in key_columns.iter().enumerate() {
                key.insert(name.clone(), all[format!("k{}", i + 1)].clone());
            }
            Delta {
                op: r.get(0),
                key: serde_json::Value::Object(key),
            }
        })
        .collect()
}

/// Empties every delta table and the truncate log (between steps of a test).
pub async fn clear_deltas(client: &Client) {
    client
        .batch_execute(
            "DO $$DECLARE r record; BEGIN \
               FOR r IN SELECT id FROM pgduplex.replicated_table LOOP \
                 EXECUTE format('DELETE FROM pgduplex.%I', 'delta_' || r.id); END LOOP; \
               DELETE FROM pgduplex.truncate_log; END$$",
        )
        .await
        .expect("clear deltas");
}

/// Rows of the truncate log: (truncated schema.table, txid).
pub async fn truncates(client: &Client) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT truncated_schema || '.' || truncated_table, txid FROM pgduplex.truncate_log ORDER BY seq",
            &[],
        )
        .await
        .expect("read truncate log")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Everything of pgduplex's found in the catalogs (namespaces, relations,
/// functions, triggers), as text, for "uninstall leaves nothing" checks.
pub async fn pgduplex_objects(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT 'namespace ' || nspname FROM pg_namespace WHERE nspname LIKE 'pgduplex%' \
             UNION ALL SELECT 'class ' || c.oid::regclass::text FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgduplex' \
             UNION ALL SELECT 'proc ' || p.oid::regprocedure::text FROM pg_proc p \
               JOIN pg_namespace n ON n.oid = p.pronamespace \
              WHERE n.nspname = 'pgduplex' OR p.proname LIKE 'pgduplex%' OR p.proname LIKE 'capture\\_%' \
             UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger \
              WHERE tgname LIKE 'pgduplex%' \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every user row of the database as text, table by table, to prove data was not
/// touched (byte-identical text forms, sorted).
pub async fn all_user_rows(db: &TestDb) -> Vec<(String, Vec<String>)> {
    let client = db.client().await.expect("connect");
    let tables = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgduplex') \
                AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("list tables");
    let mut out = Vec::new();
    for t in tables {
        let schema: String = t.get(0);
        let name: String = t.get(1);
        let rows = pgduplex_testkit::compare::table_rows_text(&client, &schema, &name)
            .await
            .expect("read rows");
        out.push((format!("{schema}.{name}"), rows));
    }
    out
}

/// The one value (a count) `sql` returns.
pub async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Delta rows in a canonical order. Statement-level capture writes the rows of one
/// statement in no particular order (a key change's 'D' may come after its 'I'), so
/// tests compare captured changes as multisets.
pub fn sorted(mut v: Vec<Delta>) -> Vec<Delta> {
    v.sort_by_key(|d| (d.key.to_string(), d.op.clone()));
    v
}

/// The tables recorded in `pgduplex.replicated_table`, as `schema.table`.
pub async fn replicated_tables(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT table_schema || '.' || table_name FROM pgduplex.replicated_table ORDER BY 1",
            &[],
        )
        .await
        .expect("read replicated_table")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A configuration connecting as a new plain role (not a superuser: no
/// `session_replication_role`, so the server checks foreign keys on apply) that
/// owns every table of schema `public` on both sides and may create schemas.
pub async fn config_as_owner(pair: &TestPair, extra: &str) -> ConfigFile {
    let name = pgduplex_testkit::db::unique_name("applier");
    pair.create_role(&name, "applier-pw", "").await.unwrap();
    let q = pgduplex_testkit::db::quote_ident(&name);
    pair.execute_both(&format!(
        "DO $$DECLARE r record; BEGIN
           FOR r IN SELECT c.oid::regclass::text AS t FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') LOOP
             EXECUTE format('ALTER TABLE %s OWNER TO %s', r.t, {lit});
           END LOOP; END$$;
         GRANT CREATE ON DATABASE {db} TO {q};",
        lit = pgduplex_testkit::db::quote_literal(&q),
        db = pgduplex_testkit::db::quote_ident(pair.left.name()),
    ))
    .await
    .unwrap();
    ConfigFile::for_urls(
        &pair.left.url_for(&name, "applier-pw"),
        &pair.right.url_for(&name, "applier-pw"),
        extra,
    )
}

/// `pgduplex --config <config> <args>` in the background: the kit's daemon handle on
/// this crate's binary (the log at `info`, in a temp dir of the handle's, unless the
/// returned command says otherwise).
pub fn daemon(config: &Path, args: &[&str]) -> DaemonCommand {
    Daemon::command(env!("CARGO_BIN_EXE_pgduplex"), config, args)
}

/// `pgduplex replicate` in the background.
pub fn start_replicate(cfg: &ConfigFile) -> Daemon {
    daemon(&cfg.path, &["replicate"]).start()
}
