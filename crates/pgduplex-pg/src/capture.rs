//! The capture DDL generated for one replicated table, and why it looks this way.
//!
//! Which trigger kind, chosen by measurement (`BENCHMARKS.md`, run with
//! `bench/trigger_overhead/run.sh`):
//!
//! * Ordinary tables get statement-level `AFTER` triggers with transition tables,
//!   one `INSERT ... SELECT` into the delta table per statement. On single-row OLTP
//!   (pgbench) they cost the same as row triggers; on the application's bulk
//!   statements they cost 2-3 times less; on pgduplex's own apply and copy, where
//!   the `WHEN` clause skips them but the transition table is still filled, they
//!   cost +5-9% against +20-30% for a row trigger skipped by its `WHEN`.
//!   PostgreSQL allows transition tables only on single-event triggers, hence three
//!   triggers (insert, update, delete).
//! * Partitioned tables get one row-level trigger on the root: PostgreSQL clones row
//!   triggers to every partition, present and future, so writes straight into a
//!   partition (also one created after install) are captured. Statement triggers on
//!   the root would see neither.
//! * TRUNCATE has no rows: a statement trigger on the table and on each partition.
//!
//! The no-echo rule: a change is not captured when the transaction set
//! `pgduplex.applying = 'on'` *and* the session logged in as the role pgduplex
//! applies as (any role may set a custom setting, so the setting alone proves
//! nothing). Where it is tested depends on the trigger kind, again by measurement:
//! a trigger's `WHEN` expression is prepared anew for every statement, which costs
//! about 20 µs per single-row statement, so statement triggers test the rule as the
//! first thing in their function (one call per statement, and the apply writes few,
//! large statements); a row trigger keeps it in `WHEN`, which then skips the
//! function call for every row the apply writes.
//!
//! The capture function is `SECURITY DEFINER` with `search_path = pg_catalog,
//! pg_temp`: application roles need no rights on schema `pgduplex`, and cannot
//! redirect the function's names to objects of their own. It compares old and new
//! key values by their text form (a cast, which does not depend on the search path)
//! because the key type's `=` operator may live in a schema that is not on that path;
//! the text form is stricter than equality, which at worst records a key change that
//! was not one, and the state-based apply makes that harmless.

use crate::ident::{quote_ident, quote_literal, TableName};

/// Name of the row trigger on a partitioned table (cloned to its partitions).
pub const CAPTURE_TRIGGER: &str = "pgduplex_capture";
/// Names of the statement triggers on an ordinary table.
pub const STATEMENT_TRIGGERS: [&str; 3] = [
    "pgduplex_capture_insert",
    "pgduplex_capture_update",
    "pgduplex_capture_delete",
];
/// Name of the TRUNCATE trigger on every replicated table and its partitions.
pub const TRUNCATE_TRIGGER: &str = "pgduplex_truncate";
/// The custom setting an apply transaction sets with `SET LOCAL`.
pub const APPLYING_SETTING: &str = "pgduplex.applying";
/// Bumped whenever the generated DDL changes, so a rerun of `install` after an
/// upgrade of pgduplex regenerates the capture of every table.
pub const CAPTURE_VERSION: u32 = 2;

/// How a table's row changes are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// Statement-level triggers with transition tables (ordinary tables).
    Statement,
    /// One row-level trigger (partitioned tables; cloned to partitions).
    Row,
}

impl CaptureKind {
    /// The capture triggers of this kind (not the TRUNCATE trigger).
    pub fn triggers(self) -> Vec<&'static str> {
        match self {
            CaptureKind::Statement => STATEMENT_TRIGGERS.to_vec(),
            CaptureKind::Row => vec![CAPTURE_TRIGGER],
        }
    }
}

/// Every capture trigger name of either kind (install drops them all before
/// creating the current ones, so a table never ends up captured twice).
pub fn all_capture_triggers() -> Vec<&'static str> {
    let mut all = vec![CAPTURE_TRIGGER];
    all.extend(STATEMENT_TRIGGERS);
    all
}

/// Everything needed to generate the capture of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    pub id: i32,
    pub table: TableName,
    pub kind: CaptureKind,
    /// Key columns with their `format_type()` types (schema-qualified where needed).
    pub key: Vec<(String, String)>,
    /// The role whose apply transactions are not captured.
    pub apply_role: String,
}

impl CaptureSpec {
    pub fn delta_table(&self) -> TableName {
        TableName::new(crate::SCHEMA, format!("delta_{}", self.id))
    }

