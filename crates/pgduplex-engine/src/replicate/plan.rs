//! What the daemon knows about one replicated table, and the SQL it runs on it.
//!
//! Every statement here is generated from catalog names through `quote_ident`;
//! values (keys, seq numbers) travel as bind parameters or COPY data.
//!
//! The temporary tables have positional column names (`k1..kn` for keys, `c1..cn`
//! plus `present` for staged rows): a user's column may be called anything,
//! `present` included.

use pgduplex_config::{ConflictPolicy, Side};
use pgduplex_pg::catalog::{Column, Table, TableKind};
use pgduplex_pg::params::param_rows;
use pgduplex_pg::{quote_ident, TableName};

/// A column the apply writes (generated columns are computed by the target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanColumn {
    pub name: String,
    /// `format_type()` as read with `search_path = pg_catalog, pg_temp`: qualified
    /// wherever it needs to be, so it is valid in any session.
    pub type_name: String,
    /// `GENERATED ALWAYS|BY DEFAULT AS IDENTITY`: 'a', 'd' or none.
    pub identity: Option<char>,
}

/// One replicated table as the daemon applies it.
#[derive(Clone, Debug)]
pub struct TablePlan {
    pub name: TableName,
    pub partitioned: bool,
    /// Written columns, in the left side's order.
    pub columns: Vec<PlanColumn>,
    /// Positions in `columns` of the key columns, in key order.
    pub key: Vec<usize>,
    pub policy: ConflictPolicy,
    /// The delta table on each side (`[left, right]`; the ids differ per side).
    pub delta: [TableName; 2],
    /// `pgduplex.replicated_table.id` on each side.
    pub table_id: [i32; 2],
    /// Names this plan's temporary tables; changes with the column definitions.
    tag: String,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Left => 0,
        Side::Right => 1,
    }
}

