//! `pgduplex replicate`: changes on either side reach the other, conflicts are
//! decided by policy and logged, nothing echoes back.

use std::time::Duration;

use pgduplex_testkit::TestPair;

use crate::support::*;

const SCHEMA: &str = "create table parent (id bigint primary key, name text);
    create table child (id bigint primary key, parent_id bigint references parent(id), v jsonb);
    create table \"Mixed Case\" (\"Key\" text, n int, primary key (\"Key\"));";

async fn pair_with_schema() -> TestPair {
    let pair = TestPair::new().await;
    pair.execute_both(SCHEMA).await.unwrap();
    pair
}

#[tokio::test]
async fn changes_on_both_sides_reach_the_other_and_nothing_echoes() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    pair.left
        .execute(
            "insert into parent values (1, 'one'), (2, 'two'), (3, 'three');
             insert into child values (10, 1, '{\"a\": 1}'), (11, 2, null);
             insert into \"Mixed Case\" values ('a\tb', 1), (E'back\\\\slash', 2);",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "insert into parent values (100, 'hundred');
             insert into child values (1000, 100, '[1,2]');",
        )
        .await
        .unwrap();
    pgduplex_async(&cfg.path, &["replicate", "--until-idle"])
        .await
        .assert_code(0);
    assert_converged(&pair).await;
    let right = pair.right.client().await.unwrap();
    let n: i64 = right
        .query_one("select count(*) from parent", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);

    // Updates, deletes and a key change, both ways.
    pair.left
        .execute(
            "update parent set name = 'uno' where id = 1;
             delete from child where id = 11; delete from parent where id = 2;
             update \"Mixed Case\" set \"Key\" = 'moved' where n = 1;",
        )
        .await
        .unwrap();
    pair.right
        .execute("update child set v = '{\"b\": 2}' where id = 1000;")
        .await
        .unwrap();
    pgduplex_async(&cfg.path, &["replicate", "--until-idle"])
        .await
        .assert_code(0);
    assert_converged(&pair).await;
    let keys: Vec<String> = right
        .query("select \"Key\" from \"Mixed Case\" order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["back\\slash", "moved"]);
}

/// A child inserted on one side while the other deletes its parent: the foreign
/// key makes it a conflict; the policy decides, and the batch never loops.
#[tokio::test]
async fn child_of_a_parent_deleted_on_the_other_side_is_a_conflict() {
    for (policy, parent_survives) in [("left_wins", false), ("right_wins", true)] {
        let pair = pair_with_schema().await;
        let cfg = ConfigFile::for_pair(&pair, &format!("[replication]\nconflict = \"{policy}\""));
        pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
        pair.left
            .execute("insert into parent values (1, 'p')")
            .await
            .unwrap();
        pgduplex_async(&cfg.path, &["replicate", "--until-idle"])
            .await
            .assert_code(0);
        pair.left
            .execute("delete from parent where id = 1")
            .await
            .unwrap();
        pair.right
            .execute("insert into child values (5, 1, null)")
            .await
            .unwrap();
        let run = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            pgduplex_async(&cfg.path, &["replicate", "--until-idle"]),
        )
        .await
        .expect("replicate --until-idle must not loop on a foreign-key conflict");
        run.assert_code(0);
        assert_converged(&pair).await;
        let left = pair.left.client().await.unwrap();
        let parents: i64 = left
            .query_one("select count(*) from parent", &[])
            .await
            .unwrap()
            .get(0);
        let children: i64 = left
            .query_one("select count(*) from child", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            (parents, children),
            if parent_survives { (1, 1) } else { (0, 0) },
            "{policy}"
        );
        let logged: i64 = left
            .query_one(
                "select count(*) from pgduplex.conflicts where kind = 'foreign_key'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(logged, 1, "{policy}: conflict log");
    }
}

