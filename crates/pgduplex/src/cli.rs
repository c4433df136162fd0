//! Command line: the subcommands and their dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pgduplex_config::{Config, Side};
use pgduplex_engine::{check, setup, EngineError};

use crate::output::chain;
use crate::EXIT_PROBLEM;

#[derive(Parser, Debug)]
#[command(
    name = "pgduplex",
    version,
    about = "Trigger-based bidirectional PostgreSQL replication for moving a live database",
    long_about = None
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
    /// Check that both sides can be replicated and say what to fix (exit 0 ready, 1 not).
    Check(CheckArgs),
    /// Create schema pgduplex and the capture triggers on both sides (idempotent).
    Install,
    /// Remove everything pgduplex created on both sides; user data is never touched.
    Uninstall,
    /// Run pgduplex on two throw-away local PostgreSQL servers and show what it does.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
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

pub fn init_tracing(cli: &Cli) {
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

pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => run_check(&config, args.format).await,
        Command::Install => run_install(&config).await,
        Command::Uninstall => run_uninstall(&config).await,
        Command::Demo(_) => unreachable!("demo runs without a configuration"),
    }
}

async fn run_check(config: &Config, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let report = check::check(config).await?;
    match format {
        OutputFormat::Text => print!("{}", report.render_text()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.can_replicate() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}

async fn run_install(config: &Config) -> anyhow::Result<ExitCode> {
    match setup::install(config).await {
        Ok(done) => {
            for f in done
                .report
                .findings
                .iter()
                .filter(|f| f.severity != check::Severity::Info)
            {
                let side = f.side.map(|s| format!("{s}: ")).unwrap_or_default();
                eprintln!("{side}{}: {}", f.subject, f.problem);
            }
            for (side, o) in [(Side::Left, &done.left), (Side::Right, &done.right)] {
                println!(
                    "{side}: {}capture installed on {} table(s), {} already current{}",
                    if o.schema_created {
                        "schema pgduplex created; "
                    } else {
                        ""
                    },
                    o.installed.len(),
                    o.unchanged.len(),
                    if o.no_longer_selected.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; still captured but no longer selected: {} (run uninstall to remove all capture)",
                            o.no_longer_selected
                                .iter()
                                .map(|t| t.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::NotReady { blocking }) => {
            // Show why: the same report `check` prints.
            if let Ok(report) = check::check(config).await {
                eprint!("{}", report.render_text());
            }
            eprintln!("error: install refused: {blocking} problem(s) must be fixed first; nothing was changed");
            Ok(ExitCode::from(EXIT_PROBLEM))
        }
        Err(err) => {
            eprintln!("error: install failed: {}", chain(&err));
            eprintln!(
                "what was installed is consistent; fix the cause and run install again to finish"
            );
            Ok(ExitCode::from(EXIT_PROBLEM))
        }
    }
}

async fn run_uninstall(config: &Config) -> anyhow::Result<ExitCode> {
    let done = setup::uninstall(config).await?;
    let mut ok = true;
    for (side, r) in [(Side::Left, done.left), (Side::Right, done.right)] {
        match r {
            Ok(o) => println!(
                "{side}: {} trigger(s) dropped, {}",
                o.triggers_dropped,
                if o.schema_dropped {
                    "schema pgduplex dropped"
                } else {
                    "schema pgduplex was not there"
                }
            ),
            Err(err) => {
                ok = false;
                eprintln!("error: {side}: uninstall failed: {}", chain(&err));
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}
