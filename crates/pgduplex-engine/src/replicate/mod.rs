//! `pgduplex replicate`: the daemon that keeps both sides identical.
//!
//! One coordinator decides both directions of the pair. Each cycle:
//!
//! 1. Poll: one query per side tells which delta tables (and the TRUNCATE log)
//!    hold anything.
//! 2. Read: on each side a REPEATABLE READ transaction locks the pending tables
//!    `ACCESS SHARE` (a TRUNCATE or table rewrite committed after the snapshot
//!    would otherwise make every row look deleted), then reads the deltas, at most
//!    `batch_rows` of them.
//! 3. Decide ([`batch::plan_directions`]): keys pending on both sides are
//!    conflicts, resolved by the table's policy; each key goes one way only.
//! 4. Apply ([`apply::apply_direction`]), both directions at once: the source's
//!    current rows stream into a staging table on the target, then one DELETE and
//!    one upsert per table, a check for changes the target made meanwhile, and the
//!    ledger row, in one transaction.
//! 5. Delete exactly the source deltas that were applied, then the ledger rows.
//!
//! A backlog in one direction is pipelined: while the target applies batch N,
//! the source already reads batch N+1 in a new read transaction that first
//! deletes batch N's deltas (so the read leaves them out) and commits only
//! when batch N+1 is staged, i.e. after batch N committed on the target. If
//! batch N did not commit every delta it read, that transaction is rolled back
//! and the next batch is read the usual way (see `Prefetch`).
//!
//! A daemon killed anywhere loses nothing: undeleted deltas are replayed (the
//! apply is state-based), and deltas already applied are recognised by the ledger
//! at start and deleted instead of replayed.

pub mod apply;
pub mod batch;
pub mod failpoint;
pub mod fk;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use pgduplex_config::{Config, ConflictPolicy, Side};
use pgduplex_pg::catalog::{column_diff, foreign_key_order, Column};
use pgduplex_pg::install::installed_tables;
use pgduplex_pg::retry::{Backoff, RetryClass};
use pgduplex_pg::{session, store};
use pgduplex_pg::{Endpoint, TableName};
use tokio::sync::watch;
use tokio_postgres::Client;

use self::apply::{apply_direction, ApplyContext, Release, Temps};
use self::batch::{idx, plan_directions, Key, SideRead, TruncateEvent};
use self::plan::TablePlan;
use crate::check::Analysis;
use crate::pair::endpoints;
use crate::{setup, EngineError};

/// Errors of the daemon. Everything but [`ReplError::Fatal`] is retried after a
/// reconnect with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("the {0} side's lease moved on: another daemon took over this sync")]
    LeaseLost(Side),
    /// The initial copy failed in a way a reconnect may cure.
    #[error("the initial copy was interrupted: {0}")]
    Copy(String),
    #[error("{0}")]
    Fatal(String),
}

impl ReplError {
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            ReplError::Fatal(_) | ReplError::Engine(EngineError::NotReady { .. })
        )
    }
}

/// How `replicate` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Return once neither side has pending changes.
    pub until_idle: bool,
}

/// Totals since start.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub batches: u64,
    pub rows: [u64; 2],
    pub conflicts: u64,
}

/// One side's sessions.
struct Conn {
    side: Side,
    /// Holds the advisory lock; polls, applies, deletes.
    apply: Client,
    /// Read transactions (snapshots).
    read: Client,
    read_temps: HashSet<String>,
    apply_temps: HashSet<String>,
    /// [`plan::COLUMNS_SQL`] and the poll, prepared once per session on `apply`
    /// (they run every busy cycle; planning them each time cost more than
    /// running them).
    columns: tokio_postgres::Statement,
    poll: tokio_postgres::Statement,
}

async fn connect(side: Side, endpoint: &Endpoint) -> Result<Client, ReplError> {
    let client = endpoint.connect().await.map_err(EngineError::side(side))?;
    // No JIT: a batch's statements are costed above `jit_above_cost` from a few
    // ten thousand keys on, and compiling them takes longer than running them.
    session::pin_settings(&client, "SET jit = off").await?;
    Ok(client)
}

/// The daemon for one pair.
pub struct Replicator {
    config: Config,
    endpoints: [Endpoint; 2],
    plans: Vec<TablePlan>,
    order: Vec<usize>,
    fks: Vec<fk::FkPlan>,
    /// Per plan: why the table is paused (its columns differ between the sides).
    paused: Vec<Option<String>>,
    replica_role: [bool; 2],
    owner: String,
    pub stats: Stats,
    batch_no: i64,
    /// Per target side: cycles in a row whose apply was rolled back.
    retries: [u32; 2],
    /// The initial copy was done, found done, or not wanted.
    copy_checked: bool,
    /// The analysed pair `prepare` was given, kept (with its connections) for
    /// the initial copy, which needs it if a copy is to be made; dropped once
    /// the copy is checked.
    pair: Option<Analysis>,
}

