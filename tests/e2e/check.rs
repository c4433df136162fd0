//! `pgduplex check`: each kind of problem is reported with what to do, exit codes
//! say whether replication can go ahead, and nothing is changed.

use pgduplex_testkit::{unique_name, TestPair};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn ready_pair_exits_0_and_changes_nothing() {
    let pair = TestPair::new().await;
    pair.execute_both(
        "create table a (id int primary key, v text);
         create table p (a int, b int, primary key (a, b)) partition by range (a);
         create table p1 partition of p for values from (0) to (10);
         insert into a values (1, 'x');",
    )
    .await
    .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let before = all_user_rows(&pair.left).await;
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("2 table(s) to replicate, 0 left out, 0 error(s)."),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("Replication can go ahead."),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("table public.p: partitioned table (1 partitions on the left, 1 on the right): the root is replicated"),
        "{}",
        run.all()
    );
    assert_eq!(before, all_user_rows(&pair.left).await);
    for db in [&pair.left, &pair.right] {
        assert!(pgduplex_objects(&db.client().await.unwrap())
            .await
            .is_empty());
    }
    let json = pgduplex_async(&cfg.path, &["check", "--format", "json"]).await;
    json.assert_code(0);
    let v: serde_json::Value =
        serde_json::from_str(&json.stdout).expect("check --format json prints JSON");
    assert_eq!(v["replicated"], serde_json::json!(["public.a", "public.p"]));
    assert_eq!(v["sides"][0]["side"], "left");
}

#[tokio::test(flavor = "multi_thread")]
async fn structural_differences_exit_1_with_fixes() {
    let pair = TestPair::new().await;
    pair.left
        .execute(
            "create table only_left (id int primary key);
             create table typed (id int primary key, amount numeric(10,2), extra text);
             create table keyed (id int primary key, email text not null);",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "create table typed (id int primary key, amount numeric(12,2));
             create table keyed (id int, email text not null unique);",
        )
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(1);
    let out = run.stdout.clone();
    assert!(
        out.contains("error   right: table public.only_left: exists on the left side only"),
        "{out}"
    );
    assert!(out.contains("or exclude it in [tables] exclude"), "{out}");
    assert!(
        out.contains("column amount is numeric(10,2) on the left but numeric(12,2) on the right"),
        "{out}"
    );
    assert!(out.contains("column extra only on the left"), "{out}");
    assert!(
        out.contains("the key differs: (id) on the left, (email) on the right"),
        "{out}"
    );
    assert!(out.contains("Replication cannot go ahead"), "{out}");
    // install refuses and changes nothing.
    let install = pgduplex_async(&cfg.path, &["install"]).await;
    install.assert_code(1);
    assert!(
        install.stderr.contains("install refused"),
        "{}",
        install.all()
    );
    for db in [&pair.left, &pair.right] {
        assert!(pgduplex_objects(&db.client().await.unwrap())
            .await
            .is_empty());
    }
    // Excluding the offending tables makes the pair ready.
    let cfg = ConfigFile::for_pair(
        &pair,
        "[tables]\nexclude = ['^public\\.(only_left|typed|keyed)$']",
    );
    pgduplex_async(&cfg.path, &["check"]).await.assert_code(0);
}

