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

pub mod sql;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::{pin_mut, StreamExt};
use pgduplex_config::{Config, Side};
use pgduplex_pg::catalog::{Catalog, Table};
use pgduplex_pg::{PgError, TableName};
use serde::Serialize;
use tokio_postgres::Client;

use crate::pair::{open_both, SideState};
use crate::progress::{ProgressStyle, ScanProgress};
use crate::replicate::{lock_key, LOCK_CLASS, SESSION_SETTINGS};
use crate::EngineError;
use sql::{Chunk, ScanColumn, Shape};

/// Blocks per level-1 range (64 MiB of 8 kB pages).
const CHUNK_BLOCKS: i64 = 8192;
/// Differing keys kept per table for the live re-check and the details; beyond
/// this, differences are counted without being looked at again.
pub const KEEP_LIMIT: usize = 100_000;
/// Keys per re-check query.
const LOOKUP_BATCH: usize = 1000;
/// Differing keys listed per table with `--details`.
pub const DETAIL_LIMIT: usize = 1000;

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
    #[error("{side}: {source}")]
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

pub(crate) fn db(
    side: Side,
    context: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> ScanError {
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

/// How a differing key or row differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    OnlyLeft,
    OnlyRight,
    Different,
    InFlight,
}

impl DiffKind {
    fn of(left: Option<i64>, right: Option<i64>) -> Option<DiffKind> {
        match (left, right) {
            (Some(l), Some(r)) if l == r => None,
            (Some(_), Some(_)) => Some(DiffKind::Different),
            (Some(_), None) => Some(DiffKind::OnlyLeft),
            (None, Some(_)) => Some(DiffKind::OnlyRight),
            (None, None) => None,
        }
    }
}

/// One differing key (keyed tables) or distinct row (keyless tables).
#[derive(Clone, Debug)]
pub struct Diff {
    pub kind: DiffKind,
    /// The key's (or keyless row's) canonical text, `(1,abc)`.
    pub key_text: String,
    /// Each key column's text (keyed tables).
    pub key: Vec<String>,
    /// Row hashes (keyed tables); for keyless tables the copies on each side.
    pub left: Option<i64>,
    pub right: Option<i64>,
    /// Rows this line stands for: 1 for a key, the surplus copies for a keyless row.
    pub rows: u64,
}

/// A differing key as reported with `--details`.
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    pub kind: DiffKind,
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(skip_serializing_if = "is_one")]
    pub rows: u64,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// One table's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TableResult {
    pub table: String,
    pub left_rows: u64,
    pub right_rows: u64,
    pub only_left: u64,
    pub only_right: u64,
    pub different: u64,
    pub in_flight: u64,
    /// "key" (compared key by key) or "rows" (as a multiset of rows).
    pub compared_by: &'static str,
    /// A schema difference found on the way (missing table, columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
    pub seconds: f64,
    /// The table exists on one side only (its rows are the differences).
    #[serde(skip)]
    pub one_side_only: bool,
}

impl TableResult {
    /// Differing rows, plus one for a definition that differs (a table missing
    /// on one side counts by its rows).
    pub fn differences(&self) -> u64 {
        self.only_left
            + self.only_right
            + self.different
            + u64::from(self.problem.is_some() && !self.one_side_only)
    }
}

/// The whole scan's result.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub tables: Vec<TableResult>,
    pub total_differences: u64,
    pub total_in_flight: u64,
    pub identical: bool,
    pub seconds: f64,
}

