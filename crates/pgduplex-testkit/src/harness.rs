//! The harness of the end-to-end tests: one handle on a pgduplex process running in
//! the background ([`Daemon`]), one way to wait for a condition ([`wait_for`]) and one
//! convergence check ([`assert_converged`]).
//!
//! Everything here observes pgduplex from the outside: the process through its exit
//! status and its log, the databases with queries of the harness's own (the rows
//! through [`compare_databases`]; pgduplex's delta tables, TRUNCATE log, ledger and
//! conflict log by the names the installed schema gives them), never through
//! pgduplex's code. The kit cannot know where cargo built the binary
//! (`CARGO_BIN_EXE_pgduplex` exists only in the binary crate's tests), so
//! [`Daemon::command`] takes its path. [`sessions`] and [`last_conflicts`] are for
//! failure messages.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::compare::compare_databases;
use crate::db::{TestDb, TestPair};

/// How often [`wait_for`] looks at its condition: it bounds the reaction time only.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Log lines shown in a failure message (the end of the log).
const LOG_TAIL_LINES: usize = 200;

/// Waits until `condition` holds, looking at it every [`POLL_INTERVAL`]; panics with
/// `what` and the time waited once `timeout` has passed. The one way a test waits:
/// on a condition it can observe, never for a guessed time.
///
/// `what` is formatted only on timeout, so it may read what it shows then (see
/// [`Daemon`]'s waits, which show the log as it is at that moment).
pub async fn wait_for<F, Fut>(timeout: Duration, what: impl fmt::Display, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return;
        }
        let waited = started.elapsed();
        if waited >= timeout {
            panic!("timed out after {waited:.1?} (limit {timeout:?}) waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------
// The daemon handle
// ---------------------------------------------------------------------------

/// A pgduplex process in the background (`replicate`, or any command a test needs to
/// watch, stop or kill while it runs), its log (stderr) written to a file. Dropping the
/// handle kills the process if it still runs.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log: PathBuf,
    /// The log's directory when the handle chose it (removed with the handle).
    _dir: Option<tempfile::TempDir>,
}

/// How to start a [`Daemon`]: made by [`Daemon::command`], started by
/// [`DaemonCommand::start`].
#[derive(Debug)]
pub struct DaemonCommand {
    command: Command,
    log: Option<PathBuf>,
}

impl DaemonCommand {
    /// Also these arguments, after those given to [`Daemon::command`].
    pub fn args(mut self, args: &[&str]) -> Self {
        self.command.args(args);
        self
    }

    /// An environment variable for the process (a fail point, ...).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// The log filter (`RUST_LOG`); `info` unless set.
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.command.env("RUST_LOG", filter);
        self
    }

    /// Writes the log to `path` (created or truncated) instead of a temporary
    /// directory of the handle's, e.g. to keep the logs of several processes together.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// Starts the process. Panics if it cannot be started: this is test setup.
    pub fn start(mut self) -> Daemon {
        let (log, dir) = match self.log {
            Some(path) => (path, None),
            None => {
                let dir = tempfile::tempdir().expect("a temp dir for the daemon's log");
                (dir.path().join("pgduplex.log"), Some(dir))
            }
        };
        let file = File::create(&log)
            .unwrap_or_else(|e| panic!("creating the daemon log {}: {e}", log.display()));
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", self.command));
        Daemon {
            child,
            log,
            _dir: dir,
        }
    }
}

impl Daemon {
    /// `bin --config <config> <args>`, with the log at `info`, stdin and stdout to
    /// /dev/null and `PGDUPLEX_CONFIG` removed from the environment (so that only
    /// `config` counts).
    pub fn command(bin: impl AsRef<OsStr>, config: &Path, args: &[&str]) -> DaemonCommand {
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("PGDUPLEX_CONFIG")
            .env("RUST_LOG", "info");
        DaemonCommand { command, log: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the log holds `needle` at least `times` times. Panics, with the log,
    /// if the process exits first or on timeout.
    pub async fn wait_log(&mut self, needle: &str, times: usize, timeout: Duration) {
        let what = format!("the daemon to log {needle:?} {times} time(s)");
        let log = &self.log;
        let child = &mut self.child;
        wait_for(timeout, WithLog { what: &what, log }, || {
            let seen = read_log(log).matches(needle).count() >= times;
            if !seen {
                if let Some(status) = child.try_wait().expect("try_wait on the daemon") {
                    panic!(
                        "the daemon exited ({status}) while waiting for {what}\n{}",
                        LogTail(log)
                    );
                }
            }
            async move { seen }
        })
        .await;
    }

    /// Waits for the process to exit by itself and returns its status. Panics, with
    /// the log, on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let log = &self.log;
        let child = &mut self.child;
        let mut status = None;
        wait_for(
            timeout,
            WithLog {
                what: "the daemon to exit",
                log,
            },
            || {
                if status.is_none() {
                    status = child.try_wait().expect("try_wait on the daemon");
                }
                let exited = status.is_some();
                async move { exited }
            },
        )
        .await;
        status.expect("the daemon exited")
    }

    /// SIGTERM, then waits for the exit (see [`Daemon::wait_exit`]).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit(timeout).await
    }

    /// kill -9 (if it still runs), and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.child.try_wait().expect("try_wait on the daemon") {
            return status;
        }
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_log(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The end of a log, read when formatted.
struct LogTail<'a>(&'a Path);

