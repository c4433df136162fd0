//! `pgduplex scan` (issue 5): every kind of difference found and reported exactly,
//! no false differences from physical order, TOAST, server defaults or collations,
//! keyless tables compared as multisets, exit codes.

use std::time::Duration;

use pgduplex_testkit::TestPair;
use serde_json::Value;

use crate::support::*;

/// Runs `scan --format json --details` (plus `extra`), checks the exit code, and
/// returns the report.
pub async fn scan_json(cfg: &ConfigFile, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["scan", "--format", "json", "--details"];
    args.extend_from_slice(extra);
    let run = pgduplex_async(&cfg.path, &args).await;
    run.assert_code(code);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("scan printed no JSON ({e}):\n{}", run.all()))
}

/// The report's entry for `table`.
pub fn table<'a>(report: &'a Value, table: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} not in the report: {report:#}"))
}

/// `(only_left, only_right, different, in_flight)` of a table.
pub fn counts(report: &Value, name: &str) -> (u64, u64, u64, u64) {
    let t = table(report, name);
    let n = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k} in {t:#}"));
    (
        n("only_left"),
        n("only_right"),
        n("different"),
        n("in_flight"),
    )
}

/// `(kind, key, columns)` of the listed details of a table, sorted.
pub fn details(report: &Value, name: &str) -> Vec<(String, String, Vec<String>)> {
    let mut v: Vec<_> = table(report, name)["details"]
        .as_array()
        .map(|a| a.to_vec())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["key"].as_str().unwrap().to_string(),
                d["columns"]
                    .as_array()
                    .map(|c| c.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

const KINDS: &str = "create table kinds (
        id int primary key, t text, ts timestamptz, f double precision, r real,
        a int[], b bytea, j jsonb, n numeric);
    insert into kinds select g, 'row ' || g, '2024-01-01 12:00:00+00'::timestamptz + g * interval '1 hour',
        g / 3.0, g / 7.0, array[g, g + 1, g + 2], decode(lpad(to_hex(g), 8, '0'), 'hex'),
        jsonb_build_object('g', g, 'name', 'n' || g), g * 1.5
      from generate_series(1, 200) g;
    create table parts (id int primary key, v text) partition by range (id);
    create table parts_a partition of parts for values from (0) to (1000);
    create table parts_b partition of parts for values from (1000) to (5000);
    insert into parts select g, 'v' || g from generate_series(0, 4999) g;
    create table big (id bigint primary key, a int, b text);
    insert into big select g, g % 1000, md5(g::text) from generate_series(1, 1000000) g;";

#[tokio::test]
async fn each_kind_of_difference_is_found_and_reported_exactly() {
    let pair = TestPair::new().await;
    pair.execute_both(KINDS).await.unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    // Identical first.
    let report = scan_json(&cfg, &[], 0).await;
    assert_eq!(report["total_differences"], 0, "{report:#}");
    assert_eq!(table(&report, "public.big")["left_rows"], 1_000_000);
    assert_eq!(table(&report, "public.big")["right_rows"], 1_000_000);
    pair.right
        .execute(
            "delete from kinds where id = 1;                                   -- missing row
             insert into kinds (id, t) values (1001, 'extra');                  -- extra row
             update kinds set t = '' where id = 2;
             update kinds set t = null where id = 3;
             update kinds set ts = ts + interval '1 microsecond' where id = 4;
             update kinds set f = f + 1e-15 where id = 5;                       -- about the last digit
             update kinds set r = 'NaN' where id = 6;
             update kinds set a[2] = 0 where id = 7;                            -- one array element
             update kinds set b = set_byte(b, 3, get_byte(b, 3) # 1) where id = 8; -- one bytea bit
             update kinds set j = j || '{\"name\": \"changed\"}' where id = 9;
             update kinds set n = 150.00 where id = 100;                        -- 150.0 vs 150.00 (scale)
             update big set b = upper(b) where id = 777777;                     -- one column, one row in a million
             update parts_b set v = 'changed' where id = 2500;                  -- in a partition",
        )
        .await
        .unwrap();
    pair.left
        .execute("update kinds set t = null where id = 2; update kinds set t = '' where id = 3;")
        .await
        .unwrap();
    let f5: (f64, f64) = {
        let (l, r) = (
            pair.left.client().await.unwrap(),
            pair.right.client().await.unwrap(),
        );
        let q = "select f from kinds where id = 5";
        (
            l.query_one(q, &[]).await.unwrap().get(0),
            r.query_one(q, &[]).await.unwrap().get(0),
        )
    };
    assert_ne!(f5.0, f5.1, "the float change must be real");
    assert!(((f5.0 - f5.1) / f5.0).abs() < 1e-14, "last digits only");

    let report = scan_json(&cfg, &[], 1).await;
    assert_eq!(counts(&report, "public.kinds"), (1, 1, 9, 0), "{report:#}");
    assert_eq!(counts(&report, "public.big"), (0, 0, 1, 0), "{report:#}");
    assert_eq!(counts(&report, "public.parts"), (0, 0, 1, 0), "{report:#}");
    assert_eq!(table(&report, "public.parts")["left_rows"], 5000);
    assert_eq!(
        report["tables"].as_array().unwrap().len(),
        3,
        "partitions are scanned through their root"
    );
    assert_eq!(report["total_differences"], 13);
    assert_eq!(report["identical"], false);
    let d = |kind: &str, key: &str, cols: &[&str]| {
        (
            kind.to_string(),
            key.to_string(),
            cols.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        )
    };
    let mut want = vec![
        d("only_left", "(1)", &[]),
        d("only_right", "(1001)", &[]),
        d("different", "(2)", &["t"]),
        d("different", "(3)", &["t"]),
        d("different", "(4)", &["ts"]),
        d("different", "(5)", &["f"]),
        d("different", "(6)", &["r"]),
        d("different", "(7)", &["a"]),
        d("different", "(8)", &["b"]),
        d("different", "(9)", &["j"]),
        d("different", "(100)", &["n"]),
    ];
    want.sort();
    assert_eq!(details(&report, "public.kinds"), want);
    assert_eq!(
        details(&report, "public.big"),
        vec![d("different", "(777777)", &["b"])]
    );

    // Text output: a line per table and the total.
    let run = pgduplex_async(&cfg.path, &["scan", "--tables", "^public\\.big$"]).await;
    run.assert_code(1);
    assert!(run.stdout.contains("public.big"), "{}", run.stdout);
    assert!(!run.stdout.contains("public.kinds"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("total: 1 table(s), 1 difference(s) in 1 table(s)"),
        "{}",
        run.stdout
    );
}

async fn key_order(c: &tokio_postgres::Client) -> Vec<String> {
    c.query("select k from words order by k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test]
async fn no_false_differences_from_order_storage_settings_or_collations() {
    let pair = TestPair::new().await;
    // The right side: another database on the right server whose defaults all
    // differ, with an ICU default collation that sorts text otherwise than C.
    let admin = pair.right.client().await.unwrap();
    let other = pgduplex_testkit::db::unique_name("scan_icu");
    for sql in [
        format!(
            "create database {other} template template0 encoding 'UTF8' locale_provider icu \
             icu_locale 'de-DE' locale 'C.UTF-8'"
        ),
        format!("alter database {other} set timezone = 'Asia/Kathmandu'"),
        format!("alter database {other} set datestyle = 'SQL, DMY'"),
        format!("alter database {other} set intervalstyle = 'iso_8601'"),
        format!("alter database {other} set bytea_output = 'escape'"),
        format!("alter database {other} set extra_float_digits = -3"),
        format!("alter database {other} set lc_monetary = 'C.UTF-8'"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let right_url = pair.right.server().url(&other);
    let (right, conn) = tokio_postgres::connect(&right_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ddl = "create table words (k text primary key, ts timestamptz, d date, iv interval,
                   f double precision, r real, b bytea, j jsonb, m money, big text, v varchar(10));
               create table nums (id bigint primary key, v numeric, f double precision);";
    let left = pair.left.client().await.unwrap();
    left.batch_execute(ddl).await.unwrap();
    right.batch_execute(ddl).await.unwrap();
    right
        .batch_execute("alter table words alter column big set storage external")
        .await
        .unwrap();
    left.batch_execute("alter table words alter column big set storage main")
        .await
        .unwrap();
    // Same logical rows; the right gets them in reverse order, its own text forms
    // for dates, intervals, bytea and money, and jsonb keys in another order.
    let words = [
        "apple", "Apple", "Äpfel", "banana", "Zebra", "zebra", "ß", "ss", "a b", "a-b", "ab", "é",
        "e", "🙂", "",
    ];
    for (i, w) in words.iter().enumerate() {
        let i = i as i32;
        left.execute(
            "insert into words values ($1, '2024-03-10 01:30:00+00'::timestamptz + $2::int * interval '1 day 1 second',
                 '2024-02-29'::date + $2::int, make_interval(days => $2::int, secs => 1.5), $2::int / 3.0, $2::int / 7.0,
                 decode('00ff' || lpad(to_hex($2::int), 2, '0'), 'hex'),
                 ('{\"a\": ' || $2::int || ', \"b\": [1, 2.50], \"c\": {\"y\": 1, \"x\": 2}}')::jsonb, $2::int * 1.25,
                 repeat('x', 5000 + $2::int), 'v' || $2::int)",
            &[w, &i],
        )
        .await
        .unwrap();
    }
    // The right writes the same values through its own settings' text forms.
    for (i, w) in words.iter().enumerate().rev() {
        let i = i as i32;
        right
            .execute(
                "insert into words values ($1, '2024-03-10 01:30:00+00'::timestamptz + $2::int * interval '1 day 1 second',
                     '2024-02-29'::date + $2::int, make_interval(days => $2::int, secs => 1.5), $2::int / 3.0, $2::int / 7.0,
                     decode('00ff' || lpad(to_hex($2::int), 2, '0'), 'hex'),
                     ('{\"c\": {\"x\": 2, \"y\": 1}, \"b\": [1, 2.50], \"a\": ' || $2::int || '}')::jsonb, $2::int * 1.25,
                     repeat('x', 5000 + $2::int), 'v' || $2::int)",
                &[w, &i],
            )
            .await
            .unwrap();
    }
    left.batch_execute(
        "insert into nums select g, g / 9.0, g / 11.0 from generate_series(1, 50000) g",
    )
    .await
    .unwrap();
    right
        .batch_execute(
            "insert into nums select g, g / 9.0, g / 11.0 from generate_series(50000, 1, -1) g",
        )
        .await
        .unwrap();
    right.batch_execute("vacuum analyze nums").await.unwrap();
    // The two servers really do sort these keys differently.
    assert_ne!(key_order(&left).await, key_order(&right).await);
    let cfg = ConfigFile::for_urls(&pair.left.url(), &right_url, "");
    let report = scan_json(&cfg, &[], 0).await;
    assert_eq!(report["total_differences"], 0, "{report:#}");
    assert_eq!(table(&report, "public.words")["right_rows"], words.len());
    assert_eq!(table(&report, "public.nums")["left_rows"], 50000);
    // And a change is still seen through all of that.
    right
        .batch_execute("update words set iv = iv + interval '1 microsecond' where k = 'Äpfel'")
        .await
        .unwrap();
    let report = scan_json(&cfg, &[], 1).await;
    assert_eq!(counts(&report, "public.words"), (0, 0, 1, 0), "{report:#}");
    drop(right);
    admin
        .batch_execute(&format!("drop database {other} with (force)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn keyless_tables_are_compared_as_multisets() {
    let pair = TestPair::new().await;
    pair.execute_both("create table log (at int, msg text)")
        .await
        .unwrap();
    pair.left
        .execute(
            "insert into log values (1, 'a'), (1, 'a'), (1, 'a'), (2, null), (3, 'c'), (4, 'd');
             insert into log select g, 'bulk' from generate_series(1, 5000) g;",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "insert into log select g, 'bulk' from generate_series(5000, 1, -1) g;
             insert into log values (3, 'c'), (2, ''), (1, 'a'), (1, 'a'), (5, 'e'), (5, 'e');",
        )
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let report = scan_json(&cfg, &[], 1).await;
    let t = table(&report, "public.log");
    assert_eq!(t["compared_by"], "rows");
    assert_eq!(t["left_rows"], 5006);
    assert_eq!(t["right_rows"], 5006);
    // Left has one more (1,a), (2,NULL) and (4,d); right has (2,'') and two (5,e).
    assert_eq!(counts(&report, "public.log"), (3, 3, 0, 0), "{report:#}");
    let got = details(&report, "public.log");
    let keys: Vec<(&str, &str)> = got
        .iter()
        .map(|(k, r, _)| (k.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("only_left", "(1,a)"),
            ("only_left", "(2,)"),
            ("only_left", "(4,d)"),
            ("only_right", "(2,\"\")"),
            ("only_right", "(5,e)"),
        ]
    );
    let rows = |key: &str| {
        table(&report, "public.log")["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["key"] == key)
            .map(|d| d["rows"].as_u64().unwrap_or(1))
            .unwrap()
    };
    assert_eq!(rows("(5,e)"), 2);
    assert_eq!(rows("(1,a)"), 1);
}

#[tokio::test]
async fn tables_and_columns_on_one_side_only_are_differences() {
    let pair = TestPair::new().await;
    pair.execute_both("create table t (id int primary key, a int)")
        .await
        .unwrap();
    pair.left
        .execute(
            "create table lonely (id int primary key); insert into lonely values (1), (2);
             alter table t add column extra text; insert into t values (1, 1, 'x');",
        )
        .await
        .unwrap();
    pair.right
        .execute("insert into t values (1, 1)")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let report = scan_json(&cfg, &[], 1).await;
    assert_eq!(counts(&report, "public.lonely"), (2, 0, 0, 0));
    assert!(table(&report, "public.lonely")["problem"]
        .as_str()
        .unwrap()
        .contains("left side only"));
    // The common columns are equal; the extra column is the (one) difference.
    assert_eq!(counts(&report, "public.t"), (0, 0, 0, 0));
    assert!(table(&report, "public.t")["problem"]
        .as_str()
        .unwrap()
        .contains("column extra only on the left"));
    assert_eq!(report["total_differences"], 3);
}

#[tokio::test]
async fn bad_input_and_failures_have_their_exit_codes() {
    let pair = TestPair::new().await;
    pair.execute_both("create table t (id int primary key)")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    let run = pgduplex_async(&cfg.path, &["scan", "--tables", "("]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("--tables"), "{}", run.stderr);
    let run = pgduplex_async(&cfg.path, &["scan", "--tables", "^nothing$"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("no table to scan"), "{}", run.stderr);
    let closed = ConfigFile::for_urls(
        &pair.left.url(),
        "postgres://postgres:secret-pw@127.0.0.1:1/x",
        "",
    );
    let run = pgduplex_async(&closed.path, &["scan"]).await;
    run.assert_code(3);
    assert!(!run.all().contains("secret-pw"), "{}", run.all());
}

/// Writes to random rows of `acct` on one side until `stop` is set; returns the
/// number of statements.
async fn write_load(
    db: &pgduplex_testkit::TestDb,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) -> u64 {
    use rand::{Rng, SeedableRng};
    let c = db.client().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id: i32 = rng.gen_range(1..=20_000);
        let sql = match rng.gen_range(0..10) {
            0 => "insert into acct values ($1 + 100000, 0, 'new') on conflict do nothing",
            1 => "delete from acct where id = $1 + 100000",
            _ => "update acct set bal = bal + 1, note = md5(random()::text) where id = $1",
        };
        // A conflict between the two sides' writers is the daemon's business.
        let _ = c.execute(sql, &[&id]).await;
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_live_scan_while_replicating_reports_no_false_differences() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pair = TestPair::new().await;
    pair.execute_both("create table acct (id int primary key, bal bigint, note text)")
        .await
        .unwrap();
    pair.left
        .execute("insert into acct select g, 0, 'n' from generate_series(1, 20000) g")
        .await
        .unwrap();
    let cfg = ConfigFile::for_pair(&pair, "");
    // The initial copy, then the daemon in the background.
    pgduplex_async(&cfg.path, &["replicate", "--until-idle"])
        .await
        .assert_code(0);
    let mut daemon = start_replicate(&cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let (l, r) = (
        write_load(&pair.left, Arc::clone(&stop), 1),
        write_load(&pair.right, Arc::clone(&stop), 2),
    );
    let scan = async {
        // Let the load and the daemon get going before the scan starts.
        daemon
            .wait_log("replicating", 1, Duration::from_secs(30))
            .await;
        let report = scan_json(&cfg, &["--settle", "30"], 0).await;
        // Sync does not run beside the daemon.
        let run = pgduplex_async(&cfg.path, &["sync", "--policy", "left_wins"]).await;
        stop.store(true, Ordering::Relaxed);
        (report, run)
    };
    let (written_left, written_right, (report, sync_run)) = tokio::join!(l, r, scan);
    assert!(
        written_left > 100 && written_right > 100,
        "the load ran: {written_left}, {written_right}"
    );
    assert_eq!(report["total_differences"], 0, "{report:#}");
    assert_eq!(table(&report, "public.acct")["different"], 0);
    sync_run.assert_code(1);
    assert!(
        sync_run.stderr.contains("is running"),
        "{}",
        sync_run.stderr
    );
    // Stopped and drained, the sides are identical with nothing in flight.
    let status = daemon.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", daemon.log());
    pgduplex_async(&cfg.path, &["replicate", "--until-idle"])
        .await
        .assert_code(0);
    let report = scan_json(&cfg, &[], 0).await;
    assert_eq!(report["total_in_flight"], 0, "{report:#}");
}