    pub fn function(&self) -> TableName {
        TableName::new(crate::SCHEMA, format!("capture_{}", self.id))
    }

    /// True in pgduplex's own apply transactions (the negation of
    /// [`CaptureSpec::when_clause`]), tested inside statement-level functions.
    pub fn applying_condition(&self) -> String {
        format!(
            "COALESCE(pg_catalog.current_setting({setting}, true), '') OPERATOR(pg_catalog.=) 'on' \
             AND session_user OPERATOR(pg_catalog.=) {role}::pg_catalog.name",
            setting = quote_literal(APPLYING_SETTING),
            role = quote_literal(&self.apply_role),
        )
    }

    /// The `WHEN` clause of the row trigger and the TRUNCATE triggers: true unless
    /// in pgduplex's own apply transaction.
    pub fn when_clause(&self) -> String {
        format!(
            "pg_catalog.current_setting({setting}, true) IS DISTINCT FROM 'on' \
             OR session_user OPERATOR(pg_catalog.<>) {role}::pg_catalog.name",
            setting = quote_literal(APPLYING_SETTING),
            role = quote_literal(&self.apply_role),
        )
    }

    /// Name of the delta table's column holding key column `i` (0-based): `k1`,
    /// `k2`, ... The user's own names could collide with the bookkeeping columns
    /// (a key column called `seq` or `op`); the mapping is recorded in
    /// `pgduplex.replicated_table.key_columns`.
    pub fn delta_key_column(i: usize) -> String {
        format!("k{}", i + 1)
    }