/// A column added on one side only (the DDL freeze broken) pauses that table with
/// a message; the other tables keep replicating; the same DDL on the other side
/// resumes it and the sides converge.
#[tokio::test]
async fn schema_drift_pauses_the_table_and_resumes_when_both_sides_match() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let mut daemon = start_replicate(&cfg);
    let (left, right) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    left.batch_execute("insert into parent select g, 'p' || g from generate_series(1, 50) g")
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "first rows replicated", || async {
        count(&right, "select count(*) from parent").await == 50
    })
    .await;

    left.batch_execute("alter table parent add column note text")
        .await
        .unwrap();
    left.batch_execute(
        "update parent set note = 'n' || id where id <= 10; insert into parent values (51, 'x', 'y');
         insert into \"Mixed Case\" values ('other table', 1);",
    )
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the other table keeps replicating",
        || async { count(&right, "select count(*) from \"Mixed Case\"").await == 1 },
    )
    .await;
    daemon
        .wait_log(
            "public.parent: replication of this table is PAUSED: column note only on the left",
            1,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        count(&right, "select count(*) from parent").await,
        50,
        "no row of the paused table was applied"
    );

    right
        .batch_execute("alter table parent add column note text")
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the paused table resumes and converges",
        || async {
            count(&right, "select count(*) from parent where note is not null").await == 11
        },
    )
    .await;
    assert!(
        daemon.log().contains("replication of this table resumes"),
        "{}",
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM exit: {status}\n{}", daemon.log());
    assert_converged(&pair).await;
}

/// Transactions that trickle in while nothing is backlogged are gathered: a cycle
/// starts at most once per poll interval, so they are applied a few per batch,
/// not one batch per transaction (cycles back to back cost both servers a fixed
/// price each).
#[tokio::test]
async fn a_trickle_of_transactions_is_applied_a_few_per_batch() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(&pair, "[replication]\npoll_interval_ms = 250\n");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    // At debug, the log lists every batch: for the failure message only.
    let mut daemon = daemon(&cfg.path, &["replicate"])
        .log_filter("info,pgduplex_engine::replicate=debug")
        .start();
    daemon
        .wait_log("replicating 3 table(s)", 1, Duration::from_secs(30))
        .await;
    let (left, right) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    let started = std::time::Instant::now();
    for i in 1..=40i64 {
        left.execute("insert into parent values ($1, 'trickle')", &[&i])
            .await
            .unwrap();
        // The trickle: one transaction every 10 ms.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    wait_for(
        Duration::from_secs(30),
        "the trickle replicated",
        || async { count(&right, "select count(*) from parent").await == 40 },
    )
    .await;
    // How many transactions wrote the rows, read from the rows themselves: a row's
    // xmin is the transaction that wrote it. On the left, the trickle's 40. On the
    // right, the batches that carried them: a batch writes a table's rows with one
    // statement, in one (sub)transaction of its apply, so the rows of a batch share
    // their xmin. (Counting them any other way would mean counting log lines.)
    let writers = "select count(distinct xmin::text) from parent";
    assert_eq!(
        count(&left, writers).await,
        40,
        "the trickle's transactions"
    );
    let batches = count(&right, writers).await as usize;
    // One cycle per 250 ms while the trickle lasts, and the one that takes its end.
    let most = (elapsed.as_millis() / 250) as usize + 2;
    assert!(
        (1..=most).contains(&batches),
        "40 transactions over {elapsed:?} were applied in {batches} batches (at most {most} expected)\n{}",
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert_converged(&pair).await;
}

/// The README's first command: `pgduplex demo` runs the whole job on two
/// throw-away servers and ends with both sides identical and nothing pending.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_the_whole_job() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgduplex"))
        .arg("demo")
        .env_remove("PGDUPLEX_CONFIG")
        .output()
        .await
        .expect("run pgduplex demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for want in [
        "initial copy: 1103 row(s) of 3 table(s), left to right",
        "conflict on customer [\"1\"] (row): left wins",
        "every row compared: both sides identical",
        "pending changes after replication: 0 on the left, 0 on the right (no echo)",
        "total: 4 table(s), 0 differences: identical",
        "different  (3)  columns: email",
        "total: 1 change(s)",
        "scan again: identical",
        "schema pgduplex removed: true",
    ] {
        assert!(
            stdout.contains(want),
            "demo output lacks {want:?}:\n{stdout}\n{stderr}"
        );
    }
}

