//! Command line: the subcommands, their options, and the dispatch of each to
//! the engine; what it prints is in [`crate::render`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pgduplex_config::{Config, ConflictPolicy, CopyMode, FkStrategy, Side};
use pgduplex_engine::progress::ProgressStyle;
use pgduplex_engine::replicate::{self, Replicator};
use pgduplex_engine::{check, copy, scan, setup, EngineError};

use crate::output::chain;
use crate::{
    check_exit, copy_exit, engine_exit, refused_exit, render, scan_exit, shutdown, EXIT_FAILURE,
    EXIT_OK, EXIT_PROBLEM, EXIT_USAGE,
};

#[derive(Parser, Debug)]
#[command(
    name = "pgduplex",
    version,
    about = "Trigger-based bidirectional PostgreSQL replication for moving a live database",
    long_about = None,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Configuration file (default: $PGDUPLEX_CONFIG, else ./pgduplex.toml).
    #[arg(long, short = 'c', global = true, env = pgduplex_config::CONFIG_ENV_VAR)]
    pub config: Option<PathBuf>,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check that both sides can be replicated and say what to fix.
    #[command(after_help = CHECK_EXIT)]
    Check(CheckArgs),
    /// Create schema pgduplex and the capture triggers on both sides (idempotent).
    #[command(after_help = INSTALL_EXIT)]
    Install,
    /// Remove everything pgduplex created on both sides; user data is never touched.
    #[command(after_help = UNINSTALL_EXIT)]
    Uninstall,
    /// Replicate changes both ways until stopped (SIGTERM/SIGINT), or with
    /// --until-idle until neither side has pending changes.
    #[command(after_help = REPLICATE_EXIT)]
    Replicate(ReplicateArgs),
    /// Copy the rows of every replicated table from one side to the other (the
    /// initial copy): parallel, resumable, with progress. Installs the capture first.
    #[command(after_help = ONETIMECOPY_EXIT)]
    Onetimecopy(OnetimecopyArgs),
    /// Show what pgduplex is doing on each side: pending changes and the oldest's
    /// age, the daemon and its lease, conflicts, the initial copy.
    #[command(after_help = STATUS_EXIT)]
    Status(CheckArgs),
    /// Compare both sides exactly, table by table.
    #[command(after_help = SCAN_EXIT)]
    Scan(ScanArgs),
    /// Make the two sides equal by a policy: rows only on the losing side are
    /// deleted, rows only on the winning side inserted, differing rows overwritten.
    #[command(after_help = SYNC_EXIT)]
    Sync(SyncArgs),
    /// Run pgduplex on two throw-away local PostgreSQL servers and show what it does.
    #[command(after_help = DEMO_EXIT)]
    Demo(DemoArgs),
}

// Exit codes, as `--help` shows them (decided in main.rs; README "Exit codes").
const EXIT_CODES: &str = "\
Exit codes, the same for every command:
  0  done: the command did its job and found nothing wrong
  1  the command found a problem in the pair, or refused because of one (the
     message names it and what to do)
  2  usage or configuration error: nothing was touched on any database
  3  the command failed: a side could not be reached, a database error, an
     interruption; run it again once the cause is fixed
`pgduplex <command> --help` says what they mean for that command.";

const CHECK_EXIT: &str = "\
Exit codes:
  0  replication can go ahead
  1  it cannot: the report lists each problem and how to fix it
  2  usage or configuration error
  3  a side could not be reached or read (the report says which, and what to check)";

const INSTALL_EXIT: &str = "\
Exit codes:
  0  the capture is installed (or already current) on both sides
  1  refused: check finds blocking problems (printed; nothing was changed), or a
     table belongs to another sync, a table's key changed while changes are
     pending, or schema pgduplex was installed by a newer pgduplex
  2  usage or configuration error
  3  failed: a side could not be reached, a database error, a table still locked
     after [install] max_attempts; what was installed is consistent, run install
     again to finish";

const UNINSTALL_EXIT: &str = "\
Exit codes:
  0  removed from both sides
  1  refused on a side: objects of yours depend on pgduplex's (nothing was dropped
     there)
  2  usage or configuration error
  3  a side could not be reached, or a database error (the other side is cleaned
     all the same)";

const REPLICATE_EXIT: &str = "\
Exit codes:
  0  stopped by SIGTERM or SIGINT; with --until-idle, nothing is pending
  1  refused at start, replicating nothing: check finds blocking problems, the
     capture was installed for another apply role, foreign keys form a cycle that
     cannot be applied, the servers' clocks differ too much for latest_wins; or,
     with --until-idle, only paused tables (columns differ) still have changes
  2  usage or configuration error
  3  failed: a side could not be reached at start, or the daemon stopped on an
     error it cannot retry (errors a reconnect may cure are retried)
  130  a second stop signal: exited at once";

