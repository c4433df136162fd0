//! Conflicts: a key changed on both sides since they last agreed is decided by the
//! table's policy, the winner's row ends up on both sides (or, under `ignore`, each
//! side keeps its own), and the conflict is logged in `pgduplex.conflicts` with both
//! row images. Two sides that now hold the same row are not in conflict.
//!
//! Every case starts from a fresh pair that agrees (the same rows inserted on both
//! sides and replicated once), then changes both sides while no daemon runs, then
//! runs `replicate --until-idle` once.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pgduplex_testkit::TestPair;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::support::*;

// ---------------------------------------------------------------------------
// Helpers (also used by hard_cases.rs)
// ---------------------------------------------------------------------------

/// Runs `pgduplex --config <cfg> <args>` and waits at most `secs` seconds; on
/// timeout the process is killed and the test fails with the tail of its output
/// (a daemon retrying a failing batch for ever must not hang the test run), and,
/// given the pair, what each side's sessions were waiting for.
pub(crate) async fn run_bounded(
    pair: Option<&TestPair>,
    cfg: &Path,
    args: &[&str],
    secs: u64,
) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgduplex"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("PGDUPLEX_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .expect("run pgduplex");
    let waited = tokio::time::timeout(Duration::from_secs(secs), child.wait()).await;
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    match waited {
        Ok(status) => {
            let status = status.expect("wait for pgduplex");
            Run {
                code: status.code().unwrap_or(-1),
                stdout: read(&out_path),
                stderr: read(&err_path),
            }
        }
        Err(_) => {
            let mut listed = String::new();
            if let Some(pair) = pair {
                for (side, db) in [("left", &pair.left), ("right", &pair.right)] {
                    listed.push_str(&format!("\n--- {side} sessions\n{}", sessions(db)));
                }
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            let stderr = read(&err_path);
            let tail: String = {
                let chars: Vec<char> = stderr.chars().collect();
                chars[chars.len().saturating_sub(6000)..].iter().collect()
            };
            panic!(
                "pgduplex {args:?} did not finish within {secs} s (killed){listed}\n--- stdout\n{}\n--- stderr (tail)\n{tail}",
                read(&out_path)
            );
        }
    }
}

/// `replicate --until-idle`, bounded to 60 s, must exit 0.
pub(crate) async fn replicate_until_idle(pair: &TestPair, cfg: &Path) -> Run {
    let run = run_bounded(Some(pair), cfg, &["replicate", "--until-idle"], 60).await;
    run.assert_code(0);
    run
}

/// A row of `pgduplex.conflicts` as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logged {
    pub sync: String,
    pub table: String,
    pub key: Option<Value>,
    pub kind: String,
    pub left_row: Option<Value>,
    pub right_row: Option<Value>,
    /// `left_changed_at`, `right_changed_at` are set.
    pub times: (bool, bool),
    /// `left_changed_at < right_changed_at` (None when either is missing).
    pub left_earlier: Option<bool>,
    pub policy: String,
    pub winner: String,
}

pub(crate) async fn conflict_log(c: &Client) -> Vec<Logged> {
    let json = |s: Option<String>| s.map(|s| serde_json::from_str::<Value>(&s).unwrap());
    c.query(
        "SELECT sync, table_schema || '.' || table_name, key::text, kind, left_row::text, right_row::text, \
                left_changed_at IS NOT NULL, right_changed_at IS NOT NULL, \
                left_changed_at < right_changed_at, policy, winner \
           FROM pgduplex.conflicts ORDER BY table_schema, table_name, key::text, id",
        &[],
    )
    .await
    .expect("read pgduplex.conflicts")
    .into_iter()
    .map(|r| Logged {
        sync: r.get(0),
        table: r.get(1),
        key: json(r.get(2)),
        kind: r.get(3),
        left_row: json(r.get(4)),
        right_row: json(r.get(5)),
        times: (r.get(6), r.get(7)),
        left_earlier: r.get(8),
        policy: r.get(9),
        winner: r.get(10),
    })
    .collect()
}

/// `pgduplex.conflicts` is empty on this side.
pub(crate) async fn assert_no_conflicts(c: &Client, ctx: &str) {
    let log = conflict_log(c).await;
    assert!(
        log.is_empty(),
        "{ctx}: unexpected conflicts logged: {log:#?}"
    );
}

