//! The capture DDL generated for one replicated table, and why it looks this way.
//!
//! Which trigger kind, chosen by measurement (`bench/trigger_overhead/RESULTS.md`, run with
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
//! * An UPDATE records its new keys as 'U' from `NEW TABLE` alone. The old key of a
//!   row whose key changed comes from a fourth trigger, a row trigger `AFTER UPDATE
//!   OF <key columns> ... WHEN (the key's text form changed)`, which records it as
//!   'D'. PostgreSQL skips a column-specific trigger before preparing anything when
//!   the statement assigns no key column, so the common UPDATE pays for neither a
//!   join of old and new keys nor an `OLD TABLE` (transition tables are not allowed
//!   on a trigger with a column list, and an `OLD TABLE` on any UPDATE trigger is
//!   filled for every UPDATE). Measured (runs H, I): a single-row UPDATE costs about
//!   what an INSERT costs, a 1M-row UPDATE 0.7 of before; the price is
//!   a row-trigger call per row in the rare UPDATE that changes keys. The apply is
//!   state-based, so a new key recorded as 'U' instead of 'I', or an old key
//!   recorded as 'D' that another row of the same statement took over (a swap),
//!   is harmless: the apply reads the current row of every recorded key.
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
//! The capture function is `SECURITY DEFINER` with `SET search_path = pg_catalog,
//! pg_temp`, as the design requires (`DESIGN.md`, Capture) and as PostgreSQL
//! advises for every `SECURITY DEFINER` function: application roles need no rights
//! on schema `pgduplex`, and the function runs with the owner's rights on a fixed
//! path that no caller can redirect to objects of its own. The clause costs a GUC
//! save, set and restore on every call, measured at 2.5-6 µs per single-row statement
//! (runs H and I, `bench/trigger_overhead/RESULTS.md`); that price is paid.
//!
//! As defence in depth, every name in the body is also schema-qualified, so the body
//! would not depend on any search path even without the clause: tables
//! (`"pgduplex"."delta_<id>"`), functions (`pg_catalog.current_setting`), operators
//! (`OPERATOR(pg_catalog.=)`) and types (`::pg_catalog.name`); PostgreSQL never
//! looks for functions or operators in `pg_temp`, and a qualified name is never
//! looked up on the path at all. The only unqualified names are the transition
//! tables, which the parser resolves before any schema, and the delta table's
//! columns. Defaults of the delta table and the key trigger's `WHEN` clause are
//! stored by OID when install creates them (under `search_path = pg_catalog,
//! pg_temp`). Guards: a unit test rejects the clause's absence and any unqualified
//! function call, cast or operator in the generated body, and the e2e test
//! `capture_is_immune_to_the_callers_search_path` plants look-alike objects on a
//! hostile path and checks the installed functions' `search_path` setting. The
//! TRUNCATE function (`sql/schema.sql`) has the same clause.
//!
//! Old and new key values are compared by their text form (a cast, which does not
//! depend on the search path) because the key type's `=` operator may live in a
//! schema that is not on install's path; the text form is stricter than equality,
//! which at worst records a key change that was not one, and the state-based apply
//! makes that harmless.

use crate::ident::{quote_ident, quote_literal, TableName};

/// Name of the row trigger on a partitioned table (cloned to its partitions).
pub const CAPTURE_TRIGGER: &str = "pgduplex_capture";
/// Names of the statement triggers on an ordinary table.
pub const STATEMENT_TRIGGERS: [&str; 3] = [
    "pgduplex_capture_insert",
    "pgduplex_capture_update",
    "pgduplex_capture_delete",
];
/// Name of the row trigger `AFTER UPDATE OF <key columns>` on an ordinary table,
/// which records the old key of a row whose key changed.
pub const KEY_TRIGGER: &str = "pgduplex_capture_key";
/// Name of the TRUNCATE trigger on every replicated table and its partitions.
pub const TRUNCATE_TRIGGER: &str = "pgduplex_truncate";
/// The custom setting an apply transaction sets with `SET LOCAL`.
pub const APPLYING_SETTING: &str = "pgduplex.applying";
/// Bumped whenever the generated DDL changes, so a rerun of `install` after an
/// upgrade of pgduplex regenerates the capture of every table.
pub const CAPTURE_VERSION: u32 = 3;

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
            CaptureKind::Statement => {
                let mut all = STATEMENT_TRIGGERS.to_vec();
                all.push(KEY_TRIGGER);
                all
            }
            CaptureKind::Row => vec![CAPTURE_TRIGGER],
        }
    }
}

/// Every capture trigger name of either kind (install drops them all before
/// creating the current ones, so a table never ends up captured twice).
pub fn all_capture_triggers() -> Vec<&'static str> {
    let mut all = vec![CAPTURE_TRIGGER];
    all.extend(STATEMENT_TRIGGERS);
    all.push(KEY_TRIGGER);
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

/// The delta table of the replicated table recorded with `id` in
/// `pgduplex.replicated_table`: the only spelling of its name.
pub fn delta_table(id: i32) -> TableName {
    TableName::new(crate::SCHEMA, format!("delta_{id}"))
}

