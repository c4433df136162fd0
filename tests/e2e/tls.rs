//! TLS: every `sslmode` connects or refuses as libpq would, against local servers
//! with the test kit's self-signed CA (server certificate valid for the DNS name
//! `localhost` only, not for `127.0.0.1`).
//!
//! Library-level checks build `pgduplex_pg::Endpoint`s from
//! `ConnectionSettings::from_url` with the TLS settings adjusted, connect, and ask the
//! server itself (`pg_stat_ssl`) whether the session is encrypted. One check runs
//! the binary (`pgduplex check` with `verify-full` set in the TOML side tables).
//!
//! Servers are expensive (~1 s a pair), so each test function starts one server
//! configuration and checks every mode against it.

use std::path::Path;

use pgduplex_config::{ConnectionSettings, RootCert, SslMode};
use pgduplex_pg::Endpoint;
use pgduplex_testkit::{PgServer, ServerOptions, TestDb, TestPair};

use crate::support::{pgduplex_async, toml_string, ConfigFile};

/// What a connection attempt ended in: `Ok(ssl)` with whether the server sees the
/// session as encrypted, or the whole error chain as text.
type Outcome = Result<bool, String>;

/// rustls's words for a certificate that does not chain to the given root.
const UNKNOWN_ISSUER: &str = "invalid peer certificate: UnknownIssuer";
/// rustls's words for a certificate that does not name the host connected to.
const NOT_VALID_FOR_NAME: &str = "certificate not valid for name \"127.0.0.1\"";

/// "outer: cause: root cause" of an error.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

/// Settings for the superuser of `db` on `server` via `host`, with the URL's
/// `sslmode` left out and the TLS settings given here.
fn settings(
    server: &PgServer,
    db: &str,
    host: &str,
    mode: SslMode,
    root: Option<&Path>,
) -> ConnectionSettings {
    let url = server.url_with("postgres", server.superuser_password(), host, db, "");
    let mut s = ConnectionSettings::from_url(&url).expect("test URL parses");
    s.tls.mode = mode;
    s.tls.root_cert = root.map(|p| RootCert::File(p.to_path_buf()));
    s
}

/// Connects with `settings` through pgduplex's own connection code and reports
/// whether the server sees TLS on the session.
async fn attempt(settings: &ConnectionSettings) -> Outcome {
    let endpoint = Endpoint::new("left", settings).map_err(|e| chain(&e))?;
    let client = endpoint.connect().await.map_err(|e| chain(&e))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| chain(&e))?;
    Ok(row.get::<_, bool>(0))
}

#[track_caller]
fn expect_tls(what: &str, outcome: &Outcome, tls: bool) {
    match outcome {
        Ok(ssl) => assert_eq!(
            *ssl, tls,
            "{what}: connected, but pg_stat_ssl.ssl = {ssl} (wanted {tls})"
        ),
        Err(e) => panic!("{what}: should connect, failed: {e}"),
    }
}

/// The connection must fail, with a message containing every one of `needles`
/// (case-insensitive).
#[track_caller]
fn expect_refused(what: &str, outcome: &Outcome, needles: &[&str]) {
    match outcome {
        Ok(ssl) => panic!("{what}: should be refused, but connected (ssl = {ssl})"),
        Err(e) => {
            let lower = e.to_lowercase();
            for n in needles {
                assert!(
                    lower.contains(&n.to_lowercase()),
                    "{what}: refused, but the message does not say {n:?}: {e}"
                );
            }
        }
    }
}

