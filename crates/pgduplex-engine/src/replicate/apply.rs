//! The apply transaction of one direction: the source's current rows for the
//! direction's keys are streamed (COPY out of the source's read transaction, COPY
//! into a staging table on the target), then written set-based, checked against
//! changes the target made meanwhile, and recorded in the target's ledger, all in
//! one transaction on the target.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use futures_util::SinkExt;
use pgduplex_pg::capture::APPLYING_SETTING;
use pgduplex_pg::copy_pipe::{self, PipeError};
use pgduplex_pg::copytext;
use pgduplex_pg::retry::RetryClass;
use pgduplex_pg::store;
use tokio::sync::watch;
use tokio_postgres::{Client, Transaction};

use super::batch::{
    decide, idx, key_arrays, sql_params, Conflict, Direction, Key, SideRead, TruncateAction, Winner,
};
use super::fk::FkPlan;
use super::plan::TablePlan;
use super::write::write_rows;
use super::ReplError;

/// `lock_timeout` of the apply transaction, in ms (see `apply_in`).
const APPLY_LOCK_TIMEOUT_MS: u32 = 5000;

/// What the apply of one direction did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Committed: the source's seqs to delete now (per plan, plus TRUNCATE seqs).
    pub ledger: Vec<Vec<i64>>,
    pub truncate_seqs: Vec<i64>,
    /// The ledger batch number written on the target (None: nothing recorded).
    pub batch: Option<i64>,
    pub rows: u64,
    pub bytes: u64,
    pub conflicts: u64,
    /// Rolled back, to be decided again next cycle: why (the target changed a
    /// written key after the check, a foreign key the target's own change broke,
    /// a lock the apply could not get in time).
    pub retry: Option<String>,
    /// Conflicts found inside the apply (the target changed a key after the
    /// read): logged on the target in the apply, on the source after it.
    pub late: Vec<Conflict>,
}

/// The read transactions of a cycle end as soon as their rows are staged: the
/// source's snapshot is released by the direction that reads it, and a direction
/// that must TRUNCATE on its target waits for the target's snapshot to go (the
/// other direction's staging, which waits on nothing of this one). No session of
/// the daemon then waits on another through a third party's queued lock.
pub struct Release {
    source_done: watch::Sender<bool>,
    target_done: watch::Receiver<bool>,
    done: bool,
}

impl Release {
    /// The two directions' ends: `[left to right, right to left]`.
    pub fn pair() -> [Release; 2] {
        let (l_tx, l_rx) = watch::channel(false);
        let (r_tx, r_rx) = watch::channel(false);
        [
            Release {
                source_done: l_tx,
                target_done: r_rx,
                done: false,
            },
            Release {
                source_done: r_tx,
                target_done: l_rx,
                done: false,
            },
        ]
    }

    /// Turns true once the source's read transaction has ended.
    pub fn source_released(&self) -> watch::Receiver<bool> {
        self.source_done.subscribe()
    }

    /// Ends the source's read transaction (once).
    async fn source(&mut self, source: &Client) -> Result<(), tokio_postgres::Error> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let res = source.batch_execute("COMMIT").await;
        let _ = self.source_done.send(true);
        res
    }

    /// Ends the source's read transaction after everything was staged from it:
    /// the temp tables it created are kept.
    async fn staged(
        &mut self,
        source: &Client,
        temps: &mut Temps<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        self.source(source).await?;
        temps.source_new.clear();
        Ok(())
    }

    /// Waits until the target's read transaction has ended.
    async fn target(&mut self) {
        // An error means the other direction is gone: nothing to wait for.
        let _ = self.target_done.wait_for(|done| *done).await;
    }
}

/// Errors after which the direction is rolled back and decided again next cycle
/// rather than the session reconnected: a foreign key or unique value the
/// target's own concurrent change broke, a lock held too long, a deadlock.
fn is_retryable(err: &tokio_postgres::Error) -> bool {
    matches!(
        RetryClass::of(err),
        RetryClass::Concurrency | RetryClass::Constraint
    )
}

/// Everything the apply of one direction needs besides the connections.
pub struct ApplyContext<'a> {
    pub sync: &'a str,
    pub plans: &'a [TablePlan],
    /// Plans in foreign-key order, parents first.
    pub order: &'a [usize],
    pub source_read: &'a SideRead,
    pub target_read: &'a SideRead,
    pub epoch: i64,
    pub batch: i64,
    pub replica_role: bool,
    pub fks: &'a [FkPlan],
}

