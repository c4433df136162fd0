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
//!   between two servers for user-defined types); text otherwise. Both sessions
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
//!   that same transaction (`DEFERRABLE_INDEXES_SQL`): a kill rolls the drop back.
//! * Progress is recorded on the target, one row per table or range, turned
//!   `done` in the transaction that commits the range's rows: a killed copy, run
//!   again, copies what is not done, with the same ranges.

pub mod ddl;
pub mod plan;
pub mod progress;
mod schedule;
mod unit;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgduplex_config::{Config, CopyMode, FkStrategy, Side};
use pgduplex_pg::capture::APPLYING_SETTING;
use pgduplex_pg::catalog::{foreign_key_order, KeySource, Table};
// Names resolve in `pg_catalog` only in the copy's sessions, which also pin the
// daemon's session settings (the rows travel as COPY text).
use pgduplex_pg::session::{self, SEARCH_PATH};
use pgduplex_pg::store;
use pgduplex_pg::{Endpoint, PgError, TableName};
use regex::Regex;
use tokio_postgres::Client;

use self::plan::{binary_eligible, estimates, read_progress, Part, Recorded, TableJob};
use self::progress::{Progress, ProgressStyle};
use self::schedule::{Schedule, Shared, Stats, Unit};
use crate::check::{analyse, Analysis};
use crate::pair::endpoints;
use crate::{setup, EngineError};

pub use self::progress::human_bytes;

/// Extra settings of the target's sessions. `synchronous_commit = off` is safe
/// here: a range's rows and its progress record commit together, so a commit
/// lost in a crash loses both and the range is copied again.
const TARGET_SETTINGS: &str = "SET synchronous_commit = off";

