//! `pgduplex scan`: proves that the two sides hold the same rows, exactly, and
//! lists what differs (DESIGN.md, "Scan").
//!
//! Per table, in three levels:
//! 1. Each side sums its rows into hash buckets of the key (count and a sum of row
//!    hashes per bucket, see [`sql`]), block range by block range in parallel
//!    sessions that share one snapshot per side; memory is one small array per
//!    table whatever its size.
//! 2. The buckets whose sums differ are listed row by row (key, row hash) on both
//!    sides, ordered the same way, and merged in one pass.
//! 3. Keys that differ are looked at again while replication has time to carry
//!    them (live scans): a key that becomes equal is no difference; a key that
//!    still moves, or has pending deltas, is reported "in flight", never as a
//!    difference.
//!
//! Tables without a usable key (or with different keys on the two sides) are
//! compared as multisets of rows: the same buckets over whole rows, and level 2
//! counts each distinct row on each side.
//!
//! The files: `targets.rs` decides what is compared on each side, `levels.rs` runs
//! the three levels, `sql.rs` writes their SQL, `report.rs` holds the results and
//! renders them; `sync.rs` makes one side equal to the other from the same levels;
//! the engine's `progress.rs` shows how far a scan is.

pub mod sql;
pub mod sync;

mod levels;
mod report;
mod targets;

use std::time::{Duration, Instant};

use pgduplex_config::{Config, Side};
use pgduplex_pg::PgError;

use crate::progress::{ProgressStyle, ScanProgress};
use crate::EngineError;
use levels::scan_table;
use targets::{connect, targets};

pub use levels::{DETAIL_LIMIT, KEEP_LIMIT};
pub use report::{Detail, DiffKind, ScanReport, TableResult};

/// Errors of `scan` and `sync`.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{side}: {context} failed")]
    Db {
        side: Side,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{side}")]
    Pg {
        side: Side,
        #[source]
        source: PgError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
}

/// Turns a driver error on `side` into [`ScanError::Db`], saying what was being done.
fn db(side: Side, context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ScanError {
    let context = context.into();
    move |source| ScanError::Db {
        side,
        context,
        source,
    }
}

/// What `scan` does.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Only tables whose `schema.table` matches.
    pub tables: Option<regex::Regex>,
    /// Sessions per side for level 1.
    pub jobs: usize,
    /// Keep up to [`DETAIL_LIMIT`] differing keys per table, with the differing columns.
    pub details: bool,
    /// How long differing keys are watched while replication runs.
    pub settle: Duration,
    pub progress: ProgressStyle,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            tables: None,
            jobs: 2,
            details: false,
            settle: Duration::from_secs(60),
            progress: ProgressStyle::Quiet,
        }
    }
}

/// `pgduplex scan`.
pub async fn run(config: &Config, options: &ScanOptions) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let sessions = connect(config, options.jobs).await?;
    let targets = targets(config, &sessions, options.tables.as_ref()).await?;
    if targets.is_empty() {
        return Err(ScanError::Usage(
            "no table to scan: none is selected by [tables] (and --tables)".into(),
        ));
    }
    let progress = ScanProgress::new(targets.len(), options.progress);
    let reporter = progress.spawn();
    let mut results = Vec::new();
    for target in &targets {
        let r = scan_table(&sessions, target, options, &progress).await;
        progress.table_done();
        results.push(r?);
    }
    reporter.abort();
    progress.clear();
    Ok(ScanReport::new(results, started.elapsed().as_secs_f64()))
}
