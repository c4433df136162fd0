//! `pgduplex onetimecopy`: the initial copy of every replicated table from one
//! side (the source) to the other (the target), and [`ensure_initial_copy`] for the
//! daemon's start. Issue 4; DESIGN.md, "Initial copy".
//!
//! How, and why:
//!
//! * The capture is installed (or verified) first, so every change committed on
//!   the source while the copy runs is in its deltas; `replicate` replays them
//!   afterwards, and the state-based apply makes the overlap harmless.
//! * Rows stream from `COPY (SELECT <columns> ...) TO STDOUT` on the source into
//!   `COPY <table> (<columns>) FROM STDIN` on the target, chunk by chunk, never
//!   landing anywhere. Binary format for a table whose copied columns are all
//!   built-in types with binary I/O, between servers of the same major version
//!   (binary arrays and composites carry their element types' OIDs, which differ
//!   between two servers for user-defined types); text otherwise, or for every
//!   table with `[onetimecopy] copy_format = "text"`. Both sessions
//!   pin the settings that text forms depend on (DateStyle, extra float digits,
//!   ...). Generated columns are left out (the target computes them).
//! * Each table or range is read in its own `REPEATABLE READ` transaction that
//!   locks the table `ACCESS SHARE` before its snapshot is taken (a rewrite
//!   committed after the snapshot would otherwise copy as empty): no snapshot is
//!   held for the whole copy, so vacuum on the source is held back only as long as
//!   one range takes. Tables linked by foreign keys on the target (when those are
//!   checked or validated) are read from one exported snapshot, so that the target
//!   accepts them; the log says which.
//! * Several tables and ranges at once (`jobs`); tables estimated above
//!   `range_rows` rows, with an integer first key column, are split into key ranges.
//! * The target transaction sets `pgduplex.applying`, so the target's capture
//!   triggers skip the copied rows (no echo: `replicate` would otherwise send every
//!   row back). A table copied whole, not partitioned and not referenced by a
//!   foreign key is emptied in the copy transaction, which lets `COPY FREEZE` write
//!   the rows frozen (no later hint-bit and freeze rewrites), and its indexes
//!   (primary key included) are dropped before the rows and built after them in
//!   that same transaction (`unit.rs`, `DEFERRABLE_INDEXES_SQL`): a kill rolls the
//!   drop back. `[onetimecopy] rebuild_indexes = false` copies into them instead.
//! * Progress is recorded on the target, one row per table or range, turned
//!   `done` in the transaction that commits the range's rows: a killed copy, run
//!   again, copies what is not done, with the same ranges.
//!
//! The steps of [`run`], numbered as in its body:
//!
//! 1. read only: the tables, the target's recorded progress, every reason to
//!    refuse (nothing has changed on either side yet);
//! 2. the capture installed, the apply role checked;
//! 3. the plan (parts of tables not planned yet) recorded on the target;
//! 4. jobs (tables) and units (tables or ranges) still to copy;
//! 5. tables that cannot be emptied in their copy transaction emptied up front
//!    (`--mode truncate`);
//! 6. what the copy drops to go faster saved and dropped;
//! 7. the units copied by the workers;
//! 8. what was dropped put back, ANALYZE;
//! 9. the copy recorded as finished once every replicated table is copied.
//!
//! The files:
//!
//! * `mod.rs`: the entry points ([`run`], [`ensure_initial_copy`]), their
//!   options, summary and errors, and the steps' order.
//! * `preflight.rs`: step 1.
//! * `plan.rs`: steps 3 and 4: estimates, COPY format, key ranges, foreign-key
//!   links and the snapshot groups, jobs and units.
//! * `ddl.rs`: steps 5, 6 and 8: the target around the rows.
//! * `schedule.rs`: step 7: which unit runs next, the workers.
//! * `unit.rs`: step 7 for one unit: its transactions, the COPY statements and
//!   the pipe, the indexes dropped and built again in the copy transaction.
//! * `fixtures.rs`: catalog entries for the unit tests.
//!
//! The progress shown while copying is `crate::progress`'s.