/// `pgduplex status` says, per side, whether pgduplex is installed, what is
/// pending and how old, whether the daemon runs, the conflicts and the initial
/// copy, in text and in JSON.
#[tokio::test(flavor = "multi_thread")]
async fn status_shows_install_pending_daemon_conflicts_and_copy() {
    let pair = TestPair::new().await;
    pair.execute_both("create table t (id int primary key, v text)")
        .await
        .unwrap();
    pair.left
        .execute("insert into t select g, 'v' from generate_series(1, 50) g")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&cfg.path, &["status"]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout.matches("pgduplex is not installed").count(),
        2,
        "{}",
        run.stdout
    );

    let run = pgduplex_async(&cfg.path, &["replicate", "--until-idle"]).await;
    run.assert_code(0);
    let (l, r) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    l.execute("update t set v = 'left' where id = 1", &[])
        .await
        .unwrap();
    r.execute("update t set v = 'right' where id = 1", &[])
        .await
        .unwrap();
    l.execute("insert into t values (100, 'new')", &[])
        .await
        .unwrap();
    let run = pgduplex_async(&cfg.path, &["status"]).await;
    run.assert_code(0);
    let out = &run.stdout;
    assert!(
        out.contains("installed: schema version 4, 1 table(s) replicated"),
        "{out}"
    );
    assert!(out.contains("pending: 2 change(s), the oldest"), "{out}");
    assert!(out.contains("pending: 1 change(s), the oldest"), "{out}");
    assert!(out.contains("daemon: not running (lease: "), "{out}");
    assert!(
        out.contains("initial copy from the left: done at ") && out.contains("50 row(s)"),
        "{out}"
    );

    let mut daemon = start_replicate(&cfg);
    wait_for(Duration::from_secs(30), "the daemon to drain", || async {
        pending(&l).await + pending(&r).await == 0
    })
    .await;
    let run = pgduplex_async(&cfg.path, &["status", "--format", "json"]).await;
    run.assert_code(0);
    let st: serde_json::Value = serde_json::from_str(&run.stdout).expect("status JSON");
    for side in st["sides"].as_array().unwrap() {
        assert_eq!(side["pending_changes"], 0, "{st}");
        assert!(side["daemon"]["lock_held_by_pid"].is_i64(), "{st}");
        assert_eq!(side["conflicts"], 1, "{st}");
    }
    assert_eq!(st["sides"][1]["initial_copy"]["state"], "done", "{st}");
    assert_eq!(st["sides"][1]["initial_copy"]["rows_copied"], 50, "{st}");
    let status = daemon.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", daemon.log());
}

/// A backlog of many batches in one direction: each batch's successor is read
/// ahead on the source while it is applied (the batch's source deltas deleted
/// in that read's transaction). The daemon is aborted at each fail point in
/// turn, then the other side writes some of the same keys during the drain
/// (late conflicts, reads ahead thrown away). Everything converges, nothing is
/// left pending, no ledger row is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_drained_in_small_batches_read_ahead_while_the_other_side_writes() {
    let pair = pair_with_schema().await;
    let cfg = ConfigFile::for_pair(
        &pair,
        "[replication]\nbatch_rows = 7\npoll_interval_ms = 20\n",
    );
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    pair.left
        .execute(
            "insert into parent select g, 'p' || g from generate_series(1, 200) g;
             insert into child select g, (g % 200) + 1, pg_catalog.jsonb_build_object('g', g)
               from generate_series(1, 300) g;
             update parent set name = name || '!' where id % 3 = 0;
             delete from child where id % 7 = 0;
             insert into \"Mixed Case\" select 'k' || g, g from generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let run = |fail_point: Option<&'static str>| {
        let mut command = daemon(&cfg.path, &["replicate", "--until-idle"])
            .log_filter("info,pgduplex_engine::replicate=debug");
        if let Some(point) = fail_point {
            command = command.env("PGDUPLEX_FAILPOINT", point);
        }
        let mut run = command.start();
        async move {
            let status = run.wait_exit(Duration::from_secs(120)).await;
            (status, run.log())
        }
    };
    // Aborted (as kill -9 would) a few batches in, at each fail point in turn:
    // with a read ahead (and the previous batch's deletes in its transaction)
    // open, between a commit and the deletes, before the ledger row goes, ...
    for point in [
        "applied:5",
        "source-deleted:3",
        "staged:4",
        "before-commit:6",
        "decided:3",
        "source-deleted:1",
    ] {
        let (status, log) = run(Some(point)).await;
        assert!(
            !status.success() && log.contains("fail point"),
            "{point}: {status}\n{log}"
        );
    }
    let writer = {
        let right = pair.right.client().await.unwrap();
        tokio::spawn(async move {
            for round in 0..20i64 {
                right
                    .execute(
                        "update parent set name = name || 'R' where id % 13 = $1::int8 % 13",
                        &[&round],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            }
        })
    };
    let (status, log) = run(None).await;
    writer.await.unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("were read ahead"),
        "no batch was read ahead:\n{log}"
    );
    let (status, log) = run(None).await;
    assert!(status.success(), "{log}");
    assert_converged(&pair).await;
}
