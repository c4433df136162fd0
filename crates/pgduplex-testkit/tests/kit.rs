//! Tests of the test kit itself, against real PostgreSQL servers.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgduplex_testkit::compare::{compare_databases, table_rows_text};
use pgduplex_testkit::db::{shared_pair, unique_name, TestPair};
use pgduplex_testkit::harness::{assert_converged, assert_drained, sessions, wait_for, Daemon};
use pgduplex_testkit::proxy::Proxy;
use pgduplex_testkit::server::{PgServer, ServerOptions};
use tokio_postgres::{Client, NoTls};

/// The kit's tests wait for at most this long for anything.
const WAIT: Duration = Duration::from_secs(30);

async fn connect(conn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn postgres_uid() -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres")).then(|| f[2].parse().ok())?
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn postmaster_uid(server: &PgServer) -> u32 {
    let pidfile = std::fs::read_to_string(server.data_dir().join("postmaster.pid")).unwrap();
    let pid = pidfile.lines().next().unwrap().trim();
    std::fs::metadata(format!("/proc/{pid}")).unwrap().uid()
}

#[tokio::test]
async fn shared_servers_run_as_postgres_and_require_the_password() {
    let started = Instant::now();
    let pair = TestPair::new().await;
    eprintln!("first TestPair ready after {:?}", started.elapsed());

    for db in [&pair.left, &pair.right] {
        let client = db.client().await.unwrap();
        let row = client
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "postgres");
        assert_eq!(row.get::<_, String>(1), db.name());

        let expected_uid = if running_as_root() {
            postgres_uid().expect("postgres user")
        } else {
            std::fs::metadata("/proc/self").unwrap().uid()
        };
        assert_eq!(postmaster_uid(db.server()), expected_uid);
        assert_eq!(
            std::fs::metadata(db.server().data_dir()).unwrap().uid(),
            expected_uid
        );

        let wrong = connect(&db.url_for("postgres", "not-the-password")).await;
        assert!(wrong.is_err(), "a wrong password must be refused");
    }
    assert_ne!(pair.left.server().port(), pair.right.server().port());

    // `localhost` resolves to the server too.
    let s = pair.left.server();
    let client = connect(&format!(
        "host=localhost port={} user=postgres password={} dbname={}",
        s.port(),
        s.superuser_password(),
        pair.left.name()
    ))
    .await
    .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn two_pairs_get_different_databases() {
    let a = TestPair::new().await;
    let b = TestPair::new().await;
    assert_ne!(a.left.name(), b.left.name());
    assert_eq!(a.left.name(), a.right.name());
    a.left.execute("CREATE TABLE t (x int)").await.unwrap();
    // Same table name in the other pair's database: no clash.
    b.left.execute("CREATE TABLE t (x int)").await.unwrap();
}

#[tokio::test]
async fn dropping_a_testdb_drops_its_database_and_roles() {
    let pair = TestPair::new().await;
    let name = pair.left.name().to_string();
    let role = unique_name("kit_role");
    pair.create_role(&role, "s3cret'pw", "").await.unwrap();
    let as_role = pair.left.client_as(&role, "s3cret'pw").await.unwrap();
    as_role.simple_query("SELECT 1").await.unwrap();
    // An open connection must not keep the database alive (DROP ... WITH (FORCE)).
    let _open = pair.right.client().await.unwrap();

    drop(pair);
    let (left, right) = shared_pair();
    for server in [left, right] {
        let dbs = server
            .run_sql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
            )
            .unwrap();
        assert_eq!(dbs, "0");
        let roles = server
            .run_sql(
                "postgres",
                &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
            )
            .unwrap();
        assert_eq!(roles, "0");
    }
}

#[tokio::test]
async fn stop_and_start_again_keep_data_and_port() {
    let pair = TestPair::dedicated(ServerOptions::default()).await;
    let server = pair.left.server();
    let port = server.port();
    pair.left
        .execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    let client = pair.left.client().await.unwrap();

    server.stop().unwrap();
    assert!(!server.is_running());
    assert!(client.simple_query("SELECT 1").await.is_err());
    assert!(pair.left.client().await.is_err());

    server.start_again().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    let client = pair.left.client().await.unwrap();
    let x: i32 = client
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42);

    server.stop_immediate().unwrap();
    server.start_again().unwrap();
    server.restart().unwrap();
    let client = pair.left.client().await.unwrap();
    let x: i32 = client
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42);

    let dir = server.data_dir().to_path_buf();
    drop(client);
    drop(pair);
    assert!(
        !dir.exists(),
        "dropping a dedicated pair removes its servers"
    );
}

