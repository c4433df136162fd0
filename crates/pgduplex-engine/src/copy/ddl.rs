//! The target around the rows: before them, the tables that cannot be emptied
//! in their copy transaction emptied up front (`--mode truncate`) and what the
//! copy drops to go faster (secondary indexes with `--defer-indexes`, foreign
//! keys with `--fk drop-readd`); after them, what was dropped put back, and
//! ANALYZE.
//!
//! A definition is saved in `pgduplex.copy_saved_ddl` in the same transaction that
//! drops the object, and deleted in the transaction that has put it back (for a
//! foreign key: the one that validated it). A copy killed anywhere in between finds
//! the saved rows on its next run and restores them.

use std::sync::{Arc, Mutex};

use pgduplex_config::{Config, FkStrategy, Side};
use pgduplex_pg::capture::APPLYING_SETTING;
use pgduplex_pg::catalog::KeySource;
use pgduplex_pg::ddl::{run_with_lock_retry, Bound, LockRetry};
use pgduplex_pg::store;
use pgduplex_pg::{quote_ident, Endpoint, TableName};
use tokio_postgres::Client;

use super::plan::TableJob;
use super::{connect, db, names, CopyError, CopyOptions};
use crate::setup;

/// A definition dropped for the copy and saved on the target.
pub use pgduplex_pg::store::SavedDdl as Saved;

/// Secondary indexes of `oids` (ordinary tables): not the key's, not backing or
/// referenced by a constraint, not the replica identity, not `key_indexes`.
pub async fn secondary_indexes(
    client: &Client,
    side: Side,
    oids: &[u32],
    key_indexes: &[String],
) -> Result<Vec<Saved>, CopyError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, ic.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid) \
               FROM pg_catalog.pg_index i \
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
               JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE i.indrelid = ANY($1) AND c.relkind = 'r' AND NOT c.relispartition AND ic.relkind = 'i' \
                AND NOT i.indisprimary AND NOT i.indisreplident \
                AND NOT (ic.relname = ANY($2)) \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = i.indexrelid) \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                                 AND d.refobjid = i.indexrelid AND d.deptype <> 'a' AND d.classid <> 'pg_catalog.pg_class'::pg_catalog.regclass) \
              ORDER BY 1, 2, 3",
            &[&oids, &key_indexes],
        )
        .await
        .map_err(db(side, "listing secondary indexes"))?;
    Ok(rows
        .iter()
        .map(|r| Saved {
            kind: "index".into(),
            table: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            name: r.get(2),
            definition: r.get(3),
        })
        .collect())
}

/// Foreign keys that reference or belong to `oids`.
pub async fn foreign_keys(
    client: &Client,
    side: Side,
    oids: &[u32],
) -> Result<Vec<Saved>, CopyError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, con.conname::text, pg_catalog.pg_get_constraintdef(con.oid) \
               FROM pg_catalog.pg_constraint con \
               JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE con.contype = 'f' AND con.conparentid = 0 \
                AND (con.conrelid = ANY($1) OR con.confrelid = ANY($1)) \
              ORDER BY 1, 2, 3",
            &[&oids],
        )
        .await
        .map_err(db(side, "listing foreign keys"))?;
    Ok(rows
        .iter()
        .map(|r| Saved {
            kind: "foreign_key".into(),
            table: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            name: r.get(2),
            definition: r.get(3),
        })
        .collect())
}

/// Saves each definition and drops the object, one short transaction each (with
/// the install's lock discipline).
pub async fn save_and_drop(
    client: &mut Client,
    side: Side,
    sync: &str,
    retry: &LockRetry,
    items: &[Saved],
) -> Result<(), CopyError> {
    for s in items {
        let drop = if s.kind == "index" {
            format!(
                "DROP INDEX {}",
                TableName::new(s.table.schema.clone(), s.name.clone()).quoted()
            )
        } else {
            format!(
                "ALTER TABLE {} DROP CONSTRAINT {}",
                s.table.quoted(),
                quote_ident(&s.name)
            )
        };
        let params = store::save_ddl_params(&sync, s);
        let record = Bound {
            sql: store::SAVE_DDL_SQL,
            params: &params,
        };
        run_with_lock_retry(
            client,
            retry,
            &format!("{} {} on {}", s.kind, s.name, s.table),
            &[drop],
            Some(&record),
        )
        .await
        .map_err(|source| CopyError::Pg { side, source })?;
        tracing::info!(table = %s.table, name = %s.name, kind = %s.kind, "dropped for the copy; definition saved on the target");
    }
    Ok(())
}

