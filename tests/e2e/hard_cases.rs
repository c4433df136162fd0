//! Schemas and change patterns that break naive appliers: swapped UNIQUE values,
//! identity and generated columns, rows moving between partitions, TRUNCATE of
//! tables linked by a foreign key, a child inserted while its parent is deleted on
//! the other side, a batch cut between parents and children, and a table rewrite
//! while the daemon runs.
//!
//! Where foreign keys matter, the cases run twice: as superuser (the apply uses
//! `session_replication_role = replica`, so the target checks no foreign keys) and
//! as a plain role owning the tables (foreign keys are checked on apply).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgduplex_testkit::TestPair;
use serde_json::json;
use tokio_postgres::Client;

use crate::conflicts::{
    assert_no_conflicts, conflict_log, replicate_until_idle, rows, run_bounded,
};
use crate::support::*;

/// Who the daemon connects as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Superuser: replica role on apply, foreign keys not checked on the target.
    Superuser,
    /// A plain role owning the tables: foreign keys checked on apply.
    Owner,
}

/// A pair with `schema` on both sides and the capture installed, the daemon
/// connecting as `role`.
async fn pair_with(schema: &str, extra: &str, role: Role) -> (TestPair, ConfigFile) {
    let pair = TestPair::new().await;
    pair.execute_both(schema).await.unwrap();
    let cfg = match role {
        Role::Superuser => ConfigFile::for_pair(&pair, extra),
        Role::Owner => config_as_owner(&pair, extra).await,
    };
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    (pair, cfg)
}

const ORPHANS: &str =
    "select count(*) from child c where not exists (select 1 from parent p where p.id = c.parent_id)";

async fn assert_no_orphans(pair: &TestPair, ctx: &str) {
    let (l, r) = clients(pair).await;
    assert_eq!(
        count(&l, ORPHANS).await,
        0,
        "{ctx}: orphan children on left"
    );
    assert_eq!(
        count(&r, ORPHANS).await,
        0,
        "{ctx}: orphan children on right"
    );
}

// ---------------------------------------------------------------------------
// a. UNIQUE values swapped and rotated
// ---------------------------------------------------------------------------