impl ScanReport {
    fn new(tables: Vec<TableResult>, seconds: f64) -> ScanReport {
        let total_differences = tables.iter().map(TableResult::differences).sum();
        let total_in_flight = tables.iter().map(|t| t.in_flight).sum();
        ScanReport {
            tables,
            total_differences,
            total_in_flight,
            identical: total_differences == 0,
            seconds,
        }
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let width = name_width(self.tables.iter().map(|t| t.table.as_str()));
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>10}  {:>9}  {:>10}  {:>9}  {:>9}\n",
            "table", "left rows", "right rows", "only left", "only right", "different", "in flight"
        ));
        for t in &self.tables {
            out.push_str(&format!(
                "{:<width$}  {:>10}  {:>10}  {:>9}  {:>10}  {:>9}  {:>9}{}\n",
                t.table,
                t.left_rows,
                t.right_rows,
                t.only_left,
                t.only_right,
                t.different,
                t.in_flight,
                if t.compared_by == "rows" {
                    "  (no key: compared as rows)"
                } else {
                    ""
                }
            ));
            if let Some(p) = &t.problem {
                out.push_str(&format!("  problem: {p}\n"));
            }
            for d in &t.details {
                let kind = match d.kind {
                    DiffKind::OnlyLeft => "only left",
                    DiffKind::OnlyRight => "only right",
                    DiffKind::Different => "different",
                    DiffKind::InFlight => "in flight",
                };
                out.push_str(&format!("  {kind:<10} {}", d.key));
                if d.rows != 1 {
                    out.push_str(&format!("  ({} rows)", d.rows));
                }
                if !d.columns.is_empty() {
                    out.push_str(&format!("  columns: {}", d.columns.join(", ")));
                }
                out.push('\n');
            }
            let listed = t.details.len() as u64;
            let all = t.only_left + t.only_right + t.different + t.in_flight;
            if !t.details.is_empty() && listed < all {
                out.push_str(&format!("  ... {} more not listed\n", all - listed));
            }
        }
        let differing = self.tables.iter().filter(|t| t.differences() > 0).count();
        out.push_str(&format!(
            "total: {} table(s), {} {}{}; {:.1} s\n",
            self.tables.len(),
            self.total_differences,
            if self.identical {
                "differences: identical".to_string()
            } else {
                format!("difference(s) in {differing} table(s)")
            },
            if self.total_in_flight > 0 {
                format!(
                    ", {} key(s) in flight (still being replicated, not differences)",
                    self.total_in_flight
                )
            } else {
                String::new()
            },
            self.seconds
        ));
        out
    }
}

/// The width of a "table" column holding `names`.
pub(crate) fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names
        .map(str::len)
        .chain(["table".len()])
        .max()
        .unwrap_or(5)
}

/// A table to scan: its shape, and the problems found comparing definitions.
#[derive(Clone, Debug)]
pub struct Target {
    pub shape: Shape,
    pub problem: Option<String>,
    /// Present on one side only: which.
    pub only_on: Option<Side>,
    /// The delta tables of the capture on each side, when installed.
    pub delta: [Option<TableName>; 2],
}

/// The connections of a scan: `jobs` per side, pinned session settings.
pub struct Sessions {
    pub left: Vec<Client>,
    pub right: Vec<Client>,
    pub catalogs: [Catalog; 2],
    pub can_use_replica_role: [bool; 2],
    pub sync_name: String,
}

impl Sessions {
    pub fn side(&self, side: Side) -> &[Client] {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }
}

/// Connects `jobs` sessions to each side and reads both catalogs.
pub async fn connect(config: &Config, jobs: usize) -> Result<Sessions, ScanError> {
    let [l, r] = open_both(config).await?;
    let l = l?;
    let r = r?;
    let more = |s: &SideState| {
        let endpoint = s.endpoint.clone();
        let side = s.side;
        async move {
            let mut v = Vec::new();
            for _ in 1..jobs.max(1) {
                v.push(
                    endpoint
                        .connect()
                        .await
                        .map_err(|source| ScanError::Pg { side, source })?,
                );
            }
            Ok::<_, ScanError>(v)
        }
    };
    let (lm, rm) = tokio::try_join!(more(&l), more(&r))?;
    let mut left = vec![l.client];
    left.extend(lm);
    let mut right = vec![r.client];
    right.extend(rm);
    for (side, clients) in [(Side::Left, &left), (Side::Right, &right)] {
        for c in clients {
            c.batch_execute(SESSION_SETTINGS)
                .await
                .map_err(db(side, "setting the session"))?;
        }
    }
    Ok(Sessions {
        left,
        right,
        catalogs: [l.catalog, r.catalog],
        can_use_replica_role: [l.can_use_replica_role, r.can_use_replica_role],
        sync_name: config.replication.sync.clone(),
    })
}

