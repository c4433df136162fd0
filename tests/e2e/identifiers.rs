//! Identifiers that need quoting everywhere: mixed case, spaces, double quotes,
//! dots, backslashes and reserved words, in schema, table, column and type names,
//! through every command (`check`, `install`, capture, `install` again,
//! `uninstall`) and through the `[tables]` selection.

use pgduplex_testkit::TestPair;
use serde_json::json;
use tokio_postgres::Client;

use crate::support::{
    all_user_rows, d, deltas, pgduplex_async, pgduplex_objects, sorted, truncates, ConfigFile,
};

/// The odd schema, as the catalog spells it.
const SCHEMA: &str = "My \"Odd\".Schema";
/// A table whose name is a reserved word.
const SELECT: &str = "select";
/// A table whose name has a space.
const ORDER_ITEMS: &str = "Order Items";
/// A table whose name has a dot, a double quote and a backslash.
const DOTTED: &str = "Dot.And\"Quote\\Back";

/// The same tables on both sides, with a few rows each. `a.b`, `user` and
/// `"Key Col"` are columns; one key column has an enum type of the odd schema whose
/// name also needs quoting.
const DDL: &str = r#"
CREATE SCHEMA "My ""Odd"".Schema";
CREATE TYPE "My ""Odd"".Schema"."Item Kind" AS ENUM ('Big One', 'small''s');
CREATE TABLE "My ""Odd"".Schema"."select" (
    "Key Col" int PRIMARY KEY,
    "user" text,
    "a.b" text
);
CREATE TABLE "My ""Odd"".Schema"."Order Items" (
    "Key Col" text,
    "Kind" "My ""Odd"".Schema"."Item Kind",
    "user" int,
    "a.b" text,
    PRIMARY KEY ("Key Col", "Kind")
);
CREATE TABLE "My ""Odd"".Schema"."Dot.And""Quote\Back" (
    "we""ird" bigint PRIMARY KEY,
    "SELECT" text
);
CREATE TABLE public.plain (id int PRIMARY KEY);
INSERT INTO "My ""Odd"".Schema"."select" VALUES (1, 'alice', 'x'), (2, 'bob', 'y');
INSERT INTO "My ""Odd"".Schema"."Order Items" VALUES ('A "1"', 'Big One', 1, 'p');
INSERT INTO "My ""Odd"".Schema"."Dot.And""Quote\Back" VALUES (10, 'ten');
INSERT INTO public.plain VALUES (1);
"#;

/// `schema.table`, plain, as pgduplex prints table names and `[tables]` matches them.
fn plain(table: &str) -> String {
    format!("{SCHEMA}.{table}")
}

