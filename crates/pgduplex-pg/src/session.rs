//! What every pgduplex session on one database shares: the pinned session
//! settings, the pair's advisory lock (the single writer), and the check that a
//! session writes as the role the capture was installed for (no echo).
//!
//! These were spelled out by the copy, the daemon, scan, sync and status each;
//! they live here once so that they cannot drift apart (issue 12).

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// Session settings of every connection that reads or writes rows: text forms of
/// values must not depend on either server's defaults (keys are compared as
/// text, rows travel as COPY text, scan hashes text).
pub const SESSION_SETTINGS: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres; \
     SET extra_float_digits = 3; SET bytea_output = hex; SET TimeZone = 'UTC'; \
     SET lc_monetary = 'C'; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0";

/// The search path of sessions that must not resolve a name another role could
/// plant: `pg_temp` last, so a temporary object never shadows a catalog one.
pub const SEARCH_PATH: &str = "SET search_path = pg_catalog, pg_temp";

/// Pins [`SESSION_SETTINGS`], then runs `extra` (more `SET`s; may be empty).
pub async fn pin_settings(client: &Client, extra: &str) -> Result<(), tokio_postgres::Error> {
    if extra.is_empty() {
        client.batch_execute(SESSION_SETTINGS).await
    } else {
        client
            .batch_execute(&format!("{SESSION_SETTINGS}; {extra}"))
            .await
    }
}

/// Advisory lock "class" of pgduplex (ASCII "pgdx"): the first half of the
/// two-key advisory lock, the second half being [`lock_key`] of the sync.
pub const LOCK_CLASS: i32 = 0x7067_6478;

/// The second half of the pair's advisory lock: FNV-1a of the sync name, made
/// non-negative. It must never change between releases: two versions of
/// pgduplex running at once (a rolling update) must contend for one lock.
pub fn lock_key(sync: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in sync.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

/// Tries to take the pair's lock for `sync` on this session (held until the
/// session ends or it is released). False: another session holds it.
pub async fn try_lock_pair(client: &Client, sync: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int4, $2::pg_catalog.int4)",
            &[&LOCK_CLASS, &lock_key(sync)],
        )
        .await?
        .get(0))
}

/// The session that holds the pair's lock in this database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: i32,
    /// Empty when this role may not see it.
    pub application_name: String,
    /// `local` for a Unix socket or when this role may not see it.
    pub client_addr: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backend pid {} ({} from {})",
            self.pid, self.application_name, self.client_addr
        )
    }
}

/// Who holds the pair's lock for `sync` in the current database, if anyone.
pub async fn lock_holder(
    client: &Client,
    sync: &str,
) -> Result<Option<LockHolder>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT l.pid, COALESCE(a.application_name, ''), COALESCE(a.client_addr::pg_catalog.text, 'local') \
               FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
              WHERE l.locktype = 'advisory' AND l.granted \
                AND l.classid = $1::pg_catalog.int4::pg_catalog.oid AND l.objid = $2::pg_catalog.int4::pg_catalog.oid \
                AND l.objsubid = 2 \
                AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
              LIMIT 1",
            &[&LOCK_CLASS, &lock_key(sync)],
        )
        .await?;
    Ok(row.map(|r| LockHolder {
        pid: r.get(0),
        application_name: r.get(1),
        client_addr: r.get(2),
    }))
}

/// Whether this session may write for `sync` without its writes being captured
/// again: the capture triggers skip only the apply role recorded at install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyRole {
    /// pgduplex is not installed in this database: nothing captures the writes.
    NotInstalled,
    /// The session runs as the recorded apply role of every table of the sync
    /// (or the sync has no table here).
    Matches,
    /// A table of the sync was installed for another apply role.
    Other { installed: String, session: String },
    /// The session's role may not read schema pgduplex (so it is not the role
    /// that installed it).
    NoAccess { session: String },
}

impl ApplyRole {
    /// `(installed, session)` when this session must not write rows of the sync:
    /// they would be captured and sent back (echo).
    pub fn mismatch(self) -> Option<(String, String)> {
        match self {
            ApplyRole::NotInstalled | ApplyRole::Matches => None,
            ApplyRole::Other { installed, session } => Some((installed, session)),
            ApplyRole::NoAccess { session } => {
                Some(("the role that ran install".to_string(), session))
            }
        }
    }
}

/// Compares the session's role with the apply role recorded for `sync`'s tables.
pub async fn apply_role(client: &Client, sync: &str) -> Result<ApplyRole, tokio_postgres::Error> {
    let session: String = client
        .query_one("SELECT session_user::pg_catalog.text", &[])
        .await?
        .get(0);
    // Without USAGE on schema pgduplex, even looking its table up is refused.
    let installed = match client
        .query_one(
            "SELECT pg_catalog.to_regclass('pgduplex.replicated_table') IS NOT NULL",
            &[],
        )
        .await
    {
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Ok(ApplyRole::NoAccess { session })
        }
        r => r?.get::<_, bool>(0),
    };
    if !installed {
        return Ok(ApplyRole::NotInstalled);
    }
    let rows = match client
        .query(
            "SELECT DISTINCT apply_role::pg_catalog.text FROM pgduplex.replicated_table \
              WHERE sync = $1 ORDER BY 1",
            &[&sync],
        )
        .await
    {
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Ok(ApplyRole::NoAccess { session })
        }
        r => r?,
    };
    Ok(
        match rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .find(|r| *r != session)
        {
            Some(installed) => ApplyRole::Other { installed, session },
            None => ApplyRole::Matches,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair's lock must be the same in every release: a daemon of the next
    /// version started beside this one (a rolling update) must wait for it, not
    /// write too. If this test fails, the key changed: revert it.
    #[test]
    fn the_lock_key_never_changes() {
        assert_eq!(LOCK_CLASS, 1_885_824_120);
        // "main" is the default sync name.
        assert_eq!(lock_key("main"), 1_787_879_944);
        assert_eq!(lock_key("default"), 322_657_246);
        assert_eq!(lock_key(""), 0x011c_9dc5);
        assert_eq!(lock_key("shop"), 675_799_209);
    }
}
