//! The copy's scheduler: which unit (a table or a key range) a worker takes
//! next, the state the workers share, and the worker loop.
//!
//! [`Schedule`] is the bookkeeping alone, without I/O (and unit-tested): units
//! are handed out largest estimate first, each once; under `--fk order` a
//! table's units wait until every part of its parent tables is committed; a
//! snapshot group's exported snapshot is released when the group's last unit is
//! committed; after a failure nothing more is handed out. [`Shared`] holds it
//! behind a mutex, with what the workers need to copy a unit (`unit.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pgduplex_config::{CopyMode, Side};
use pgduplex_pg::{Endpoint, TableName};
use tokio_postgres::Client;

use super::plan::{Part, TableJob, Work};
use super::progress::{self, Progress, ProgressStyle};
use super::unit::Snapshot;
use super::{connect, CopyError, CopyOptions};

/// One table or range to copy.
pub(super) struct Unit {
    /// Its table: an index into the jobs.
    pub job: usize,
    pub part: Part,
    pub estimated_rows: u64,
    /// Empty the table in the copy transaction (then COPY FREEZE).
    pub truncate_in_tx: bool,
}

/// What the schedule knows of a table (a job).
#[derive(Clone, Debug, Default)]
pub(super) struct TableOrder {
    /// Its units not committed yet.
    pub remaining: usize,
    /// Tables whose units must all be committed before any of its units is
    /// handed out.
    pub parents: Vec<usize>,
    /// Its snapshot group.
    pub group: Option<usize>,
}

impl TableOrder {
    pub(super) fn of(job: &TableJob) -> TableOrder {
        TableOrder {
            remaining: job.remaining,
            parents: job.parents.clone(),
            group: job.group,
        }
    }
}

/// The copy's bookkeeping: what is left, what is ready.
pub(super) struct Schedule {
    /// Units not handed out yet, largest estimate first (ties in plan order).
    pending: Vec<usize>,
    /// Per unit: its table.
    table_of: Vec<usize>,
    tables: Vec<TableOrder>,
    /// Per snapshot group: its units not committed yet.
    group_left: HashMap<usize, usize>,
    /// A unit failed: nothing more is handed out.
    failed: bool,
}

/// What a worker does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Copy this unit.
    Unit(usize),
    /// Units are left but none is ready (their parents are being copied): wait
    /// for a unit to be committed.
    Wait,
    /// Nothing left to hand out (or the copy failed): stop.
    Done,
}

impl Schedule {
    /// `units` of `tables` (one [`TableOrder`] per job, `remaining` counting its
    /// units).
    pub(super) fn new(units: &[Unit], tables: Vec<TableOrder>) -> Schedule {
        let mut pending: Vec<usize> = (0..units.len()).collect();
        // A stable sort: equal estimates keep the plan's order.
        pending.sort_by_key(|&u| std::cmp::Reverse(units[u].estimated_rows));
        let mut group_left: HashMap<usize, usize> = HashMap::new();
        for u in units {
            if let Some(g) = tables[u.job].group {
                *group_left.entry(g).or_default() += 1;
            }
        }
        Schedule {
            pending,
            table_of: units.iter().map(|u| u.job).collect(),
            tables,
            group_left,
            failed: false,
        }
    }

    /// The largest ready unit (all its table's parents copied), removed from the
    /// pending ones.
    pub(super) fn next(&mut self) -> Next {
        if self.failed || self.pending.is_empty() {
            return Next::Done;
        }
        let ready = self.pending.iter().position(|&u| {
            self.tables[self.table_of[u]]
                .parents
                .iter()
                .all(|&p| self.tables[p].remaining == 0)
        });
        match ready {
            Some(pos) => Next::Unit(self.pending.remove(pos)),
            None => Next::Wait,
        }
    }

    /// Unit `u` is committed. Returns its snapshot group when this was the
    /// group's last unit: the group's snapshot may be released.
    pub(super) fn finished(&mut self, u: usize) -> Option<usize> {
        let table = &mut self.tables[self.table_of[u]];
        table.remaining -= 1;
        let g = table.group?;
        let left = self.group_left.get_mut(&g).expect("counted at start");
        *left -= 1;
        (*left == 0).then_some(g)
    }

    /// A unit failed: hand out nothing more.
    pub(super) fn cancel(&mut self) {
        self.failed = true;
    }
}