impl Replicator {
    /// Checks the pair, installs (or verifies) the capture, and builds the plans.
    /// Refuses, changing nothing, when `check` finds something that blocks
    /// replication.
    pub async fn prepare(config: &Config, pair: Analysis) -> Result<Self, ReplError> {
        let (_, analysis) = setup::install(config, pair).await?;
        if !analysis.report.can_replicate() {
            let blocking = analysis
                .report
                .findings
                .iter()
                .filter(|f| f.severity == crate::check::Severity::Error)
                .count();
            return Err(ReplError::Engine(analysis.not_ready(blocking)));
        }
        let (Some(left), Some(right)) = (&analysis.left, &analysis.right) else {
            return Err(ReplError::Fatal("a side could not be reached".into()));
        };
        let sync = &config.replication.sync;
        let mut ids: [HashMap<TableName, (i32, String)>; 2] = Default::default();
        for (s, state) in [(0, left), (1, right)] {
            for t in installed_tables(&state.client)
                .await
                .map_err(EngineError::side(state.side))?
            {
                if &t.sync == sync {
                    ids[s].insert(t.table, (t.id, String::new()));
                }
            }
            if let Some((installed, session)) =
                session::apply_role(&state.client, sync).await?.mismatch()
            {
                return Err(ReplError::Fatal(format!(
                    "{}: the capture was installed for apply role {installed:?} but the daemon connects as {session:?}: \
                     its writes would be captured again and echo back; connect as {installed:?} or run install again as {session:?}",
                    state.side
                )));
            }
        }
        let mut plans = Vec::new();
        for (l, _r) in &analysis.tables {
            let (Some(li), Some(ri)) = (ids[0].get(&l.name), ids[1].get(&l.name)) else {
                continue;
            };
            let policy = config.conflict_for_table(&l.name.schema, &l.name.name);
            plans.push(TablePlan::new(l, [li.0, ri.0], policy));
        }
        let names: Vec<TableName> = plans.iter().map(|p| p.name.clone()).collect();
        let (ordered, cyclic) = foreign_key_order(&names, &left.catalog.foreign_keys);
        let replica_role = left.can_use_replica_role && right.can_use_replica_role;
        if !cyclic.is_empty() && !replica_role {
            // Deferrable keys are deferred in every apply transaction; others in a
            // cycle need replica role to be written in any order.
            let deferrable = left
                .catalog
                .foreign_keys
                .iter()
                .filter(|fk| cyclic.contains(&fk.table) && cyclic.contains(&fk.references))
                .all(|fk| fk.deferrable || fk.table == fk.references);
            if !deferrable {
                return Err(ReplError::Fatal(format!(
                    "the foreign keys between {} form a cycle and are not DEFERRABLE: rows cannot be written in an order \
                     that satisfies them, and the apply role may not set session_replication_role = replica; \
                     make those foreign keys DEFERRABLE, or let the apply role set session_replication_role, \
                     or exclude the tables",
                    cyclic.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let order = ordered
            .iter()
            .chain(cyclic.iter())
            .filter_map(|n| names.iter().position(|p| p == n))
            .collect();
        if plans.iter().any(|p| p.policy == ConflictPolicy::LatestWins) {
            check_clock_skew(config, &left.client, &right.client).await?;
        }
        let owner = format!(
            "{}@{} pid {}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "pgduplex".into()),
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
        let fks = fk::FkPlan::from_catalog(&plans, &left.catalog.foreign_keys);
        let mut replicator = Replicator {
            config: config.clone(),
            paused: vec![None; plans.len()],
            fks,
            endpoints: endpoints(config)?,
            plans,
            order,
            replica_role: [left.can_use_replica_role, right.can_use_replica_role],
            owner,
            stats: Stats::default(),
            batch_no: 0,
            retries: [0; 2],
            copy_checked: false,
            pair: None,
        };
        replicator.pair = Some(analysis);
        Ok(replicator)
    }

    pub fn tables(&self) -> usize {
        self.plans.len()
    }

    /// Runs until `shutdown` turns true (or, with `until_idle`, until nothing is
    /// pending), reconnecting with backoff after errors.
    pub async fn run(
        &mut self,
        options: Options,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ReplError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match Box::pin(self.session(options, &mut shutdown)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        "replication interrupted: {}; reconnecting in {:.1} s",
                        crate::error_chain(&e),
                        wait.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// One connected session: lock, lease, recovery, cycles.
    async fn session(
        &mut self,
        options: Options,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ReplError> {
        let mut conns = Vec::new();
        for side in Side::BOTH {
            let ep = &self.endpoints[idx(side)];
            let apply = connect(side, ep).await?;
            let read = connect(side, ep).await?;
            let columns = apply.prepare(plan::COLUMNS_SQL).await?;
            let poll = apply.prepare(&self.poll_sql(side)).await?;
            conns.push(Conn {
                side,
                apply,
                read,
                read_temps: HashSet::new(),
                apply_temps: HashSet::new(),
                columns,
                poll,
            });
        }
        let conns: [Conn; 2] = conns
            .try_into()
            .map_err(|_| ReplError::Fatal("two sides".into()))?;
        let res = Box::pin(self.connected(conns, options, shutdown)).await;
        // The sessions were dropped: their driver tasks end them with a Terminate
        // message, given a moment before the process exits (else each server
        // logs the connection as lost).
        tokio::time::sleep(Duration::from_millis(20)).await;
        res
    }

    /// The session once connected; drops the connections when it returns.
    async fn connected(
        &mut self,
        mut conns: [Conn; 2],
        options: Options,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ReplError> {
        let sync = self.config.replication.sync.clone();
        // The advisory lock, left first then right (one order for every daemon).
        for c in &conns {
            if !self.lock(c, shutdown).await? {
                return Ok(());
            }
        }
        let mut epoch = [0i64; 2];
        for c in &conns {
            epoch[idx(c.side)] = store::take_lease(&c.apply, &sync, &self.owner).await?;
        }
        if !self.initial_copy(shutdown).await? {
            return Ok(());
        }
        tracing::info!(
            tables = self.plans.len(),
            "replicating {} table(s) as sync {sync:?} (lease epochs left {}, right {})",
            self.plans.len(),
            epoch[0],
            epoch[1]
        );
        self.recover(&conns).await?;
        let all: Vec<usize> = (0..self.plans.len()).collect();
        self.check_columns(&conns, &all).await?;
        let poll = self.config.replication.poll_interval;
        let max_rows = self.config.replication.batch_rows as usize;
        let mut rows_cap = max_rows;
        let bytes_cap = u64::from(self.config.replication.batch_megabytes) * 1024 * 1024;
        let mut idle_since: Option<Instant> = None;
        let mut prefetched: Option<Prefetch> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let mut pending = self.poll(&conns).await?;
            let touched: Vec<usize> = (0..self.plans.len())
                .filter(|&i| pending[0][i] || pending[1][i])
                .collect();
            let before = (self.paused.clone(), self.plan_columns());
            self.check_columns(&conns, &touched).await?;
            if prefetched.is_some() && before != (self.paused.clone(), self.plan_columns()) {
                // Read under other plans: read again.
                if let Some(p) = prefetched.take() {
                    self.discard(&conns, p).await?;
                }
            }
            for (i, p) in self.paused.iter().enumerate() {
                if p.is_some() {
                    pending[0][i] = false;
                    pending[1][i] = false;
                }
            }
            let any = pending.iter().any(|p| p.iter().any(|&b| b));
            if !any {
                if let Some(p) = prefetched.take() {
                    self.discard(&conns, p).await?;
                }
                let paused: Vec<String> = touched
                    .iter()
                    .filter(|&&i| self.paused[i].is_some())
                    .map(|&i| self.plans[i].name.to_string())
                    .collect();
                if options.until_idle && !paused.is_empty() {
                    return Err(ReplError::Fatal(format!(
                        "everything else is replicated, but changes of paused table(s) {} are pending: \
                         make their columns match on both sides, then run again",
                        paused.join(", ")
                    )));
                }
                if options.until_idle {
                    tracing::info!("no pending changes on either side");
                    return Ok(());
                }
                if idle_since.is_none() {
                    idle_since = Some(Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            idle_since = None;
            let started = Instant::now();
            // A signal lets the batch in hand finish, but not for ever.
            let outcome = {
                // Boxed: the cycle's future is large, and the session's stays small.
                let mut cycle =
                    Box::pin(self.cycle(&mut conns, &pending, epoch, rows_cap, prefetched.take()));
                tokio::select! {
                    r = &mut cycle => {
                        let (outcome, next) = r?;
                        prefetched = next;
                        outcome
                    }
                    _ = wait_for_shutdown_deadline(shutdown.clone()) => {
                        tracing::warn!("the batch in hand did not finish in time after the stop signal; rolling it back");
                        return Ok(());
                    }
                }
            };
            // Size the next batch from the bytes per row seen.
            if outcome.delta_rows > 0 && outcome.bytes > 0 {
                let per_row = (outcome.bytes / outcome.delta_rows as u64).max(1);
                rows_cap = ((bytes_cap / per_row) as usize).clamp(1, max_rows);
            }
            // A direction rolled back cycles in a row waits a little longer each
            // time (up to 5 s) instead of hammering both servers.
            let retries = self.retries.iter().copied().max().unwrap_or(0);
            let wait = if retries > 1 {
                (poll * retries).min(Duration::from_secs(5))
            } else if !outcome.backlog && !options.until_idle {
                // No backlog: the next cycle starts a poll interval after this one
                // started, so that changes trickling in are applied a few at a
                // time per cycle instead of one cycle per transaction (cycles back
                // to back cost both servers and the daemon a fixed price each).
                poll.saturating_sub(started.elapsed())
            } else {
                Duration::ZERO
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// The initial copy (`[onetimecopy]`), under the daemon's lock: copies on a
    /// fresh pair, resumes a copy that was interrupted, does nothing once it is
    /// done. `Ok(false)`: a stop signal came during the copy (it resumes at the
    /// next start).
    async fn initial_copy(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, ReplError> {
        use crate::copy::{ensure_initial_copy, CopyOptions, CopyOutcome};
        use crate::progress::ProgressStyle;
        if self.copy_checked {
            return Ok(true);
        }
        let mut options = CopyOptions::from_config(&self.config);
        options.progress = ProgressStyle::Log(Duration::from_secs(10));
        let target = options.from.other();
        let copy = ensure_initial_copy(&self.config, self.pair.take(), &options);
        tokio::pin!(copy);
        let outcome = tokio::select! {
            r = &mut copy => r,
            _ = shutdown.changed() => {
                tracing::info!("stop signal during the initial copy: it stops here and resumes at the next start");
                return Ok(false);
            }
        };
        match outcome {
            Ok(CopyOutcome::Disabled | CopyOutcome::AlreadyDone { .. }) => {}
            Ok(CopyOutcome::Copied(summary)) => {
                tracing::info!("initial copy done: {}", summary.render().trim_end());
            }
            Ok(CopyOutcome::TargetNotEmpty { error }) => tracing::warn!(
                "no initial copy: {error}. pgduplex replicates the changes made from now on; if the {target} \
                 side is not a complete copy of the other, stop it and run `pgduplex onetimecopy --mode truncate`"
            ),
            Err(e) if copy_error_is_transient(&e) => {
                return Err(ReplError::Copy(crate::error_chain(&e)));
            }
            Err(e) => return Err(ReplError::Fatal(crate::error_chain(&e))),
        }
        self.copy_checked = true;
        self.pair = None;
        Ok(true)
    }

    /// Compares the columns of plans `which` between the sides. A table whose
    /// columns differ is paused (its deltas wait) with a message saying what
    /// differs; when they match again it resumes, with the new column list if
    /// both sides changed alike.
    async fn check_columns(&mut self, conns: &[Conn; 2], which: &[usize]) -> Result<(), ReplError> {
        type Cols = Vec<Column>;
        if which.is_empty() {
            return Ok(());
        }
        let schemas: Vec<String> = which
            .iter()
            .map(|&i| self.plans[i].name.schema.clone())
            .collect();
        let names: Vec<String> = which
            .iter()
            .map(|&i| self.plans[i].name.name.clone())
            .collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&schemas, &names];
        let (l, r) = tokio::try_join!(
            conns[0].apply.query(&conns[0].columns, &params),
            conns[1].apply.query(&conns[1].columns, &params)
        )?;
        let group = |rows: Vec<tokio_postgres::Row>| {
            let mut m: HashMap<TableName, Cols> = HashMap::new();
            for r in rows {
                let identity: Option<String> = r.get(5);
                m.entry(TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
                    .or_default()
                    .push(Column {
                        name: r.get(2),
                        type_name: r.get(3),
                        not_null: false,
                        generated: r.get(4),
                        identity: identity.and_then(|s| s.chars().next()),
                    });
            }
            m
        };
        let (gl, gr) = (group(l), group(r));
        for &i in which {
            let name = self.plans[i].name.clone();
            let lc = gl.get(&name).cloned().unwrap_or_default();
            let rc = gr.get(&name).cloned().unwrap_or_default();
            let reason = columns_differ(&lc, &rc).or_else(|| {
                match self.plans[i].with_columns(&lc) {
                    None => Some("a key column is gone".to_string()),
                    Some(p) => {
                        if p.columns != self.plans[i].columns {
                            tracing::info!("{name}: the columns changed alike on both sides; replicating the new columns");
                            self.plans[i] = p;
                        }
                        None
                    }
                }
            });
            match reason {
                Some(r) => {
                    if self.paused[i].as_ref() != Some(&r) {
                        tracing::warn!(
                            "{name}: replication of this table is PAUSED: {r}. Its changes are kept and the other \
                             tables continue; apply the same DDL on both sides and it resumes by itself"
                        );
                        self.paused[i] = Some(r);
                    }
                }
                None => {
                    if self.paused[i].take().is_some() {
                        tracing::info!("{name}: the columns match on both sides again; replication of this table resumes");
                    }
                }
            }
        }
        Ok(())
    }

    /// Throws a read ahead away (rolls its transaction back) and deletes the
    /// previous batch's source deltas, which that transaction had deleted, the
    /// usual way.
    async fn discard(&self, conns: &[Conn; 2], p: Prefetch) -> Result<(), ReplError> {
        let src = &conns[idx(p.side)];
        src.read.batch_execute("ROLLBACK").await?;
        if let Some(d) = p.deferred {
            self.delete_source(src, Some(&d.ledger), &[], &[], &[])
                .await?;
            failpoint::hit("source-deleted");
            forget_batch(
                &conns[idx(p.side.other())],
                &self.config.replication.sync,
                p.side,
                d.batch,
            )
            .await?;
        }
        Ok(())
    }

    /// The written columns of every plan (a change ends a read taken ahead).
    fn plan_columns(&self) -> Vec<Vec<plan::PlanColumn>> {
        self.plans.iter().map(|p| p.columns.clone()).collect()
    }

    /// Tables paused because their columns differ, with the reason.
    pub fn paused(&self) -> Vec<(TableName, String)> {
        self.plans
            .iter()
            .zip(&self.paused)
            .filter_map(|(p, r)| r.clone().map(|r| (p.name.clone(), r)))
            .collect()
    }

    async fn lock(
        &self,
        c: &Conn,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, ReplError> {
        let sync = &self.config.replication.sync;
        let mut logged = false;
        loop {
            if session::try_lock_pair(&c.apply, sync).await? {
                if logged {
                    tracing::info!("{}: the other daemon is gone; taking over", c.side);
                }
                return Ok(true);
            }
            if !logged {
                let who = session::lock_holder(&c.apply, sync)
                    .await?
                    .map_or_else(|| "another session".to_string(), |h| h.to_string());
                tracing::info!(
                    "{}: another daemon holds sync {sync:?} ({who}); waiting for it to stop",
                    c.side,
                );
                logged = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return Ok(false);
            }
        }
    }

    /// Deltas a killed daemon applied but did not delete: the target's ledger
    /// names them; delete them on the source, then the ledger rows.
    async fn recover(&self, conns: &[Conn; 2]) -> Result<(), ReplError> {
        let sync = &self.config.replication.sync;
        for source in Side::BOTH {
            let (src, tgt) = (&conns[idx(source)], &conns[idx(source.other())]);
            for store::AppliedBatch { batch, seqs } in
                store::applied_batches(&tgt.apply, sync, source.as_str()).await?
            {
                tracing::info!(
                    "{source}: {} change(s) were applied to {} before the last stop but not yet removed; removing them",
                    seqs.len(),
                    source.other()
                );
                self.delete_source(src, None, &seqs, &seqs, &[]).await?;
                forget_batch(tgt, sync, source, batch).await?;
            }
        }
        Ok(())
    }

    /// Deletes applied deltas on the source, by seq, in one transaction.
    /// `row_seqs` per plan; `None` when only the flat list is known (a ledger row
    /// found at start), which is then tried on every delta table.
    async fn delete_source(
        &self,
        src: &Conn,
        row_seqs: Option<&[Vec<i64>]>,
        flat: &[i64],
        truncate_seqs: &[i64],
        late: &[batch::Conflict],
    ) -> Result<(), ReplError> {
        src.apply.batch_execute("BEGIN").await?;
        let res = async {
            apply::log_conflicts(&src.apply, &self.config.replication.sync, &self.plans, late)
                .await?;
            for (i, p) in self.plans.iter().enumerate() {
                let seqs = row_seqs.map_or(flat, |per_plan| per_plan[i].as_slice());
                if !seqs.is_empty() {
                    src.apply
                        .execute(&p.delete_deltas(src.side), &[&seqs])
                        .await?;
                }
            }
            if !truncate_seqs.is_empty() {
                store::forget_truncates(&src.apply, truncate_seqs).await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        match res {
            Ok(()) => src.apply.batch_execute("COMMIT").await?,
            Err(e) => {
                let _ = src.apply.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// One query per side: which delta tables hold rows, and the TRUNCATE log
    /// (last entry). `[side][plan]`, plus one trailing flag for TRUNCATEs.
    async fn poll(&self, conns: &[Conn; 2]) -> Result<[Vec<bool>; 2], ReplError> {
        let (l, r) = tokio::try_join!(
            conns[0].apply.query_one(&conns[0].poll, &[]),
            conns[1].apply.query_one(&conns[1].poll, &[])
        )?;
        Ok([l.get(0), r.get(0)])
    }

    /// The poll of one side (see [`Self::poll`]).
    fn poll_sql(&self, side: Side) -> String {
        let mut parts: Vec<String> = self
            .plans
            .iter()
            .map(|p| format!("EXISTS (SELECT 1 FROM {})", p.delta_of(side).quoted()))
            .collect();
        parts.push(store::TRUNCATE_PENDING_SQL.into());
        format!("SELECT ARRAY[{}]", parts.join(", "))
    }

    /// Reads one side's pending deltas in a new REPEATABLE READ transaction on
    /// `read` (left open: the apply stages from its snapshot). `delete_first`
    /// (per plan): the deltas of the previous batch of this side, being applied
    /// meanwhile, deleted in this transaction before the read, which therefore
    /// leaves them out (see [`Prefetch`]).
    async fn read_side(
        plans: &[TablePlan],
        read_client: &Client,
        side: Side,
        pending: &[bool],
        cap: usize,
        delete_first: Option<&[Vec<i64>]>,
    ) -> Result<SideRead, ReplError> {
        let n = plans.len();
        let mut read = SideRead {
            changes: vec![BTreeMap::new(); n],
            ..SideRead::default()
        };
        read_client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let locked: Vec<String> = plans
            .iter()
            .zip(pending)
            .filter(|(_, &p)| p)
            .map(|(p, _)| p.name.quoted())
            .collect();
        if !locked.is_empty() {
            // Before the snapshot (LOCK takes none): a rewrite committed before the
            // lock is seen whole, one after it waits for this transaction.
            read_client
                .batch_execute(&format!(
                    "LOCK TABLE {} IN ACCESS SHARE MODE",
                    locked.join(", ")
                ))
                .await?;
        }
        if let Some(per_plan) = delete_first {
            for (p, seqs) in plans.iter().zip(per_plan) {
                if !seqs.is_empty() {
                    read_client.execute(&p.delete_deltas(side), &[seqs]).await?;
                }
            }
        }
        let mut bound = i64::MAX;
        if pending[n] {
            let rows = store::truncates(read_client, 1001).await?;
            for (k, t) in rows.into_iter().enumerate() {
                if k == 1000 {
                    // Deltas after an unread TRUNCATE wait for it.
                    bound = t.seq;
                    read.cut = true;
                    break;
                }
                let Some(plan) = plans.iter().position(|p| p.id_of(side) == t.table_id) else {
                    continue;
                };
                read.truncates.push(TruncateEvent {
                    seq: t.seq,
                    plan,
                    relation: t.relation,
                    txid: t.txid,
                    at: t.captured_micros,
                });
            }
        }
        let which: Vec<usize> = (0..n).filter(|&i| pending[i]).collect();
        if !which.is_empty() {
            let rows = read_client
                .query(
                    &plan::read_deltas(plans, &which, side),
                    &[&(cap as i64), &bound],
                )
                .await?;
            if rows.len() == cap {
                read.cut = true;
            }
            read.delta_rows = rows.len();
            for r in rows {
                let i = r.get::<_, i32>(1) as usize;
                let key: Key = r.get(3);
                let e = read.changes[i].entry(key).or_default();
                e.seqs.push(r.get(0));
                e.last_at = e.last_at.max(r.get(2));
            }
        }
        Ok(read)
    }

    /// Rows (jsonb text) of the keys pending on both sides, from both snapshots.
    async fn conflict_images(
        &self,
        conns: &[Conn; 2],
        reads: [&SideRead; 2],
    ) -> Result<Vec<HashMap<Key, [Option<String>; 2]>>, ReplError> {
        let mut out = vec![HashMap::new(); self.plans.len()];
        for (i, p) in self.plans.iter().enumerate() {
            let both: Vec<Key> = reads[0].changes[i]
                .keys()
                .filter(|k| reads[1].changes[i].contains_key(*k))
                .cloned()
                .collect();
            if both.is_empty() {
                continue;
            }
            let arrays = batch::key_arrays(&both, p.key.len());
            let params = batch::sql_params(&arrays);
            let sql = p.row_images();
            let (l, r) = tokio::try_join!(
                conns[0].read.query(&sql, &params),
                conns[1].read.query(&sql, &params)
            )?;
            let m: &mut HashMap<Key, [Option<String>; 2]> = &mut out[i];
            for k in both {
                m.insert(k, [None, None]);
            }
            for (s, rows) in [(0, l), (1, r)] {
                for row in rows {
                    let key: Key = (0..p.key.len()).map(|c| row.get(c)).collect();
                    if let Some(e) = m.get_mut(&key) {
                        e[s] = Some(row.get(p.key.len()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// One batch. `prefetched`: a side's read already taken during the previous
    /// batch (its transaction still open). Returns the read of the next batch
    /// when one was taken during this one (see [`Prefetch`]).
    async fn cycle(
        &mut self,
        conns: &mut [Conn; 2],
        pending: &[Vec<bool>; 2],
        epoch: [i64; 2],
        cap: usize,
        prefetched: Option<Prefetch>,
    ) -> Result<(CycleOutcome, Option<Prefetch>), ReplError> {
        let plans = &self.plans;
        let read =
            |s: Side| Self::read_side(plans, &conns[idx(s)].read, s, &pending[idx(s)], cap, None);
        if let Some(p) = &prefetched {
            tracing::debug!(
                "batch {}: the {} side's deltas were read ahead ({} rows)",
                self.batch_no + 1,
                p.side,
                p.read.delta_rows
            );
        }
        // The previous batch's source deltas, deleted in the transaction of the
        // read ahead: gone once this cycle's read transactions have committed.
        let deferred = prefetched
            .as_ref()
            .and_then(|p| p.deferred.as_ref().map(|d| (p.side, d.batch)));
        let prefetched = prefetched.map(|mut p| {
            if let Some(d) = &p.deferred {
                p.read.settled = d.ledger.clone();
            }
            p
        });
        let (lr, rr) = match prefetched {
            Some(Prefetch {
                side: Side::Left,
                read: l,
                ..
            }) => (l, read(Side::Right).await?),
            Some(Prefetch {
                side: Side::Right,
                read: r,
                ..
            }) => (read(Side::Left).await?, r),
            None => tokio::try_join!(read(Side::Left), read(Side::Right))?,
        };
        let images = self.conflict_images(conns, [&lr, &rr]).await?;
        let mut dirs = plan_directions(plans, [&lr, &rr], &images);
        let fk_conflicts = fk::resolve(
            &self.fks,
            plans,
            [&lr, &rr],
            [&conns[0].read, &conns[1].read],
            &mut dirs,
        )
        .await?;
        if fk_conflicts > 0 {
            tracing::info!("{fk_conflicts} foreign-key conflict(s) between the sides' changes; decided by policy and logged");
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            for d in &dirs {
                if !d.truncates.is_empty() || !d.own_truncates_consumed.is_empty() {
                    tracing::trace!(
                        "batch {} to {}: truncates {:?} seqs {:?} consumes {:?}",
                        self.batch_no + 1,
                        d.target,
                        d.truncates,
                        d.truncate_seqs,
                        d.own_truncates_consumed
                    );
                }
                for (i, p) in plans.iter().enumerate() {
                    if !d.keys[i].is_empty() || !d.own_consumed[i].is_empty() {
                        tracing::trace!(
                            "batch {} to {} {}: keys {:?} seqs {:?} consumes {:?}",
                            self.batch_no + 1,
                            d.target,
                            p.name,
                            d.keys[i],
                            d.ledger[i],
                            d.own_consumed[i]
                        );
                    }
                }
            }
        }
        let [to_right, to_left] = dirs;
        // A backlog in one direction only: the source's next batch is read while
        // this one is applied (see [`Prefetch`]).
        let n = plans.len();
        let prefetch_source = match (to_right.is_idle(), to_left.is_idle()) {
            (false, true) if lr.cut => Some(Side::Left),
            (true, false) if rr.cut => Some(Side::Right),
            _ => None,
        }
        .filter(|_| !pending[0][n] && !pending[1][n]);
        // Every delta this batch read, per plan: deleted in the read ahead.
        let read_seqs: Vec<Vec<i64>> = match prefetch_source {
            Some(s) => {
                let src = if s == Side::Left { &lr } else { &rr };
                (0..n).map(|i| src.seqs_of(i)).collect()
            }
            None => Vec::new(),
        };
        failpoint::hit("decided");
        self.batch_no += 1;
        let sync = self.config.replication.sync.clone();
        let ctx = |source: Side| ApplyContext {
            sync: &sync,
            plans,
            order: &self.order,
            source_read: if source == Side::Left { &lr } else { &rr },
            target_read: if source == Side::Left { &rr } else { &lr },
            epoch: epoch[idx(source.other())],
            batch: (epoch[idx(source.other())] << 32) | (self.batch_no & 0xffff_ffff),
            replica_role: self.replica_role[idx(source.other())],
            fks: &self.fks,
        };
        let (ctx_lr, ctx_rl) = (ctx(Side::Left), ctx(Side::Right));
        let [l, r] = conns;
        let mut temps_lr = Temps::new(&mut l.read_temps, &mut r.apply_temps);
        let mut temps_rl = Temps::new(&mut r.read_temps, &mut l.apply_temps);
        // Each direction ends its source's read transaction once its rows are staged.
        let [rel_lr, rel_rl] = Release::pair();
        let (prefetch_client, mut released) = match prefetch_source {
            Some(Side::Right) => (&r.read, rel_rl.source_released()),
            _ => (&l.read, rel_lr.source_released()),
        };
        let mut prefetch_pending = prefetch_source
            .map(|s| pending[idx(s)].clone())
            .unwrap_or_default();
        if let Some(t) = prefetch_pending.last_mut() {
            // Read the TRUNCATE log too: a TRUNCATE since this batch's read ends
            // the prefetch (the next batch is then read the usual way).
            *t = true;
        }
        let prefetch = async {
            let s = prefetch_source?;
            // Once this batch's rows are staged and the source's snapshot is gone.
            if released.wait_for(|done| *done).await.is_err() {
                return None;
            }
            let res = Self::read_side(
                plans,
                prefetch_client,
                s,
                &prefetch_pending,
                cap,
                Some(&read_seqs),
            )
            .await;
            match res {
                Ok(read) if read.truncates.is_empty() => Some(read),
                Ok(_) => {
                    let _ = prefetch_client.batch_execute("ROLLBACK").await;
                    None
                }
                Err(e) => {
                    tracing::debug!(
                        "reading the next batch ahead failed: {}",
                        crate::error_chain(&e)
                    );
                    let _ = prefetch_client.batch_execute("ROLLBACK").await;
                    None
                }
            }
        };
        let res = tokio::join!(
            apply_direction(
                &ctx_lr,
                &to_right,
                &l.read,
                &mut r.apply,
                &mut temps_lr,
                rel_lr
            ),
            apply_direction(
                &ctx_rl,
                &to_left,
                &r.read,
                &mut l.apply,
                &mut temps_rl,
                rel_rl
            ),
            prefetch,
        );
        let (a_lr, a_rl) = (res.0?, res.1?);
        if let Some((source, batch)) = deferred {
            // Both read transactions committed: so did the previous batch's
            // deletes in the one read ahead. Its ledger row can go.
            failpoint::hit("source-deleted");
            forget_batch(&conns[idx(source.other())], &sync, source, batch).await?;
        }
        // The read ahead deleted every delta this batch read: usable only if
        // the apply committed all of them (nothing rolled back, no key left for
        // the next cycle) and has no conflict to log on the source.
        let next = match (prefetch_source, res.2) {
            (Some(s), Some(read)) => {
                let applied = if s == Side::Left { &a_lr } else { &a_rl };
                let all = applied.retry.is_none()
                    && applied.late.is_empty()
                    && applied.truncate_seqs.is_empty()
                    && same_seqs(&applied.ledger, &read_seqs);
                match applied.batch {
                    Some(batch) if all => Some(Prefetch {
                        side: s,
                        read,
                        deferred: Some(Deferred {
                            ledger: read_seqs.clone(),
                            batch,
                        }),
                    }),
                    _ => {
                        conns[idx(s)].read.batch_execute("ROLLBACK").await?;
                        None
                    }
                }
            }
            _ => None,
        };
        let mut outcome = CycleOutcome {
            delta_rows: lr.delta_rows + rr.delta_rows,
            backlog: lr.cut || rr.cut,
            ..CycleOutcome::default()
        };
        for (applied, source) in [(&a_lr, Side::Left), (&a_rl, Side::Right)] {
            outcome.bytes += applied.bytes;
            self.stats.rows[idx(source.other())] += applied.rows;
            self.stats.conflicts += applied.conflicts;
        }
        // Delete what was applied on each source, then the ledger rows.
        failpoint::hit("applied");
        for (applied, source) in [(&a_lr, Side::Left), (&a_rl, Side::Right)] {
            let Some(batch) = applied.batch else { continue };
            if next.as_ref().is_some_and(|p| p.side == source) {
                // Deleted in the read ahead's transaction (its ledger row goes
                // once that committed, next cycle).
                continue;
            }
            self.delete_source(
                &conns[idx(source)],
                Some(&applied.ledger),
                &[],
                &applied.truncate_seqs,
                &applied.late,
            )
            .await?;
            failpoint::hit("source-deleted");
            forget_batch(&conns[idx(source.other())], &sync, source, batch).await?;
        }
        self.stats.batches += 1;
        if a_lr.rows + a_rl.rows > 0 || a_lr.conflicts + a_rl.conflicts > 0 {
            tracing::debug!(
                to_right = a_lr.rows,
                to_left = a_rl.rows,
                conflicts = a_lr.conflicts + a_rl.conflicts,
                "batch {} applied",
                self.batch_no
            );
        }
        for (applied, target) in [(&a_lr, Side::Right), (&a_rl, Side::Left)] {
            let n = &mut self.retries[idx(target)];
            match &applied.retry {
                None => *n = 0,
                Some(why) => {
                    *n += 1;
                    if *n >= 8 && n.is_power_of_two() {
                        tracing::warn!("the apply to the {target} side was rolled back {n} cycles in a row, the last time because: {why}");
                    } else {
                        tracing::debug!("the apply to the {target} side was rolled back and is decided again: {why}");
                    }
                }
            }
        }
        Ok((outcome, next))
    }
}

/// Deletes the ledger row of `source`'s batch `batch` on the target (`tgt`, the
/// other side), once that batch's source deltas are gone for good.
async fn forget_batch(tgt: &Conn, sync: &str, source: Side, batch: i64) -> Result<(), ReplError> {
    store::forget_applied(&tgt.apply, sync, source.as_str(), batch).await?;
    Ok(())
}

/// The next batch of a side, read while the previous one was being applied: a
/// backlog in one direction keeps the source busy reading while the target
/// writes. The read's REPEATABLE READ transaction first deletes the previous
/// batch's deltas (so the read leaves them out), and stays open on the side's
/// read session until the next batch is staged, as a read of the usual kind
/// does; its commit (after the previous batch committed on the target) is the
/// delete of those deltas, and the previous batch's ledger row goes after it.
/// The read is used only if the previous batch committed every delta it read
/// (nothing rolled back, no key left for the next cycle, no late conflict to
/// log on the source); otherwise it is rolled back and the previous batch's
/// deltas are deleted the usual way. Only the other side is read at the start
/// of the next cycle, after the previous batch committed there; its apply
/// treats the deltas deleted but not yet committed as seen (`settled`).
struct Prefetch {
    side: Side,
    read: SideRead,
    /// The previous batch's deltas deleted in the read's transaction, not yet
    /// committed: if the read is thrown away, they are deleted the usual way.
    deferred: Option<Deferred>,
}

/// Source deltas of a committed batch whose delete is not committed yet.
struct Deferred {
    /// Per plan, the seqs.
    ledger: Vec<Vec<i64>>,
    /// The batch's ledger row on the target.
    batch: i64,
}

/// The same seqs per plan, in any order.
fn same_seqs(a: &[Vec<i64>], b: &[Vec<i64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (mut x, mut y) = (x.clone(), y.clone());
            x.sort_unstable();
            y.sort_unstable();
            x == y
        })
}

/// What differs between the sides' columns of one table, if anything.
fn columns_differ(left: &[Column], right: &[Column]) -> Option<String> {
    if left.is_empty() || right.is_empty() {
        let side = if left.is_empty() { "left" } else { "right" };
        return Some(format!("the table is missing on the {side} side"));
    }
    let diffs = column_diff(left, right);
    (!diffs.is_empty()).then(|| {
        diffs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[derive(Debug, Default)]
struct CycleOutcome {
    delta_rows: usize,
    bytes: u64,
    /// A side's read was cut by the batch cap: more is waiting.
    backlog: bool,
}

/// Resolves 8 s after the stop signal (the batch in hand gets that long).
async fn wait_for_shutdown_deadline(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
}

/// Measures the clock difference between the servers and refuses `latest_wins`
/// above `[replication] max_clock_skew_ms`.
async fn check_clock_skew(config: &Config, left: &Client, right: &Client) -> Result<(), ReplError> {
    async fn offset(c: &Client) -> Result<(f64, f64), ReplError> {
        // Best of five: the sample with the shortest round trip bounds the error.
        let mut best = (f64::MAX, 0.0);
        for _ in 0..5 {
            let sent = std::time::SystemTime::now();
            let t0 = Instant::now();
            let server: f64 = c
                .query_one(
                    "SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())::float8",
                    &[],
                )
                .await?
                .get(0);
            let rtt = t0.elapsed().as_secs_f64();
            let local = sent
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
                + rtt / 2.0;
            if rtt < best.0 {
                best = (rtt, server - local);
            }
        }
        Ok(best)
    }
    let (l, r) = (offset(left).await?, offset(right).await?);
    let skew = (l.1 - r.1).abs();
    let max = config.replication.max_clock_skew.as_secs_f64();
    tracing::info!(
        "clock difference between the servers: {:.1} ms (latest_wins allows {:.0} ms)",
        skew * 1000.0,
        max * 1000.0
    );
    if skew > max {
        return Err(ReplError::Fatal(format!(
            "latest_wins needs synchronised clocks, but the servers' clocks differ by {:.0} ms (more than [replication] max_clock_skew_ms = {:.0}); \
             synchronise them (NTP/chrony) or choose another conflict policy",
            skew * 1000.0,
            max * 1000.0
        )));
    }
    Ok(())
}

/// A copy error a reconnect may cure: a connection that failed or broke.
fn copy_error_is_transient(err: &crate::copy::CopyError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            return matches!(
                RetryClass::of(pg),
                RetryClass::Concurrency | RetryClass::Connection
            );
        }
        if e.downcast_ref::<pgduplex_pg::PgError>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}
