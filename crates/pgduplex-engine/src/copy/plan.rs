//! The copy's plan: what is copied, in which pieces, in which order. Per table
//! its columns, its key ranges and the SQL of a range on either side; the
//! source's estimates; which tables may travel as binary COPY; the progress
//! recorded by earlier runs; the target's foreign keys as the copy sees them
//! (load order, tables read from one shared snapshot); and from all of that the
//! jobs (tables) and units (tables or ranges) left to copy. Names go through
//! `quote_ident`; range bounds travel as custom settings set with
//! `set_config($1)` (COPY takes no bind parameters).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pgduplex_config::{FkStrategy, Side};
use pgduplex_pg::catalog::{ForeignKey, Table, TableKind};
use pgduplex_pg::store;
use pgduplex_pg::{quote_ident, TableName};
use tokio_postgres::Client;

use super::schedule::Unit;
use super::{db, CopyError};
use crate::pair::SideState;

/// The custom settings that carry a range's bounds into the source's COPY query.
pub const LOWER_SETTING: &str = "pgduplex.copy_lower";
pub const UPPER_SETTING: &str = "pgduplex.copy_upper";

/// Integer types a table can be split on (by its key's first column).
const SPLITTABLE: [&str; 3] = ["smallint", "integer", "bigint"];

/// Columns the copy writes: every column but the generated ones (the target
/// computes those); identity columns are written as they are (COPY may write an
/// identity column, also a `GENERATED ALWAYS` one).
pub fn copied_columns(table: &Table) -> Vec<String> {
    table
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| c.name.clone())
        .collect()
}

/// The key's first column, when its type lets the table be split into ranges.
pub fn split_column(table: &Table) -> Option<String> {
    let first = table.key.as_ref()?.columns.first()?;
    let col = table.column(first)?;
    SPLITTABLE
        .contains(&col.type_name.as_str())
        .then(|| first.clone())
}

/// One piece of a table: the whole table (`key_column` none) or a key range
/// `[lower, upper)` of it (a bound of `None` is open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub part: i32,
    pub parts: i32,
    pub key_column: Option<String>,
    pub lower: Option<i64>,
    pub upper: Option<i64>,
}

impl Part {
    pub fn whole() -> Part {
        Part {
            part: 0,
            parts: 1,
            key_column: None,
            lower: None,
            upper: None,
        }
    }

    /// "range 2/8" or "" for a whole table, for logs.
    pub fn label(&self) -> String {
        if self.parts > 1 {
            format!(" range {}/{}", self.part + 1, self.parts)
        } else {
            String::new()
        }
    }
}

/// Splits `[min, max]` of `column` into `n` ranges of equal width; the first is
/// open below and the last open above, so rows written after the bounds were taken
/// are copied too.
pub fn split(column: &str, min: i64, max: i64, n: i32) -> Vec<Part> {
    let n = i128::from(n.max(1));
    let width = (i128::from(max) - i128::from(min) + 1).max(1);
    let n = n.min(width);
    let bound = |i: i128| -> i64 {
        (i128::from(min) + width * i / n)
            .try_into()
            .expect("a bound lies between min and max")
    };
    (0..n)
        .map(|i| Part {
            part: i as i32,
            parts: n as i32,
            key_column: Some(column.to_string()),
            lower: (i > 0).then(|| bound(i)),
            upper: (i + 1 < n).then(|| bound(i + 1)),
        })
        .collect()
}

/// How many ranges a table of `estimated_rows` gets at `range_rows` per range.
pub fn part_count(estimated_rows: i64, range_rows: u64) -> i32 {
    let est = u64::try_from(estimated_rows).unwrap_or(0);
    if est <= range_rows {
        return 1;
    }
    est.div_ceil(range_rows.max(1)).min(1024) as i32
}

/// The COPY format of a table: text, or binary where both servers read and write
/// every copied column's binary form the same way (see [`BINARY_ELIGIBLE_SQL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