/// The row of `table` with `id = key` as jsonb (None: absent).
pub(crate) async fn image(c: &Client, table: &str, key: i32) -> Option<Value> {
    c.query_opt(
        &format!("SELECT to_jsonb(t)::text FROM {table} t WHERE id = $1"),
        &[&key],
    )
    .await
    .unwrap()
    .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
}

/// Every row of `table` as text, by id.
pub(crate) async fn rows(c: &Client, table: &str) -> Vec<String> {
    c.query(&format!("SELECT t::text FROM {table} t ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

const SCHEMA: &str = "create table t (id int primary key, v text);";
const INITIAL: &str = "insert into t values (1, 'base'), (2, 'two'), (3, 'three');";

fn policy_config(policy: &str) -> String {
    format!("[replication]\nconflict = \"{policy}\"")
}

/// A fresh pair holding `schema` and the same `initial` rows on both sides, after one
/// replication: the identical inserts on both sides are not a conflict.
async fn agreeing_pair(schema: &str, initial: &str, extra: &str) -> (TestPair, ConfigFile) {
    let pair = TestPair::new().await;
    pair.execute_both(schema).await.unwrap();
    let cfg = ConfigFile::for_pair(&pair, extra);
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    pair.execute_both(initial).await.unwrap();
    let (l, r) = clients(&pair).await;
    assert!(pending(&l).await > 0 && pending(&r).await > 0);
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    assert_no_conflicts(&l, "identical inserts on both sides (left)").await;
    assert_no_conflicts(&r, "identical inserts on both sides (right)").await;
    (pair, cfg)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum S {
    Left,
    Right,
}

/// Runs `first_sql` on `first`, waits until the other server's clock is clearly
/// past that commit, then runs `second_sql` on the other side: the second change is
/// captured later, for certain.
async fn change_in_order(pair: &TestPair, first: S, left_sql: &str, right_sql: &str) {
    let (a, b, a_sql, b_sql) = match first {
        S::Left => (&pair.left, &pair.right, left_sql, right_sql),
        S::Right => (&pair.right, &pair.left, right_sql, left_sql),
    };
    a.execute(a_sql).await.unwrap();
    let (ac, bc) = (a.client().await.unwrap(), b.client().await.unwrap());
    let after: String = ac
        .query_one("SELECT (clock_timestamp() + interval '5 ms')::text", &[])
        .await
        .unwrap()
        .get(0);
    wait_for(
        Duration::from_secs(10),
        "the second server's clock to pass the first change",
        || {
            let (bc, after) = (&bc, &after);
            async move {
                bc.query_one("SELECT clock_timestamp() > $1::text::timestamptz", &[after])
                    .await
                    .unwrap()
                    .get::<_, bool>(0)
            }
        },
    )
    .await;
    b.execute(b_sql).await.unwrap();
}

/// The policies with the order of the two changes, and the expected winner.
/// `left_wins`/`right_wins` are run with the winner changing first, so that a
/// timestamp-based decision would have picked the other side.
fn cases() -> Vec<(&'static str, S, Option<S>)> {
    vec![
        ("left_wins", S::Left, Some(S::Left)),
        ("right_wins", S::Right, Some(S::Right)),
        ("latest_wins", S::Left, Some(S::Right)),
        ("latest_wins", S::Right, Some(S::Left)),
        ("ignore", S::Left, None),
    ]
}

fn winner_str(w: Option<S>) -> &'static str {
    match w {
        Some(S::Left) => "left",
        Some(S::Right) => "right",
        None => "none",
    }
}

/// One row conflict on key `key` of `public.t`: `left_sql` and `right_sql` leave the
/// key as `left_image` / `right_image` (None: deleted). Checks every policy.
async fn row_conflict(
    what: &str,
    key: i32,
    left_sql: &str,
    right_sql: &str,
    left_image: Option<Value>,
    right_image: Option<Value>,
) {
    for (policy, first, winner) in cases() {
        let ctx = format!("{what} under {policy} ({first:?} changed first)");
        let (pair, cfg) = agreeing_pair(SCHEMA, INITIAL, &policy_config(policy)).await;
        change_in_order(&pair, first, left_sql, right_sql).await;
        let (l, r) = clients(&pair).await;
        assert_eq!(image(&l, "t", key).await, left_image, "{ctx}: setup");
        assert_eq!(image(&r, "t", key).await, right_image, "{ctx}: setup");
        let others_before = rows(&l, "t").await;

        replicate_until_idle(&pair, &cfg.path).await;

        let (want_left, want_right) = match winner {
            Some(S::Left) => (&left_image, &left_image),
            Some(S::Right) => (&right_image, &right_image),
            None => (&left_image, &right_image),
        };
        assert_eq!(&image(&l, "t", key).await, want_left, "{ctx}: left's row");
        assert_eq!(&image(&r, "t", key).await, want_right, "{ctx}: right's row");
        if winner.is_some() {
            assert_converged(&pair).await;
        } else {
            // `ignore` leaves each side its own row on purpose: drained, not converged.
            assert_drained(&pair).await;
        }
        // Rows not in conflict are untouched.
        let untouched = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .filter(|row| !row.starts_with(&format!("({key},")))
                .collect()
        };
        assert_eq!(
            untouched(rows(&r, "t").await),
            untouched(others_before.clone()),
            "{ctx}: other rows"
        );

        let expected = Logged {
            sync: "main".into(),
            table: "public.t".into(),
            key: Some(json!([key.to_string()])),
            kind: "row".into(),
            left_row: left_image.clone(),
            right_row: right_image.clone(),
            times: (true, true),
            left_earlier: Some(first == S::Left),
            policy: policy.into(),
            winner: winner_str(winner).into(),
        };
        for (side, c) in [("left", &l), ("right", &r)] {
            assert_eq!(
                conflict_log(c).await,
                std::slice::from_ref(&expected),
                "{ctx}: conflict log on {side}"
            );
        }
        // A second run finds nothing to do and logs nothing more.
        replicate_until_idle(&pair, &cfg.path).await;
        assert_eq!(conflict_log(&l).await.len(), 1, "{ctx}: logged once");
    }
}

// ---------------------------------------------------------------------------
// Row conflicts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_update() {
    row_conflict(
        "update/update",
        1,
        "update t set v = 'L' where id = 1",
        "update t set v = 'R' where id = 1",
        Some(json!({"id": 1, "v": "L"})),
        Some(json!({"id": 1, "v": "R"})),
    )
    .await;
}

#[tokio::test]
async fn update_delete() {
    row_conflict(
        "update on left / delete on right",
        1,
        "update t set v = 'L' where id = 1",
        "delete from t where id = 1",
        Some(json!({"id": 1, "v": "L"})),
        None,
    )
    .await;
}

#[tokio::test]
async fn delete_update() {
    row_conflict(
        "delete on left / update on right",
        2,
        "delete from t where id = 2",
        "update t set v = 'R' where id = 2",
        None,
        Some(json!({"id": 2, "v": "R"})),
    )
    .await;
}

#[tokio::test]
async fn insert_insert_of_one_key_with_different_values() {
    row_conflict(
        "insert/insert",
        7,
        "insert into t values (7, 'L')",
        "insert into t values (7, 'R')",
        Some(json!({"id": 7, "v": "L"})),
        Some(json!({"id": 7, "v": "R"})),
    )
    .await;
}

/// Both sides make the key hold the same row (or none): not a conflict, under any
/// policy.
async fn not_a_conflict(
    what: &str,
    left_sql: &str,
    right_sql: &str,
    key: i32,
    want: Option<Value>,
) {
    for policy in ["left_wins", "right_wins", "latest_wins", "ignore"] {
        let ctx = format!("{what} under {policy}");
        let (pair, cfg) = agreeing_pair(SCHEMA, INITIAL, &policy_config(policy)).await;
        change_in_order(&pair, S::Left, left_sql, right_sql).await;
        let (l, r) = clients(&pair).await;
        assert!(
            pending(&l).await > 0 && pending(&r).await > 0,
            "{ctx}: setup"
        );
        replicate_until_idle(&pair, &cfg.path).await;
        assert_converged(&pair).await;
        assert_eq!(image(&l, "t", key).await, want, "{ctx}");
        assert_no_conflicts(&l, &format!("{ctx}: left")).await;
        assert_no_conflicts(&r, &format!("{ctx}: right")).await;
    }
}

#[tokio::test]
async fn delete_delete_is_not_a_conflict() {
    not_a_conflict(
        "delete/delete",
        "delete from t where id = 1",
        "delete from t where id = 1",
        1,
        None,
    )
    .await;
}

#[tokio::test]
async fn the_same_update_on_both_sides_is_not_a_conflict() {
    not_a_conflict(
        "the same update on both sides",
        "update t set v = 'same' where id = 3",
        "update t set v = 'same' where id = 3",
        3,
        Some(json!({"id": 3, "v": "same"})),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Per-table override
// ---------------------------------------------------------------------------

#[tokio::test]
async fn per_table_override_beats_the_default() {
    let schema =
        "create table t (id int primary key, v text); create table u (id int primary key, v text);";
    let initial = "insert into t values (1, 'base'); insert into u values (1, 'base');";
    let extra = "[replication]\nconflict = \"left_wins\"\n\n[[table]]\nname = \"public.t\"\nconflict = \"right_wins\"";
    let (pair, cfg) = agreeing_pair(schema, initial, extra).await;
    change_in_order(
        &pair,
        S::Right,
        "update t set v = 'L' where id = 1; update u set v = 'L' where id = 1;",
        "update t set v = 'R' where id = 1; update u set v = 'R' where id = 1;",
    )
    .await;
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    let (l, r) = clients(&pair).await;
    assert_eq!(image(&r, "t", 1).await, Some(json!({"id": 1, "v": "R"})));
    assert_eq!(image(&r, "u", 1).await, Some(json!({"id": 1, "v": "L"})));
    for c in [&l, &r] {
        let log: Vec<(String, String, String)> = conflict_log(c)
            .await
            .into_iter()
            .map(|c| (c.table, c.policy, c.winner))
            .collect();
        assert_eq!(
            log,
            [
                ("public.t", "right_wins", "right"),
                ("public.u", "left_wins", "left"),
            ]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        );
    }
}

// ---------------------------------------------------------------------------
// TRUNCATE against the other side's pending changes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn truncate_against_pending_row_changes() {
    let initial =
        "insert into t values (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (5, 'five');";
    let others = "update t set v = 'changed' where id = 2; insert into t values (10, 'new'); delete from t where id = 3;";
    // The rows the non-truncating side holds after its changes.
    let all_changed = ["(1,one)", "(2,changed)", "(4,four)", "(5,five)", "(10,new)"];
    // When it wins: only the keys it changed survive the TRUNCATE (3 was deleted).
    let kept = ["(2,changed)", "(10,new)"];
    for (truncating, policy) in [
        (S::Left, "left_wins"),
        (S::Left, "right_wins"),
        (S::Right, "left_wins"),
        (S::Right, "right_wins"),
        (S::Left, "ignore"),
    ] {
        let ctx = format!("TRUNCATE on {truncating:?} under {policy}");
        let (pair, cfg) = agreeing_pair(SCHEMA, initial, &policy_config(policy)).await;
        let (left_sql, right_sql) = match truncating {
            S::Left => ("truncate t", others),
            S::Right => (others, "truncate t"),
        };
        change_in_order(&pair, truncating, left_sql, right_sql).await;
        replicate_until_idle(&pair, &cfg.path).await;
        let (l, r) = clients(&pair).await;
        let winner = match policy {
            "left_wins" => Some(S::Left),
            "right_wins" => Some(S::Right),
            _ => None,
        };
        let (want_l, want_r): (Vec<&str>, Vec<&str>) = match winner {
            Some(w) if w == truncating => (vec![], vec![]),
            Some(_) => (kept.to_vec(), kept.to_vec()),
            None => match truncating {
                S::Left => (vec![], all_changed.to_vec()),
                S::Right => (all_changed.to_vec(), vec![]),
            },
        };
        assert_eq!(rows(&l, "t").await, want_l, "{ctx}: left");
        assert_eq!(rows(&r, "t").await, want_r, "{ctx}: right");
        if winner.is_some() {
            assert_converged(&pair).await;
        } else {
            // `ignore` leaves each side its own row on purpose: drained, not converged.
            assert_drained(&pair).await;
        }
        for (side, c) in [("left", &l), ("right", &r)] {
            let log = conflict_log(c).await;
            assert_eq!(log.len(), 1, "{ctx}: conflict log on {side}: {log:#?}");
            let e = &log[0];
            assert_eq!(
                (
                    e.table.as_str(),
                    e.kind.as_str(),
                    &e.key,
                    e.times,
                    e.policy.as_str(),
                    e.winner.as_str()
                ),
                (
                    "public.t",
                    "truncate",
                    &None,
                    (true, true),
                    policy,
                    winner_str(winner)
                ),
                "{ctx}: conflict log on {side}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A change the target commits while the batch is being applied
// ---------------------------------------------------------------------------

/// Right updates row 1 and holds it (not committed yet) while left updates it
/// too: the daemon's read on right does not see right's change, its write (the
/// upsert) waits for the row, right commits, and the apply finds right's change
/// after its writes, undoes them and decides the key by policy. Under left_wins
/// left's row is written, and the conflict is logged on both sides with both
/// rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_committed_on_the_target_during_the_apply_is_a_conflict_logged_on_both_sides() {
    let (pair, cfg) = agreeing_pair(SCHEMA, INITIAL, &policy_config("left_wins")).await;
    let (l, r) = clients(&pair).await;
    let mut holder = pair.right.client().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("update t set v = 'R' where id = 1", &[])
        .await
        .unwrap();
    l.execute("update t set v = 'L' where id = 1", &[])
        .await
        .unwrap();
    let path = cfg.path.clone();
    let daemon =
        tokio::spawn(
            async move { run_bounded(None, &path, &["replicate", "--until-idle"], 60).await },
        );
    wait_for(
        Duration::from_secs(30),
        "the apply waiting for row 1",
        || async {
            r.query_one(
                "select count(*) from pg_stat_activity where datname = current_database() \
               and wait_event_type = 'Lock' and query like '%ON CONFLICT%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
                > 0
        },
    )
    .await;
    tx.commit().await.unwrap();
    daemon.await.unwrap().assert_code(0);
    assert_converged(&pair).await;
    assert_eq!(image(&r, "t", 1).await, Some(json!({"id": 1, "v": "L"})));
    for (side, c) in [("left", &l), ("right", &r)] {
        let log = conflict_log(c).await;
        assert!(
            log.iter().any(|e| e.table == "public.t"
                && e.kind == "row"
                && e.key == Some(json!(["1"]))
                && e.winner == "left"
                && e.left_row == Some(json!({"id": 1, "v": "L"}))
                && e.right_row == Some(json!({"id": 1, "v": "R"}))),
            "{side}: the conflict on row 1 is not logged: {log:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// A conflict no key-based policy can decide
// ---------------------------------------------------------------------------

/// Left and right insert different keys with the same value of another UNIQUE
/// column. Neither row can be written on the other side; the daemon keeps both
/// directions pending, says why in a WARN (with the server's detail), waits
/// longer between tries, and goes on as soon as the data is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn a_unique_conflict_between_different_keys_is_reported_and_resolves_once_fixed() {
    let pair = TestPair::new().await;
    pair.execute_both("create table person (id int primary key, email text unique not null)")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let (l, r) = clients(&pair).await;
    l.execute("insert into person values (1, 'a@example.com')", &[])
        .await
        .unwrap();
    r.execute("insert into person values (2, 'a@example.com')", &[])
        .await
        .unwrap();
    let mut daemon = start_replicate(&cfg);
    daemon
        .wait_log("rolled back 8 cycles in a row", 1, Duration::from_secs(60))
        .await;
    let t = daemon.log();
    assert!(
        t.contains("duplicate key value violates unique constraint")
            && t.contains("(email)=(a@example.com)"),
        "{t}"
    );
    assert_eq!(pending(&l).await + pending(&r).await, 2, "{t}");
    // The fix: the right's row goes.
    r.execute("delete from person where id = 2", &[])
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        "convergence after the fix",
        || async { pending(&l).await + pending(&r).await == 0 },
    )
    .await;
    // Killed (its last ledger row may be left): a restart cleans up.
    daemon.kill();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    assert_eq!(rows(&r, "person").await, ["(1,a@example.com)"]);
}
