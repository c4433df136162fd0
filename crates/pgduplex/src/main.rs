//! The `pgduplex` binary: parses the command line, loads the configuration and
//! starts logging synchronously, then builds the runtime and hands over to the
//! library crates. Every exit code is decided here, the same for every command:
//! 0 done, 1 the command found a problem in the pair (or refused because of one),
//! 2 usage or configuration error (nothing was touched on any database), 3 the
//! command failed (a side could not be reached, a database error, an
//! interruption). README's "Exit codes" and each command's `--help` say what
//! they mean per command. (A second stop signal exits at once with 130:
//! shutdown.rs.)

mod cli;
#[cfg(feature = "demo")]
mod demo;
mod output;
mod render;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;
use pgduplex_engine::check::CheckReport;
use pgduplex_engine::copy::CopyError;
use pgduplex_engine::scan::ScanError;
use pgduplex_engine::EngineError;
use pgduplex_pg::PgError;

use crate::cli::{Cli, Command, LogFormat};

/// Done: the command did its job and found nothing wrong.
pub const EXIT_OK: u8 = 0;
/// The command ran and found a problem in the pair, or refused because of one
/// (the message names it and what to do): check not ready, scan differences, an
/// install refused, a table sync left alone.
pub const EXIT_PROBLEM: u8 = 1;
/// Usage or configuration error: nothing was touched on any database.
pub const EXIT_USAGE: u8 = 2;
/// The command failed: a side could not be reached, a database error, an
/// interrupted copy, the daemon stopping on an error. Run it again once the cause
/// is fixed.
pub const EXIT_FAILURE: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(&cli);
    match try_main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", output::chain(err.as_ref()));
            ExitCode::from(err.downcast_ref().map_or(EXIT_FAILURE, engine_exit))
        }
    }
}

/// Logs go to standard error, as text or JSON, at the level `-v` and RUST_LOG ask for.
fn init_tracing(cli: &Cli) {
    // Server NOTICEs ("trigger ... does not exist, skipping") are noise for users.
    let default = match cli.verbose {
        // The demo narrates on stdout; its log would only interleave.
        0 if matches!(cli.command, Command::Demo(_)) => "warn",
        0 => "info,tokio_postgres=warn",
        1 => "debug,tokio_postgres=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Built without the cargo feature `demo` (which links the test kit): `pgduplex
/// demo` only says so.
#[cfg(not(feature = "demo"))]
mod demo {
    use std::process::ExitCode;

    pub fn run(_: &crate::cli::DemoArgs) -> anyhow::Result<ExitCode> {
        eprintln!(
            "error: this pgduplex was built without the demo (cargo feature `demo`, on by default); \
             run it from a default build: cargo run --release -- demo"
        );
        Ok(ExitCode::from(crate::EXIT_USAGE))
    }
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Demo(args) = &cli.command {
        return demo::run(args);
    }
    let path = cli.config_path();
    let config = match pgduplex_config::Config::load(&path) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    output::install_panic_hook(config.secrets());
    // The daemon waits on the network nearly all the time: on one thread its
    // queries and their connections' tasks hand work to each other without
    // waking another thread (on a multi-threaded runtime, most of its CPU went to
    // those wake-ups). The copy, scan and sync move or merge data from several
    // sessions at once and keep the worker threads.
    let runtime = match cli.command {
        Command::Replicate(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    runtime.block_on(cli::run(cli.command, config))
}

/// What `check` found: ready, not ready, or a side it could not reach or read
/// (the report lists that side's connection problem, but says nothing about the
/// pair).
pub fn check_exit(report: &CheckReport) -> u8 {
    if !report.sides.iter().all(|s| s.connected) {
        EXIT_FAILURE
    } else if report.can_replicate() {
        EXIT_OK
    } else {
        EXIT_PROBLEM
    }
}

/// A command refused because `check` finds blocking problems: a problem in the
/// pair, unless a side could not be reached (then it failed).
pub fn refused_exit(report: &CheckReport) -> u8 {
    match check_exit(report) {
        EXIT_OK | EXIT_PROBLEM => EXIT_PROBLEM,
        _ => EXIT_FAILURE,
    }
}

/// An engine error that ended a command.
pub fn engine_exit(err: &EngineError) -> u8 {
    match err {
        EngineError::Side { source, .. } => pg_exit(source),
        // The callers print the check report and use `refused_exit`.
        EngineError::NotReady { .. } => EXIT_PROBLEM,
    }
}

/// A side's error.
pub fn pg_exit(err: &PgError) -> u8 {
    match err {
        // Read from the TLS settings and files before any connection.
        PgError::Tls { .. } => EXIT_USAGE,
        // The pair's state refuses the command; the message says what to fix.
        PgError::OtherSync { .. }
        | PgError::KeyChangedWithPending { .. }
        | PgError::NewerSchema { .. }
        | PgError::ExternalDependents { .. } => EXIT_PROBLEM,
        PgError::Connect { .. }
        | PgError::Query { .. }
        | PgError::Ddl { .. }
        | PgError::LockTimeout { .. } => EXIT_FAILURE,
    }
}

/// `onetimecopy`'s error.
pub fn copy_exit(err: &CopyError) -> u8 {
    match err {
        CopyError::Engine(e) => engine_exit(e),
        CopyError::Pg { source, .. } => pg_exit(source),
        // Refused up front; nothing was copied.
        CopyError::NotEmpty { .. }
        | CopyError::FkCycle { .. }
        | CopyError::ReplicaRoleNotAllowed { .. }
        | CopyError::ApplyRole { .. }
        | CopyError::Triggers { .. } => EXIT_PROBLEM,
        // --tables matches no replicated table.
        CopyError::NoTables => EXIT_USAGE,
        CopyError::Db { .. }
        | CopyError::Unit { .. }
        | CopyError::Restore { .. }
        | CopyError::Task(_) => EXIT_FAILURE,
    }
}

/// `scan`'s and `sync`'s error.
pub fn scan_exit(err: &ScanError) -> u8 {
    match err {
        ScanError::Usage(_) => EXIT_USAGE,
        // sync: the daemon holds the pair, or the capture was installed for
        // another apply role; nothing was changed.
        ScanError::Refused(_) => EXIT_PROBLEM,
        ScanError::Engine(e) => engine_exit(e),
        ScanError::Pg { source, .. } => pg_exit(source),
        ScanError::Db { .. } => EXIT_FAILURE,
    }
}
