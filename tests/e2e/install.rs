//! install / uninstall: idempotence, resumption after a failure, a clean
//! uninstall, and DDL that never holds application writers up for longer than the
//! lock timeout.

use std::time::{Duration, Instant};

use pgduplex_testkit::TestPair;

use crate::support::*;

const SCHEMA: &str = "create table parent (id bigint primary key, name text);
    create table child (id bigint primary key, parent_id bigint references parent(id), v jsonb);
    create table plain (k text primary key, n int);";

async fn pair_with_schema() -> TestPair {
    let pair = TestPair::new().await;
    pair.execute_both(SCHEMA).await.unwrap();
    pair
}

/// xmin of every catalog row pgduplex owns: unchanged xmins mean no DDL ran.
async fn catalog_fingerprint(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT 'trigger ' || tgname || ' ' || tgrelid::regclass::text || ' ' || xmin::text || tgenabled::text \
               FROM pg_trigger WHERE tgname LIKE 'pgduplex%' \
             UNION ALL SELECT 'proc ' || oid::regprocedure::text || ' ' || xmin::text FROM pg_proc \
              WHERE pronamespace = 'pgduplex'::regnamespace \
             UNION ALL SELECT 'class ' || oid::regclass::text || ' ' || xmin::text FROM pg_class \
              WHERE relnamespace = 'pgduplex'::regnamespace \
             UNION ALL SELECT 'record ' || table_name || ' ' || xmin::text FROM pgduplex.replicated_table \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn recorded(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT table_name FROM pgduplex.replicated_table ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

async fn triggers(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE 'pgduplex\\_capture%' ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_twice_changes_nothing() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    let first = pgduplex_async(&cfg.path, &["install"]).await;
    first.assert_code(0);
    assert!(
        first
            .stdout
            .contains("left: schema pgduplex created; capture installed on 3 table(s)"),
        "{}",
        first.all()
    );
    let (l, r) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    let before = (catalog_fingerprint(&l).await, catalog_fingerprint(&r).await);
    assert!(
        before.0.iter().filter(|s| s.starts_with("trigger")).count() >= 6,
        "{before:?}"
    );

    let second = pgduplex_async(&cfg.path, &["install"]).await;
    second.assert_code(0);
    assert!(
        second
            .stdout
            .contains("left: capture installed on 0 table(s), 3 already current"),
        "{}",
        second.all()
    );
    assert!(
        second
            .stdout
            .contains("right: capture installed on 0 table(s), 3 already current"),
        "{}",
        second.all()
    );
    let after = (catalog_fingerprint(&l).await, catalog_fingerprint(&r).await);
    assert_eq!(before, after, "a second install must not run any DDL");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_added_to_the_config_later_are_added_by_install() {
    let pair = pair_with_schema().await;
    let narrow = ConfigFile::for_pair(&pair, "[tables]\ninclude = ['^public\\.plain$']");
    pgduplex_async(&narrow.path, &["install"])
        .await
        .assert_code(0);
    let l = pair.left.client().await.unwrap();
    assert_eq!(recorded(&l).await, vec!["plain"]);
    let wide = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&wide.path, &["install"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("capture installed on 2 table(s), 1 already current"),
        "{}",
        run.all()
    );
    assert_eq!(recorded(&l).await, vec!["child", "parent", "plain"]);
    l.execute("INSERT INTO parent VALUES (1, 'a')", &[])
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&l, "public", "parent").await),
        sorted(vec![d("I", serde_json::json!({"id": 1}))])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_removes_everything_and_keeps_user_rows() {
    let pair = pair_with_schema().await;
    // Awkward data, partitions and a sequence, so "untouched" means something.
    pair.execute_both(
        "create table part (a int, b int, primary key (a, b)) partition by range (a);
         create table part_1 partition of part for values from (0) to (100);
         insert into parent select g, repeat(E'x\\t\"y', g % 5) from generate_series(1, 500) g;
         insert into child select g, g, jsonb_build_object('k', g) from generate_series(1, 500) g;
         insert into plain values ('a', NULL), (E'b\\nc', 2);
         insert into part select g, g from generate_series(0, 99) g;",
    )
    .await
    .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let before = (
        all_user_rows(&pair.left).await,
        all_user_rows(&pair.right).await,
    );
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    // Changes after install are captured, then uninstall must not touch the rows.
    let l = pair.left.client().await.unwrap();
    l.batch_execute(
        "UPDATE parent SET name = name WHERE id <= 10; INSERT INTO part VALUES (5, 500)",
    )
    .await
    .unwrap();
    l.batch_execute("DELETE FROM part WHERE b = 500")
        .await
        .unwrap();
    assert!(!pgduplex_objects(&l).await.is_empty());

    let run = pgduplex_async(&cfg.path, &["uninstall"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("schema pgduplex dropped"),
        "{}",
        run.all()
    );
    for db in [&pair.left, &pair.right] {
        let c = db.client().await.unwrap();
        assert_eq!(
            pgduplex_objects(&c).await,
            Vec::<String>::new(),
            "{} still has pgduplex objects",
            db.display()
        );
    }
    let after = (
        all_user_rows(&pair.left).await,
        all_user_rows(&pair.right).await,
    );
    assert_eq!(before, after, "uninstall changed user rows");

    let again = pgduplex_async(&cfg.path, &["uninstall"]).await;
    again.assert_code(0);
    assert!(
        again.stdout.contains("schema pgduplex was not there"),
        "{}",
        again.all()
    );
}

/// Exit codes tell a problem found in the pair from a failure: an install that
/// check's blocking problems refuse exits 1; every command that cannot reach a
/// side exits 3. Neither changes anything, and no output shows the password.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_install_exits_1_and_an_unreachable_side_exits_3() {
    let pair = pair_with_schema().await;
    let l = pair.left.client().await.unwrap();
    l.batch_execute("create table only_left (id int primary key)")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&cfg.path, &["install"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("install refused"), "{}", run.all());
    assert!(
        run.stderr
            .contains("table public.only_left: exists on the left side only"),
        "{}",
        run.all()
    );
    assert!(pgduplex_objects(&l).await.is_empty());

    // Nothing listens on port 1 (privileged and unused).
    let unreachable = ConfigFile::for_urls(
        &pair.left.url(),
        "postgres://postgres:secret-pw@127.0.0.1:1/x",
        "",
    );
    for args in [
        &["check"][..],
        &["install"],
        &["uninstall"],
        &["replicate", "--until-idle"],
        &["onetimecopy"],
        &["status"],
        &["scan"],
        &["sync", "--policy", "left_wins"],
    ] {
        let run = pgduplex_async(&unreachable.path, args).await;
        assert_eq!(
            run.code,
            3,
            "`pgduplex {}` with the right side unreachable\n{}",
            args.join(" "),
            run.all()
        );
        assert!(!run.all().contains("secret-pw"), "{}", run.all());
    }
    assert!(pgduplex_objects(&l).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_refuses_when_a_user_object_depends_on_pgduplex() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let l = pair.left.client().await.unwrap();
    l.batch_execute("CREATE VIEW public.pending AS SELECT count(*) FROM pgduplex.truncate_log")
        .await
        .unwrap();
    let before = catalog_fingerprint(&l).await;
    let run = pgduplex_async(&cfg.path, &["uninstall"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("view pending"), "{}", run.all());
    assert!(run.stderr.contains("nothing was dropped"), "{}", run.all());
    assert_eq!(
        before,
        catalog_fingerprint(&l).await,
        "the refused side must be unchanged"
    );
    // The other side had nothing in the way and is clean.
    let r = pair.right.client().await.unwrap();
    assert!(pgduplex_objects(&r).await.is_empty());
    l.batch_execute("DROP VIEW public.pending").await.unwrap();
    pgduplex_async(&cfg.path, &["uninstall"])
        .await
        .assert_code(0);
    assert!(pgduplex_objects(&l).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn install_resumes_after_a_partial_failure_and_uninstall_cleans_a_partial_install() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "[install]\nlock_timeout_ms = 20\nmax_attempts = 2");
    // A writer's open transaction on `plain` (left only) makes its DDL fail.
    let blocker = pair.left.client().await.unwrap();
    blocker
        .batch_execute("BEGIN; INSERT INTO plain VALUES ('held', 1)")
        .await
        .unwrap();
    let run = pgduplex_async(&cfg.path, &["install"]).await;
    run.assert_code(3);
    assert!(run.stderr.contains("table public.plain"), "{}", run.all());
    assert!(
        run.stderr.contains("still locked by another transaction"),
        "{}",
        run.all()
    );
    let l = pair.left.client().await.unwrap();
    assert_eq!(
        triggers(&l).await,
        vec!["child", "parent"],
        "tables before the locked one are done"
    );

    // Uninstall of the half-finished install works (with the lock released).
    blocker.batch_execute("ROLLBACK").await.unwrap();
    pgduplex_async(&cfg.path, &["uninstall"])
        .await
        .assert_code(0);
    assert!(pgduplex_objects(&l).await.is_empty());

    // Again half way, then install finishes the job.
    blocker
        .batch_execute("BEGIN; INSERT INTO plain VALUES ('held', 1)")
        .await
        .unwrap();
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(3);
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let run = pgduplex_async(&cfg.path, &["install"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("left: capture installed on 1 table(s), 2 already current"),
        "{}",
        run.all()
    );
    assert_eq!(triggers(&l).await, vec!["child", "parent", "plain"]);
    l.execute("INSERT INTO plain VALUES ('x', 1)", &[])
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&l, "public", "plain").await),
        sorted(vec![d("I", serde_json::json!({"k": "x"}))])
    );
}

/// While a long transaction holds a lock on a table, install retries instead of
/// queueing behind it, so writers to other rows of that table are never blocked
/// for much longer than the lock timeout.
#[tokio::test(flavor = "multi_thread")]
async fn install_never_blocks_writers_longer_than_the_lock_timeout() {
    const LOCK_TIMEOUT_MS: u64 = 100;
    let pair = pair_with_schema().await;
    pair.execute_both("insert into plain select 'k' || g, g from generate_series(1, 100) g")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(
        &pair,
        &format!("[install]\nlock_timeout_ms = {LOCK_TIMEOUT_MS}\nmax_attempts = 1000"),
    );
    // The long transaction: a row lock and ROW EXCLUSIVE on `plain`, held ~2 s.
    let holder = pair.left.client().await.unwrap();
    holder
        .batch_execute("BEGIN; UPDATE plain SET n = n WHERE k = 'k1'")
        .await
        .unwrap();

    // Writers to other rows, each statement timed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let client = pair.left.client().await.unwrap();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{}", 2 + (n * 2 + w) % 99);
                let t = Instant::now();
                client
                    .execute("UPDATE plain SET n = n + 1 WHERE k = $1", &[&key])
                    .await
                    .unwrap();
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (worst, n)
        }));
    }
    let install = tokio::spawn({
        let path = cfg.path.clone();
        async move { pgduplex_async(&path, &["install"]).await }
    });
    // Let install run into the lock several times, then end the long transaction.
    let l = pair.left.client().await.unwrap();
    wait_for(Duration::from_secs(30), "install to start retrying on public.plain", || {
        let l = &l;
        async move {
            l.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgduplex' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
                > 0
                && l.query_one(
                    "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgduplex\\_capture%' AND tgrelid = 'parent'::regclass",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                    > 0
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the "long" transaction's length, not a wait for a condition
    holder.batch_execute("COMMIT").await.unwrap();
    let run = install.await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("stepped out of the lock queue and will retry"),
        "install should have retried: {}",
        run.all()
    );
    let mut total = 0;
    for w in writers {
        let (worst, n) = w.await.unwrap();
        total += n;
        // The lock timeout plus scheduling slack on a shared 2-core machine; without
        // the timeout a writer would wait for the whole 1.5 s transaction.
        assert!(
            worst < Duration::from_millis(LOCK_TIMEOUT_MS + 400),
            "a writer was blocked for {worst:?} (lock timeout {LOCK_TIMEOUT_MS} ms)"
        );
    }
    assert!(
        total > 20,
        "writers made progress during the install ({total} statements)"
    );
}

/// Key columns named like the delta table's own bookkeeping columns.
#[tokio::test(flavor = "multi_thread")]
async fn key_columns_named_like_bookkeeping_columns() {
    let pair = TestPair::new().await;
    pair.execute_both(
        "create table clash (seq bigint, op text, txid int, k1 text, captured_at date, v text,
                             primary key (seq, op, txid, k1, captured_at))",
    )
    .await
    .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let l = pair.left.client().await.unwrap();
    l.batch_execute(
        "insert into clash values (1, 'x', 2, 'y', '2026-01-01', 'v');
         update clash set op = 'z' where seq = 1;",
    )
    .await
    .unwrap();
    let key = |op: &str| serde_json::json!({"seq": 1, "op": op, "txid": 2, "k1": "y", "captured_at": "2026-01-01"});
    assert_eq!(
        sorted(deltas(&l, "public", "clash").await),
        sorted(vec![d("I", key("x")), d("D", key("x")), d("U", key("z"))])
    );
}

/// An install made by the previous pgduplex (capture version 2: the UPDATE trigger
/// with both transition tables and no key trigger; its capture function had the same
/// `SET search_path` as now) is brought up to date by the next `install`, keeping the
/// changes still pending in its delta table; `uninstall` then removes the new objects
/// too.
#[tokio::test(flavor = "multi_thread")]
async fn install_upgrades_a_version_2_capture_and_keeps_pending_changes() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let l = pair.left.client().await.unwrap();
    let id: i32 = l
        .query_one(
            "SELECT id FROM pgduplex.replicated_table WHERE table_name = 'plain'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Turn the capture of `plain` back into what version 2 installed.
    l.batch_execute(&format!(
        "DROP TRIGGER pgduplex_capture_key ON plain;
         DROP TRIGGER pgduplex_capture_update ON plain;
         CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON plain
           REFERENCING OLD TABLE AS pgduplex_old NEW TABLE AS pgduplex_new FOR EACH STATEMENT
           EXECUTE FUNCTION pgduplex.capture_{id}();
         ALTER TABLE plain ENABLE ALWAYS TRIGGER pgduplex_capture_update;
         UPDATE pgduplex.replicated_table SET definition_hash = 'from version 2' WHERE id = {id};
         INSERT INTO plain VALUES ('pending', 1);"
    ))
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&l, "public", "plain").await),
        sorted(vec![d("I", serde_json::json!({"k": "pending"}))])
    );

    let run = pgduplex_async(&cfg.path, &["install"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("left: capture installed on 1 table(s), 2 already current"),
        "{}",
        run.all()
    );
    let trg: Vec<String> = l
        .query(
            "SELECT tgname::text || ' ' || tgenabled::text FROM pg_trigger \
              WHERE tgrelid = 'plain'::regclass AND tgname LIKE 'pgduplex%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        trg,
        vec![
            "pgduplex_capture_delete A",
            "pgduplex_capture_insert A",
            "pgduplex_capture_key A",
            "pgduplex_capture_update A",
            "pgduplex_truncate A"
        ]
    );
    let (config, update_def): (Option<Vec<String>>, String) = l
        .query_one(
            &format!(
                "SELECT (SELECT proconfig FROM pg_proc WHERE oid = 'pgduplex.capture_{id}()'::regprocedure), \
                        (SELECT pg_get_triggerdef(oid) FROM pg_trigger \
                          WHERE tgrelid = 'plain'::regclass AND tgname = 'pgduplex_capture_update')"
            ),
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        config,
        Some(vec!["search_path=pg_catalog, pg_temp".to_string()])
    );
    assert!(!update_def.contains("OLD TABLE"), "{update_def}");
    // The pending change survived, and the new capture records a key change.
    l.batch_execute("UPDATE plain SET k = 'moved' WHERE k = 'pending'")
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&l, "public", "plain").await),
        sorted(vec![
            d("I", serde_json::json!({"k": "pending"})),
            d("D", serde_json::json!({"k": "pending"})),
            d("U", serde_json::json!({"k": "moved"})),
        ])
    );

    pgduplex_async(&cfg.path, &["uninstall"])
        .await
        .assert_code(0);
    assert_eq!(pgduplex_objects(&l).await, Vec::<String>::new());
}