    pub fn create_delta_table(&self) -> String {
        let keys = self
            .key
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!(",\n    {} {} NOT NULL", Self::delta_key_column(i), ty))
            .collect::<String>();
        format!(
            "CREATE TABLE IF NOT EXISTS {delta} (\n    \
             seq bigint NOT NULL DEFAULT pg_catalog.nextval('pgduplex.delta_seq') PRIMARY KEY,\n    \
             op \"char\" NOT NULL,\n    \
             txid bigint NOT NULL DEFAULT pg_catalog.txid_current(),\n    \
             captured_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(){keys}\n)",
            delta = self.delta_table().quoted(),
        )
    }

    fn insert(&self, rows: &[(&str, &str)]) -> String {
        let values = rows
            .iter()
            .map(|(op, rec)| format!("('{op}', {})", self.key_list(&format!("{rec}."))))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} (op, {}) VALUES {values};",
            self.delta_table().quoted(),
            self.delta_columns()
        )
    }

    /// `"c1", "c2"` of the user's key columns, optionally with a relation prefix.
    fn key_list(&self, prefix: &str) -> String {
        self.key
            .iter()
            .map(|(n, _)| format!("{prefix}{}", quote_ident(n)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn delta_columns(&self) -> String {
        (0..self.key.len())
            .map(Self::delta_key_column)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The body of the plpgsql capture function.
    pub fn function_body(&self) -> String {
        match self.kind {
            CaptureKind::Row => self.row_function_body(),
            CaptureKind::Statement => self.statement_function_body(),
        }
    }

    /// Statement level: one `INSERT ... SELECT` from the transition tables. For
    /// UPDATE, old and new rows cannot be paired one by one, so keys are matched as
    /// sets (by their text form, see the module doc): a key in both is 'U', only in
    /// the old rows 'D' (the key changed away), only in the new rows 'I'.
    fn statement_function_body(&self) -> String {
        let delta = self.delta_table().quoted();
        let cols = self.delta_columns();
        // The key columns renamed to the delta table's k1..kn, for the join.
        let aliased = self
            .key
            .iter()
            .enumerate()
            .map(|(i, (n, _))| format!("{} AS {}", quote_ident(n), Self::delta_key_column(i)))
            .collect::<Vec<_>>()
            .join(", ");
        let join_on = (0..self.key.len())
            .map(|i| {
                let k = Self::delta_key_column(i);
                format!("n.{k}::pg_catalog.text OPERATOR(pg_catalog.=) o.{k}::pg_catalog.text")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let coalesced = (0..self.key.len())
            .map(|i| {
                let k = Self::delta_key_column(i);
                format!("COALESCE(n.{k}, o.{k})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let k1 = Self::delta_key_column(0);
        let keys = self.key_list("");
        format!(
            "BEGIN\n\
             IF {applying} THEN\n    RETURN NULL;\nEND IF;\n\
             IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN\n    \
                 INSERT INTO {delta} (op, {cols}) SELECT 'I', {keys} FROM pgduplex_new;\n\
             ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN\n    \
                 INSERT INTO {delta} (op, {cols})\n    \
                 SELECT CASE WHEN o.{k1} IS NULL THEN 'I' WHEN n.{k1} IS NULL THEN 'D' ELSE 'U' END, {coalesced}\n      \
                 FROM (SELECT {aliased} FROM pgduplex_new) n\n      \
                 FULL JOIN (SELECT {aliased} FROM pgduplex_old) o ON {join_on};\n\
             ELSE\n    \
                 INSERT INTO {delta} (op, {cols}) SELECT 'D', {keys} FROM pgduplex_old;\n\
             END IF;\n\
             RETURN NULL;\n\
             END",
            applying = self.applying_condition(),
        )
    }

    fn row_function_body(&self) -> String {
        let same_key = self
            .key
            .iter()
            .map(|(n, _)| {
                let c = quote_ident(n);
                format!("NEW.{c}::pg_catalog.text IS NOT DISTINCT FROM OLD.{c}::pg_catalog.text")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "BEGIN\n\
             IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN\n    {ins}\n\
             ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN\n    \
                 IF {same_key} THEN\n        {upd}\n    \
                 ELSE\n        {moved}\n    END IF;\n\
             ELSE\n    {del}\n\
             END IF;\n\
             RETURN NULL;\n\
             END",
            ins = self.insert(&[("I", "NEW")]),
            upd = self.insert(&[("U", "NEW")]),
            moved = self.insert(&[("D", "OLD"), ("I", "NEW")]),
            del = self.insert(&[("D", "OLD")]),
        )
    }

    pub fn create_function(&self) -> String {
        format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
             SET search_path = pg_catalog, pg_temp AS {body}",
            f = self.function().quoted(),
            body = quote_literal(&self.function_body()),
        )
    }

    pub fn revoke_function(&self) -> String {
        format!(
            "REVOKE ALL ON FUNCTION {}() FROM PUBLIC",
            self.function().quoted()
        )
    }

    /// DROP of every capture trigger of either kind, then CREATE + ENABLE ALWAYS of
    /// this kind's (these statements take the table lock).
    pub fn create_capture_triggers(&self) -> Vec<String> {
        let t = self.table.quoted();
        let f = self.function().quoted();
        let when = self.when_clause();
        let mut out: Vec<String> = all_capture_triggers()
            .into_iter()
            .map(|trg| format!("DROP TRIGGER IF EXISTS {} ON {t}", quote_ident(trg)))
            .collect();
        let creates: Vec<(&str, String)> = match self.kind {
            CaptureKind::Row => vec![(
                CAPTURE_TRIGGER,
                "AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW".to_string(),
            )],
            CaptureKind::Statement => vec![
                (
                    STATEMENT_TRIGGERS[0],
                    "AFTER INSERT ON {t} REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT".to_string(),
                ),
                (
                    STATEMENT_TRIGGERS[1],
                    "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS pgduplex_old NEW TABLE AS pgduplex_new \
                     FOR EACH STATEMENT"
                        .to_string(),
                ),
                (
                    STATEMENT_TRIGGERS[2],
                    "AFTER DELETE ON {t} REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT".to_string(),
                ),
            ],
        };
        for (name, timing) in creates {
            let trg = quote_ident(name);
            // Statement triggers test the no-echo rule in their function (module doc).
            let when = match self.kind {
                CaptureKind::Row => format!(" WHEN ({when})"),
                CaptureKind::Statement => String::new(),
            };
            out.push(format!(
                "CREATE TRIGGER {trg} {}{when} EXECUTE FUNCTION {f}()",
                timing.replace("{t}", &t)
            ));
            out.push(format!("ALTER TABLE {t} ENABLE ALWAYS TRIGGER {trg}"));
        }
        out
    }

    /// DROP + CREATE + ENABLE ALWAYS of the TRUNCATE trigger on `on` (the table or
    /// one of its partitions: statement triggers are not cloned to partitions).
    pub fn create_truncate_trigger(&self, on: &TableName) -> Vec<String> {
        let t = on.quoted();
        let trg = quote_ident(TRUNCATE_TRIGGER);
        vec![
            format!("DROP TRIGGER IF EXISTS {trg} ON {t}"),
            format!(
                "CREATE TRIGGER {trg} AFTER TRUNCATE ON {t} FOR EACH STATEMENT \
                 WHEN ({when}) EXECUTE FUNCTION pgduplex.capture_truncate('{id}')",
                when = self.when_clause(),
                id = self.id
            ),
            format!("ALTER TABLE {t} ENABLE ALWAYS TRIGGER {trg}"),
        ]
    }

    /// A stable fingerprint of everything generated: when it changes, install
    /// regenerates the capture.
    pub fn definition_hash(&self) -> String {
        // FNV-1a: stable across Rust versions and platforms, unlike DefaultHasher.
        let mut text = format!("v{CAPTURE_VERSION}\n{:?}\n{}\n", self.kind, self.apply_role);
        text.push_str(&self.create_delta_table());
        text.push_str(&self.function_body());
        let mut h: u64 = 0xcbf29ce484222325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CaptureSpec {
        CaptureSpec {
            id: 7,
            table: TableName::new("My Schema", "we\"ird.table"),
            kind: CaptureKind::Row,
            key: vec![
                ("Id".into(), "bigint".into()),
                ("select".into(), "text".into()),
            ],
            apply_role: "app'role".into(),
        }
    }

    #[test]
    fn names_are_quoted_everywhere() {
        let s = spec();
        let trg = s.create_capture_triggers().join(";\n");
        assert!(
            trg.contains("ON \"My Schema\".\"we\"\"ird.table\""),
            "{trg}"
        );
        assert!(trg.contains("'app''role'::pg_catalog.name"), "{trg}");
        let body = s.function_body();
        assert!(body.contains("NEW.\"Id\", NEW.\"select\""), "{body}");
        assert!(
            body.contains("('D', OLD.\"Id\", OLD.\"select\"), ('I', NEW.\"Id\", NEW.\"select\")")
        );
        let f = s.create_function();
        assert!(f.contains("SECURITY DEFINER"));
        assert!(f.contains("SET search_path = pg_catalog, pg_temp"));
        let d = s.create_delta_table();
        assert!(d.contains("\"pgduplex\".\"delta_7\""), "{d}");
        assert!(d.contains("k1 bigint NOT NULL"), "{d}");
        assert!(d.contains("k2 text NOT NULL"), "{d}");
        assert!(
            body.contains("INSERT INTO \"pgduplex\".\"delta_7\" (op, k1, k2) VALUES"),
            "{body}"
        );
    }

    #[test]
    fn statement_capture_matches_keys_as_sets() {
        let mut s = spec();
        s.kind = CaptureKind::Statement;
        let body = s.function_body();
        assert!(
            body.contains("SELECT 'I', \"Id\", \"select\" FROM pgduplex_new"),
            "{body}"
        );
        assert!(
            body.contains("FULL JOIN (SELECT \"Id\" AS k1, \"select\" AS k2 FROM pgduplex_old) o"),
            "{body}"
        );
        assert!(
            body.contains("COALESCE(n.k1, o.k1), COALESCE(n.k2, o.k2)"),
            "{body}"
        );
        let trg = s.create_capture_triggers().join(";\n");
        assert!(
            trg.contains("REFERENCING OLD TABLE AS pgduplex_old NEW TABLE AS pgduplex_new"),
            "{trg}"
        );
        assert!(
            trg.contains("DROP TRIGGER IF EXISTS \"pgduplex_capture\" ON"),
            "{trg}"
        );
        assert_eq!(trg.matches("ENABLE ALWAYS").count(), 3);
        assert!(
            !trg.contains(" WHEN ("),
            "statement triggers test no-echo in the function: {trg}"
        );
        assert!(
            body.starts_with(
                "BEGIN\nIF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '')"
            ),
            "{body}"
        );
        assert!(body.contains("AND session_user OPERATOR(pg_catalog.=) 'app''role'::pg_catalog.name THEN\n    RETURN NULL;"), "{body}");
        let mut r = spec();
        r.kind = CaptureKind::Row;
        assert_ne!(s.definition_hash(), r.definition_hash());
    }

    #[test]
    fn hash_follows_the_definition() {
        let a = spec();
        let mut b = spec();
        assert_eq!(a.definition_hash(), b.definition_hash());
        b.key[0].1 = "integer".into();
        assert_ne!(a.definition_hash(), b.definition_hash());
        let mut c = spec();
        c.apply_role = "other".into();
        assert_ne!(a.definition_hash(), c.definition_hash());
    }
}
