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
//!
//! # Where things are
//!
//! - `mod.rs`: [`Replicator`]: [`Replicator::prepare`] (the plans, from the
//!   analysed pair), the run loop (reconnect with backoff; per session: lock,
//!   lease, initial copy, recovery, then cycles at their pace), [`ReplError`].
//! - `session.rs`: the connections, the advisory lock and the lease, recovery
//!   from the ledger, the delete of applied deltas.
//! - `cycle.rs`: one cycle (steps 1 to 5 above) and the read ahead.
//! - `drift.rs`: the column check that pauses and resumes a table.
//! - [`batch`]: what a cycle read, and the decisions per direction.
//! - [`fk`]: foreign keys between the sides' changes.
//! - [`apply`]: the apply transaction of one direction; `write.rs`: its
//!   writes, with the per-row fallback.
//! - [`plan`]: one table as the daemon applies it, and its SQL.
//! - `clock.rs`: the clock check of `latest_wins`.
//! - [`failpoint`]: fail points for the crash tests (cargo feature).

pub mod apply;
pub mod batch;
mod clock;
mod cycle;
mod drift;
pub mod failpoint;
pub mod fk;
pub mod plan;
mod session;
mod write;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgduplex_config::{Config, ConflictPolicy, Side};
use pgduplex_pg::catalog::foreign_key_order;
use pgduplex_pg::install::installed_tables;
use pgduplex_pg::retry::{Backoff, RetryClass};
use pgduplex_pg::session as pg_session;
use pgduplex_pg::{Endpoint, TableName};
use tokio::sync::watch;

use self::cycle::Prefetch;
use self::plan::TablePlan;
use self::session::Conn;
use crate::check::Analysis;
use crate::copy::CopyError;
use crate::pair::endpoints;
use crate::{setup, EngineError};

/// Errors of the daemon. All but the fatal ones ([`ReplError::Fatal`],
/// [`ReplError::CopyFailed`], a pair that is not ready) are retried after a
/// reconnect with backoff.
///
/// No variant repeats its cause in its own message: the cause is the error's
/// source, and [`crate::error_chain`] prints "message: cause". The wrappers of
/// a cause that needs no words of the daemon's are transparent.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the {0} side's lease moved on: another daemon took over this sync")]
    LeaseLost(Side),
    /// The initial copy failed in a way a reconnect may cure.
    #[error("the initial copy was interrupted")]
    Copy(#[source] CopyError),
    /// The initial copy failed in a way a reconnect does not cure (what to do
    /// is in the copy's message).
    #[error(transparent)]
    CopyFailed(CopyError),
    /// A problem a reconnect does not cure; the message says what to do.
    #[error("{0}")]
    Fatal(String),
}

impl ReplError {
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            ReplError::Fatal(_)
                | ReplError::CopyFailed(_)
                | ReplError::Engine(EngineError::NotReady { .. })
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
            if let Some((installed, session)) = pg_session::apply_role(&state.client, sync)
                .await?
                .mismatch()
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
            clock::check_clock_skew(config, &left.client, &right.client).await?;
        }
        // The lease's owner: `[replication] daemon_name` (the host name by
        // default), the version and the process.
        let owner = format!(
            "{}@{} pid {}",
            config.replication.daemon_name(),
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
        let conns = self.connect_both().await?;
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
        let Some(epoch) = self.lock_and_lease(&conns, shutdown).await? else {
            return Ok(());
        };
        if !self.initial_copy(shutdown).await? {
            return Ok(());
        }
        tracing::info!(
            tables = self.plans.len(),
            "replicating {} table(s) as sync {:?} (lease epochs left {}, right {})",
            self.plans.len(),
            self.config.replication.sync,
            epoch[0],
            epoch[1]
        );
        self.recover(&conns).await?;
        let all: Vec<usize> = (0..self.plans.len()).collect();
        self.check_columns(&conns, &all).await?;
        self.cycles(&mut conns, epoch, options, shutdown).await
    }

    /// The cycles of a session, until a stop signal (or, with `until_idle`,
    /// until nothing is pending): poll, the column check of the tables with
    /// changes, a cycle when anything is pending, and the pace between cycles.
    async fn cycles(
        &mut self,
        conns: &mut [Conn; 2],
        epoch: [i64; 2],
        options: Options,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ReplError> {
        let poll = self.config.replication.poll_interval;
        let max_rows = self.config.replication.batch_rows as usize;
        let mut rows_cap = max_rows;
        let bytes_cap = u64::from(self.config.replication.batch_megabytes) * 1024 * 1024;
        let mut prefetched: Option<Prefetch> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let mut pending = self.poll(conns).await?;
            let touched: Vec<usize> = (0..self.plans.len())
                .filter(|&i| pending[0][i] || pending[1][i])
                .collect();
            let before = (self.paused.clone(), self.plan_columns());
            self.check_columns(conns, &touched).await?;
            if prefetched.is_some() && before != (self.paused.clone(), self.plan_columns()) {
                // Read under other plans: read again.
                if let Some(p) = prefetched.take() {
                    self.discard(conns, p).await?;
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
                    self.discard(conns, p).await?;
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
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let started = Instant::now();
            // A signal lets the batch in hand finish, but not for ever.
            let outcome = {
                // Boxed: the cycle's future is large, and the session's stays small.
                let mut cycle =
                    Box::pin(self.cycle(conns, &pending, epoch, rows_cap, prefetched.take()));
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
            Err(e) if copy_error_is_transient(&e) => return Err(ReplError::Copy(e)),
            Err(e) => return Err(ReplError::CopyFailed(e)),
        }
        self.copy_checked = true;
        self.pair = None;
        Ok(true)
    }
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

/// A copy error a reconnect may cure: a connection that failed or broke.
fn copy_error_is_transient(err: &CopyError) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_error() -> CopyError {
        CopyError::FkCycle {
            side: Side::Right,
            tables: "public.a, public.b".into(),
        }
    }

    #[test]
    fn copy_errors_keep_their_cause_as_the_source() {
        let interrupted = ReplError::Copy(copy_error());
        assert_eq!(interrupted.to_string(), "the initial copy was interrupted");
        assert_eq!(
            crate::error_chain(&interrupted),
            format!("the initial copy was interrupted: {}", copy_error())
        );
        assert!(std::error::Error::source(&interrupted)
            .is_some_and(|s| s.downcast_ref::<CopyError>().is_some()));
        assert!(!interrupted.is_fatal());

        let failed = ReplError::CopyFailed(copy_error());
        assert_eq!(crate::error_chain(&failed), copy_error().to_string());
        assert!(failed.is_fatal());
    }
}