fn scan_columns(t: &Table) -> Vec<ScanColumn> {
    t.columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| ScanColumn {
            name: c.name.clone(),
            type_name: c.type_name.clone(),
        })
        .collect()
}

/// The tables to scan: every table the configuration selects (and `filter`
/// matches) on either side, with what to compare.
pub async fn targets(
    config: &Config,
    sessions: &Sessions,
    filter: Option<&regex::Regex>,
) -> Result<Vec<Target>, ScanError> {
    let [lc, rc] = &sessions.catalogs;
    let wanted = |t: &&Table| {
        let q = t.name.qualified();
        config.tables.selects(&q) && filter.is_none_or(|f| f.is_match(&q))
    };
    let mut names: Vec<TableName> = lc
        .tables
        .iter()
        .filter(wanted)
        .chain(rc.tables.iter().filter(wanted))
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    names.dedup();
    let mut installed: [HashMap<TableName, i32>; 2] = [HashMap::new(), HashMap::new()];
    for (i, side) in [Side::Left, Side::Right].into_iter().enumerate() {
        let c = &sessions.side(side)[0];
        let tables = match pgduplex_pg::install::installed_tables(c).await {
            Ok(t) => t,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                tracing::warn!(
                    "{side}: this role may not read schema pgduplex: keys that differ are not looked \
                     at again while replication runs (connect as the role that ran install)"
                );
                Vec::new()
            }
            Err(source) => return Err(ScanError::Pg { side, source }),
        };
        for t in tables {
            if t.sync == sessions.sync_name {
                installed[i].insert(t.table, t.id);
            }
        }
    }
    let mut out = Vec::new();
    for name in names {
        let (l, r) = (lc.table(&name), rc.table(&name));
        let delta = [0, 1].map(|i| {
            installed[i]
                .get(&name)
                .map(|id| TableName::new(pgduplex_pg::SCHEMA, format!("delta_{id}")))
        });
        let (shape, problem, only_on) = match (l, r) {
            (Some(l), Some(r)) => {
                let rcols = scan_columns(r);
                let mut diffs = Vec::new();
                let mut columns = Vec::new();
                for c in scan_columns(l) {
                    match rcols.iter().find(|o| o.name == c.name) {
                        None => diffs.push(format!("column {} only on the left", c.name)),
                        Some(o) if o.type_name != c.type_name => diffs.push(format!(
                            "column {} is {} on the left, {} on the right",
                            c.name, c.type_name, o.type_name
                        )),
                        Some(_) => columns.push(c),
                    }
                }
                for c in &rcols {
                    if l.column(&c.name).is_none_or(|lc| lc.generated) {
                        diffs.push(format!("column {} only on the right", c.name));
                    }
                }
                let key = match (&l.key, &r.key) {
                    (Some(a), Some(b)) if a.columns == b.columns => a
                        .columns
                        .iter()
                        .map(|k| columns.iter().find(|c| &c.name == k).cloned())
                        .collect::<Option<Vec<_>>>(),
                    _ => None,
                };
                // Bucket sizing only: `reltuples` is unknown before a first
                // ANALYZE; the size is a floor then.
                let rows = [l, r]
                    .iter()
                    .map(|t| t.estimated_rows.max(t.size_bytes / 200))
                    .max()
                    .unwrap_or(0);
                let problem = (!diffs.is_empty()).then(|| {
                    format!(
                        "the definitions differ ({}); the other columns were compared",
                        diffs.join("; ")
                    )
                });
                (
                    Shape {
                        table: name.clone(),
                        columns,
                        key,
                        mask: sql::mask_for(rows),
                    },
                    problem,
                    None,
                )
            }
            (Some(t), None) | (None, Some(t)) => {
                let side = if l.is_some() { Side::Left } else { Side::Right };
                (
                    Shape {
                        table: name.clone(),
                        columns: scan_columns(t),
                        key: None,
                        mask: 0,
                    },
                    Some(format!("exists on the {side} side only")),
                    Some(side),
                )
            }
            (None, None) => unreachable!("the name came from a catalog"),
        };
        out.push(Target {
            shape,
            problem,
            only_on,
            delta,
        });
    }
    Ok(out)
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

