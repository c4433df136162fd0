//! Install and uninstall of everything pgduplex puts into one database.
//!
//! Install is idempotent and resumable: the base objects are created once (their
//! version is recorded in `pgduplex.meta`), then each table is handled in its own
//! short transaction with a `lock_timeout` (see [`crate::ddl`]), and a table whose
//! capture is already current (same generated DDL, triggers present and `ENABLE
//! ALWAYS`) is not touched at all, so a second run changes nothing. A run that was
//! killed half way leaves some tables done and the rest to the next run.
//!
//! Uninstall finds pgduplex's objects in the catalogs, not only in its own records,
//! so it also cleans a half-finished install: first every trigger whose function
//! lives in schema `pgduplex` (each with the same lock discipline), then the schema.
//! It refuses, before dropping anything, when a user's object depends on something
//! in that schema, so that `DROP SCHEMA ... CASCADE` can never take user objects
//! with it.

use tokio_postgres::Client;

use crate::capture::{CaptureKind, CaptureSpec, CAPTURE_TRIGGER, TRUNCATE_TRIGGER};
use crate::catalog::Table;
use crate::catalog::TableKind;
use crate::ddl::{run_with_lock_retry, Bound, LockRetry};
use crate::ident::{quote_ident, TableName};
use crate::PgError;

/// The base objects' script, run in one transaction.
pub const SCHEMA_SQL: &str = include_str!("../../../sql/schema.sql");
/// The version `SCHEMA_SQL` installs (recorded in `pgduplex.meta`).
pub const SCHEMA_VERSION: i32 = 4;

/// What an install did on one side.
#[derive(Clone, Debug, Default)]
pub struct InstallOutcome {
    pub schema_created: bool,
    /// Tables whose capture was created or regenerated.
    pub installed: Vec<TableName>,
    /// Tables whose capture was already current.
    pub unchanged: Vec<TableName>,
    /// Tables still captured from an earlier install but no longer selected.
    pub no_longer_selected: Vec<TableName>,
}

/// A table as recorded in `pgduplex.replicated_table`.
#[derive(Clone, Debug)]
pub struct InstalledTable {
    pub id: i32,
    pub sync: String,
    pub table: TableName,
    pub key_columns: Vec<String>,
    pub definition_hash: String,
}

fn q(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    move |source| PgError::Query { context, source }
}

