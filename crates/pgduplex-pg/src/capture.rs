//! The capture DDL generated for one replicated table, and why it looks this way.
//!
//! Row-level `AFTER` triggers, not statement-level triggers with transition tables:
//! measured in `bench/trigger_overhead/RESULTS.md`. In short: a transition table is
//! filled even when the trigger then does nothing, which taxes pgduplex's own apply
//! and copy on every row, while a row trigger whose `WHEN` clause is false costs
//! almost nothing; row triggers on a partitioned table are also cloned to every
//! partition, present and future, so writes straight into a partition are captured
//! without a new install. Statement triggers are used only for TRUNCATE, which has
//! no rows.
//!
//! The no-echo rule sits in the `WHEN` clause: a row is not captured when the
//! transaction set `pgduplex.applying = 'on'` *and* the session logged in as the
//! role pgduplex applies as (any role may set a custom setting, so the setting alone
//! proves nothing).
//!
//! The capture function is `SECURITY DEFINER` with `search_path = pg_catalog,
//! pg_temp`: application roles need no rights on schema `pgduplex`, and cannot
//! redirect the function's names to objects of their own. It compares old and new
//! key values by their text form (a cast, which does not depend on the search path)
//! because the key type's `=` operator may live in a schema that is not on that path;
//! the text form is stricter than equality, which at worst records a key change that
//! was not one, and the state-based apply makes that harmless.

use crate::ident::{quote_ident, quote_literal, TableName};

/// Name of the row trigger on every replicated table.
pub const CAPTURE_TRIGGER: &str = "pgduplex_capture";
/// Name of the TRUNCATE trigger on every replicated table and its partitions.
pub const TRUNCATE_TRIGGER: &str = "pgduplex_truncate";
/// The custom setting an apply transaction sets with `SET LOCAL`.
pub const APPLYING_SETTING: &str = "pgduplex.applying";
/// Bumped whenever the generated DDL changes, so a rerun of `install` after an
/// upgrade of pgduplex regenerates the capture of every table.
pub const CAPTURE_VERSION: u32 = 1;

/// Everything needed to generate the capture of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    pub id: i32,
    pub table: TableName,
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

    /// The `WHEN` clause shared by both triggers.
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
        let cols = (0..self.key.len())
            .map(Self::delta_key_column)
            .collect::<Vec<_>>()
            .join(", ");
        let values = rows
            .iter()
            .map(|(op, rec)| {
                let vals = self
                    .key
                    .iter()
                    .map(|(n, _)| format!("{rec}.{}", quote_ident(n)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("('{op}', {vals})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} (op, {cols}) VALUES {values};",
            self.delta_table().quoted()
        )
    }

    /// The body of the plpgsql capture function.
    pub fn function_body(&self) -> String {
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
             IF TG_OP = 'INSERT' THEN\n    {ins}\n\
             ELSIF TG_OP = 'UPDATE' THEN\n    \
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

    /// DROP + CREATE + ENABLE ALWAYS of the row trigger (these take the table lock).
    pub fn create_capture_trigger(&self) -> Vec<String> {
        let t = self.table.quoted();
        let trg = quote_ident(CAPTURE_TRIGGER);
        vec![
            format!("DROP TRIGGER IF EXISTS {trg} ON {t}"),
            format!(
                "CREATE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW \
                 WHEN ({when}) EXECUTE FUNCTION {f}()",
                when = self.when_clause(),
                f = self.function().quoted()
            ),
            format!("ALTER TABLE {t} ENABLE ALWAYS TRIGGER {trg}"),
        ]
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
        let mut text = format!("v{CAPTURE_VERSION}\n{}\n", self.apply_role);
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
        let trg = s.create_capture_trigger().join(";\n");
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