const ONETIMECOPY_EXIT: &str = "\
Exit codes:
  0  copied
  1  refused, copying nothing: check finds blocking problems, target tables hold
     rows (--mode if-empty), foreign keys form a cycle, --fk replica is not
     allowed, user triggers would fire, the capture was installed for another
     apply role
  2  usage or configuration error, or --tables matches no replicated table
  3  failed or interrupted: a side could not be reached, a database error; what
     was copied is recorded, run onetimecopy again to copy the rest";

const STATUS_EXIT: &str = "\
Exit codes:
  0  both sides were read
  2  usage or configuration error
  3  a side could not be read (the other side is shown all the same)
status reports and does not judge: it never exits 1.";

const SCAN_EXIT: &str = "\
Exit codes:
  0  both sides hold the same rows (keys still in flight are not differences)
  1  the sides differ
  2  usage or configuration error (--tables, --settle, no table to scan)
  3  the scan failed: a side could not be reached, a database error";

const SYNC_EXIT: &str = "\
Exit codes:
  0  done (with --dry-run: counted and listed)
  1  a table was left alone because its definitions differ between the sides; or
     refused, changing nothing: the daemon holds the pair, or the capture was
     installed for another apply role
  2  usage or configuration error (--tables, no winner named)
  3  failed: a side could not be reached, a database error; what sync committed
     stays, run it again";

const DEMO_EXIT: &str = "\
Exit codes:
  0  done
  2  this pgduplex was built without the demo (cargo feature `demo`)
  3  the demo failed (for example: PostgreSQL's server binaries are not installed)";

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// Exit (0) once neither side has pending changes: for one-shot jobs and scripts.
    #[arg(long)]
    pub until_idle: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum SideArg {
    Left,
    Right,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    /// Refuse, changing nothing, when a target table holds rows.
    IfEmpty,
    /// Empty the target tables first (never those a resumed copy already copied).
    Truncate,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum FkArg {
    /// replica where the target role may set session_replication_role, else order.
    Auto,
    /// Parents before children, tables linked by foreign keys from one snapshot.
    Order,
    /// session_replication_role = replica on the target (foreign keys not checked).
    Replica,
    /// Drop the foreign keys, copy, add them back NOT VALID, then VALIDATE.
    DropReadd,
}

#[derive(Args, Debug)]
pub struct OnetimecopyArgs {
    /// The side to copy from (default: [onetimecopy] from, else left).
    #[arg(long, value_enum)]
    pub from: Option<SideArg>,
    /// What to do with target tables that hold rows (default: [onetimecopy] mode, else if-empty).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Tables or key ranges copied at once (default: [onetimecopy] jobs, else 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// Only tables whose plain schema.table name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub tables: Option<String>,
    /// Drop the target's secondary indexes before copying, rebuild them after in parallel.
    #[arg(long)]
    pub defer_indexes: bool,
    /// How to get past the target's foreign keys (default: [onetimecopy] fk, else auto).
    #[arg(long, value_enum)]
    pub fk: Option<FkArg>,
    /// Split tables estimated above this many rows into key ranges of about this size
    /// (default: [onetimecopy] range_rows, else 10000000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub range_rows: Option<u64>,
    /// Seconds between progress log lines when standard error is not a terminal.
    #[arg(long, default_value_t = 10.0)]
    pub progress_interval: f64,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Only tables whose plain schema.table name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub tables: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// List the differing keys (up to 1000 per table) and, for rows on both sides,
    /// the differing columns.
    #[arg(long)]
    pub details: bool,
    /// Sessions per side reading a table's block ranges at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// While replication runs, how long (seconds) keys that differ are watched before
    /// those still changing are reported as in flight.
    #[arg(long, default_value_t = 60.0)]
    pub settle: f64,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum SyncPolicyArg {
    /// The right side is changed to match the left.
    LeftWins,
    /// The left side is changed to match the right.
    RightWins,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Which side's rows are kept (default: [replication] conflict when it is
    /// left_wins or right_wins).
    #[arg(long, value_enum)]
    pub policy: Option<SyncPolicyArg>,
    /// Only count and list what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only tables whose plain schema.table name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub tables: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the demo servers running at the end and print how to reach them.
    #[arg(long)]
    pub keep: bool,
}

impl Cli {
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(pgduplex_config::DEFAULT_CONFIG_PATH))
    }
}

pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => run_check(&config, args.format).await,
        Command::Install => run_install(&config).await,
        Command::Uninstall => run_uninstall(&config).await,
        Command::Replicate(args) => run_replicate(&config, &args).await,
        Command::Onetimecopy(args) => Box::pin(run_onetimecopy(&config, args)).await,
        Command::Status(args) => run_status(&config, args.format).await,
        Command::Scan(args) => run_scan(&config, &args).await,
        Command::Sync(args) => run_sync(&config, &args).await,
        Command::Demo(_) => unreachable!("demo runs without a configuration"),
    }
}

