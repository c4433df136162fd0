//! The three levels of a table's compare: level 1 sums each side's rows into hash
//! buckets ([`level1`]), level 2 lists the rows of the buckets that differ and
//! merges them ([`diff_rows`]), level 3 looks again at the keys that differ while
//! replication may still carry them (`recheck`); [`scan_table`] runs them for one
//! table, and `details` reads the differing columns for `--details`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::{pin_mut, StreamExt};
use pgduplex_config::Side;
use pgduplex_pg::catalog::Catalog;
use pgduplex_pg::TableName;
use pgduplex_pg::{session, store};
use tokio_postgres::Client;

use super::report::{Detail, Diff, DiffKind, TableResult};
use super::sql::{self, Chunk, Shape};
use super::targets::{Sessions, Target};
use super::{db, ScanError, ScanOptions};
use crate::progress::ScanProgress;

/// Blocks per level-1 range (64 MiB of 8 kB pages).
const CHUNK_BLOCKS: i64 = 8192;
/// Differing keys kept per table for the live re-check and the details; beyond
/// this, differences are counted without being looked at again.
pub const KEEP_LIMIT: usize = 100_000;
/// Keys per re-check query.
const LOOKUP_BATCH: usize = 1000;
/// Differing keys listed per table with `--details`.
pub const DETAIL_LIMIT: usize = 1000;

/// A unit of level 1: a relation, the part of it to sum, and its size in blocks
/// (for the progress).
type Unit = (TableName, Chunk, i64);

/// Per side: a count and a hash sum per bucket.
struct Sums {
    rows: u64,
    buckets: Vec<(i64, i128)>,
}

/// Scans one table.
pub(super) async fn scan_table(
    sessions: &Sessions,
    target: &Target,
    options: &ScanOptions,
    progress: &ScanProgress,
) -> Result<TableResult, ScanError> {
    let started = Instant::now();
    let shape = &target.shape;
    let mut result = TableResult {
        table: shape.table.to_string(),
        compared_by: if shape.keyed() { "key" } else { "rows" },
        problem: target.problem.clone(),
        ..TableResult::default()
    };
    progress.start_table(&shape.table);
    if let Some(side) = target.only_on {
        result.one_side_only = true;
        let n: i64 = sessions.side(side)[0]
            .query_one(
                &format!("SELECT pg_catalog.count(*) FROM {}", shape.table.quoted()),
                &[],
            )
            .await
            .map_err(db(side, format!("counting the rows of {}", shape.table)))?
            .get(0);
        match side {
            Side::Left => (result.left_rows, result.only_left) = (n as u64, n as u64),
            Side::Right => (result.right_rows, result.only_right) = (n as u64, n as u64),
        }
        result.seconds = started.elapsed().as_secs_f64();
        return Ok(result);
    }
    let (left_rows, right_rows, buckets) = level1(sessions, shape, progress).await?;
    result.left_rows = left_rows;
    result.right_rows = right_rows;
    if buckets.is_empty() {
        result.seconds = started.elapsed().as_secs_f64();
        return Ok(result);
    }
    tracing::debug!(table = %shape.table, buckets = buckets.len(), "buckets differ; listing their rows");
    // Level 2.
    let mut kept: Vec<Diff> = Vec::new();
    let mut unkept = [0u64; 4];
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let keep = async {
        while let Some(d) = rx.recv().await {
            if kept.len() < KEEP_LIMIT {
                kept.push(d);
            } else {
                unkept[d.kind as usize] += d.rows;
            }
        }
        Ok::<_, ScanError>(())
    };
    tokio::try_join!(
        diff_rows(shape, &sessions.left[0], &sessions.right[0], &buckets, tx),
        keep
    )?;
    result.only_left += unkept[DiffKind::OnlyLeft as usize];
    result.only_right += unkept[DiffKind::OnlyRight as usize];
    result.different += unkept[DiffKind::Different as usize];
    // Level 3: live re-check of keys that replication may still be carrying.
    if shape.keyed() && target.delta.iter().any(Option::is_some) && !kept.is_empty() {
        kept = recheck(sessions, target, kept, options.settle).await?;
    }
    for d in &kept {
        match d.kind {
            DiffKind::OnlyLeft => result.only_left += d.rows,
            DiffKind::OnlyRight => result.only_right += d.rows,
            DiffKind::Different => result.different += d.rows,
            DiffKind::InFlight => result.in_flight += d.rows,
        }
    }
    if options.details {
        result.details = details(sessions, shape, &kept).await?;
    }
    result.seconds = started.elapsed().as_secs_f64();
    Ok(result)
}

