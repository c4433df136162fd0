//! Configuration and connection errors, through the binary: the exit code (2 for a
//! configuration error, with nothing touched; 1 when the command ran and found a
//! problem), the message (file, line, key, what to do), that neither database was
//! changed, and that a configured password never shows up in any output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgduplex_testkit::{unique_name, TestDb, TestPair};

use crate::support::{
    all_user_rows, pgduplex_async, pgduplex_objects, replicated_tables, toml_string, ConfigFile,
    Run,
};

/// Runs the binary with full control over its environment: `config` as `--config`
/// (none: the binary must find it itself), `RUST_LOG` and `PGDUPLEX_CONFIG` removed
/// (so `-v`/`-vv` take effect) unless `env` sets them, `remove` removed too, and
/// `cwd` as working directory.
fn run_binary(
    config: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    remove: &[&str],
    cwd: Option<&Path>,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgduplex"));
    cmd.env_remove("PGDUPLEX_CONFIG").env_remove("RUST_LOG");
    for name in remove {
        cmd.env_remove(name);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.args(args).output().expect("run pgduplex");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run_binary`] without blocking the runtime.
async fn run_binary_async(
    config: Option<PathBuf>,
    args: &[&str],
    env: &[(&str, &str)],
    remove: &[&str],
    cwd: Option<PathBuf>,
) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
        run_binary(config.as_deref(), &args, &env, &remove, cwd.as_deref())
    })
    .await
    .expect("join")
}

#[track_caller]
fn assert_contains(run: &Run, needle: &str) {
    assert!(
        run.all().contains(needle),
        "output lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
}

/// A TCP port nothing listens on.
const CLOSED_PORT: u16 = 1;

/// A keyed table with rows on both sides (different rows, so a copy would show).
async fn seed(pair: &TestPair) {
    pair.left
        .execute(
            "CREATE TABLE public.orders (id int PRIMARY KEY, note text);
             INSERT INTO public.orders VALUES (1, 'left one'), (2, 'left two');",
        )
        .await
        .expect("seed left");
    pair.right
        .execute(
            "CREATE TABLE public.orders (id int PRIMARY KEY, note text);
             INSERT INTO public.orders VALUES (3, 'right three');",
        )
        .await
        .expect("seed right");
}

type Rows = Vec<(String, Vec<String>)>;

async fn snapshot(pair: &TestPair) -> (Rows, Rows) {
    (
        all_user_rows(&pair.left).await,
        all_user_rows(&pair.right).await,
    )
}

/// Nothing of pgduplex's on either side and every user row as it was.
async fn assert_untouched(pair: &TestPair, before: &(Rows, Rows), what: &str) {
    for db in [&pair.left, &pair.right] {
        let client = db.client().await.expect("connect");
        let objects = pgduplex_objects(&client).await;
        assert!(
            objects.is_empty(),
            "{what}: pgduplex objects were created on {db:?}: {objects:?}"
        );
    }
    let after = snapshot(pair).await;
    assert_eq!(&after, before, "{what}: user rows changed");
}

/// Runs `check`, `install` and `uninstall` with a configuration that must be refused
/// before any database is touched: exit 2 and `needles` in the output each time;
/// then the databases are as they were.
async fn assert_config_error(pair: &TestPair, config: &ConfigFile, needles: &[&str]) {
    let before = snapshot(pair).await;
    for command in ["check", "install", "uninstall"] {
        let run = pgduplex_async(&config.path, &[command]).await;
        run.assert_code(2);
        for n in needles {
            assert_contains(&run, n);
        }
        assert!(
            run.stdout.is_empty(),
            "{command}: a configuration error should print no report:\n{}",
            run.stdout
        );
    }
    assert_untouched(pair, &before, "configuration error").await;
}

#[tokio::test]
async fn unknown_keys_name_file_line_and_the_right_key() {
    let pair = TestPair::new().await;
    seed(&pair).await;

    // `urll` for `url` in [left] (the section then also lacks its url).
    let config = ConfigFile::new(&format!(
        "[left]\nurll = {}\n\n[right]\nurl = {}\n",
        toml_string(&pair.left.url()),
        toml_string(&pair.right.url())
    ));
    let path = config.path.display().to_string();
    assert_config_error(
        &pair,
        &config,
        &[
            &format!("{path}:2:1: left.urll: unknown key; did you mean `url`?"),
            &format!("{path}:1:1: left.url: required key is missing"),
        ],
    )
    .await;

    // `confict` for `conflict` in [replication] (line 8: see ConfigFile::for_urls).
    let config = ConfigFile::for_pair(&pair, "[replication]\nconfict = \"left_wins\"");
    let path = config.path.display().to_string();
    assert_config_error(
        &pair,
        &config,
        &[&format!(
            "{path}:8:1: replication.confict: unknown key; did you mean `conflict`?"
        )],
    )
    .await;
}

#[tokio::test]
async fn bad_regex_names_the_key_path_and_line() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    let config = ConfigFile::for_pair(
        &pair,
        "[tables]\ninclude = ['^public\\.orders$', '^public\\.(orders']",
    );
    let path = config.path.display().to_string();
    assert_config_error(
        &pair,
        &config,
        &[
            &format!("{path}:8:"),
            "tables.include[1]: invalid regular expression",
        ],
    )
    .await;
    // The message explains, it does not echo the pattern.
    let run = pgduplex_async(&config.path, &["check"]).await;
    assert!(!run.all().contains("(orders"), "{}", run.all());
}

#[tokio::test]
async fn missing_environment_variable_is_named() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    const VAR: &str = "PGDX_E2E_LEFT_PASSWORD";
    let server = pair.left.server();
    let left = format!(
        "postgres://postgres:${{{VAR}}}@{}:{}/{}?sslmode=disable",
        server.host(),
        server.port(),
        pair.left.name()
    );
    let config = ConfigFile::for_urls(&left, &pair.right.url(), "");
    let path = config.path.display().to_string();
    let before = snapshot(&pair).await;
    for command in ["check", "install"] {
        let run = run_binary_async(Some(config.path.clone()), &[command], &[], &[VAR], None).await;
        run.assert_code(2);
        assert_contains(&run, &format!("{path}:2:"));
        assert_contains(
            &run,
            &format!("left.url: environment variable `{VAR}` is not set"),
        );
    }
    assert_untouched(&pair, &before, "missing environment variable").await;

    // With the variable set, the same file works: the reference really is expanded.
    let run = run_binary_async(
        Some(config.path.clone()),
        &["check"],
        &[(VAR, server.superuser_password())],
        &[],
        None,
    )
    .await;
    run.assert_code(0);
}

#[tokio::test]
async fn wrong_type_has_a_position() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    let config = ConfigFile::for_pair(&pair, "[install]\nlock_timeout_ms = \"fast\"");
    let path = config.path.display().to_string();
    assert_config_error(
        &pair,
        &config,
        &[&format!(
            "{path}:8:19: install.lock_timeout_ms: expected an integer, found a string"
        )],
    )
    .await;
}

#[tokio::test]
async fn every_problem_is_reported_at_once() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    let config = ConfigFile::for_pair(
        &pair,
        "[replication]\nconfict = \"left_wins\"\n[tables]\ninclude = ['(']\n[install]\nlock_timeout_ms = \"fast\"",
    );
    let path = config.path.display().to_string();
    assert_config_error(
        &pair,
        &config,
        &[
            &format!("{path}:8:1: replication.confict"),
            &format!("{path}:10:"),
            "tables.include[0]",
            &format!("{path}:12:19: install.lock_timeout_ms"),
        ],
    )
    .await;
}

#[tokio::test]
async fn wrong_password_is_reported_and_install_creates_nothing() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    let before = snapshot(&pair).await;
    let left = pair.left.url_for("postgres", "not-the-password");
    let config = ConfigFile::for_urls(&left, &pair.right.url(), "");

    let run = pgduplex_async(&config.path, &["check"]).await;
    run.assert_code(3);
    assert_contains(
        &run,
        "error   left: connection: cannot connect to the left database",
    );
    assert_contains(&run, "password authentication failed for user \"postgres\"");
    assert_contains(
        &run,
        "fix: check the user and the password of [left] (in url, or in password_file)",
    );
    assert!(
        !run.all().contains("right: connection"),
        "the right side was fine:\n{}",
        run.all()
    );
    assert!(!run.all().contains("not-the-password"), "{}", run.all());

    let run = pgduplex_async(&config.path, &["install"]).await;
    run.assert_code(3);
    assert_contains(&run, "password authentication failed");
    assert_contains(&run, "install refused");
    assert_contains(&run, "nothing was changed");
    // The reachable right side was not touched either.
    assert_untouched(&pair, &before, "install with a wrong password").await;
}

#[tokio::test]
async fn closed_port_fails_fast_with_what_to_fix() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    let before = snapshot(&pair).await;
    // A port nothing listens on: 1 (tcpmux), privileged and unused. (A port bound
    // and released here could be taken meanwhile by a server another test starts.)
    let port = CLOSED_PORT;
    let server = pair.left.server();
    let left = format!(
        "postgres://postgres:{}@127.0.0.1:{port}/{}?sslmode=disable",
        pgduplex_testkit::server::percent_encode(server.superuser_password()),
        pair.left.name()
    );
    let config = ConfigFile::for_urls(&left, &pair.right.url(), "");

    let started = Instant::now();
    let run = pgduplex_async(&config.path, &["check"]).await;
    let took = started.elapsed();
    run.assert_code(3);
    assert!(
        took < Duration::from_secs(5),
        "check took {took:?} to report a closed port"
    );
    assert_contains(
        &run,
        &format!("cannot connect to the left database at postgres://postgres@127.0.0.1:{port}/"),
    );
    assert_contains(&run, "Connection refused");
    assert_contains(
        &run,
        "fix: check the host and port in [left] url, that the server is running",
    );

    let run = pgduplex_async(&config.path, &["install"]).await;
    run.assert_code(3);
    assert_contains(&run, "install refused");
    assert_untouched(&pair, &before, "install with a closed port").await;
}

#[tokio::test]
async fn table_without_key_is_left_out_and_the_rest_goes_ahead() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    pair.execute_both(
        "CREATE TABLE public.no_key (v text);
         INSERT INTO public.no_key VALUES ('a'), ('b');",
    )
    .await
    .expect("keyless table");
    let before = snapshot(&pair).await;
    let config = ConfigFile::for_pair(&pair, "");

    let run = pgduplex_async(&config.path, &["check"]).await;
    run.assert_code(0);
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("warning") && l.contains("table public.no_key"))
        .unwrap_or_else(|| panic!("no warning about public.no_key:\n{}", run.all()));
    assert!(warning.contains("left out"), "{warning}");
    assert_contains(&run, "1 table(s) to replicate, 1 left out, 0 error(s).");
    assert_contains(&run, "Replication can go ahead.");

    let run = pgduplex_async(&config.path, &["install"]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("public.no_key"),
        "install should repeat the warning:\n{}",
        run.all()
    );
    for db in [&pair.left, &pair.right] {
        assert_eq!(
            replicated_tables(&db.client().await.expect("connect")).await,
            vec!["public.orders".to_string()],
            "{db:?}"
        );
        let client = db.client().await.expect("connect");
        let triggers: Vec<String> = pgduplex_objects(&client)
            .await
            .into_iter()
            .filter(|o| o.starts_with("trigger "))
            .collect();
        assert!(
            triggers.iter().any(|t| t.contains("orders")),
            "{db:?}: no capture trigger on orders: {triggers:?}"
        );
        assert!(
            !triggers.iter().any(|t| t.contains("no_key")),
            "{db:?}: capture trigger on the keyless table: {triggers:?}"
        );
    }
    assert_eq!(snapshot(&pair).await, before, "install changed user rows");
}

/// A distinctive password; `pa55w0rd` is what is looked for in the output, so that
/// a part of it or its percent-encoded form (`%21` for `!`) is caught as well.
const PASSWORD: &str = "S3cr3t-pa55w0rd!x";
const PASSWORD_PART: &str = "pa55w0rd";

#[tokio::test]
async fn password_never_appears_in_any_output() {
    let pair = TestPair::new().await;
    seed(&pair).await;
    let role = unique_name("pgdx_secret");
    pair.create_role(&role, PASSWORD, "SUPERUSER")
        .await
        .expect("role");

    let dir = tempfile::tempdir().expect("temp dir");
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password file");
    let pw_file_toml = toml_string(&pw_file.to_string_lossy());
    let bare_url = |db: &TestDb, user: &str| {
        format!(
            "postgres://{user}@{}:{}/{}?sslmode=disable",
            db.server().host(),
            db.server().port(),
            db.name()
        )
    };
    let closed_port = CLOSED_PORT;
    let encoded = pgduplex_testkit::server::percent_encode(PASSWORD);

    // (what, configuration text, expected exit code of check/install/uninstall)
    let side = |name: &str, url: &str, file: bool| {
        if file {
            format!(
                "[{name}]\nurl = {}\npassword_file = {pw_file_toml}\n\n",
                toml_string(url)
            )
        } else {
            format!("[{name}]\nurl = {}\n\n", toml_string(url))
        }
    };
    let cases: Vec<(&str, String, [i32; 3])> = vec![
        (
            "password in the URL, success",
            side("left", &pair.left.url_for(&role, PASSWORD), false)
                + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [0, 0, 0],
        ),
        (
            "password_file, success",
            side("left", &bare_url(&pair.left, &role), true)
                + &side("right", &bare_url(&pair.right, &role), true),
            [0, 0, 0],
        ),
        (
            "password in the URL, wrong for this user",
            side("left", &pair.left.url_for("postgres", PASSWORD), false)
                + &side("right", &pair.right.url_for("postgres", PASSWORD), false),
            [3, 3, 3],
        ),
        (
            "password_file, wrong for this user",
            side("left", &bare_url(&pair.left, "postgres"), true)
                + &side("right", &bare_url(&pair.right, "postgres"), true),
            [3, 3, 3],
        ),
        (
            "password in the URL, closed port",
            side(
                "left",
                &format!("postgres://{role}:{encoded}@127.0.0.1:{closed_port}/db?sslmode=prefer"),
                false,
            ) + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [3, 3, 3],
        ),
        (
            "password_file, closed port",
            side(
                "left",
                &format!("postgres://{role}@127.0.0.1:{closed_port}/db"),
                true,
            ) + &side("right", &bare_url(&pair.right, &role), true),
            [3, 3, 3],
        ),
        (
            "unknown key on the same line as the URL",
            format!(
                "left = {{ url = {}, urll = 1 }}\n\n",
                toml_string(&pair.left.url_for(&role, PASSWORD))
            ) + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [2, 2, 2],
        ),
        (
            "invalid port in a URL with a password",
            side(
                "left",
                &format!("postgres://{role}:{encoded}@127.0.0.1:99999/db"),
                false,
            ) + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [2, 2, 2],
        ),
        (
            "TOML syntax error on the URL line",
            format!(
                "[left]\nurl = {} trailing\n\n",
                toml_string(&pair.left.url_for(&role, PASSWORD))
            ) + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [2, 2, 2],
        ),
        (
            "bad sslmode in the URL",
            side(
                "left",
                &format!("postgres://{role}:{encoded}@127.0.0.1:1/db?sslmode=verify_full"),
                false,
            ) + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [2, 2, 2],
        ),
        (
            "missing variable on the URL line",
            side(
                "left",
                &format!("postgres://{role}:{encoded}@${{PGDX_E2E_NO_SUCH_HOST}}:1/db"),
                false,
            ) + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [2, 2, 2],
        ),
        (
            "password both in the URL and in password_file",
            side("left", &pair.left.url_for(&role, PASSWORD), true)
                + &side("right", &pair.right.url_for(&role, PASSWORD), false),
            [2, 2, 2],
        ),
    ];

    let log_variants: [&[&str]; 4] = [
        &[],
        &["-vv"],
        &["-vv", "--log-format", "json"],
        &["--log-format", "json"],
    ];
    let mut traced = false;
    for (what, text, [check_code, install_code, uninstall_code]) in &cases {
        let config = ConfigFile::new(text);
        let mut runs: Vec<(String, i32, Run)> = Vec::new();
        for logs in log_variants {
            for (command, code) in [("check", *check_code), ("install", *install_code)] {
                let mut args: Vec<&str> = logs.to_vec();
                args.push(command);
                let run = run_binary_async(Some(config.path.clone()), &args, &[], &[], None).await;
                runs.push((args.join(" "), code, run));
            }
            let mut args: Vec<&str> = logs.to_vec();
            args.extend(["check", "--format", "json"]);
            let run = run_binary_async(Some(config.path.clone()), &args, &[], &[], None).await;
            runs.push((args.join(" "), *check_code, run));
            let mut args: Vec<&str> = logs.to_vec();
            args.push("uninstall");
            let run = run_binary_async(Some(config.path.clone()), &args, &[], &[], None).await;
            runs.push((args.join(" "), *uninstall_code, run));
        }
        // Everything at trace level, the driver's and the TLS library's too.
        let run = run_binary_async(
            Some(config.path.clone()),
            &["check"],
            &[("RUST_LOG", "trace")],
            &[],
            None,
        )
        .await;
        runs.push(("RUST_LOG=trace check".into(), *check_code, run));

        for (args, code, run) in &runs {
            assert_eq!(
                run.code,
                *code,
                "{what}: `pgduplex {args}` exited {} (wanted {code})\n{}",
                run.code,
                run.all()
            );
            let out = run.all();
            assert!(
                !out.contains(PASSWORD_PART),
                "{what}: `pgduplex {args}` printed the password:\n{out}"
            );
            traced |= out.contains("DEBUG") || out.contains("TRACE");
        }
    }
    assert!(
        traced,
        "no run printed debug or trace logs: -vv / RUST_LOG=trace had no effect, so the test proves less"
    );
}

#[tokio::test]
async fn config_path_from_environment_and_missing_file() {
    let pair = TestPair::new().await;
    let config = ConfigFile::for_pair(&pair, "");
    // An empty working directory: no ./pgduplex.toml to fall back on.
    let cwd = tempfile::tempdir().expect("temp dir");
    let cwd_path = Some(cwd.path().to_path_buf());
    let config_env = config.path.to_string_lossy().into_owned();

    // PGDUPLEX_CONFIG is used when --config is absent.
    let run = run_binary_async(
        None,
        &["check"],
        &[("PGDUPLEX_CONFIG", &config_env)],
        &[],
        cwd_path.clone(),
    )
    .await;
    run.assert_code(0);
    assert_contains(&run, pair.left.name());

    // Neither: ./pgduplex.toml, which is not there.
    let run = run_binary_async(None, &["check"], &[], &[], cwd_path.clone()).await;
    run.assert_code(2);
    assert_contains(&run, "configuration file pgduplex.toml not found");
    assert_contains(&run, "--config");
    assert_contains(&run, "PGDUPLEX_CONFIG");

    // PGDUPLEX_CONFIG naming a missing file.
    let missing = cwd.path().join("nowhere").join("pgduplex.toml");
    let missing_s = missing.to_string_lossy().into_owned();
    for command in ["check", "install", "uninstall"] {
        let run = run_binary_async(
            None,
            &[command],
            &[("PGDUPLEX_CONFIG", &missing_s)],
            &[],
            cwd_path.clone(),
        )
        .await;
        run.assert_code(2);
        assert_contains(
            &run,
            &format!(
                "configuration file {missing_s} not found; choose another with --config or the PGDUPLEX_CONFIG environment variable"
            ),
        );
    }

    // --config names a missing file.
    let run = run_binary_async(
        Some(missing.clone()),
        &["check"],
        &[],
        &[],
        cwd_path.clone(),
    )
    .await;
    run.assert_code(2);
    assert_contains(&run, &format!("configuration file {missing_s} not found"));

    // --config wins over PGDUPLEX_CONFIG.
    let run = run_binary_async(
        Some(config.path.clone()),
        &["check"],
        &[("PGDUPLEX_CONFIG", &missing_s)],
        &[],
        cwd_path,
    )
    .await;
    run.assert_code(0);
}