/// Per side: a count and a hash sum per bucket.
struct Sums {
    rows: u64,
    buckets: Vec<(i64, i128)>,
}

/// Scans one table.
pub async fn scan_table(
    sessions: &Sessions,
    target: &Target,
    options: &ScanOptions,
    progress: &ScanProgress,
) -> Result<TableResult, ScanError> {
    let started = Instant::now();
    let shape = &target.shape;
    let mut result = TableResult {
        table: shape.table.to_string(),
        compared_by: if shape.keyed() { "key" } else { "rows" },
        problem: target.problem.clone(),
        ..TableResult::default()
    };
    progress.start_table(&shape.table);
    if let Some(side) = target.only_on {
        result.one_side_only = true;
        let n: i64 = sessions.side(side)[0]
            .query_one(
                &format!("SELECT pg_catalog.count(*) FROM {}", shape.table.quoted()),
                &[],
            )
            .await
            .map_err(db(side, format!("counting the rows of {}", shape.table)))?
            .get(0);
        match side {
            Side::Left => (result.left_rows, result.only_left) = (n as u64, n as u64),
            Side::Right => (result.right_rows, result.only_right) = (n as u64, n as u64),
        }
        result.seconds = started.elapsed().as_secs_f64();
        return Ok(result);
    }
    let (left_rows, right_rows, buckets) = level1(sessions, shape, progress).await?;
    result.left_rows = left_rows;
    result.right_rows = right_rows;
    if buckets.is_empty() {
        result.seconds = started.elapsed().as_secs_f64();
        return Ok(result);
    }
    tracing::debug!(table = %shape.table, buckets = buckets.len(), "buckets differ; listing their rows");
    // Level 2.
    let mut kept: Vec<Diff> = Vec::new();
    let mut unkept = [0u64; 4];
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let keep = async {
        while let Some(d) = rx.recv().await {
            if kept.len() < KEEP_LIMIT {
                kept.push(d);
            } else {
                unkept[d.kind as usize] += d.rows;
            }
        }
        Ok::<_, ScanError>(())
    };
    tokio::try_join!(
        diff_rows(shape, &sessions.left[0], &sessions.right[0], &buckets, tx),
        keep
    )?;
    result.only_left += unkept[DiffKind::OnlyLeft as usize];
    result.only_right += unkept[DiffKind::OnlyRight as usize];
    result.different += unkept[DiffKind::Different as usize];
    // Level 3: live re-check of keys that replication may still be carrying.
    if shape.keyed() && target.delta.iter().any(Option::is_some) && !kept.is_empty() {
        kept = recheck(sessions, target, kept, options.settle).await?;
    }
    for d in &kept {
        match d.kind {
            DiffKind::OnlyLeft => result.only_left += d.rows,
            DiffKind::OnlyRight => result.only_right += d.rows,
            DiffKind::Different => result.different += d.rows,
            DiffKind::InFlight => result.in_flight += d.rows,
        }
    }
    if options.details {
        result.details = details(sessions, shape, &kept).await?;
    }
    result.seconds = started.elapsed().as_secs_f64();
    Ok(result)
}

/// Level 1 on both sides at once: `(left rows, right rows, buckets that differ)`.
pub(crate) async fn level1(
    sessions: &Sessions,
    shape: &Shape,
    progress: &ScanProgress,
) -> Result<(u64, u64, Vec<i32>), ScanError> {
    let (l, r) = tokio::try_join!(
        side_sums(Side::Left, sessions, shape, progress),
        side_sums(Side::Right, sessions, shape, progress)
    )?;
    let buckets = (0..l.buckets.len())
        .filter(|&b| l.buckets[b] != r.buckets[b])
        .map(|b| b as i32)
        .collect();
    Ok((l.rows, r.rows, buckets))
}

/// The leaf relations of `table` on one side with their sizes in blocks.
async fn leaves(
    c: &Client,
    side: Side,
    table: &TableName,
) -> Result<Vec<(TableName, i64)>, ScanError> {
    let rows = c
        .query(
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, \
                    (pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::pg_catalog.int8) \
               FROM (SELECT p.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.text::pg_catalog.regclass) p \
                      WHERE p.isleaf \
                     UNION SELECT $1::pg_catalog.text::pg_catalog.regclass) p \
               JOIN pg_catalog.pg_class c ON c.oid = p.relid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind = 'r'",
            &[&table.quoted()],
        )
        .await
        .map_err(db(side, format!("reading the size of {table}")))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                r.get(2),
            )
        })
        .collect())
}