/// The definitions saved by this or an earlier (killed) copy.
pub async fn saved(client: &Client, side: Side, sync: &str) -> Result<Vec<Saved>, CopyError> {
    store::saved_ddl(client, sync)
        .await
        .map_err(db(side, "reading saved definitions"))
}

async fn forget(client: &Client, side: Side, sync: &str, s: &Saved) -> Result<(), CopyError> {
    store::forget_saved_ddl(client, sync, s)
        .await
        .map_err(db(side, "forgetting a restored definition"))
}

/// Rebuilds one saved index (unless it exists again) and forgets it, in one
/// transaction.
async fn restore_index(
    client: &mut Client,
    side: Side,
    sync: &str,
    s: &Saved,
) -> Result<(), CopyError> {
    let tx = client
        .transaction()
        .await
        .map_err(db(side, "starting an index rebuild"))?;
    let exists: bool = tx
        .query_one(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[&TableName::new(s.table.schema.clone(), s.name.clone()).quoted()],
        )
        .await
        .map_err(db(side, "looking for an index"))?
        .get(0);
    if !exists {
        // The server's own deparse of the index (pg_get_indexdef), names qualified.
        tx.batch_execute(&s.definition)
            .await
            .map_err(|source| CopyError::Restore {
                what: format!("index {} on {}", s.name, s.table),
                source,
            })?;
    }
    store::forget_saved_ddl(&tx, sync, s)
        .await
        .map_err(db(side, "forgetting a rebuilt index"))?;
    tx.commit()
        .await
        .map_err(db(side, "committing an index rebuild"))?;
    tracing::info!(table = %s.table, index = %s.name, "index rebuilt");
    Ok(())
}

/// Adds one saved foreign key back `NOT VALID` (unless it exists again), then
/// validates it and forgets it.
async fn restore_foreign_key(
    client: &Client,
    side: Side,
    sync: &str,
    s: &Saved,
) -> Result<(), CopyError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass($1) AND conname = $2)",
            &[&s.table.quoted(), &s.name],
        )
        .await
        .map_err(db(side, "looking for a foreign key"))?
        .get(0);
    let was_not_valid = s.definition.ends_with("NOT VALID");
    let what = format!("foreign key {} on {}", s.name, s.table);
    if !exists {
        let def = if was_not_valid {
            s.definition.clone()
        } else {
            format!("{} NOT VALID", s.definition)
        };
        client
            .batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {def}",
                s.table.quoted(),
                quote_ident(&s.name)
            ))
            .await
            .map_err(|source| CopyError::Restore {
                what: what.clone(),
                source,
            })?;
    }
    if !was_not_valid {
        client
            .batch_execute(&format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                s.table.quoted(),
                quote_ident(&s.name)
            ))
            .await
            .map_err(|source| CopyError::Restore { what, source })?;
    }
    forget(client, side, sync, s).await?;
    tracing::info!(table = %s.table, constraint = %s.name, "foreign key added back and validated");
    Ok(())
}