/// Not a test on its own: run by `reaper_cleans_up_after_a_killed_process` in a child
/// process, which starts a server and dies without running any destructor.
#[test]
fn reaper_child_helper() {
    if std::env::var_os("PGDX_KIT_REAPER_HELPER").is_none() {
        return;
    }
    let server = PgServer::start(ServerOptions::default()).unwrap();
    println!("DATADIR={}", server.data_dir().display());
    std::process::abort();
}

#[tokio::test]
async fn reaper_cleans_up_after_a_killed_process() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reaper_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PGDX_KIT_REAPER_HELPER", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the helper aborts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        // libtest prints the test's name on the same line, before the output.
        .find_map(|l| l.split_once("DATADIR=").map(|(_, dir)| dir.trim()))
        .unwrap_or_else(|| panic!("helper printed no data dir: {stdout}"))
        .to_string();
    let dir = std::path::PathBuf::from(dir);
    wait_for(WAIT, "the reaper to remove the data dir", || async {
        !dir.exists()
    })
    .await;
}

#[tokio::test]
async fn comparer_reports_identical_for_same_data_in_different_orders() {
    let pair = TestPair::new().await;
    let schema = r#"
        CREATE SCHEMA "My Schema";
        CREATE TABLE "My Schema"."odd ""name"" t" (
            "Id" int PRIMARY KEY, "Text col" text, ts timestamptz, f float8, b bytea,
            iv interval, j jsonb, d date, n numeric);
        CREATE TABLE parts (id int, region text) PARTITION BY LIST (region);
        CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');
        CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us');
        CREATE TABLE dups (v text);
        CREATE TABLE empty_cols ();
    "#;
    pair.execute_both(schema).await.unwrap();
    let rows = [
        r#"(1, E'tab\there', '2024-01-02 03:04:05+02', 0.1, '\xdeadbeef', '1 day 02:03:04', '{"a": [1, 2]}', '2024-02-29', 1.50)"#,
        r#"(2, E'new\nline \\ back', '1999-12-31 23:59:59.123456+00', 1e300, '\x', '-3 mons', 'null', 'infinity', -0.000)"#,
        r#"(3, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL)"#,
        r#"(4, 'ünïcödé ☃', 'epoch', -0.0, '\x00', '0', '[]', '0001-01-01 BC', 1e-20)"#,
    ];
    let table = r#""My Schema"."odd ""name"" t""#;
    for r in rows.iter() {
        pair.left
            .execute(&format!("INSERT INTO {table} VALUES {r}"))
            .await
            .unwrap();
    }
    for r in rows.iter().rev() {
        pair.right
            .execute(&format!("INSERT INTO {table} VALUES {r}"))
            .await
            .unwrap();
    }
    pair.left
        .execute("INSERT INTO parts VALUES (1,'eu'),(2,'us'),(3,'eu'); INSERT INTO dups VALUES ('a'),('a'),('b')")
        .await
        .unwrap();
    pair.right
        .execute("INSERT INTO parts VALUES (3,'eu'),(2,'us'),(1,'eu'); INSERT INTO dups VALUES ('b'),('a'),('a')")
        .await
        .unwrap();
    // Different session defaults on one side must not show up as differences.
    pair.right
        .execute(&format!(
            "ALTER DATABASE {} SET TimeZone = 'Asia/Kolkata'; \
             ALTER DATABASE {} SET DateStyle = 'SQL, DMY'; \
             ALTER DATABASE {} SET IntervalStyle = 'iso_8601'; \
             ALTER DATABASE {} SET extra_float_digits = 0; \
             ALTER DATABASE {} SET bytea_output = 'escape'",
            pair.right.name(),
            pair.right.name(),
            pair.right.name(),
            pair.right.name(),
            pair.right.name()
        ))
        .await
        .unwrap();
    // The pgduplex schema is the tool's own state and is not compared.
    pair.left
        .execute("CREATE SCHEMA pgduplex; CREATE TABLE pgduplex.state (x int); INSERT INTO pgduplex.state VALUES (1)")
        .await
        .unwrap();

    let (l, r) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    let cmp = compare_databases(&l, &r).await.unwrap();
    cmp.assert_identical();

    let parts = table_rows_text(&l, "public", "parts").await.unwrap();
    assert_eq!(parts, vec!["(1,eu)", "(2,us)", "(3,eu)"]);
    let dups = table_rows_text(&r, "public", "dups").await.unwrap();
    assert_eq!(dups, vec!["(a)", "(a)", "(b)"]);
    // The clients are usable afterwards (the comparison transaction ended).
    l.simple_query("CREATE TABLE after_compare (x int)")
        .await
        .unwrap();
}

