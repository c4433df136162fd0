//! TLS settings: modes, root certificates, client certificates.

use pgduplex_config::{RootCert, SslMode};

use crate::support::{ok, parse_at, problem, problems};

fn side(url: &str, keys: &str) -> String {
    format!("[left]\nurl = \"{url}\"\n{keys}\n[right]\nurl = \"postgres://a@r/d\"\n")
}

#[test]
fn every_sslmode_from_the_url_and_the_key() {
    for (name, mode) in [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        let from_url = ok(&side(&format!("postgres://a@h/d?sslmode={name}"), ""));
        assert_eq!(from_url.left.connection.tls.mode, mode);
        assert_eq!(from_url.left.connection.tls.effective_mode(), mode);
        let from_key = ok(&side("postgres://a@h/d", &format!("sslmode = \"{name}\"")));
        assert_eq!(from_key.left.connection.tls.mode, mode);
        assert!(from_key
            .left
            .connection
            .redacted()
            .ends_with(&format!("?sslmode={name}")));
    }
}

#[test]
fn allow_is_refused_with_a_reason() {
    let p = problem(&side("postgres://a@h/d", "sslmode = \"allow\""));
    assert_eq!(p.key, "left.sslmode");
    assert!(p.hint.as_deref().unwrap().contains("use prefer"), "{p}");
}

#[test]
fn require_with_root_cert_behaves_as_verify_ca() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    let config = parse_at(
        &side(
            "postgres://a@h/d?sslmode=require",
            "sslrootcert = \"ca.pem\"",
        ),
        &dir.path().join("pgduplex.toml"),
    )
    .unwrap();
    let tls = &config.left.connection.tls;
    assert_eq!(tls.mode, SslMode::Require);
    assert_eq!(tls.effective_mode(), SslMode::VerifyCa);
    assert!(config
        .left
        .connection
        .redacted()
        .contains("sslmode=verify-ca"));
}

#[test]
fn system_root_cert() {
    let config = ok(&side("postgres://a@h/d", "sslrootcert = \"system\""));
    assert_eq!(config.left.connection.tls.root_cert, Some(RootCert::System));
    assert_eq!(config.left.connection.tls.mode, SslMode::VerifyFull);

    let config = ok(&side(
        "postgres://a@h/d?sslmode=verify-full",
        "sslrootcert = \"system\"",
    ));
    assert_eq!(config.left.connection.tls.mode, SslMode::VerifyFull);

    let p = problem(&side(
        "postgres://a@h/d?sslmode=require",
        "sslrootcert = \"system\"",
    ));
    assert_eq!(p.key, "left.sslrootcert");
    assert!(p.message.contains("requires sslmode verify-full"), "{p}");

    let p = problem(&side(
        "postgres://a@h/d?sslrootcert=system",
        "sslmode = \"verify-ca\"",
    ));
    assert_eq!(p.key, "left.url");
}

#[test]
fn certificate_files_must_exist() {
    let ps = problems(&side(
        "postgres://a@h/d?sslrootcert=/nonexistent/ca.pem",
        "sslcert = \"/nonexistent/c.pem\"\nsslkey = \"/nonexistent/c.key\"",
    ));
    let shown: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "pgduplex.toml:2:7: left.url: root certificate /nonexistent/ca.pem not found",
            "pgduplex.toml:3:11: left.sslcert: client certificate /nonexistent/c.pem not found",
            "pgduplex.toml:4:10: left.sslkey: client key /nonexistent/c.key not found",
        ]
    );
}

#[test]
fn client_cert_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "x").unwrap();
    let err = parse_at(
        &side("postgres://a@h/d", "sslcert = \"c.pem\""),
        &dir.path().join("pgduplex.toml"),
    )
    .unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "left.sslcert");
    assert_eq!(p.message, "sslcert is given without sslkey");
}

#[test]
fn a_directory_is_not_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = problem(&side(
        "postgres://a@h/d",
        &format!("sslrootcert = \"{}\"", dir.path().display()),
    ));
    assert!(p.message.ends_with("is not a file"), "{p}");
}