/// Restores everything saved for `sync`: indexes on up to `jobs` connections at
/// once, then the foreign keys (which may need those indexes).
pub async fn restore_all(
    endpoint: &Endpoint,
    side: Side,
    sync: &str,
    jobs: usize,
    session: &str,
) -> Result<usize, CopyError> {
    let client = connect(endpoint, side, session).await?;
    let all = saved(&client, side, sync).await?;
    if all.is_empty() {
        return Ok(0);
    }
    let (indexes, fks): (Vec<Saved>, Vec<Saved>) =
        all.iter().cloned().partition(|s| s.kind == "index");
    let queue = Arc::new(Mutex::new(indexes));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1) {
        let queue = queue.clone();
        let endpoint = endpoint.clone();
        let sync = sync.to_string();
        let session = session.to_string();
        tasks.spawn(async move {
            let mut client: Option<Client> = None;
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(s) = next else { return Ok(()) };
                if client.is_none() {
                    client = Some(connect(&endpoint, side, &session).await?);
                }
                let c = client.as_mut().expect("connected above");
                restore_index(c, side, &sync, &s).await?;
            }
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap_or_else(|e| Err(CopyError::from(e)));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    for s in &fks {
        restore_foreign_key(&client, side, sync, s).await?;
    }
    Ok(all.len())
}

/// Steps 5 and 6, on one target connection: in truncate mode the tables that
/// cannot be emptied inside their copy transaction are emptied now, together
/// (foreign keys between them allow that only all at once); then what the copy
/// drops to go faster (`--defer-indexes`, `--fk drop-readd`) is saved and
/// dropped.
pub(super) async fn prepare_target(
    config: &Config,
    options: &CopyOptions,
    strategy: FkStrategy,
    jobs: &[TableJob],
    endpoint: &Endpoint,
    extra: &str,
) -> Result<(), CopyError> {
    let side = options.from.other();
    let sync = config.replication.sync.as_str();
    let retry = setup::lock_retry(config);
    let up_front: Vec<TableName> = jobs
        .iter()
        .filter(|j| j.truncated_up_front && j.remaining > 0)
        .map(|j| j.target.name.clone())
        .collect();
    let mut client = connect(endpoint, side, extra).await?;
    if !up_front.is_empty() {
        let list = up_front
            .iter()
            .map(|n| n.quoted())
            .collect::<Vec<_>>()
            .join(", ");
        let tx = client
            .transaction()
            .await
            .map_err(db(side, "emptying the target tables"))?;
        tx.batch_execute(&format!(
            "SET LOCAL {APPLYING_SETTING} = on; TRUNCATE {list}"
        ))
        .await
        .map_err(db(side, "emptying the target tables (TRUNCATE)"))?;
        tx.commit()
            .await
            .map_err(db(side, "emptying the target tables"))?;
        tracing::info!(tables = %names(&up_front), "target tables emptied (--mode truncate)");
    }
    let pending_oids: Vec<u32> = jobs
        .iter()
        .filter(|j| j.remaining > 0)
        .map(|j| j.target.oid)
        .collect();
    if options.defer_indexes && !pending_oids.is_empty() {
        let key_indexes: Vec<String> = jobs
            .iter()
            .filter_map(|j| match &j.target.key.as_ref()?.source {
                KeySource::PrimaryKey(n) | KeySource::UniqueIndex(n) => Some(n.clone()),
            })
            .collect();
        let items = secondary_indexes(&client, side, &pending_oids, &key_indexes).await?;
        save_and_drop(&mut client, side, sync, &retry, &items).await?;
    }
    if strategy == FkStrategy::DropReadd && !pending_oids.is_empty() {
        let items = foreign_keys(&client, side, &pending_oids).await?;
        save_and_drop(&mut client, side, sync, &retry, &items).await?;
    }
    Ok(())
}

/// ANALYZE of the copied tables, on up to `jobs` connections.
pub(super) async fn analyze(
    endpoint: &Endpoint,
    side: Side,
    tables: &[TableName],
    jobs: usize,
) -> Result<(), CopyError> {
    let queue = Arc::new(Mutex::new(tables.to_vec()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..jobs.max(1).min(tables.len()) {
        let queue = queue.clone();
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            let client = connect(&endpoint, side, "").await?;
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(t) = next else { return Ok(()) };
                client
                    .batch_execute(&format!("ANALYZE {}", t.quoted()))
                    .await
                    .map_err(db(side, "analysing a copied table"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap_or_else(|e| Err(CopyError::from(e)))?;
    }
    Ok(())
}