/// Level 1 on one side: block ranges of every leaf, summed in parallel sessions
/// that share one snapshot.
async fn side_sums(
    side: Side,
    sessions: &Sessions,
    shape: &Shape,
    progress: &ScanProgress,
) -> Result<Sums, ScanError> {
    let clients = sessions.side(side);
    let catalog = &sessions.catalogs[side as usize];
    let lead = &clients[0];
    // Block ranges need TID range scans (PostgreSQL 14).
    let units: Vec<(TableName, Chunk, i64)> = if catalog.server_version_num >= 140000 {
        let mut units = Vec::new();
        for (rel, blocks) in leaves(lead, side, &shape.table).await? {
            let n = (blocks / CHUNK_BLOCKS).max(0) + 1;
            for i in 0..n {
                let from = i * CHUNK_BLOCKS;
                let to = (i + 1 < n).then_some(from + CHUNK_BLOCKS);
                let size = to.unwrap_or(blocks.max(from)) - from;
                units.push((rel.clone(), Chunk::Blocks { from, to }, size));
            }
        }
        units
    } else {
        vec![(shape.table.clone(), Chunk::Whole, 0)]
    };
    progress.add_blocks(units.iter().map(|u| u.2).sum());
    let workers = clients.len().min(units.len()).max(1);
    let queue = std::sync::Mutex::new(units.into_iter().collect::<std::collections::VecDeque<_>>());
    lead.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(db(side, "starting the scan's snapshot"))?;
    let result = async {
        let snapshot: Option<String> = if workers > 1 {
            Some(
                lead.query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
                    .await
                    .map_err(db(side, "exporting the scan's snapshot"))?
                    .get(0),
            )
        } else {
            None
        };
        let work = (0..workers).map(|w| {
            let client = &clients[w];
            let queue = &queue;
            let snapshot = snapshot.clone();
            async move {
                if w > 0 {
                    client
                        .batch_execute(&format!(
                            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
                            pgduplex_pg::quote_literal(snapshot.as_deref().unwrap_or_default())
                        ))
                        .await
                        .map_err(db(side, "importing the scan's snapshot"))?;
                }
                let mut sums = Sums {
                    rows: 0,
                    buckets: vec![(0, 0); shape.mask as usize + 1],
                };
                loop {
                    let unit = queue.lock().expect("queue").pop_front();
                    let Some((rel, chunk, size)) = unit else { break };
                    let q = shape.bucket_sums(&rel, &chunk);
                    let rows = match &chunk {
                        Chunk::Whole => client.query(&q, &[]).await,
                        Chunk::Blocks { from, to: None } => {
                            client.query(&q, &[&sql::block_tid(*from)]).await
                        }
                        Chunk::Blocks { from, to: Some(to) } => {
                            client
                                .query(&q, &[&sql::block_tid(*from), &sql::block_tid(*to)])
                                .await
                        }
                    }
                    .map_err(db(side, format!("summing the rows of {}", shape.table)))?;
                    for row in rows {
                        let b: i32 = row.get(0);
                        let n: i64 = row.get(1);
                        let h: String = row.get(2);
                        let h: i128 = h.parse().map_err(|_| {
                            ScanError::Refused(format!("{side}: unexpected hash sum {h:?}"))
                        })?;
                        let slot = &mut sums.buckets[b as usize];
                        slot.0 += n;
                        slot.1 = slot.1.wrapping_add(h);
                        sums.rows += n as u64;
                    }
                    progress.blocks_done(size);
                }
                if w > 0 {
                    client
                        .batch_execute("COMMIT")
                        .await
                        .map_err(db(side, "ending the scan's snapshot"))?;
                }
                Ok::<_, ScanError>(sums)
            }
        });
        let parts = futures_util::future::try_join_all(work).await?;
        let mut total = Sums {
            rows: 0,
            buckets: vec![(0, 0); shape.mask as usize + 1],
        };
        for p in parts {
            total.rows += p.rows;
            for (t, s) in total.buckets.iter_mut().zip(p.buckets) {
                t.0 += s.0;
                t.1 = t.1.wrapping_add(s.1);
            }
        }
        Ok::<_, ScanError>(total)
    }
    .await;
    // The lead's transaction ends either way (a failed worker leaves its own
    // session in an aborted transaction: the scan is over anyway).
    let end = lead.batch_execute("COMMIT").await;
    let total = result?;
    end.map_err(db(side, "ending the scan's snapshot"))?;
    Ok(total)
}

