//! The `pgduplex` binary: parses the command line, loads the configuration and
//! starts logging synchronously, then builds the runtime and hands over to the
//! library crates. Exit codes: 0 success, 1 the command ran and found a problem
//! (check failed, a side could not be reached, an install was refused; scan found
//! differences), 2 usage or configuration error (nothing was touched on any
//! database), 3 scan or sync could not finish.

mod cli;
#[cfg(feature = "demo")]
mod demo;
mod output;
mod render;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat};

/// The command ran and found a problem.
pub const EXIT_PROBLEM: u8 = 1;
/// Usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// `scan` and `sync`: the command could not finish (a side failed).
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
            ExitCode::from(EXIT_PROBLEM)
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