/// Errors of the copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{side}: {source}")]
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
    #[error("a copy task failed: {0}")]
    Task(String),
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
pub async fn run(
    config: &Config,
    pair: Analysis,
    options: &CopyOptions,
) -> Result<CopySummary, CopyError> {
    let started = Instant::now();
    let sync = config.replication.sync.clone();
    let source_side = options.from;
    let target_side = source_side.other();

    // 1. Read only: the pair, the tables, the target's state. Nothing is changed
    //    before every reason to refuse has been looked for.
    let analysis = pair;
    // What blocks the install blocks the copy. Findings about the apply only
    // (foreign-key actions, user triggers) are looked at below for the copy's own
    // writes, which are INSERTs only.
    let blocking = analysis.report.blocking_install();
    if blocking > 0 || analysis.left.is_none() || analysis.right.is_none() {
        return Err(analysis.not_ready(blocking).into());
    }
    // What the install in step 2 captures: every replicable table (left, right).
    let install_tables = analysis.tables.clone();
    let (Some(left), Some(right)) = (analysis.left, analysis.right) else {
        unreachable!("both sides were just found connected");
    };
    let (mut src, mut tgt) = match source_side {
        Side::Left => (left, right),
        Side::Right => (right, left),
    };
    let all: Vec<(Table, Table)> = analysis
        .tables
        .into_iter()
        .map(|(l, r)| match source_side {
            Side::Left => (l, r),
            Side::Right => (r, l),
        })
        .collect();
    let all_names: Vec<TableName> = all.iter().map(|(s, _)| s.name.clone()).collect();
    let selected: Vec<(Table, Table)> = all
        .into_iter()
        .filter(|(s, _)| {
            options
                .tables
                .as_ref()
                .is_none_or(|re| re.is_match(&s.name.qualified()))
        })
        .collect();
    if selected.is_empty() {
        return Err(CopyError::NoTables);
    }
    let target_client = &tgt.client;
    session::pin_settings(target_client, SEARCH_PATH)
        .await
        .map_err(db(target_side, "setting up the session"))?;
    let run_record = store::copy_run(target_client, &sync)
        .await
        .map_err(db(target_side, "reading the copy's record"))?;
    let mut recorded = read_progress(target_client, target_side, &sync).await?;
    // A finished copy run again with --mode truncate starts over.
    let restart = options.mode == CopyMode::Truncate
        && run_record.as_ref().is_some_and(|r| r.finished_at.is_some());
    if restart {
        for (s, _) in &selected {
            recorded.remove(&s.name);
        }
    }
    let done_parts = |name: &TableName| -> usize {
        recorded
            .get(name)
            .map_or(0, |v| v.iter().filter(|r| r.done).count())
    };
    let complete = |name: &TableName| -> bool {
        recorded
            .get(name)
            .is_some_and(|v| !v.is_empty() && v.iter().all(|r| r.done))
    };

    // Foreign keys on the target between the selected tables.
    let strategy = match options.fk {
        FkStrategy::Auto if tgt.can_use_replica_role => FkStrategy::Replica,
        FkStrategy::Auto => FkStrategy::Order,
        FkStrategy::Replica if !tgt.can_use_replica_role => {
            return Err(CopyError::ReplicaRoleNotAllowed { side: target_side })
        }
        s => s,
    };
    // User triggers on the target fire on the copy's INSERTs unless guarded by
    // pgduplex.applying, or (for those not ENABLE ALWAYS) under replica role.
    if !config.replication.allow_apply_triggers {
        let firing: Vec<String> = selected
            .iter()
            .flat_map(|(_, t)| t.user_triggers.iter())
            .filter(|tr| {
                !tr.guarded
                    && tr.enabled != 'D'
                    && !(strategy == FkStrategy::Replica && tr.enabled == 'O')
                    && tr.definition.contains("INSERT")
            })
            .map(|tr| format!("{} on {}", tr.name, tr.table))
            .collect();
        if !firing.is_empty() {
            return Err(CopyError::Triggers {
                side: target_side,
                triggers: firing.join(", "),
            });
        }
    }
    let sel_names: Vec<TableName> = selected.iter().map(|(_, t)| t.name.clone()).collect();
    let idx_of: HashMap<&TableName, usize> =
        sel_names.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let fks = &tgt.catalog.foreign_keys;
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); selected.len()];
    let mut self_ref = vec![false; selected.len()];
    let mut edges = Vec::new();
    for fk in fks {
        if let (Some(&c), Some(&p)) = (idx_of.get(&fk.table), idx_of.get(&fk.references)) {
            if c == p {
                self_ref[c] = true;
            } else {
                edges.push((c, p));
                if strategy == FkStrategy::Order && !parents[c].contains(&p) {
                    parents[c].push(p);
                }
            }
        }
    }
    // Tables on either end of a foreign key: TRUNCATE refuses a referenced table
    // alone, so these are emptied up front, all in one statement, never inside
    // their copy transaction.
    let referenced: BTreeSet<&TableName> = fks
        .iter()
        .flat_map(|fk| [&fk.references, &fk.table])
        .collect();
    if strategy == FkStrategy::Order {
        let unfinished: Vec<TableName> =
            sel_names.iter().filter(|n| !complete(n)).cloned().collect();
        let (_, cyclic) = foreign_key_order(&unfinished, fks);
        if !cyclic.is_empty() {
            return Err(CopyError::FkCycle {
                side: target_side,
                tables: names(&cyclic),
            });
        }
    }
    // Groups sharing a snapshot: connected by foreign keys that the target checks
    // (order) or validates afterwards (drop-readd).
    let mut group_of: Vec<Option<usize>> = vec![None; selected.len()];
    if strategy != FkStrategy::Replica {
        let mut root: Vec<usize> = (0..selected.len()).collect();
        fn find(root: &mut [usize], i: usize) -> usize {
            let mut i = i;
            while root[i] != i {
                root[i] = root[root[i]];
                i = root[i];
            }
            i
        }
        for &(a, b) in &edges {
            let (ra, rb) = (find(&mut root, a), find(&mut root, b));
            if ra != rb {
                root[ra] = rb;
            }
        }
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..selected.len() {
            let r = find(&mut root, i);
            members.entry(r).or_default().push(i);
        }
        for (g, m) in members.values().filter(|m| m.len() > 1).enumerate() {
            for &i in m {
                group_of[i] = Some(g);
            }
        }
    }

    // if-empty: every table without a copied part must be empty on the target.
    let mut to_check = Vec::new();
    for (_, t) in &selected {
        if done_parts(&t.name) == 0 && !complete(&t.name) {
            to_check.push(t.name.clone());
        }
    }
    if options.mode == CopyMode::IfEmpty {
        let mut not_empty = Vec::new();
        for name in &to_check {
            let has_rows: bool = target_client
                .query_one(
                    &format!("SELECT EXISTS (SELECT 1 FROM {})", name.quoted()),
                    &[],
                )
                .await
                .map_err(db(target_side, "checking that the target tables are empty"))?
                .get(0);
            if has_rows {
                not_empty.push(name.clone());
            }
        }
        if !not_empty.is_empty() {
            return Err(CopyError::NotEmpty {
                side: target_side,
                them: if not_empty.len() == 1 { "it" } else { "them" },
                tables: names(&not_empty),
            });
        }
    }

    // 2. The capture, so that changes made during the copy are in the deltas.
    {
        let (l, r) = match source_side {
            Side::Left => (&mut src.client, &mut tgt.client),
            Side::Right => (&mut tgt.client, &mut src.client),
        };
        setup::install_on(config, &install_tables, l, r).await?;
    }
    let target_client = &tgt.client;
    if let Some((installed, session)) = session::apply_role(target_client, &sync)
        .await
        .map_err(db(target_side, "reading the apply role"))?
        .mismatch()
    {
        return Err(CopyError::ApplyRole {
            side: target_side,
            installed,
            session,
        });
    }

    // 3. The plan: parts of tables not planned yet, recorded before any row moves.
    let source_client = &src.client;
    session::pin_settings(source_client, SEARCH_PATH)
        .await
        .map_err(db(source_side, "setting up the session"))?;
    let source_oids: Vec<u32> = selected.iter().map(|(s, _)| s.oid).collect();
    let estimate = estimates(source_client, source_side, &source_oids).await?;
    // COPY format per table: binary where it is safe (same major version on both
    // sides, built-in types with binary I/O only, on both sides), else text.
    // PGDUPLEX_COPY_FORMAT=text forces text (for measurements, or as an escape hatch).
    let binary_ok: BTreeSet<TableName> = if src.catalog.server_version_num / 10000
        == tgt.catalog.server_version_num / 10000
        && std::env::var("PGDUPLEX_COPY_FORMAT").as_deref() != Ok("text")
    {
        let target_oids: Vec<u32> = selected.iter().map(|(_, t)| t.oid).collect();
        let s_ok = binary_eligible(source_client, source_side, &source_oids).await?;
        let t_ok = binary_eligible(target_client, target_side, &target_oids).await?;
        selected
            .iter()
            .filter(|(s, t)| s_ok.contains(&s.oid) && t_ok.contains(&t.oid))
            .map(|(_, t)| t.name.clone())
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut new_records: Vec<(TableName, Part)> = Vec::new();
    for (i, (s, t)) in selected.iter().enumerate() {
        if recorded.contains_key(&t.name) {
            continue;
        }
        let n = plan::part_count(
            estimate.get(&s.oid).copied().unwrap_or(0),
            options.range_rows,
        );
        let column = plan::split_column(s);
        let can_split = !(self_ref[i] && strategy == FkStrategy::Order);
        let parts = match (n > 1 && can_split, column) {
            (true, Some(col)) => {
                let row = source_client
                    .query_one(
                        &format!(
                            "SELECT min({c})::pg_catalog.int8, max({c})::pg_catalog.int8 FROM {}",
                            s.name.quoted(),
                            c = pgduplex_pg::quote_ident(&col)
                        ),
                        &[],
                    )
                    .await
                    .map_err(db(source_side, "reading a table's key range"))?;
                match (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) {
                    (Some(min), Some(max)) => plan::split(&col, min, max, n),
                    _ => vec![Part::whole()],
                }
            }
            _ => vec![Part::whole()],
        };
        tracing::debug!(table = %t.name, parts = parts.len(), "planned");
        if parts.len() > 1 {
            tracing::info!(
                table = %t.name,
                ranges = parts.len(),
                column = parts[0].key_column.as_deref().unwrap_or(""),
                "large table: split into key ranges"
            );
        }
        for p in parts {
            new_records.push((t.name.clone(), p));
        }
    }
    {
        let mut tgt_client = tgt.client;
        let tx = tgt_client
            .transaction()
            .await
            .map_err(db(target_side, "recording the copy's plan"))?;
        if restart {
            store::forget_copy_parts(&tx, &sync, &sel_names)
                .await
                .map_err(db(target_side, "clearing the finished copy's progress"))?;
        }
        store::record_copy_started(
            &tx,
            &sync,
            source_side.as_str(),
            options.mode.as_str(),
            restart,
        )
        .await
        .map_err(db(target_side, "recording the copy"))?;
        for (name, p) in &new_records {
            let part = store::CopyPart {
                table: name.clone(),
                part: p.part,
                parts: p.parts,
                key_column: p.key_column.clone(),
                lower: p.lower,
                upper: p.upper,
                done: false,
            };
            store::record_copy_part(&tx, &sync, &part)
                .await
                .map_err(db(target_side, "recording the copy's plan"))?;
            recorded.entry(name.clone()).or_default().push(Recorded {
                part: p.clone(),
                done: false,
            });
        }
        tx.commit()
            .await
            .map_err(db(target_side, "recording the copy's plan"))?;
        drop(tgt_client);
    }

    // 4. Jobs and units.
    let mut jobs: Vec<TableJob> = Vec::new();
    let mut units: Vec<Unit> = Vec::new();
    let mut summary = CopySummary {
        source: Some(source_side),
        ..CopySummary::default()
    };
    for (i, (s, t)) in selected.iter().enumerate() {
        let recs = recorded.get(&t.name).cloned().unwrap_or_default();
        let todo: Vec<&Recorded> = recs.iter().filter(|r| !r.done).collect();
        summary.parts_already_done += recs.len() - todo.len();
        if todo.is_empty() {
            summary.tables_already_done.push(t.name.clone());
        }
        let is_referenced = referenced.contains(&t.name);
        let fresh = todo.len() == recs.len();
        let whole_in_tx =
            recs.len() == 1 && plan::truncate_in_copy(t, &recs[0].part, is_referenced);
        jobs.push(TableJob {
            source: s.clone(),
            target: t.clone(),
            columns: plan::copied_columns(s),
            format: if binary_ok.contains(&t.name) {
                plan::Format::Binary
            } else {
                plan::Format::Text
            },
            parents: parents[i].clone(),
            group: group_of[i],
            referenced: is_referenced,
            remaining: todo.len(),
            truncated_up_front: options.mode == CopyMode::Truncate && fresh && !whole_in_tx,
        });
        let per_part = u64::try_from(estimate.get(&s.oid).copied().unwrap_or(0)).unwrap_or(0)
            / recs.len().max(1) as u64;
        for r in todo {
            units.push(Unit {
                job: i,
                part: r.part.clone(),
                estimated_rows: per_part,
                truncate_in_tx: whole_in_tx,
            });
        }
    }
    if summary.parts_already_done > 0 {
        tracing::info!(
            already_done = summary.parts_already_done,
            to_copy = units.len(),
            complete_tables = %names(&summary.tables_already_done),
            "resuming an interrupted copy: only the parts not copied yet are copied"
        );
    }
    let groups: BTreeMap<usize, Vec<TableName>> = jobs.iter().fold(BTreeMap::new(), |mut m, j| {
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
    let retry = setup::lock_retry(config);

    // 5. Truncate mode: tables that cannot be emptied inside their copy
    //    transaction are emptied now, together (foreign keys between them allow
    //    that only all at once).
    let up_front: Vec<TableName> = jobs
        .iter()
        .filter(|j| j.truncated_up_front && j.remaining > 0)
        .map(|j| j.target.name.clone())
        .collect();
    let mut tclient = connect(&tgt_end, target_side, &target_extra).await?;
    if !up_front.is_empty() {
        let list = up_front
            .iter()
            .map(|n| n.quoted())
            .collect::<Vec<_>>()
            .join(", ");
        let tx = tclient
            .transaction()
            .await
            .map_err(db(target_side, "emptying the target tables"))?;
        tx.batch_execute(&format!(
            "SET LOCAL {APPLYING_SETTING} = on; TRUNCATE {list}"
        ))
        .await
        .map_err(db(target_side, "emptying the target tables (TRUNCATE)"))?;
        tx.commit()
            .await
            .map_err(db(target_side, "emptying the target tables"))?;
        tracing::info!(tables = %names(&up_front), "target tables emptied (--mode truncate)");
    }

    // 6. What the copy drops to go faster, saved first.
    let pending_oids: Vec<u32> = jobs
        .iter()
        .filter(|j| j.remaining > 0)
        .map(|j| j.target.oid)
        .collect();
    if options.defer_indexes && !pending_oids.is_empty() {
        let key_indexes: Vec<String> = jobs
            .iter()
            .filter_map(|j| match &j.target.key.as_ref()?.source {
                KeySource::PrimaryKey(n) | KeySource::UniqueIndex(n) => Some(n.clone()),
            })
            .collect();
        let items =
            ddl::secondary_indexes(&tclient, target_side, &pending_oids, &key_indexes).await?;
        ddl::save_and_drop(&mut tclient, target_side, &sync, &retry, &items).await?;
    }
    if strategy == FkStrategy::DropReadd && !pending_oids.is_empty() {
        let items = ddl::foreign_keys(&tclient, target_side, &pending_oids).await?;
        ddl::save_and_drop(&mut tclient, target_side, &sync, &retry, &items).await?;
    }
    drop(tclient);

    // 7. The copy itself.
    let estimated: u64 = units.iter().map(|u| u.estimated_rows).sum();
    let progress = Progress::new(estimated, units.len() as u64);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reporter = tokio::spawn(progress::report(
        progress.clone(),
        options.progress,
        stop_rx,
    ));
    units.sort_by_key(|u| std::cmp::Reverse(u.estimated_rows));
    let mut group_left: HashMap<usize, usize> = HashMap::new();
    for u in &units {
        if let Some(g) = jobs[u.job].group {
            *group_left.entry(g).or_default() += 1;
        }
    }
    let shared = Arc::new(Shared {
        schedule: Mutex::new(Schedule {
            pending: (0..units.len()).collect(),
            remaining: jobs.iter().map(|j| j.remaining).collect(),
            parents: jobs.iter().map(|j| j.parents.clone()).collect(),
            group_left,
            failed: false,
        }),
        wake: tokio::sync::Notify::new(),
        snapshots: tokio::sync::Mutex::new(HashMap::new()),
        units,
        jobs,
        progress: progress.clone(),
        src_end,
        tgt_end,
        source_side,
        target_extra,
        sync: sync.clone(),
        truncate_mode: options.mode == CopyMode::Truncate,
        rebuild_in_tx: std::env::var("PGDUPLEX_COPY_KEEP_INDEXES").as_deref() != Ok("1"),
        stats: Mutex::new(Stats::default()),
        cancelled: AtomicBool::new(false),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.jobs.max(1).min(shared.units.len().max(1)) {
        let shared = shared.clone();
        workers.spawn(async move { shared.worker().await });
    }
    let mut first_err = None;
    while let Some(r) = workers.join_next().await {
        let r = r.unwrap_or_else(|e| Err(CopyError::Task(e.to_string())));
        if let Err(e) = r {
            shared.cancel();
            first_err.get_or_insert(e);
        }
    }
    // Close whatever exported snapshots are left (after a failure).
    for (_, snap) in shared.snapshots.lock().await.drain() {
        let _ = snap.client.batch_execute("ROLLBACK").await;
    }
    let _ = stop_tx.send(true);
    let _ = reporter.await;
    if let Some(e) = first_err {
        return Err(e);
    }
    {
        let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        summary.rows = stats.rows;
        summary.bytes = stats.bytes;
        summary.parts = stats.parts;
        summary.tables = stats.tables.len();
    }

    // 8. Put back what was dropped (also by an earlier, killed run), then ANALYZE.
    summary.restored = ddl::restore_all(
        &shared.tgt_end,
        target_side,
        &sync,
        options.jobs,
        &shared.target_extra,
    )
    .await?;
    let copied: Vec<TableName> = {
        let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.tables.iter().cloned().collect()
    };
    analyze(&shared.tgt_end, target_side, &copied, options.jobs).await?;

    // 9. Done when every replicated table is copied.
    let client = connect(&shared.tgt_end, target_side, "").await?;
    let progress_now = read_progress(&client, target_side, &sync).await?;
    summary.complete = all_names.iter().all(|n| {
        progress_now
            .get(n)
            .is_some_and(|v| !v.is_empty() && v.iter().all(|r| r.done))
    });
    if summary.complete {
        store::record_copy_done(&client, &sync)
            .await
            .map_err(db(target_side, "recording the end of the copy"))?;
    }
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

/// ANALYZE of the copied tables, on up to `jobs` connections.
async fn analyze(
    endpoint: &Endpoint,
    side: Side,
    tables: &[TableName],
    jobs: usize,
) -> Result<(), CopyError> {
    let queue = Arc::new(Mutex::new(tables.to_vec()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1).min(tables.len()) {
        let queue = queue.clone();
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            let client = connect(&endpoint, side, "").await?;
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(t) = next else { return Ok(()) };
                client
                    .batch_execute(&format!("ANALYZE {}", t.quoted()))
                    .await
                    .map_err(db(side, "analysing a copied table"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap_or_else(|e| Err(CopyError::Task(e.to_string())))?;
    }
    Ok(())
}