/// `users` has a plain UNIQUE (checked row by row, so the source swaps through a
/// temporary value in one transaction); `users_d` a DEFERRABLE one (checked at the
/// end of the statement, so one UPDATE swaps). On the target the set-based upsert
/// of a swap meets the old values.
#[tokio::test]
async fn unique_values_swapped_and_rotated() {
    let schema = "create table users (id int primary key, email text not null unique);
        create table users_d (id int primary key, email text not null unique deferrable initially immediate);";
    let (pair, cfg) = pair_with(schema, "", Role::Superuser).await;
    pair.left
        .execute(
            "insert into users values (1, 'a@x'), (2, 'b@x'), (3, 'c@x');
             insert into users_d values (1, 'a@x'), (2, 'b@x'), (3, 'c@x');",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;

    // Swap on left.
    pair.left
        .execute(
            "begin;
             update users set email = 'tmp' where id = 1;
             update users set email = 'a@x' where id = 2;
             update users set email = 'b@x' where id = 1;
             commit;
             update users_d set email = case id when 1 then 'b@x' when 2 then 'a@x' end where id in (1, 2);",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    let (l, r) = clients(&pair).await;
    for t in ["users", "users_d"] {
        assert_eq!(rows(&r, t).await, ["(1,b@x)", "(2,a@x)", "(3,c@x)"], "{t}");
    }

    // Three-way rotation on right, the other direction.
    pair.right
        .execute(
            "begin;
             update users set email = 'tmp' where id = 1;
             update users set email = 'b@x' where id = 2;
             update users set email = 'a@x' where id = 3;
             update users set email = 'c@x' where id = 1;
             commit;
             update users_d set email = case id when 1 then 'c@x' when 2 then 'b@x' when 3 then 'a@x' end;",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    for t in ["users", "users_d"] {
        assert_eq!(rows(&l, t).await, ["(1,c@x)", "(2,b@x)", "(3,a@x)"], "{t}");
    }
    assert_no_conflicts(&l, "").await;
}

// ---------------------------------------------------------------------------
// b. Identity and generated columns
// ---------------------------------------------------------------------------

#[tokio::test]
async fn identity_and_generated_columns() {
    let schema = "create table ident (id int generated always as identity primary key, v text);
        create table gen (id int primary key, a int not null, b int not null,
                          total int generated always as (a + b) stored,
                          label text generated always as ('#' || id::text || ':' || (a * b)::text) stored);";
    let (pair, cfg) = pair_with(schema, "", Role::Superuser).await;
    // The sides' identity sequences hand out different ranges, as a user would set
    // them up to insert on both sides.
    pair.right
        .execute("alter table ident alter column id restart with 1000")
        .await
        .unwrap();
    pair.left
        .execute(
            "insert into ident (v) values ('l1'), ('l2');
             insert into gen (id, a, b) values (1, 1, 2), (3, 5, 5);",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "insert into ident (v) values ('r1'), ('r2');
             insert into gen (id, a, b) values (2, 10, 20);",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    let (l, r) = clients(&pair).await;
    assert_eq!(
        rows(&l, "ident").await,
        ["(1,l1)", "(2,l2)", "(1000,r1)", "(1001,r2)"]
    );
    assert_eq!(
        rows(&r, "gen").await,
        ["(1,1,2,3,#1:2)", "(2,10,20,30,#2:200)", "(3,5,5,10,#3:25)"]
    );

    // Updates of the other side's rows, a delete, and more inserts.
    pair.left
        .execute(
            "update ident set v = 'l-upd' where id = 1000;
             update gen set b = 7 where id = 2;
             delete from ident where id = 2;
             insert into ident (v) values ('l3');",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "update ident set v = 'r-upd' where id = 1;
             update gen set a = 4 where id = 1;
             delete from gen where id = 3;
             insert into ident (v) values ('r3');",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    assert_eq!(
        rows(&r, "ident").await,
        [
            "(1,r-upd)",
            "(3,l3)",
            "(1000,l-upd)",
            "(1001,r2)",
            "(1002,r3)"
        ]
    );
    assert_eq!(
        rows(&l, "gen").await,
        ["(1,4,2,6,#1:8)", "(2,10,7,17,#2:70)"]
    );
    assert_no_conflicts(&l, "").await;
}

// ---------------------------------------------------------------------------
// c. Rows moving between partitions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_moves_rows_between_partitions() {
    let schema = "
        create table m (day date not null, id int not null, v text, primary key (day, id)) partition by range (day);
        create table m_jan partition of m for values from ('2024-01-01') to ('2024-02-01');
        create table m_feb partition of m for values from ('2024-02-01') to ('2024-03-01');
        create table e (region text not null, id int not null, v text, primary key (region, id)) partition by list (region);
        create table e_eu partition of e for values in ('eu');
        create table e_us partition of e for values in ('us');
        create table h (id int primary key, v text) partition by hash (id);
        create table h_0 partition of h for values with (modulus 2, remainder 0);
        create table h_1 partition of h for values with (modulus 2, remainder 1);";
    let (pair, cfg) = pair_with(schema, "", Role::Superuser).await;
    pair.left
        .execute(
            "insert into m values ('2024-01-10', 1, 'a'), ('2024-01-20', 2, 'b');
             insert into e values ('eu', 1, 'x'), ('us', 2, 'y');
             insert into h select g, 'h' || g from generate_series(1, 6) g;",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;

    let pair_ref = &pair;
    let where_is = |table: &'static str, id: i32| async move {
        let (l, r) = clients(pair_ref).await;
        let sql = format!("select tableoid::regclass::text from {table} where id = $1");
        let mut out = Vec::new();
        for c in [&l, &r] {
            out.push(
                c.query_opt(&sql, &[&id])
                    .await
                    .unwrap()
                    .map(|r| r.get::<_, String>(0)),
            );
        }
        out
    };
    let h_before: Vec<Option<String>> = {
        let (l, _) = clients(&pair).await;
        let mut v = Vec::new();
        for id in 1..=6 {
            v.push(
                l.query_opt(
                    "select tableoid::regclass::text from h where id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .map(|r| r.get(0)),
            );
        }
        v
    };

    // Range and hash on left, list on right.
    pair.left
        .execute(
            "update m set day = '2024-02-15', v = 'moved' where id = 1;
             update h set id = id + 100;",
        )
        .await
        .unwrap();
    pair.right
        .execute("update e set region = 'us', v = 'moved' where region = 'eu' and id = 1;")
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    let both = |s: &str| vec![Some(s.to_string()), Some(s.to_string())];
    assert_eq!(where_is("m", 1).await, both("m_feb"));
    assert_eq!(where_is("m", 2).await, both("m_jan"));
    assert_eq!(where_is("e", 1).await, both("e_us"));
    // Each row is in the same partition on both sides; some changed partition.
    let (l, r) = clients(&pair).await;
    assert_eq!(
        rows(&r, "h").await,
        ["(101,h1)", "(102,h2)", "(103,h3)", "(104,h4)", "(105,h5)", "(106,h6)"]
    );
    let mut moved = 0;
    for id in 1..=6 {
        let now = where_is("h", id + 100).await;
        assert_eq!(now[0], now[1], "h id {}", id + 100);
        if now[0] != h_before[id as usize - 1] {
            moved += 1;
        }
    }
    assert!(moved > 0, "no row changed hash partition");
    assert_eq!(
        rows(&l, "m").await.len() + rows(&l, "e").await.len(),
        4,
        "no row lost or duplicated"
    );
}

// ---------------------------------------------------------------------------
// d. TRUNCATE of tables linked by a foreign key, then inserts, in one transaction
// ---------------------------------------------------------------------------

const FK_SCHEMA: &str = "create table parent (id int primary key, name text);
    create table child (id int primary key, parent_id int not null references parent (id), v text);";

async fn truncate_of_linked_tables_then_inserts(role: Role) {
    let ctx = format!("as {role:?}");
    let (pair, cfg) = pair_with(FK_SCHEMA, "", role).await;
    pair.left
        .execute(
            "insert into parent values (1, 'p1'), (2, 'p2'), (3, 'p3');
             insert into child values (10, 1, 'c10'), (11, 1, 'c11'), (12, 2, 'c12');",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "insert into parent values (50, 'p50');
             insert into child values (500, 50, 'c500');",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    let (l, r) = clients(&pair).await;

    // A TRUNCATE of both alone.
    pair.left.execute("truncate parent, child").await.unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    assert_eq!(count(&r, "select count(*) from parent").await, 0, "{ctx}");

    // Rows again on both sides, then TRUNCATE and inserts in one transaction.
    pair.left
        .execute(
            "insert into parent values (1, 'p1'), (2, 'p2'), (3, 'p3');
             insert into child values (10, 1, 'c10'), (11, 1, 'c11'), (12, 2, 'c12');",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "insert into parent values (50, 'p50'); insert into child values (500, 50, 'c500');",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    pair.left
        .execute(
            "begin;
             truncate parent, child;
             insert into parent values (100, 'p100'), (2, 'p2-again');
             insert into child values (1000, 100, 'c1000'), (12, 2, 'c12-again');
             commit;",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    assert_eq!(
        rows(&r, "parent").await,
        ["(2,p2-again)", "(100,p100)"],
        "{ctx}"
    );
    assert_eq!(
        rows(&r, "child").await,
        ["(12,2,c12-again)", "(1000,100,c1000)"],
        "{ctx}"
    );
    assert_no_conflicts(&l, &ctx).await;
    assert_no_conflicts(&r, &ctx).await;
}

#[tokio::test]
async fn truncate_of_linked_tables_then_inserts_in_one_transaction_replica_role() {
    truncate_of_linked_tables_then_inserts(Role::Superuser).await;
}

#[tokio::test]
async fn truncate_of_linked_tables_then_inserts_in_one_transaction_foreign_keys_checked() {
    truncate_of_linked_tables_then_inserts(Role::Owner).await;
}

// ---------------------------------------------------------------------------
// e. A child inserted on one side while its parent is deleted on the other
// ---------------------------------------------------------------------------

/// Under left_wins the left's delete of the parent wins: the right's new child
/// cannot stay (on either side), the sides converge with no orphan, the conflict
/// is logged, and `--until-idle` ends instead of retrying a failing batch for ever.
async fn child_inserted_while_parent_deleted(role: Role) {
    let ctx = format!("as {role:?}");
    let (pair, cfg) = pair_with(FK_SCHEMA, "[replication]\nconflict = \"left_wins\"", role).await;
    pair.left
        .execute(
            "insert into parent values (1, 'one'), (2, 'two');
             insert into child values (20, 2, 'kept');",
        )
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;

    pair.left
        .execute("delete from parent where id = 1")
        .await
        .unwrap();
    pair.right
        .execute("insert into child values (10, 1, 'new child')")
        .await
        .unwrap();

    let run = run_bounded(Some(&pair), &cfg.path, &["replicate", "--until-idle"], 60).await;
    run.assert_code(0);
    assert_converged(&pair).await;
    assert_no_orphans(&pair, &ctx).await;
    let (l, r) = clients(&pair).await;
    assert_eq!(rows(&l, "parent").await, ["(2,two)"], "{ctx}");
    assert_eq!(rows(&l, "child").await, ["(20,2,kept)"], "{ctx}");
    for (side, c) in [("left", &l), ("right", &r)] {
        let log = conflict_log(c).await;
        assert!(
            log.iter().any(|e| e.table == "public.child"
                && e.kind == "foreign_key"
                && e.key == Some(json!(["10"]))
                && e.policy == "left_wins"
                && e.winner == "left"
                // The child's rows as each side held them: none on the left,
                // the new child on the right.
                && e.left_row.is_none()
                && e.right_row
                    == Some(json!({"id": 10, "parent_id": 1, "v": "new child"}))),
            "{ctx}: no foreign_key conflict for child 10 (with its rows) logged on {side}: {log:#?}"
        );
    }
}

#[tokio::test]
async fn child_inserted_while_parent_deleted_replica_role() {
    child_inserted_while_parent_deleted(Role::Superuser).await;
}

#[tokio::test]
async fn child_inserted_while_parent_deleted_foreign_keys_checked() {
    child_inserted_while_parent_deleted(Role::Owner).await;
}

// ---------------------------------------------------------------------------
// e2. The same with a self-reference: a row inserted on right under a row
//     deleted on left, in one table
// ---------------------------------------------------------------------------

async fn self_referencing_row_inserted_under_a_deleted_one(role: Role, policy: &str) {
    let ctx = format!("as {role:?}, {policy}");
    let (pair, cfg) = pair_with(
        "create table staff (id int primary key, boss int references staff (id), name text)",
        &format!("[replication]\nconflict = \"{policy}\""),
        role,
    )
    .await;
    pair.left
        .execute("insert into staff values (1, null, 'ceo'), (5, 1, 'manager'), (6, 5, 'report')")
        .await
        .unwrap();
    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;

    // Left moves the report to the CEO and deletes the manager; right hires
    // under the manager.
    pair.left
        .execute("update staff set boss = 1 where id = 6; delete from staff where id = 5")
        .await
        .unwrap();
    pair.right
        .execute("insert into staff values (7, 5, 'new hire')")
        .await
        .unwrap();

    let run = run_bounded(Some(&pair), &cfg.path, &["replicate", "--until-idle"], 60).await;
    run.assert_code(0);
    assert_converged(&pair).await;
    let (l, r) = clients(&pair).await;
    let orphans = "select count(*) from staff s where s.boss is not null \
                   and not exists (select 1 from staff b where b.id = s.boss)";
    assert_eq!(count(&l, orphans).await, 0, "{ctx}: orphans on left");
    assert_eq!(count(&r, orphans).await, 0, "{ctx}: orphans on right");
    let expected: &[&str] = if policy == "left_wins" {
        // The delete wins: the new hire goes with the manager.
        &["(1,,ceo)", "(6,1,report)"]
    } else {
        // The hire wins: the manager comes back.
        &[
            "(1,,ceo)",
            "(5,1,manager)",
            "(6,1,report)",
            "(7,5,\"new hire\")",
        ]
    };
    assert_eq!(rows(&l, "staff").await, expected, "{ctx}");
    let log = conflict_log(&l).await;
    assert!(
        log.iter().any(|e| e.table == "public.staff"
            && e.kind == "foreign_key"
            && e.key == Some(json!(["7"]))),
        "{ctx}: no foreign_key conflict for staff 7 logged: {log:#?}"
    );
}

#[tokio::test]
async fn self_referencing_row_inserted_under_a_deleted_one_replica_role() {
    self_referencing_row_inserted_under_a_deleted_one(Role::Superuser, "left_wins").await;
    self_referencing_row_inserted_under_a_deleted_one(Role::Superuser, "right_wins").await;
}

#[tokio::test]
async fn self_referencing_row_inserted_under_a_deleted_one_foreign_keys_checked() {
    self_referencing_row_inserted_under_a_deleted_one(Role::Owner, "left_wins").await;
    self_referencing_row_inserted_under_a_deleted_one(Role::Owner, "right_wins").await;
}

// ---------------------------------------------------------------------------
// f. A batch cut by the cap between parents and children
// ---------------------------------------------------------------------------

async fn batch_cut_between_parents_and_children(role: Role) {
    let ctx = format!("as {role:?}");
    let (pair, cfg) = pair_with(FK_SCHEMA, "[replication]\nbatch_rows = 3", role).await;
    pair.left
        .execute(
            "begin;
             insert into parent select g, 'p' || g from generate_series(1, 20) g;
             insert into child select g, (g % 20) + 1, 'c' || g from generate_series(1, 40) g;
             commit;",
        )
        .await
        .unwrap();
    let run = run_bounded(Some(&pair), &cfg.path, &["replicate", "--until-idle"], 60).await;
    run.assert_code(0);
    assert_converged(&pair).await;
    assert_no_orphans(&pair, &ctx).await;
    let (l, r) = clients(&pair).await;
    assert_eq!(count(&r, "select count(*) from parent").await, 20, "{ctx}");
    assert_eq!(count(&r, "select count(*) from child").await, 40, "{ctx}");

    // Deletes in one transaction, children first, then the parents left without
    // children; and a re-parenting, from the right.
    pair.right
        .execute(
            "begin;
             delete from child where id > 10;
             delete from parent p where not exists (select 1 from child c where c.parent_id = p.id);
             insert into parent values (100, 'p100');
             update child set parent_id = 100 where id <= 5;
             commit;",
        )
        .await
        .unwrap();
    let run = run_bounded(Some(&pair), &cfg.path, &["replicate", "--until-idle"], 60).await;
    run.assert_code(0);
    assert_converged(&pair).await;
    assert_no_orphans(&pair, &ctx).await;
    assert_eq!(count(&l, "select count(*) from child").await, 10, "{ctx}");
    assert_eq!(count(&l, "select count(*) from parent").await, 11, "{ctx}");
    assert_no_conflicts(&l, &ctx).await;
}

#[tokio::test]
async fn batch_cut_between_parents_and_children_replica_role() {
    batch_cut_between_parents_and_children(Role::Superuser).await;
}

#[tokio::test]
async fn batch_cut_between_parents_and_children_foreign_keys_checked() {
    batch_cut_between_parents_and_children(Role::Owner).await;
}

// ---------------------------------------------------------------------------
// g. A table rewrite (ALTER COLUMN TYPE) while the daemon runs
// ---------------------------------------------------------------------------

/// Inserts rows `next..` one per transaction on `db` until `stop`; `next` tells
/// the next id to write.
fn spawn_writer(
    client: Client,
    next: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let i = next.load(Ordering::SeqCst);
            client
                .batch_execute(&format!("insert into t values ({i}, {i})"))
                .await
                .expect("writer insert");
            next.store(i + 1, Ordering::SeqCst);
        }
    })
}

async fn rewrite_while_the_daemon_runs(write_right_too: bool) {
    let (pair, cfg) = pair_with(
        "create table t (id int primary key, v int);",
        "",
        Role::Superuser,
    )
    .await;
    let mut daemon = start_replicate(&cfg);
    let (l, r) = clients(&pair).await;

    for i in 1..=50 {
        pair.left
            .execute(&format!("insert into t values ({i}, {i})"))
            .await
            .unwrap();
    }
    wait_for(
        Duration::from_secs(30),
        "the daemon to replicate the first 50 rows",
        || async { count(&r, "select count(*) from t").await == 50 },
    )
    .await;

    // Writers keep going through the rewrite.
    let stop = Arc::new(AtomicBool::new(false));
    let left_next = Arc::new(AtomicI64::new(1000));
    let right_next = Arc::new(AtomicI64::new(1_000_000));
    let mut writers = vec![spawn_writer(
        pair.left.client().await.unwrap(),
        left_next.clone(),
        stop.clone(),
    )];
    if write_right_too {
        writers.push(spawn_writer(
            pair.right.client().await.unwrap(),
            right_next.clone(),
            stop.clone(),
        ));
    }
    wait_for(
        Duration::from_secs(30),
        "rows written during the run to reach right",
        || async {
            count(
                &r,
                "select count(*) from t where id >= 1010 and id < 1000000",
            )
            .await
                > 0
        },
    )
    .await;

    for (side, db) in [("left", &pair.left), ("right", &pair.right)] {
        let alter = db.execute("alter table t alter column v type bigint");
        match tokio::time::timeout(Duration::from_secs(30), alter).await {
            Ok(res) => res.unwrap(),
            Err(_) => panic!(
                "ALTER TABLE on {side} did not finish within 30 s while the daemon ran; sessions:\n{}\n--- daemon log\n{}",
                sessions(db),
                daemon.log()
            ),
        }
    }
    let after = left_next.load(Ordering::SeqCst);
    wait_for(
        Duration::from_secs(30),
        "rows written after the rewrite to reach right",
        || async {
            count(
                &r,
                &format!(
                    "select count(*) from t where id >= {} and id < 1000000",
                    after + 20
                ),
            )
            .await
                > 0
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let written = (left_next.load(Ordering::SeqCst) - 1000)
        + (right_next.load(Ordering::SeqCst) - 1_000_000)
        + 50;

    // SIGTERM: the daemon finishes or rolls back the batch in hand and exits 0.
    let status = daemon.terminate(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "daemon exit\n{}", daemon.log());

    replicate_until_idle(&pair, &cfg.path).await;
    assert_converged(&pair).await;
    let (ln, rn) = (
        count(&l, "select count(*) from t").await,
        count(&r, "select count(*) from t").await,
    );
    assert!(rn >= ln, "right has {rn} rows, left {ln}");
    assert_eq!(ln, written, "rows lost: {} written", written);
    assert_eq!(
        pending(&l).await + pending(&r).await,
        0,
        "pending after drain"
    );
    let ty: String = r
        .query_one(
            "select format_type(atttypid, atttypmod) from pg_attribute where attrelid = 't'::regclass and attname = 'v'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "bigint");
}

#[tokio::test(flavor = "multi_thread")]
async fn table_rewrite_while_the_daemon_runs() {
    rewrite_while_the_daemon_runs(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn table_rewrite_while_the_daemon_runs_with_writes_on_both_sides() {
    rewrite_while_the_daemon_runs(true).await;
}
