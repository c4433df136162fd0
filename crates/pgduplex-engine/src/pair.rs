//! The two sides of a pair: endpoints, connections and catalogs, read
//! concurrently, and whether each side's role may set
//! `session_replication_role = replica` (probed in a rolled-back transaction).

use pgduplex_config::{Config, Side};
use pgduplex_pg::catalog::{self, Catalog};
use pgduplex_pg::{Endpoint, PgError};
use tokio_postgres::Client;

use crate::EngineError;

/// One connected side with its catalog.
pub struct SideState {
    pub side: Side,
    pub endpoint: Endpoint,
    pub client: Client,
    pub catalog: Catalog,
    /// The role may `SET session_replication_role = replica`: user triggers and
    /// foreign-key actions then do not fire during apply.
    pub can_use_replica_role: bool,
}

/// Builds both endpoints (TLS files are read here; nothing touches the network).
pub fn endpoints(config: &Config) -> Result<[Endpoint; 2], EngineError> {
    let make = |side: Side| {
        Endpoint::new(side.to_string(), &config.side(side).connection)
            .map_err(EngineError::side(side))
    };
    Ok([make(Side::Left)?, make(Side::Right)?])
}

/// Connects to one side and reads its catalog.
pub async fn open_side(side: Side, endpoint: Endpoint) -> Result<SideState, EngineError> {
    let client = endpoint.connect().await.map_err(EngineError::side(side))?;
    let catalog = catalog::load(&client)
        .await
        .map_err(EngineError::side(side))?;
    let can_use_replica_role = probe_replica_role(&client)
        .await
        .map_err(EngineError::side(side))?;
    Ok(SideState {
        side,
        endpoint,
        client,
        catalog,
        can_use_replica_role,
    })
}

/// Tries `SET LOCAL session_replication_role = replica` in a transaction that is
/// rolled back: the only exact test (superuser, or PostgreSQL 15's
/// `GRANT SET ON PARAMETER`, or a managed service's own rules).
async fn probe_replica_role(client: &Client) -> Result<bool, PgError> {
    let err = |source| PgError::Query {
        context: "probing session_replication_role",
        source,
    };
    client.batch_execute("BEGIN").await.map_err(err)?;
    let ok = client
        .batch_execute("SET LOCAL session_replication_role = replica")
        .await
        .is_ok();
    client.batch_execute("ROLLBACK").await.map_err(err)?;
    Ok(ok)
}

/// Connects to both sides at once. Each side's result is kept separately so that
/// `check` can report both failures, not only the first.
pub async fn open_both(
    config: &Config,
) -> Result<[Result<SideState, EngineError>; 2], EngineError> {
    let [left, right] = endpoints(config)?;
    let (l, r) = tokio::join!(open_side(Side::Left, left), open_side(Side::Right, right));
    Ok([l, r])
}
