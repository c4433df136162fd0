//! `pgduplex sync`: makes the losing side equal to the winning one, table by
//! table, from what a scan finds (rubyrep's sync).
//!
//! - Keyed tables: rows only on the winner are inserted, rows on both sides that
//!   differ are overwritten, rows only on the loser are deleted; batches of keys,
//!   each one transaction on the loser. Foreign-key order: upserts run over the
//!   tables parents first; deletes, unless the loser's role may set
//!   `session_replication_role = replica`, in a second pass children first.
//! - Tables without a key (or with different keys on the two sides) that differ
//!   are copied whole: emptied and filled by COPY in one transaction.
//! - Nothing sync writes is captured: each transaction sets the no-echo setting
//!   as the apply role (sync refuses to run as another role on an installed side).
//! - One writer: sync holds the pair's advisory lock, so it does not run while
//!   the daemon does.
//! - `--dry-run` lists and counts what would change, and changes nothing.

use std::time::Instant;

use pgduplex_config::{Config, Side};
use pgduplex_pg::capture::APPLYING_SETTING;
use pgduplex_pg::catalog::foreign_key_order;
use pgduplex_pg::{quote_ident, TableName};
use serde::Serialize;
use tokio_postgres::Client;

use super::levels::{key_arrays, DETAIL_LIMIT};
use super::report::{Diff, DiffKind};
use super::sql::Shape;
use super::targets::Target;
use super::{db, ScanError};
use crate::progress::{ProgressStyle, ScanProgress};
use pgduplex_pg::copy_pipe::{self, PipeError};
use pgduplex_pg::session::{self, ApplyRole};

/// Keys per write transaction.
const BATCH: usize = 1000;

#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The side whose rows are kept.
    pub winner: Side,
    pub dry_run: bool,
    pub tables: Option<regex::Regex>,
    pub progress: ProgressStyle,
}

/// What sync did (or, dry, would do) to one table on the losing side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncTable {
    pub table: String,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Copied whole (no key): the rows written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_whole: Option<u64>,
    /// Why the table was left alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Dry run: the keys that would change (up to 1000 per table).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<super::Detail>,
}

impl SyncTable {
    pub fn changes(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub winner: Side,
    pub changed_side: Side,
    pub dry_run: bool,
    pub tables: Vec<SyncTable>,
    pub total_changes: u64,
    pub seconds: f64,
}

impl SyncReport {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{}: the {} side {} the {} side\n",
            if self.dry_run {
                "sync --dry-run"
            } else {
                "sync"
            },
            self.changed_side,
            if self.dry_run {
                "would be changed to match"
            } else {
                "was changed to match"
            },
            self.winner
        );
        let width = super::report::name_width(self.tables.iter().map(|t| t.table.as_str()));
        out.push_str(&format!(
            "{:<width$}  {:>9}  {:>9}  {:>9}\n",
            "table", "inserted", "updated", "deleted"
        ));
        for t in &self.tables {
            out.push_str(&format!(
                "{:<width$}  {:>9}  {:>9}  {:>9}",
                t.table, t.inserted, t.updated, t.deleted
            ));
            if let Some(n) = t.copied_whole {
                out.push_str(&format!("  (no key: copied whole, {n} rows)"));
            }
            if let Some(s) = &t.skipped {
                out.push_str(&format!("  skipped: {s}"));
            }
            out.push('\n');
            for k in &t.keys {
                let kind = match k.kind {
                    DiffKind::OnlyLeft | DiffKind::OnlyRight if self.dry_run => {
                        if (k.kind == DiffKind::OnlyLeft) == (self.winner == Side::Left) {
                            "insert"
                        } else {
                            "delete"
                        }
                    }
                    _ => "update",
                };
                out.push_str(&format!("  {kind:<7} {}\n", k.key));
            }
        }
        out.push_str(&format!(
            "total: {} change(s){}; {:.1} s\n",
            self.total_changes,
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            },
            self.seconds
        ));
        out
    }
}

/// Takes the pair's advisory lock on both sides (left first, as the daemon does),
/// or refuses: the daemon runs.
async fn lock_pair(sessions: &super::targets::Sessions) -> Result<(), ScanError> {
    for side in Side::BOTH {
        let got = session::try_lock_pair(&sessions.side(side)[0], &sessions.sync_name)
            .await
            .map_err(db(side, "taking the pair's lock"))?;
        if !got {
            return Err(ScanError::Refused(format!(
                "the replication daemon of sync {:?} is running (it holds the pair's lock on the {side} side); \
                 nothing was changed. Stop it, run sync, then start it again",
                sessions.sync_name
            )));
        }
    }
    Ok(())
}