#[tokio::test]
async fn comparer_finds_row_table_and_type_differences() {
    let pair = TestPair::new().await;
    pair.execute_both(
        r#"CREATE TABLE "Items" (id int, "Name" text);
           INSERT INTO "Items" VALUES (1, 'one'), (2, 'two'), (3, 'three');
           CREATE TABLE typed (id int, v int);
           CREATE TABLE dups (v text); INSERT INTO dups VALUES ('x'), ('x');
           CREATE TABLE parts (id int, region text) PARTITION BY LIST (region);
           CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');
           INSERT INTO parts VALUES (1, 'eu');"#,
    )
    .await
    .unwrap();
    pair.right
        .execute(
            r#"UPDATE "Items" SET "Name" = 'TWO' WHERE id = 2;
               DELETE FROM "Items" WHERE id = 3;
               ALTER TABLE typed ALTER COLUMN v TYPE bigint;
               DELETE FROM dups WHERE ctid = (SELECT min(ctid) FROM dups);
               UPDATE parts SET id = 9;
               CREATE TABLE only_right (x int);"#,
        )
        .await
        .unwrap();
    pair.left
        .execute("CREATE TABLE only_left (x int)")
        .await
        .unwrap();

    let (l, r) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    let cmp = compare_databases(&l, &r).await.unwrap();
    assert!(!cmp.is_identical());
    let d = &cmp.differences;
    let has = |needle: &str| d.iter().any(|x| x.contains(needle));
    assert!(
        has(r#"table "public"."Items": row only in left: (2,two)"#),
        "{d:#?}"
    );
    assert!(
        has(r#"table "public"."Items": row only in right: (2,TWO)"#),
        "{d:#?}"
    );
    assert!(
        has(r#"table "public"."Items": row only in left: (3,three)"#),
        "{d:#?}"
    );
    assert!(has(r#"table "public"."typed": columns differ"#), "{d:#?}");
    assert!(has("bigint"), "{d:#?}");
    assert!(
        has(r#"table "public"."dups": row only in left: (x)"#),
        "{d:#?}"
    );
    assert!(
        has(r#"table "public"."parts": row only in left: (1,eu)"#),
        "{d:#?}"
    );
    assert!(
        has(r#"table "public"."parts": row only in right: (9,eu)"#),
        "{d:#?}"
    );
    assert!(
        has(r#"table "public"."only_right" only in right"#),
        "{d:#?}"
    );
    assert!(has(r#"table "public"."only_left" only in left"#), "{d:#?}");
    assert!(
        !has("parts_eu"),
        "partitions are compared through their root: {d:#?}"
    );
    assert_eq!(d.len(), 9, "{d:#?}");

    let summary = cmp.summary();
    assert!(
        summary.starts_with("databases differ (9 differences)"),
        "{summary}"
    );
}

#[tokio::test]
async fn comparer_streams_large_tables() {
    let pair = TestPair::new().await;
    pair.execute_both("CREATE TABLE big (id int, payload text)")
        .await
        .unwrap();
    pair.left
        .execute("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
        .await
        .unwrap();
    pair.right
        .execute(
            "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(200000, 1, -1) g; \
             UPDATE big SET payload = 'changed' WHERE id = 123456",
        )
        .await
        .unwrap();
    let (l, r) = (
        pair.left.client().await.unwrap(),
        pair.right.client().await.unwrap(),
    );
    let started = Instant::now();
    let cmp = compare_databases(&l, &r).await.unwrap();
    eprintln!("compared 2 x 200k rows in {:?}", started.elapsed());
    assert_eq!(cmp.differences.len(), 2, "{:#?}", cmp.differences);
    assert!(cmp.differences[0].contains("(123456,"));
    assert!(cmp
        .differences
        .iter()
        .any(|d| d.contains("(123456,changed)")));
}

fn proxied_conn(server: &PgServer, port: u16, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres password={} dbname={db} sslmode=disable",
        server.superuser_password()
    )
}

#[tokio::test]
async fn proxy_forwards_delays_cuts_and_refuses() {
    let pair = TestPair::new().await;
    let server = pair.left.server();
    let target: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = Proxy::start(target).await.unwrap();
    let conn = proxied_conn(server, proxy.port(), pair.left.name());

    let client = connect(&conn).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(proxy.connection_count(), 1);

    // Latency: one query is one chunk each way, so it takes at least twice the delay.
    let latency = Duration::from_millis(150);
    proxy.set_latency(latency);
    let t = Instant::now();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(t.elapsed() >= latency * 2, "took only {:?}", t.elapsed());
    proxy.set_latency(Duration::ZERO);

    proxy.cut_all();
    assert!(client.simple_query("SELECT 1").await.is_err());
    wait_for(WAIT, "the client to see the cut", || async {
        client.is_closed()
    })
    .await;
    wait_for(WAIT, "no open proxied connections", || async {
        proxy.connection_count() == 0
    })
    .await;

    proxy.set_refuse(true);
    assert!(connect(&conn).await.is_err());
    proxy.set_refuse(false);
    let client = connect(&conn).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(proxy.total_connections(), 2);

    drop(proxy);
    wait_for(WAIT, "the client to see the proxy gone", || async {
        client.is_closed()
    })
    .await;
}

fn psql(server: &PgServer, conninfo: &str, password: Option<&str>) -> Output {
    let mut cmd = Command::new(server.bin("psql"));
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-c",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    ])
    .arg(conninfo)
    .env_remove("PGPASSWORD")
    .stdin(Stdio::null());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn tls_server_certificates_verify_for_localhost_only() {
    let options = ServerOptions {
        tls: true,
        require_ssl: true,
        extra_hba: vec!["hostssl certdb postgres 127.0.0.1/32 cert".into()],
        ..Default::default()
    };
    let pair = TestPair::dedicated(options).await;
    let server = pair.left.server();
    server
        .run_sql("postgres", "CREATE DATABASE certdb")
        .unwrap();
    let files = server.tls_files().expect("tls files");
    let pw = Some(server.superuser_password());
    let base = format!(
        "port={} user=postgres dbname={}",
        server.port(),
        pair.left.name()
    );
    let ca = files.ca_cert.display();
    let other = files.other_ca_cert.display();

    let ok = psql(
        server,
        &format!("{base} host=localhost sslmode=verify-full sslrootcert={ca}"),
        pw,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "t");

    let by_ip = psql(
        server,
        &format!("{base} host=127.0.0.1 sslmode=verify-full sslrootcert={ca}"),
        pw,
    );
    assert!(!by_ip.status.success(), "the certificate has no IP SAN");
    assert!(
        String::from_utf8_lossy(&by_ip.stderr).contains("does not match host name"),
        "{}",
        String::from_utf8_lossy(&by_ip.stderr)
    );
    let ca_only = psql(
        server,
        &format!("{base} host=127.0.0.1 sslmode=verify-ca sslrootcert={ca}"),
        pw,
    );
    assert!(
        ca_only.status.success(),
        "{}",
        String::from_utf8_lossy(&ca_only.stderr)
    );

    let wrong_ca = psql(
        server,
        &format!("{base} host=localhost sslmode=verify-full sslrootcert={other}"),
        pw,
    );
    assert!(
        !wrong_ca.status.success(),
        "an unrelated CA must not verify the server"
    );

    let plain = psql(
        server,
        &format!("{base} host=127.0.0.1 sslmode=disable"),
        pw,
    );
    assert!(!plain.status.success(), "require_ssl refuses plain TCP");
    assert!(
        pair.left.client().await.is_err(),
        "NoTls client is refused too"
    );

    let cert_base = format!(
        "port={} user=postgres dbname=certdb host=localhost sslmode=verify-full sslrootcert={ca}",
        server.port()
    );
    let with_cert = psql(
        server,
        &format!(
            "{cert_base} sslcert={} sslkey={}",
            files.client_cert.display(),
            files.client_key.display()
        ),
        None,
    );
    assert!(
        with_cert.status.success(),
        "{}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    let without_cert = psql(server, &cert_base, None);
    assert!(
        !without_cert.status.success(),
        "cert auth needs the client certificate"
    );

    // Admin over the unix socket still works, and so does the URL's sslmode.
    assert_eq!(server.run_sql(pair.left.name(), "SELECT 1").unwrap(), "1");
    assert!(server.url(pair.left.name()).ends_with("sslmode=require"));
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

/// Runs `f` as its own task and returns its panic message (None if it did not panic).
async fn panic_message(
    f: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<String> {
    let payload = tokio::spawn(f).await.err()?.into_panic();
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn wait_for_returns_once_the_condition_holds_and_panics_with_what_and_the_time() {
    let started = Instant::now();
    let mut polls = 0;
    wait_for(WAIT, "the third poll", || {
        polls += 1;
        let done = polls == 3;
        async move { done }
    })
    .await;
    assert_eq!(polls, 3);
    assert!(started.elapsed() < Duration::from_secs(5));

    let msg = panic_message(wait_for(
        Duration::from_millis(100),
        "the impossible",
        || async { false },
    ))
    .await
    .expect("wait_for panics on timeout");
    assert!(
        msg.starts_with("timed out after ")
            && msg.ends_with("(limit 100ms) waiting for the impossible"),
        "{msg}"
    );
}

/// A stand-in for the pgduplex binary: logs its arguments and RUST_LOG, says
/// "ready", exits 0 on SIGTERM; with the command `fail` it exits 3 at once.
fn fake_binary(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-pgduplex");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         echo \"args: $*\" >&2\n\
         echo \"RUST_LOG=$RUST_LOG EXTRA=$EXTRA\" >&2\n\
         if [ \"$3\" = fail ]; then echo boom >&2; exit 3; fi\n\
         trap 'echo \"SIGTERM received\" >&2; exit 0' TERM\n\
         echo ready >&2\n\
         while :; do sleep 0.02; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn daemon_handle_starts_logs_terminates_kills_and_is_killed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path());
    let config = dir.path().join("pgduplex.toml");

    let mut d = Daemon::command(&bin, &config, &["replicate"]).start();
    d.wait_log("ready", 1, WAIT).await;
    let log = d.log();
    assert!(
        log.contains(&format!("args: --config {} replicate", config.display())),
        "{log}"
    );
    assert!(log.contains("RUST_LOG=info EXTRA="), "{log}");
    assert!(d.running());
    let status = d.terminate(WAIT).await;
    assert!(status.success(), "{status}");
    assert!(d.log().contains("SIGTERM received"), "{}", d.log());
    assert!(!d.running());

    let own_log = dir.path().join("own.log");
    let mut d = Daemon::command(&bin, &config, &["replicate"])
        .args(&["--until-idle"])
        .env("EXTRA", "x")
        .log_filter("debug")
        .log_file(&own_log)
        .start();
    d.wait_log("ready", 1, WAIT).await;
    assert_eq!(d.log_path(), own_log);
    assert!(d.log().contains("replicate --until-idle"), "{}", d.log());
    assert!(d.log().contains("RUST_LOG=debug EXTRA=x"), "{}", d.log());
    let status = d.kill();
    assert!(!status.success(), "{status}");
    assert!(!d.running());
    assert!(!d.log().contains("SIGTERM"), "{}", d.log());

    let mut d = Daemon::command(&bin, &config, &["replicate"]).start();
    d.wait_log("ready", 1, WAIT).await;
    let proc = std::path::PathBuf::from(format!("/proc/{}", d.pid()));
    assert!(proc.exists());
    drop(d);
    assert!(!proc.exists(), "the dropped handle's process still exists");
}

#[tokio::test]
async fn daemon_handle_waits_report_an_early_exit_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path());
    let config = dir.path().join("pgduplex.toml");

    let mut d = Daemon::command(&bin, &config, &["fail"]).start();
    let status = d.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(3));
    assert!(d.log().contains("boom"));

    let mut d = Daemon::command(&bin, &config, &["fail"]).start();
    let msg = panic_message(async move { d.wait_log("never", 1, WAIT).await })
        .await
        .expect("wait_log panics when the process exits");
    assert!(
        msg.contains(
            "the daemon exited (exit status: 3) while waiting for the daemon to log \"never\""
        ) && msg.contains("boom"),
        "{msg}"
    );

    let mut d = Daemon::command(&bin, &config, &["replicate"]).start();
    let msg =
        panic_message(async move { d.wait_log("never", 1, Duration::from_millis(200)).await })
            .await
            .expect("wait_log panics on timeout");
    assert!(
        msg.contains("waiting for the daemon to log \"never\" 1 time(s)") && msg.contains("ready"),
        "{msg}"
    );
}

/// pgduplex's bookkeeping as far as the harness reads it (see `sql/schema.sql`),
/// and one user table, the same on both sides.
const FAKE_INSTALL: &str = "
    create schema pgduplex;
    create table pgduplex.replicated_table (id int primary key);
    insert into pgduplex.replicated_table values (1), (2);
    create table pgduplex.delta_1 (seq bigint);
    create table pgduplex.delta_2 (seq bigint);
    create table pgduplex.truncate_log (seq bigint);
    create table pgduplex.applied (sync text, source text, batch bigint);
    create table pgduplex.conflicts (id bigint, table_name text, key jsonb, kind text,
        winner text, left_row jsonb, right_row jsonb,
        left_changed_at timestamptz, right_changed_at timestamptz);
    create table t (id int primary key, v text);
    insert into t values (1, 'a'), (2, 'b');";

/// `assert_converged` checks the rows, what is pending and the ledger, on both sides
/// each; `assert_drained` all but the rows.
#[tokio::test]
async fn assert_converged_checks_rows_pending_changes_and_both_ledgers() {
    let pair = Arc::new(TestPair::new().await);
    pair.execute_both(FAKE_INSTALL).await.unwrap();
    assert_converged(&pair).await;
    assert_drained(&pair).await;

    let converged = |pair: &Arc<TestPair>| {
        let pair = Arc::clone(pair);
        panic_message(async move { assert_converged(&pair).await })
    };
    for (side, db, fault, expected) in [
        (
            "left",
            &pair.left,
            "insert into pgduplex.applied values ('main', 'right', 1)",
            "left: 1 row(s) left in the ledger",
        ),
        (
            "right",
            &pair.right,
            "insert into pgduplex.applied values ('main', 'left', 1)",
            "right: 1 row(s) left in the ledger",
        ),
        (
            "left",
            &pair.left,
            "insert into pgduplex.delta_2 values (1), (2)",
            "left: 2 change(s) pending",
        ),
        (
            "right",
            &pair.right,
            "insert into pgduplex.delta_1 values (1)",
            "right: 1 change(s) pending",
        ),
        (
            "right",
            &pair.right,
            "insert into pgduplex.truncate_log values (1)",
            "right: 1 change(s) pending",
        ),
    ] {
        db.execute(fault).await.unwrap();
        let msg = converged(&pair)
            .await
            .unwrap_or_else(|| panic!("{side}: {fault}: not found"));
        assert!(msg.contains(expected), "{side}: {fault}: {msg}");
        assert!(!msg.contains("databases differ"), "{msg}");
        let pair2 = Arc::clone(&pair);
        let msg = panic_message(async move { assert_drained(&pair2).await })
            .await
            .unwrap_or_else(|| panic!("{side}: {fault}: not found by assert_drained"));
        assert!(msg.contains(expected), "{side}: {fault}: {msg}");
        db.execute("delete from pgduplex.applied; delete from pgduplex.delta_1; delete from pgduplex.delta_2; delete from pgduplex.truncate_log")
            .await
            .unwrap();
    }
    assert_converged(&pair).await;

    pair.right
        .execute("update t set v = 'changed' where id = 2; insert into pgduplex.conflicts values (7, 't', '[\"2\"]', 'row', 'none', null, null, null, null)")
        .await
        .unwrap();
    let msg = converged(&pair).await.expect("a differing row is found");
    assert!(
        msg.contains("databases differ (2 differences)")
            && msg.contains("row only in right: (2,changed)")
            && msg.contains("the last conflicts logged on the right:\n  t [\"2\"] row winner=none"),
        "{msg}"
    );
    // Sides left different on purpose (`ignore`) are still drained.
    assert_drained(&pair).await;
}

#[tokio::test]
async fn sessions_lists_the_other_sessions_of_the_database() {
    let pair = TestPair::new().await;
    let c = pair.left.client().await.unwrap();
    let pid: i32 = c
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let listed = sessions(&pair.left);
    assert!(
        listed.contains(&format!("  {pid} [")) && listed.contains("q=select pg_backend_pid()"),
        "{listed}"
    );
    assert!(
        !sessions(&pair.right).contains(&format!("  {pid} [")),
        "another database's session"
    );
}