pub mod ddl;
#[cfg(test)]
mod fixtures;
pub mod plan;
mod preflight;
mod schedule;
mod unit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgduplex_config::{Config, CopyFormat, CopyMode, FkStrategy, Side};
// Names resolve in `pg_catalog` only in the copy's sessions, which also pin the
// daemon's session settings (the rows travel as COPY text).
use pgduplex_pg::session::{self, SEARCH_PATH};
use pgduplex_pg::store;
use pgduplex_pg::{Endpoint, PgError, TableName};
use regex::Regex;
use tokio_postgres::Client;

use self::plan::{Part, RecordedPart};
use self::preflight::Preflight;
use self::schedule::Shared;
use crate::check::{analyse, Analysis};
use crate::pair::endpoints;
use crate::progress::ProgressStyle;
use crate::{setup, EngineError};

pub use crate::progress::human_bytes;

/// Extra settings of the target's sessions. `synchronous_commit = off` is safe
/// here: a range's rows and its progress record commit together, so a commit
/// lost in a crash loses both and the range is copied again.
const TARGET_SETTINGS: &str = "SET synchronous_commit = off";

/// Errors of the copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{side}")]
    Pg {
        side: Side,
        #[source]
        source: PgError,
    },
    #[error("{side}: {context} failed")]
    Db {
        side: Side,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("copying {table}{part} ({side} side) failed")]
    Unit {
        table: TableName,
        part: String,
        side: Side,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "the {side} side (the copy's target) already holds rows in {tables}; nothing was changed. \
         Run with --mode truncate (or [onetimecopy] mode = \"truncate\") to empty {them} first, \
         or empty {them} yourself, or leave {them} out with --tables"
    )]
    NotEmpty {
        side: Side,
        tables: String,
        them: &'static str,
    },
    #[error(
        "the foreign keys on the {side} side between {tables} form a cycle: no load order satisfies them, \
         and the copy may not set session_replication_role there; nothing was changed. \
         Use --fk drop-readd (foreign keys dropped, copied, added back and validated), \
         or copy as a role that may set session_replication_role (--fk replica)"
    )]
    FkCycle { side: Side, tables: String },
    #[error(
        "--fk replica: the {side} side's role may not set session_replication_role = replica \
         (it needs superuser, or GRANT SET ON PARAMETER on PostgreSQL 15+); nothing was changed. \
         Use --fk order or --fk drop-readd"
    )]
    ReplicaRoleNotAllowed { side: Side },
    #[error(
        "{side}: the capture was installed for apply role {installed:?} but the copy connects as {session:?}: \
         the copied rows would be captured on the target and sent back; connect as {installed:?} \
         or run install again as {session:?}"
    )]
    ApplyRole {
        side: Side,
        installed: String,
        session: String,
    },
    #[error("{what}: could not be put back after the copy; its definition stays saved in pgduplex.copy_saved_ddl on the target and the next run tries again")]
    Restore {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "{side}: user triggers would fire on the rows the copy writes and change them: {triggers}; nothing was changed. \
         Guard them with WHEN (current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on'), \
         or copy as a role that may set session_replication_role, \
         or set [replication] allow_apply_triggers = true to copy anyway"
    )]
    Triggers { side: Side, triggers: String },
    #[error("no replicated table matches --tables; nothing was copied")]
    NoTables,
    #[error("a copy task failed")]
    Task(#[source] TaskError),
}

/// Why a task of the copy (a worker, an index rebuild, an ANALYZE) ended
/// without its own error.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// It panicked (or was aborted).
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    /// Another unit failed first; this one stopped at its next buffer.
    #[error("cancelled after another part failed")]
    Cancelled,
}

impl From<tokio::task::JoinError> for CopyError {
    fn from(e: tokio::task::JoinError) -> CopyError {
        CopyError::Task(TaskError::Join(e))
    }
}

pub(crate) fn db(
    side: Side,
    context: &str,
) -> impl FnOnce(tokio_postgres::Error) -> CopyError + '_ {
    move |source| CopyError::Db {
        side,
        context: context.to_string(),
        source,
    }
}