/// Per table (`$1`: table oids), whether every copied column may travel as binary
/// COPY: a built-in type (oid below `FirstNormalObjectId`, so the same oid on any
/// server of the same major version; user-defined types, domains, enums and
/// composites are not: binary arrays and composites carry their element types'
/// oids, which differ between servers) with binary send and receive functions (and
/// so its element type, for an array). Run on both sides; binary also needs the
/// same major version on both.
pub const BINARY_ELIGIBLE_SQL: &str = "SELECT a.attrelid, pg_catalog.bool_and(t.oid < 16384 \
        AND t.typsend <> 0 AND t.typreceive <> 0 \
        AND (e.oid IS NULL OR (e.oid < 16384 AND e.typsend <> 0 \
             AND e.typreceive <> 0))) \
   FROM pg_catalog.pg_attribute a \
   JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
   LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typelem <> 0 \
  WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
    AND a.attgenerated = '' \
  GROUP BY a.attrelid";

/// `COPY (SELECT <columns> FROM <table> [WHERE <range>]) TO STDOUT` on the source.
/// The bounds are read from [`LOWER_SETTING`] / [`UPPER_SETTING`].
pub fn copy_out_sql(table: &TableName, columns: &[String], part: &Part, format: Format) -> String {
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
pub fn copy_in_sql(table: &TableName, columns: &[String], freeze: bool, format: Format) -> String {
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

/// A table can be emptied inside its copy transaction (enabling `COPY FREEZE`)
/// when it is copied whole, is not partitioned (FREEZE is refused there), and no
/// foreign key references it (TRUNCATE would refuse it alone).
pub fn truncate_in_copy(table: &Table, part: &Part, referenced: bool) -> bool {
    part.parts == 1 && table.kind == TableKind::Ordinary && !referenced
}

/// A progress row: one part of a table, and whether it is copied.
#[derive(Clone, Debug)]
pub(super) struct RecordedPart {
    pub part: Part,
    pub done: bool,
}

/// The progress recorded on the target, per (target) table.
pub(super) type Recorded = HashMap<TableName, Vec<RecordedPart>>;

pub(super) async fn read_progress(
    client: &Client,
    side: Side,
    sync: &str,
) -> Result<Recorded, CopyError> {
    let mut out: Recorded = HashMap::new();
    for p in store::copy_parts(client, sync)
        .await
        .map_err(db(side, "reading the copy's progress"))?
    {
        out.entry(p.table).or_default().push(RecordedPart {
            part: Part {
                part: p.part,
                parts: p.parts,
                key_column: p.key_column,
                lower: p.lower,
                upper: p.upper,
            },
            done: p.done,
        });
    }
    Ok(out)
}

/// Every part of `name` is recorded and copied.
pub(super) fn complete(recorded: &Recorded, name: &TableName) -> bool {
    recorded
        .get(name)
        .is_some_and(|v| !v.is_empty() && v.iter().all(|r| r.done))
}

/// How many parts of `name` are copied.
pub(super) fn done_parts(recorded: &Recorded, name: &TableName) -> usize {
    recorded
        .get(name)
        .map_or(0, |v| v.iter().filter(|r| r.done).count())
}

/// Row and size estimates of the source tables (partitions included, each
/// counted once): `reltuples`, or for a table never analysed one row per 128
/// bytes of its size. Read here rather than taken from the catalog snapshot of
/// `check`, whose figures miss ordinary tables (`pg_partition_tree` lists
/// nothing for a table that is not partitioned).
pub(super) async fn estimates(
    client: &Client,
    side: Side,
    oids: &[u32],
) -> Result<HashMap<u32, i64>, CopyError> {
    let rows = client
        .query(
            "SELECT t.oid, \
                    COALESCE(sum(GREATEST(c.reltuples, 0)) FILTER (WHERE c.relkind <> 'p'), 0)::pg_catalog.int8, \
                    COALESCE(sum(pg_catalog.pg_table_size(c.oid)), 0)::pg_catalog.int8 \
               FROM pg_catalog.unnest($1::pg_catalog.oid[]) t(oid) \
               CROSS JOIN LATERAL (SELECT relid FROM pg_catalog.pg_partition_tree(t.oid) \
                                   UNION SELECT t.oid) pt \
               JOIN pg_catalog.pg_class c ON c.oid = pt.relid \
              GROUP BY t.oid",
            &[&oids],
        )
        .await
        .map_err(db(side, "reading the tables' size estimates"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let rows: i64 = r.get(1);
            let bytes: i64 = r.get(2);
            (r.get(0), if rows > 0 { rows } else { bytes / 128 })
        })
        .collect())
}

/// The tables of `oids` whose copied columns may all travel as binary COPY
/// ([`BINARY_ELIGIBLE_SQL`]).
pub(super) async fn binary_eligible(
    client: &Client,
    side: Side,
    oids: &[u32],
) -> Result<BTreeSet<u32>, CopyError> {
    let rows = client
        .query(BINARY_ELIGIBLE_SQL, &[&oids])
        .await
        .map_err(db(side, "reading the column types"))?;
    Ok(rows
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(1).unwrap_or(false))
        .map(|r| r.get(0))
        .collect())
}