impl TablePlan {
    /// Builds the plan from the left side's catalog entry (the sides were compared
    /// by `check`: same columns and types).
    pub fn new(table: &Table, ids: [i32; 2], policy: ConflictPolicy) -> Self {
        let key_names = &table
            .key
            .as_ref()
            .expect("replicated tables have a key")
            .columns;
        let columns: Vec<PlanColumn> = table
            .columns
            .iter()
            .filter(|c| !c.generated)
            .map(|c| PlanColumn {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                identity: c.identity,
            })
            .collect();
        let key = key_names
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .position(|c| &c.name == k)
                    .expect("key columns are written columns")
            })
            .collect();
        TablePlan {
            name: table.name.clone(),
            partitioned: table.kind == TableKind::Partitioned,
            key,
            policy,
            delta: ids.map(pgduplex_pg::capture::delta_table),
            table_id: ids,
            tag: tag(ids[0], &columns),
            columns,
        }
    }

    /// The same table with the columns found now (`(name, type, generated,
    /// identity)` in table order), or `None` when a key column is gone.
    pub fn with_columns(&self, found: &[Column]) -> Option<TablePlan> {
        let key_names: Vec<&str> = self
            .key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect();
        let columns: Vec<PlanColumn> = found
            .iter()
            .filter(|c| !c.generated)
            .map(|c| PlanColumn {
                name: c.name.clone(),
                type_name: c.type_name.clone(),
                identity: c.identity,
            })
            .collect();
        let key = key_names
            .iter()
            .map(|k| columns.iter().position(|c| c.name == *k))
            .collect::<Option<Vec<usize>>>()?;
        Some(TablePlan {
            tag: tag(self.table_id[0], &columns),
            columns,
            key,
            name: self.name.clone(),
            partitioned: self.partitioned,
            policy: self.policy,
            delta: self.delta.clone(),
            table_id: self.table_id,
        })
    }

    pub fn delta_of(&self, side: Side) -> &TableName {
        &self.delta[side_index(side)]
    }

    pub fn id_of(&self, side: Side) -> i32 {
        self.table_id[side_index(side)]
    }

    pub fn key_types(&self) -> Vec<&str> {
        self.key
            .iter()
            .map(|&i| self.columns[i].type_name.as_str())
            .collect()
    }

    pub(crate) fn key_col(&self, i: usize) -> String {
        quote_ident(&self.columns[self.key[i]].name)
    }

    /// `prefix.k1 = other.x1 AND ...` over the key columns.
    pub(crate) fn key_join(
        &self,
        left: impl Fn(usize) -> String,
        right: impl Fn(usize) -> String,
    ) -> String {
        (0..self.key.len())
            .map(|i| format!("{} = {}", left(i), right(i)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn stage_col(&self, key_pos: usize) -> String {
        format!("s.c{}", self.key[key_pos] + 1)
    }

    /// `alias.k1 = s.c_k1 AND ...`: a table row joined to its staged row (`s`).
    pub(crate) fn stage_key_join(&self, alias: &str) -> String {
        self.key_join(
            |i| format!("{alias}.{}", self.key_col(i)),
            |i| self.stage_col(i),
        )
    }

    /// The type of column `name` (None for a column the plan leaves out, such as a
    /// generated one).
    pub(crate) fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.type_name.as_str())
    }

    pub fn keys_temp(&self) -> String {
        format!("pg_temp.pgduplex_keys_{}", self.tag)
    }

    pub fn stage_temp(&self) -> String {
        format!("pg_temp.pgduplex_stage_{}", self.tag)
    }

    /// The source's key table (one per session, emptied at commit).
    pub fn create_keys_temp(&self) -> String {
        self.create_key_table(&format!("pgduplex_keys_{}", self.tag))
    }

    /// A temp table `name (k1 type, ...)` of keys, emptied at commit.
    fn create_key_table(&self, name: &str) -> String {
        let cols = self
            .key_types()
            .iter()
            .enumerate()
            .map(|(i, t)| format!("k{} {t}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        format!("CREATE TEMP TABLE IF NOT EXISTS {name} ({cols}) ON COMMIT DELETE ROWS")
    }

    /// The target's staging table (one per session, emptied at commit).
    pub fn create_stage_temp(&self) -> String {
        let cols = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("c{} {}", i + 1, c.type_name))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS pgduplex_stage_{} ({cols}, present boolean NOT NULL) \
             ON COMMIT DELETE ROWS",
            self.tag
        )
    }

    pub fn copy_keys_in(&self) -> String {
        let cols = (1..=self.key.len())
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("COPY {} ({cols}) FROM STDIN", self.keys_temp())
    }

    /// The source's current row for every staged key, or the key alone with
    /// `present = false` when the row is gone. Same column order as the stage.
    ///
    /// One index probe per key (a lateral subquery behind `OFFSET 0`, which the
    /// planner cannot flatten): with a plain join it prefers, from about 10,000
    /// keys on, a merge or hash join that reads the whole table, so the cost of a
    /// batch would grow with the table instead of the batch.
    pub fn copy_rows_out(&self) -> String {
        let exprs = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match self.key.iter().position(|&k| k == i) {
                Some(kp) => format!("k.k{}", kp + 1),
                None => format!("t.{}", quote_ident(&c.name)),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let on = self.key_join(
            |i| format!("t.{}", self.key_col(i)),
            |i| format!("k.k{}", i + 1),
        );
        format!(
            "COPY (SELECT {exprs}, t.{} IS NOT NULL FROM {} k \
             LEFT JOIN LATERAL (SELECT * FROM {} t WHERE {on} OFFSET 0) t ON true) TO STDOUT",
            self.key_col(0),
            self.keys_temp(),
            self.name.quoted()
        )
    }

    pub fn copy_stage_in(&self) -> String {
        format!("COPY {} FROM STDIN", self.stage_temp())
    }

    /// Deltas of the staged keys on the target that are not in `$1` (the seqs read
    /// from this side in the cycle): changes made since the cycle read them.
    pub fn unseen_deltas(&self, target: Side) -> String {
        let on = self.key_join(|i| format!("d.k{}", i + 1), |i| self.stage_col(i));
        format!(
            "SELECT d.seq, {at}, {keys} FROM {} d JOIN {} s ON {on} \
             WHERE NOT (d.seq = ANY($1::pg_catalog.int8[]))",
            self.delta_of(target).quoted(),
            self.stage_temp(),
            at = captured_micros("d."),
            keys = self.key_text("d.k"),
        )
    }

    /// `{prefix}1::text, {prefix}2::text, ...` over the key columns.
    fn key_text(&self, prefix: &str) -> String {
        (1..=self.key.len())
            .map(|i| format!("{prefix}{i}::pg_catalog.text"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One branch of the delta read (see [`read_deltas`]): up to `$1` deltas with a
    /// seq below `$2`, oldest first, tagged with `plan` and the key as a text array.
    fn delta_branch(&self, side: Side, plan: usize) -> String {
        format!(
            "(SELECT seq, {plan}::pg_catalog.int4 AS plan, {at} AS at, ARRAY[{keys}] AS key FROM {} \
             WHERE seq < $2 ORDER BY seq LIMIT $1)",
            self.delta_of(side).quoted(),
            at = captured_micros(""),
            keys = self.key_text("k"),
        )
    }
    /// `unnest($1::text[], ...) AS u(a1, ...)` joined to the table on the key.
    pub(crate) fn key_param_join(&self, alias: &str) -> String {
        format!(
            "{} ON {}",
            param_rows(self.key.len()),
            self.key_param_match(alias)
        )
    }

    /// `alias.k1 = u.a1::type AND ...`: the key against the rows of `param_rows`.
    fn key_param_match(&self, alias: &str) -> String {
        let types = self.key_types();
        self.key_join(
            |i| format!("{alias}.{}", self.key_col(i)),
            |i| format!("u.a{}::{}", i + 1, types[i]),
        )
    }

    /// The whole rows (jsonb text) of the keys given as one text array per key
    /// column, with the key's text form first.
    pub fn row_images(&self) -> String {
        let keys = (0..self.key.len())
            .map(|i| format!("t.{}::pg_catalog.text", self.key_col(i)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {keys}, pg_catalog.to_jsonb(t)::pg_catalog.text FROM {} t JOIN {}",
            self.name.quoted(),
            self.key_param_join("t")
        )
    }

    /// The target's copy of every key the source holds (see `delete_all_except`).
    pub fn keep_temp(&self) -> String {
        format!("pg_temp.pgduplex_keep_{}", self.tag)
    }

    pub fn create_keep_temp(&self) -> String {
        self.create_key_table(&format!("pgduplex_keep_{}", self.tag))
    }

    /// Every key of `relation` (the table or one of its partitions), for `COPY ...
    /// TO STDOUT`.
    pub fn copy_all_keys_out(&self, relation: &TableName) -> String {
        let keys = (0..self.key.len())
            .map(|i| self.key_col(i))
            .collect::<Vec<_>>()
            .join(", ");
        format!("COPY (SELECT {keys} FROM {}) TO STDOUT", relation.quoted())
    }

    pub fn copy_keep_in(&self) -> String {
        format!("COPY {} FROM STDIN", self.keep_temp())
    }

    /// Deletes every row of `relation` (the table or one of its partitions)
    /// except the keys given as text arrays (a TRUNCATE that lost against this
    /// side's own changes to some keys) and, with `keep_staged`, the keys in the
    /// keep table (the rows the truncating side holds now).
    pub fn delete_all_except(&self, relation: &TableName, keep_staged: bool) -> String {
        let rows = param_rows(self.key.len());
        let on = self.key_param_match("t");
        let staged = if keep_staged {
            let on = self.key_join(
                |i| format!("t.{}", self.key_col(i)),
                |i| format!("k.k{}", i + 1),
            );
            format!(
                " AND NOT EXISTS (SELECT 1 FROM {} k WHERE {on})",
                self.keep_temp()
            )
        } else {
            String::new()
        };
        format!(
            "DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {rows} WHERE {on}){staged}",
            relation.quoted()
        )
    }

    pub fn delete_absent(&self) -> String {
        let on = self.key_join(|i| format!("t.{}", self.key_col(i)), |i| self.stage_col(i));
        format!(
            "DELETE FROM {} t USING {} s WHERE NOT s.present AND {on}",
            self.name.quoted(),
            self.stage_temp()
        )
    }

    fn column_names(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn stage_values(&self) -> String {
        (1..=self.columns.len())
            .map(|i| format!("s.c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn overriding(&self) -> &'static str {
        if self.columns.iter().any(|c| c.identity.is_some()) {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        }
    }

    /// Columns an UPDATE may set: not key columns, not `GENERATED ALWAYS` identity.
    fn settable(&self) -> Vec<(usize, &PlanColumn)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(i, c)| !self.key.contains(i) && c.identity != Some('a'))
            .collect()
    }

    /// One `INSERT ... ON CONFLICT (key) DO UPDATE` for every present staged row.
    pub fn upsert(&self) -> String {
        let keys = (0..self.key.len())
            .map(|i| self.key_col(i))
            .collect::<Vec<_>>()
            .join(", ");
        let set = self.settable();
        let action = if set.is_empty() {
            "NOTHING".to_string()
        } else {
            let sets = set
                .iter()
                .map(|(_, c)| {
                    let n = quote_ident(&c.name);
                    format!("{n} = EXCLUDED.{n}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("UPDATE SET {sets}")
        };
        format!(
            "INSERT INTO {} ({}){} SELECT {} FROM {} s WHERE s.present ON CONFLICT ({keys}) DO {action}",
            self.name.quoted(),
            self.column_names(),
            self.overriding(),
            self.stage_values(),
            self.stage_temp(),
        )
    }

    /// `s.c_k = $1::type AND ...`: one staged key given as text parameters.
    fn stage_key_param(&self) -> String {
        let types = self.key_types();
        self.key_join(
            |i| self.stage_col(i),
            |i| format!("${}::pg_catalog.text::{}", i + 1, types[i]),
        )
    }

    /// Per-row fallback: UPDATE of one existing row from the stage.
    pub fn update_one(&self) -> Option<String> {
        let set = self.settable();
        if set.is_empty() {
            return None;
        }
        let sets = set
            .iter()
            .map(|(i, c)| format!("{} = s.c{}", quote_ident(&c.name), i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let on = self.key_join(|i| format!("t.{}", self.key_col(i)), |i| self.stage_col(i));
        Some(format!(
            "UPDATE {} t SET {sets} FROM {} s WHERE s.present AND {on} AND {}",
            self.name.quoted(),
            self.stage_temp(),
            self.stage_key_param()
        ))
    }

    /// Per-row fallback: INSERT of one staged row.
    pub fn insert_one(&self) -> String {
        format!(
            "INSERT INTO {} ({}){} SELECT {} FROM {} s WHERE s.present AND {}",
            self.name.quoted(),
            self.column_names(),
            self.overriding(),
            self.stage_values(),
            self.stage_temp(),
            self.stage_key_param()
        )
    }

    /// Per-row fallback: the target row of one key exists?
    pub fn exists_one(&self) -> String {
        let types = self.key_types();
        let on = self.key_join(
            |i| format!("t.{}", self.key_col(i)),
            |i| format!("${}::pg_catalog.text::{}", i + 1, types[i]),
        );
        format!("SELECT 1 FROM {} t WHERE {on}", self.name.quoted())
    }

    /// Per-row fallback: DELETE of one target row.
    pub fn delete_one(&self) -> String {
        let types = self.key_types();
        let on = self.key_join(
            |i| self.key_col(i),
            |i| format!("${}::pg_catalog.text::{}", i + 1, types[i]),
        );
        format!("DELETE FROM {} WHERE {on}", self.name.quoted())
    }

    /// The present staged keys in key order (text form), for the per-row fallback.
    pub fn staged_present_keys(&self) -> String {
        let keys = (0..self.key.len())
            .map(|i| format!("{}::pg_catalog.text", self.stage_col(i)))
            .collect::<Vec<_>>()
            .join(", ");
        let order = (0..self.key.len())
            .map(|i| self.stage_col(i))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {keys} FROM {} s WHERE s.present ORDER BY {order}",
            self.stage_temp()
        )
    }

    /// Removes one key from the stage (a change on the target that wins).
    pub fn unstage_one(&self) -> String {
        format!(
            "DELETE FROM {} s WHERE {}",
            self.stage_temp(),
            self.stage_key_param()
        )
    }

    pub fn delete_deltas(&self, side: Side) -> String {
        format!(
            "DELETE FROM {} WHERE seq = ANY($1::pg_catalog.int8[])",
            self.delta_of(side).quoted()
        )
    }
}

/// Names a plan's temporary tables: the left id and a hash of the columns, so a
/// changed column list gets new tables.
fn tag(id: i32, columns: &[PlanColumn]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for c in columns {
        for b in c
            .name
            .bytes()
            .chain([0])
            .chain(c.type_name.bytes())
            .chain([0])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{id}_{:08x}", h as u32)
}

/// The columns of the given tables (`$1` schemas, `$2` names) as the daemon
/// compares them between the sides: name, type (qualified outside pg_catalog),
/// generated, identity; in table order.
pub const COLUMNS_SQL: &str = "SELECT n.nspname::text, c.relname::text, a.attname::text, \
       CASE WHEN tn.nspname = 'pg_catalog' THEN pg_catalog.format_type(a.atttypid, a.atttypmod) \
            ELSE pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(t.typname) END, \
       a.attgenerated <> '', NULLIF(a.attidentity, '')::text \
  FROM pg_catalog.pg_attribute a \
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
 WHERE a.attnum > 0 AND NOT a.attisdropped \
   AND (n.nspname, c.relname) IN (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]))) \
 ORDER BY n.nspname, c.relname, a.attnum";

/// The oldest `$1` deltas below seq `$2` over the given plans' delta tables, in
/// one statement and in global seq order: a batch cut by the cap is a prefix of
/// the order in which the source made its changes (a parent's insert before its
/// children's, children's deletes before their parent's).
pub fn read_deltas(plans: &[TablePlan], which: &[usize], side: Side) -> String {
    let branches = which
        .iter()
        .map(|&i| plans[i].delta_branch(side, i))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!("SELECT seq, plan, at, key FROM ({branches}) d ORDER BY seq LIMIT $1")
}

/// `captured_at` as microseconds since the epoch (int8).
fn captured_micros(prefix: &str) -> String {
    format!("(pg_catalog.date_part('epoch', {prefix}captured_at) * 1000000)::pg_catalog.int8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgduplex_pg::catalog::{Column, Key, KeySource};

    fn table() -> Table {
        let col = |name: &str, ty: &str, generated: bool, identity: Option<char>| Column {
            name: name.into(),
            type_name: ty.into(),
            not_null: true,
            generated,
            identity,
        };
        Table {
            oid: 1,
            name: TableName::new("My Schema", "Order"),
            kind: TableKind::Ordinary,
            columns: vec![
                col("present", "text", false, None),
                col("Id", "bigint", false, Some('a')),
                col("total", "numeric", true, None),
                col("region", "public.\"Region\"", false, None),
            ],
            key: Some(Key {
                columns: vec!["region".into(), "Id".into()],
                source: KeySource::PrimaryKey("pk".into()),
                deferrable: false,
            }),
            size_bytes: 0,
            estimated_rows: 0,
            partitions: vec![],
            partition_oids: vec![],
            owned: true,
            missing_privileges: vec![],
            user_triggers: vec![],
        }
    }

    #[test]
    fn generated_columns_are_not_written_and_keys_are_positional() {
        let p = TablePlan::new(&table(), [3, 7], ConflictPolicy::LeftWins);
        let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["present", "Id", "region"]);
        assert_eq!(p.key, [2, 1]);
        assert_eq!(p.delta_of(Side::Right).to_string(), "pgduplex.delta_7");
        assert_eq!(p.key_types(), ["public.\"Region\"", "bigint"]);
    }

    #[test]
    fn upsert_overrides_identity_and_sets_only_plain_columns() {
        let p = TablePlan::new(&table(), [3, 7], ConflictPolicy::LeftWins);
        let sql = p.upsert();
        assert!(sql.starts_with(
            "INSERT INTO \"My Schema\".\"Order\" (\"present\", \"Id\", \"region\") OVERRIDING SYSTEM VALUE SELECT s.c1, s.c2, s.c3"
        ), "{sql}");
        assert!(
            sql.ends_with(
                "ON CONFLICT (\"region\", \"Id\") DO UPDATE SET \"present\" = EXCLUDED.\"present\""
            ),
            "{sql}"
        );
        let rows = p.copy_rows_out();
        assert!(
            rows.contains("SELECT t.\"present\", k.k2, k.k1, t.\"region\" IS NOT NULL"),
            "{rows}"
        );
    }

    #[test]
    fn tag_follows_the_columns() {
        let a = TablePlan::new(&table(), [3, 7], ConflictPolicy::LeftWins);
        let mut t = table();
        t.columns[0].type_name = "varchar".into();
        let b = TablePlan::new(&t, [3, 7], ConflictPolicy::LeftWins);
        assert_ne!(a.stage_temp(), b.stage_temp());
    }
}