/// Level 1 on both sides at once: `(left rows, right rows, buckets that differ)`.
pub(super) async fn level1(
    sessions: &Sessions,
    shape: &Shape,
    progress: &ScanProgress,
) -> Result<(u64, u64, Vec<i32>), ScanError> {
    let (l, r) = tokio::try_join!(
        side_sums(Side::Left, sessions, shape, progress),
        side_sums(Side::Right, sessions, shape, progress)
    )?;
    let buckets = (0..l.buckets.len())
        .filter(|&b| l.buckets[b] != r.buckets[b])
        .map(|b| b as i32)
        .collect();
    Ok((l.rows, r.rows, buckets))
}

/// The leaf relations of `table` on one side with their sizes in blocks.
async fn leaves(
    c: &Client,
    side: Side,
    table: &TableName,
) -> Result<Vec<(TableName, i64)>, ScanError> {
    let rows = c
        .query(
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, \
                    (pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::pg_catalog.int8) \
               FROM (SELECT p.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.text::pg_catalog.regclass) p \
                      WHERE p.isleaf \
                     UNION SELECT $1::pg_catalog.text::pg_catalog.regclass) p \
               JOIN pg_catalog.pg_class c ON c.oid = p.relid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind = 'r'",
            &[&table.quoted()],
        )
        .await
        .map_err(db(side, format!("reading the size of {table}")))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                r.get(2),
            )
        })
        .collect())
}

/// Level 1 on one side: block ranges of every leaf, summed in parallel sessions
/// that share one snapshot.
async fn side_sums(
    side: Side,
    sessions: &Sessions,
    shape: &Shape,
    progress: &ScanProgress,
) -> Result<Sums, ScanError> {
    let clients = sessions.side(side);
    let catalog = &sessions.catalogs[side as usize];
    let lead = &clients[0];
    let units = units(lead, side, catalog, shape).await?;
    progress.add_blocks(units.iter().map(|u| u.2).sum());
    let workers = clients.len().min(units.len()).max(1);
    let queue = std::sync::Mutex::new(units.into_iter().collect::<std::collections::VecDeque<_>>());
    lead.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(db(side, "starting the scan's snapshot"))?;
    let result = async {
        let snapshot: Option<String> = if workers > 1 {
            Some(
                lead.query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
                    .await
                    .map_err(db(side, "exporting the scan's snapshot"))?
                    .get(0),
            )
        } else {
            None
        };
        let work = (0..workers).map(|w| {
            worker_sums(
                w,
                &clients[w],
                &queue,
                snapshot.as_deref(),
                side,
                shape,
                progress,
            )
        });
        let parts = futures_util::future::try_join_all(work).await?;
        let mut total = Sums {
            rows: 0,
            buckets: vec![(0, 0); shape.mask as usize + 1],
        };
        for p in parts {
            total.rows += p.rows;
            for (t, s) in total.buckets.iter_mut().zip(p.buckets) {
                t.0 += s.0;
                t.1 = t.1.wrapping_add(s.1);
            }
        }
        Ok::<_, ScanError>(total)
    }
    .await;
    // The lead's transaction ends either way (a failed worker leaves its own
    // session in an aborted transaction: the scan is over anyway).
    let end = lead.batch_execute("COMMIT").await;
    let total = result?;
    end.map_err(db(side, "ending the scan's snapshot"))?;
    Ok(total)
}

/// The units of level 1 on one side, `(relation, chunk, blocks)`: each leaf cut
/// into ranges of [`CHUNK_BLOCKS`], or the whole table before PostgreSQL 14.
async fn units(
    lead: &Client,
    side: Side,
    catalog: &Catalog,
    shape: &Shape,
) -> Result<Vec<Unit>, ScanError> {
    // Block ranges need TID range scans (PostgreSQL 14).
    Ok(if catalog.server_version_num >= 140000 {
        let mut units = Vec::new();
        for (rel, blocks) in leaves(lead, side, &shape.table).await? {
            let n = (blocks / CHUNK_BLOCKS).max(0) + 1;
            for i in 0..n {
                let from = i * CHUNK_BLOCKS;
                let to = (i + 1 < n).then_some(from + CHUNK_BLOCKS);
                let size = to.unwrap_or(blocks.max(from)) - from;
                units.push((rel.clone(), Chunk::Blocks { from, to }, size));
            }
        }
        units
    } else {
        vec![(shape.table.clone(), Chunk::Whole, 0)]
    })
}