/// The COPY format per table: binary where it is safe (same major
/// version on both sides, built-in types with binary I/O only, on both sides),
/// else text. PGDUPLEX_COPY_FORMAT=text forces text (for measurements, or as an
/// escape hatch). Returns the target tables that may travel as binary.
pub(super) async fn binary_tables(
    src: &SideState,
    tgt: &SideState,
    selected: &[(Table, Table)],
) -> Result<BTreeSet<TableName>, CopyError> {
    if src.catalog.server_version_num / 10000 != tgt.catalog.server_version_num / 10000
        || std::env::var("PGDUPLEX_COPY_FORMAT").as_deref() == Ok("text")
    {
        return Ok(BTreeSet::new());
    }
    let source_oids: Vec<u32> = selected.iter().map(|(s, _)| s.oid).collect();
    let target_oids: Vec<u32> = selected.iter().map(|(_, t)| t.oid).collect();
    let s_ok = binary_eligible(&src.client, src.side, &source_oids).await?;
    let t_ok = binary_eligible(&tgt.client, tgt.side, &target_oids).await?;
    Ok(selected
        .iter()
        .filter(|(s, t)| s_ok.contains(&s.oid) && t_ok.contains(&t.oid))
        .map(|(_, t)| t.name.clone())
        .collect())
}

/// The foreign keys on the target, as they bear on the copy of `tables` (the
/// selected tables, by index).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FkLinks {
    /// Per table: the tables to copy completely before it (`--fk order` only:
    /// the target checks its foreign keys as the rows arrive).
    pub parents: Vec<Vec<usize>>,
    /// Per table: never split into ranges. A table that references itself, under
    /// `--fk order`: its rows must reach the target in one COPY, which checks
    /// each row's parent at its end.
    pub whole_only: Vec<bool>,
    /// Per table: its snapshot group, see [`snapshot_groups`] (none under
    /// `--fk replica`, where the target checks nothing).
    pub group: Vec<Option<usize>>,
    /// Tables on either end of any foreign key on the target: TRUNCATE refuses a
    /// referenced table alone, so these are emptied up front, all in one
    /// statement, never inside their copy transaction.
    pub referenced: BTreeSet<TableName>,
}