/// The loser must write as the apply role the capture of this sync was
/// installed for, or what sync writes would be captured and sent back.
async fn check_apply_role(c: &Client, side: Side, sync: &str) -> Result<(), ScanError> {
    match session::apply_role(c, sync)
        .await
        .map_err(db(side, "reading the apply role"))?
    {
        // Not installed on this side: nothing captures what sync writes.
        ApplyRole::NotInstalled | ApplyRole::Matches => Ok(()),
        ApplyRole::NoAccess { session } => Err(ScanError::Refused(format!(
            "{side}: sync connects as {session:?}, which may not read schema pgduplex: \
             pgduplex was installed by another role (its apply role), and what sync writes \
             as {session:?} would be captured and sent back; nothing was changed. \
             Connect as the role that ran install"
        ))),
        ApplyRole::Other { installed, session } => Err(ScanError::Refused(format!(
            "{side}: the capture was installed for apply role {installed:?} but sync connects as {session:?}: \
             what sync writes would be captured and sent back; nothing was changed. \
             Connect as {installed:?}, or run install again as {session:?}"
        ))),
    }
}

/// `pgduplex sync`.
pub async fn run(config: &Config, options: &SyncOptions) -> Result<SyncReport, ScanError> {
    let started = Instant::now();
    // Two sessions per side: one lists rows, the other reads or writes by key.
    let sessions = super::targets::connect(config, 2).await?;
    let winner = options.winner;
    let loser = winner.other();
    let targets = super::targets::targets(config, &sessions, options.tables.as_ref()).await?;
    if targets.is_empty() {
        return Err(ScanError::Usage(
            "no table to sync: none is selected by [tables] (and --tables)".into(),
        ));
    }
    lock_pair(&sessions).await?;
    if !options.dry_run {
        check_apply_role(&sessions.side(loser)[0], loser, &sessions.sync_name).await?;
    }
    let replica = sessions.can_use_replica_role[loser as usize];
    let catalog = &sessions.catalogs[loser as usize];
    let names: Vec<TableName> = targets.iter().map(|t| t.shape.table.clone()).collect();
    let (mut order, cycle) = foreign_key_order(&names, &catalog.foreign_keys);
    order.extend(cycle);
    let progress = ScanProgress::new(targets.len(), options.progress);
    let reporter = progress.spawn();
    let writer = Writer {
        winner,
        loser,
        replica,
        dry_run: options.dry_run,
        sessions: &sessions,
    };
    let mut results: Vec<(TableName, SyncTable)> = Vec::new();
    let mut second_pass: Vec<&Target> = Vec::new();
    for name in &order {
        let target = targets
            .iter()
            .find(|t| &t.shape.table == name)
            .expect("ordered from the targets");
        let mut r = SyncTable {
            table: name.to_string(),
            ..SyncTable::default()
        };
        progress.start_table(name);
        if let Some(p) = &target.problem {
            r.skipped = Some(format!("{p}; make the definitions equal first"));
        } else if !target.shape.keyed() {
            writer.copy_whole(target, &progress, &mut r).await?;
        } else {
            let loser_only = writer.sync_keyed(target, &progress, &mut r, true).await?;
            if loser_only > 0 && !replica {
                second_pass.push(target);
            }
        }
        progress.table_done();
        results.push((name.clone(), r));
    }
    // Deletes, children first, where foreign keys are checked.
    for target in second_pass.iter().rev() {
        let r = &mut results
            .iter_mut()
            .find(|(n, _)| n == &target.shape.table)
            .expect("first pass result")
            .1;
        writer.sync_keyed(target, &progress, r, false).await?;
    }
    reporter.abort();
    progress.clear();
    let mut tables: Vec<SyncTable> = results.into_iter().map(|(_, r)| r).collect();
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    let total_changes = tables.iter().map(SyncTable::changes).sum();
    Ok(SyncReport {
        winner,
        changed_side: loser,
        dry_run: options.dry_run,
        tables,
        total_changes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

struct Writer<'a> {
    winner: Side,
    loser: Side,
    replica: bool,
    dry_run: bool,
    sessions: &'a super::targets::Sessions,
}

impl Writer<'_> {
    fn reader(&self, side: Side) -> &Client {
        &self.sessions.side(side)[1]
    }

    /// Opens a write transaction on the loser: no echo, foreign keys off where allowed.
    async fn begin(&self) -> Result<(), ScanError> {
        let c = self.reader(self.loser);
        let replica = if self.replica {
            "SET LOCAL session_replication_role = replica; "
        } else {
            ""
        };
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL {APPLYING_SETTING} = on; {replica}SET CONSTRAINTS ALL DEFERRED"
        ))
        .await
        .map_err(db(self.loser, "starting a sync transaction"))
    }

    async fn commit(&self) -> Result<(), ScanError> {
        self.reader(self.loser)
            .batch_execute("COMMIT")
            .await
            .map_err(db(self.loser, "committing a sync transaction"))
    }

    async fn rollback(&self) {
        let _ = self.reader(self.loser).batch_execute("ROLLBACK").await;
    }

    /// One keyed table: lists differing keys (scan levels 1 and 2) and writes them
    /// in batches. With `upserts`, writes winner rows (and deletes loser-only keys
    /// when foreign keys are off); otherwise deletes loser-only keys only.
    /// Returns the loser-only keys seen.
    async fn sync_keyed(
        &self,
        target: &Target,
        progress: &ScanProgress,
        r: &mut SyncTable,
        upserts: bool,
    ) -> Result<u64, ScanError> {
        let shape = &target.shape;
        let (_, _, buckets) = super::levels::level1(self.sessions, shape, progress).await?;
        if buckets.is_empty() {
            return Ok(0);
        }
        let loser_only_kind = match self.loser {
            Side::Left => DiffKind::OnlyLeft,
            Side::Right => DiffKind::OnlyRight,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Diff>(BATCH * 2);
        let mut loser_only = 0u64;
        let consume = async {
            let mut batch: Vec<Diff> = Vec::with_capacity(BATCH);
            loop {
                let d = rx.recv().await;
                let done = d.is_none();
                if let Some(d) = d {
                    let wanted = if d.kind == loser_only_kind {
                        loser_only += 1;
                        !upserts || self.replica
                    } else {
                        upserts
                    };
                    if wanted {
                        if self.dry_run && r.keys.len() < DETAIL_LIMIT {
                            r.keys.push(super::Detail {
                                kind: d.kind,
                                key: d.key_text.clone(),
                                columns: Vec::new(),
                                rows: 1,
                            });
                        }
                        batch.push(d);
                    }
                }
                if batch.len() >= BATCH || (done && !batch.is_empty()) {
                    self.write_batch(shape, &batch, loser_only_kind, r).await?;
                    batch.clear();
                }
                if done {
                    return Ok::<_, ScanError>(());
                }
            }
        };
        let s = self.sessions;
        tokio::try_join!(
            super::levels::diff_rows(shape, &s.left[0], &s.right[0], &buckets, tx),
            consume
        )?;
        Ok(loser_only)
    }

    async fn write_batch(
        &self,
        shape: &Shape,
        batch: &[Diff],
        loser_only_kind: DiffKind,
        r: &mut SyncTable,
    ) -> Result<(), ScanError> {
        let (gone, put): (Vec<&Diff>, Vec<&Diff>) =
            batch.iter().partition(|d| d.kind == loser_only_kind);
        let inserts = put.iter().filter(|d| d.kind != DiffKind::Different).count() as u64;
        let updates = put.len() as u64 - inserts;
        if self.dry_run {
            r.inserted += inserts;
            r.updated += updates;
            r.deleted += gone.len() as u64;
            return Ok(());
        }
        let key_len = shape.key.as_ref().map_or(0, Vec::len);
        // The winner's rows, as text per column.
        let rows: Vec<Vec<Option<String>>> = if put.is_empty() {
            Vec::new()
        } else {
            let arrays = key_arrays(&put, key_len);
            self.reader(self.winner)
                .query(&row_texts(shape), &super::levels::params(&arrays))
                .await
                .map_err(db(self.winner, format!("reading rows of {}", shape.table)))?
                .iter()
                .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
                .collect()
        };
        let columns: Vec<Vec<Option<String>>> = (0..shape.columns.len())
            .map(|i| rows.iter().map(|row| row[i].clone()).collect())
            .collect();
        let loser = self.reader(self.loser);
        let table_err = |what: &str| db(self.loser, format!("{what} {}", shape.table));
        self.begin().await?;
        let result = async {
            if !gone.is_empty() {
                let arrays = key_arrays(&gone, key_len);
                let n = loser
                    .execute(&delete_keys(shape), &super::levels::params(&arrays))
                    .await
                    .map_err(table_err("deleting rows of"))?;
                r.deleted += n;
            }
            if !rows.is_empty() {
                let p = super::levels::params(&columns);
                loser
                    .batch_execute("SAVEPOINT pgduplex_upsert")
                    .await
                    .map_err(table_err("writing rows of"))?;
                match loser
                    .execute(&upsert(shape, self.identity_always(shape)), &p)
                    .await
                {
                    Ok(_) => {}
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        // Two rows swapping a unique value: delete the batch's keys,
                        // then insert the winner's rows.
                        loser
                            .batch_execute("ROLLBACK TO SAVEPOINT pgduplex_upsert")
                            .await
                            .map_err(table_err("writing rows of"))?;
                        let arrays = key_arrays(&put, key_len);
                        loser
                            .execute(&delete_keys(shape), &super::levels::params(&arrays))
                            .await
                            .map_err(table_err("rewriting rows of"))?;
                        loser
                            .execute(&insert(shape, self.identity_always(shape)), &p)
                            .await
                            .map_err(table_err("rewriting rows of"))?;
                    }
                    Err(e) => return Err(table_err("writing rows of")(e)),
                }
                r.inserted += inserts;
                r.updated += updates;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => self.commit().await,
            Err(e) => {
                self.rollback().await;
                Err(e)
            }
        }
    }

    fn identity_always(&self, shape: &Shape) -> bool {
        self.sessions.catalogs[self.loser as usize]
            .table(&shape.table)
            .is_some_and(|t| t.columns.iter().any(|c| c.identity == Some('a')))
    }

    /// A table without a key that differs: emptied and copied whole.
    async fn copy_whole(
        &self,
        target: &Target,
        progress: &ScanProgress,
        r: &mut SyncTable,
    ) -> Result<(), ScanError> {
        let shape = &target.shape;
        let (lrows, rrows, buckets) = super::levels::level1(self.sessions, shape, progress).await?;
        if buckets.is_empty() {
            return Ok(());
        }
        let (win_rows, lose_rows) = match self.winner {
            Side::Left => (lrows, rrows),
            Side::Right => (rrows, lrows),
        };
        if self.dry_run {
            r.copied_whole = Some(win_rows);
            r.inserted = win_rows;
            r.deleted = lose_rows;
            return Ok(());
        }
        let cols = pgduplex_pg::ident::column_list(
            &shape
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
            "",
        );
        let t = shape.table.quoted();
        let loser = self.reader(self.loser);
        let err = |what: &str| db(self.loser, format!("{what} {}", shape.table));
        self.begin().await?;
        let result = async {
            // TRUNCATE, or DELETE where TRUNCATE is refused (a referenced table).
            if loser
                .batch_execute(&format!("SAVEPOINT pgduplex_truncate; TRUNCATE {t}"))
                .await
                .is_err()
            {
                loser
                    .batch_execute(&format!(
                        "ROLLBACK TO SAVEPOINT pgduplex_truncate; DELETE FROM {t}"
                    ))
                    .await
                    .map_err(err("emptying"))?;
            }
            let out = self
                .reader(self.winner)
                .copy_out(&format!("COPY {t} ({cols}) TO STDOUT"))
                .await
                .map_err(db(self.winner, format!("reading {}", shape.table)))?;
            let sink = loser
                .copy_in(&format!("COPY {t} ({cols}) FROM STDIN"))
                .await
                .map_err(err("copying into"))?;
            match copy_pipe::pipe(out, sink, 0, |_, _| Ok::<(), ()>(())).await {
                Ok(piped) => Ok::<_, ScanError>(piped.rows),
                Err(PipeError::Source(e)) => {
                    Err(db(self.winner, format!("reading {}", shape.table))(e))
                }
                Err(PipeError::Target(e)) => Err(err("copying into")(e)),
                Err(PipeError::Stopped(())) => unreachable!("sync's pipe is never stopped"),
            }
        }
        .await;
        match result {
            Ok(n) => {
                self.commit().await?;
                r.copied_whole = Some(n);
                r.inserted = n;
                r.deleted = lose_rows;
                Ok(())
            }
            Err(e) => {
                self.rollback().await;
                Err(e)
            }
        }
    }
}

