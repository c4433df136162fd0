//! Passwords: from the URL or a file, never in an error.

use std::path::Path;

use pgduplex_config::Config;

use crate::support::{ok, parse_at, problem, problems};

fn with_password_file(path: &str, url: &str) -> String {
    format!(
        "[left]\nurl = \"{url}\"\npassword_file = \"{path}\"\n[right]\nurl = \"postgres://a@r/d\"\n"
    )
}

#[test]
fn password_file_is_read_and_one_newline_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    for (contents, expected) in [
        ("s3cret\n", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\n\n", "s3cret\n"),
        (" spaced \n", " spaced "),
    ] {
        std::fs::write(dir.path().join("pw"), contents).unwrap();
        // Relative to the configuration file's directory.
        let config = parse_at(
            &with_password_file("pw", "postgres://app@h/db"),
            &dir.path().join("pgduplex.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let password = config.left.connection.password.as_ref().unwrap();
        assert_eq!(password.expose(), expected);
        assert_eq!(
            config.secrets(),
            vec![expected.to_owned()]
                .into_iter()
                .chain(
                    (expected.contains(['\n', ' ']))
                        .then(|| expected.replace('\n', "%0A").replace(' ', "%20"))
                )
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn missing_password_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    let p = problem(&with_password_file(
        path.to_str().unwrap(),
        "postgres://app@h/db",
    ));
    assert_eq!(p.key, "left.password_file");
    assert_eq!((p.line, p.column), (Some(3), Some(17)));
    assert_eq!(
        p.message,
        format!("password file {} not found", path.display())
    );
}

#[test]
fn empty_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "\n").unwrap();
    let p = problem(&with_password_file(
        path.to_str().unwrap(),
        "postgres://app@h/db",
    ));
    assert!(p.message.ends_with("is empty"), "{p}");
}

#[test]
fn password_in_url_and_password_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "from-file").unwrap();
    for url in [
        "postgres://app:inurl@h/db",
        "postgres://app@h/db?password=inurl",
    ] {
        let p = problem(&with_password_file(path.to_str().unwrap(), url));
        assert_eq!(p.key, "left.password_file");
        assert!(p.message.contains("given twice"), "{p}");
        assert!(!format!("{p} {p:?}").contains("inurl"));
        assert!(!format!("{p} {p:?}").contains("from-file"));
    }
}

#[test]
fn password_file_is_checked_even_when_the_url_is_broken() {
    let ps = problems(&with_password_file(
        "/nonexistent/pw",
        "postgres://app@h:x/db",
    ));
    assert_eq!(ps.len(), 2, "{ps:#?}");
}

/// The important one: whatever is wrong with a file, the password does not appear in
/// what the user (or a log) sees.
#[test]
fn passwords_never_appear_in_errors() {
    const PW: &str = "Sup3rS3cretPw";
    let encoded = "Sup3r%53cretPw"; // the same password, partly percent-encoded
    let broken_urls = [
        format!("postgres://app:{PW}@h:54x2/db"),
        format!("postgres://app:{PW}@h:99999/db"),
        format!("postgres://app:{PW}@h/db?sslmode={PW}"),
        format!("postgres://app:{PW}@h/db?{PW}=1"),
        format!("postgres://app:{PW}@h/db?connect_timeout={PW}"),
        format!("postgres://app:{PW}@h/db?target_session_attrs={PW}"),
        format!("postgres://app:{PW}@h/db?port={PW}"),
        format!("postgres://app:{PW}?@h/db"),
        format!("postgres://app:{PW}/x@h/db"),
        format!("postgres://app:{PW}%zz@h/db"),
        format!("postgres://app:{encoded}@::1/db"),
        format!("postgres://app:{encoded}@[::1/db"),
        format!("mysql://app:{PW}@h/db"),
        format!("postgres://{PW}@h/db?sslrootcert=system&sslmode=require"),
        PW.to_string(),
    ];
    let mut texts: Vec<String> = broken_urls
        .iter()
        .map(|url| format!("[left]\nurl = \"{url}\"\n[right]\nurl = \"postgres://a@h/d\"\n"))
        .collect();
    texts.extend([
        // Values in places that expect something else.
        format!("[left]\nurl = \"postgres://a@h/d\"\nsslmode = \"{PW}\"\n[right]\nurl = \"postgres://a@h/d\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\nurll = \"{PW}\"\n[right]\nurl = \"postgres://a@h/d\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\npassword = \"{PW}\"\n[right]\nurl = \"postgres://a@h/d\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n[replication]\nconflict = \"{PW}\"\nsync = \"{PW}\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n[tables]\ninclude = [\"({PW}\"]\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n[[table]]\nname = \"{PW}\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n[[table]]\nname = \"public.Sup3rS3cretPw\"\n"),
        // Broken TOML around and inside the password.
        format!("[left]\nurl = \"postgres://a:{PW}\"@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\n[right]\nurl = \"postgres://a@h/d\"\n"),
        format!("[left]\nurl = postgres://a:{PW}@h/d\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\nurl = \"postgres://a:{PW}@h/d\"\n"),
        format!("[left]\nurl = \"postgres://a:{PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n[install]\nmax_attempts = \"{PW}\"\n"),
    ]);
    for text in &texts {
        let err = Config::parse(text, Path::new("pgduplex.toml"), &|_| None).expect_err(text);
        assert!(!err.problems().is_empty());
        let shown = format!("{err}\n{err:?}");
        for needle in [PW, encoded, "S3cret", "3cretP"] {
            assert!(
                !shown.contains(needle),
                "the password leaked for\n{text}\n---\n{shown}"
            );
        }
    }
}

#[test]
fn passwords_from_the_environment_never_appear_in_errors() {
    let env = |name: &str| (name == "PW").then(|| "Env\"Secret\\Value".to_owned());
    for text in [
        "[left]\nurl = \"postgres://a:${PW}@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n",
        "[left]\nurl = '${PW}'\n[right]\nurl = \"postgres://a@h/d\"\n",
        "[left]\nurl = \"postgres://a@h/d\"\n[right]\nurl = \"postgres://a@h/d\"\n[replication]\nsync = '${PW}'\n",
    ] {
        let err = Config::parse(text, Path::new("p.toml"), &env).expect_err(text);
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains("Secret"), "{text}\n{shown}");
    }
}

#[test]
fn debug_of_a_config_redacts_passwords() {
    let config = ok("[left]\nurl = \"postgres://a:${LEFT_PASSWORD}@h/d\"\n[right]\nurl = \"postgres://a:${RIGHT_PASSWORD}@h/d\"\n");
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains("l3ft-Pa55"));
    assert!(!debug.contains("r1ght-Pa55"));
}
