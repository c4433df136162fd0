//! The work of one unit (a table or a key range): the source transaction (its
//! own snapshot, or its foreign-key group's exported one), the target
//! transaction (emptied in it where allowed, indexes dropped and built again
//! after the rows), the COPY statements on either side and the rows piped
//! between them, and the progress record committed with the rows. Range bounds
//! travel as custom settings set with `set_config($1)` (COPY takes no bind
//! parameters).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use pgduplex_config::Side;
use pgduplex_pg::capture::{APPLYING_SETTING, STATEMENT_TRIGGERS};
use pgduplex_pg::catalog::TableKind;
use pgduplex_pg::copy_pipe::{self, PipeError};
use pgduplex_pg::store;
use pgduplex_pg::{quote_ident, quote_literal, TableName};
use tokio_postgres::{Client, CopyInSink, CopyOutStream};

use super::plan::{self, Format, Part, TableJob};
use super::schedule::{Shared, Unit};
use super::{connect, db, CopyError, TaskError};
use crate::progress::UnitProgress;

/// The custom settings that carry a range's bounds into the source's COPY query.
const LOWER_SETTING: &str = "pgduplex.copy_lower";
const UPPER_SETTING: &str = "pgduplex.copy_upper";

/// Rows are passed to the target in buffers of this size.
const COPY_BUFFER: usize = 256 * 1024;

/// `maintenance_work_mem` of a copy transaction that rebuilds the indexes it
/// dropped (raised to this, never lowered): the default 64 MB sorts a
/// few-million-row key on disk.
const REBUILD_WORK_MEM: i64 = 512 * 1024 * 1024;

/// The indexes of a table emptied in its copy transaction that are dropped
/// before its COPY and built again after it, in the same transaction (the
/// table is held `ACCESS EXCLUSIVE` throughout): one sort and bulk build per index
/// instead of one index insertion per row. Atomic: a copy killed or failed before
/// its commit rolls the drop back with the rows, so no definition needs saving.
/// Only where the copy's role may build them again: it owns the table (and so
/// the index) and may CREATE in its schema (`CREATE INDEX` checks both; the
/// `public` schema of PostgreSQL 15+ grants CREATE to its owner only).
/// Left in place (copied into as usual): an index that is the replica identity
/// or the clustering index, in a tablespace of its own, attached to a partitioned
/// parent index, commented, with a statistics target, not valid, used by a
/// constraint other than its own primary key / unique constraint (exclusion
/// constraints, foreign keys), or that any other object depends on (a view
/// grouping by the primary key). Primary keys first; constraints are added back
/// as constraints with their names and the server's own deparse
/// (`pg_get_constraintdef`, `pg_get_indexdef`).
const DEFERRABLE_INDEXES_SQL: &str = "\
SELECT ic.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid), con.conname::text, \
       pg_catalog.pg_get_constraintdef(con.oid) \
  FROM pg_catalog.pg_index i \
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
  LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
                                         AND con.contype IN ('p', 'u') \
 WHERE i.indrelid = $1 AND ic.relkind = 'i' AND i.indisvalid AND i.indisready AND i.indislive \
   AND pg_catalog.pg_has_role(ic.relowner, 'USAGE') \
   AND pg_catalog.has_schema_privilege(ic.relnamespace, 'CREATE') \
   AND NOT i.indisreplident AND NOT i.indisclustered AND ic.reltablespace = 0 \
   AND (con.oid IS NULL OR con.conname = ic.relname) \
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid) \
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c2 \
                    WHERE c2.conindid = i.indexrelid AND c2.oid IS DISTINCT FROM con.oid) \
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                    WHERE d.deptype = 'n' \
                      AND ((d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = i.indexrelid) \
                        OR (d.refclassid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.refobjid = con.oid))) \
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_description ds \
                    WHERE (ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objoid = i.indexrelid) \
                       OR (ds.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND ds.objoid = con.oid)) \
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                    WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0) \
 ORDER BY i.indisprimary DESC, ic.relname";

/// An index dropped and rebuilt inside a copy transaction.
struct InTxIndex {
    name: String,
    /// `CREATE [UNIQUE] INDEX ...` (for an index without a constraint).
    index_def: String,
    /// The primary key / unique constraint that owns the index, and its definition.
    constraint: Option<(String, String)>,
}
/// Exported snapshots of the groups of tables linked by foreign keys: a
/// REPEATABLE READ transaction on the source that locked every table of the
/// group and stays open until the group is copied.
pub(super) struct Snapshot {
    pub client: Client,
    pub id: String,
}