fn group_by_key(rows: Vec<tokio_postgres::Row>, nkey: usize) -> BTreeMap<Key, (Vec<i64>, i64)> {
    let mut out: BTreeMap<Key, (Vec<i64>, i64)> = BTreeMap::new();
    for r in rows {
        let key: Key = (0..nkey).map(|i| r.get::<_, String>(2 + i)).collect();
        let e = out.entry(key).or_insert((Vec::new(), i64::MIN));
        e.0.push(r.get(0));
        e.1 = e.1.max(r.get(1));
    }
    out
}

/// Rows of `keys` on the target (jsonb text) by key.
async fn images(
    tx: &Transaction<'_>,
    plan: &TablePlan,
    keys: &[Key],
) -> Result<HashMap<Key, String>, tokio_postgres::Error> {
    let arrays = key_arrays(keys, plan.key.len());
    let rows = tx.query(&plan.row_images(), &sql_params(&arrays)).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let key: Key = (0..plan.key.len()).map(|i| r.get(i)).collect();
            (key, r.get(plan.key.len()))
        })
        .collect())
}

/// Streams the source's rows of `keys` into the target's staging table. Returns
/// the bytes moved.
async fn stage(
    source: &Client,
    tx: &Transaction<'_>,
    plan: &TablePlan,
    keys: &[Key],
    temps: &mut Temps<'_>,
) -> Result<u64, tokio_postgres::Error> {
    if temps.source.insert(plan.keys_temp()) {
        temps.source_new.push(plan.keys_temp());
        source.batch_execute(&plan.create_keys_temp()).await?;
    }
    if !temps.target.contains(&plan.stage_temp()) {
        tx.batch_execute(&plan.create_stage_temp()).await?;
        temps.target_new.push(plan.stage_temp());
    }
    // Empty from an earlier batch that failed before commit? ON COMMIT DELETE ROWS
    // covers commits; a rolled-back transaction leaves nothing either.
    let mut buf = Vec::with_capacity(keys.len() * 16);
    for k in keys {
        copytext::push_row(&mut buf, k);
    }
    let sink = source.copy_in(&plan.copy_keys_in()).await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(buf)).await?;
    sink.finish().await?;

    let bytes = pipe(source, &plan.copy_rows_out(), tx, &plan.copy_stage_in()).await?;
    // The source's key table is emptied for the next table of this batch only at
    // commit; the next plan has its own key table, and a plan is staged once.
    Ok(bytes)
}

/// The relations a TRUNCATE action empties, with their plans.
fn truncated(action: &TruncateAction) -> Vec<(usize, &pgduplex_pg::TableName)> {
    match action {
        TruncateAction::Truncate(rels) => rels.iter().map(|(p, r)| (*p, r)).collect(),
        TruncateAction::DeleteExcept { plan, relation, .. } => vec![(*plan, relation)],
    }
}

/// Streams every key the source holds in `relation` (of `plan`) into the
/// target's keep table.
async fn stage_source_keys(
    source: &Client,
    tx: &Transaction<'_>,
    plan: &TablePlan,
    relation: &pgduplex_pg::TableName,
    temps: &mut Temps<'_>,
) -> Result<(), tokio_postgres::Error> {
    if !temps.target.contains(&plan.keep_temp()) && !temps.target_new.contains(&plan.keep_temp()) {
        tx.batch_execute(&plan.create_keep_temp()).await?;
        temps.target_new.push(plan.keep_temp());
    }
    pipe(
        source,
        &plan.copy_all_keys_out(relation),
        tx,
        &plan.copy_keep_in(),
    )
    .await?;
    Ok(())
}

/// Streams `COPY ... TO STDOUT` on the source into `COPY ... FROM STDIN` on the
/// target. Returns the bytes moved.
async fn pipe(
    source: &Client,
    copy_out: &str,
    tx: &Transaction<'_>,
    copy_in: &str,
) -> Result<u64, tokio_postgres::Error> {
    let out = source.copy_out(copy_out).await?;
    let sink = tx.copy_in(copy_in).await?;
    match copy_pipe::pipe(out, sink, 0, |_, _| Ok::<(), ()>(())).await {
        Ok(piped) => Ok(piped.bytes),
        Err(PipeError::Source(e) | PipeError::Target(e)) => Err(e),
        Err(PipeError::Stopped(())) => unreachable!("the apply's pipe is never stopped"),
    }
}