/// One session's share of level 1: sums the units it takes from `queue` until
/// none is left. Sessions other than the lead (`w > 0`) import the lead's
/// snapshot first and end their transaction after.
async fn worker_sums(
    w: usize,
    client: &Client,
    queue: &std::sync::Mutex<std::collections::VecDeque<Unit>>,
    snapshot: Option<&str>,
    side: Side,
    shape: &Shape,
    progress: &ScanProgress,
) -> Result<Sums, ScanError> {
    if w > 0 {
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
                pgduplex_pg::quote_literal(snapshot.unwrap_or_default())
            ))
            .await
            .map_err(db(side, "importing the scan's snapshot"))?;
    }
    let mut sums = Sums {
        rows: 0,
        buckets: vec![(0, 0); shape.mask as usize + 1],
    };
    loop {
        let unit = queue.lock().expect("queue").pop_front();
        let Some((rel, chunk, size)) = unit else {
            break;
        };
        let q = shape.bucket_sums(&rel, &chunk);
        let rows = match &chunk {
            Chunk::Whole => client.query(&q, &[]).await,
            Chunk::Blocks { from, to: None } => client.query(&q, &[&sql::block_tid(*from)]).await,
            Chunk::Blocks { from, to: Some(to) } => {
                client
                    .query(&q, &[&sql::block_tid(*from), &sql::block_tid(*to)])
                    .await
            }
        }
        .map_err(db(side, format!("summing the rows of {}", shape.table)))?;
        for row in rows {
            let b: i32 = row.get(0);
            let n: i64 = row.get(1);
            let h: String = row.get(2);
            let h: i128 = h
                .parse()
                .map_err(|_| ScanError::Refused(format!("{side}: unexpected hash sum {h:?}")))?;
            let slot = &mut sums.buckets[b as usize];
            slot.0 += n;
            slot.1 = slot.1.wrapping_add(h);
            sums.rows += n as u64;
        }
        progress.blocks_done(size);
    }
    if w > 0 {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(db(side, "ending the scan's snapshot"))?;
    }
    Ok(sums)
}

/// One listed row of level 2.
struct Listed {
    bucket: i32,
    key_text: String,
    key: Vec<String>,
    /// Row hash (keyed) or copies (keyless).
    value: i64,
}

fn listed(row: &tokio_postgres::Row, keyed: bool, key_len: usize) -> Listed {
    Listed {
        bucket: row.get(0),
        key_text: row.get(1),
        value: row.get(2),
        key: if keyed {
            (0..key_len).map(|i| row.get::<_, String>(3 + i)).collect()
        } else {
            Vec::new()
        },
    }
}

/// Level 2: lists the rows of `buckets` on both sides and merges them; every
/// difference goes to `found` (the merge stops quietly when the receiver is gone).
pub(super) async fn diff_rows(
    shape: &Shape,
    left: &Client,
    right: &Client,
    buckets: &[i32],
    found: tokio::sync::mpsc::Sender<Diff>,
) -> Result<(), ScanError> {
    let q = shape.bucket_rows();
    let keyed = shape.keyed();
    let key_len = shape.key.as_ref().map_or(0, Vec::len);
    let ctx = || format!("listing the rows of {} that differ", shape.table);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&buckets];
    let (ls, rs) = tokio::try_join!(
        async {
            left.query_raw(&q, params.iter().copied())
                .await
                .map_err(db(Side::Left, ctx()))
        },
        async {
            right
                .query_raw(&q, params.iter().copied())
                .await
                .map_err(db(Side::Right, ctx()))
        }
    )?;
    pin_mut!(ls);
    pin_mut!(rs);
    let next = |side: Side, r: Option<Result<tokio_postgres::Row, tokio_postgres::Error>>| {
        r.transpose()
            .map_err(db(side, ctx()))
            .map(|o| o.map(|row| listed(&row, keyed, key_len)))
    };
    let mut l = next(Side::Left, ls.next().await)?;
    let mut r = next(Side::Right, rs.next().await)?;
    loop {
        let order = match (&l, &r) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => {
                (a.bucket, a.key_text.as_bytes()).cmp(&(b.bucket, b.key_text.as_bytes()))
            }
        };
        match order {
            std::cmp::Ordering::Less => {
                let a = l.take().expect("left row");
                if found.send(diff_of(keyed, a)).await.is_err() {
                    return Ok(());
                }
                l = next(Side::Left, ls.next().await)?;
            }
            std::cmp::Ordering::Greater => {
                let b = r.take().expect("right row");
                if found.send(diff_of(keyed, b).swap()).await.is_err() {
                    return Ok(());
                }
                r = next(Side::Right, rs.next().await)?;
            }
            std::cmp::Ordering::Equal => {
                let a = l.take().expect("left row");
                let b = r.take().expect("right row");
                if a.value != b.value {
                    let d = if keyed {
                        Diff {
                            kind: DiffKind::Different,
                            key_text: a.key_text,
                            key: a.key,
                            left: Some(a.value),
                            right: Some(b.value),
                            rows: 1,
                        }
                    } else {
                        let (kind, rows) = if a.value > b.value {
                            (DiffKind::OnlyLeft, a.value - b.value)
                        } else {
                            (DiffKind::OnlyRight, b.value - a.value)
                        };
                        Diff {
                            kind,
                            key_text: a.key_text,
                            key: Vec::new(),
                            left: Some(a.value),
                            right: Some(b.value),
                            rows: rows as u64,
                        }
                    };
                    if found.send(d).await.is_err() {
                        return Ok(());
                    }
                }
                l = next(Side::Left, ls.next().await)?;
                r = next(Side::Right, rs.next().await)?;
            }
        }
    }
    Ok(())
}