/// How the copy runs. [`CopyOptions::from_config`] gives the `[onetimecopy]`
/// settings; the command line overrides them.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub from: Side,
    /// `IfEmpty` or `Truncate` (`Never` copies nothing).
    pub mode: CopyMode,
    pub jobs: usize,
    /// Only tables whose plain `schema.table` name matches.
    pub tables: Option<Regex>,
    pub defer_indexes: bool,
    pub fk: FkStrategy,
    pub range_rows: u64,
    pub progress: ProgressStyle,
    /// `[onetimecopy] copy_format`: `Text` sends every table as text COPY.
    pub copy_format: CopyFormat,
    /// `[onetimecopy] rebuild_indexes`: a table emptied in its copy transaction
    /// has its indexes dropped before the rows and built after them, in that
    /// transaction.
    pub rebuild_indexes: bool,
}

impl CopyOptions {
    pub fn from_config(config: &Config) -> CopyOptions {
        let c = &config.onetimecopy;
        CopyOptions {
            from: c.from,
            mode: c.mode,
            jobs: c.jobs as usize,
            tables: None,
            defer_indexes: c.defer_indexes,
            fk: c.fk,
            range_rows: u64::from(c.range_rows),
            progress: ProgressStyle::detect(),
            copy_format: c.copy_format,
            rebuild_indexes: c.rebuild_indexes,
        }
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default)]
pub struct CopySummary {
    pub source: Option<Side>,
    /// Tables with at least one part copied by this run.
    pub tables: usize,
    /// Parts (tables or ranges) copied by this run.
    pub parts: usize,
    /// Parts found already copied by an earlier run.
    pub parts_already_done: usize,
    /// Tables found completely copied by an earlier run.
    pub tables_already_done: Vec<TableName>,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Indexes and foreign keys put back after the copy.
    pub restored: usize,
    /// Every replicated table is now copied.
    pub complete: bool,
}

impl CopySummary {
    /// The summary for people.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let mut out = format!(
            "copied {} table(s) ({} part(s)) from {} to {}: {} rows, {} in {:.1} s ({}/s, {:.0} rows/s)",
            self.tables,
            self.parts,
            self.source.map_or("?", |s| s.as_str()),
            self.source.map_or("?", |s| s.other().as_str()),
            self.rows,
            human_bytes(self.bytes),
            secs,
            human_bytes((self.bytes as f64 / secs) as u64),
            self.rows as f64 / secs,
        );
        if self.parts_already_done > 0 {
            out.push_str(&format!(
                "; resumed: {} part(s) already copied by an earlier run were skipped",
                self.parts_already_done
            ));
            if !self.tables_already_done.is_empty() {
                out.push_str(&format!(
                    " ({} table(s) complete: {})",
                    self.tables_already_done.len(),
                    names(&self.tables_already_done)
                ));
            }
        }
        if self.restored > 0 {
            out.push_str(&format!(
                "; {} index(es)/foreign key(s) put back",
                self.restored
            ));
        }
        out
    }
}

/// What [`ensure_initial_copy`] found and did.
#[derive(Clone, Debug)]
pub enum CopyOutcome {
    /// `[onetimecopy] mode = "never"`.
    Disabled,
    /// An earlier copy finished (at the time given, as text).
    AlreadyDone { finished_at: String },
    /// The copy ran now (fresh, or resumed: see `parts_already_done`).
    Copied(CopySummary),
    /// No copy was ever recorded and target tables hold rows (mode `if-empty`): the
    /// target was probably filled another way. Nothing was changed.
    TargetNotEmpty { error: String },
}

