//! Every statement on pgduplex's own state tables (sql/schema.sql): typed rows
//! in, typed rows out. The copy's run and progress (`copy_run`,
//! `copy_progress`), what it dropped to go faster (`copy_saved_ddl`), the
//! single writer's lease (`lease`), the ledger of applied batches (`applied`),
//! the conflict log (`conflicts`) and the TRUNCATE log (`truncate_log`).
//!
//! Values are always parameters. Functions take any [`GenericClient`], so the
//! caller decides whether a statement runs in its transaction (a range's
//! progress commits with its rows; a batch's ledger row with its writes).

use std::fmt;
use std::str::FromStr;

use tokio_postgres::{Error, GenericClient};

use crate::TableName;

// ---------------------------------------------------------------- copy_run

/// Where the initial copy into a database stands (`copy_run.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// Planned or under way (or interrupted: a later run resumes it).
    Copying,
    /// Every table was copied.
    Done,
    /// No copy was made: the target held rows (mode `if-empty`) when the daemon
    /// first started. Settled, so a later start does not copy into tables an
    /// application emptied since.
    Skipped,
}

impl CopyState {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Copying => "copying",
            CopyState::Done => "done",
            CopyState::Skipped => "skipped",
        }
    }
}

impl fmt::Display for CopyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CopyState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "copying" => Ok(CopyState::Copying),
            "done" => Ok(CopyState::Done),
            "skipped" => Ok(CopyState::Skipped),
            other => Err(format!("unknown copy state {other:?}")),
        }
    }
}

/// The record of the initial copy into this database for one sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyRun {
    /// The side copied from (`left` / `right`).
    pub source: String,
    /// The copy's mode (`if-empty` / `truncate`).
    pub mode: String,
    pub state: CopyState,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// Whether the copy's tables exist (an install by a pgduplex older than the
/// copy, or by a role whose tables this role may not see, has none).
pub async fn copy_tables_exist<C: GenericClient>(c: &C) -> Result<bool, Error> {
    Ok(c.query_one(
        "SELECT pg_catalog.to_regclass('pgduplex.copy_run') IS NOT NULL \
            AND pg_catalog.to_regclass('pgduplex.copy_progress') IS NOT NULL",
        &[],
    )
    .await?
    .get(0))
}

/// The copy's record, if a copy into this database was ever started or skipped.
pub async fn copy_run<C: GenericClient>(c: &C, sync: &str) -> Result<Option<CopyRun>, Error> {
    if !copy_tables_exist(c).await? {
        return Ok(None);
    }
    let row = c
        .query_opt(
            "SELECT source, mode, state, started_at::pg_catalog.text, finished_at::pg_catalog.text \
               FROM pgduplex.copy_run WHERE sync = $1",
            &[&sync],
        )
        .await?;
    Ok(row.map(|r| CopyRun {
        source: r.get(0),
        mode: r.get(1),
        // The column's CHECK admits only the three states.
        state: r.get::<_, String>(2).parse().unwrap_or(CopyState::Copying),
        started_at: r.get(3),
        finished_at: r.get(4),
    }))
}

/// Records that no copy was made because the target held rows (unless a copy
/// was recorded meanwhile).
pub async fn record_copy_skipped<C: GenericClient>(
    c: &C,
    sync: &str,
    source: &str,
    mode: &str,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO pgduplex.copy_run (sync, source, mode, state, finished_at) \
         VALUES ($1, $2, $3, 'skipped', pg_catalog.now()) ON CONFLICT (sync) DO NOTHING",
        &[&sync, &source, &mode],
    )
    .await?;
    Ok(())
}

/// Records a copy as started (or, with `restart`, started over).
pub async fn record_copy_started<C: GenericClient>(
    c: &C,
    sync: &str,
    source: &str,
    mode: &str,
    restart: bool,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO pgduplex.copy_run (sync, source, mode, state) VALUES ($1, $2, $3, 'copying') \
         ON CONFLICT (sync) DO UPDATE SET \
           finished_at = CASE WHEN $4 THEN NULL ELSE pgduplex.copy_run.finished_at END, \
           state = CASE WHEN $4 THEN 'copying' ELSE pgduplex.copy_run.state END",
        &[&sync, &source, &mode, &restart],
    )
    .await?;
    Ok(())
}

/// Records the copy as done (once).
pub async fn record_copy_done<C: GenericClient>(c: &C, sync: &str) -> Result<(), Error> {
    c.execute(
        "UPDATE pgduplex.copy_run SET finished_at = pg_catalog.now(), state = 'done' \
          WHERE sync = $1 AND finished_at IS NULL",
        &[&sync],
    )
    .await?;
    Ok(())
}