impl fmt::Display for LogTail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = read_log(self.0);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        writeln!(
            f,
            "--- log {} ({} lines{})",
            self.0.display(),
            lines.len(),
            if from > 0 { ", the last shown" } else { "" }
        )?;
        for line in &lines[from..] {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A [`wait_for`] description followed by the log as it is on timeout.
struct WithLog<'a> {
    what: &'a str,
    log: &'a Path,
}

impl fmt::Display for WithLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.what, LogTail(self.log))
    }
}

// ---------------------------------------------------------------------------
// The state of the pair
// ---------------------------------------------------------------------------

/// A superuser connection to each side.
pub async fn clients(pair: &TestPair) -> (Client, Client) {
    (
        pair.left.client().await.expect("connect to the left"),
        pair.right.client().await.expect("connect to the right"),
    )
}

/// The changes pending on one side: the rows of every delta table plus the rows of
/// the TRUNCATE log.
pub async fn pending(c: &Client) -> i64 {
    let tables: Vec<i32> = c
        .query("SELECT id FROM pgduplex.replicated_table", &[])
        .await
        .expect("read pgduplex.replicated_table")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut n: i64 = c
        .query_one("SELECT count(*) FROM pgduplex.truncate_log", &[])
        .await
        .expect("count pgduplex.truncate_log")
        .get(0);
    for id in tables {
        n += c
            .query_one(&format!("SELECT count(*) FROM pgduplex.delta_{id}"), &[])
            .await
            .expect("count a delta table")
            .get::<_, i64>(0);
    }
    n
}

/// The rows of the ledger (`pgduplex.applied`) on one side: the other side's deltas
/// an apply recorded and whose delete on their side is not confirmed yet.
pub async fn ledger_rows(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM pgduplex.applied", &[])
        .await
        .expect("count pgduplex.applied")
        .get(0)
}

/// Both sides hold the same rows in every user table (compared exactly, see
/// [`compare_databases`]), and [`assert_drained`]: nothing is pending on either side
/// and both ledgers are empty. All of it is checked before failing, and the failure
/// lists every part that does not hold (with the last conflicts logged on each side
/// when the rows differ).
pub async fn assert_converged(pair: &TestPair) {
    let (l, r) = clients(pair).await;
    let comparison = compare_databases(&l, &r)
        .await
        .expect("compare the two databases");
    let mut problems = Vec::new();
    if !comparison.is_identical() {
        problems.push(comparison.summary());
    }
    problems.extend(drain_problems(&l, &r).await);
    if !comparison.is_identical() {
        for (side, c) in [("left", &l), ("right", &r)] {
            problems.push(format!(
                "the last conflicts logged on the {side}:\n{}",
                last_conflicts(c).await
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the sides have not converged:\n{}",
        problems.join("\n")
    );
}

/// Nothing is pending on either side and both ledgers are empty, whatever the rows:
/// the check for a policy that leaves the sides different on purpose (`ignore`).
/// [`assert_converged`] includes it.
pub async fn assert_drained(pair: &TestPair) {
    let (l, r) = clients(pair).await;
    let problems = drain_problems(&l, &r).await;
    assert!(
        problems.is_empty(),
        "the sides are not drained:\n{}",
        problems.join("\n")
    );
}

async fn drain_problems(l: &Client, r: &Client) -> Vec<String> {
    let mut problems = Vec::new();
    for (side, c) in [("left", l), ("right", r)] {
        let n = pending(c).await;
        if n != 0 {
            problems.push(format!("{side}: {n} change(s) pending"));
        }
        let n = ledger_rows(c).await;
        if n != 0 {
            problems.push(format!(
                "{side}: {n} row(s) left in the ledger (pgduplex.applied)"
            ));
        }
    }
    problems
}

/// The last 40 rows of `pgduplex.conflicts` on one side, one a line, for failure
/// messages (the query's error instead, if it fails).
pub async fn last_conflicts(c: &Client) -> String {
    c.query(
        "SELECT line FROM (SELECT id, table_name || ' ' || coalesce(key::text, '-') || ' ' || kind \
                || ' winner=' || winner || ' L=' || left(coalesce(left_row::text, '-'), 80) \
                || ' R=' || left(coalesce(right_row::text, '-'), 80) \
                || ' Lat=' || coalesce(left_changed_at::text, '-') \
                || ' Rat=' || coalesce(right_changed_at::text, '-') AS line \
           FROM pgduplex.conflicts ORDER BY id DESC LIMIT 40) x ORDER BY id",
        &[],
    )
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| format!("  {}", r.get::<_, String>(0)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_else(|e| format!("  (query failed: {e})"))
}

/// The other sessions of `db`'s database, one a line: what each runs, waits for and is
/// blocked by, for failure messages. Read through `psql` over the unix socket, so it
/// blocks, needs no async context (a [`wait_for`] description may call it when
/// formatted) and works while TCP connections fail; a failure is returned as the text.
pub fn sessions(db: &TestDb) -> String {
    let sql = "SELECT a.pid::text || ' [' || coalesce(a.application_name, '') || '] ' \
                      || coalesce(a.state, '') \
                      || ' wait=' || coalesce(a.wait_event_type || ':' || a.wait_event, '-') \
                      || ' blocked_by=' || pg_catalog.pg_blocking_pids(a.pid)::text \
                      || ' xact_age=' || coalesce((now() - a.xact_start)::text, '-') \
                      || ' q=' || replace(left(coalesce(a.query, ''), 300), E'\\n', ' ') \
                 FROM pg_catalog.pg_stat_activity a \
                WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
                ORDER BY a.pid";
    match db.server().run_sql(db.name(), sql) {
        Ok(out) => out
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("  (sessions not read: {e:#})"),
    }
}