/// Temp tables known to exist on the two sessions.
pub struct Temps<'a> {
    pub source: &'a mut HashSet<String>,
    pub target: &'a mut HashSet<String>,
    /// Created in the current target transaction (forgotten if it rolls back).
    pub target_new: Vec<String>,
    /// Created in the source's read transaction (forgotten if the apply fails:
    /// that transaction may have been aborted).
    pub source_new: Vec<String>,
}

impl Temps<'_> {
    pub fn new<'a>(source: &'a mut HashSet<String>, target: &'a mut HashSet<String>) -> Temps<'a> {
        Temps {
            source,
            target,
            target_new: Vec::new(),
            source_new: Vec::new(),
        }
    }

    fn forget_new(&mut self) {
        self.target_new.clear();
        for t in self.source_new.drain(..) {
            self.source.remove(&t);
        }
    }
}

fn json_key(key: &Key) -> String {
    serde_json::to_string(key).expect("strings serialise")
}

/// Writes `conflicts` to `pgduplex.conflicts` through `tx` (a transaction or a
/// session).
pub(crate) async fn log_conflicts<C: tokio_postgres::GenericClient>(
    tx: &C,
    sync: &str,
    plans: &[TablePlan],
    conflicts: &[Conflict],
) -> Result<(), tokio_postgres::Error> {
    let records: Vec<store::ConflictRecord<'_>> = conflicts
        .iter()
        .map(|c| store::ConflictRecord {
            table: &plans[c.plan].name,
            key: c.key.as_ref().map(json_key),
            kind: c.kind,
            rows: [&c.rows[0], &c.rows[1]],
            changed_at: c.changed_at.map(|a| a.map(|v| v as f64)),
            policy: c.policy.as_str(),
            winner: c.winner.as_str(),
        })
        .collect();
    store::log_conflicts(tx, sync, &records).await
}

/// Finds the target's deltas of the staged keys that were neither read by the
/// cycle nor found before (`known_unseen`), and decides each key by policy: the
/// source wins (a late conflict, logged; the target's deltas are consumed) or
/// the target's change is kept (the key is unstaged and waits for the next
/// cycle, which sees both changes).
#[allow(clippy::too_many_arguments)]
async fn resolve_unseen(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    tx: &Transaction<'_>,
    staged: &[usize],
    known_unseen: &mut [Vec<i64>],
    own_consumed: &mut HashMap<(usize, Key), Vec<i64>>,
    late: &mut Vec<Conflict>,
    ledger: &mut [Vec<i64>],
) -> Result<(), ReplError> {
    let plans = ctx.plans;
    for &i in staged {
        let plan = &plans[i];
        let mut seen = ctx.target_read.seen_of(i);
        seen.extend(&known_unseen[i]);
        let unseen = group_by_key(
            tx.query(&plan.unseen_deltas(dir.target), &[&seen]).await?,
            plan.key.len(),
        );
        if unseen.is_empty() {
            continue;
        }
        let keys: Vec<Key> = unseen.keys().cloned().collect();
        let before = images(tx, plan, &keys).await?;
        for (key, (seqs, at)) in unseen {
            known_unseen[i].extend(&seqs);
            let source_at = ctx.source_read.changes[i]
                .get(&key)
                .map_or(i64::MIN, |c| c.last_at);
            let mut ats = [0; 2];
            ats[idx(dir.source)] = source_at;
            ats[idx(dir.target)] = at;
            let winner = decide(plan.policy, ats);
            let earlier = late
                .iter()
                .position(|c| c.plan == i && c.key.as_ref() == Some(&key));
            if winner == Winner::Side(dir.source) {
                own_consumed
                    .entry((i, key.clone()))
                    .or_default()
                    .extend(&seqs);
                if let Some(e) = earlier {
                    // Changed again since it was first found: the newer row and time.
                    late[e].rows[idx(dir.target)] = before.get(&key).cloned();
                    late[e].changed_at[idx(dir.target)] = Some(at);
                    continue;
                }
                let mut rows = [None, None];
                rows[idx(dir.target)] = before.get(&key).cloned();
                let mut changed_at = [None, None];
                changed_at[idx(dir.source)] = (source_at != i64::MIN).then_some(source_at);
                changed_at[idx(dir.target)] = Some(at);
                late.push(Conflict {
                    plan: i,
                    key: Some(key),
                    kind: "row",
                    rows,
                    changed_at,
                    policy: plan.policy,
                    winner,
                });
            } else {
                // The target's change is kept: this key waits for the next cycle,
                // which sees all of the target's changes of it (none consumed)
                // and the source's, and decides with both rows at hand.
                if let Some(e) = earlier {
                    late.remove(e);
                }
                own_consumed.remove(&(i, key.clone()));
                let p = sql_params(&key);
                tx.execute(&plan.unstage_one(), &p).await?;
                if let Some(c) = ctx.source_read.changes[i].get(&key) {
                    ledger[i].retain(|s| !c.seqs.contains(s));
                }
            }
        }
    }
    Ok(())
}