impl CaptureSpec {
    pub fn delta_table(&self) -> TableName {
        delta_table(self.id)
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

    /// Statement level: one `INSERT ... SELECT` from the transition table per
    /// statement. An UPDATE records every new key as 'U', from `NEW TABLE` alone;
    /// the old key of a row whose key changed is recorded as 'D' by the row trigger
    /// [`KEY_TRIGGER`] (`AFTER UPDATE OF <key columns>`), which calls this same
    /// function at row level. PostgreSQL skips that trigger without preparing
    /// anything when the statement assigns no key column, so an ordinary UPDATE
    /// pays for neither a join of old and new keys nor an `OLD TABLE`
    /// (transition tables are not allowed on triggers with a column list, and an
    /// `OLD TABLE` on any UPDATE trigger would be filled for every UPDATE).
    fn statement_function_body(&self) -> String {
        let delta = self.delta_table().quoted();
        let cols = self.delta_columns();
        let keys = self.key_list("");
        format!(
            "BEGIN\n\
             IF {applying} THEN\n    RETURN NULL;\nEND IF;\n\
             IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN\n    \
                 INSERT INTO {delta} (op, {cols}) SELECT 'I', {keys} FROM pgduplex_new;\n\
             ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN\n    \
                 INSERT INTO {delta} (op, {cols}) SELECT 'D', {keys} FROM pgduplex_old;\n\
             ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN\n    \
                 INSERT INTO {delta} (op, {cols}) SELECT 'U', {keys} FROM pgduplex_new;\n\
             ELSE\n    \
                 {moved}\n\
             END IF;\n\
             RETURN NULL;\n\
             END",
            applying = self.applying_condition(),
            moved = self.insert(&[("D", "OLD")]),
        )
    }

    /// The `WHEN` clause of [`KEY_TRIGGER`]: the row's key changed (an `UPDATE OF`
    /// trigger fires whenever a key column is assigned, also to the value it had),
    /// outside pgduplex's own apply. Key values are compared by their text form
    /// (module doc); the operators are resolved when the trigger is created, under
    /// the install's `search_path = pg_catalog, pg_temp`, and stored by OID.
    pub fn key_changed_when_clause(&self) -> String {
        let changed = self
            .key
            .iter()
            .map(|(n, _)| {
                let c = quote_ident(n);
                format!("OLD.{c}::pg_catalog.text IS DISTINCT FROM NEW.{c}::pg_catalog.text")
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        format!("({changed}) AND ({})", self.when_clause())
    }

    fn row_function_body(&self) -> String {
        let same_key = self
            .key
            .iter()
            .map(|(n, _)| {
                let c = quote_ident(n);
                // Key columns are NOT NULL; `IS NOT DISTINCT FROM` would look `=` up
                // on the caller's search path (module doc).
                format!("NEW.{c}::pg_catalog.text OPERATOR(pg_catalog.=) OLD.{c}::pg_catalog.text")
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

    /// The capture function: `SECURITY DEFINER` with a fixed `search_path` (module
    /// doc; every name in the body is schema-qualified as well).
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
        // (name, timing, WHEN clause)
        let creates: Vec<(&str, String, String)> = match self.kind {
            CaptureKind::Row => vec![(
                CAPTURE_TRIGGER,
                format!("AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW"),
                format!(" WHEN ({when})"),
            )],
            // Statement triggers test the no-echo rule in their function (module doc).
            CaptureKind::Statement => vec![
                (
                    STATEMENT_TRIGGERS[0],
                    format!("AFTER INSERT ON {t} REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT"),
                    String::new(),
                ),
                (
                    STATEMENT_TRIGGERS[1],
                    format!("AFTER UPDATE ON {t} REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT"),
                    String::new(),
                ),
                (
                    STATEMENT_TRIGGERS[2],
                    format!("AFTER DELETE ON {t} REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT"),
                    String::new(),
                ),
                (
                    KEY_TRIGGER,
                    format!("AFTER UPDATE OF {} ON {t} FOR EACH ROW", self.key_list("")),
                    format!(" WHEN ({})", self.key_changed_when_clause()),
                ),
            ],
        };
        for (name, timing, when) in creates {
            let trg = quote_ident(name);
            out.push(format!(
                "CREATE TRIGGER {trg} {timing}{when} EXECUTE FUNCTION {f}()"
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
        text.push_str(&self.create_function());
        for ddl in self.create_capture_triggers() {
            text.push_str(&ddl);
        }
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
        assert!(
            f.contains("SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS "),
            "{f}"
        );
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
    fn statement_capture_reads_one_transition_table() {
        let mut s = spec();
        s.kind = CaptureKind::Statement;
        let body = s.function_body();
        assert!(
            body.contains("SELECT 'I', \"Id\", \"select\" FROM pgduplex_new"),
            "{body}"
        );
        assert!(
            body.contains("SELECT 'U', \"Id\", \"select\" FROM pgduplex_new"),
            "{body}"
        );
        assert!(
            body.contains("SELECT 'D', \"Id\", \"select\" FROM pgduplex_old"),
            "{body}"
        );
        // The key trigger's row branch: the old key only.
        assert!(
            body.contains("VALUES ('D', OLD.\"Id\", OLD.\"select\");"),
            "{body}"
        );
        assert!(!body.contains("JOIN"), "{body}");
        let trg = s.create_capture_triggers().join(";\n");
        assert!(
            trg.contains("AFTER UPDATE ON \"My Schema\".\"we\"\"ird.table\" REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE"),
            "{trg}"
        );
        assert!(
            !trg.contains("REFERENCING OLD TABLE AS pgduplex_old NEW TABLE"),
            "{trg}"
        );
        assert!(
            trg.contains("CREATE TRIGGER \"pgduplex_capture_key\" AFTER UPDATE OF \"Id\", \"select\" ON \"My Schema\".\"we\"\"ird.table\" FOR EACH ROW WHEN ((OLD.\"Id\"::pg_catalog.text IS DISTINCT FROM NEW.\"Id\"::pg_catalog.text OR OLD.\"select\"::pg_catalog.text IS DISTINCT FROM NEW.\"select\"::pg_catalog.text) AND (pg_catalog.current_setting("),
            "{trg}"
        );
        assert!(
            trg.contains("DROP TRIGGER IF EXISTS \"pgduplex_capture\" ON"),
            "{trg}"
        );
        assert!(
            trg.contains("DROP TRIGGER IF EXISTS \"pgduplex_capture_key\" ON"),
            "{trg}"
        );
        assert_eq!(trg.matches("ENABLE ALWAYS").count(), 4);
        assert_eq!(
            trg.matches(" WHEN (").count(),
            1,
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
        assert_eq!(
            CaptureKind::Statement.triggers(),
            vec![
                "pgduplex_capture_insert",
                "pgduplex_capture_update",
                "pgduplex_capture_delete",
                "pgduplex_capture_key"
            ]
        );
    }

    /// Defence in depth behind the function's `SET search_path`: no function call,
    /// cast or operator in the body may be looked up on any search path.
    fn assert_search_path_free(body: &str) {
        let allowed_calls = ["COALESCE", "VALUES", "OPERATOR"];
        let b = body.as_bytes();
        for (i, _) in body.match_indices('(') {
            // The word right before '(' (possibly with a space), unless quoted.
            let mut end = i;
            while end > 0 && b[end - 1] == b' ' {
                end -= 1;
            }
            let mut start = end;
            while start > 0
                && (b[start - 1].is_ascii_alphanumeric() || b"_.".contains(&b[start - 1]))
            {
                start -= 1;
            }
            let word = &body[start..end];
            if word.is_empty() || allowed_calls.contains(&word) || word.starts_with("pg_catalog.") {
                continue;
            }
            // INSERT INTO "pgduplex"."delta_7" (op, k1): a column list after a quoted name.
            panic!("unqualified call {word:?} in:\n{body}");
        }
        for (i, _) in body.match_indices("::") {
            assert!(
                body[i + 2..].starts_with("pg_catalog."),
                "unqualified cast at {i} in:\n{body}"
            );
        }
        let stripped = body
            .replace("OPERATOR(pg_catalog.=)", "")
            .replace("OPERATOR(pg_catalog.<>)", "");
        // Quoted identifiers and string literals may contain anything: drop them
        // before looking for operators ('' and "" inside them toggle twice).
        let mut plain = String::new();
        let mut within: Option<char> = None;
        for c in stripped.chars() {
            match within {
                Some(q) if c == q => within = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => within = Some(c),
                None => plain.push(c),
            }
        }
        for op in [
            "=", "<", ">", "!", "||", "+", "-", "~", "@", "#", "%", "^", "&", "|", "`", "?",
        ] {
            assert!(!plain.contains(op), "bare operator {op:?} in:\n{body}");
        }
        // Constructs that look an operator up by name.
        let upper = plain.to_uppercase();
        for kw in [
            "DISTINCT", " IN ", " IN(", "BETWEEN", "LIKE", "ANY", " ALL", "NULLIF", "GREATEST",
            "LEAST", "CASE",
        ] {
            assert!(
                !upper.contains(kw),
                "{kw:?} looks up an operator, in:\n{body}"
            );
        }
    }

    #[test]
    fn capture_bodies_do_not_depend_on_the_search_path() {
        for kind in [CaptureKind::Statement, CaptureKind::Row] {
            let mut s = spec();
            s.kind = kind;
            assert_search_path_free(&s.function_body());
        }
        // The lint catches what it is for.
        let caught = std::panic::catch_unwind(|| assert_search_path_free("IF TG_OP = 'INSERT'"));
        assert!(caught.is_err());
        let caught = std::panic::catch_unwind(|| assert_search_path_free("SELECT now()"));
        assert!(caught.is_err());
        let caught = std::panic::catch_unwind(|| assert_search_path_free("SELECT 'x'::text"));
        assert!(caught.is_err());
        let caught = std::panic::catch_unwind(|| {
            assert_search_path_free("IF a::pg_catalog.text IS DISTINCT FROM b::pg_catalog.text")
        });
        assert!(caught.is_err());
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