/// For the daemon's start: copies when the pair is fresh, resumes a copy that was
/// interrupted, and does nothing when the copy finished before or the mode is
/// `never`. `options` normally comes from [`CopyOptions::from_config`] (with
/// `progress` set to a log interval for a daemon).
///
/// `pair`: the daemon's analysed pair, if it still has it (else the pair is
/// opened and analysed here, when a copy is to be made).
pub async fn ensure_initial_copy(
    config: &Config,
    pair: Option<Analysis>,
    options: &CopyOptions,
) -> Result<CopyOutcome, CopyError> {
    if options.mode == CopyMode::Never {
        tracing::info!("initial copy disabled ([onetimecopy] mode = \"never\")");
        return Ok(CopyOutcome::Disabled);
    }
    let target = options.from.other();
    let [l, r] = endpoints(config)?;
    let endpoint = if target == Side::Left { l } else { r };
    let client = connect(&endpoint, target, "").await?;
    if let Some(run) = store::copy_run(&client, &config.replication.sync)
        .await
        .map_err(db(target, "reading the copy's record"))?
    {
        if let Some(finished_at) = run.finished_at {
            tracing::info!(%finished_at, "initial copy already done");
            return Ok(CopyOutcome::AlreadyDone { finished_at });
        }
        tracing::info!(started_at = %run.started_at, "an initial copy was interrupted: resuming it");
    }
    let pair = match pair {
        Some(p) => p,
        None => analyse(config).await?,
    };
    match Box::pin(run(config, pair, options)).await {
        Ok(summary) => Ok(CopyOutcome::Copied(summary)),
        Err(err @ CopyError::NotEmpty { .. }) => {
            // Settled for this pair: a later start must not copy into tables an
            // application emptied since (replication is under way).
            store::record_copy_skipped(
                &client,
                &config.replication.sync,
                options.from.as_str(),
                options.mode.as_str(),
            )
            .await
            .map_err(db(target, "recording that no copy was made"))?;
            Ok(CopyOutcome::TargetNotEmpty {
                error: crate::error_chain(&err),
            })
        }
        Err(err) => Err(err),
    }
}

/// Connects with the copy's session settings plus `extra`.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    side: Side,
    extra: &str,
) -> Result<Client, CopyError> {
    let client = endpoint
        .connect()
        .await
        .map_err(|source| CopyError::Pg { side, source })?;
    session::pin_settings(&client, SEARCH_PATH)
        .await
        .map_err(db(side, "setting up the session"))?;
    if !extra.is_empty() {
        client
            .batch_execute(extra)
            .await
            .map_err(db(side, "setting up the session"))?;
    }
    Ok(client)
}