// ----------------------------------------------------------- copy_progress

/// One table, or one key range of a table, of the copy's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPart {
    pub table: TableName,
    /// 0-based number of the range; `parts` ranges in all.
    pub part: i32,
    pub parts: i32,
    /// The integer key column the table is split on (`None`: copied whole).
    pub key_column: Option<String>,
    /// `[lower, upper)`, `None` = unbounded.
    pub lower: Option<i64>,
    pub upper: Option<i64>,
    pub done: bool,
}

/// The recorded plan, in table and part order (empty without the copy's tables).
pub async fn copy_parts<C: GenericClient>(c: &C, sync: &str) -> Result<Vec<CopyPart>, Error> {
    if !copy_tables_exist(c).await? {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "SELECT table_schema, table_name, part, parts, key_column, lower_bound, upper_bound, done \
               FROM pgduplex.copy_progress WHERE sync = $1 ORDER BY 1, 2, 3",
            &[&sync],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| CopyPart {
            table: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            part: r.get(2),
            parts: r.get(3),
            key_column: r.get(4),
            lower: r.get(5),
            upper: r.get(6),
            done: r.get(7),
        })
        .collect())
}

/// Forgets the recorded plan of `tables` (a finished copy started over).
pub async fn forget_copy_parts<C: GenericClient>(
    c: &C,
    sync: &str,
    tables: &[TableName],
) -> Result<(), Error> {
    let schemas: Vec<&str> = tables.iter().map(|n| n.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|n| n.name.as_str()).collect();
    c.execute(
        "DELETE FROM pgduplex.copy_progress p \
          USING ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) u(s, t) \
          WHERE p.sync = $1 AND p.table_schema = u.s AND p.table_name = u.t",
        &[&sync, &schemas, &names],
    )
    .await?;
    Ok(())
}

/// Records one part of the plan, not done.
pub async fn record_copy_part<C: GenericClient>(
    c: &C,
    sync: &str,
    p: &CopyPart,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO pgduplex.copy_progress \
           (sync, table_schema, table_name, part, parts, key_column, lower_bound, upper_bound) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &sync,
            &p.table.schema,
            &p.table.name,
            &p.part,
            &p.parts,
            &p.key_column,
            &p.lower,
            &p.upper,
        ],
    )
    .await?;
    Ok(())
}

/// Marks a part done; run in the transaction that commits its rows.
#[allow(clippy::too_many_arguments)]
pub async fn record_copy_part_done<C: GenericClient>(
    c: &C,
    sync: &str,
    table: &TableName,
    part: i32,
    rows: i64,
    bytes: i64,
    snapshot: &str,
) -> Result<(), Error> {
    c.execute(
        "UPDATE pgduplex.copy_progress SET done = true, rows = $5, bytes = $6, snapshot = $7, \
                copied_at = pg_catalog.now() \
          WHERE sync = $1 AND table_schema = $2 AND table_name = $3 AND part = $4",
        &[
            &sync,
            &table.schema,
            &table.name,
            &part,
            &rows,
            &bytes,
            &snapshot,
        ],
    )
    .await?;
    Ok(())
}

/// Parts done, parts planned and rows copied so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyTotals {
    pub parts_done: i64,
    pub parts_total: i64,
    pub rows_copied: i64,
}

pub async fn copy_totals<C: GenericClient>(c: &C, sync: &str) -> Result<CopyTotals, Error> {
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE done), count(*), \
                    coalesce(sum(rows) FILTER (WHERE done), 0)::pg_catalog.int8 \
               FROM pgduplex.copy_progress WHERE sync = $1",
            &[&sync],
        )
        .await?;
    Ok(CopyTotals {
        parts_done: r.get(0),
        parts_total: r.get(1),
        rows_copied: r.get(2),
    })
}

// ---------------------------------------------------------- copy_saved_ddl

/// A definition the copy dropped on the target to go faster, saved in the
/// transaction that dropped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedDdl {
    /// `index` or `foreign_key` (the column's CHECK).
    pub kind: String,
    pub table: TableName,
    pub name: String,
    /// The server's own deparse (`pg_get_indexdef` / `pg_get_constraintdef`).
    pub definition: String,
}

/// The statement that saves a definition: run as the record of the DDL
/// transaction that drops it (see `ddl::run_with_lock_retry`), with
/// [`save_ddl_params`].
pub const SAVE_DDL_SQL: &str =
    "INSERT INTO pgduplex.copy_saved_ddl (sync, kind, table_schema, table_name, name, definition) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

/// The parameters of [`SAVE_DDL_SQL`].
pub fn save_ddl_params<'a>(
    sync: &'a &'a str,
    s: &'a SavedDdl,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 6] {
    [
        sync,
        &s.kind,
        &s.table.schema,
        &s.table.name,
        &s.name,
        &s.definition,
    ]
}