async fn run_status(config: &Config, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let st = pgduplex_engine::status::status(config).await?;
    render::status(&st, format)?;
    // status reports and does not judge: a side it could not read is a failure.
    Ok(ExitCode::from(
        if st.sides.iter().any(|s| s.error.is_some()) {
            EXIT_FAILURE
        } else {
            EXIT_OK
        },
    ))
}

fn table_filter(tables: Option<&str>) -> Result<Option<regex::Regex>, String> {
    tables
        .map(|t| {
            regex::Regex::new(t)
                .map_err(|e| format!("--tables: not a valid regular expression: {e}"))
        })
        .transpose()
}

async fn run_scan(config: &Config, args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let tables = match table_filter(args.tables.as_deref()) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if !(args.settle.is_finite() && args.settle >= 0.0) {
        eprintln!("error: --settle: must be a number of seconds, 0 or more");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let options = scan::ScanOptions {
        tables,
        jobs: args.jobs as usize,
        details: args.details,
        settle: std::time::Duration::from_secs_f64(args.settle),
        progress: ProgressStyle::detect(),
    };
    match scan::run(config, &options).await {
        Ok(report) => {
            render::scan(&report, args.format)?;
            Ok(if report.identical {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PROBLEM)
            })
        }
        Err(scan::ScanError::Usage(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(EXIT_USAGE))
        }
        Err(err) => {
            eprintln!("error: scan failed: {}", chain(&err));
            Ok(ExitCode::from(scan_exit(&err)))
        }
    }
}

