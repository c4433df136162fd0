//! What the commands print about their outcome: each report as text or JSON on
//! standard output, and a refusal as the check report and one line on standard
//! error. The reports' text forms are the engine's (`render_text`); the JSON form
//! is their serde serialisation. Nothing here decides an exit code.

use pgduplex_config::Side;
use pgduplex_engine::check::{self, CheckReport};
use pgduplex_engine::copy::CopySummary;
use pgduplex_engine::replicate;
use pgduplex_engine::scan::sync::SyncReport;
use pgduplex_engine::scan::ScanReport;
use pgduplex_engine::setup::{PairInstall, PairUninstall};
use pgduplex_engine::status::Status;
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::output::chain;

/// `text` or the pretty-printed JSON of `report`, on standard output.
fn report<T: Serialize>(
    report: &T,
    text: impl FnOnce(&T) -> String,
    format: OutputFormat,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => print!("{}", text(report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
    }
    Ok(())
}

pub fn check(r: &CheckReport, format: OutputFormat) -> anyhow::Result<()> {
    report(r, CheckReport::render_text, format)
}

pub fn status(st: &Status, format: OutputFormat) -> anyhow::Result<()> {
    report(st, Status::render_text, format)
}

pub fn scan(r: &ScanReport, format: OutputFormat) -> anyhow::Result<()> {
    report(r, ScanReport::render_text, format)
}

pub fn sync(r: &SyncReport, format: OutputFormat) -> anyhow::Result<()> {
    report(r, SyncReport::render_text, format)
}

/// A command refused because `check` finds blocking problems: the check report
/// (when the pair could be analysed again to print it) and why nothing changed.
pub fn refused(check_report: &CheckReport, what: &str, blocking: usize) {
    eprint!("{}", check_report.render_text());
    eprintln!(
        "error: {what} refused: {blocking} problem(s) must be fixed first; nothing was changed"
    );
}

/// `install`: the warnings of its analysis on standard error, what it did per
/// side on standard output.
pub fn install(done: &PairInstall) {
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
}

/// `uninstall`: what it dropped on each side, or why it failed there.
pub fn uninstall(done: &PairUninstall) {
    for (side, r) in [(Side::Left, &done.left), (Side::Right, &done.right)] {
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
            Err(err) => eprintln!("error: {side}: uninstall failed: {}", chain(err)),
        }
    }
}

/// `onetimecopy`: the summary on standard output.
pub fn copy(summary: &CopySummary) {
    println!("{}", summary.render());
    if !summary.complete {
        println!("some replicated tables were not selected (--tables) and are not copied yet");
    }
}

/// `replicate`: what the daemon did, logged when it stops.
pub fn replicate_stopped(s: &replicate::Stats) {
    tracing::info!(
        batches = s.batches,
        rows_to_left = s.rows[0],
        rows_to_right = s.rows[1],
        conflicts = s.conflicts,
        "stopped"
    );
}
