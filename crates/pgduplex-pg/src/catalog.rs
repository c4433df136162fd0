//! Catalog introspection of one side: the tables pgduplex could replicate, their
//! keys, columns, foreign keys, user triggers and partitions, and the sequences.
//!
//! Everything is read with a handful of catalog queries (not one query per table),
//! so `check` stays fast on databases with thousands of tables.

use std::collections::{BTreeMap, HashMap};

use pgduplex_config::Side;
use tokio_postgres::Client;

use crate::ident::TableName;
use crate::{PgError, SCHEMA};

/// Oldest server version pgduplex supports: 13 brings `pg_trigger.tgparentid`
/// (cloned partition triggers are told apart from the user's own) and row
/// triggers on partitioned tables that are cloned to every partition.
pub const MIN_SERVER_VERSION: i32 = 130000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableKind {
    Ordinary,
    Partitioned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type()` of the column: what is compared between the sides.
    pub type_name: String,
    pub not_null: bool,
    /// `GENERATED ALWAYS AS (...) STORED`: never written by pgduplex.
    pub generated: bool,
    /// `GENERATED ALWAYS|BY DEFAULT AS IDENTITY`: 'a', 'd' or none.
    pub identity: Option<char>,
}

/// One difference between the columns of a table on the left and on the right.
/// Columns are compared by name, type and whether they are generated; their order
/// does not matter (every statement pgduplex writes names its columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnDiff {
    /// The column exists on one side only.
    Only { column: String, side: Side },
    /// The column's type differs.
    Type {
        column: String,
        left: String,
        right: String,
    },
    /// The column is generated on one side only.
    Generated { column: String },
}

impl std::fmt::Display for ColumnDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnDiff::Only { column, side } => write!(f, "column {column} only on the {side}"),
            ColumnDiff::Type {
                column,
                left,
                right,
            } => write!(
                f,
                "column {column} is {left} on the left but {right} on the right"
            ),
            ColumnDiff::Generated { column } => {
                write!(f, "column {column} is generated on one side only")
            }
        }
    }
}

/// Every difference between the left and the right columns of one table, left
/// columns first, in their order.
pub fn column_diff(left: &[Column], right: &[Column]) -> Vec<ColumnDiff> {
    let find = |cols: &[Column], name: &str| cols.iter().position(|c| c.name == name);
    let mut diffs = Vec::new();
    for c in left {
        match find(right, &c.name).map(|i| &right[i]) {
            None => diffs.push(ColumnDiff::Only {
                column: c.name.clone(),
                side: Side::Left,
            }),
            Some(o) if o.type_name != c.type_name => diffs.push(ColumnDiff::Type {
                column: c.name.clone(),
                left: c.type_name.clone(),
                right: o.type_name.clone(),
            }),
            Some(o) if o.generated != c.generated => diffs.push(ColumnDiff::Generated {
                column: c.name.clone(),
            }),
            Some(_) => {}
        }
    }
    for c in right {
        if find(left, &c.name).is_none() {
            diffs.push(ColumnDiff::Only {
                column: c.name.clone(),
                side: Side::Right,
            });
        }
    }
    diffs
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    PrimaryKey(String),
    /// A unique index whose columns are all NOT NULL.
    UniqueIndex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub columns: Vec<String>,
    pub source: KeySource,
    /// A `DEFERRABLE` key cannot arbitrate `ON CONFLICT` (the apply falls back).
    pub deferrable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub table: TableName,
    pub columns: Vec<String>,
    pub references: TableName,
    pub referenced_columns: Vec<String>,
    /// `pg_constraint.confupdtype` / `confdeltype`: a no action, r restrict,
    /// c cascade, n set null, d set default.
    pub on_update: char,
    pub on_delete: char,
    pub deferrable: bool,
}

impl ForeignKey {
    /// True when the constraint changes rows of its own (CASCADE, SET NULL, SET DEFAULT).
    pub fn has_actions(&self) -> bool {
        matches!(self.on_update, 'c' | 'n' | 'd') || matches!(self.on_delete, 'c' | 'n' | 'd')
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTrigger {
    pub name: String,
    /// The table (or partition) it is defined on.
    pub table: TableName,
    /// `tgenabled`: O origin, A always, R replica, D disabled.
    pub enabled: char,
    pub definition: String,
    /// The definition has a `WHEN` clause that tests `pgduplex.applying`.
    pub guarded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub oid: u32,
    pub name: TableName,
    pub kind: TableKind,
    pub columns: Vec<Column>,
    pub key: Option<Key>,
    /// Total size with indexes and TOAST, partitions included.
    pub size_bytes: i64,
    pub estimated_rows: i64,
    pub partitions: Vec<TableName>,
    /// OIDs of `partitions`, same order.
    pub partition_oids: Vec<u32>,
    /// The current role owns the table (or is a member of its owner): needed for
    /// `ALTER TABLE ... ENABLE ALWAYS TRIGGER`.
    pub owned: bool,
    /// Privileges the apply and install need that the current role lacks.
    pub missing_privileges: Vec<&'static str>,
    pub user_triggers: Vec<UserTrigger>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub name: TableName,
    /// The column it belongs to (serial or identity), if any.
    pub owned_by: Option<(TableName, String)>,
}

/// What one side holds.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub server_version_num: i32,
    pub server_version: String,
    pub current_user: String,
    pub database: String,
    pub can_create_schema: bool,
    pub schema_exists: bool,
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
    pub sequences: Vec<Sequence>,
    /// pgduplex's own triggers that are not `ENABLE ALWAYS` (disabled, or enabled
    /// only for some sessions): changes may be escaping capture.
    pub capture_triggers_not_always: Vec<(TableName, String, char)>,
    /// Partitions of captured tables without pgduplex's TRUNCATE trigger
    /// (created after the last install: statement triggers are not cloned).
    pub partitions_without_truncate_capture: Vec<TableName>,
}

impl Catalog {
    pub fn table(&self, name: &TableName) -> Option<&Table> {
        self.tables.iter().find(|t| &t.name == name)
    }

    /// Foreign keys whose referencing table is `name`.
    pub fn foreign_keys_of<'a>(
        &'a self,
        name: &'a TableName,
    ) -> impl Iterator<Item = &'a ForeignKey> + 'a {
        self.foreign_keys.iter().filter(move |fk| &fk.table == name)
    }
}

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgduplex') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

fn q(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    move |source| PgError::Query { context, source }
}

/// Reads the catalog of the database `client` is connected to: one step per
/// catalog query, each filling its part of [`Catalog`], in this order.
pub async fn load(client: &Client) -> Result<Catalog, PgError> {
    let mut catalog = load_server(client).await?;
    if catalog.server_version_num < MIN_SERVER_VERSION {
        // The queries below use catalog columns of newer versions.
        return Ok(catalog);
    }
    let by_oid = load_tables(client, &mut catalog).await?;
    let oids: Vec<u32> = catalog.tables.iter().map(|t| t.oid).collect();
    load_columns(client, &mut catalog, &by_oid, &oids).await?;
    load_keys(client, &mut catalog, &by_oid, &oids).await?;
    let partition_root = load_partitions(client, &mut catalog, &by_oid).await?;
    load_user_triggers(client, &mut catalog, &by_oid, &oids, &partition_root).await?;
    load_foreign_keys(client, &mut catalog, &oids).await?;
    load_sequences(client, &mut catalog).await?;
    load_capture_triggers_not_always(client, &mut catalog).await?;
    load_partitions_without_truncate_capture(client, &mut catalog).await?;
    Ok(catalog)
}

/// Sets the search path and reads the server version, user and database.
async fn load_server(client: &Client) -> Result<Catalog, PgError> {
    // format_type() qualifies every type that is not on the search path: with only
    // pg_catalog on it, user types come out schema-qualified on both sides, usable
    // in the delta tables' DDL and comparable between the sides.
    client
        .batch_execute("SET search_path = pg_catalog, pg_temp")
        .await
        .map_err(q("setting the search path"))?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
                    current_user::text, current_database()::text, \
                    has_database_privilege(current_database(), 'CREATE'), \
                    EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&SCHEMA],
        )
        .await
        .map_err(q("reading the server version"))?;
    let server_version_num: i32 = row.get(0);
    Ok(Catalog {
        server_version_num,
        server_version: row.get(1),
        current_user: row.get(2),
        database: row.get(3),
        can_create_schema: row.get(4),
        schema_exists: row.get(5),
        tables: Vec::new(),
        foreign_keys: Vec::new(),
        sequences: Vec::new(),
        capture_triggers_not_always: Vec::new(),
        partitions_without_truncate_capture: Vec::new(),
    })
}

/// Lists the tables pgduplex could replicate; returns their index in `catalog.tables` by OID.
async fn load_tables(
    client: &Client,
    catalog: &mut Catalog,
) -> Result<HashMap<u32, usize>, PgError> {
    let tables_sql = format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
                CASE WHEN c.relkind = 'p' \
                     THEN COALESCE((SELECT sum(pg_total_relation_size(pt.relid)) FROM pg_partition_tree(c.oid) pt), 0) \
                     ELSE pg_total_relation_size(c.oid) END::bigint, \
                CASE WHEN c.relkind = 'p' \
                     THEN COALESCE((SELECT sum(GREATEST(c2.reltuples, 0)) FROM pg_partition_tree(c.oid) pt \
                                    JOIN pg_class c2 ON c2.oid = pt.relid), 0) \
                     ELSE GREATEST(c.reltuples, 0) END::bigint, \
                pg_has_role(c.relowner, 'USAGE'), \
                has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'INSERT'), \
                has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'), \
                has_table_privilege(c.oid, 'TRUNCATE'), has_table_privilege(c.oid, 'TRIGGER') \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_SCHEMAS} \
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                            AND d.objid = c.oid AND d.deptype = 'e') \
          ORDER BY 2, 3"
    );
    let rows = client
        .query(&tables_sql, &[])
        .await
        .map_err(q("listing tables"))?;
    let mut by_oid: HashMap<u32, usize> = HashMap::new();
    for row in rows {
        let oid: u32 = row.get(0);
        let kind: String = row.get(3);
        let mut missing = Vec::new();
        for (i, privilege) in [
            "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER",
        ]
        .into_iter()
        .enumerate()
        {
            if !row.get::<_, bool>(7 + i) {
                missing.push(privilege);
            }
        }
        by_oid.insert(oid, catalog.tables.len());
        catalog.tables.push(Table {
            oid,
            name: TableName::new(row.get::<_, String>(1), row.get::<_, String>(2)),
            kind: if kind == "p" {
                TableKind::Partitioned
            } else {
                TableKind::Ordinary
            },
            columns: Vec::new(),
            key: None,
            size_bytes: row.get(4),
            estimated_rows: row.get(5),
            partitions: Vec::new(),
            partition_oids: Vec::new(),
            owned: row.get(6),
            missing_privileges: missing,
            user_triggers: Vec::new(),
        });
    }
    Ok(by_oid)
}

/// Fills the columns of every table.
async fn load_columns(
    client: &Client,
    catalog: &mut Catalog,
    by_oid: &HashMap<u32, usize>,
    oids: &[u32],
) -> Result<(), PgError> {
    let rows = client
        .query(
            "SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.attgenerated::text, a.attidentity::text \
               FROM pg_attribute a \
              WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
              ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(q("listing columns"))?;
    for row in rows {
        let t = &mut catalog.tables[by_oid[&row.get::<_, u32>(0)]];
        let generated: String = row.get(4);
        let identity: String = row.get(5);
        t.columns.push(Column {
            name: row.get(1),
            type_name: row.get(2),
            not_null: row.get(3),
            generated: !generated.is_empty(),
            identity: identity.chars().next(),
        });
    }
    Ok(())
}

/// Picks every table's key: its primary key, else a unique index on NOT NULL columns.
async fn load_keys(
    client: &Client,
    catalog: &mut Catalog,
    by_oid: &HashMap<u32, usize>,
    oids: &[u32],
) -> Result<(), PgError> {
    // Unique, valid, non-partial, non-expression indexes; key columns only (not INCLUDE).
    let rows = client
        .query(
            "SELECT i.indrelid, ci.relname::text, i.indisprimary, \
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord) \
                            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                           WHERE k.ord <= i.indnkeyatts ORDER BY k.ord), \
                    NOT EXISTS (SELECT 1 FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord) \
                                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                                WHERE k.ord <= i.indnkeyatts AND NOT a.attnotnull), \
                    COALESCE(con.condeferrable, false) \
               FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid \
               LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
                                          AND con.contype IN ('p', 'u') \
              WHERE i.indrelid = ANY($1) AND i.indisunique AND i.indisvalid \
                AND i.indexprs IS NULL AND i.indpred IS NULL \
              ORDER BY i.indrelid, i.indisprimary DESC, i.indnkeyatts, ci.relname",
            &[&oids],
        )
        .await
        .map_err(q("listing keys"))?;
    for row in rows {
        let t = &mut catalog.tables[by_oid[&row.get::<_, u32>(0)]];
        if t.key.is_some() {
            continue;
        }
        let primary: bool = row.get(2);
        let all_not_null: bool = row.get(4);
        if !primary && !all_not_null {
            continue;
        }
        let index_name: String = row.get(1);
        t.key = Some(Key {
            columns: row.get(3),
            source: if primary {
                KeySource::PrimaryKey(index_name)
            } else {
                KeySource::UniqueIndex(index_name)
            },
            deferrable: row.get(5),
        });
    }
    Ok(())
}

/// Lists the partitions of the partitioned tables; returns each partition's root by OID.
async fn load_partitions(
    client: &Client,
    catalog: &mut Catalog,
    by_oid: &HashMap<u32, usize>,
) -> Result<HashMap<u32, u32>, PgError> {
    let rows = client
        .query(
            "SELECT pg_partition_root(c.oid)::oid, n.nspname::text, c.relname::text, c.oid \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relispartition AND c.relkind IN ('r', 'p') \
              ORDER BY 2, 3",
            &[],
        )
        .await
        .map_err(q("listing partitions"))?;
    let mut partition_root: HashMap<u32, u32> = HashMap::new();
    for row in rows {
        let root: u32 = row.get(0);
        if let Some(&i) = by_oid.get(&root) {
            let t = &mut catalog.tables[i];
            t.partitions.push(TableName::new(
                row.get::<_, String>(1),
                row.get::<_, String>(2),
            ));
            t.partition_oids.push(row.get(3));
            partition_root.insert(row.get(3), root);
        }
    }
    Ok(partition_root)
}

/// Lists the user triggers of the tables and their partitions, each under its root table.
async fn load_user_triggers(
    client: &Client,
    catalog: &mut Catalog,
    by_oid: &HashMap<u32, usize>,
    oids: &[u32],
    partition_root: &HashMap<u32, u32>,
) -> Result<(), PgError> {
    let mut trigger_rels = oids.to_vec();
    trigger_rels.extend(partition_root.keys().copied());
    let rows = client
        .query(
            "SELECT t.tgrelid, n.nspname::text, c.relname::text, t.tgname::text, t.tgenabled::text, \
                    pg_get_triggerdef(t.oid) \
               FROM pg_trigger t \
               JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace \
              WHERE t.tgrelid = ANY($1) AND NOT t.tgisinternal AND t.tgparentid = 0 \
                AND pn.nspname <> 'pgduplex' \
              ORDER BY 2, 3, 4",
            &[&trigger_rels],
        )
        .await
        .map_err(q("listing triggers"))?;
    for row in rows {
        let rel: u32 = row.get(0);
        let root = partition_root.get(&rel).copied().unwrap_or(rel);
        let definition: String = row.get(5);
        let guarded = definition.contains("pgduplex.applying");
        let t = &mut catalog.tables[by_oid[&root]];
        t.user_triggers.push(UserTrigger {
            name: row.get(3),
            table: TableName::new(row.get::<_, String>(1), row.get::<_, String>(2)),
            enabled: row.get::<_, String>(4).chars().next().unwrap_or('O'),
            definition,
            guarded,
        });
    }
    Ok(())
}

/// Lists the foreign keys from or to the tables.
async fn load_foreign_keys(
    client: &Client,
    catalog: &mut Catalog,
    oids: &[u32],
) -> Result<(), PgError> {
    let rows = client
        .query(
            "SELECT con.conname::text, n.nspname::text, c.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) \
                            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), \
                    rn.nspname::text, rc.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord) \
                            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord), \
                    con.confupdtype::text, con.confdeltype::text, con.condeferrable \
               FROM pg_constraint con \
               JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
              WHERE con.contype = 'f' AND con.conparentid = 0 \
                AND (con.conrelid = ANY($1) OR con.confrelid = ANY($1)) \
              ORDER BY 2, 3, 1",
            &[&oids],
        )
        .await
        .map_err(q("listing foreign keys"))?;
    for row in rows {
        catalog.foreign_keys.push(ForeignKey {
            name: row.get(0),
            table: TableName::new(row.get::<_, String>(1), row.get::<_, String>(2)),
            columns: row.get(3),
            references: TableName::new(row.get::<_, String>(4), row.get::<_, String>(5)),
            referenced_columns: row.get(6),
            on_update: row.get::<_, String>(7).chars().next().unwrap_or('a'),
            on_delete: row.get::<_, String>(8).chars().next().unwrap_or('a'),
            deferrable: row.get(9),
        });
    }
    Ok(())
}

/// Lists the sequences and the column each belongs to, if any.
async fn load_sequences(client: &Client, catalog: &mut Catalog) -> Result<(), PgError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, tn.nspname::text, tc.relname::text, a.attname::text \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
           LEFT JOIN pg_class tc ON tc.oid = d.refobjid \
           LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace \
           LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
          WHERE c.relkind = 'S' AND {USER_SCHEMAS} \
          ORDER BY 1, 2"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(q("listing sequences"))?;
    for row in rows {
        let owner_schema: Option<String> = row.get(2);
        let owner_table: Option<String> = row.get(3);
        let owner_column: Option<String> = row.get(4);
        catalog.sequences.push(Sequence {
            name: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            owned_by: match (owner_schema, owner_table, owner_column) {
                (Some(s), Some(t), Some(c)) => Some((TableName::new(s, t), c)),
                _ => None,
            },
        });
    }
    Ok(())
}

/// Lists pgduplex's own triggers that are not `ENABLE ALWAYS`.
async fn load_capture_triggers_not_always(
    client: &Client,
    catalog: &mut Catalog,
) -> Result<(), PgError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, t.tgname::text, t.tgenabled::text \
               FROM pg_trigger t \
               JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace \
              WHERE pn.nspname = $1 AND t.tgenabled <> 'A' AND NOT t.tgisinternal \
              ORDER BY 1, 2, 3",
            &[&SCHEMA],
        )
        .await
        .map_err(q("listing pgduplex's triggers"))?;
    for row in rows {
        catalog.capture_triggers_not_always.push((
            TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            row.get(2),
            row.get::<_, String>(3).chars().next().unwrap_or('O'),
        ));
    }
    Ok(())
}

/// Lists the partitions of captured tables that lack the TRUNCATE capture trigger.
async fn load_partitions_without_truncate_capture(
    client: &Client,
    catalog: &mut Catalog,
) -> Result<(), PgError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relispartition \
                AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = pg_partition_root(c.oid) \
                             AND t.tgname = 'pgduplex_truncate') \
                AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid \
                                 AND t.tgname = 'pgduplex_truncate') \
              ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(q("listing partitions without TRUNCATE capture"))?;
    for row in rows {
        catalog
            .partitions_without_truncate_capture
            .push(TableName::new(
                row.get::<_, String>(0),
                row.get::<_, String>(1),
            ));
    }
    Ok(())
}

/// Foreign-key order of `tables`: parents before children, over the edges between
/// the given tables (self-references ignored). Tables in a cycle come last, in name
/// order, and are returned in the second vector.
pub fn foreign_key_order(
    tables: &[TableName],
    fks: &[ForeignKey],
) -> (Vec<TableName>, Vec<TableName>) {
    let mut parents: BTreeMap<&TableName, Vec<&TableName>> =
        tables.iter().map(|t| (t, Vec::new())).collect();
    for fk in fks {
        if fk.table != fk.references && parents.contains_key(&fk.references) {
            if let Some(p) = parents.get_mut(&fk.table) {
                p.push(&fk.references);
            }
        }
    }
    let mut done: Vec<TableName> = Vec::new();
    let mut remaining: Vec<&TableName> = parents.keys().copied().collect();
    loop {
        let before = remaining.len();
        remaining.retain(|t| {
            if parents[t].iter().all(|p| done.contains(p)) {
                done.push((*t).clone());
                false
            } else {
                true
            }
        });
        if remaining.is_empty() || remaining.len() == before {
            break;
        }
    }
    (done, remaining.into_iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, generated: bool) -> Column {
        Column {
            name: name.into(),
            type_name: ty.into(),
            not_null: false,
            generated,
            identity: None,
        }
    }

    #[test]
    fn column_diff_finds_every_kind_of_difference_in_any_order() {
        let left = [
            col("id", "bigint", false),
            col("amount", "numeric(10,2)", false),
            col("total", "numeric", true),
            col("note", "text", false),
        ];
        let right = [
            col("extra", "text", false),
            col("total", "numeric", false),
            col("amount", "numeric(12,2)", false),
            col("id", "bigint", false),
        ];
        let diffs: Vec<String> = column_diff(&left, &right)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            diffs,
            [
                "column amount is numeric(10,2) on the left but numeric(12,2) on the right",
                "column total is generated on one side only",
                "column note only on the left",
                "column extra only on the right",
            ]
        );
        // Same columns in another order: no difference.
        let mut shuffled = left.to_vec();
        shuffled.reverse();
        assert!(column_diff(&left, &shuffled).is_empty());
        assert!(column_diff(&[], &[]).is_empty());
    }

    fn fk(table: &str, references: &str) -> ForeignKey {
        ForeignKey {
            name: format!("{table}_fk"),
            table: TableName::new("public", table),
            columns: vec!["p".into()],
            references: TableName::new("public", references),
            referenced_columns: vec!["id".into()],
            on_update: 'a',
            on_delete: 'a',
            deferrable: false,
        }
    }

    fn names(v: &[&str]) -> Vec<TableName> {
        v.iter().map(|n| TableName::new("public", *n)).collect()
    }

    #[test]
    fn foreign_key_order_puts_parents_first_and_cycles_last() {
        let tables = names(&["line", "order", "customer", "a", "b", "tree", "lonely"]);
        let fks = [
            fk("line", "order"),
            fk("order", "customer"),
            fk("a", "b"),
            fk("b", "a"),
            fk("tree", "tree"),
            // A reference to a table that is not replicated is no edge.
            fk("lonely", "elsewhere"),
        ];
        let (ordered, cyclic) = foreign_key_order(&tables, &fks);
        let pos = |n: &str| ordered.iter().position(|t| t.name == n).unwrap();
        assert!(pos("customer") < pos("order") && pos("order") < pos("line"));
        // A self-reference is no cycle.
        assert!(ordered.iter().any(|t| t.name == "tree"));
        assert!(ordered.iter().any(|t| t.name == "lonely"));
        assert_eq!(cyclic, names(&["a", "b"]));
        assert_eq!(ordered.len() + cyclic.len(), tables.len());
    }
}
