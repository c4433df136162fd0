//! `install` and `uninstall` on both sides of the pair.

use pgduplex_config::{Config, Side};
use pgduplex_pg::catalog::Table;
use pgduplex_pg::ddl::LockRetry;
use pgduplex_pg::install::{self, InstallOutcome, UninstallOutcome};
use pgduplex_pg::Endpoint;
use tokio_postgres::Client;

use crate::check::{Analysis, CheckReport};
use crate::pair::endpoints;
use crate::EngineError;

/// Lock discipline for DDL on live tables, from `[install]`.
pub fn lock_retry(config: &Config) -> LockRetry {
    LockRetry {
        lock_timeout: config.install.lock_timeout,
        max_attempts: config.install.max_attempts,
        ..LockRetry::default()
    }
}

/// The result of `install` on the pair.
pub struct PairInstall {
    /// The analysis the install was decided on.
    pub report: CheckReport,
    pub left: InstallOutcome,
    pub right: InstallOutcome,
}

impl PairInstall {
    /// The install created or changed something (so the catalogs changed).
    pub fn changed(&self) -> bool {
        [&self.left, &self.right]
            .iter()
            .any(|o| o.schema_created || !o.installed.is_empty())
    }
}

/// When nothing blocks it, installs the capture of every replicable table of the
/// analysed `pair` on both sides, on the pair's connections; when something
/// blocks it, nothing is changed and the refusal carries the report. Returns the
/// pair, analysed again only if the install changed anything.
pub async fn install(
    config: &Config,
    mut pair: Analysis,
) -> Result<(PairInstall, Analysis), EngineError> {
    let blocking = pair.report.blocking_install();
    if blocking > 0 || pair.left.is_none() || pair.right.is_none() {
        return Err(pair.not_ready(blocking));
    }
    let (Some(left), Some(right)) = (pair.left.as_mut(), pair.right.as_mut()) else {
        unreachable!("both sides were just found connected");
    };
    let [l, r] = install_on(config, &pair.tables, &mut left.client, &mut right.client).await?;
    let done = PairInstall {
        report: pair.report.clone(),
        left: l,
        right: r,
    };
    if done.changed() {
        pair = pair.refresh(config).await?;
    }
    Ok((done, pair))
}

/// Installs the capture of `tables` (left and right entries) on both sides at
/// once: each side has its own connection and locks only its own tables.
pub async fn install_on(
    config: &Config,
    tables: &[(Table, Table)],
    left: &mut Client,
    right: &mut Client,
) -> Result<[InstallOutcome; 2], EngineError> {
    let retry = lock_retry(config);
    let sync = config.replication.sync.as_str();
    let left_tables: Vec<&Table> = tables.iter().map(|(l, _)| l).collect();
    let right_tables: Vec<&Table> = tables.iter().map(|(_, r)| r).collect();
    let (l, r) = tokio::join!(
        install::install(left, sync, &left_tables, &retry),
        install::install(right, sync, &right_tables, &retry),
    );
    Ok([
        l.map_err(EngineError::side(Side::Left))?,
        r.map_err(EngineError::side(Side::Right))?,
    ])
}

/// The result of `uninstall` on each side (a side that failed keeps its error).
pub struct PairUninstall {
    pub left: Result<UninstallOutcome, EngineError>,
    pub right: Result<UninstallOutcome, EngineError>,
}

async fn uninstall_side(
    side: Side,
    endpoint: Endpoint,
    retry: LockRetry,
) -> Result<UninstallOutcome, EngineError> {
    let mut client = endpoint.connect().await.map_err(EngineError::side(side))?;
    install::uninstall(&mut client, &retry)
        .await
        .map_err(EngineError::side(side))
}

/// Removes everything pgduplex installed, on both sides; a side that cannot be
/// reached does not stop the other one from being cleaned.
pub async fn uninstall(config: &Config) -> Result<PairUninstall, EngineError> {
    let [l, r] = endpoints(config)?;
    let retry = lock_retry(config);
    let (left, right) = tokio::join!(
        uninstall_side(Side::Left, l, retry),
        uninstall_side(Side::Right, r, retry)
    );
    Ok(PairUninstall { left, right })
}
