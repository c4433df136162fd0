//! `pgduplex status`: what pgduplex is doing on each side, read from the
//! databases alone (the daemon need not run): the install, the pending changes and
//! the age of the oldest, the daemon holding the pair's lock and its lease, the
//! conflicts logged, and the initial copy into that side.

use pgduplex_config::{Config, Side};
use pgduplex_pg::install::schema_version;
use serde::Serialize;
use tokio_postgres::Client;

use crate::pair::endpoints;
use crate::EngineError;
use pgduplex_pg::capture::delta_table;
use pgduplex_pg::session;
use pgduplex_pg::store::{self, CopyState};

#[derive(Debug, Serialize)]
pub struct Status {
    pub sync: String,
    pub sides: Vec<SideStatus>,
}

#[derive(Debug, Default, Serialize)]
pub struct SideStatus {
    pub side: String,
    /// The connection, without its password.
    pub url: String,
    /// Why the side could not be read (unreachable, no permission...).
    pub error: Option<String>,
    pub installed: bool,
    pub schema_version: Option<i32>,
    pub tables: i64,
    /// Delta rows not yet applied to the other side.
    pub pending_changes: i64,
    pub pending_truncates: i64,
    /// Age of the oldest pending change, in seconds.
    pub oldest_pending_seconds: Option<f64>,
    pub daemon: Option<DaemonStatus>,
    pub conflicts: i64,
    pub last_conflict_at: Option<String>,
    /// The initial copy into this side, if one was started or settled.
    pub initial_copy: Option<CopyStatus>,
}

#[derive(Debug, Serialize)]
pub struct DaemonStatus {
    /// The server process of the session holding the pair's advisory lock.
    pub lock_held_by_pid: Option<i32>,
    /// The last daemon that took the lease: host, version, pid.
    pub lease_owner: String,
    pub lease_epoch: i64,
    pub lease_since: String,
}

#[derive(Debug, Serialize)]
pub struct CopyStatus {
    /// `copying`, `done` or `skipped`.
    pub state: CopyState,
    pub source: String,
    pub mode: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub parts_done: i64,
    pub parts_total: i64,
    pub rows_copied: i64,
}

/// Reads the status of both sides; a side that cannot be read says why.
pub async fn status(config: &Config) -> Result<Status, EngineError> {
    let [l, r] = endpoints(config)?;
    let sync = config.replication.sync.clone();
    let (ls, rs) = tokio::join!(
        side_status(Side::Left, l, &sync),
        side_status(Side::Right, r, &sync)
    );
    Ok(Status {
        sync,
        sides: vec![ls, rs],
    })
}

async fn side_status(side: Side, endpoint: pgduplex_pg::Endpoint, sync: &str) -> SideStatus {
    let mut st = SideStatus {
        side: side.to_string(),
        url: endpoint.redacted().to_string(),
        ..SideStatus::default()
    };
    let client = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(crate::error_chain(&e));
            return st;
        }
    };
    if let Err(e) = read_side(&client, sync, &mut st).await {
        st.error = Some(crate::error_chain(&e));
    }
    st
}

async fn read_side(
    c: &Client,
    sync: &str,
    st: &mut SideStatus,
) -> Result<(), tokio_postgres::Error> {
    // Not installed, or not readable by this role: shown as not installed.
    st.schema_version = schema_version(c).await.unwrap_or_default();
    st.installed = st.schema_version.is_some();
    if !st.installed {
        return Ok(());
    }
    let ids: Vec<i32> = c
        .query(
            "SELECT id FROM pgduplex.replicated_table WHERE sync = $1 ORDER BY id",
            &[&sync],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    st.tables = ids.len() as i64;
    if !ids.is_empty() {
        let parts = ids
            .iter()
            .map(|id| {
                format!(
                    "SELECT count(*) AS n, min(captured_at) AS m FROM {}",
                    delta_table(*id).quoted()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let row = c
            .query_one(
                &format!(
                    "SELECT coalesce(sum(n), 0)::int8, \
                            extract(epoch FROM pg_catalog.clock_timestamp() - min(m))::float8 FROM ({parts}) x"
                ),
                &[],
            )
            .await?;
        st.pending_changes = row.get(0);
        st.oldest_pending_seconds = row.get(1);
    }
    st.pending_truncates = store::pending_truncates(c).await?;
    let holder = session::lock_holder(c, sync).await?.map(|h| h.pid);
    if let Some(lease) = store::lease(c, sync).await? {
        st.daemon = Some(DaemonStatus {
            lock_held_by_pid: holder,
            lease_owner: lease.owner,
            lease_epoch: lease.epoch,
            lease_since: lease.acquired_at,
        });
    }
    (st.conflicts, st.last_conflict_at) = store::conflict_totals(c, sync).await?;
    if let Some(run) = store::copy_run(c, sync).await? {
        let totals = store::copy_totals(c, sync).await?;
        st.initial_copy = Some(CopyStatus {
            state: run.state,
            source: run.source,
            mode: run.mode,
            started_at: run.started_at,
            finished_at: run.finished_at,
            parts_done: totals.parts_done,
            parts_total: totals.parts_total,
            rows_copied: totals.rows_copied,
        });
    }
    Ok(())
}

impl Status {
    pub fn render_text(&self) -> String {
        let mut out = format!("sync {:?}\n", self.sync);
        for s in &self.sides {
            out.push_str(&format!("{}: {}\n", s.side, s.url));
            if let Some(e) = &s.error {
                out.push_str(&format!("  cannot be read: {e}\n"));
                continue;
            }
            if !s.installed {
                out.push_str("  pgduplex is not installed (run `pgduplex install` or `pgduplex replicate`)\n");
                continue;
            }
            out.push_str(&format!(
                "  installed: schema version {}, {} table(s) replicated\n",
                s.schema_version.unwrap_or_default(),
                s.tables
            ));
            let oldest = s
                .oldest_pending_seconds
                .map(|a| format!(", the oldest {a:.1} s ago"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  pending: {} change(s){oldest}, {} TRUNCATE(s)\n",
                s.pending_changes, s.pending_truncates
            ));
            match &s.daemon {
                Some(d) => out.push_str(&format!(
                    "  daemon: {} (lease: {}, epoch {}, since {})\n",
                    match d.lock_held_by_pid {
                        Some(pid) => format!("running, its session is server pid {pid}"),
                        None => "not running".to_string(),
                    },
                    d.lease_owner,
                    d.lease_epoch,
                    d.lease_since
                )),
                None => out.push_str("  daemon: has never run on this pair\n"),
            }
            out.push_str(&format!(
                "  conflicts: {} logged{}\n",
                s.conflicts,
                s.last_conflict_at
                    .as_ref()
                    .map(|t| format!(", the last at {t}"))
                    .unwrap_or_default()
            ));
            if let Some(cp) = &s.initial_copy {
                let detail = match cp.state {
                    CopyState::Skipped => "skipped: this side already held rows".to_string(),
                    CopyState::Done => format!(
                        "done at {} ({} part(s), {} row(s))",
                        cp.finished_at.as_deref().unwrap_or("?"),
                        cp.parts_total,
                        cp.rows_copied
                    ),
                    CopyState::Copying => format!(
                        "in progress since {}: {} of {} part(s) done, {} row(s)",
                        cp.started_at, cp.parts_done, cp.parts_total, cp.rows_copied
                    ),
                };
                out.push_str(&format!(
                    "  initial copy from the {}: {detail}\n",
                    cp.source
                ));
            }
        }
        out
    }
}