/// The tables recorded in `pgduplex.replicated_table` as (schema, table).
async fn replicated(client: &Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT table_schema, table_name FROM pgduplex.replicated_table ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("read replicated_table")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// pgduplex's triggers on user tables as `schema.table trigger enabled`, read from
/// the catalogs by the table's plain names.
async fn capture_triggers(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT n.nspname || '.' || c.relname || ' ' || t.tgname || ' ' || t.tgenabled::text \
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE t.tgname LIKE 'pgduplex%' ORDER BY 1",
            &[],
        )
        .await
        .expect("list triggers")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The `replicated` list of `check --format json`, sorted.
async fn check_json_replicated(cfg: &ConfigFile) -> Vec<String> {
    let run = pgduplex_async(&cfg.path, &["check", "--format", "json"]).await;
    run.assert_code(0);
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("check --format json prints JSON");
    let mut names: Vec<String> = report["replicated"]
        .as_array()
        .expect("replicated is a list")
        .iter()
        .map(|v| v.as_str().expect("a table name").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_identifiers_work_in_every_command() {
    let pair = TestPair::new().await;
    pair.execute_both(DDL).await.expect("create odd tables");
    // Every table of the database is selected: keep the plain one out of the way.
    let cfg = ConfigFile::for_pair(&pair, "[tables]\nexclude = ['^public\\.']\n");
    let left_rows_at_start = all_user_rows(&pair.left).await;
    let right_rows_at_start = all_user_rows(&pair.right).await;

    // check: ready, and lists the odd tables by name.
    let check = pgduplex_async(&cfg.path, &["check"]).await;
    check.assert_code(0);
    assert!(
        check
            .stdout
            .contains("3 table(s) to replicate, 0 left out, 0 error(s)."),
        "{}",
        check.all()
    );
    let mut want = vec![plain(SELECT), plain(ORDER_ITEMS), plain(DOTTED)];
    want.sort();
    assert_eq!(check_json_replicated(&cfg).await, want);

    // install.
    let install = pgduplex_async(&cfg.path, &["install"]).await;
    install.assert_code(0);
    for side in ["left", "right"] {
        assert!(
            install.stdout.contains(&format!(
                "{side}: schema pgduplex created; capture installed on 3 table(s), 0 already current"
            )),
            "{}",
            install.all()
        );
    }
    let left = pair.left.client().await.unwrap();
    let right = pair.right.client().await.unwrap();
    let mut want_recorded = vec![
        (SCHEMA.to_string(), SELECT.to_string()),
        (SCHEMA.to_string(), ORDER_ITEMS.to_string()),
        (SCHEMA.to_string(), DOTTED.to_string()),
    ];
    want_recorded.sort();
    assert_eq!(replicated(&left).await, want_recorded);
    assert_eq!(replicated(&right).await, want_recorded);
    let mut want_triggers = Vec::new();
    for t in [SELECT, ORDER_ITEMS, DOTTED] {
        for trg in [
            "pgduplex_capture_delete",
            "pgduplex_capture_insert",
            "pgduplex_capture_key",
            "pgduplex_capture_update",
        ] {
            want_triggers.push(format!("{} {trg} A", plain(t)));
        }
        want_triggers.push(format!("{} pgduplex_truncate A", plain(t)));
    }
    want_triggers.sort();
    assert_eq!(capture_triggers(&left).await, want_triggers);
    assert_eq!(capture_triggers(&right).await, want_triggers);
    assert_eq!(all_user_rows(&pair.left).await, left_rows_at_start);
    assert_eq!(all_user_rows(&pair.right).await, right_rows_at_start);

    // Capture, with the keys' own names and values.
    left.batch_execute(
        r#"
        INSERT INTO "My ""Odd"".Schema"."select" ("Key Col", "user", "a.b") VALUES (3, 'carol', 'z');
        UPDATE "My ""Odd"".Schema"."select" SET "user" = 'ALICE', "a.b" = 'xx' WHERE "Key Col" = 1;
        UPDATE "My ""Odd"".Schema"."select" SET "Key Col" = 20 WHERE "Key Col" = 2;
        DELETE FROM "My ""Odd"".Schema"."select" WHERE "Key Col" = 3;

        INSERT INTO "My ""Odd"".Schema"."Order Items" VALUES ('b.c', 'small''s', 2, 'q');
        UPDATE "My ""Odd"".Schema"."Order Items" SET "user" = 5 WHERE "Key Col" = 'A "1"';
        UPDATE "My ""Odd"".Schema"."Order Items" SET "Kind" = 'Big One' WHERE "Key Col" = 'b.c';
        DELETE FROM "My ""Odd"".Schema"."Order Items" WHERE "Key Col" = 'A "1"';

        INSERT INTO "My ""Odd"".Schema"."Dot.And""Quote\Back" VALUES (11, 'eleven');
        UPDATE "My ""Odd"".Schema"."Dot.And""Quote\Back" SET "SELECT" = 'TEN' WHERE "we""ird" = 10;
        "#,
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, SCHEMA, SELECT).await),
        sorted(vec![
            d("I", json!({"Key Col": 3})),
            d("U", json!({"Key Col": 1})),
            d("D", json!({"Key Col": 2})),
            d("U", json!({"Key Col": 20})),
            d("D", json!({"Key Col": 3})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, SCHEMA, ORDER_ITEMS).await),
        sorted(vec![
            d("I", json!({"Key Col": "b.c", "Kind": "small's"})),
            d("U", json!({"Key Col": "A \"1\"", "Kind": "Big One"})),
            d("D", json!({"Key Col": "b.c", "Kind": "small's"})),
            d("U", json!({"Key Col": "b.c", "Kind": "Big One"})),
            d("D", json!({"Key Col": "A \"1\"", "Kind": "Big One"})),
        ])
    );
    assert_eq!(
        sorted(deltas(&left, SCHEMA, DOTTED).await),
        sorted(vec![
            d("I", json!({"we\"ird": 11})),
            d("U", json!({"we\"ird": 10})),
        ])
    );
    left.batch_execute(r#"TRUNCATE "My ""Odd"".Schema"."Dot.And""Quote\Back""#)
        .await
        .unwrap();
    let logged: Vec<String> = truncates(&left).await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(logged, vec![plain(DOTTED)]);
    // The right side captures its own writes.
    right
        .batch_execute(r#"INSERT INTO "My ""Odd"".Schema"."select" VALUES (7, 'eve', 'e')"#)
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&right, SCHEMA, SELECT).await),
        sorted(vec![d("I", json!({"Key Col": 7}))])
    );

    // install again: everything already current, pending changes kept.
    let left_deltas: Vec<_> = [
        deltas(&left, SCHEMA, SELECT).await,
        deltas(&left, SCHEMA, ORDER_ITEMS).await,
        deltas(&left, SCHEMA, DOTTED).await,
    ]
    .concat();
    let again = pgduplex_async(&cfg.path, &["install"]).await;
    again.assert_code(0);
    for side in ["left", "right"] {
        assert!(
            again.stdout.contains(&format!(
                "{side}: capture installed on 0 table(s), 3 already current"
            )),
            "{}",
            again.all()
        );
    }
    assert_eq!(
        [
            deltas(&left, SCHEMA, SELECT).await,
            deltas(&left, SCHEMA, ORDER_ITEMS).await,
            deltas(&left, SCHEMA, DOTTED).await,
        ]
        .concat(),
        left_deltas
    );
    assert_eq!(logged.len(), truncates(&left).await.len());

    // uninstall: nothing of pgduplex's left, user rows untouched.
    let left_rows = all_user_rows(&pair.left).await;
    let right_rows = all_user_rows(&pair.right).await;
    let uninstall = pgduplex_async(&cfg.path, &["uninstall"]).await;
    uninstall.assert_code(0);
    assert_eq!(pgduplex_objects(&left).await, Vec::<String>::new());
    assert_eq!(pgduplex_objects(&right).await, Vec::<String>::new());
    assert_eq!(all_user_rows(&pair.left).await, left_rows);
    assert_eq!(all_user_rows(&pair.right).await, right_rows);
    // The type the key used is the user's and stays; the tables are writable.
    left.batch_execute(
        r#"INSERT INTO "My ""Odd"".Schema"."Order Items" VALUES ('after', 'Big One', 1, 'u');
           INSERT INTO "My ""Odd"".Schema"."select" VALUES (99, 'zed', 'z');"#,
    )
    .await
    .expect("tables are writable after uninstall");
    // A second uninstall finds nothing to do.
    pgduplex_async(&cfg.path, &["uninstall"])
        .await
        .assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn table_selection_regexes_match_odd_names() {
    let pair = TestPair::new().await;
    pair.execute_both(DDL).await.expect("create odd tables");
    // Plain names, unquoted: `My "Odd".Schema.select`. TOML literal strings keep the
    // regex backslashes as they are.
    let cfg = ConfigFile::for_pair(
        &pair,
        "[tables]\ninclude = ['^My \"Odd\"\\.Schema\\.']\nexclude = ['\\.select$', 'Quote\\\\Back$']\n",
    );
    let mut want = vec![plain(ORDER_ITEMS)];
    want.sort();
    assert_eq!(check_json_replicated(&cfg).await, want);

    let install = pgduplex_async(&cfg.path, &["install"]).await;
    install.assert_code(0);
    assert!(
        install
            .stdout
            .contains("left: schema pgduplex created; capture installed on 1 table(s)"),
        "{}",
        install.all()
    );
    let left = pair.left.client().await.unwrap();
    let right = pair.right.client().await.unwrap();
    let want_recorded = vec![(SCHEMA.to_string(), ORDER_ITEMS.to_string())];
    assert_eq!(replicated(&left).await, want_recorded);
    assert_eq!(replicated(&right).await, want_recorded);
    let want_triggers = vec![
        format!("{} pgduplex_capture_delete A", plain(ORDER_ITEMS)),
        format!("{} pgduplex_capture_insert A", plain(ORDER_ITEMS)),
        format!("{} pgduplex_capture_key A", plain(ORDER_ITEMS)),
        format!("{} pgduplex_capture_update A", plain(ORDER_ITEMS)),
        format!("{} pgduplex_truncate A", plain(ORDER_ITEMS)),
    ];
    assert_eq!(capture_triggers(&left).await, want_triggers);
    assert_eq!(capture_triggers(&right).await, want_triggers);

    // Writes to the selected table are captured; the others have no capture at all.
    left.batch_execute(
        r#"INSERT INTO "My ""Odd"".Schema"."Order Items" VALUES ('new', 'small''s', 1, 'n');
           INSERT INTO "My ""Odd"".Schema"."select" VALUES (5, 'e', 'e');
           INSERT INTO "My ""Odd"".Schema"."Dot.And""Quote\Back" VALUES (5, 'five');
           INSERT INTO public.plain VALUES (5);
           TRUNCATE "My ""Odd"".Schema"."select", public.plain;"#,
    )
    .await
    .unwrap();
    assert_eq!(
        sorted(deltas(&left, SCHEMA, ORDER_ITEMS).await),
        sorted(vec![d("I", json!({"Key Col": "new", "Kind": "small's"}))])
    );
    assert_eq!(truncates(&left).await, vec![]);
}

/// The apply role's name goes into every trigger's `WHEN` clause as a literal: a
/// name with a space, double and single quotes and a backslash must still match
/// that role, and only it.
#[tokio::test(flavor = "multi_thread")]
async fn odd_apply_role_name_keeps_no_echo_exact() {
    let pair = TestPair::new().await;
    let role = format!(
        "{} Apply \"Odd\" o'Role\\x",
        pgduplex_testkit::unique_name("r")
    );
    let password = "p@ss w'o\"rd\\";
    pair.create_role(&role, password, "SUPERUSER")
        .await
        .unwrap();
    pair.execute_both(DDL).await.expect("create odd tables");
    let cfg = ConfigFile::for_urls(
        &pair.left.url_for(&role, password),
        &pair.right.url_for(&role, password),
        "[tables]\ninclude = ['\\.select$']\n",
    );
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let superuser = pair.left.client().await.unwrap();
    let roles: Vec<String> = superuser
        .query("SELECT apply_role FROM pgduplex.replicated_table", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, vec![role.clone()]);

    // The apply role applying: not captured.
    let apply = pair.left.client_as(&role, password).await.unwrap();
    apply
        .batch_execute(
            r#"BEGIN; SET LOCAL pgduplex.applying = 'on';
               INSERT INTO "My ""Odd"".Schema"."select" VALUES (50, 'a', 'a');
               UPDATE "My ""Odd"".Schema"."select" SET "Key Col" = 51 WHERE "Key Col" = 50;
               TRUNCATE "My ""Odd"".Schema"."select";
               COMMIT;"#,
        )
        .await
        .unwrap();
    assert_eq!(deltas(&superuser, SCHEMA, SELECT).await, vec![]);
    assert_eq!(truncates(&superuser).await, vec![]);
    // Another role (the test's superuser) with the same setting: captured.
    superuser
        .batch_execute(
            r#"BEGIN; SET LOCAL pgduplex.applying = 'on';
               INSERT INTO "My ""Odd"".Schema"."select" VALUES (60, 'b', 'b');
               COMMIT;"#,
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&superuser, SCHEMA, SELECT).await),
        sorted(vec![d("I", json!({"Key Col": 60}))])
    );
    // The apply role without the setting: captured.
    apply
        .batch_execute(r#"DELETE FROM "My ""Odd"".Schema"."select" WHERE "Key Col" = 60"#)
        .await
        .unwrap();
    assert_eq!(
        sorted(deltas(&superuser, SCHEMA, SELECT).await),
        sorted(vec![
            d("I", json!({"Key Col": 60})),
            d("D", json!({"Key Col": 60}))
        ])
    );
    pgduplex_async(&cfg.path, &["uninstall"])
        .await
        .assert_code(0);
    assert_eq!(pgduplex_objects(&superuser).await, Vec::<String>::new());
}