/// A server that offers TLS and also accepts plain TCP: the whole sslmode matrix,
/// client certificates, and `pgduplex check` with `verify-full` from the TOML file.
#[tokio::test]
async fn tls_server_that_also_allows_plain_tcp() {
    // Certificate authentication for the superuser on database `postgres` over TLS;
    // every other database keeps the kit's password lines (`host ... scram-sha-256`).
    let pair = TestPair::dedicated(ServerOptions {
        tls: true,
        extra_hba: vec!["hostssl postgres postgres 127.0.0.1/32 cert".into()],
        ..Default::default()
    })
    .await;
    let server = pair.left.server();
    let files = server
        .tls_files()
        .expect("TLS server has certificates")
        .clone();
    let ca = files.ca_cert.as_path();
    let other = files.other_ca_cert.as_path();
    let db = pair.left.name();
    let s = |host: &str, mode: SslMode, root: Option<&Path>| settings(server, db, host, mode, root);

    // disable: never encrypts.
    let o = attempt(&s("127.0.0.1", SslMode::Disable, None)).await;
    expect_tls("disable", &o, false);

    // prefer: the server offers TLS, so it is used (nothing verified).
    let o = attempt(&s("127.0.0.1", SslMode::Prefer, None)).await;
    expect_tls("prefer", &o, true);

    // require without sslrootcert: encrypts and accepts a certificate nobody can
    // verify (self-signed CA, host name mismatch): libpq's behaviour.
    let o = attempt(&s("127.0.0.1", SslMode::Require, None)).await;
    expect_tls("require, no sslrootcert, via 127.0.0.1", &o, true);

    // verify-ca without sslrootcert: refused, saying what is missing.
    let o = attempt(&s("localhost", SslMode::VerifyCa, None)).await;
    expect_refused("verify-ca without sslrootcert", &o, &["sslrootcert"]);
    // verify-full likewise.
    let o = attempt(&s("localhost", SslMode::VerifyFull, None)).await;
    expect_refused("verify-full without sslrootcert", &o, &["sslrootcert"]);

    // verify-ca with the right CA: the chain is checked, the host name is not, so
    // 127.0.0.1 (not in the certificate) is fine.
    let o = attempt(&s("127.0.0.1", SslMode::VerifyCa, Some(ca))).await;
    expect_tls("verify-ca, right CA, via 127.0.0.1", &o, true);
    let o = attempt(&s("localhost", SslMode::VerifyCa, Some(ca))).await;
    expect_tls("verify-ca, right CA, via localhost", &o, true);

    // verify-ca with an unrelated CA: refused.
    let o = attempt(&s("localhost", SslMode::VerifyCa, Some(other))).await;
    expect_refused("verify-ca, wrong CA", &o, &[UNKNOWN_ISSUER]);

    // verify-full with the right CA and the name in the certificate: connects.
    let o = attempt(&s("localhost", SslMode::VerifyFull, Some(ca))).await;
    expect_tls("verify-full, right CA, via localhost", &o, true);

    // verify-full via 127.0.0.1: the certificate names only `localhost`: refused,
    // and the message is about the name.
    let o = attempt(&s("127.0.0.1", SslMode::VerifyFull, Some(ca))).await;
    expect_refused(
        "verify-full, right CA, via 127.0.0.1",
        &o,
        &[NOT_VALID_FOR_NAME],
    );

    // verify-full with the wrong CA: refused even with the right name.
    let o = attempt(&s("localhost", SslMode::VerifyFull, Some(other))).await;
    expect_refused(
        "verify-full, wrong CA, via localhost",
        &o,
        &[UNKNOWN_ISSUER],
    );

    // libpq: require with a root certificate behaves as verify-ca. With the wrong
    // CA it is refused; with the right one it connects, host name unchecked.
    let o = attempt(&s("localhost", SslMode::Require, Some(other))).await;
    expect_refused("require + sslrootcert = wrong CA", &o, &[UNKNOWN_ISSUER]);
    let o = attempt(&s("127.0.0.1", SslMode::Require, Some(ca))).await;
    expect_tls("require + sslrootcert = right CA, via 127.0.0.1", &o, true);

    // Client certificate (CN=postgres, signed by the server's CA): the `cert` hba
    // line for database `postgres` admits it without any password.
    let mut cert = settings(
        server,
        "postgres",
        "localhost",
        SslMode::VerifyFull,
        Some(ca),
    );
    cert.password = None;
    cert.tls.client_cert = Some(files.client_cert.clone());
    cert.tls.client_key = Some(files.client_key.clone());
    let endpoint = Endpoint::new("left", &cert).expect("client certificate loads");
    let client = endpoint
        .connect()
        .await
        .unwrap_or_else(|e| panic!("client certificate authentication failed: {}", chain(&e)));
    let row = client
        .query_one(
            "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    assert!(
        row.get::<_, bool>(0),
        "client-certificate session is not encrypted"
    );
    let dn: Option<String> = row.get(1);
    assert!(
        dn.as_deref().is_some_and(|d| d.contains("CN=postgres")),
        "server saw client DN {dn:?}"
    );
    // ... and without the certificate the same hba line refuses (so the success
    // above really was certificate authentication, not the password).
    let mut no_cert = settings(
        server,
        "postgres",
        "localhost",
        SslMode::VerifyFull,
        Some(ca),
    );
    no_cert.password = None;
    let o = attempt(&no_cert).await;
    expect_refused(
        "cert auth without a client certificate",
        &o,
        &["requires a valid client certificate"],
    );
    // sslcert without sslkey is a TLS settings error, before any network.
    let mut half = cert.clone();
    half.tls.client_key = None;
    let o = attempt(&half).await;
    expect_refused("sslcert without sslkey", &o, &["sslcert", "sslkey"]);

    // Through the binary: verify-full with sslrootcert from the TOML side tables.
    binary_check_verify_full(&pair).await;
}

