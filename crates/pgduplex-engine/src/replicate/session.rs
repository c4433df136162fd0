//! The daemon's sessions on both sides: connecting ([`Conn`]), the sync's
//! advisory lock and the lease, and recovery from the ledger (deltas a killed
//! daemon applied but did not delete), with the deletes of applied deltas that
//! the cycle uses too.

use std::collections::HashSet;
use std::time::Duration;

use pgduplex_config::Side;
use pgduplex_pg::{session, store, Endpoint};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::batch::{self, idx};
use super::{apply, plan, ReplError, Replicator};
use crate::EngineError;

/// One side's sessions.
pub(super) struct Conn {
    pub(super) side: Side,
    /// Holds the advisory lock; polls, applies, deletes.
    pub(super) apply: Client,
    /// Read transactions (snapshots).
    pub(super) read: Client,
    pub(super) read_temps: HashSet<String>,
    pub(super) apply_temps: HashSet<String>,
    /// [`plan::COLUMNS_SQL`] and the poll, prepared once per session on `apply`
    /// (they run every busy cycle; planning them each time cost more than
    /// running them).
    pub(super) columns: tokio_postgres::Statement,
    pub(super) poll: tokio_postgres::Statement,
}

/// A new session on one side, with the daemon's settings.
async fn connect(side: Side, endpoint: &Endpoint) -> Result<Client, ReplError> {
    let client = endpoint.connect().await.map_err(EngineError::side(side))?;
    // No JIT: a batch's statements are costed above `jit_above_cost` from a few
    // ten thousand keys on, and compiling them takes longer than running them.
    session::pin_settings(&client, "SET jit = off").await?;
    Ok(client)
}

impl Replicator {
    /// Both sides' sessions (two per side), with the statements prepared.
    pub(super) async fn connect_both(&self) -> Result<[Conn; 2], ReplError> {
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
        conns
            .try_into()
            .map_err(|_| ReplError::Fatal("two sides".into()))
    }

    /// The advisory lock on both sides, left first then right (one order for
    /// every daemon), then a new lease epoch on each side. `None`: a stop
    /// signal came while waiting for the lock.
    pub(super) async fn lock_and_lease(
        &self,
        conns: &[Conn; 2],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<[i64; 2]>, ReplError> {
        for c in conns {
            if !self.lock(c, shutdown).await? {
                return Ok(None);
            }
        }
        let sync = &self.config.replication.sync;
        let mut epoch = [0i64; 2];
        for c in conns {
            epoch[idx(c.side)] = store::take_lease(&c.apply, sync, &self.owner).await?;
        }
        Ok(Some(epoch))
    }

    /// Waits for the advisory lock of the sync on `c`'s side. `Ok(false)`: a
    /// stop signal came while waiting.
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
    pub(super) async fn recover(&self, conns: &[Conn; 2]) -> Result<(), ReplError> {
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
    pub(super) async fn delete_source(
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
}

/// Deletes the ledger row of `source`'s batch `batch` on the target (`tgt`, the
/// other side), once that batch's source deltas are gone for good.
pub(super) async fn forget_batch(
    tgt: &Conn,
    sync: &str,
    source: Side,
    batch: i64,
) -> Result<(), ReplError> {
    store::forget_applied(&tgt.apply, sync, source.as_str(), batch).await?;
    Ok(())
}
