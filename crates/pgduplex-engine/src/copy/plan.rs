//! The copy's plan: what is copied and how. Per table its columns, its key
//! ranges and the SQL of a range on either side; the source's estimates, which
//! tables may travel as binary COPY, and the progress recorded by earlier runs.
//! Names go through `quote_ident`; range bounds travel as custom settings set
//! with `set_config($1)` (COPY takes no bind parameters).

use std::collections::{BTreeSet, HashMap};

use pgduplex_config::Side;
use pgduplex_pg::catalog::{Table, TableKind};
use pgduplex_pg::store;
use pgduplex_pg::{quote_ident, TableName};
use tokio_postgres::Client;

use super::{db, CopyError};

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

/// A progress row.
#[derive(Clone, Debug)]
pub(super) struct Recorded {
    pub part: Part,
    pub done: bool,
}

pub(super) async fn read_progress(
    client: &Client,
    side: Side,
    sync: &str,
) -> Result<HashMap<TableName, Vec<Recorded>>, CopyError> {
    let mut out: HashMap<TableName, Vec<Recorded>> = HashMap::new();
    for p in store::copy_parts(client, sync)
        .await
        .map_err(db(side, "reading the copy's progress"))?
    {
        out.entry(p.table).or_default().push(Recorded {
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