/// The installed schema version, or `None` when pgduplex is not installed.
pub async fn schema_version(client: &Client) -> Result<Option<i32>, PgError> {
    let row = client
        .query_one("SELECT to_regclass('pgduplex.meta') IS NOT NULL", &[])
        .await
        .map_err(q("looking for schema pgduplex"))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT value::int FROM pgduplex.meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(q("reading pgduplex.meta"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The tables recorded as captured (empty when pgduplex is not installed).
pub async fn installed_tables(client: &Client) -> Result<Vec<InstalledTable>, PgError> {
    let row = client
        .query_one(
            "SELECT to_regclass('pgduplex.replicated_table') IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("looking for pgduplex.replicated_table"))?;
    if !row.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT id, sync, table_schema, table_name, key_columns, definition_hash \
               FROM pgduplex.replicated_table ORDER BY table_schema, table_name",
            &[],
        )
        .await
        .map_err(q("reading pgduplex.replicated_table"))?;
    Ok(rows
        .into_iter()
        .map(|r| InstalledTable {
            id: r.get(0),
            sync: r.get(1),
            table: TableName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
            key_columns: r.get(4),
            definition_hash: r.get(5),
        })
        .collect())
}

/// Installs (or completes, or updates) the capture of `tables` on the database of
/// `client`, for sync `sync`. Every table must have a key.
pub async fn install(
    client: &mut Client,
    sync: &str,
    tables: &[&Table],
    retry: &LockRetry,
) -> Result<InstallOutcome, PgError> {
    let apply_role = prepare_session(client).await?;
    let schema_created = install_schema(client).await?;
    let mut outcome = InstallOutcome {
        schema_created,
        ..InstallOutcome::default()
    };
    let recorded = installed_tables(client).await?;
    for table in tables {
        install_table(
            client,
            sync,
            table,
            &recorded,
            &apply_role,
            retry,
            &mut outcome,
        )
        .await?;
    }
    for r in recorded {
        if !tables.iter().any(|t| t.name == r.table) {
            outcome.no_longer_selected.push(r.table);
        }
    }
    Ok(outcome)
}

/// Sets the search path; returns the session user, the role the apply runs as.
async fn prepare_session(client: &Client) -> Result<String, PgError> {
    client
        .batch_execute("SET search_path = pg_catalog, pg_temp")
        .await
        .map_err(q("setting the search path"))?;
    let apply_role: String = client
        .query_one("SELECT session_user::text", &[])
        .await
        .map_err(q("reading the session user"))?
        .get(0);
    Ok(apply_role)
}

/// Creates the base objects when they are missing or older; true when it ran
/// `SCHEMA_SQL`. Refuses a schema from a newer pgduplex.
async fn install_schema(client: &mut Client) -> Result<bool, PgError> {
    match schema_version(client).await? {
        Some(v) if v == SCHEMA_VERSION => Ok(false),
        Some(v) if v > SCHEMA_VERSION => Err(PgError::NewerSchema {
            found: v,
            known: SCHEMA_VERSION,
        }),
        _ => {
            // Touches no user table: no lock discipline needed, but keep one
            // transaction so a failure leaves nothing half made.
            let tx = client
                .transaction()
                .await
                .map_err(q("starting the install"))?;
            tx.batch_execute(SCHEMA_SQL)
                .await
                .map_err(|source| PgError::Ddl {
                    object: "schema pgduplex".into(),
                    source,
                })?;
            tx.commit().await.map_err(q("committing schema pgduplex"))?;
            Ok(true)
        }
    }
}

/// Installs or updates the capture of one table (or leaves it alone when it is
/// current), recording the result in `outcome`.
async fn install_table(
    client: &mut Client,
    sync: &str,
    table: &Table,
    recorded: &[InstalledTable],
    apply_role: &str,
    retry: &LockRetry,
    outcome: &mut InstallOutcome,
) -> Result<(), PgError> {
    let existing = recorded.iter().find(|r| r.table == table.name);
    let spec = capture_spec(client, sync, table, existing, apply_role).await?;
    let hash = spec.definition_hash();
    if existing.is_some_and(|r| r.definition_hash == hash)
        && capture_is_current(client, &spec, table).await?
    {
        outcome.unchanged.push(table.name.clone());
        return Ok(());
    }
    let mut statements = Vec::new();
    statements.extend(stale_delta_table_drop(client, table, &spec, existing, &hash).await?);
    statements.extend(capture_statements(&spec, table));
    let names: Vec<&str> = spec.key.iter().map(|(n, _)| n.as_str()).collect();
    let types: Vec<&str> = spec.key.iter().map(|(_, t)| t.as_str()).collect();
    let record = Bound {
        sql: "UPDATE pgduplex.replicated_table SET definition_hash = $1, key_columns = $2, key_types = $3, \
              apply_role = $4, sync = $5, installed_at = pg_catalog.now() WHERE id = $6",
        params: &[&hash, &names, &types, &apply_role, &sync, &spec.id],
    };
    run_with_lock_retry(
        client,
        retry,
        &format!("table {}", table.name),
        &statements,
        Some(&record),
    )
    .await?;
    tracing::info!(table = %table.name, "capture installed");
    outcome.installed.push(table.name.clone());
    Ok(())
}

/// The capture spec of one table, recording the table first when it is new.
/// Refuses a table that another sync already captures.
async fn capture_spec(
    client: &Client,
    sync: &str,
    table: &Table,
    existing: Option<&InstalledTable>,
    apply_role: &str,
) -> Result<CaptureSpec, PgError> {
    let key = table
        .key
        .as_ref()
        .expect("install is given only tables with a key");
    if let Some(r) = existing {
        if r.sync != sync {
            return Err(PgError::OtherSync {
                table: table.name.clone(),
                sync: sync.to_string(),
                other: r.sync.clone(),
            });
        }
    }
    let key_cols: Vec<(String, String)> = key
        .columns
        .iter()
        .map(|c| {
            let col = table
                .column(c)
                .expect("key columns are columns of the table");
            (c.clone(), col.type_name.clone())
        })
        .collect();
    let id = match existing {
        Some(r) => r.id,
        None => {
            // Recorded first (with no hash, so it counts as not current): the id
            // names the delta table and function created next.
            let names: Vec<&str> = key_cols.iter().map(|(n, _)| n.as_str()).collect();
            let types: Vec<&str> = key_cols.iter().map(|(_, t)| t.as_str()).collect();
            client
                .query_one(
                    "INSERT INTO pgduplex.replicated_table \
                       (sync, table_schema, table_name, key_columns, key_types, apply_role, definition_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, '') RETURNING id",
                    &[&sync, &table.name.schema, &table.name.name, &names, &types, &apply_role],
                )
                .await
                .map_err(q("recording a replicated table"))?
                .get(0)
        }
    };
    Ok(CaptureSpec {
        id,
        table: table.name.clone(),
        kind: if table.kind == TableKind::Partitioned {
            CaptureKind::Row
        } else {
            CaptureKind::Statement
        },
        key: key_cols,
        apply_role: apply_role.to_string(),
    })
}

/// When the generated DDL changed: the `DROP` of the delta table if it is empty;
/// an error if it still holds changes and the key changed.
async fn stale_delta_table_drop(
    client: &Client,
    table: &Table,
    spec: &CaptureSpec,
    existing: Option<&InstalledTable>,
    hash: &str,
) -> Result<Option<String>, PgError> {
    let mut drop = None;
    if existing.is_some_and(|r| !r.definition_hash.is_empty() && r.definition_hash != hash) {
        // The generated DDL changed (new key, new apply role or a newer
        // pgduplex). The delta table's columns may have to change: only an
        // empty one may be replaced.
        let delta = spec.delta_table();
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&delta.quoted()])
            .await
            .map_err(q("looking for a delta table"))?
            .get(0);
        let pending: i64 = if exists {
            client
                .query_one(&format!("SELECT count(*) FROM {}", delta.quoted()), &[])
                .await
                .map_err(q("counting pending changes"))?
                .get(0)
        } else {
            0
        };
        if pending > 0 {
            let old_keys = existing.map(|r| r.key_columns.clone()).unwrap_or_default();
            let new_keys: Vec<String> = spec.key.iter().map(|(n, _)| n.clone()).collect();
            if old_keys != new_keys {
                return Err(PgError::KeyChangedWithPending {
                    table: table.name.clone(),
                    pending,
                });
            }
        } else {
            drop = Some(format!("DROP TABLE IF EXISTS {}", delta.quoted()));
        }
    }
    Ok(drop)
}

/// The statements that create the delta table, function and triggers of one table.
fn capture_statements(spec: &CaptureSpec, table: &Table) -> Vec<String> {
    let mut statements = Vec::new();
    statements.push(spec.create_delta_table());
    statements.push(format!(
        "REVOKE ALL ON TABLE {} FROM PUBLIC",
        spec.delta_table().quoted()
    ));
    statements.push(spec.create_function());
    statements.push(spec.revoke_function());
    statements.extend(spec.create_capture_triggers());
    // Clones of the row trigger on partitions follow the parent's ENABLE ALWAYS
    // from PostgreSQL 15 on; say it explicitly for older servers.
    for p in &table.partitions {
        statements.push(format!(
            "ALTER TABLE {} ENABLE ALWAYS TRIGGER {}",
            p.quoted(),
            quote_ident(CAPTURE_TRIGGER)
        ));
    }
    statements.extend(spec.create_truncate_trigger(&table.name));
    for p in &table.partitions {
        statements.extend(spec.create_truncate_trigger(p));
    }
    statements
}

/// True when the table's triggers, function and delta table are all in place and
/// the triggers are `ENABLE ALWAYS`.
async fn capture_is_current(
    client: &Client,
    spec: &CaptureSpec,
    table: &Table,
) -> Result<bool, PgError> {
    // Row triggers are on the table and (cloned) on every partition; statement
    // triggers on the table only. TRUNCATE triggers on the table and every partition.
    let mut with_partitions = vec![table.oid];
    with_partitions.extend(table.partition_oids.iter().copied());
    let capture_rels = match spec.kind {
        CaptureKind::Row => with_partitions.clone(),
        CaptureKind::Statement => vec![table.oid],
    };
    let wanted: Vec<&str> = spec.kind.triggers();
    let unwanted: Vec<&str> = crate::capture::all_capture_triggers()
        .into_iter()
        .filter(|t| !wanted.contains(t))
        .collect();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM unnest($1::oid[]) r(oid), unnest($2::text[]) w(name) WHERE NOT EXISTS \
                       (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = r.oid AND t.tgname = w.name \
                           AND t.tgenabled = 'A' AND t.tgfoid = to_regprocedure($4))) = 0 \
                AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = $6 AND t.tgname = ANY($7)) \
                AND (SELECT count(*) FROM unnest($5::oid[]) r(oid) WHERE NOT EXISTS \
                       (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = r.oid AND t.tgname = $3 \
                           AND t.tgenabled = 'A')) = 0 \
                AND to_regclass($8) IS NOT NULL",
            &[
                &capture_rels,
                &wanted,
                &TRUNCATE_TRIGGER,
                &format!("{}()", spec.function().quoted()),
                &with_partitions,
                &table.oid,
                &unwanted,
                &spec.delta_table().quoted(),
            ],
        )
        .await
        .map_err(q("checking the installed triggers"))?;
    Ok(row.get(0))
}

