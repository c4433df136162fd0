//! The SQL of a scan: how one table's rows are cut into hash buckets and hashed,
//! identically on both sides.
//!
//! - A row's hash combines one hash per compared column (in one agreed order,
//!   each position with its own seed, NULL as a marker of its own) and mixes the
//!   result once more, so equal rows hash equal on both servers and values moved
//!   between columns or rows do not cancel out. A column is hashed from its
//!   binary value where the type's hash is exact (integers, `oid`, `"char"`,
//!   `name`, `boolean`, floats (by value: `-0` equals `0`, NaNs are equal),
//!   `text`/`varchar`/`char(n)` bytes under `COLLATE "C"`, `uuid`, `timestamp`,
//!   `timestamptz` (as UTC), `time`, `timetz`, `inet`, `macaddr`); every other
//!   type (numeric, whose hash ignores the display scale; interval, whose hash
//!   equates `1 day` and `24 hours`; jsonb, enums, arrays, ...) from its text form
//!   under the pinned session settings of [`pgduplex_pg::session::SESSION_SETTINGS`].
//!   No server default (time zone, date style, float digits, bytea output) and no
//!   collation can create or hide a difference.
//! - A key's canonical form is `ROW(k1, ...)::text`, the same expression over the
//!   delta tables' key columns (same types, same text). It orders and identifies
//!   listed rows; buckets come from the key columns' hashes.
//! - Buckets: `key hash & mask`. The bucket of a key depends on its value only,
//!   never on a collation, so both servers cut the same rows into the same
//!   buckets whatever their sort orders. Keyless tables bucket by the row hash.
//! - A bucket's summary is `count(*)` and the `sum` of the rows' hashes:
//!   order-independent, and unlike XOR it counts duplicate rows (keyless tables).
//! - Rows are listed ordered by `(bucket, key COLLATE "C")`: byte order, which is
//!   also how Rust compares strings, so the two sides merge in one pass.
//!
//! Names go through `quote_ident`; values (key texts, block numbers, buckets) go as
//! bind parameters; the only literals pasted are numbers of ours (mask, seeds).

use pgduplex_pg::{quote_ident, TableName};

/// A compared column: its name and `format_type()` type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanColumn {
    pub name: String,
    pub type_name: String,
}

/// How one table is compared.
#[derive(Clone, Debug)]
pub struct Shape {
    pub table: TableName,
    /// Compared columns (both sides, generated ones left out), in the left's order.
    pub columns: Vec<ScanColumn>,
    /// The key; `None` compares the table as a multiset of rows.
    pub key: Option<Vec<ScanColumn>>,
    /// Buckets are `hash & mask`; `mask + 1` is a power of two.
    pub mask: i64,
}

/// Where a level-1 query reads: the whole relation, or a block range of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Whole,
    /// Blocks `[from, to)`; `to` none reads to the end (blocks added since the
    /// size was read included).
    Blocks {
        from: i64,
        to: Option<i64>,
    },
}

/// The hash of column `c` of alias `t` with `seed`, NULL as a marker of its own.
fn column_hash(c: &ScanColumn, seed: i64) -> String {
    let q = format!("t.{}", quote_ident(&c.name));
    let h = match c.type_name.as_str() {
        "smallint" => format!("pg_catalog.hashint2extended({q}, {seed})"),
        "integer" => format!("pg_catalog.hashint4extended({q}, {seed})"),
        "bigint" => format!("pg_catalog.hashint8extended({q}, {seed})"),
        "oid" => format!("pg_catalog.hashoidextended({q}, {seed})"),
        "\"char\"" => format!("pg_catalog.hashcharextended({q}, {seed})"),
        "name" => format!("pg_catalog.hashnameextended({q} COLLATE \"C\", {seed})"),
        "boolean" => format!("pg_catalog.hashint4extended({q}::pg_catalog.int4, {seed})"),
        "real" => format!("pg_catalog.hashfloat4extended({q}, {seed})"),
        "double precision" => format!("pg_catalog.hashfloat8extended({q}, {seed})"),
        "text" => format!("pg_catalog.hashtextextended({q} COLLATE \"C\", {seed})"),
        t if t.starts_with("character varying") => {
            format!("pg_catalog.hashtextextended({q}::pg_catalog.text COLLATE \"C\", {seed})")
        }
        t if t.starts_with("character(") || t == "character" => {
            format!("pg_catalog.hashbpcharextended({q} COLLATE \"C\", {seed})")
        }
        "uuid" => format!("pg_catalog.uuid_hash_extended({q}, {seed})"),
        "timestamp without time zone" => {
            format!("pg_catalog.timestamp_hash_extended({q}, {seed})")
        }
        "timestamp with time zone" => {
            format!("pg_catalog.timestamp_hash_extended(pg_catalog.timezone('UTC', {q}), {seed})")
        }
        "time without time zone" => format!("pg_catalog.time_hash_extended({q}, {seed})"),
        "time with time zone" => format!("pg_catalog.timetz_hash_extended({q}, {seed})"),
        "inet" => format!("pg_catalog.hashinetextended({q}, {seed})"),
        "macaddr" => format!("pg_catalog.hashmacaddrextended({q}, {seed})"),
        _ => format!("pg_catalog.hashtextextended({q}::pg_catalog.text COLLATE \"C\", {seed})"),
    };
    // A NULL's marker differs per position (and from the seeds).
    format!("COALESCE({h}, {})", -7_046_029_254_386_353_131_i64 + seed)
}