/// One listed row of level 2.
struct Listed {
    bucket: i32,
    key_text: String,
    key: Vec<String>,
    /// Row hash (keyed) or copies (keyless).
    value: i64,
}

fn listed(row: &tokio_postgres::Row, keyed: bool, key_len: usize) -> Listed {
    Listed {
        bucket: row.get(0),
        key_text: row.get(1),
        value: row.get(2),
        key: if keyed {
            (0..key_len).map(|i| row.get::<_, String>(3 + i)).collect()
        } else {
            Vec::new()
        },
    }
}

/// Level 2: lists the rows of `buckets` on both sides and merges them; every
/// difference goes to `found` (the merge stops quietly when the receiver is gone).
pub async fn diff_rows(
    shape: &Shape,
    left: &Client,
    right: &Client,
    buckets: &[i32],
    found: tokio::sync::mpsc::Sender<Diff>,
) -> Result<(), ScanError> {
    let q = shape.bucket_rows();
    let keyed = shape.keyed();
    let key_len = shape.key.as_ref().map_or(0, Vec::len);
    let ctx = || format!("listing the rows of {} that differ", shape.table);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&buckets];
    let (ls, rs) = tokio::try_join!(
        async {
            left.query_raw(&q, params.iter().copied())
                .await
                .map_err(db(Side::Left, ctx()))
        },
        async {
            right
                .query_raw(&q, params.iter().copied())
                .await
                .map_err(db(Side::Right, ctx()))
        }
    )?;
    pin_mut!(ls);
    pin_mut!(rs);
    let next = |side: Side, r: Option<Result<tokio_postgres::Row, tokio_postgres::Error>>| {
        r.transpose()
            .map_err(db(side, ctx()))
            .map(|o| o.map(|row| listed(&row, keyed, key_len)))
    };
    let mut l = next(Side::Left, ls.next().await)?;
    let mut r = next(Side::Right, rs.next().await)?;
    loop {
        let order = match (&l, &r) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => {
                (a.bucket, a.key_text.as_bytes()).cmp(&(b.bucket, b.key_text.as_bytes()))
            }
        };
        match order {
            std::cmp::Ordering::Less => {
                let a = l.take().expect("left row");
                if found.send(diff_of(keyed, a)).await.is_err() {
                    return Ok(());
                }
                l = next(Side::Left, ls.next().await)?;
            }
            std::cmp::Ordering::Greater => {
                let b = r.take().expect("right row");
                if found.send(diff_of(keyed, b).swap()).await.is_err() {
                    return Ok(());
                }
                r = next(Side::Right, rs.next().await)?;
            }
            std::cmp::Ordering::Equal => {
                let a = l.take().expect("left row");
                let b = r.take().expect("right row");
                if a.value != b.value {
                    let d = if keyed {
                        Diff {
                            kind: DiffKind::Different,
                            key_text: a.key_text,
                            key: a.key,
                            left: Some(a.value),
                            right: Some(b.value),
                            rows: 1,
                        }
                    } else {
                        let (kind, rows) = if a.value > b.value {
                            (DiffKind::OnlyLeft, a.value - b.value)
                        } else {
                            (DiffKind::OnlyRight, b.value - a.value)
                        };
                        Diff {
                            kind,
                            key_text: a.key_text,
                            key: Vec::new(),
                            left: Some(a.value),
                            right: Some(b.value),
                            rows: rows as u64,
                        }
                    };
                    if found.send(d).await.is_err() {
                        return Ok(());
                    }
                }
                l = next(Side::Left, ls.next().await)?;
                r = next(Side::Right, rs.next().await)?;
            }
        }
    }
    Ok(())
}