/// The saved definitions, indexes before foreign keys.
pub async fn saved_ddl<C: GenericClient>(c: &C, sync: &str) -> Result<Vec<SavedDdl>, Error> {
    let rows = c
        .query(
            "SELECT kind, table_schema, table_name, name, definition FROM pgduplex.copy_saved_ddl \
              WHERE sync = $1 ORDER BY kind DESC, table_schema, table_name, name",
            &[&sync],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SavedDdl {
            kind: r.get(0),
            table: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            name: r.get(3),
            definition: r.get(4),
        })
        .collect())
}

/// Forgets a saved definition (put back).
pub async fn forget_saved_ddl<C: GenericClient>(
    c: &C,
    sync: &str,
    s: &SavedDdl,
) -> Result<(), Error> {
    c.execute(
        "DELETE FROM pgduplex.copy_saved_ddl WHERE sync = $1 AND kind = $2 AND table_schema = $3 \
           AND table_name = $4 AND name = $5",
        &[&sync, &s.kind, &s.table.schema, &s.table.name, &s.name],
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------------- lease

/// The single writer's lease on one side: every apply transaction checks that
/// the epoch is still its own, so a daemon that lost its lock cannot commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub epoch: i64,
    pub acquired_at: String,
}

/// Takes the lease for `owner` (a new epoch) and returns the epoch.
pub async fn take_lease<C: GenericClient>(c: &C, sync: &str, owner: &str) -> Result<i64, Error> {
    Ok(c.query_one(
        "INSERT INTO pgduplex.lease (sync, owner, epoch) VALUES ($1, $2, 1) \
         ON CONFLICT (sync) DO UPDATE SET owner = EXCLUDED.owner, epoch = pgduplex.lease.epoch + 1, \
           acquired_at = pg_catalog.now() RETURNING epoch",
        &[&sync, &owner],
    )
    .await?
    .get(0))
}

/// The lease's epoch, locked `FOR SHARE` until the end of the transaction (a
/// new daemon's [`take_lease`] waits for it).
pub async fn lease_epoch_for_share<C: GenericClient>(
    c: &C,
    sync: &str,
) -> Result<Option<i64>, Error> {
    Ok(c.query_opt(
        "SELECT epoch FROM pgduplex.lease WHERE sync = $1 FOR SHARE",
        &[&sync],
    )
    .await?
    .map(|r| r.get(0)))
}

pub async fn lease<C: GenericClient>(c: &C, sync: &str) -> Result<Option<Lease>, Error> {
    Ok(c.query_opt(
        "SELECT owner, epoch, acquired_at::pg_catalog.text FROM pgduplex.lease WHERE sync = $1",
        &[&sync],
    )
    .await?
    .map(|r| Lease {
        owner: r.get(0),
        epoch: r.get(1),
        acquired_at: r.get(2),
    }))
}

// ----------------------------------------------------------------- applied

/// A ledger row: the source deltas (and TRUNCATE log entries) one batch applied
/// to this database, written in the apply transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedBatch {
    pub batch: i64,
    pub seqs: Vec<i64>,
}

pub async fn record_applied<C: GenericClient>(
    c: &C,
    sync: &str,
    source: &str,
    batch: i64,
    seqs: &[i64],
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO pgduplex.applied (sync, source, batch, seqs) VALUES ($1, $2, $3, $4)",
        &[&sync, &source, &batch, &seqs],
    )
    .await?;
    Ok(())
}

/// The ledger rows of batches from `source`, oldest first.
pub async fn applied_batches<C: GenericClient>(
    c: &C,
    sync: &str,
    source: &str,
) -> Result<Vec<AppliedBatch>, Error> {
    Ok(c.query(
        "SELECT batch, seqs FROM pgduplex.applied WHERE sync = $1 AND source = $2 ORDER BY batch",
        &[&sync, &source],
    )
    .await?
    .iter()
    .map(|r| AppliedBatch {
        batch: r.get(0),
        seqs: r.get(1),
    })
    .collect())
}

/// Deletes a ledger row once its batch's source deltas are gone for good.
pub async fn forget_applied<C: GenericClient>(
    c: &C,
    sync: &str,
    source: &str,
    batch: i64,
) -> Result<(), Error> {
    c.execute(
        "DELETE FROM pgduplex.applied WHERE sync = $1 AND source = $2 AND batch = $3",
        &[&sync, &source, &batch],
    )
    .await?;
    Ok(())
}

// --------------------------------------------------------------- conflicts

