//! The copy's scheduler: the units (tables and key ranges) still to copy, which
//! one a worker takes next (largest ready first, parents before children under
//! `--fk order`), the state the workers share, and the worker loop.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pgduplex_config::Side;
use pgduplex_pg::{Endpoint, TableName};
use tokio_postgres::Client;

use super::plan::{Part, TableJob};
use super::progress::Progress;
use super::unit::Snapshot;
use super::{connect, CopyError};

/// One table or range to copy.
pub(super) struct Unit {
    pub job: usize,
    pub part: Part,
    pub estimated_rows: u64,
    /// Empty the table in the copy transaction (then COPY FREEZE).
    pub truncate_in_tx: bool,
}

/// The copy's shared state: what is left, what is ready.
pub(super) struct Schedule {
    pub pending: Vec<usize>,
    pub remaining: Vec<usize>,
    pub parents: Vec<Vec<usize>>,
    pub group_left: HashMap<usize, usize>,
    pub failed: bool,
}

impl Schedule {
    /// The largest ready unit (all its table's parents copied), if any.
    fn next(&mut self, units: &[Unit]) -> Option<usize> {
        let pos = self.pending.iter().position(|&u| {
            self.parents[units[u].job]
                .iter()
                .all(|&p| self.remaining[p] == 0)
        })?;
        Some(self.pending.remove(pos))
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

pub(super) enum Next {
    Unit(usize),
    Wait,
    Done,
}

impl Shared {
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed = true;
        self.wake.notify_waiters();
    }

    fn next(&self) -> Next {
        let mut s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        if s.failed || s.pending.is_empty() {
            return Next::Done;
        }
        match s.next(&self.units) {
            Some(u) => Next::Unit(u),
            None => Next::Wait,
        }
    }

    pub(super) async fn worker(self: Arc<Self>) -> Result<(), CopyError> {
        let mut conns: Option<(Client, Client)> = None;
        loop {
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
            let result = self.copy_unit(u, src, tgt).await;
            let unit = &self.units[u];
            let job = &self.jobs[unit.job];
            if let Err(e) = result {
                // The connections may be mid-COPY: never reuse them.
                drop(conns.take());
                return Err(e);
            }
            let group_done = {
                let mut s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
                s.remaining[unit.job] -= 1;
                match job.group {
                    Some(g) => {
                        let left = s.group_left.get_mut(&g).expect("counted at start");
                        *left -= 1;
                        (*left == 0).then_some(g)
                    }
                    None => None,
                }
            };
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
