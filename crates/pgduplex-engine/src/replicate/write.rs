//! The writes of one direction's staged rows, inside its apply transaction:
//! deletes of the keys absent at the source (children first), then one upsert
//! per table (parents first); and the ordered per-row apply a table falls back
//! to when the server refuses the set-based upsert.

use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;

use super::apply::ApplyContext;
use super::batch::{sql_params, Direction, Key};
use super::fk;
use super::plan::TablePlan;
use super::ReplError;

/// The writes of the staged rows: deletes, children first; then upserts, parents
/// first. Returns the rows written, or (`Err`) why the direction must be rolled
/// back and decided again.
pub(super) async fn write_rows(
    ctx: &ApplyContext<'_>,
    dir: &Direction,
    tx: &Transaction<'_>,
    staged: &[usize],
) -> Result<Result<u64, String>, ReplError> {
    let plans = ctx.plans;
    let mut rows = 0;
    // Without the server's foreign-key triggers (replica role), the apply checks
    // the keys itself: the values the staged parents hold now, to look for
    // children left without them after the writes.
    let referenced = if ctx.replica_role {
        fk::referenced_before(tx, ctx.fks, plans, staged).await?
    } else {
        Vec::new()
    };

    // Where the server checks a foreign key at once (not DEFERRABLE, no replica
    // role), a parent still referenced by a child row that this batch points
    // elsewhere can only go after the upserts: its delete is tried first and,
    // refused, done then.
    let mut late_deletes = Vec::new();
    for &i in staged.iter().rev() {
        let referenced = !ctx.replica_role && ctx.fks.iter().any(|f| f.parent == i);
        if !referenced {
            rows += tx.execute(&plans[i].delete_absent(), &[]).await?;
            continue;
        }
        tx.batch_execute("SAVEPOINT pgduplex_delete").await?;
        match tx.execute(&plans[i].delete_absent(), &[]).await {
            Ok(n) => {
                rows += n;
                tx.batch_execute("RELEASE SAVEPOINT pgduplex_delete")
                    .await?;
            }
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT pgduplex_delete")
                    .await?;
                late_deletes.push(i);
            }
            Err(e) => return Err(e.into()),
        }
    }
    for &i in staged {
        let plan = &plans[i];
        tx.batch_execute("SAVEPOINT pgduplex_table").await?;
        match tx.execute(&plan.upsert(), &[]).await {
            Ok(n) => {
                rows += n;
                tx.batch_execute("RELEASE SAVEPOINT pgduplex_table").await?;
            }
            Err(e) if is_set_based_refusal(&e) => {
                tracing::debug!(table = %plan.name, error = %e, "set-based apply refused; applying row by row");
                tx.batch_execute("ROLLBACK TO SAVEPOINT pgduplex_table")
                    .await?;
                per_row(tx, plan).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for &i in &late_deletes {
        rows += tx.execute(&plans[i].delete_absent(), &[]).await?;
    }

    if ctx.replica_role {
        if let Some(table) = fk::violated(tx, ctx.fks, plans, staged, &referenced).await? {
            return Ok(Err(format!(
                "a foreign key of {table} would break on the {} side (its own change since the read); decided again next cycle",
                dir.target
            )));
        }
    }
    Ok(Ok(rows))
}

fn is_set_based_refusal(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::WRONG_OBJECT_TYPE
            || *c == SqlState::FEATURE_NOT_SUPPORTED
            || *c == SqlState::EXCLUSION_VIOLATION
    )
}

/// Ordered per-row apply of one table's present staged rows, for when the
/// set-based upsert fails on a unique constraint other than the key (two rows
/// swapping a value) or a deferrable key (which cannot arbitrate ON CONFLICT).
/// Rows are applied one by one, those that fail are retried once others moved
/// out of their way; rows that still block each other (a swap) are deleted on the
/// target and inserted again.
async fn per_row(tx: &Transaction<'_>, plan: &TablePlan) -> Result<(), tokio_postgres::Error> {
    let nkey = plan.key.len();
    let keys: Vec<Key> = tx
        .query(&plan.staged_present_keys(), &[])
        .await?
        .into_iter()
        .map(|r| (0..nkey).map(|i| r.get::<_, String>(i)).collect())
        .collect();
    let update = plan.update_one();
    let insert = plan.insert_one();
    let exists = plan.exists_one();
    let mut pending = keys;
    loop {
        let mut blocked = Vec::new();
        let before = pending.len();
        for key in pending {
            let p = sql_params(&key);
            tx.batch_execute("SAVEPOINT pgduplex_row").await?;
            let res = async {
                if tx.query_opt(&exists, &p).await?.is_some() {
                    if let Some(u) = &update {
                        tx.execute(u, &p).await?;
                    }
                } else {
                    tx.execute(&insert, &p).await?;
                }
                Ok::<_, tokio_postgres::Error>(())
            }
            .await;
            match res {
                Ok(()) => tx.batch_execute("RELEASE SAVEPOINT pgduplex_row").await?,
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT pgduplex_row")
                        .await?;
                    blocked.push(key);
                }
                Err(e) => return Err(e),
            }
        }
        if blocked.is_empty() {
            return Ok(());
        }
        if blocked.len() == before {
            // No progress: the remaining rows hold each other's values.
            let delete = plan.delete_one();
            for key in &blocked {
                let p = sql_params(key);
                tx.execute(&delete, &p).await?;
            }
            for key in &blocked {
                let p = sql_params(key);
                tx.execute(&insert, &p).await?;
            }
            return Ok(());
        }
        pending = blocked;
    }
}