impl FkLinks {
    /// `strategy` is the one the copy uses (`auto` resolved).
    pub(super) fn new(tables: &[TableName], fks: &[ForeignKey], strategy: FkStrategy) -> FkLinks {
        let idx_of: HashMap<&TableName, usize> =
            tables.iter().enumerate().map(|(i, n)| (n, i)).collect();
        let mut parents: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
        let mut self_ref = vec![false; tables.len()];
        let mut edges = Vec::new();
        for fk in fks {
            if let (Some(&c), Some(&p)) = (idx_of.get(&fk.table), idx_of.get(&fk.references)) {
                if c == p {
                    self_ref[c] = true;
                } else {
                    edges.push((c, p));
                    if strategy == FkStrategy::Order && !parents[c].contains(&p) {
                        parents[c].push(p);
                    }
                }
            }
        }
        let referenced = fks
            .iter()
            .flat_map(|fk| [fk.references.clone(), fk.table.clone()])
            .collect();
        // Groups sharing a snapshot: connected by foreign keys that the target
        // checks (order) or validates afterwards (drop-readd).
        let group = if strategy == FkStrategy::Replica {
            vec![None; tables.len()]
        } else {
            snapshot_groups(tables.len(), &edges)
        };
        FkLinks {
            parents,
            whole_only: self_ref
                .iter()
                .map(|&r| r && strategy == FkStrategy::Order)
                .collect(),
            group,
            referenced,
        }
    }
}