fn names(tables: &[TableName]) -> String {
    tables
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pgduplex onetimecopy` on the analysed `pair` (see [`crate::check::analyse`]).
///
/// The steps are those of the module doc's list. Nothing is changed on either
/// side before step 2, once every reason to refuse has been looked for; the plan
/// is recorded on the target (step 3) before any row moves.
pub async fn run(
    config: &Config,
    pair: Analysis,
    options: &CopyOptions,
) -> Result<CopySummary, CopyError> {
    let started = Instant::now();
    let sync = config.replication.sync.as_str();
    let source_side = options.from;
    let target_side = source_side.other();

    // 1. Read only: the pair, the tables, the target's state, the refusals.
    let mut pre = preflight::look(config, pair, options).await?;

    // 2. The capture, so that changes made during the copy are in the deltas.
    install_capture(config, &mut pre, source_side).await?;
    refuse_apply_role_mismatch(&pre.tgt.client, target_side, sync).await?;

    // 3. and 4. The plan, recorded before any row moves; the jobs and units.
    let work = plan_and_record(&mut pre, sync, options).await?;
    drop(pre.tgt);
    let strategy = pre.strategy;
    let mut summary = CopySummary {
        source: Some(source_side),
        parts_already_done: work.parts_already_done,
        tables_already_done: work.tables_already_done.clone(),
        ..CopySummary::default()
    };
    let [l_end, r_end] = endpoints(config)?;
    let (src_end, tgt_end) = match source_side {
        Side::Left => (l_end, r_end),
        Side::Right => (r_end, l_end),
    };
    let target_extra = if strategy == FkStrategy::Replica {
        format!("{TARGET_SETTINGS}; SET session_replication_role = replica")
    } else {
        TARGET_SETTINGS.to_string()
    };

    // 5. and 6. The target made ready: tables emptied up front, what the copy
    //    drops to go faster saved and dropped.
    let jobs = &work.jobs;
    ddl::prepare_target(config, options, strategy, jobs, &tgt_end, &target_extra).await?;

    // 7. The copy itself.
    let shared = Shared::new(work, src_end, tgt_end, target_extra, sync, options);
    let shared = Arc::new(shared);
    schedule::run_workers(&shared, options.jobs, options.progress).await?;
    let copied: Vec<TableName> = {
        let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        summary.rows = stats.rows;
        summary.bytes = stats.bytes;
        summary.parts = stats.parts;
        summary.tables = stats.tables.len();
        stats.tables.iter().cloned().collect()
    };

    // 8. Put back what was dropped (also by an earlier, killed run), then ANALYZE.
    let (tgt_end, extra) = (&shared.tgt_end, &shared.target_extra);
    summary.restored = ddl::restore_all(tgt_end, target_side, sync, options.jobs, extra).await?;
    ddl::analyze(tgt_end, target_side, &copied, options.jobs).await?;

    // 9. Done when every replicated table is copied.
    summary.complete = record_if_complete(tgt_end, target_side, sync, &pre.all_names).await?;
    summary.elapsed = started.elapsed();
    tracing::info!(
        tables = summary.tables,
        parts = summary.parts,
        rows = summary.rows,
        bytes = summary.bytes,
        complete = summary.complete,
        "copy finished"
    );
    Ok(summary)
}

/// Step 2: the capture of every replicable table on both sides.
async fn install_capture(
    config: &Config,
    pre: &mut Preflight,
    source_side: Side,
) -> Result<(), CopyError> {
    let (l, r) = match source_side {
        Side::Left => (&mut pre.src.client, &mut pre.tgt.client),
        Side::Right => (&mut pre.tgt.client, &mut pre.src.client),
    };
    setup::install_on(config, &pre.install_tables, l, r).await?;
    Ok(())
}

/// Step 2: the copy's session must be the apply role the capture was installed
/// for, or the target's capture would record the copied rows.
async fn refuse_apply_role_mismatch(
    client: &Client,
    side: Side,
    sync: &str,
) -> Result<(), CopyError> {
    if let Some((installed, session)) = session::apply_role(client, sync)
        .await
        .map_err(db(side, "reading the apply role"))?
        .mismatch()
    {
        return Err(CopyError::ApplyRole {
            side,
            installed,
            session,
        });
    }
    Ok(())
}

/// Steps 3 and 4: the source's estimates and the COPY formats; the parts of the
/// tables not planned yet, recorded on the target with the run in one
/// transaction; then the jobs and units of what is left to copy.
async fn plan_and_record(
    pre: &mut Preflight,
    sync: &str,
    options: &CopyOptions,
) -> Result<plan::Work, CopyError> {
    let source_side = options.from;
    session::pin_settings(&pre.src.client, SEARCH_PATH)
        .await
        .map_err(db(source_side, "setting up the session"))?;
    let source_oids: Vec<u32> = pre.selected.iter().map(|(s, _)| s.oid).collect();
    let estimate = plan::estimates(&pre.src.client, source_side, &source_oids).await?;
    let binary =
        plan::binary_tables(&pre.src, &pre.tgt, &pre.selected, options.copy_format).await?;
    let new_parts = plan::new_parts(
        &pre.src.client,
        source_side,
        &pre.selected,
        &pre.recorded,
        &estimate,
        &pre.links.whole_only,
        options.range_rows,
    )
    .await?;
    let record = PlanRecord {
        restart: pre.restart,
        tables: &pre.selected_names,
        new_parts: &new_parts,
    };
    record_plan(
        &mut pre.tgt.client,
        source_side.other(),
        sync,
        options,
        &record,
    )
    .await?;
    for (name, part) in new_parts {
        pre.recorded
            .entry(name)
            .or_default()
            .push(RecordedPart { part, done: false });
    }
    let work = plan::work(
        &pre.selected,
        &pre.recorded,
        &estimate,
        &binary,
        &pre.links,
        options.mode == CopyMode::Truncate,
    );
    log_plan(&work, pre.strategy);
    Ok(work)
}

/// What step 3 records on the target.
struct PlanRecord<'a> {
    /// A finished copy starts over: the selected tables' progress is cleared.
    restart: bool,
    /// The selected tables.
    tables: &'a [TableName],
    /// Parts of the tables that have none recorded yet.
    new_parts: &'a [(TableName, Part)],
}

/// Step 3: the run and its new parts recorded on the target, in one transaction.
async fn record_plan(
    client: &mut Client,
    side: Side,
    sync: &str,
    options: &CopyOptions,
    plan: &PlanRecord<'_>,
) -> Result<(), CopyError> {
    let tx = client
        .transaction()
        .await
        .map_err(db(side, "recording the copy's plan"))?;
    if plan.restart {
        store::forget_copy_parts(&tx, sync, plan.tables)
            .await
            .map_err(db(side, "clearing the finished copy's progress"))?;
    }
    store::record_copy_started(
        &tx,
        sync,
        options.from.as_str(),
        options.mode.as_str(),
        plan.restart,
    )
    .await
    .map_err(db(side, "recording the copy"))?;
    for (name, p) in plan.new_parts {
        let part = store::CopyPart {
            table: name.clone(),
            part: p.part,
            parts: p.parts,
            key_column: p.key_column.clone(),
            lower: p.lower,
            upper: p.upper,
            done: false,
        };
        store::record_copy_part(&tx, sync, &part)
            .await
            .map_err(db(side, "recording the copy's plan"))?;
    }
    tx.commit()
        .await
        .map_err(db(side, "recording the copy's plan"))
}

/// Step 4: what the log says of the plan: a resumed copy, the snapshot groups.
fn log_plan(work: &plan::Work, strategy: FkStrategy) {
    if work.parts_already_done > 0 {
        tracing::info!(
            already_done = work.parts_already_done,
            to_copy = work.units.len(),
            complete_tables = %names(&work.tables_already_done),
            "resuming an interrupted copy: only the parts not copied yet are copied"
        );
    }
    let groups: BTreeMap<usize, Vec<TableName>> =
        work.jobs.iter().fold(BTreeMap::new(), |mut m, j| {
            if let Some(g) = j.group {
                m.entry(g).or_default().push(j.target.name.clone());
            }
            m
        });
    for members in groups.values() {
        tracing::info!(
            tables = %names(members),
            "these tables are linked by foreign keys on the target: they are read from one shared snapshot"
        );
    }
    if strategy == FkStrategy::Replica {
        tracing::info!("the target's foreign keys are not checked while copying (session_replication_role = replica): one snapshot per table or range");
    }
}

/// Step 9: whether every replicated table (`all`) is copied now; if so the copy
/// is recorded as finished.
async fn record_if_complete(
    endpoint: &Endpoint,
    side: Side,
    sync: &str,
    all: &[TableName],
) -> Result<bool, CopyError> {
    let client = connect(endpoint, side, "").await?;
    let progress_now = plan::read_progress(&client, side, sync).await?;
    let complete = all.iter().all(|n| plan::complete(&progress_now, n));
    if complete {
        store::record_copy_done(&client, sync)
            .await
            .map_err(db(side, "recording the end of the copy"))?;
    }
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain printer joins each message with its source's: no message
    /// repeats its source, and the printed text is what it was when they did.
    #[tokio::test]
    async fn errors_print_their_causes_once() {
        let tls = PgError::Tls {
            side: "right".into(),
            message: "sslrootcert: no such file".into(),
        };
        let err = CopyError::Pg {
            side: Side::Right,
            source: tls,
        };
        assert_eq!(err.to_string(), "right");
        assert_eq!(
            crate::error_chain(&err),
            "right: TLS settings of the right database: sslrootcert: no such file"
        );

        let err = CopyError::Task(TaskError::Cancelled);
        assert_eq!(err.to_string(), "a copy task failed");
        assert_eq!(
            crate::error_chain(&err),
            "a copy task failed: cancelled after another part failed"
        );

        let join = tokio::spawn(async { panic!("boom") })
            .await
            .expect_err("the task panicked");
        let join_text = join.to_string();
        let err = CopyError::from(join);
        assert!(matches!(err, CopyError::Task(TaskError::Join(_))));
        assert_eq!(
            crate::error_chain(&err),
            format!("a copy task failed: {join_text}")
        );
        assert!(join_text.contains("panicked"), "{join_text}");
    }
}