async fn run_sync(config: &Config, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let tables = match table_filter(args.tables.as_deref()) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let winner = match (args.policy, config.replication.conflict) {
        (Some(SyncPolicyArg::LeftWins), _) | (None, ConflictPolicy::LeftWins) => Side::Left,
        (Some(SyncPolicyArg::RightWins), _) | (None, ConflictPolicy::RightWins) => Side::Right,
        (None, other) => {
            eprintln!(
                "error: sync needs a winner: give --policy left_wins or --policy right_wins \
                 ([replication] conflict is {other:?}, which names none); nothing was changed"
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let options = scan::sync::SyncOptions {
        winner,
        dry_run: args.dry_run,
        tables,
        progress: ProgressStyle::detect(),
    };
    match scan::sync::run(config, &options).await {
        Ok(report) => {
            render::sync(&report, args.format)?;
            // A table left alone (definitions differ) is not equal yet.
            Ok(if report.tables.iter().any(|t| t.skipped.is_some()) {
                ExitCode::from(EXIT_PROBLEM)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(scan::ScanError::Usage(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(EXIT_USAGE))
        }
        Err(err @ scan::ScanError::Refused(_)) => {
            eprintln!("error: sync refused: {err}");
            Ok(ExitCode::from(scan_exit(&err)))
        }
        Err(err) => {
            eprintln!("error: sync failed: {}", chain(&err));
            eprintln!("what sync committed stays (each batch is one transaction); run scan to see what differs, and sync again");
            Ok(ExitCode::from(scan_exit(&err)))
        }
    }
}

async fn run_check(config: &Config, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let report = check::check(config).await?;
    render::check(&report, format)?;
    Ok(ExitCode::from(check_exit(&report)))
}

async fn run_install(config: &Config) -> anyhow::Result<ExitCode> {
    let pair = check::analyse(config).await?;
    match setup::install(config, pair).await {
        Ok((done, _)) => {
            render::install(&done);
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::NotReady { blocking, report }) => {
            // Show why: the same report `check` prints.
            Ok(refused(&report, "install", blocking))
        }
        Err(err) => {
            eprintln!("error: install failed: {}", chain(&err));
            eprintln!(
                "what was installed is consistent; fix the cause and run install again to finish"
            );
            Ok(ExitCode::from(engine_exit(&err)))
        }
    }
}

async fn run_uninstall(config: &Config) -> anyhow::Result<ExitCode> {
    let done = setup::uninstall(config).await?;
    render::uninstall(&done);
    // A side that failed outweighs one that refused.
    let code = |r: &Result<_, EngineError>| r.as_ref().err().map_or(EXIT_OK, engine_exit);
    Ok(ExitCode::from(code(&done.left).max(code(&done.right))))
}

/// A command refused because `check` finds blocking problems: prints the check
/// report the refusal carries and says so.
fn refused(report: &check::CheckReport, what: &str, blocking: usize) -> ExitCode {
    render::refused(report, what, blocking);
    ExitCode::from(refused_exit(report))
}

/// The copy's options: `[onetimecopy]`, overridden by the command line.
pub fn copy_options(config: &Config, args: &OnetimecopyArgs) -> Result<copy::CopyOptions, String> {
    let mut o = copy::CopyOptions::from_config(config);
    if let Some(from) = args.from {
        o.from = match from {
            SideArg::Left => Side::Left,
            SideArg::Right => Side::Right,
        };
    }
    match args.mode {
        Some(ModeArg::IfEmpty) => o.mode = CopyMode::IfEmpty,
        Some(ModeArg::Truncate) => o.mode = CopyMode::Truncate,
        // `never` is for the daemon's start; run by hand, the copy copies.
        None if o.mode == CopyMode::Never => o.mode = CopyMode::IfEmpty,
        None => {}
    }
    if let Some(j) = args.jobs {
        o.jobs = j as usize;
    }
    if let Some(t) = &args.tables {
        o.tables = Some(
            regex::Regex::new(t)
                .map_err(|e| format!("--tables: not a valid regular expression: {e}"))?,
        );
    }
    if args.defer_indexes {
        o.defer_indexes = true;
    }
    if let Some(fk) = args.fk {
        o.fk = match fk {
            FkArg::Auto => FkStrategy::Auto,
            FkArg::Order => FkStrategy::Order,
            FkArg::Replica => FkStrategy::Replica,
            FkArg::DropReadd => FkStrategy::DropReadd,
        };
    }
    if let Some(r) = args.range_rows {
        o.range_rows = r;
    }
    if !(args.progress_interval.is_finite() && args.progress_interval > 0.0) {
        return Err("--progress-interval: must be a positive number of seconds".into());
    }
    if o.progress != ProgressStyle::Terminal {
        o.progress = ProgressStyle::Log(std::time::Duration::from_secs_f64(args.progress_interval));
    }
    Ok(o)
}

async fn run_onetimecopy(config: &Config, args: OnetimecopyArgs) -> anyhow::Result<ExitCode> {
    let options = match copy_options(config, &args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let pair = check::analyse(config).await?;
    match Box::pin(copy::run(config, pair, &options)).await {
        Ok(summary) => {
            render::copy(&summary);
            Ok(ExitCode::SUCCESS)
        }
        Err(copy::CopyError::Engine(EngineError::NotReady { blocking, report })) => {
            Ok(refused(&report, "onetimecopy", blocking))
        }
        Err(err) => {
            eprintln!("error: onetimecopy: {}", chain(&err));
            if matches!(
                err,
                copy::CopyError::Unit { .. }
                    | copy::CopyError::Db { .. }
                    | copy::CopyError::Task(_)
            ) {
                eprintln!("what was copied is recorded on the target; run onetimecopy again to copy the rest");
            }
            Ok(ExitCode::from(copy_exit(&err)))
        }
    }
}

async fn run_replicate(config: &Config, args: &ReplicateArgs) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_stop_signals()?;
    let pair = check::analyse(config).await?;
    let mut daemon = match Replicator::prepare(config, pair).await {
        Ok(d) => d,
        Err(replicate::ReplError::Engine(EngineError::NotReady { blocking, report })) => {
            return Ok(refused(&report, "replication", blocking));
        }
        Err(err) => {
            eprintln!("error: {}", chain(&err));
            return Ok(ExitCode::from(match &err {
                replicate::ReplError::Engine(e) => engine_exit(e),
                // Before it replicates, the daemon stops fatally only on what it
                // finds in the pair (the capture installed for another apply role,
                // foreign keys in a cycle it cannot apply, clocks too far apart for
                // latest_wins); an unreachable side is a refusal above.
                replicate::ReplError::Fatal(_) => EXIT_PROBLEM,
                _ => EXIT_FAILURE,
            }));
        }
    };
    let options = replicate::Options {
        until_idle: args.until_idle,
    };
    match daemon.run(options, shutdown).await {
        Ok(()) => {
            render::replicate_stopped(&daemon.stats);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {}", chain(&err));
            // --until-idle stops (fatally) when only paused tables, whose columns
            // differ between the sides, still have changes: a problem in the pair.
            let paused = args.until_idle
                && matches!(err, replicate::ReplError::Fatal(_))
                && !daemon.paused().is_empty();
            Ok(ExitCode::from(if paused {
                EXIT_PROBLEM
            } else {
                EXIT_FAILURE
            }))
        }
    }
}