/// With an apply role that may not set session_replication_role (as on Heroku),
/// user triggers and foreign-key actions would fire during apply: check refuses
/// unless they are guarded or the user opts in. A superuser apply role uses replica
/// mode, so ordinary triggers and FK actions do not fire and are not reported.
#[tokio::test(flavor = "multi_thread")]
async fn triggers_and_fk_actions_that_would_fire_on_apply() {
    let pair = TestPair::new().await;
    let role = unique_name("applier");
    pair.create_role(&role, "applier-pw", "").await.unwrap();
    let schema = format!(
        "create table parent (id int primary key, updated_at timestamptz);
         create table child (id int primary key, parent_id int references parent(id) on delete cascade);
         create function touch() returns trigger language plpgsql as $$begin new.updated_at := now(); return new; end$$;
         create trigger touch before update on parent for each row execute function touch();
         create trigger guarded before update on child for each row
           when (current_setting('pgduplex.applying', true) is distinct from 'on') execute function touch();
         create trigger always_on after insert on child for each row execute function touch();
         alter table child enable always trigger always_on;
         alter table parent owner to {role}; alter table child owner to {role};
         grant create on database {db} to {role};",
        role = pgduplex_testkit::db::quote_ident(&role),
        db = pgduplex_testkit::db::quote_ident(pair.left.name()),
    );
    pair.execute_both(&schema).await.unwrap();

    let as_role = ConfigFile::for_urls(
        &pair.left.url_for(&role, "applier-pw"),
        &pair.right.url_for(&role, "applier-pw"),
        "",
    );
    let run = pgduplex_async(&as_role.path, &["check"]).await;
    run.assert_code(1);
    let out = run.stdout.clone();
    assert!(
        out.contains("may not use session_replication_role"),
        "{out}"
    );
    assert!(
        out.contains("trigger touch on public.parent would fire when pgduplex applies changes"),
        "{out}"
    );
    assert!(
        out.contains("WHEN (current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on')"),
        "{out}"
    );
    assert!(
        !out.contains("trigger guarded"),
        "a guarded trigger is not a problem: {out}"
    );
    assert!(
        out.contains("foreign key child_parent_id_fkey of public.child has ON DELETE CASCADE"),
        "{out}"
    );
    // install is not blocked by apply-time findings (they matter to replicate).
    pgduplex_async(&as_role.path, &["install"])
        .await
        .assert_code(0);

    let opted_in = ConfigFile::for_urls(
        &pair.left.url_for(&role, "applier-pw"),
        &pair.right.url_for(&role, "applier-pw"),
        "[replication]\nallow_apply_triggers = true",
    );
    let run = pgduplex_async(&opted_in.path, &["check"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("warning left: table public.parent: trigger touch"),
        "{}",
        run.all()
    );

    // A superuser uses replica mode: only the ENABLE ALWAYS trigger still fires.
    let superuser = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&superuser.path, &["check"]).await;
    run.assert_code(1);
    let out = run.stdout.clone();
    assert!(out.contains("may use session_replication_role"), "{out}");
    assert!(
        out.contains("trigger always_on on public.child would fire"),
        "{out}"
    );
    assert!(!out.contains("trigger touch"), "{out}");
    assert!(!out.contains("ON DELETE CASCADE"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_privileges_are_reported_with_the_grant_to_run() {
    let pair = TestPair::new().await;
    let role = unique_name("weak");
    pair.create_role(&role, "weak-pw", "").await.unwrap();
    pair.execute_both(&format!(
        "create table t (id int primary key); grant select on t to {r}; revoke create on database {db} from public;",
        r = pgduplex_testkit::db::quote_ident(&role),
        db = pgduplex_testkit::db::quote_ident(pair.left.name()),
    ))
    .await
    .unwrap();
    let cfg = ConfigFile::for_urls(
        &pair.left.url_for(&role, "weak-pw"),
        &pair.right.url_for(&role, "weak-pw"),
        "",
    );
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(1);
    let out = run.stdout.clone();
    assert!(
        out.contains(&format!("user {role} may not create schema pgduplex")),
        "{out}"
    );
    assert!(out.contains("GRANT CREATE ON DATABASE"), "{out}");
    assert!(
        out.contains(&format!("user {role} does not own this table")),
        "{out}"
    );
    assert!(
        out.contains("lacks INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER"),
        "{out}"
    );
}

/// A capture trigger found disabled is an alarm.
#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_capture_trigger_is_an_error() {
    let pair = TestPair::new().await;
    pair.execute_both("create table t (id int primary key)")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    pgduplex_async(&cfg.path, &["check"]).await.assert_code(0);
    pair.right
        .execute("alter table t disable trigger pgduplex_capture_insert")
        .await
        .unwrap();
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "right: table public.t: pgduplex's capture trigger pgduplex_capture_insert is disabled"
        ),
        "{}",
        run.all()
    );
    // install repairs it.
    let run = pgduplex_async(&cfg.path, &["install"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("right: capture installed on 1 table(s)"),
        "{}",
        run.all()
    );
    pgduplex_async(&cfg.path, &["check"]).await.assert_code(0);
}

/// A partition created after install has its rows captured (the row trigger is
/// cloned) but not a TRUNCATE aimed at it alone: check says so, install fixes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_created_after_install_is_flagged_for_truncate() {
    let pair = TestPair::new().await;
    pair.execute_both(
        "create table p (a int, b int, primary key (a, b)) partition by range (a);
         create table p1 partition of p for values from (0) to (10);",
    )
    .await
    .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    pair.left
        .execute("create table p2 partition of p for values from (10) to (20)")
        .await
        .unwrap();
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("warning left: partition public.p2: created after the last install"),
        "{}",
        run.all()
    );
    let run = pgduplex_async(&cfg.path, &["install"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("left: capture installed on 1 table(s)"),
        "{}",
        run.all()
    );
    let l = pair.left.client().await.unwrap();
    l.batch_execute("truncate p2").await.unwrap();
    assert_eq!(truncates(&l).await.len(), 1);
    assert_eq!(truncates(&l).await[0].0, "public.p2");
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    assert!(!run.stdout.contains("partition public.p2"), "{}", run.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_key_to_a_table_left_out_is_a_warning() {
    let pair = TestPair::new().await;
    pair.execute_both(
        "create table customers (id int primary key);
         create table orders (id int primary key, customer int references customers (id));",
    )
    .await
    .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "[tables]\nexclude = [\"^public\\\\.customers$\"]\n");
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(0);
    let out = run.stdout.clone();
    assert!(
        out.contains(
            "foreign key orders_customer_fkey references public.customers, which is not replicated"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "replicate public.customers too ([tables] include), or keep it identical on both sides"
        ),
        "{out}"
    );
    // Replicated too: no such warning.
    let cfg = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&cfg.path, &["check"]).await;
    run.assert_code(0);
    assert!(
        !run.stdout.contains("which is not replicated"),
        "{}",
        run.stdout
    );
}