/// A row listed on one side only (as if on the left; `swap` for the right).
fn diff_of(keyed: bool, a: Listed) -> Diff {
    Diff {
        kind: DiffKind::OnlyLeft,
        rows: if keyed { 1 } else { a.value as u64 },
        key_text: a.key_text,
        key: a.key,
        left: Some(a.value),
        right: None,
    }
}

/// Key column texts of `diffs` as one text array per key column.
pub(super) fn key_arrays(diffs: &[&Diff], key_len: usize) -> Vec<Vec<String>> {
    (0..key_len)
        .map(|i| diffs.iter().map(|d| d.key[i].clone()).collect())
        .collect()
}

pub(super) fn params<T: tokio_postgres::types::ToSql + Sync>(
    arrays: &[Vec<T>],
) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    arrays
        .iter()
        .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Runs `q` (keys as text arrays `$1..$n`) over `keys` in batches on one side,
/// giving every row to `each`.
async fn by_keys(
    c: &Client,
    side: Side,
    shape: &Shape,
    q: &str,
    keys: &[&Diff],
    context: &str,
    mut each: impl FnMut(&tokio_postgres::Row),
) -> Result<(), ScanError> {
    let key_len = shape.key.as_ref().map_or(0, Vec::len);
    for batch in keys.chunks(LOOKUP_BATCH) {
        let arrays = key_arrays(batch, key_len);
        for row in c
            .query(q, &params(&arrays))
            .await
            .map_err(db(side, format!("{context} {}", shape.table)))?
        {
            each(&row);
        }
    }
    Ok(())
}

/// The current row hashes of `keys` on one side.
async fn key_states(
    c: &Client,
    side: Side,
    shape: &Shape,
    keys: &[&Diff],
) -> Result<HashMap<String, i64>, ScanError> {
    let mut out = HashMap::new();
    let q = shape.key_states();
    by_keys(
        c,
        side,
        shape,
        &q,
        keys,
        "looking again at keys of",
        |row| {
            out.insert(row.get(0), row.get(1));
        },
    )
    .await?;
    Ok(out)
}

async fn pending_keys(
    c: &Client,
    side: Side,
    shape: &Shape,
    delta: &TableName,
    keys: &[&Diff],
) -> Result<HashSet<String>, ScanError> {
    let mut out = HashSet::new();
    let q = shape.pending_keys(delta);
    by_keys(
        c,
        side,
        shape,
        &q,
        keys,
        "reading the pending changes of",
        |row| {
            out.insert(row.get(0));
        },
    )
    .await?;
    Ok(out)
}