/// The connected groups of `n` tables linked by `edges` (pairs of table
/// indexes): tables of one group are read from one exported snapshot, so that
/// the rows of a child and of its parent agree. A table linked to no other has
/// no group. Groups are numbered 0, 1, ... in the order of their union-find
/// roots.
pub(super) fn snapshot_groups(n: usize, edges: &[(usize, usize)]) -> Vec<Option<usize>> {
    fn find(root: &mut [usize], i: usize) -> usize {
        let mut i = i;
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    let mut root: Vec<usize> = (0..n).collect();
    for &(a, b) in edges {
        let (ra, rb) = (find(&mut root, a), find(&mut root, b));
        if ra != rb {
            root[ra] = rb;
        }
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = find(&mut root, i);
        members.entry(r).or_default().push(i);
    }
    let mut group_of = vec![None; n];
    for (g, m) in members.values().filter(|m| m.len() > 1).enumerate() {
        for &i in m {
            group_of[i] = Some(g);
        }
    }
    group_of
}

/// The parts of every selected table (source, target) that has none recorded
/// yet: the whole table, or [`split`] into [`part_count`] key ranges when it is
/// estimated above `range_rows` rows and its key starts with an integer column
/// (unless `whole_only`, see [`FkLinks`]).
pub(super) async fn new_parts(
    client: &Client,
    side: Side,
    selected: &[(Table, Table)],
    recorded: &Recorded,
    estimate: &HashMap<u32, i64>,
    whole_only: &[bool],
    range_rows: u64,
) -> Result<Vec<(TableName, Part)>, CopyError> {
    let mut out = Vec::new();
    for (i, (s, t)) in selected.iter().enumerate() {
        if recorded.contains_key(&t.name) {
            continue;
        }
        let n = part_count(estimate.get(&s.oid).copied().unwrap_or(0), range_rows);
        let parts = match (n > 1 && !whole_only[i], split_column(s)) {
            (true, Some(col)) => key_ranges(client, side, s, &col, n).await?,
            _ => vec![Part::whole()],
        };
        tracing::debug!(table = %t.name, parts = parts.len(), "planned");
        if parts.len() > 1 {
            tracing::info!(
                table = %t.name,
                ranges = parts.len(),
                column = parts[0].key_column.as_deref().unwrap_or(""),
                "large table: split into key ranges"
            );
        }
        out.extend(parts.into_iter().map(|p| (t.name.clone(), p)));
    }
    Ok(out)
}

/// `n` key ranges of `table` on `column`, between its smallest and largest value
/// now (the whole table when it is empty).
async fn key_ranges(
    client: &Client,
    side: Side,
    table: &Table,
    column: &str,
    n: i32,
) -> Result<Vec<Part>, CopyError> {
    let row = client
        .query_one(
            &format!(
                "SELECT min({c})::pg_catalog.int8, max({c})::pg_catalog.int8 FROM {}",
                table.name.quoted(),
                c = quote_ident(column)
            ),
            &[],
        )
        .await
        .map_err(db(side, "reading a table's key range"))?;
    Ok(
        match (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) {
            (Some(min), Some(max)) => split(column, min, max, n),
            _ => vec![Part::whole()],
        },
    )
}

/// One table of the copy.
pub(super) struct TableJob {
    pub source: Table,
    pub target: Table,
    pub columns: Vec<String>,
    /// Tables (indexes into the job list) to load before this one.
    pub parents: Vec<usize>,
    /// Tables linked by foreign keys share a snapshot: the group's index.
    pub group: Option<usize>,
    /// A foreign key on the target references this table.
    pub referenced: bool,
    /// Parts not yet copied (counts down as they commit).
    pub remaining: usize,
    /// Emptied before the copy in its own transaction (truncate mode, tables that
    /// cannot be emptied inside the copy transaction).
    pub truncated_up_front: bool,
    /// Text, or binary where that is safe.
    pub format: Format,
}

/// What is left to copy: a job per selected table, a unit per part not copied
/// yet.
pub(super) struct Work {
    pub jobs: Vec<TableJob>,
    pub units: Vec<Unit>,
    /// Parts found copied by an earlier run.
    pub parts_already_done: usize,
    /// Tables found completely copied by an earlier run.
    pub tables_already_done: Vec<TableName>,
}

/// The jobs and units of the selected tables (source, target) from their
/// `recorded` parts (all planned by now). `binary`: the target tables that may
/// travel as binary COPY; `truncate_mode`: `--mode truncate`.
pub(super) fn work(
    selected: &[(Table, Table)],
    recorded: &Recorded,
    estimate: &HashMap<u32, i64>,
    binary: &BTreeSet<TableName>,
    links: &FkLinks,
    truncate_mode: bool,
) -> Work {
    let mut work = Work {
        jobs: Vec::new(),
        units: Vec::new(),
        parts_already_done: 0,
        tables_already_done: Vec::new(),
    };
    for (i, (s, t)) in selected.iter().enumerate() {
        let recs = recorded.get(&t.name).cloned().unwrap_or_default();
        let todo: Vec<&RecordedPart> = recs.iter().filter(|r| !r.done).collect();
        work.parts_already_done += recs.len() - todo.len();
        if todo.is_empty() {
            work.tables_already_done.push(t.name.clone());
        }
        let is_referenced = links.referenced.contains(&t.name);
        let fresh = todo.len() == recs.len();
        let whole_in_tx = recs.len() == 1 && truncate_in_copy(t, &recs[0].part, is_referenced);
        work.jobs.push(TableJob {
            source: s.clone(),
            target: t.clone(),
            columns: copied_columns(s),
            format: if binary.contains(&t.name) {
                Format::Binary
            } else {
                Format::Text
            },
            parents: links.parents[i].clone(),
            group: links.group[i],
            referenced: is_referenced,
            remaining: todo.len(),
            truncated_up_front: truncate_mode && fresh && !whole_in_tx,
        });
        let per_part = u64::try_from(estimate.get(&s.oid).copied().unwrap_or(0)).unwrap_or(0)
            / recs.len().max(1) as u64;
        for r in todo {
            work.units.push(Unit {
                job: i,
                part: r.part.clone(),
                estimated_rows: per_part,
                truncate_in_tx: whole_in_tx,
            });
        }
    }
    work
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_everything() {
        let parts = split("id", 1, 100, 4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].lower, None);
        assert_eq!(parts[0].upper, Some(26));
        assert_eq!(parts[1].lower, Some(26));
        assert_eq!(parts[3].upper, None);
        for w in parts.windows(2) {
            assert_eq!(w[0].upper, w[1].lower);
        }
        // More ranges than values: one per value at most.
        assert_eq!(split("id", 5, 6, 10).len(), 2);
        // Extremes do not overflow.
        let p = split("id", i64::MIN, i64::MAX, 3);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn part_counts() {
        assert_eq!(part_count(0, 10), 1);
        assert_eq!(part_count(10, 10), 1);
        assert_eq!(part_count(11, 10), 2);
        assert_eq!(part_count(-1, 10), 1);
    }

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