fn side_table(name: &str, db: &TestDb, host: &str) -> String {
    let server = db.server();
    // The URL says `disable`: the side table's keys must override it.
    let url = server.url_with(
        "postgres",
        server.superuser_password(),
        host,
        db.name(),
        "sslmode=disable",
    );
    let ca = &server.tls_files().expect("TLS server").ca_cert;
    format!(
        "[{name}]\nurl = {}\nsslmode = \"verify-full\"\nsslrootcert = {}\n\n",
        toml_string(&url),
        toml_string(&ca.to_string_lossy())
    )
}

async fn binary_check_verify_full(pair: &TestPair) {
    let passwords = [
        pair.left.server().superuser_password().to_string(),
        pair.right.server().superuser_password().to_string(),
    ];
    let no_password = |out: &str| {
        for pw in &passwords {
            assert!(!out.contains(pw.as_str()), "a password was printed:\n{out}");
        }
    };

    // Both sides via `localhost`, the name in the certificates: ready.
    let config = ConfigFile::new(&format!(
        "{}{}",
        side_table("left", &pair.left, "localhost"),
        side_table("right", &pair.right, "localhost")
    ));
    let run = pgduplex_async(&config.path, &["check"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("sslmode=verify-full"),
        "check should show the TLS mode in use:\n{}",
        run.all()
    );
    no_password(&run.all());

    // The left side via 127.0.0.1, which its certificate does not name: check
    // finds the problem (exit 3: the side cannot be reached) and says it is the host name.
    let config = ConfigFile::new(&format!(
        "{}{}",
        side_table("left", &pair.left, "127.0.0.1"),
        side_table("right", &pair.right, "localhost")
    ));
    let run = pgduplex_async(&config.path, &["check"]).await;
    run.assert_code(3);
    let out = run.all();
    assert!(
        out.contains("left: connection"),
        "the left connection should be the problem:\n{out}"
    );
    assert!(
        !out.contains("right: connection"),
        "the right side was fine:\n{out}"
    );
    assert!(
        out.contains(NOT_VALID_FOR_NAME),
        "the message should say the certificate does not name the host:\n{out}"
    );
    no_password(&out);
}

/// A server without TLS: `prefer` falls back to plain text, `require` and stronger
/// refuse.
#[tokio::test]
async fn server_without_tls() {
    let pair = TestPair::new().await; // the shared servers have no TLS
    let server = pair.left.server();
    assert!(server.tls_files().is_none(), "shared servers are plain TCP");
    let db = pair.left.name();

    let o = attempt(&settings(server, db, "127.0.0.1", SslMode::Prefer, None)).await;
    expect_tls("prefer against a plain server", &o, false);
    let o = attempt(&settings(server, db, "127.0.0.1", SslMode::Disable, None)).await;
    expect_tls("disable against a plain server", &o, false);
    let o = attempt(&settings(server, db, "127.0.0.1", SslMode::Require, None)).await;
    expect_refused(
        "require against a plain server",
        &o,
        &["server does not support TLS"],
    );

    // verify-full with some CA file: refused too (never silently plain text).
    let dir = tempfile::tempdir().expect("temp dir");
    let files = pgduplex_testkit::tls::generate(dir.path()).expect("certificates");
    let o = attempt(&settings(
        server,
        db,
        "localhost",
        SslMode::VerifyFull,
        Some(&files.ca_cert),
    ))
    .await;
    expect_refused(
        "verify-full against a plain server",
        &o,
        &["server does not support TLS"],
    );
}

/// A server that accepts TCP connections over TLS only (`hostssl` lines only):
/// `disable` is refused by the server, the others connect encrypted.
#[tokio::test]
async fn server_requiring_tls() {
    let pair = TestPair::dedicated(ServerOptions {
        tls: true,
        require_ssl: true,
        ..Default::default()
    })
    .await;
    let server = pair.left.server();
    let ca = server.tls_files().expect("TLS server").ca_cert.clone();
    let db = pair.left.name();

    let o = attempt(&settings(server, db, "127.0.0.1", SslMode::Disable, None)).await;
    expect_refused("disable against a TLS-only server", &o, &["pg_hba.conf"]);
    let o = attempt(&settings(server, db, "127.0.0.1", SslMode::Prefer, None)).await;
    expect_tls("prefer against a TLS-only server", &o, true);
    let o = attempt(&settings(server, db, "127.0.0.1", SslMode::Require, None)).await;
    expect_tls("require against a TLS-only server", &o, true);
    let o = attempt(&settings(
        server,
        db,
        "localhost",
        SslMode::VerifyFull,
        Some(&ca),
    ))
    .await;
    expect_tls("verify-full against a TLS-only server", &o, true);
}