#[derive(Default)]
pub(super) struct Stats {
    pub rows: u64,
    pub bytes: u64,
    pub parts: usize,
    pub tables: BTreeSet<TableName>,
}

/// What the workers share.
pub(super) struct Shared {
    pub schedule: Mutex<Schedule>,
    pub wake: tokio::sync::Notify,
    pub snapshots: tokio::sync::Mutex<HashMap<usize, Arc<Snapshot>>>,
    pub units: Vec<Unit>,
    pub jobs: Vec<TableJob>,
    pub progress: Arc<Progress>,
    pub src_end: Endpoint,
    pub tgt_end: Endpoint,
    pub source_side: Side,
    pub target_extra: String,
    pub sync: String,
    /// `--mode truncate`: a table copied whole is emptied in its copy transaction.
    pub truncate_mode: bool,
    /// A table emptied in its copy transaction has its indexes dropped before the
    /// COPY and rebuilt after it, in that transaction (on unless
    /// PGDUPLEX_COPY_KEEP_INDEXES=1).
    pub rebuild_in_tx: bool,
    pub stats: Mutex<Stats>,
    pub cancelled: AtomicBool,
}

impl Shared {
    /// `work` copied from `src_end` to `tgt_end`, whose sessions run
    /// `target_extra`.
    pub(super) fn new(
        work: Work,
        src_end: Endpoint,
        tgt_end: Endpoint,
        target_extra: String,
        sync: &str,
        options: &CopyOptions,
    ) -> Shared {
        let estimated: u64 = work.units.iter().map(|u| u.estimated_rows).sum();
        let tables = work.jobs.iter().map(TableOrder::of).collect();
        Shared {
            schedule: Mutex::new(Schedule::new(&work.units, tables)),
            wake: tokio::sync::Notify::new(),
            snapshots: tokio::sync::Mutex::new(HashMap::new()),
            progress: Progress::new(estimated, work.units.len() as u64),
            units: work.units,
            jobs: work.jobs,
            src_end,
            tgt_end,
            source_side: options.from,
            target_extra,
            sync: sync.to_string(),
            truncate_mode: options.mode == CopyMode::Truncate,
            rebuild_in_tx: std::env::var("PGDUPLEX_COPY_KEEP_INDEXES").as_deref() != Ok("1"),
            stats: Mutex::new(Stats::default()),
            cancelled: AtomicBool::new(false),
        }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the copy: no unit is handed out any more, and running pipes stop
    /// at their next buffer.
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.schedule().cancel();
        self.wake.notify_waiters();
    }

    fn next(&self) -> Next {
        self.schedule().next()
    }

    /// Takes units until none is left, on its own pair of connections (opened
    /// at its first unit). A failed unit ends the worker with its error.
    pub(super) async fn worker(self: Arc<Self>) -> Result<(), CopyError> {
        let mut conns: Option<(Client, Client)> = None;
        loop {
            // Registered before looking, so that a commit in between still wakes us.
            let notified = self.wake.notified();
            let u = match self.next() {
                Next::Done => return Ok(()),
                Next::Wait => {
                    notified.await;
                    continue;
                }
                Next::Unit(u) => u,
            };
            if conns.is_none() {
                let s = connect(&self.src_end, self.source_side, "").await?;
                let t =
                    connect(&self.tgt_end, self.source_side.other(), &self.target_extra).await?;
                conns = Some((s, t));
            }
            let (src, tgt) = conns.as_mut().expect("connected above");
            if let Err(e) = self.copy_unit(u, src, tgt).await {
                // The connections may be mid-COPY: never reuse them.
                drop(conns.take());
                return Err(e);
            }
            let group_done = self.schedule().finished(u);
            if let Some(g) = group_done {
                if let Some(snap) = self.snapshots.lock().await.remove(&g) {
                    let _ = snap.client.batch_execute("ROLLBACK").await;
                    tracing::info!(group = g, "shared snapshot released");
                }
            }
            self.wake.notify_waiters();
        }
    }
}

/// Runs the copy on up to `jobs` workers, with progress shown in `style`. The
/// first error cancels the others and is returned once all have stopped and the
/// exported snapshots left are closed.
pub(super) async fn run_workers(
    shared: &Arc<Shared>,
    jobs: usize,
    style: ProgressStyle,
) -> Result<(), CopyError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reporter = tokio::spawn(progress::report(shared.progress.clone(), style, stop_rx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1).min(shared.units.len().max(1)) {
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
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