/// Mixes the per-column hashes of `cols` (seeds from `first`) into one int8.
fn combined_hash(cols: &[ScanColumn], first: i64) -> String {
    if cols.is_empty() {
        return "0::pg_catalog.int8".to_string();
    }
    let parts = cols
        .iter()
        .enumerate()
        .map(|(i, c)| column_hash(c, first + i as i64))
        .collect::<Vec<_>>()
        .join(" OPERATOR(pg_catalog.#) ");
    format!("pg_catalog.hashint8extended({parts}, 0)")
}

fn column_value(c: &ScanColumn) -> String {
    let q = format!("t.{}", quote_ident(&c.name));
    match c.type_name.as_str() {
        "double precision" => format!("pg_catalog.float8send({q})"),
        "real" => format!("pg_catalog.float4send({q})"),
        _ => q,
    }
}

/// `ROW(a, b)::text` of `exprs`.
fn record_text(exprs: &[String]) -> String {
    format!("(ROW({})::pg_catalog.text)", exprs.join(", "))
}

impl Shape {
    pub fn keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The canonical text of a row of `t`.
    pub fn row_text(&self) -> String {
        record_text(&self.columns.iter().map(column_value).collect::<Vec<_>>())
    }

    /// The canonical text of a key over relation alias `alias` with the key
    /// columns named `names` (the table's own names, or a delta table's `k1`...).
    pub fn key_text_over(alias: &str, names: &[String]) -> String {
        record_text(
            &names
                .iter()
                .map(|n| format!("{alias}.{}", quote_ident(n)))
                .collect::<Vec<_>>(),
        )
    }