/// One conflict as logged: both row images as JSON text, the capture times in
/// microseconds since the epoch.
#[derive(Clone, Debug)]
pub struct ConflictRecord<'a> {
    pub table: &'a TableName,
    /// The key as a JSON object (`None` for a TRUNCATE).
    pub key: Option<String>,
    pub kind: &'a str,
    pub rows: [&'a Option<String>; 2],
    pub changed_at: [Option<f64>; 2],
    pub policy: &'a str,
    pub winner: &'a str,
}

/// Writes conflicts to `pgduplex.conflicts` (one prepared statement).
pub async fn log_conflicts<C: GenericClient>(
    c: &C,
    sync: &str,
    conflicts: &[ConflictRecord<'_>],
) -> Result<(), Error> {
    if conflicts.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare(
            "INSERT INTO pgduplex.conflicts (sync, table_schema, table_name, key, kind, left_row, right_row, \
               left_changed_at, right_changed_at, policy, winner) \
             VALUES ($1, $2, $3, $4::text::jsonb, $5, $6::text::jsonb, $7::text::jsonb, \
               pg_catalog.to_timestamp($8::float8 / 1000000), pg_catalog.to_timestamp($9::float8 / 1000000), $10, $11)",
        )
        .await?;
    for k in conflicts {
        c.execute(
            &stmt,
            &[
                &sync,
                &k.table.schema,
                &k.table.name,
                &k.key,
                &k.kind,
                k.rows[0],
                k.rows[1],
                &k.changed_at[0],
                &k.changed_at[1],
                &k.policy,
                &k.winner,
            ],
        )
        .await?;
    }
    Ok(())
}

/// How many conflicts were logged for `sync`, and when the last one was.
pub async fn conflict_totals<C: GenericClient>(
    c: &C,
    sync: &str,
) -> Result<(i64, Option<String>), Error> {
    let r = c
        .query_one(
            "SELECT count(*), max(detected_at)::pg_catalog.text FROM pgduplex.conflicts WHERE sync = $1",
            &[&sync],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

// ------------------------------------------------------------ truncate_log

/// A poll fragment: whether a TRUNCATE waits (a boolean expression).
pub const TRUNCATE_PENDING_SQL: &str = "EXISTS (SELECT 1 FROM pgduplex.truncate_log)";

/// A captured TRUNCATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    pub seq: i64,
    /// `replicated_table.id` of the truncated table.
    pub table_id: i32,
    /// The name the trigger recorded (for the log only).
    pub relation: TableName,
    pub txid: i64,
    /// Capture time, microseconds since the epoch.
    pub captured_micros: i64,
}

/// The oldest `limit` TRUNCATEs, in capture order.
pub async fn truncates<C: GenericClient>(c: &C, limit: i64) -> Result<Vec<Truncate>, Error> {
    Ok(c.query(
        "SELECT seq, table_id, truncated_schema, truncated_table, txid, \
               (pg_catalog.date_part('epoch', captured_at) * 1000000)::pg_catalog.int8 \
               FROM pgduplex.truncate_log ORDER BY seq LIMIT $1",
        &[&limit],
    )
    .await?
    .iter()
    .map(|r| Truncate {
        seq: r.get(0),
        table_id: r.get(1),
        relation: TableName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
        txid: r.get(4),
        captured_micros: r.get(5),
    })
    .collect())
}

/// Whether a TRUNCATE of one of `table_ids` was logged other than `seen`.
pub async fn truncated_since<C: GenericClient>(
    c: &C,
    table_ids: &[i32],
    seen: &[i64],
) -> Result<bool, Error> {
    Ok(c.query_opt(
        "SELECT 1 FROM pgduplex.truncate_log WHERE table_id = ANY($1::pg_catalog.int4[]) \
               AND NOT (seq = ANY($2::pg_catalog.int8[])) LIMIT 1",
        &[&table_ids, &seen],
    )
    .await?
    .is_some())
}

/// Deletes applied TRUNCATE log entries.
pub async fn forget_truncates<C: GenericClient>(c: &C, seqs: &[i64]) -> Result<(), Error> {
    c.execute(
        "DELETE FROM pgduplex.truncate_log WHERE seq = ANY($1::pg_catalog.int8[])",
        &[&seqs],
    )
    .await?;
    Ok(())
}

/// TRUNCATEs waiting (0 where pgduplex is not installed).
pub async fn pending_truncates<C: GenericClient>(c: &C) -> Result<i64, Error> {
    Ok(c.query_one(
        "SELECT CASE WHEN pg_catalog.to_regclass('pgduplex.truncate_log') IS NULL THEN 0::pg_catalog.int8 \
                ELSE (SELECT pg_catalog.count(*) FROM pgduplex.truncate_log) END",
        &[],
    )
    .await?
    .get(0))
}