/// An install of schema version 3 (the copy's state read out of a sentence in
/// `copy_run.mode`) is brought to version 4 by the next `install`: the state gets
/// its own column with a CHECK, each recorded copy keeps its state and progress,
/// and pending changes are kept.
#[tokio::test(flavor = "multi_thread")]
async fn install_upgrades_schema_version_3_and_keeps_copy_progress_and_pending_changes() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let l = pair.left.client().await.unwrap();
    // What version 3 left: no state column, a skipped copy said in `mode`, a
    // copy of another sync half done, and a change still pending.
    l.batch_execute(
        "ALTER TABLE pgduplex.copy_run DROP COLUMN state;
         UPDATE pgduplex.meta SET value = '3' WHERE key = 'schema_version';
         INSERT INTO pgduplex.copy_run (sync, source, mode, finished_at)
           VALUES ('main', 'right', 'skipped: the target held rows', now()),
                  ('other', 'right', 'truncate', NULL);
         INSERT INTO pgduplex.copy_progress (sync, table_schema, table_name, part, parts, done, rows)
           VALUES ('other', 'public', 'plain', 0, 2, true, 7), ('other', 'public', 'plain', 1, 2, false, NULL);
         INSERT INTO plain VALUES ('pending', 1);",
    )
    .await
    .unwrap();
    let pending_before = deltas(&l, "public", "plain").await;
    assert_eq!(pending_before.len(), 1);

    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let version: String = l
        .query_one(
            "SELECT value FROM pgduplex.meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, "4");
    let runs: Vec<(String, String, String, bool)> = l
        .query(
            "SELECT sync, mode, state, finished_at IS NOT NULL FROM pgduplex.copy_run ORDER BY sync",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        runs,
        [
            ("main".into(), "if-empty".into(), "skipped".into(), true),
            ("other".into(), "truncate".into(), "copying".into(), false),
        ]
    );
    let progress: Vec<(i32, bool, Option<i64>)> = l
        .query(
            "SELECT part, done, rows FROM pgduplex.copy_progress WHERE sync = 'other' ORDER BY part",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(progress, [(0, true, Some(7)), (1, false, None)]);
    assert_eq!(deltas(&l, "public", "plain").await, pending_before);
    // The state is typed in the database too.
    let bad = l
        .execute(
            "UPDATE pgduplex.copy_run SET state = 'half done' WHERE sync = 'other'",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        bad.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    // status reads the state from its column.
    let run = pgduplex_async(&cfg.path, &["status", "--format", "json"]).await;
    let st: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(st["sides"][0]["initial_copy"]["state"], "skipped", "{st}");
}
