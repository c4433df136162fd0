//! Capture: what the installed triggers record for each kind of write, read back
//! from the delta tables and the truncate log with the test's own queries.
//!
//! Every test builds its own tables on both sides, installs with the real binary,
//! writes on a side and asserts the exact delta rows.

use pgduplex_testkit::db::quote_ident;
use pgduplex_testkit::{unique_name, TestDb, TestPair};
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::support::{
    clear_deltas, d, deltas, pgduplex_async, replicated_tables, sorted, truncates, ConfigFile,
};

/// Creates `ddl` on both sides, installs with the binary, and returns a superuser
/// client of the left side.
async fn install_with(pair: &TestPair, ddl: &str) -> Client {
    pair.execute_both(ddl).await.expect("create tables");
    let cfg = ConfigFile::for_pair(pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    pair.left.client().await.expect("connect left")
}

/// `pgduplex.delta_<id>` of a replicated table, read from pgduplex's catalog table.
async fn delta_table(client: &Client, schema: &str, table: &str) -> String {
    let id: i32 = client
        .query_one(
            "SELECT id FROM pgduplex.replicated_table WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .expect("table is recorded as replicated")
        .get(0);
    format!("pgduplex.delta_{id}")
}

/// The total number of delta rows of every table plus truncate log rows.
async fn everything_captured(client: &Client) -> i64 {
    let tables: Vec<i32> = client
        .query("SELECT id FROM pgduplex.replicated_table", &[])
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut n: i64 = client
        .query_one("SELECT count(*) FROM pgduplex.truncate_log", &[])
        .await
        .expect("count truncates")
        .get(0);
    for id in tables {
        let c: i64 = client
            .query_one(&format!("SELECT count(*) FROM pgduplex.delta_{id}"), &[])
            .await
            .expect("count deltas")
            .get(0);
        n += c;
    }
    n
}

/// Runs a script through `psql` on the unix socket as `postgres` (the same role as
/// the test URL): psql sends inline `COPY ... FROM STDIN` data as CopyData messages,
/// the same protocol path as a client's `copy_in`. (tokio-postgres' `copy_in` needs
/// the `futures` `Sink` trait, which is not among this test binary's dependencies.)
fn psql(db: &TestDb, script: &str) -> String {
    tokio::task::block_in_place(|| db.server().run_sql(db.name(), script)).expect("psql script")
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_update_delete_record_the_key() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text)",
    )
    .await;
    left.batch_execute(
        "INSERT INTO app.t VALUES (1, 'one'), (2, 'two');
         UPDATE app.t SET v = 'uno' WHERE id = 1;
         UPDATE app.t SET id = id, v = 'dos' WHERE id = 2;
         DELETE FROM app.t WHERE id = 2;
         UPDATE app.t SET v = 'nothing' WHERE id = 99;
         DELETE FROM app.t WHERE id = 99;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![
            d("I", json!({"id": 1})),
            d("I", json!({"id": 2})),
            d("U", json!({"id": 1})),
            d("U", json!({"id": 2})),
            d("D", json!({"id": 2})),
        ])
    );

    // Each delta carries the transaction id of the writing transaction and a capture time.
    clear_deltas(&left).await;
    left.batch_execute("BEGIN; INSERT INTO app.t VALUES (3, 'three')")
        .await
        .unwrap();
    let txid: i64 = left
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    left.batch_execute("COMMIT").await.unwrap();
    let delta = delta_table(&left, "app", "t").await;
    let row = left
        .query_one(
            &format!("SELECT txid, captured_at IS NOT NULL, op::text FROM {delta}"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), txid);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "I");

    // A rolled-back transaction leaves no delta.
    left.batch_execute("BEGIN; INSERT INTO app.t VALUES (4, 'four'); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("I", json!({"id": 3}))])
    );

    // The right side captures its own writes in its own delta table.
    let right = pair.right.client().await.unwrap();
    right
        .batch_execute(
            "INSERT INTO app.t VALUES (7, 'seven'); UPDATE app.t SET v = 'sept'; DELETE FROM app.t",
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&right, "app", "t").await),
        sorted(vec![
            d("I", json!({"id": 7})),
            d("U", json!({"id": 7})),
            d("D", json!({"id": 7})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("I", json!({"id": 3}))])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_changing_update_records_old_and_new_key() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text)",
    )
    .await;
    left.batch_execute("INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await
        .unwrap();
    clear_deltas(&left).await;

    left.batch_execute("UPDATE app.t SET id = 10 WHERE id = 1")
        .await
        .unwrap();
    // The new key is recorded as 'U' by the UPDATE's statement trigger, the old
    // key as 'D' by the row trigger on the key columns.
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("D", json!({"id": 1})), d("U", json!({"id": 10}))])
    );

    // A key change and a value change in one statement, over several rows.
    clear_deltas(&left).await;
    left.batch_execute("UPDATE app.t SET id = id + 100, v = 'moved' WHERE id IN (2, 3)")
        .await
        .unwrap();
    let mut got = deltas(&left, "app", "t").await;
    assert_eq!(got.len(), 4, "{got:?}");
    // Every old key is recorded as deleted and every new key as updated.
    got.sort_by_key(|x| (x.op.clone(), x.key["id"].as_i64()));
    assert_eq!(
        got,
        vec![
            d("D", json!({"id": 2})),
            d("D", json!({"id": 3})),
            d("U", json!({"id": 102})),
            d("U", json!({"id": 103})),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_is_logged_with_its_transaction() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app;
         CREATE TABLE app.a (id int PRIMARY KEY);
         CREATE TABLE app.b (id int PRIMARY KEY);
         CREATE TABLE app.c (id int PRIMARY KEY);",
    )
    .await;
    left.batch_execute(
        "INSERT INTO app.a SELECT generate_series(1, 3); INSERT INTO app.b SELECT generate_series(1, 3);",
    )
    .await
    .unwrap();
    clear_deltas(&left).await;
    let ids: Vec<(String, i32)> = left
        .query(
            "SELECT table_name, id FROM pgduplex.replicated_table WHERE table_schema = 'app' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let id_of = |name: &str| ids.iter().find(|(n, _)| n == name).unwrap().1;

    // One statement truncating two tables: two log rows, one txid.
    left.batch_execute("BEGIN; TRUNCATE app.a, app.b")
        .await
        .unwrap();
    let tx1: i64 = left
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    left.batch_execute("COMMIT").await.unwrap();
    let mut got = truncates(&left).await;
    got.sort();
    assert_eq!(got, vec![("app.a".into(), tx1), ("app.b".into(), tx1)]);
    // The log names the replicated table by id too.
    let logged: Vec<(i32, String)> = left
        .query(
            "SELECT table_id, truncated_table FROM pgduplex.truncate_log ORDER BY truncated_table",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        logged,
        vec![(id_of("a"), "a".to_string()), (id_of("b"), "b".to_string())]
    );
    // TRUNCATE is its own event: no per-row 'D' deltas.
    assert_eq!(deltas(&left, "app", "a").await, vec![]);
    assert_eq!(deltas(&left, "app", "b").await, vec![]);

    // Two TRUNCATE statements in one transaction share its txid; a later one does not.
    clear_deltas(&left).await;
    left.batch_execute("BEGIN; TRUNCATE app.b; TRUNCATE app.c")
        .await
        .unwrap();
    let tx2: i64 = left
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    left.batch_execute("COMMIT; TRUNCATE app.a").await.unwrap();
    let got = truncates(&left).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], ("app.b".to_string(), tx2));
    assert_eq!(got[1], ("app.c".to_string(), tx2));
    assert_eq!(got[2].0, "app.a");
    assert_ne!(got[2].1, tx2);

    // A rolled-back TRUNCATE leaves nothing.
    clear_deltas(&left).await;
    left.batch_execute("BEGIN; TRUNCATE app.a; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(truncates(&left).await, vec![]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_statements_capture_every_row() {
    const N: i64 = 100_000;
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.big (id bigint PRIMARY KEY, v text)",
    )
    .await;
    let delta = delta_table(&left, "app", "big").await;
    let summary = format!(
        "SELECT count(*), count(DISTINCT k1), min(k1), max(k1), count(*) FILTER (WHERE op::text <> $1), \
                count(DISTINCT txid) FROM {delta}"
    );

    left.batch_execute(&format!(
        "INSERT INTO app.big SELECT g, 'v' || g FROM generate_series(1, {N}) g"
    ))
    .await
    .unwrap();
    let r = left.query_one(&summary, &[&"I"]).await.unwrap();
    assert_eq!(
        (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3),
            r.get::<_, i64>(4),
            r.get::<_, i64>(5)
        ),
        (N, N, 1, N, 0, 1),
        "count, distinct keys, min, max, rows with another op, distinct txids"
    );

    clear_deltas(&left).await;
    left.batch_execute("UPDATE app.big SET v = v || '!'")
        .await
        .unwrap();
    let r = left.query_one(&summary, &[&"U"]).await.unwrap();
    assert_eq!(
        (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3),
            r.get::<_, i64>(4),
            r.get::<_, i64>(5)
        ),
        (N, N, 1, N, 0, 1),
        "count, distinct keys, min, max, rows with another op, distinct txids"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_from_stdin_captures_each_row() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text);
         CREATE TABLE app.k (name text PRIMARY KEY, n int);",
    )
    .await;
    let mut script = String::from("COPY app.t (id, v) FROM STDIN;\n");
    for i in 1..=1000 {
        script.push_str(&format!("{i}\trow {i}\n"));
    }
    script.push_str("1001\t\\N\n\\.\n");
    // Text keys with COPY escapes: tab, newline, backslash, quotes.
    script.push_str(
        "COPY app.k (name, n) FROM STDIN;\nplain\t1\nwith\\ttab\t2\nline\\nbreak\t3\nback\\\\slash\t4\nit's \"q\"\t5\n\\.\n",
    );
    psql(&pair.left, &script);

    let got = deltas(&left, "app", "t").await;
    let want: Vec<_> = (1..=1001).map(|i| d("I", json!({"id": i}))).collect();
    assert_eq!(got, want);
    assert_eq!(
        sorted(deltas(&left, "app", "k").await),
        sorted(vec![
            d("I", json!({"name": "plain"})),
            d("I", json!({"name": "with\ttab"})),
            d("I", json!({"name": "line\nbreak"})),
            d("I", json!({"name": "back\\slash"})),
            d("I", json!({"name": "it's \"q\""})),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn partitioned_table_is_captured_at_the_root() {
    let pair = TestPair::new().await;
    let ddl = "CREATE SCHEMA app;
         CREATE TABLE app.m (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
         CREATE TABLE app.m_2024 PARTITION OF app.m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE app.m_2025 PARTITION OF app.m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');";
    let left = install_with(&pair, ddl).await;
    let right = pair.right.client().await.unwrap();
    // Only the root is a replicated table, on both sides.
    assert_eq!(replicated_tables(&left).await, vec!["app.m".to_string()]);
    assert_eq!(replicated_tables(&right).await, vec!["app.m".to_string()]);

    // Through the root, and straight into a partition.
    left.batch_execute(
        "INSERT INTO app.m VALUES (1, '2024-03-01', 'a');
         INSERT INTO app.m_2025 VALUES (2, '2025-02-01', 'b');
         UPDATE app.m_2025 SET v = 'bb' WHERE id = 2;
         UPDATE app.m SET v = 'aa' WHERE id = 1;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "m").await),
        sorted(vec![
            d("I", json!({"id": 1, "day": "2024-03-01"})),
            d("I", json!({"id": 2, "day": "2025-02-01"})),
            d("U", json!({"id": 2, "day": "2025-02-01"})),
            d("U", json!({"id": 1, "day": "2024-03-01"})),
        ])
    );

    // A partition created after install, with no new install: written through the
    // root and straight into it.
    clear_deltas(&left).await;
    pair.execute_both(
        "CREATE TABLE app.m_2026 PARTITION OF app.m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )
    .await
    .unwrap();
    left.batch_execute(
        "INSERT INTO app.m VALUES (3, '2026-05-05', 'c');
         INSERT INTO app.m_2026 VALUES (4, '2026-06-06', 'd');
         UPDATE app.m_2026 SET v = 'dd' WHERE id = 4;
         DELETE FROM app.m_2026 WHERE id = 3;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "m").await),
        sorted(vec![
            d("I", json!({"id": 3, "day": "2026-05-05"})),
            d("I", json!({"id": 4, "day": "2026-06-06"})),
            d("U", json!({"id": 4, "day": "2026-06-06"})),
            d("D", json!({"id": 3, "day": "2026-05-05"})),
        ])
    );
    // The new partition did not become a replicated table of its own.
    assert_eq!(replicated_tables(&left).await, vec!["app.m".to_string()]);

    // An UPDATE that moves a row to another partition (also into the new one), and
    // one that changes the key within a partition.
    clear_deltas(&left).await;
    left.batch_execute(
        "UPDATE app.m SET day = '2025-06-01' WHERE id = 1;
         UPDATE app.m SET day = '2026-01-02' WHERE id = 2;
         UPDATE app.m SET id = 40 WHERE id = 4;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "m").await),
        sorted(vec![
            d("D", json!({"id": 1, "day": "2024-03-01"})),
            d("I", json!({"id": 1, "day": "2025-06-01"})),
            d("D", json!({"id": 2, "day": "2025-02-01"})),
            d("I", json!({"id": 2, "day": "2026-01-02"})),
            d("D", json!({"id": 4, "day": "2026-06-06"})),
            d("I", json!({"id": 40, "day": "2026-06-06"})),
        ])
    );

    // A partition attached after install is covered too.
    clear_deltas(&left).await;
    pair.execute_both(
        "CREATE TABLE app.m_2027 (LIKE app.m INCLUDING ALL);
         ALTER TABLE app.m ATTACH PARTITION app.m_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');",
    )
    .await
    .unwrap();
    left.batch_execute("INSERT INTO app.m_2027 VALUES (5, '2027-07-07', 'e')")
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "m").await),
        sorted(vec![d("I", json!({"id": 5, "day": "2027-07-07"}))])
    );

    // TRUNCATE of a partition that existed at install is logged for the root's id,
    // naming the partition it reached.
    clear_deltas(&left).await;
    left.batch_execute("TRUNCATE app.m_2024").await.unwrap();
    let rows: Vec<(String, String)> = left
        .query(
            "SELECT l.truncated_table, r.table_name FROM pgduplex.truncate_log l \
               JOIN pgduplex.replicated_table r ON r.id = l.table_id ORDER BY l.seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![("m_2024".to_string(), "m".to_string())]);

    // TRUNCATE of the root is logged for the root, in its transaction (partitions
    // that carry the TRUNCATE trigger may be logged along with it, same txid).
    clear_deltas(&left).await;
    left.batch_execute("BEGIN; TRUNCATE app.m").await.unwrap();
    let txid: i64 = left
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    left.batch_execute("COMMIT").await.unwrap();
    let logged = truncates(&left).await;
    assert!(logged.contains(&("app.m".to_string(), txid)), "{logged:?}");
    assert!(logged.iter().all(|(_, t)| *t == txid), "{logged:?}");
    let ids: Vec<String> = left
        .query(
            "SELECT DISTINCT r.table_name FROM pgduplex.truncate_log l \
               JOIN pgduplex.replicated_table r ON r.id = l.table_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec!["m".to_string()]);
    assert_eq!(deltas(&left, "app", "m").await, vec![]);
    assert_eq!(replicated_tables(&left).await, vec!["app.m".to_string()]);
}

/// A TRUNCATE aimed straight at a partition created after install is a documented
/// limit (README "Known limits": statement triggers are not cloned): `check` warns
/// about the partition, and a second `install` adds the trigger, after which the
/// TRUNCATE is logged for the root, naming the partition.
#[tokio::test(flavor = "multi_thread")]
async fn truncate_of_a_partition_created_after_install_is_logged_after_reinstall() {
    let pair = TestPair::new().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    pair.execute_both(
        "CREATE SCHEMA app;
         CREATE TABLE app.m (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
         CREATE TABLE app.m_2024 PARTITION OF app.m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
    )
    .await
    .unwrap();
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let left = pair.left.client().await.unwrap();
    pair.execute_both(
        "CREATE TABLE app.m_2026 PARTITION OF app.m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    )
    .await
    .unwrap();
    let check = pgduplex_async(&cfg.path, &["check"]).await;
    assert!(
        check.stdout.contains("partition app.m_2026") && check.stdout.contains("TRUNCATE"),
        "check does not warn about the new partition:\n{}",
        check.all()
    );
    let install = pgduplex_async(&cfg.path, &["install"]).await;
    install.assert_code(0);
    left.batch_execute("INSERT INTO app.m VALUES (1, '2026-05-05')")
        .await
        .unwrap();
    clear_deltas(&left).await;
    left.batch_execute("BEGIN; TRUNCATE app.m_2026")
        .await
        .unwrap();
    let txid: i64 = left
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    left.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        truncates(&left).await,
        vec![("app.m_2026".to_string(), txid)]
    );
    let root: String = left
        .query_one(
            "SELECT r.table_name FROM pgduplex.truncate_log l JOIN pgduplex.replicated_table r ON r.id = l.table_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(root, "m");
    assert_eq!(replicated_tables(&left).await, vec!["app.m".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_echo_only_for_the_apply_role() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text);",
    )
    .await;
    // The apply role is the role that ran install: the test URL's superuser.
    let session_user: String = left
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let apply_roles: Vec<String> = left
        .query(
            "SELECT DISTINCT apply_role FROM pgduplex.replicated_table",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(apply_roles, vec![session_user]);
    left.batch_execute("INSERT INTO app.t VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    clear_deltas(&left).await;

    // The apply role with the setting on: nothing captured, TRUNCATE included.
    left.batch_execute(
        "BEGIN; SET LOCAL pgduplex.applying = 'on';
         INSERT INTO app.t VALUES (3, 'three');
         UPDATE app.t SET v = 'uno' WHERE id = 1;
         UPDATE app.t SET id = 20 WHERE id = 2;
         DELETE FROM app.t WHERE id = 3;
         COMMIT;",
    )
    .await
    .unwrap();
    assert_eq!(deltas(&left, "app", "t").await, vec![]);
    left.batch_execute("BEGIN; SET LOCAL pgduplex.applying = 'on'; TRUNCATE app.t; COMMIT;")
        .await
        .unwrap();
    assert_eq!(truncates(&left).await, vec![]);
    assert_eq!(everything_captured(&left).await, 0);

    // SET LOCAL ends with the transaction: the next write of the same session is captured.
    left.batch_execute("INSERT INTO app.t VALUES (5, 'five')")
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("I", json!({"id": 5}))])
    );
    // Any value other than 'on' does not count.
    clear_deltas(&left).await;
    left.batch_execute(
        "BEGIN; SET LOCAL pgduplex.applying = 'off'; INSERT INTO app.t VALUES (6, 'six'); COMMIT;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("I", json!({"id": 6}))])
    );

    // Another role setting the same thing is captured.
    clear_deltas(&left).await;
    let app = unique_name("app");
    pair.left.create_role(&app, "app pw", "").await.unwrap();
    pair.left
        .execute(&format!(
            "GRANT USAGE ON SCHEMA app TO {r}; GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON app.t TO {r};",
            r = quote_ident(&app)
        ))
        .await
        .unwrap();
    let other = pair.left.client_as(&app, "app pw").await.unwrap();
    other
        .batch_execute(
            "BEGIN; SET LOCAL pgduplex.applying = 'on';
             INSERT INTO app.t VALUES (7, 'seven');
             UPDATE app.t SET v = 'sept' WHERE id = 7;
             UPDATE app.t SET id = 70 WHERE id = 7;
             DELETE FROM app.t WHERE id = 70;
             COMMIT;",
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![
            d("I", json!({"id": 7})),
            d("U", json!({"id": 7})),
            d("D", json!({"id": 7})),
            d("U", json!({"id": 70})),
            d("D", json!({"id": 70})),
        ])
    );
    // Even set for the whole session.
    clear_deltas(&left).await;
    other
        .batch_execute(
            "SET pgduplex.applying = 'on'; INSERT INTO app.t VALUES (8, 'eight'); TRUNCATE app.t;",
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("I", json!({"id": 8}))])
    );
    assert_eq!(
        truncates(&left)
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>(),
        vec!["app.t".to_string()]
    );

    // session_replication_role = replica (superuser) does not silence capture.
    clear_deltas(&left).await;
    let replica = pair.left.client().await.unwrap();
    replica
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO app.t VALUES (9, 'nine'), (10, 'ten');
             UPDATE app.t SET v = 'neuf' WHERE id = 9;
             UPDATE app.t SET id = 100 WHERE id = 10;
             DELETE FROM app.t WHERE id = 9;",
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![
            d("I", json!({"id": 9})),
            d("I", json!({"id": 10})),
            d("U", json!({"id": 9})),
            d("D", json!({"id": 10})),
            d("U", json!({"id": 100})),
            d("D", json!({"id": 9})),
        ])
    );
    replica.batch_execute("TRUNCATE app.t").await.unwrap();
    assert_eq!(
        truncates(&left)
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>(),
        vec!["app.t".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn application_role_needs_no_rights_on_schema_pgduplex() {
    let pair = TestPair::new().await;
    let app = unique_name("app");
    pair.left.create_role(&app, "app pw", "").await.unwrap();
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text);",
    )
    .await;
    pair.left
        .execute(&format!(
            "GRANT USAGE ON SCHEMA app TO {r}; GRANT SELECT, INSERT, UPDATE, DELETE ON app.t TO {r};",
            r = quote_ident(&app)
        ))
        .await
        .unwrap();
    let rights = left
        .query_one(
            "SELECT has_schema_privilege($1, 'pgduplex', 'USAGE'), has_schema_privilege($1, 'pgduplex', 'CREATE')",
            &[&app],
        )
        .await
        .unwrap();
    assert!(!rights.get::<_, bool>(0), "app role has USAGE on pgduplex");
    assert!(!rights.get::<_, bool>(1), "app role has CREATE on pgduplex");

    let client = pair.left.client_as(&app, "app pw").await.unwrap();
    client
        .batch_execute(
            "INSERT INTO app.t VALUES (1, 'one'), (2, 'two');
             UPDATE app.t SET v = 'uno' WHERE id = 1;
             UPDATE app.t SET id = 3 WHERE id = 2;
             DELETE FROM app.t WHERE id = 1;",
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![
            d("I", json!({"id": 1})),
            d("I", json!({"id": 2})),
            d("U", json!({"id": 1})),
            d("D", json!({"id": 2})),
            d("U", json!({"id": 3})),
            d("D", json!({"id": 1})),
        ])
    );

    // pgduplex's tables are out of the role's reach.
    let delta = delta_table(&left, "app", "t").await;
    for sql in [
        format!("SELECT * FROM {delta}"),
        format!("INSERT INTO {delta} (op, id) VALUES ('D', 42)"),
        format!("DELETE FROM {delta}"),
        "SELECT * FROM pgduplex.truncate_log".to_string(),
        "INSERT INTO pgduplex.truncate_log (table_id, truncated_schema, truncated_table) VALUES (1, 'app', 't')"
            .to_string(),
        "SELECT * FROM pgduplex.replicated_table".to_string(),
        "SELECT nextval('pgduplex.delta_seq')".to_string(),
    ] {
        let err = client
            .batch_execute(&sql)
            .await
            .expect_err(&format!("{sql} should be refused"));
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // Nothing was changed by the refused statements.
    assert_eq!(deltas(&left, "app", "t").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_types_are_recorded_with_their_values() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app;
         CREATE TABLE app.comp (a int, b text, v text, PRIMARY KEY (a, b));
         CREATE TABLE app.txt (k text PRIMARY KEY, v text);
         CREATE TABLE app.uu (u uuid PRIMARY KEY, v text);
         CREATE TABLE app.big (id bigint PRIMARY KEY, v text);
         CREATE TABLE app.clash (seq int, op text, txid bigint, captured_at int, PRIMARY KEY (seq, op, txid));",
    )
    .await;
    left.batch_execute(
        r#"INSERT INTO app.clash VALUES (1, 'D', 7, 0), (2, 'I', 8, 0);
           UPDATE app.clash SET captured_at = 1 WHERE seq = 1;
           UPDATE app.clash SET op = 'U' WHERE seq = 2;
           DELETE FROM app.clash WHERE seq = 1;

           INSERT INTO app.comp VALUES (1, 'x', 'v'), (1, 'y', 'v'), (2, 'it''s "q"', 'v');
           UPDATE app.comp SET v = 'w' WHERE a = 1 AND b = 'y';
           UPDATE app.comp SET b = 'z' WHERE a = 1 AND b = 'x';
           UPDATE app.comp SET a = 3 WHERE a = 2;
           DELETE FROM app.comp WHERE a = 1 AND b = 'y';

           INSERT INTO app.txt VALUES ('plain', 'v'), (' spaced ', 'v'), ('Ünïcødé ✓', 'v'), ('back\slash', 'v'), ('', 'v');
           UPDATE app.txt SET v = 'w' WHERE k = ' spaced ';
           UPDATE app.txt SET k = 'renamed' WHERE k = 'plain';
           DELETE FROM app.txt WHERE k = 'Ünïcødé ✓';

           INSERT INTO app.uu VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'v'), ('00000000-0000-0000-0000-000000000000', 'v');
           UPDATE app.uu SET v = 'w' WHERE u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
           UPDATE app.uu SET u = 'ffffffff-ffff-ffff-ffff-ffffffffffff' WHERE u = '00000000-0000-0000-0000-000000000000';
           DELETE FROM app.uu WHERE u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';

           INSERT INTO app.big VALUES (9223372036854775807, 'v'), (-9223372036854775808, 'v'), (9007199254740993, 'v');
           UPDATE app.big SET v = 'w' WHERE id = 9007199254740993;
           UPDATE app.big SET id = 0 WHERE id = -9223372036854775808;
           DELETE FROM app.big WHERE id = 9223372036854775807;"#,
    )
    .await
    .unwrap();
    // Key columns named like the delta table's own columns.
    assert_eq!(
        sorted(deltas(&left, "app", "clash").await),
        sorted(vec![
            d("I", json!({"seq": 1, "op": "D", "txid": 7})),
            d("I", json!({"seq": 2, "op": "I", "txid": 8})),
            d("U", json!({"seq": 1, "op": "D", "txid": 7})),
            d("D", json!({"seq": 2, "op": "I", "txid": 8})),
            d("U", json!({"seq": 2, "op": "U", "txid": 8})),
            d("D", json!({"seq": 1, "op": "D", "txid": 7})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, "app", "comp").await),
        sorted(vec![
            d("I", json!({"a": 1, "b": "x"})),
            d("I", json!({"a": 1, "b": "y"})),
            d("I", json!({"a": 2, "b": "it's \"q\""})),
            d("U", json!({"a": 1, "b": "y"})),
            d("D", json!({"a": 1, "b": "x"})),
            d("U", json!({"a": 1, "b": "z"})),
            d("D", json!({"a": 2, "b": "it's \"q\""})),
            d("U", json!({"a": 3, "b": "it's \"q\""})),
            d("D", json!({"a": 1, "b": "y"})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, "app", "txt").await),
        sorted(vec![
            d("I", json!({"k": "plain"})),
            d("I", json!({"k": " spaced "})),
            d("I", json!({"k": "Ünïcødé ✓"})),
            d("I", json!({"k": "back\\slash"})),
            d("I", json!({"k": ""})),
            d("U", json!({"k": " spaced "})),
            d("D", json!({"k": "plain"})),
            d("U", json!({"k": "renamed"})),
            d("D", json!({"k": "Ünïcødé ✓"})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, "app", "uu").await),
        sorted(vec![
            d("I", json!({"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"})),
            d("I", json!({"u": "00000000-0000-0000-0000-000000000000"})),
            d("U", json!({"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"})),
            d("D", json!({"u": "00000000-0000-0000-0000-000000000000"})),
            d("U", json!({"u": "ffffffff-ffff-ffff-ffff-ffffffffffff"})),
            d("D", json!({"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, "app", "big").await),
        sorted(vec![
            d("I", json!({"id": 9223372036854775807i64})),
            d("I", json!({"id": -9223372036854775808i64})),
            d("I", json!({"id": 9007199254740993i64})),
            d("U", json!({"id": 9007199254740993i64})),
            d("D", json!({"id": -9223372036854775808i64})),
            d("U", json!({"id": 0})),
            d("D", json!({"id": 9223372036854775807i64})),
        ])
    );
    // The delta tables keep the key's own types (columns k1..kn, mapped to the
    // table's key columns by pgduplex.replicated_table).
    let types: Vec<String> = left
        .query(
            "SELECT r.table_name || ' ' || array_to_string(r.key_columns, ',') || ' ' || \
                    string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) \
               FROM pgduplex.replicated_table r \
               JOIN pg_attribute a ON a.attrelid = ('pgduplex.delta_' || r.id)::regclass \
              WHERE a.attnum > 0 AND NOT a.attisdropped \
                AND a.attname NOT IN ('seq', 'op', 'txid', 'captured_at') \
              GROUP BY r.table_name, r.key_columns ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        vec![
            "big id k1 bigint",
            "clash seq,op,txid k1 integer, k2 text, k3 bigint",
            "comp a,b k1 integer, k2 text",
            "txt k k1 text",
            "uu u k1 uuid"
        ]
    );
}

/// Statement-level capture sees every statement that writes rows: an upsert (its
/// insert and its update part), MERGE, a writable CTE, and rows removed by an
/// `ON DELETE CASCADE` (the cascade runs as a statement of its own on the child).
#[tokio::test(flavor = "multi_thread")]
async fn upsert_merge_cte_and_cascades_are_captured() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app;
         CREATE TABLE app.t (id int PRIMARY KEY, v text);
         CREATE TABLE app.par (id int PRIMARY KEY);
         CREATE TABLE app.ch (id int PRIMARY KEY, p int REFERENCES app.par (id) ON DELETE CASCADE);",
    )
    .await;
    left.batch_execute("INSERT INTO app.t VALUES (1, 'a')")
        .await
        .unwrap();
    clear_deltas(&left).await;
    left.batch_execute(
        "INSERT INTO app.t VALUES (1, 'b'), (2, 'c') ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("U", json!({"id": 1})), d("I", json!({"id": 2}))])
    );
    clear_deltas(&left).await;
    left.batch_execute(
        "MERGE INTO app.t t USING (VALUES (2, 'm'), (5, 'n')) s(id, v) ON t.id = s.id
           WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("U", json!({"id": 2})), d("I", json!({"id": 5}))])
    );
    clear_deltas(&left).await;
    left.batch_execute(
        "WITH gone AS (DELETE FROM app.t WHERE id = 5 RETURNING id)
         INSERT INTO app.t SELECT id + 100, 'moved' FROM gone",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![d("D", json!({"id": 5})), d("I", json!({"id": 105}))])
    );
    left.batch_execute(
        "INSERT INTO app.par VALUES (1), (2); INSERT INTO app.ch VALUES (10, 1), (11, 1), (12, 2);",
    )
    .await
    .unwrap();
    clear_deltas(&left).await;
    left.batch_execute("DELETE FROM app.par WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(
        deltas(&left, "app", "par").await,
        vec![d("D", json!({"id": 1}))]
    );
    assert_eq!(
        sorted(deltas(&left, "app", "ch").await),
        sorted(vec![d("D", json!({"id": 10})), d("D", json!({"id": 11}))])
    );
}

/// The old key of a key-changing UPDATE comes from a row trigger on the key columns
/// (`AFTER UPDATE OF`), which fires whenever a key column is assigned: assigned to
/// the value it had, nothing extra is recorded; keys swapped within one statement,
/// both old keys are recorded as deleted and both new ones as updated (the apply
/// reads the current row of each); a generated key column changes when the column
/// it is computed from is assigned; an upsert that assigns the key, and the apply
/// role's own key changes, behave like any UPDATE.
#[tokio::test(flavor = "multi_thread")]
async fn key_trigger_fires_only_for_changed_keys() {
    let pair = TestPair::new().await;
    let left = install_with(
        &pair,
        "CREATE SCHEMA app;
         CREATE TABLE app.s (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
         CREATE TABLE app.g (a int NOT NULL, id int GENERATED ALWAYS AS (a * 2) STORED PRIMARY KEY, v text);
         CREATE TABLE app.c (k1 text, k2 int, v text, PRIMARY KEY (k1, k2));",
    )
    .await;
    left.batch_execute(
        "INSERT INTO app.s VALUES (1, 'a'), (2, 'b'), (3, 'c');
         INSERT INTO app.g (a, v) VALUES (1, 'x'), (2, 'y');
         INSERT INTO app.c VALUES ('a', 1, 'p'), ('b', 2, 'q');",
    )
    .await
    .unwrap();
    clear_deltas(&left).await;

    left.batch_execute(
        "UPDATE app.s SET id = id, v = v || '!';
         UPDATE app.s SET id = 3 - id WHERE id IN (1, 2);",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "s").await),
        sorted(vec![
            d("U", json!({"id": 1})),
            d("U", json!({"id": 2})),
            d("U", json!({"id": 3})),
            d("D", json!({"id": 1})),
            d("D", json!({"id": 2})),
            d("U", json!({"id": 1})),
            d("U", json!({"id": 2})),
        ])
    );

    clear_deltas(&left).await;
    left.batch_execute(
        "UPDATE app.g SET v = 'xx' WHERE a = 1;
         UPDATE app.g SET a = 5 WHERE a = 2;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "g").await),
        sorted(vec![
            d("U", json!({"id": 2})),
            d("D", json!({"id": 4})),
            d("U", json!({"id": 10})),
        ])
    );

    // Composite key: one of its columns changes, the other is assigned unchanged;
    // an upsert assigning the key to the same value.
    clear_deltas(&left).await;
    left.batch_execute(
        "UPDATE app.c SET k1 = k1, k2 = 20 WHERE k1 = 'b';
         INSERT INTO app.c VALUES ('a', 1, 'pp') ON CONFLICT (k1, k2) DO UPDATE SET k1 = excluded.k1, v = excluded.v;",
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, "app", "c").await),
        sorted(vec![
            d("D", json!({"k1": "b", "k2": 2})),
            d("U", json!({"k1": "b", "k2": 20})),
            d("U", json!({"k1": "a", "k2": 1})),
        ])
    );

    // The apply role's own key change in an apply transaction: nothing.
    clear_deltas(&left).await;
    left.batch_execute(
        "BEGIN; SET LOCAL pgduplex.applying = 'on'; UPDATE app.s SET id = 30 WHERE id = 3; COMMIT;",
    )
    .await
    .unwrap();
    assert_eq!(everything_captured(&left).await, 0);
}