/// The rows of keys `$1..$n`, each column as text.
fn row_texts(shape: &Shape) -> String {
    let cols = shape
        .columns
        .iter()
        .map(|c| format!("t.{}::pg_catalog.text", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {cols} FROM {} t WHERE {}",
        shape.table.quoted(),
        shape.key_in("t", &shape.key_names())
    )
}

fn delete_keys(shape: &Shape) -> String {
    format!(
        "DELETE FROM {} t WHERE {}",
        shape.table.quoted(),
        shape.key_in("t", &shape.key_names())
    )
}

/// `INSERT INTO t (cols) OVERRIDING SYSTEM VALUE SELECT casts FROM unnest($1..)`.
fn insert(shape: &Shape, identity_always: bool) -> String {
    let names: Vec<String> = shape.columns.iter().map(|c| c.name.clone()).collect();
    format!(
        "INSERT INTO {} ({}){} {}",
        shape.table.quoted(),
        pgduplex_pg::ident::column_list(&names, ""),
        if identity_always {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        },
        super::sql::select_params(&shape.columns)
    )
}

fn upsert(shape: &Shape, identity_always: bool) -> String {
    let key = shape.key_names();
    let sets: Vec<String> = shape
        .columns
        .iter()
        .filter(|c| !key.contains(&c.name))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(&c.name)))
        .collect();
    let action = if sets.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", sets.join(", "))
    };
    format!(
        "{} ON CONFLICT ({}) {action}",
        insert(shape, identity_always),
        pgduplex_pg::ident::column_list(&key, "")
    )
}