/// Whether anything may still carry changes: the daemon holds the pair's lock on
/// the left, and how many TRUNCATEs wait on either side.
async fn replication_state(sessions: &Sessions) -> Result<(bool, i64), ScanError> {
    let running = session::lock_holder(&sessions.left[0], &sessions.sync_name)
        .await
        .map_err(db(Side::Left, "looking for the replication daemon"))?
        .is_some();
    let mut truncates = 0;
    for side in [Side::Left, Side::Right] {
        let n = store::pending_truncates(&sessions.side(side)[0])
            .await
            .map_err(db(side, "reading pending TRUNCATEs"))?;
        truncates += n;
    }
    Ok((running, truncates))
}

/// Level 3: looks at differing keys again until each is equal (dropped), stable
/// without pending changes (a difference), or `settle` is over (in flight).
async fn recheck(
    sessions: &Sessions,
    target: &Target,
    mut diffs: Vec<Diff>,
    settle: Duration,
) -> Result<Vec<Diff>, ScanError> {
    let shape = &target.shape;
    let deadline = Instant::now() + settle;
    let mut delay = Duration::from_millis(100);
    let mut moving: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        let (running, truncates) = replication_state(sessions).await?;
        let refs: Vec<&Diff> = diffs.iter().collect();
        let (l, r) = tokio::try_join!(
            key_states(&sessions.left[0], Side::Left, shape, &refs),
            key_states(&sessions.right[0], Side::Right, shape, &refs)
        )?;
        let mut pending = HashSet::new();
        for (i, side) in [Side::Left, Side::Right].into_iter().enumerate() {
            if let Some(delta) = &target.delta[i] {
                pending.extend(
                    pending_keys(&sessions.side(side)[0], side, shape, delta, &refs).await?,
                );
            }
        }
        moving.clear();
        diffs.retain_mut(|d| {
            let (nl, nr) = (l.get(&d.key_text).copied(), r.get(&d.key_text).copied());
            let Some(kind) = DiffKind::of(nl, nr) else {
                return false;
            };
            if (nl, nr) != (d.left, d.right) || pending.contains(&d.key_text) || truncates > 0 {
                moving.insert(d.key_text.clone());
            }
            d.kind = kind;
            d.left = nl;
            d.right = nr;
            true
        });
        if moving.is_empty() || !running || Instant::now() >= deadline {
            break;
        }
        tracing::debug!(table = %shape.table, keys = moving.len(), "keys still moving; looking again");
    }
    for d in &mut diffs {
        if moving.contains(&d.key_text) {
            d.kind = DiffKind::InFlight;
        }
    }
    Ok(diffs)
}

/// The first [`DETAIL_LIMIT`] differences, with the differing columns of rows
/// present on both sides.
async fn details(
    sessions: &Sessions,
    shape: &Shape,
    diffs: &[Diff],
) -> Result<Vec<Detail>, ScanError> {
    let listed: Vec<&Diff> = diffs.iter().take(DETAIL_LIMIT).collect();
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    if shape.keyed() {
        let both: Vec<&Diff> = listed
            .iter()
            .copied()
            .filter(|d| d.kind == DiffKind::Different)
            .collect();
        if !both.is_empty() {
            let q = shape.key_columns();
            let arrays = key_arrays(&both, shape.key.as_ref().map_or(0, Vec::len));
            let p = params(&arrays);
            let (l, r) = tokio::try_join!(
                async {
                    sessions.left[0]
                        .query(&q, &p)
                        .await
                        .map_err(db(Side::Left, "reading differing rows"))
                },
                async {
                    sessions.right[0]
                        .query(&q, &p)
                        .await
                        .map_err(db(Side::Right, "reading differing rows"))
                }
            )?;
            let values = |rows: Vec<tokio_postgres::Row>| -> HashMap<String, Vec<Option<String>>> {
                rows.into_iter()
                    .map(|row| {
                        let k: String = row.get(0);
                        let v = (1..row.len())
                            .map(|i| row.get::<_, Option<String>>(i))
                            .collect();
                        (k, v)
                    })
                    .collect()
            };
            let (l, r) = (values(l), values(r));
            for (k, lv) in &l {
                if let Some(rv) = r.get(k) {
                    let cols = shape
                        .columns
                        .iter()
                        .zip(lv.iter().zip(rv))
                        .filter(|(_, (a, b))| a != b)
                        .map(|(c, _)| c.name.clone())
                        .collect();
                    columns.insert(k.clone(), cols);
                }
            }
        }
    }
    Ok(listed
        .into_iter()
        .map(|d| Detail {
            kind: d.kind,
            key: d.key_text.clone(),
            columns: columns.remove(&d.key_text).unwrap_or_default(),
            rows: d.rows,
        })
        .collect())
}