/// Whether the target holds deltas of the staged keys that are neither read by
/// the cycle nor already decided.
async fn any_unseen(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    tx: &Transaction<'_>,
    staged: &[usize],
    known_unseen: &[Vec<i64>],
) -> Result<bool, tokio_postgres::Error> {
    for &i in staged {
        let plan = &ctx.plans[i];
        let mut seen = ctx.target_read.seen_of(i);
        seen.extend(&known_unseen[i]);
        if !tx
            .query(&plan.unseen_deltas(dir.target), &[&seen])
            .await?
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs the apply transaction of `dir` on `target` (rows read from `source`, the
/// source's read transaction, which this ends).
pub async fn apply_direction(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    source: &Client,
    target: &mut Client,
    temps: &mut Temps<'_>,
    mut release: Release,
) -> Result<Applied, ReplError> {
    let res = run_direction(ctx, dir, source, target, temps, &mut release).await;
    // Whatever happened, the source's snapshot is no longer needed.
    let released = release.source(source).await;
    let applied = res?;
    released?;
    Ok(applied)
}

async fn run_direction(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    source: &Client,
    target: &mut Client,
    temps: &mut Temps<'_>,
    release: &mut Release,
) -> Result<Applied, ReplError> {
    let mut applied = Applied {
        ledger: dir.ledger.clone(),
        truncate_seqs: dir.truncate_seqs.clone(),
        ..Applied::default()
    };
    if dir.is_idle() {
        return Ok(applied);
    }
    let tx = target.transaction().await?;
    let res = apply_in(ctx, dir, source, &tx, temps, &mut applied, release).await;
    let res = match res {
        Ok(None) => {
            super::failpoint::hit("before-commit");
            tx.commit().await.map(|()| None).map_err(ReplError::from)
        }
        Ok(Some(why)) => {
            tx.rollback().await?;
            Ok(Some(why))
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    };
    tracing::trace!(batch = ctx.batch, target = %dir.target, outcome = ?res, "apply");
    let retry = match res {
        Ok(None) => {
            temps.target.extend(temps.target_new.drain(..));
            return Ok(applied);
        }
        Ok(Some(why)) => why,
        Err(ReplError::Db(e)) if is_retryable(&e) => match e.as_db_error().and_then(|d| d.detail())
        {
            Some(detail) => format!("{} ({detail})", crate::error_chain(&e)),
            None => crate::error_chain(&e),
        },
        Err(e) => {
            temps.forget_new();
            return Err(e);
        }
    };
    temps.forget_new();
    Ok(Applied {
        retry: Some(retry),
        ..Applied::default()
    })
}

/// The body of the apply transaction; `Ok(Some(why))` asks for a rollback and a
/// new decision next cycle.
async fn apply_in(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    source: &Client,
    tx: &Transaction<'_>,
    temps: &mut Temps<'_>,
    applied: &mut Applied,
    release: &mut Release,
) -> Result<Option<String>, ReplError> {
    let plans = ctx.plans;
    // lock_timeout: an application holding a lock on a table (a long ALTER) makes
    // the apply give up and try again next cycle instead of waiting in a queue.
    let mut setup = format!(
        "SET LOCAL {APPLYING_SETTING} = 'on'; SET CONSTRAINTS ALL DEFERRED; SET LOCAL lock_timeout = '{}ms';",
        APPLY_LOCK_TIMEOUT_MS
    );
    if ctx.replica_role {
        setup.push_str(" SET LOCAL session_replication_role = replica;");
    }
    tx.batch_execute(&setup).await?;
    if store::lease_epoch_for_share(tx, ctx.sync).await? != Some(ctx.epoch) {
        return Err(ReplError::LeaseLost(dir.target));
    }

    // Stage every table's rows, then let the source's snapshot go.
    let (staged, keeps) = stage_all(ctx, dir, source, tx, temps, applied).await?;
    release.staged(source, temps).await?;
    super::failpoint::hit("staged");

    truncate(ctx, dir, tx, release, &keeps).await?;

    let mut late: Vec<Conflict> = Vec::new();
    let mut late_consumed: HashMap<(usize, Key), Vec<i64>> = HashMap::new();
    if let Some(why) = write_checked(
        ctx,
        dir,
        tx,
        &staged,
        applied,
        &mut late,
        &mut late_consumed,
    )
    .await?
    {
        return Ok(Some(why));
    }
    // Likewise a TRUNCATE the target committed since it was read: in the source's
    // order it would come after these writes, so they wait for the next cycle.
    let ids: Vec<i32> = staged.iter().map(|&i| plans[i].id_of(dir.target)).collect();
    let seen: Vec<i64> = ctx.target_read.truncates.iter().map(|t| t.seq).collect();
    if !ids.is_empty() && store::truncated_since(tx, &ids, &seen).await? {
        return Ok(Some(format!(
            "the {} side truncated a table while it was applied",
            dir.target
        )));
    }
    // The source's rows of the late conflicts, as now written.
    for c in &mut late {
        let plan = &plans[c.plan];
        let key = c.key.clone().expect("row conflicts have a key");
        let now = images(tx, plan, std::slice::from_ref(&key)).await?;
        c.rows[idx(dir.source)] = now.get(&key).cloned();
    }

    let mut own_consumed = dir.own_consumed.clone();
    for ((i, _), seqs) in late_consumed {
        own_consumed[i].extend(seqs);
    }
    for (i, seqs) in own_consumed.iter().enumerate() {
        if !seqs.is_empty() {
            tx.execute(&plans[i].delete_deltas(dir.target), &[seqs])
                .await?;
        }
    }
    if !dir.own_truncates_consumed.is_empty() {
        store::forget_truncates(tx, &dir.own_truncates_consumed).await?;
    }
    log_conflicts(tx, ctx.sync, plans, &dir.conflicts).await?;
    log_conflicts(tx, ctx.sync, plans, &late).await?;
    // Counted once, as the left's log holds them: the decided ones with the
    // apply to the left (both directions log them), the late ones with either.
    let decided = if dir.target == pgduplex_config::Side::Left {
        dir.conflicts.len()
    } else {
        0
    };
    applied.conflicts = (decided + late.len()) as u64;
    // The source logs them too, after the commit (see `cycle`).
    applied.late = late;

    let mut all: Vec<i64> = applied.ledger.iter().flatten().copied().collect();
    all.extend(&applied.truncate_seqs);
    if !all.is_empty() {
        store::record_applied(tx, ctx.sync, dir.source.as_str(), ctx.batch, &all).await?;
        applied.batch = Some(ctx.batch);
    }
    Ok(None)
}

/// Stages the source's rows of every key of `dir` on the target, tables in
/// foreign-key order, and the keys the source holds now of each relation a
/// TRUNCATE empties. Returns the plans staged and, per TRUNCATE action, whether
/// the source holds rows of its relations (keys kept).
async fn stage_all(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    source: &Client,
    tx: &Transaction<'_>,
    temps: &mut Temps<'_>,
    applied: &mut Applied,
) -> Result<(Vec<usize>, Vec<bool>), tokio_postgres::Error> {
    let plans = ctx.plans;
    let mut staged: Vec<usize> = Vec::new();
    for &i in ctx.order {
        if dir.keys[i].is_empty() {
            continue;
        }
        applied.bytes += stage(source, tx, &plans[i], &dir.keys[i], temps).await?;
        staged.push(i);
    }
    // The keys the source holds now of each relation a TRUNCATE empties.
    let mut keeps = Vec::with_capacity(dir.truncates.len());
    for action in &dir.truncates {
        let rels = truncated(action);
        let mut any = false;
        for (p, rel) in &rels {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", rel.quoted());
            if source.query_one(&sql, &[]).await?.get::<_, bool>(0) {
                any = true;
                stage_source_keys(source, tx, &plans[*p], rel, temps).await?;
            }
        }
        keeps.push(any);
    }
    Ok((staged, keeps))
}

/// TRUNCATEs, before the changes that followed them at the source. `keeps`: per
/// action, whether the source holds rows of its relations now (then those rows'
/// keys, staged, are kept and the rest deleted).
async fn truncate(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    tx: &Transaction<'_>,
    release: &mut Release,
    keeps: &[bool],
) -> Result<(), tokio_postgres::Error> {
    let plans = ctx.plans;
    // A TRUNCATE needs the target's read snapshot (which locked the table) gone.
    if !dir.truncates.is_empty() {
        release.target().await;
    }
    for (action, &keep) in dir.truncates.iter().zip(keeps) {
        match action {
            TruncateAction::Truncate(relations) if !keep => {
                let list = relations
                    .iter()
                    .map(|(_, r)| r.quoted())
                    .collect::<Vec<_>>()
                    .join(", ");
                tx.batch_execute(&format!("TRUNCATE {list}")).await?;
            }
            TruncateAction::Truncate(relations) => {
                let mut rels = relations.clone();
                let rank = |p: usize| ctx.order.iter().position(|&o| o == p);
                rels.sort_by_key(|(p, _)| std::cmp::Reverse(rank(*p)));
                for (p, rel) in rels {
                    let no_keys: Vec<Vec<String>> = vec![Vec::new(); plans[p].key.len()];
                    tx.execute(
                        &plans[p].delete_all_except(&rel, true),
                        &sql_params(&no_keys),
                    )
                    .await?;
                }
            }
            TruncateAction::DeleteExcept {
                plan,
                relation,
                keep: keys,
            } => {
                let p = &plans[*plan];
                let arrays = key_arrays(keys, p.key.len());
                tx.execute(&p.delete_all_except(relation, keep), &sql_params(&arrays))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Writes the staged rows, checked against the changes the target made to the
/// staged keys since it was read (decided by policy: `late`, `late_consumed`).
/// `Ok(Some(why))`: the direction is rolled back and decided again next cycle.
async fn write_checked(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    tx: &Transaction<'_>,
    staged: &[usize],
    applied: &mut Applied,
    late: &mut Vec<Conflict>,
    late_consumed: &mut HashMap<(usize, Key), Vec<i64>>,
) -> Result<Option<String>, ReplError> {
    // Changes the target made to the staged keys since it was read are found in
    // two places. Before the writes, they are decided by policy (no lock is
    // taken: it would write every target row twice). The writes then lock every
    // row they touch until commit, so a later change waits for this transaction;
    // one that committed between the check and the writes is found after them:
    // the writes are undone (savepoint), decided like the others, and done again.
    let mut known_unseen: Vec<Vec<i64>> = vec![Vec::new(); ctx.plans.len()];
    let mut attempt = 0;
    loop {
        resolve_unseen(
            ctx,
            dir,
            tx,
            staged,
            &mut known_unseen,
            late_consumed,
            late,
            &mut applied.ledger,
        )
        .await?;
        tx.batch_execute("SAVEPOINT pgduplex_writes").await?;
        let rows = match write_rows(ctx, dir, tx, staged).await? {
            Ok(rows) => rows,
            Err(why) => return Ok(Some(why)),
        };
        if !any_unseen(ctx, dir, tx, staged, &known_unseen).await? {
            tx.batch_execute("RELEASE SAVEPOINT pgduplex_writes")
                .await?;
            applied.rows += rows;
            return Ok(None);
        }
        tx.batch_execute("ROLLBACK TO SAVEPOINT pgduplex_writes")
            .await?;
        attempt += 1;
        if attempt >= 3 {
            return Ok(Some(format!(
                "the {} side kept changing keys of the batch while they were applied",
                dir.target
            )));
        }
    }
}