/// A row listed on one side only (as if on the left; `swap` for the right).
fn diff_of(keyed: bool, a: Listed) -> Diff {
    Diff {
        kind: DiffKind::OnlyLeft,
        rows: if keyed { 1 } else { a.value as u64 },
        key_text: a.key_text,
        key: a.key,
        left: Some(a.value),
        right: None,
    }
}

impl Diff {
    fn swap(mut self) -> Diff {
        self.kind = match self.kind {
            DiffKind::OnlyLeft => DiffKind::OnlyRight,
            DiffKind::OnlyRight => DiffKind::OnlyLeft,
            k => k,
        };
        std::mem::swap(&mut self.left, &mut self.right);
        self
    }
}

/// Key column texts of `diffs` as one text array per key column.
pub(crate) fn key_arrays(diffs: &[&Diff], key_len: usize) -> Vec<Vec<String>> {
    (0..key_len)
        .map(|i| diffs.iter().map(|d| d.key[i].clone()).collect())
        .collect()
}

pub(crate) fn params<T: tokio_postgres::types::ToSql + Sync>(
    arrays: &[Vec<T>],
) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    arrays
        .iter()
        .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Runs `q` (keys as text arrays `$1..$n`) over `keys` in batches on one side,
/// giving every row to `each`.
async fn by_keys(
    c: &Client,
    side: Side,
    shape: &Shape,
    q: &str,
    keys: &[&Diff],
    context: &str,
    mut each: impl FnMut(&tokio_postgres::Row),
) -> Result<(), ScanError> {
    let key_len = shape.key.as_ref().map_or(0, Vec::len);
    for batch in keys.chunks(LOOKUP_BATCH) {
        let arrays = key_arrays(batch, key_len);
        for row in c
            .query(q, &params(&arrays))
            .await
            .map_err(db(side, format!("{context} {}", shape.table)))?
        {
            each(&row);
        }
    }
    Ok(())
}

/// The current row hashes of `keys` on one side.
pub(crate) async fn key_states(
    c: &Client,
    side: Side,
    shape: &Shape,
    keys: &[&Diff],
) -> Result<HashMap<String, i64>, ScanError> {
    let mut out = HashMap::new();
    let q = shape.key_states();
    by_keys(
        c,
        side,
        shape,
        &q,
        keys,
        "looking again at keys of",
        |row| {
            out.insert(row.get(0), row.get(1));
        },
    )
    .await?;
    Ok(out)
}

async fn pending_keys(
    c: &Client,
    side: Side,
    shape: &Shape,
    delta: &TableName,
    keys: &[&Diff],
) -> Result<HashSet<String>, ScanError> {
    let mut out = HashSet::new();
    let q = shape.pending_keys(delta);
    by_keys(
        c,
        side,
        shape,
        &q,
        keys,
        "reading the pending changes of",
        |row| {
            out.insert(row.get(0));
        },
    )
    .await?;
    Ok(out)
}

/// Whether anything may still carry changes: the daemon holds the pair's lock on
/// the left, and how many TRUNCATEs wait on either side.
async fn replication_state(sessions: &Sessions) -> Result<(bool, i64), ScanError> {
    let key = lock_key(&sessions.sync_name);
    let running: bool = sessions.left[0]
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted \
               AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
               AND classid = $1::pg_catalog.text::pg_catalog.oid AND objid = $2::pg_catalog.text::pg_catalog.oid AND objsubid = 2)",
            &[&LOCK_CLASS.to_string(), &key.to_string()],
        )
        .await
        .map_err(db(Side::Left, "looking for the replication daemon"))?
        .get(0);
    let mut truncates = 0;
    for side in [Side::Left, Side::Right] {
        let n: i64 = sessions.side(side)[0]
            .query_one(
                "SELECT CASE WHEN pg_catalog.to_regclass('pgduplex.truncate_log') IS NULL THEN 0::pg_catalog.int8 \
                        ELSE (SELECT pg_catalog.count(*) FROM pgduplex.truncate_log) END",
                &[],
            )
            .await
            .map_err(db(side, "reading pending TRUNCATEs"))?
            .get(0);
        truncates += n;
    }
    Ok((running, truncates))
}

