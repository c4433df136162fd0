//! `install` and `uninstall` on both sides of the pair.

use pgduplex_config::{Config, Side};
use pgduplex_pg::catalog::Table;
use pgduplex_pg::ddl::LockRetry;
use pgduplex_pg::install::{self, InstallOutcome, UninstallOutcome};
use pgduplex_pg::Endpoint;

use crate::check::{analyse, CheckReport};
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
    pub report: CheckReport,
    pub left: InstallOutcome,
    pub right: InstallOutcome,
}

/// Checks the pair and, when nothing blocks it, installs the capture of every
/// replicable table on both sides. When something blocks it, nothing is changed.
pub async fn install(config: &Config) -> Result<PairInstall, EngineError> {
    let analysis = analyse(config).await?;
    let blocking = analysis.report.blocking_install();
    let (Some(mut left), Some(mut right)) = (analysis.left, analysis.right) else {
        return Err(EngineError::NotReady {
            blocking: blocking.max(1),
        });
    };
    if blocking > 0 {
        return Err(EngineError::NotReady { blocking });
    }
    let retry = lock_retry(config);
    let sync = config.replication.sync.as_str();
    let left_tables: Vec<&Table> = analysis.tables.iter().map(|(l, _)| l).collect();
    let right_tables: Vec<&Table> = analysis.tables.iter().map(|(_, r)| r).collect();
    // Both sides at once: each has its own connection and locks only its own tables.
    let (l, r) = tokio::join!(
        install::install(&mut left.client, sync, &left_tables, &retry),
        install::install(&mut right.client, sync, &right_tables, &retry),
    );
    Ok(PairInstall {
        report: analysis.report,
        left: l.map_err(EngineError::side(Side::Left))?,
        right: r.map_err(EngineError::side(Side::Right))?,
    })
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