    fn key_text(&self) -> Option<String> {
        self.key.as_ref().map(|k| {
            Self::key_text_over("t", &k.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
        })
    }

    fn row_hash(&self) -> String {
        combined_hash(&self.columns, 1)
    }

    /// The bucket: the key's hash (seeds apart from the row's), or for a keyless
    /// table the row's hash, masked.
    fn bucket(&self) -> String {
        let h = match &self.key {
            Some(k) => combined_hash(k, 1_000_003),
            None => self.row_hash(),
        };
        format!(
            "({h} OPERATOR(pg_catalog.&) {})::pg_catalog.int4",
            self.mask
        )
    }

    /// `FROM ONLY t` for a block range (a leaf relation), `FROM t` otherwise,
    /// with the range's condition on parameters `$1`, `$2`.
    fn source(&self, relation: &TableName, chunk: &Chunk) -> String {
        match chunk {
            Chunk::Whole => format!("{} t", relation.quoted()),
            Chunk::Blocks { to: Some(_), .. } => format!(
                "ONLY {} t WHERE t.ctid OPERATOR(pg_catalog.>=) $1::pg_catalog.text::pg_catalog.tid \
                 AND t.ctid OPERATOR(pg_catalog.<) $2::pg_catalog.text::pg_catalog.tid",
                relation.quoted()
            ),
            Chunk::Blocks { to: None, .. } => format!(
                "ONLY {} t WHERE t.ctid OPERATOR(pg_catalog.>=) $1::pg_catalog.text::pg_catalog.tid",
                relation.quoted()
            ),
        }
    }

    /// Level 1: per bucket, `(bucket int4, rows int8, hash sum text)`, over
    /// `relation` (the table, or for a block range, the table itself or one leaf
    /// partition of it).
    pub fn bucket_sums(&self, relation: &TableName, chunk: &Chunk) -> String {
        let bucket = self.bucket();
        format!(
            "SELECT s.b, pg_catalog.count(*)::pg_catalog.int8, pg_catalog.sum(s.h)::pg_catalog.text \
               FROM (SELECT {bucket} AS b, {hash} AS h FROM {src}) s GROUP BY s.b",
            hash = self.row_hash(),
            src = self.source(relation, chunk),
        )
    }

    /// Level 2: the rows of buckets `$1` (int4[]), ordered by bucket then key
    /// bytes. Keyed: `(bucket, key text, row hash int8, key column texts...)`.
    /// Keyless: `(bucket, row text, count int8)`, one line per distinct row.
    pub fn bucket_rows(&self) -> String {
        let t = self.table.quoted();
        match &self.key {
            Some(key) => {
                let kt = self.key_text().unwrap_or_default();
                let cols = key
                    .iter()
                    .map(|c| format!(", t.{}::pg_catalog.text", quote_ident(&c.name)))
                    .collect::<String>();
                let outs = (1..=key.len())
                    .map(|i| format!(", x.c{i}"))
                    .collect::<String>();
                let names = (1..=key.len())
                    .map(|i| format!(", c{i}"))
                    .collect::<String>();
                format!(
                    "SELECT x.b, x.kt, x.h{outs} FROM (SELECT {bucket} AS b, {kt} AS kt, {hash} AS h{cols} FROM {t} t) \
                     x(b, kt, h{names}) WHERE x.b OPERATOR(pg_catalog.=) ANY($1::pg_catalog.int4[]) \
                     ORDER BY x.b, x.kt COLLATE \"C\"",
                    bucket = self.bucket(),
                    hash = self.row_hash(),
                )
            }
            None => format!(
                "SELECT x.b, x.rt, pg_catalog.count(*)::pg_catalog.int8 FROM \
                 (SELECT {bucket} AS b, {rt} AS rt FROM {t} t) x \
                 WHERE x.b OPERATOR(pg_catalog.=) ANY($1::pg_catalog.int4[]) \
                 GROUP BY x.b, x.rt ORDER BY x.b, x.rt COLLATE \"C\"",
                bucket = self.bucket(),
                rt = self.row_text(),
            ),
        }
    }

    /// `(k1, k2) IN (keys given as text arrays $1, $2, ...)` for relation alias
    /// `alias` whose key columns are `names`.
    pub fn key_in(&self, alias: &str, names: &[String]) -> String {
        let key = self.key.as_deref().unwrap_or_default();
        let lhs = names
            .iter()
            .map(|n| format!("{alias}.{}", quote_ident(n)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("({lhs}) IN ({})", select_params(key))
    }

    /// The key's column names (none for a keyless table).
    pub(crate) fn key_names(&self) -> Vec<String> {
        self.key
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// The current state of the keys `$1..$n` (key column texts):
    /// `(key text, row hash int8)` of those present.
    pub fn key_states(&self) -> String {
        format!(
            "SELECT {kt}, {hash} FROM {t} t WHERE {cond}",
            kt = self.key_text().unwrap_or_default(),
            hash = self.row_hash(),
            t = self.table.quoted(),
            cond = self.key_in("t", &self.key_names()),
        )
    }

    /// The keys `$1..$n` that have pending deltas in `delta` (key texts).
    pub fn pending_keys(&self, delta: &TableName) -> String {
        let names: Vec<String> = (0..self.key.as_ref().map_or(0, Vec::len))
            .map(pgduplex_pg::capture::CaptureSpec::delta_key_column)
            .collect();
        format!(
            "SELECT DISTINCT {kt} FROM {d} t WHERE {cond}",
            kt = Self::key_text_over("t", &names),
            d = delta.quoted(),
            cond = self.key_in("t", &names),
        )
    }

    /// Each compared column's canonical text for the keys `$1..$n`:
    /// `(key text, column texts...)`.
    pub fn key_columns(&self) -> String {
        let cols = self
            .columns
            .iter()
            .map(|c| format!(", ({})::pg_catalog.text", column_value(c)))
            .collect::<String>();
        format!(
            "SELECT {kt}{cols} FROM {t} t WHERE {cond}",
            kt = self.key_text().unwrap_or_default(),
            t = self.table.quoted(),
            cond = self.key_in("t", &self.key_names()),
        )
    }
}

/// `SELECT u.a1::type1, ... FROM <the text arrays $1..$n unnested>`: rows of
/// `cols` given as one text array per column.
pub fn select_params(cols: &[ScanColumn]) -> String {
    let casts = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.a{}::{}", i + 1, c.type_name))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {casts} FROM {}",
        pgduplex_pg::params::param_rows(cols.len())
    )
}

/// `'(block,0)'` as the text of a tid.
pub fn block_tid(block: i64) -> String {
    format!("({block},0)")
}

/// Buckets for a table of about `rows` rows: about 1,000 rows each, a power of two
/// between 1 and 2^18 (the level-1 result stays small, level 2 lists few rows per
/// differing bucket).
pub fn mask_for(rows: i64) -> i64 {
    let want = (rows.max(0) / 1000).clamp(1, 1 << 18) as u64;
    (want.next_power_of_two() as i64) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(keyed: bool) -> Shape {
        let c = |n: &str, t: &str| ScanColumn {
            name: n.into(),
            type_name: t.into(),
        };
        Shape {
            table: TableName::new("My Schema", "t\"x"),
            columns: vec![
                c("id", "bigint"),
                c("f", "double precision"),
                c("r", "real"),
            ],
            key: keyed.then(|| vec![c("id", "bigint")]),
            mask: 1023,
        }
    }

    #[test]
    fn columns_are_hashed_by_type_with_a_seed_per_position() {
        let s = shape(true);
        let h = s.row_hash();
        assert!(
            h.contains("pg_catalog.hashint8extended(t.\"id\", 1)"),
            "{h}"
        );
        assert!(
            h.contains("pg_catalog.hashfloat8extended(t.\"f\", 2)"),
            "{h}"
        );
        assert!(
            h.contains("pg_catalog.hashfloat4extended(t.\"r\", 3)"),
            "{h}"
        );
        let text = column_hash(
            &ScanColumn {
                name: "n".into(),
                type_name: "numeric(10,2)".into(),
            },
            7,
        );
        assert_eq!(
            text,
            "COALESCE(pg_catalog.hashtextextended(t.\"n\"::pg_catalog.text COLLATE \"C\", 7), -7046029254386353124)"
        );
    }

    #[test]
    fn names_are_quoted() {
        let s = shape(true);
        let q = s.bucket_sums(&s.table, &Chunk::Whole);
        assert!(q.contains("\"My Schema\".\"t\"\"x\" t"), "{q}");
        let q = s.bucket_sums(
            &s.table,
            &Chunk::Blocks {
                from: 0,
                to: Some(10),
            },
        );
        assert!(q.contains("FROM ONLY \"My Schema\""), "{q}");
        assert!(q.contains("$2::pg_catalog.text::pg_catalog.tid"), "{q}");
    }

    #[test]
    fn keyless_tables_bucket_by_the_row() {
        let s = shape(false);
        let q = s.bucket_rows();
        assert!(q.contains("GROUP BY x.b, x.rt"), "{q}");
        assert!(q.contains("ORDER BY x.b, x.rt COLLATE \"C\""), "{q}");
    }

    #[test]
    fn key_lookups_cast_each_column() {
        let s = shape(true);
        assert_eq!(
            s.key_in("t", &["id".to_string()]),
            "(t.\"id\") IN (SELECT u.a1::bigint FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[])) AS u(a1))"
        );
    }

    #[test]
    fn masks_are_powers_of_two_minus_one() {
        assert_eq!(mask_for(0), 0);
        assert_eq!(mask_for(5_000_000), 8191);
        assert_eq!(mask_for(i64::MAX), (1 << 18) - 1);
    }
}
