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
use super::unit::Snapshot;
use super::{connect, CopyError, CopyOptions};
use crate::progress::{CopyProgress, ProgressStyle};

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
    pub progress: Arc<CopyProgress>,
    pub src_end: Endpoint,
    pub tgt_end: Endpoint,
    pub source_side: Side,
    pub target_extra: String,
    pub sync: String,
    /// `--mode truncate`: a table copied whole is emptied in its copy transaction.
    pub truncate_mode: bool,
    /// A table emptied in its copy transaction has its indexes dropped before the
    /// COPY and rebuilt after it, in that transaction (`[onetimecopy]
    /// rebuild_indexes`).
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
            progress: CopyProgress::new(estimated, work.units.len() as u64),
            units: work.units,
            jobs: work.jobs,
            src_end,
            tgt_end,
            source_side: options.from,
            target_extra,
            sync: sync.to_string(),
            truncate_mode: options.mode == CopyMode::Truncate,
            rebuild_in_tx: options.rebuild_indexes,
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
    let reporter = tokio::spawn(CopyProgress::report(
        shared.progress.clone(),
        style,
        stop_rx,
    ));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1).min(shared.units.len().max(1)) {
        let shared = shared.clone();
        workers.spawn(async move { shared.worker().await });
    }
    let mut first_err = None;
    while let Some(r) = workers.join_next().await {
        let r = r.unwrap_or_else(|e| Err(CopyError::from(e)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(job: usize, estimated_rows: u64) -> Unit {
        Unit {
            job,
            part: Part::whole(),
            estimated_rows,
            truncate_in_tx: false,
        }
    }

    /// A table of `units` units.
    fn table(units: usize, parents: &[usize], group: Option<usize>) -> TableOrder {
        TableOrder {
            remaining: units,
            parents: parents.to_vec(),
            group,
        }
    }

    /// Every unit handed out now, in order, until the schedule says wait or done.
    fn take_ready(s: &mut Schedule) -> Vec<usize> {
        let mut out = Vec::new();
        while let Next::Unit(u) = s.next() {
            out.push(u);
        }
        out
    }

    #[test]
    fn largest_units_first_ties_in_plan_order() {
        let units = [
            unit(0, 10),
            unit(1, 30),
            unit(2, 20),
            unit(2, 20),
            unit(3, 0),
        ];
        let tables = vec![
            table(1, &[], None),
            table(1, &[], None),
            table(2, &[], None),
            table(1, &[], None),
        ];
        let mut s = Schedule::new(&units, tables);
        assert_eq!(take_ready(&mut s), [1, 2, 3, 0, 4]);
        // Nothing left to hand out: done, although every unit is still running
        // (a worker stops; the others finish theirs).
        assert_eq!(s.next(), Next::Done);
    }

    #[test]
    fn no_units_is_done_at_once() {
        let mut s = Schedule::new(&[], vec![table(0, &[], None)]);
        assert_eq!(s.next(), Next::Done);
    }

    #[test]
    fn a_child_waits_until_every_part_of_its_parents_is_committed() {
        // Table 0 (two ranges) is the parent of table 1 (the largest unit);
        // table 2 is on its own. Tables 0 and 1 share snapshot group 0.
        let units = [unit(0, 5), unit(0, 5), unit(1, 100), unit(2, 1)];
        let tables = vec![
            table(2, &[], Some(0)),
            table(1, &[0], Some(0)),
            table(1, &[], None),
        ];
        let mut s = Schedule::new(&units, tables);
        // The child is skipped, not waited for: the others go first.
        assert_eq!(take_ready(&mut s), [0, 1, 3]);
        assert_eq!(s.next(), Next::Wait, "the parent's ranges are running");
        assert_eq!(s.finished(0), None);
        assert_eq!(s.next(), Next::Wait, "handed out is not committed");
        assert_eq!(s.finished(3), None, "no group");
        assert_eq!(s.next(), Next::Wait);
        assert_eq!(s.finished(1), None, "the child's unit is still to come");
        assert_eq!(s.next(), Next::Unit(2));
        assert_eq!(s.next(), Next::Done);
        assert_eq!(s.finished(2), Some(0), "the group's last unit");
    }

    #[test]
    fn a_chain_of_parents_is_copied_in_order() {
        // 2 references 1, 1 references 0; the children are the largest.
        let units = [unit(2, 300), unit(1, 200), unit(0, 100)];
        let tables = vec![
            table(1, &[], Some(0)),
            table(1, &[0], Some(0)),
            table(1, &[1], Some(0)),
        ];
        let mut s = Schedule::new(&units, tables);
        let mut order = Vec::new();
        for i in 0..3 {
            let Next::Unit(u) = s.next() else {
                panic!("a unit is ready")
            };
            let then = if i < 2 { Next::Wait } else { Next::Done };
            assert_eq!(s.next(), then);
            order.push(u);
            assert_eq!(s.finished(u), (i == 2).then_some(0));
        }
        assert_eq!(order, [2, 1, 0]);
    }

    #[test]
    fn each_group_is_released_once_after_its_last_unit() {
        // Group 0: tables 0 (two ranges) and 1; group 1: tables 2 and 3; table 4
        // alone. No parents (`--fk drop-readd`: the keys are validated after).
        let units = [
            unit(0, 9),
            unit(0, 9),
            unit(1, 8),
            unit(2, 7),
            unit(3, 6),
            unit(4, 5),
        ];
        let tables = vec![
            table(2, &[], Some(0)),
            table(1, &[], Some(0)),
            table(1, &[], Some(1)),
            table(1, &[], Some(1)),
            table(1, &[], None),
        ];
        let mut s = Schedule::new(&units, tables);
        assert_eq!(take_ready(&mut s), [0, 1, 2, 3, 4, 5]);
        let released: Vec<(usize, Option<usize>)> = [3, 0, 5, 2, 4, 1]
            .into_iter()
            .map(|u| (u, s.finished(u)))
            .collect();
        assert_eq!(
            released,
            [
                (3, None),
                (0, None),
                (5, None),
                (2, None),
                (4, Some(1)),
                (1, Some(0)),
            ]
        );
    }

    #[test]
    fn every_unit_is_handed_out_exactly_once() {
        // Four workers against a mixed plan: parents, groups, ranges, ties.
        let units: Vec<Unit> = [
            (0, 50),
            (0, 50),
            (0, 50),
            (1, 70),
            (2, 10),
            (2, 90),
            (3, 40),
            (4, 40),
            (5, 1),
        ]
        .into_iter()
        .map(|(j, e)| unit(j, e))
        .collect();
        let tables = vec![
            table(3, &[], Some(0)),
            table(1, &[0], Some(0)),
            table(2, &[1], Some(0)),
            table(1, &[], Some(1)),
            table(1, &[], Some(1)),
            table(1, &[], None),
        ];
        let parents: Vec<Vec<usize>> = tables.iter().map(|t| t.parents.clone()).collect();
        let mut s = Schedule::new(&units, tables);
        let mut running: Vec<usize> = Vec::new();
        let mut committed: Vec<usize> = Vec::new();
        let mut handed: Vec<usize> = Vec::new();
        loop {
            while running.len() < 4 {
                let Next::Unit(u) = s.next() else { break };
                // Every part of its parents is committed.
                for &p in &parents[units[u].job] {
                    let parts = units.iter().filter(|x| x.job == p).count();
                    let done = committed.iter().filter(|&&c| units[c].job == p).count();
                    assert_eq!(done, parts, "unit {u} handed out before its parent {p}");
                }
                handed.push(u);
                running.push(u);
            }
            if running.is_empty() {
                break;
            }
            // The oldest running unit commits.
            let u = running.remove(0);
            s.finished(u);
            committed.push(u);
        }
        assert_eq!(s.next(), Next::Done);
        let mut sorted = handed.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..units.len()).collect::<Vec<_>>(), "{handed:?}");
        assert_eq!(committed.len(), units.len());
    }

    #[test]
    fn cancel_stops_dispatch() {
        let units = [unit(0, 3), unit(1, 2), unit(2, 1)];
        let tables = vec![
            table(1, &[], None),
            table(1, &[], None),
            table(1, &[0], None),
        ];
        let mut s = Schedule::new(&units, tables);
        assert_eq!(s.next(), Next::Unit(0));
        s.cancel();
        assert_eq!(
            s.next(),
            Next::Done,
            "a ready unit is left, but not handed out"
        );
        // A unit that was running when the copy failed may still commit; nothing
        // is handed out after it either.
        assert_eq!(s.finished(0), None);
        assert_eq!(s.next(), Next::Done);
    }

    #[test]
    fn cancelling_the_shared_state_stops_dispatch_and_running_pipes() {
        use std::collections::BTreeSet;
        use std::path::Path;

        use pgduplex_config::{Config, FkStrategy};

        use crate::copy::fixtures::{recorded, table};
        use crate::copy::plan::{self, FkLinks};

        let config = Config::parse(
            "[left]\nurl = \"postgres://app@left.invalid/app\"\n\
             [right]\nurl = \"postgres://app@right.invalid/app\"\n",
            Path::new("pgduplex.toml"),
            &|_| None,
        )
        .expect("a valid configuration");
        let [left, right] = crate::pair::endpoints(&config).expect("no TLS files to read");
        let t = table("t", 1);
        let ranges = plan::split("id", 1, 100, 2);
        let work = plan::work(
            &[(t.clone(), t.clone())],
            &recorded(&[(
                "t",
                vec![(ranges[0].clone(), false), (ranges[1].clone(), false)],
            )]),
            &HashMap::new(),
            &BTreeSet::new(),
            &FkLinks::new(std::slice::from_ref(&t.name), &[], FkStrategy::Order),
            false,
        );
        let options = CopyOptions::from_config(&config);
        let shared = Shared::new(work, left, right, String::new(), "default", &options);
        assert_eq!(shared.next(), Next::Unit(0));
        assert!(!shared.cancelled.load(Ordering::SeqCst));
        shared.cancel();
        assert!(
            shared.cancelled.load(Ordering::SeqCst),
            "running pipes stop"
        );
        assert_eq!(
            shared.next(),
            Next::Done,
            "the second range is not handed out"
        );
    }
}
