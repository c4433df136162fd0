//! The clock check of `latest_wins`: the policy compares capture times taken
//! by two servers' clocks, so the daemon measures their difference at start.

use std::time::Instant;

use pgduplex_config::Config;
use tokio_postgres::Client;

use super::ReplError;

/// Measures the clock difference between the servers and refuses `latest_wins`
/// above `[replication] max_clock_skew_ms`.
pub(super) async fn check_clock_skew(
    config: &Config,
    left: &Client,
    right: &Client,
) -> Result<(), ReplError> {
    async fn offset(c: &Client) -> Result<(f64, f64), ReplError> {
        // Best of five: the sample with the shortest round trip bounds the error.
        let mut best = (f64::MAX, 0.0);
        for _ in 0..5 {
            let sent = std::time::SystemTime::now();
            let t0 = Instant::now();
            let server: f64 = c
                .query_one(
                    "SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())::float8",
                    &[],
                )
                .await?
                .get(0);
            let rtt = t0.elapsed().as_secs_f64();
            let local = sent
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
                + rtt / 2.0;
            if rtt < best.0 {
                best = (rtt, server - local);
            }
        }
        Ok(best)
    }
    let (l, r) = (offset(left).await?, offset(right).await?);
    let skew = (l.1 - r.1).abs();
    let max = config.replication.max_clock_skew.as_secs_f64();
    tracing::info!(
        "clock difference between the servers: {:.1} ms (latest_wins allows {:.0} ms)",
        skew * 1000.0,
        max * 1000.0
    );
    if skew > max {
        return Err(ReplError::Fatal(format!(
            "latest_wins needs synchronised clocks, but the servers' clocks differ by {:.0} ms (more than [replication] max_clock_skew_ms = {:.0}); \
             synchronise them (NTP/chrony) or choose another conflict policy",
            skew * 1000.0,
            max * 1000.0
        )));
    }
    Ok(())
}