/// The capture functions run with their owner's rights (`SECURITY DEFINER`), so an
/// application role must not be able to make them run code of its own. They carry
/// `SET search_path = pg_catalog, pg_temp` (checked here on the installed functions),
/// and every name in their bodies is schema-qualified as well (defence in depth; the
/// unit test `capture_bodies_do_not_depend_on_the_search_path` checks the bodies).
/// The role here puts its own schema and `pg_temp` first on its path, with an `=`
/// operator and functions named like the built-ins the body uses, a type named
/// `text`, and temp tables named like the transition and delta tables; every write
/// is still captured into pgduplex's delta table, and none of its objects runs.
#[tokio::test(flavor = "multi_thread")]
async fn capture_is_immune_to_the_callers_search_path() {
    let pair = TestPair::new().await;
    let app = unique_name("app");
    pair.left.create_role(&app, "app pw", "").await.unwrap();
    let left = install_with(
        &pair,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text);
         CREATE TABLE app.p (id int, d int, v text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
         CREATE TABLE app.p1 PARTITION OF app.p FOR VALUES FROM (0) TO (100);",
    )
    .await;
    // Every SECURITY DEFINER function of pgduplex fixes its search path.
    let secdef: Vec<(String, Option<Vec<String>>)> = left
        .query(
            "SELECT p.proname::text, p.proconfig FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'pgduplex' AND p.prosecdef ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        secdef.len(),
        3,
        "two capture functions and capture_truncate: {secdef:?}"
    );
    for (name, config) in &secdef {
        assert_eq!(
            config.as_deref(),
            Some(&["search_path=pg_catalog, pg_temp".to_string()][..]),
            "{name}"
        );
    }
    let delta = delta_table(&left, "app", "t").await;
    let delta_name = delta.trim_start_matches("pgduplex.").to_string();
    pair.left
        .execute(&format!(
            "GRANT USAGE ON SCHEMA app TO {r}; GRANT SELECT, INSERT, UPDATE, DELETE ON app.t, app.p TO {r};
             CREATE SCHEMA evil AUTHORIZATION {r};",
            r = quote_ident(&app)
        ))
        .await
        .unwrap();
    let client = pair.left.client_as(&app, "app pw").await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE FUNCTION evil.hijacked_text(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'hijacked: text = text as %', current_user; END$$;
             CREATE FUNCTION evil.hijacked_name(a name, b name) RETURNS boolean LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'hijacked: name = name as %', current_user; END$$;
             CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.hijacked_text);
             CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.hijacked_name);
             CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'hijacked: current_setting as %', current_user; END$$;
             CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'hijacked: nextval as %', current_user; END$$;
             CREATE FUNCTION evil.txid_current() RETURNS bigint LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'hijacked: txid_current as %', current_user; END$$;
             CREATE DOMAIN evil.text AS int CHECK (VALUE > 0);
             CREATE DOMAIN evil.name AS int CHECK (VALUE > 0);
             CREATE TEMP TABLE pgduplex_new (id int, v text);
             CREATE TEMP TABLE pgduplex_old (id int, v text);
             CREATE TEMP TABLE {delta_name} (op \"char\", k1 int);
             SET search_path = pg_temp, evil, pg_catalog, app;",
            delta_name = quote_ident(&delta_name),
        ))
        .await
        .unwrap();
    // The trap works: an unqualified `=` on text in this session is the role's.
    let err = client
        .query_one("SELECT 'a'::pg_catalog.text = 'b'::pg_catalog.text", &[])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("hijacked") || format!("{err:?}").contains("hijacked"),
        "{err:?}"
    );

    client
        .batch_execute(
            "INSERT INTO t VALUES (1, 'one'), (2, 'two');
             UPDATE t SET v = 'uno' WHERE id = 1;
             UPDATE t SET id = 3 WHERE id = 2;
             UPDATE t SET id = id WHERE id = 3;
             DELETE FROM t WHERE id = 1;
             INSERT INTO p VALUES (1, 1, 'a');
             UPDATE p SET v = 'b';
             UPDATE p SET id = 2;
             DELETE FROM p;",
        )
        .await
        .unwrap();
    // Partitioned tables are captured by a row trigger, with a function of its own kind.
    assert_eq!(
        sorted(deltas(&left, "app", "p").await),
        sorted(vec![
            d("I", json!({"id": 1, "d": 1})),
            d("U", json!({"id": 1, "d": 1})),
            d("D", json!({"id": 1, "d": 1})),
            d("I", json!({"id": 2, "d": 1})),
            d("D", json!({"id": 2, "d": 1})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, "app", "t").await),
        sorted(vec![
            d("I", json!({"id": 1})),
            d("I", json!({"id": 2})),
            d("U", json!({"id": 1})),
            d("D", json!({"id": 2})),
            d("U", json!({"id": 3})),
            d("U", json!({"id": 3})),
            d("D", json!({"id": 1})),
        ])
    );
    let own: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM pg_temp.{}", quote_ident(&delta_name)),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 0, "the role's temp table received deltas");
}
