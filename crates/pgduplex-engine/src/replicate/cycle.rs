//! One cycle of the daemon: poll both sides, read each side's deltas in one
//! snapshot, decide the directions (conflicts, foreign keys), apply both
//! directions at once, then delete what was applied on each source; and the
//! read ahead of a one-way backlog ([`Prefetch`]).

use std::collections::{BTreeMap, HashMap};

use pgduplex_config::Side;
use pgduplex_pg::store;
use tokio_postgres::Client;

use super::apply::{apply_direction, Applied, ApplyContext, Release, Temps};
use super::batch::{self, idx, plan_directions, Direction, Key, SideRead, TruncateEvent};
use super::plan::{self, TablePlan};
use super::session::{forget_batch, Conn};
use super::{failpoint, fk, ReplError, Replicator};

impl Replicator {
    /// Throws a read ahead away (rolls its transaction back) and deletes the
    /// previous batch's source deltas, which that transaction had deleted, the
    /// usual way.
    pub(super) async fn discard(&self, conns: &[Conn; 2], p: Prefetch) -> Result<(), ReplError> {
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

    /// One query per side: which delta tables hold rows, and the TRUNCATE log
    /// (last entry). `[side][plan]`, plus one trailing flag for TRUNCATEs.
    pub(super) async fn poll(&self, conns: &[Conn; 2]) -> Result<[Vec<bool>; 2], ReplError> {
        let (l, r) = tokio::try_join!(
            conns[0].apply.query_one(&conns[0].poll, &[]),
            conns[1].apply.query_one(&conns[1].poll, &[])
        )?;
        Ok([l.get(0), r.get(0)])
    }

    /// The poll of one side (see [`Self::poll`]).
    pub(super) fn poll_sql(&self, side: Side) -> String {
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
    pub(super) async fn cycle(
        &mut self,
        conns: &mut [Conn; 2],
        pending: &[Vec<bool>; 2],
        epoch: [i64; 2],
        cap: usize,
        prefetched: Option<Prefetch>,
    ) -> Result<(CycleOutcome, Option<Prefetch>), ReplError> {
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
        let [lr, rr] = self.read_both(conns, pending, cap, prefetched).await?;
        let [to_right, to_left] = self.decide(conns, [&lr, &rr]).await?;
        let ahead = read_ahead(&self.plans, [&lr, &rr], [&to_right, &to_left], pending, cap);
        failpoint::hit("decided");
        self.batch_no += 1;
        let (a_lr, a_rl, read) = self
            .apply_both(
                conns,
                epoch,
                [&lr, &rr],
                [&to_right, &to_left],
                ahead.as_ref(),
            )
            .await?;
        let sync = &self.config.replication.sync;
        if let Some((source, batch)) = deferred {
            // Both read transactions committed: so did the previous batch's
            // deletes in the one read ahead. Its ledger row can go.
            failpoint::hit("source-deleted");
            forget_batch(&conns[idx(source.other())], sync, source, batch).await?;
        }
        let next = keep_read_ahead(conns, ahead, read, [&a_lr, &a_rl]).await?;
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
        self.delete_applied(conns, [&a_lr, &a_rl], next.as_ref())
            .await?;
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
        self.count_retries([&a_lr, &a_rl]);
        Ok((outcome, next))
    }

    /// Both sides' reads of the batch: the read taken ahead, if any, and a new
    /// read of the other side; else both sides, at once.
    async fn read_both(
        &self,
        conns: &[Conn; 2],
        pending: &[Vec<bool>; 2],
        cap: usize,
        prefetched: Option<Prefetch>,
    ) -> Result<[SideRead; 2], ReplError> {
        let plans = &self.plans;
        let read =
            |s: Side| Self::read_side(plans, &conns[idx(s)].read, s, &pending[idx(s)], cap, None);
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
        Ok([lr, rr])
    }

    /// The work of both directions from both reads: keys pending on both sides
    /// decided by policy ([`plan_directions`]), then the foreign keys between
    /// the sides' changes ([`fk::resolve`]). `[to right, to left]`.
    async fn decide(
        &self,
        conns: &[Conn; 2],
        reads: [&SideRead; 2],
    ) -> Result<[Direction; 2], ReplError> {
        let plans = &self.plans;
        let images = self.conflict_images(conns, reads).await?;
        let mut dirs = plan_directions(plans, reads, &images);
        let fk_conflicts = fk::resolve(
            &self.fks,
            plans,
            reads,
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
        Ok(dirs)
    }

    /// Applies both directions at once, each in one transaction on its target,
    /// and meanwhile takes the read ahead, if any, once its source's read
    /// transaction has ended. Returns what each direction applied (left to
    /// right, right to left) and the read ahead, if it was taken.
    async fn apply_both(
        &self,
        conns: &mut [Conn; 2],
        epoch: [i64; 2],
        reads: [&SideRead; 2],
        dirs: [&Direction; 2],
        ahead: Option<&ReadAhead>,
    ) -> Result<(Applied, Applied, Option<SideRead>), ReplError> {
        let plans = &self.plans;
        let [lr, rr] = reads;
        let [to_right, to_left] = dirs;
        let sync = &self.config.replication.sync;
        let ctx = |source: Side| ApplyContext {
            sync,
            plans,
            order: &self.order,
            source_read: if source == Side::Left { lr } else { rr },
            target_read: if source == Side::Left { rr } else { lr },
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
        let (prefetch_client, mut released) = match ahead.map(|a| a.side) {
            Some(Side::Right) => (&r.read, rel_rl.source_released()),
            _ => (&l.read, rel_lr.source_released()),
        };
        let prefetch = async {
            let a = ahead?;
            // Once this batch's rows are staged and the source's snapshot is gone.
            if released.wait_for(|done| *done).await.is_err() {
                return None;
            }
            let res = Self::read_side(
                plans,
                prefetch_client,
                a.side,
                &a.pending,
                a.cap,
                Some(&a.read_seqs),
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
                to_right,
                &l.read,
                &mut r.apply,
                &mut temps_lr,
                rel_lr
            ),
            apply_direction(
                &ctx_rl,
                to_left,
                &r.read,
                &mut l.apply,
                &mut temps_rl,
                rel_rl
            ),
            prefetch,
        );
        Ok((res.0?, res.1?, res.2))
    }

    /// Deletes what was applied on each source (`applied`: left to right,
    /// right to left), then the ledger rows; except where the read ahead
    /// (`next`) deleted them in its transaction.
    async fn delete_applied(
        &self,
        conns: &[Conn; 2],
        applied: [&Applied; 2],
        next: Option<&Prefetch>,
    ) -> Result<(), ReplError> {
        let sync = &self.config.replication.sync;
        for (applied, source) in [(applied[0], Side::Left), (applied[1], Side::Right)] {
            let Some(batch) = applied.batch else { continue };
            if next.is_some_and(|p| p.side == source) {
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
            forget_batch(&conns[idx(source.other())], sync, source, batch).await?;
        }
        Ok(())
    }

    /// Counts, per target, the cycles in a row whose apply was rolled back
    /// (`applied`: left to right, right to left), and says why.
    fn count_retries(&mut self, applied: [&Applied; 2]) {
        for (applied, target) in [(applied[0], Side::Right), (applied[1], Side::Left)] {
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
    }
}

/// What the read ahead of a cycle reads (see [`Prefetch`]).
struct ReadAhead {
    side: Side,
    /// The side's pending delta tables, and the TRUNCATE log.
    pending: Vec<bool>,
    cap: usize,
    /// Every delta this batch read on the side, per plan: deleted in the read
    /// ahead.
    read_seqs: Vec<Vec<i64>>,
}

/// The read ahead of this cycle, if any: only with a backlog in one direction
/// (the source's read was cut, the other direction has nothing to do) and no
/// TRUNCATE pending on either side.
fn read_ahead(
    plans: &[TablePlan],
    [lr, rr]: [&SideRead; 2],
    [to_right, to_left]: [&Direction; 2],
    pending: &[Vec<bool>; 2],
    cap: usize,
) -> Option<ReadAhead> {
    let n = plans.len();
    let side = match (to_right.is_idle(), to_left.is_idle()) {
        (false, true) if lr.cut => Some(Side::Left),
        (true, false) if rr.cut => Some(Side::Right),
        _ => None,
    }
    .filter(|_| !pending[0][n] && !pending[1][n])?;
    let src = if side == Side::Left { lr } else { rr };
    let read_seqs = (0..n).map(|i| src.seqs_of(i)).collect();
    let mut pending = pending[idx(side)].clone();
    if let Some(t) = pending.last_mut() {
        // Read the TRUNCATE log too: a TRUNCATE since this batch's read ends
        // the prefetch (the next batch is then read the usual way).
        *t = true;
    }
    Some(ReadAhead {
        side,
        pending,
        cap,
        read_seqs,
    })
}

/// The read ahead deleted every delta this batch read: usable only if the
/// apply committed all of them (nothing rolled back, no key left for the next
/// cycle) and has no conflict to log on the source. Otherwise its transaction
/// is rolled back. `applied`: left to right, right to left.
async fn keep_read_ahead(
    conns: &[Conn; 2],
    ahead: Option<ReadAhead>,
    read: Option<SideRead>,
    applied: [&Applied; 2],
) -> Result<Option<Prefetch>, ReplError> {
    let (Some(ahead), Some(read)) = (ahead, read) else {
        return Ok(None);
    };
    let s = ahead.side;
    let applied = applied[idx(s)];
    let all = applied.retry.is_none()
        && applied.late.is_empty()
        && applied.truncate_seqs.is_empty()
        && same_seqs(&applied.ledger, &ahead.read_seqs);
    match applied.batch {
        Some(batch) if all => Ok(Some(Prefetch {
            side: s,
            read,
            deferred: Some(Deferred {
                ledger: ahead.read_seqs,
                batch,
            }),
        })),
        _ => {
            conns[idx(s)].read.batch_execute("ROLLBACK").await?;
            Ok(None)
        }
    }
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
pub(super) struct Prefetch {
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

#[derive(Debug, Default)]
pub(super) struct CycleOutcome {
    pub(super) delta_rows: usize,
    pub(super) bytes: u64,
    /// A side's read was cut by the batch cap: more is waiting.
    pub(super) backlog: bool,
}