/// Level 3: looks at differing keys again until each is equal (dropped), stable
/// without pending changes (a difference), or `settle` is over (in flight).
async fn recheck(
    sessions: &Sessions,
    target: &Target,
    mut diffs: Vec<Diff>,
    settle: Duration,
) -> Result<Vec<Diff>, ScanError> {
    let shape = &target.shape;
    let deadline = Instant::now() + settle;
    let mut delay = Duration::from_millis(100);
    let mut moving: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        let (running, truncates) = replication_state(sessions).await?;
        let refs: Vec<&Diff> = diffs.iter().collect();
        let (l, r) = tokio::try_join!(
            key_states(&sessions.left[0], Side::Left, shape, &refs),
            key_states(&sessions.right[0], Side::Right, shape, &refs)
        )?;
        let mut pending = HashSet::new();
        for (i, side) in [Side::Left, Side::Right].into_iter().enumerate() {
            if let Some(delta) = &target.delta[i] {
                pending.extend(
                    pending_keys(&sessions.side(side)[0], side, shape, delta, &refs).await?,
                );
            }
        }
        moving.clear();
        diffs.retain_mut(|d| {
            let (nl, nr) = (l.get(&d.key_text).copied(), r.get(&d.key_text).copied());
            let Some(kind) = DiffKind::of(nl, nr) else {
                return false;
            };
            if (nl, nr) != (d.left, d.right) || pending.contains(&d.key_text) || truncates > 0 {
                moving.insert(d.key_text.clone());
            }
            d.kind = kind;
            d.left = nl;
            d.right = nr;
            true
        });
        if moving.is_empty() || !running || Instant::now() >= deadline {
            break;
        }
        tracing::debug!(table = %shape.table, keys = moving.len(), "keys still moving; looking again");
    }
    for d in &mut diffs {
        if moving.contains(&d.key_text) {
            d.kind = DiffKind::InFlight;
        }
    }
    Ok(diffs)
}

/// The first [`DETAIL_LIMIT`] differences, with the differing columns of rows
/// present on both sides.
async fn details(
    sessions: &Sessions,
    shape: &Shape,
    diffs: &[Diff],
) -> Result<Vec<Detail>, ScanError> {
    let listed: Vec<&Diff> = diffs.iter().take(DETAIL_LIMIT).collect();
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    if shape.keyed() {
        let both: Vec<&Diff> = listed
            .iter()
            .copied()
            .filter(|d| d.kind == DiffKind::Different)
            .collect();
        if !both.is_empty() {
            let q = shape.key_columns();
            let arrays = key_arrays(&both, shape.key.as_ref().map_or(0, Vec::len));
            let p = params(&arrays);
            let (l, r) = tokio::try_join!(
                async {
                    sessions.left[0]
                        .query(&q, &p)
                        .await
                        .map_err(db(Side::Left, "reading differing rows"))
                },
                async {
                    sessions.right[0]
                        .query(&q, &p)
                        .await
                        .map_err(db(Side::Right, "reading differing rows"))
                }
            )?;
            let values = |rows: Vec<tokio_postgres::Row>| -> HashMap<String, Vec<Option<String>>> {
                rows.into_iter()
                    .map(|row| {
                        let k: String = row.get(0);
                        let v = (1..row.len())
                            .map(|i| row.get::<_, Option<String>>(i))
                            .collect();
                        (k, v)
                    })
                    .collect()
            };
            let (l, r) = (values(l), values(r));
            for (k, lv) in &l {
                if let Some(rv) = r.get(k) {
                    let cols = shape
                        .columns
                        .iter()
                        .zip(lv.iter().zip(rv))
                        .filter(|(_, (a, b))| a != b)
                        .map(|(c, _)| c.name.clone())
                        .collect();
                    columns.insert(k.clone(), cols);
                }
            }
        }
    }
    Ok(listed
        .into_iter()
        .map(|d| Detail {
            kind: d.kind,
            key: d.key_text.clone(),
            columns: columns.remove(&d.key_text).unwrap_or_default(),
            rows: d.rows,
        })
        .collect())
}