/// What an uninstall did on one side.
#[derive(Clone, Debug, Default)]
pub struct UninstallOutcome {
    pub triggers_dropped: usize,
    pub schema_dropped: bool,
}

/// Removes every object pgduplex created in this database. Never touches user data.
pub async fn uninstall(
    client: &mut Client,
    retry: &LockRetry,
) -> Result<UninstallOutcome, PgError> {
    let mut outcome = UninstallOutcome::default();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, t.tgname::text \
               FROM pg_trigger t \
               JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace \
              WHERE pn.nspname = 'pgduplex' AND t.tgparentid = 0 AND NOT t.tgisinternal \
                AND n.nspname <> 'pgduplex' \
              ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(q("listing pgduplex's triggers"))?;
    let triggers: Vec<(TableName, String)> = rows
        .iter()
        .map(|r| {
            (
                TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                r.get(2),
            )
        })
        .collect();
    // A user object depending on ours (other than the triggers we are about to
    // drop) would be dropped by the CASCADE below: refuse before changing anything.
    let mut ours = crate::capture::all_capture_triggers();
    ours.push(TRUNCATE_TRIGGER);
    let rows = client
        .query(
            "WITH ours AS ( \
                 SELECT 'pg_class'::regclass AS classid, c.oid AS objid FROM pg_class c \
                  WHERE c.relnamespace = 'pgduplex'::regnamespace \
                 UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p \
                  WHERE p.pronamespace = 'pgduplex'::regnamespace \
                 UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t \
                  WHERE t.typnamespace = 'pgduplex'::regnamespace) \
             SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) \
               FROM pg_depend d JOIN ours o ON d.refclassid = o.classid AND d.refobjid = o.objid \
              WHERE d.deptype = 'n' \
                AND COALESCE(CASE d.classid \
                     WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = d.objid) \
                     WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a \
                          JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = d.objid) \
                     WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = d.objid) \
                     WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger t \
                          JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = d.objid) \
                     WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite r \
                          JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid) \
                     WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objid) \
                     WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.objid) \
                     END, 0) <> 'pgduplex'::regnamespace \
                AND NOT (d.classid = 'pg_trigger'::regclass AND EXISTS ( \
                     SELECT 1 FROM pg_trigger t WHERE t.oid = d.objid AND t.tgname = ANY($1))) \
              ORDER BY 1",
            &[&ours],
        )
        .await;
    match rows {
        Ok(rows) if !rows.is_empty() => {
            let objects: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            return Err(PgError::ExternalDependents {
                objects: objects.join(", "),
            });
        }
        Ok(_) => {}
        // 'pgduplex'::regnamespace fails when the schema does not exist: nothing
        // can depend on it then.
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_SCHEMA) => {}
        Err(source) => {
            return Err(PgError::Query {
                context: "looking for objects that depend on schema pgduplex",
                source,
            })
        }
    }
    for (table, trigger) in &triggers {
        let sql = format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            quote_ident(trigger),
            table.quoted()
        );
        run_with_lock_retry(
            client,
            retry,
            &format!("trigger {trigger} on {table}"),
            &[sql],
            None,
        )
        .await?;
        outcome.triggers_dropped += 1;
    }
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgduplex')",
            &[],
        )
        .await
        .map_err(q("looking for schema pgduplex"))?
        .get(0);
    if exists {
        run_with_lock_retry(
            client,
            retry,
            "schema pgduplex",
            &["DROP SCHEMA pgduplex CASCADE".to_string()],
            None,
        )
        .await?;
        outcome.schema_dropped = true;
    }
    Ok(outcome)
}