/// Names the table and range of a unit in its errors.
struct UnitErr {
    table: TableName,
    part: String,
}

impl UnitErr {
    /// A PostgreSQL error of the unit on `side`.
    fn on(&self, side: Side) -> impl FnOnce(tokio_postgres::Error) -> CopyError + '_ {
        move |source| CopyError::Unit {
            table: self.table.clone(),
            part: self.part.clone(),
            side,
            source,
        }
    }
}

/// What the target transaction of a unit did before its COPY.
#[derive(Default)]
struct TargetTx {
    /// The table was emptied in this transaction: `COPY FREEZE`.
    freeze: bool,
    /// The statement that switches the INSERT capture trigger back on before the
    /// commit (it was switched off after the TRUNCATE).
    trigger_on: Option<String>,
    /// Indexes dropped after the TRUNCATE, to build after the rows.
    rebuild: Vec<InTxIndex>,
}

impl Shared {
    /// The exported snapshot of group `g`, taken now if it is the group's first unit.
    async fn snapshot(&self, g: usize) -> Result<String, CopyError> {
        let side = self.source_side;
        let mut snaps = self.snapshots.lock().await;
        if let Some(s) = snaps.get(&g) {
            return Ok(s.id.clone());
        }
        let client = connect(&self.src_end, side, "").await?;
        let tables: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.group == Some(g))
            .map(|j| j.source.name.quoted())
            .collect();
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE {} IN ACCESS SHARE MODE",
                tables.join(", ")
            ))
            .await
            .map_err(db(side, "locking the tables of a shared snapshot"))?;
        let id: String = client
            .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
            .await
            .map_err(db(side, "exporting a snapshot"))?
            .get(0);
        snaps.insert(
            g,
            Arc::new(Snapshot {
                client,
                id: id.clone(),
            }),
        );
        Ok(id)
    }

    /// Copies one table or range: source and target transactions, the rows piped
    /// between them, and the progress record committed with the rows.
    pub(super) async fn copy_unit(
        &self,
        u: usize,
        src: &mut Client,
        tgt: &mut Client,
    ) -> Result<(), CopyError> {
        let unit = &self.units[u];
        let job = &self.jobs[unit.job];
        let err = UnitErr {
            table: job.source.name.clone(),
            part: unit.part.label(),
        };
        let snapshot = match job.group {
            Some(g) => Some(self.snapshot(g).await?),
            None => None,
        };
        let started = Instant::now();
        // Source: the lock before the snapshot (LOCK takes none; the snapshot is
        // taken by the first query after it, or imported).
        let mut begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE {} IN ACCESS SHARE MODE",
            job.source.name.quoted()
        );
        if let Some(id) = &snapshot {
            begin.push_str(&format!("; SET TRANSACTION SNAPSHOT {}", quote_literal(id)));
        }
        src.batch_execute(&begin)
            .await
            .map_err(err.on(self.source_side))?;
        let result = self.pipe(unit, src, tgt, &err, started).await;
        let _ = src.batch_execute("ROLLBACK").await;
        if result.is_err() {
            let _ = tgt.batch_execute("ROLLBACK").await;
        }
        let (rows, bytes) = result?;
        tracing::debug!(table = %job.target.name, part = unit.part.part, rows, bytes, "copied");
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.rows += rows;
        stats.bytes += bytes;
        stats.parts += 1;
        stats.tables.insert(job.target.name.clone());
        Ok(())
    }

    /// The unit's rows from the source transaction (begun) into a new target
    /// transaction, committed with the unit's progress record. Returns the rows
    /// and bytes copied. On an error the target transaction is left for the
    /// caller to roll back.
    async fn pipe(
        &self,
        unit: &Unit,
        src: &mut Client,
        tgt: &mut Client,
        err: &UnitErr,
        started: Instant,
    ) -> Result<(u64, u64), CopyError> {
        let job = &self.jobs[unit.job];
        let source_side = self.source_side;
        let target_side = source_side.other();
        let lower = unit.part.lower.map(|v| v.to_string()).unwrap_or_default();
        let upper = unit.part.upper.map(|v| v.to_string()).unwrap_or_default();
        let snap_row = src
            .query_one(
                "SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config($3, $4, true), \
                        pg_catalog.txid_current_snapshot()::text",
                &[&LOWER_SETTING, &lower, &UPPER_SETTING, &upper],
            )
            .await
            .map_err(err.on(source_side))?;
        let snapshot_text: String = snap_row.get(2);
        let prepared = self.begin_target(unit, tgt, err).await?;
        let out_sql = copy_out_sql(&job.source.name, &job.columns, &unit.part, job.format);
        let in_sql = copy_in_sql(&job.target.name, &job.columns, prepared.freeze, job.format);
        let (stream, sink) = tokio::join!(
            src.copy_out(&out_sql),
            tgt.copy_in::<_, bytes::Bytes>(&in_sql)
        );
        let stream = stream.map_err(err.on(source_side))?;
        let sink = sink.map_err(err.on(target_side))?;
        let counters = self.progress.start(
            format!("{}{}", job.target.name, unit.part.label()),
            unit.estimated_rows,
        );
        let (piped, bytes) = self.stream_rows(stream, sink, &counters, err).await;
        let result = match piped {
            Ok(rows) => {
                self.finish_target(tgt, unit, &prepared, (rows, bytes), &snapshot_text, err)
                    .await
            }
            Err(e) => Err(e),
        };
        counters
            .rows
            .store(*result.as_ref().unwrap_or(&0), Ordering::Relaxed);
        self.progress.finish(&counters, result.is_ok());
        let rows = result?;
        tracing::info!(
            table = %job.target.name,
            part = unit.part.part + 1,
            parts = unit.part.parts,
            rows,
            bytes,
            freeze = prepared.freeze,
            binary = job.format == plan::Format::Binary,
            indexes_rebuilt = prepared.rebuild.len(),
            seconds = started.elapsed().as_secs_f64(),
            "copied {}{}",
            job.target.name,
            unit.part.label()
        );
        Ok((rows, bytes))
    }

    /// Target: the no-echo setting, then (if it may) empty the table in this
    /// transaction so that COPY FREEZE applies.
    async fn begin_target(
        &self,
        unit: &Unit,
        tgt: &mut Client,
        err: &UnitErr,
    ) -> Result<TargetTx, CopyError> {
        let job = &self.jobs[unit.job];
        let target_side = self.source_side.other();
        tgt.batch_execute(&format!("BEGIN; SET LOCAL {APPLYING_SETTING} = on"))
            .await
            .map_err(err.on(target_side))?;
        let mut prepared = TargetTx::default();
        if !unit.truncate_in_tx || job.referenced {
            return Ok(prepared);
        }
        let tq = job.target.name.quoted();
        // ACCESS EXCLUSIVE first, so that nothing can be written between the
        // check and the TRUNCATE (if-empty must never remove a row).
        tgt.batch_execute(&format!("LOCK TABLE {tq} IN ACCESS EXCLUSIVE MODE"))
            .await
            .map_err(err.on(target_side))?;
        let may_empty = if self.truncate_mode {
            true
        } else {
            let rows = tgt
                .simple_query(&format!("SELECT 1 FROM {tq} LIMIT 1"))
                .await
                .map_err(err.on(target_side))?;
            !rows
                .iter()
                .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        };
        if !may_empty {
            return Err(CopyError::NotEmpty {
                side: target_side,
                tables: job.target.name.to_string(),
                them: "it",
            });
        }
        // The table is ours alone until commit (ACCESS EXCLUSIVE): no other
        // session can write a row the capture would have to see, so the INSERT
        // capture trigger is switched off for this transaction only and switched
        // back on (ALWAYS) before the commit. Its transition table would
        // otherwise hold every copied row (measured: bench/onetimecopy/RESULTS.md).
        let trigger = pgduplex_pg::quote_ident(STATEMENT_TRIGGERS[0]);
        tgt.batch_execute(&format!(
            "TRUNCATE {tq}; ALTER TABLE {tq} DISABLE TRIGGER {trigger}"
        ))
        .await
        .map_err(err.on(target_side))?;
        prepared.trigger_on = Some(format!("ALTER TABLE {tq} ENABLE ALWAYS TRIGGER {trigger}"));
        prepared.freeze = job.target.kind == TableKind::Ordinary;
        if self.rebuild_in_tx && prepared.freeze {
            prepared.rebuild = self.drop_indexes_in_tx(tgt, job).await?;
        }
        Ok(prepared)
    }

    /// Streams the rows, counting them in `counters`; stops when the copy is
    /// cancelled. Returns the rows the target took, and the bytes sent (0 on an
    /// error).
    async fn stream_rows(
        &self,
        stream: CopyOutStream,
        sink: CopyInSink<Bytes>,
        counters: &UnitProgress,
        err: &UnitErr,
    ) -> (Result<u64, CopyError>, u64) {
        let source_side = self.source_side;
        // The rows are gathered into large buffers before they go to the target,
        // which then receives a few big CopyData messages instead of one per row.
        let piped = copy_pipe::pipe(stream, sink, COPY_BUFFER, |rows, bytes| {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(CopyError::Task(TaskError::Cancelled));
            }
            counters.rows.fetch_add(rows, Ordering::Relaxed);
            counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            Ok(())
        })
        .await;
        let bytes = piped.as_ref().map_or(0, |p| p.bytes);
        let result = match piped {
            Ok(p) => Ok(p.rows),
            Err(PipeError::Source(e)) => Err(err.on(source_side)(e)),
            Err(PipeError::Target(e)) => Err(err.on(source_side.other())(e)),
            Err(PipeError::Stopped(e)) => Err(e),
        };
        (result, bytes)
    }

    /// After the rows: the indexes dropped built again, the capture trigger
    /// switched back on, the unit recorded done, and the commit. Returns the rows.
    async fn finish_target(
        &self,
        tgt: &mut Client,
        unit: &Unit,
        prepared: &TargetTx,
        (rows, bytes): (u64, u64),
        snapshot_text: &str,
        err: &UnitErr,
    ) -> Result<u64, CopyError> {
        let job = &self.jobs[unit.job];
        let target_side = self.source_side.other();
        if !prepared.rebuild.is_empty() {
            self.rebuild_indexes(tgt, job, &prepared.rebuild)
                .await
                .map_err(err.on(target_side))?;
        }
        if let Some(enable) = &prepared.trigger_on {
            tgt.batch_execute(enable)
                .await
                .map_err(err.on(target_side))?;
        }
        store::record_copy_part_done(
            &*tgt,
            &self.sync,
            &job.target.name,
            unit.part.part,
            rows as i64,
            bytes as i64,
            snapshot_text,
        )
        .await
        .map_err(err.on(target_side))?;
        tgt.batch_execute("COMMIT")
            .await
            .map_err(err.on(target_side))?;
        Ok(rows)
    }

    /// Drops the indexes of `job`'s table that [`DEFERRABLE_INDEXES_SQL`] allows,
    /// in the copy transaction (after its TRUNCATE), behind a savepoint: if a drop
    /// is refused (something depends on the index after all), every index stays
    /// and the rows are copied into them as usual.
    async fn drop_indexes_in_tx(
        &self,
        tgt: &mut Client,
        job: &TableJob,
    ) -> Result<Vec<InTxIndex>, CopyError> {
        let target_side = self.source_side.other();
        let rows = tgt
            .query(DEFERRABLE_INDEXES_SQL, &[&job.target.oid])
            .await
            .map_err(db(
                target_side,
                "listing the indexes to build after the rows",
            ))?;
        let list: Vec<InTxIndex> = rows
            .iter()
            .map(|r| InTxIndex {
                name: r.get(0),
                index_def: r.get(1),
                constraint: match (r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3)) {
                    (Some(n), Some(d)) => Some((n, d)),
                    _ => None,
                },
            })
            .collect();
        if list.is_empty() {
            return Ok(list);
        }
        let tq = job.target.name.quoted();
        let mut sql = String::from("SAVEPOINT pgduplex_indexes");
        for ix in &list {
            match &ix.constraint {
                Some((name, _)) => sql.push_str(&format!(
                    "; ALTER TABLE {tq} DROP CONSTRAINT {}",
                    pgduplex_pg::quote_ident(name)
                )),
                None => sql.push_str(&format!(
                    "; DROP INDEX {}",
                    TableName::new(job.target.name.schema.clone(), ix.name.clone()).quoted()
                )),
            }
        }
        sql.push_str(&format!(
            "; RELEASE SAVEPOINT pgduplex_indexes; \
             SELECT pg_catalog.set_config('maintenance_work_mem', '{}kB', true) \
              WHERE pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) < {REBUILD_WORK_MEM}",
            REBUILD_WORK_MEM / 1024
        ));
        match tgt.batch_execute(&sql).await {
            Ok(()) => Ok(list),
            Err(e) => {
                tracing::warn!(
                    table = %job.target.name,
                    error = %e,
                    "could not drop the table's indexes for the copy: copying into them"
                );
                tgt.batch_execute("ROLLBACK TO SAVEPOINT pgduplex_indexes")
                    .await
                    .map_err(db(target_side, "keeping the indexes"))?;
                Ok(Vec::new())
            }
        }
    }

    /// Builds `indexes` again (after the rows, in the copy transaction): their
    /// constraints added back with their names, or their `CREATE INDEX`.
    async fn rebuild_indexes(
        &self,
        tgt: &mut Client,
        job: &TableJob,
        indexes: &[InTxIndex],
    ) -> Result<(), tokio_postgres::Error> {
        let tq = job.target.name.quoted();
        let sql = indexes
            .iter()
            .map(|ix| match &ix.constraint {
                Some((name, def)) => format!(
                    "ALTER TABLE {tq} ADD CONSTRAINT {} {def}",
                    pgduplex_pg::quote_ident(name)
                ),
                None => ix.index_def.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let built = Instant::now();
        tgt.batch_execute(&sql).await?;
        tracing::info!(
            table = %job.target.name,
            indexes = indexes.len(),
            seconds = built.elapsed().as_secs_f64(),
            "indexes built after the rows, in the copy transaction"
        );
        Ok(())
    }
}

/// `COPY (SELECT <columns> FROM <table> [WHERE <range>]) TO STDOUT` on the source.
/// The bounds are read from [`LOWER_SETTING`] / [`UPPER_SETTING`].
fn copy_out_sql(table: &TableName, columns: &[String], part: &Part, format: Format) -> String {
    let cols = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut conditions = Vec::new();
    if let Some(k) = &part.key_column {
        if part.lower.is_some() {
            conditions.push(format!(
                "{} OPERATOR(pg_catalog.>=) pg_catalog.current_setting('{LOWER_SETTING}')::pg_catalog.int8",
                quote_ident(k)
            ));
        }
        if part.upper.is_some() {
            conditions.push(format!(
                "{} OPERATOR(pg_catalog.<) pg_catalog.current_setting('{UPPER_SETTING}')::pg_catalog.int8",
                quote_ident(k)
            ));
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "COPY (SELECT {cols} FROM {}{filter}) TO STDOUT{}",
        table.quoted(),
        if format == Format::Binary {
            " (FORMAT binary)"
        } else {
            ""
        }
    )
}

/// `COPY <table> (<columns>) FROM STDIN` on the target, with `FREEZE` when the
/// table was created or truncated in the same transaction.
fn copy_in_sql(table: &TableName, columns: &[String], freeze: bool, format: Format) -> String {
    let cols = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut options = Vec::new();
    if format == Format::Binary {
        options.push("FORMAT binary");
    }
    if freeze {
        options.push("FREEZE");
    }
    let with = if options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", options.join(", "))
    };
    format!("COPY {} ({cols}) FROM STDIN{with}", table.quoted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quotes_names() {
        let t = TableName::new("My Schema", "ta\"ble");
        let cols = vec!["a".to_string(), "B c".to_string()];
        let part = Part {
            part: 1,
            parts: 3,
            key_column: Some("i\"d".into()),
            lower: Some(1),
            upper: Some(5),
        };
        let out = copy_out_sql(&t, &cols, &part, Format::Text);
        assert!(out.starts_with(
            "COPY (SELECT \"a\", \"B c\" FROM \"My Schema\".\"ta\"\"ble\" WHERE \"i\"\"d\" OPERATOR(pg_catalog.>=)"
        ), "{out}");
        assert!(!copy_out_sql(&t, &cols, &Part::whole(), Format::Text).contains("WHERE"));
        assert!(copy_out_sql(&t, &cols, &Part::whole(), Format::Binary)
            .ends_with(") TO STDOUT (FORMAT binary)"));
        assert_eq!(
            copy_in_sql(&t, &cols, true, Format::Text),
            "COPY \"My Schema\".\"ta\"\"ble\" (\"a\", \"B c\") FROM STDIN WITH (FREEZE)"
        );
        assert_eq!(
            copy_in_sql(&t, &cols, true, Format::Binary),
            "COPY \"My Schema\".\"ta\"\"ble\" (\"a\", \"B c\") FROM STDIN WITH (FORMAT binary, FREEZE)"
        );
        assert!(copy_in_sql(&t, &cols, false, Format::Text).ends_with("FROM STDIN"));
    }
}
