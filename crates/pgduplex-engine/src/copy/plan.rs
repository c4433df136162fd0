//! The copy's plan: what is copied, in which pieces, in which order. Per table
//! its columns and its key ranges; the source's estimates; which tables may
//! travel as binary COPY; the progress recorded by earlier runs; the target's
//! foreign keys as the copy sees them (load order, tables read from one shared
//! snapshot); and from all of that the jobs (tables) and units (tables or
//! ranges) left to copy. Names go through `quote_ident`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pgduplex_config::{CopyFormat, FkStrategy, Side};
use pgduplex_pg::catalog::{ForeignKey, Table, TableKind};
use pgduplex_pg::store;
use pgduplex_pg::{quote_ident, TableName};
use tokio_postgres::Client;

use super::schedule::Unit;
use super::{db, CopyError};
use crate::pair::SideState;

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
/// else text. `[onetimecopy] copy_format = "text"` forces text (for
/// measurements, or as an escape hatch). Returns the target tables that may
/// travel as binary.
pub(super) async fn binary_tables(
    src: &SideState,
    tgt: &SideState,
    selected: &[(Table, Table)],
    format: CopyFormat,
) -> Result<BTreeSet<TableName>, CopyError> {
    if src.catalog.server_version_num / 10000 != tgt.catalog.server_version_num / 10000
        || format == CopyFormat::Text
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
    use crate::copy::fixtures::{column, fk, name, recorded, table};
    use pgduplex_pg::catalog::Column;

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
        assert_eq!(part_count(25, 10), 3, "rounded up");
        assert_eq!(part_count(i64::MAX, 1), 1024, "at most 1024 ranges");
        assert_eq!(part_count(10_000_001, 10_000_000), 2);
    }

    #[test]
    fn split_edge_cases() {
        // One range: the whole key space, open at both ends.
        let one = split("id", 1, 100, 1);
        assert_eq!(
            one,
            [Part {
                part: 0,
                parts: 1,
                key_column: Some("id".into()),
                lower: None,
                upper: None,
            }]
        );
        assert_eq!(split("id", 1, 100, 0), one, "0 ranges means one");
        assert_eq!(split("id", 7, 7, 3).len(), 1, "a single value");
        // Negative keys.
        let p = split("id", -10, 9, 2);
        assert_eq!((p[0].lower, p[0].upper), (None, Some(0)));
        assert_eq!((p[1].lower, p[1].upper), (Some(0), None));
        // Numbered in order, each knowing the count.
        for (i, r) in split("id", 0, 999, 5).iter().enumerate() {
            assert_eq!((r.part, r.parts), (i as i32, 5));
        }
    }

    #[test]
    fn labels() {
        assert_eq!(Part::whole().label(), "");
        assert_eq!(split("id", 1, 100, 4)[1].label(), " range 2/4");
        assert_eq!(split("id", 1, 100, 4)[3].label(), " range 4/4");
    }

    #[test]
    fn columns_and_split_column() {
        let mut t = table("t", 1);
        t.columns.push(Column {
            identity: Some('a'),
            ..column("seq", "integer")
        });
        // Generated columns are computed by the target; identity ones are copied.
        assert_eq!(copied_columns(&t), ["id", "note", "seq"]);
        assert_eq!(split_column(&t).as_deref(), Some("id"));
        for (ty, splittable) in [
            ("smallint", true),
            ("integer", true),
            ("text", false),
            ("numeric", false),
        ] {
            t.columns[0].type_name = ty.into();
            assert_eq!(split_column(&t).is_some(), splittable, "{ty}");
        }
        t.key = None;
        assert_eq!(split_column(&t), None, "no key");
    }

    #[test]
    fn emptied_in_the_copy_transaction() {
        let t = table("t", 1);
        assert!(truncate_in_copy(&t, &Part::whole(), false));
        assert!(
            !truncate_in_copy(&t, &split("id", 1, 9, 2)[0], false),
            "a range"
        );
        assert!(!truncate_in_copy(&t, &Part::whole(), true), "referenced");
        let parted = Table {
            kind: TableKind::Partitioned,
            ..table("p", 2)
        };
        assert!(
            !truncate_in_copy(&parted, &Part::whole(), false),
            "partitioned"
        );
    }

    #[test]
    fn snapshot_groups_are_the_connected_tables() {
        assert_eq!(snapshot_groups(0, &[]), []);
        assert_eq!(snapshot_groups(3, &[]), [None, None, None]);
        let two = [Some(0), Some(0), None, Some(1), Some(1)];
        assert_eq!(snapshot_groups(5, &[(0, 1), (3, 4)]), two);
        assert_eq!(
            snapshot_groups(5, &[(4, 3), (1, 0)]),
            two,
            "either direction"
        );
        // A link between two groups joins them.
        assert_eq!(snapshot_groups(4, &[(0, 1), (2, 3), (1, 2)]), [Some(0); 4]);
        assert_eq!(snapshot_groups(3, &[(2, 0)]), [Some(0), None, Some(0)]);
    }

    #[test]
    fn foreign_key_links_by_strategy() {
        let tables = [name("a"), name("b"), name("c"), name("d")];
        // b -> a twice, c -> b, c -> c; x (not copied) -> d, d -> y (not copied).
        let fks = [
            fk("b", "a"),
            fk("b", "a"),
            fk("c", "b"),
            fk("c", "c"),
            fk("x", "d"),
            fk("d", "y"),
        ];
        let referenced: BTreeSet<TableName> = ["a", "b", "c", "d", "x", "y"]
            .into_iter()
            .map(name)
            .collect();
        let order = FkLinks::new(&tables, &fks, FkStrategy::Order);
        assert_eq!(
            order,
            FkLinks {
                parents: vec![vec![], vec![0], vec![1], vec![]],
                whole_only: vec![false, false, true, false],
                group: vec![Some(0), Some(0), Some(0), None],
                referenced: referenced.clone(),
            }
        );
        // Keys validated after the copy: the same snapshot groups, no order.
        let readd = FkLinks::new(&tables, &fks, FkStrategy::DropReadd);
        assert_eq!(readd.parents, vec![Vec::<usize>::new(); 4]);
        assert_eq!(readd.whole_only, [false; 4]);
        assert_eq!(readd.group, order.group);
        assert_eq!(readd.referenced, referenced);
        // Keys not checked: nothing shared, nothing ordered.
        let replica = FkLinks::new(&tables, &fks, FkStrategy::Replica);
        assert_eq!(replica.parents, vec![Vec::<usize>::new(); 4]);
        assert_eq!(replica.whole_only, [false; 4]);
        assert_eq!(replica.group, [None; 4]);
        assert_eq!(replica.referenced, referenced);
    }

    #[test]
    fn work_is_what_is_left() {
        let ranges = split("id", 1, 300, 3);
        let selected: Vec<(Table, Table)> = [
            table("a", 1),
            table("b", 2),
            table("c", 3),
            table("d", 4),
            Table {
                kind: TableKind::Partitioned,
                ..table("p", 5)
            },
        ]
        .into_iter()
        .map(|t| (t.clone(), t))
        .collect();
        let names: Vec<TableName> = selected.iter().map(|(_, t)| t.name.clone()).collect();
        // a: fresh, whole; b: resumed, one range of three done; c: complete;
        // d: fresh, whole, referenced by a table not copied; p: fresh, partitioned.
        let recorded = recorded(&[
            ("a", vec![(Part::whole(), false)]),
            (
                "b",
                vec![
                    (ranges[0].clone(), true),
                    (ranges[1].clone(), false),
                    (ranges[2].clone(), false),
                ],
            ),
            ("c", vec![(Part::whole(), true)]),
            ("d", vec![(Part::whole(), false)]),
            ("p", vec![(Part::whole(), false)]),
        ]);
        let estimate = HashMap::from([(1, 100), (2, 300), (3, 50), (5, -1)]);
        let binary = BTreeSet::from([name("a")]);
        let links = FkLinks::new(&names, &[fk("x", "d")], FkStrategy::Order);
        let w = work(&selected, &recorded, &estimate, &binary, &links, true);

        assert_eq!(w.parts_already_done, 2);
        assert_eq!(w.tables_already_done, [name("c")]);
        let jobs: Vec<(usize, bool, bool, Format)> = w
            .jobs
            .iter()
            .map(|j| (j.remaining, j.truncated_up_front, j.referenced, j.format))
            .collect();
        assert_eq!(
            jobs,
            [
                // Emptied in its copy transaction, not up front.
                (1, false, false, Format::Binary),
                // Resumed: never emptied again.
                (2, false, false, Format::Text),
                (0, false, false, Format::Text),
                // Referenced / partitioned: emptied up front (truncate mode).
                (1, true, true, Format::Text),
                (1, true, false, Format::Text),
            ]
        );
        assert_eq!(w.jobs[0].columns, ["id", "note"]);
        let units: Vec<(usize, Option<i64>, u64, bool)> = w
            .units
            .iter()
            .map(|u| (u.job, u.part.lower, u.estimated_rows, u.truncate_in_tx))
            .collect();
        assert_eq!(
            units,
            [
                (0, None, 100, true),
                // The estimate spread over every range, copied or not.
                (1, ranges[1].lower, 100, false),
                (1, ranges[2].lower, 100, false),
                (3, None, 0, false),
                (4, None, 0, false),
            ]
        );
        // Not in truncate mode nothing is emptied up front.
        let w = work(&selected, &recorded, &estimate, &binary, &links, false);
        assert!(w.jobs.iter().all(|j| !j.truncated_up_front));
    }

    #[test]
    fn complete_and_done_parts() {
        let r = recorded(&[
            ("a", vec![(Part::whole(), true)]),
            ("b", vec![(Part::whole(), false)]),
            ("c", vec![]),
        ]);
        assert!(complete(&r, &name("a")));
        assert!(!complete(&r, &name("b")));
        assert!(!complete(&r, &name("c")), "no part recorded");
        assert!(!complete(&r, &name("d")), "not recorded");
        assert_eq!(done_parts(&r, &name("a")), 1);
        assert_eq!(done_parts(&r, &name("b")), 0);
        assert_eq!(done_parts(&r, &name("d")), 0);
    }
}
