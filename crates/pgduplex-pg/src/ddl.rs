//! DDL on live tables without stalling the application.
//!
//! `CREATE TRIGGER` and `ALTER TABLE ... ENABLE TRIGGER` take a SHARE ROW EXCLUSIVE
//! lock on the table. If a long transaction holds any lock on it, our request waits
//! in the lock queue, and every later writer queues behind *us*: one slow report
//! query can then block all writes for its whole duration (the way Bucardo's
//! install was seen to stall production). So each DDL transaction runs with a short
//! `lock_timeout`; on `lock_not_available` it rolls back, steps out of the queue,
//! sleeps a jittered, growing backoff and tries again. Writers are held up for at
//! most one `lock_timeout` at a time. See the PostgreSQL manual, "lock_timeout", and
//! reshape's db.rs for the same technique.

use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::retry::{Backoff, RetryClass};
use crate::PgError;

/// How DDL on live tables waits for its lock.
#[derive(Clone, Copy, Debug)]
pub struct LockRetry {
    /// `lock_timeout` of each attempt: the longest an application write can be held
    /// up behind pgduplex's lock request.
    pub lock_timeout: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// First backoff; it doubles per attempt up to `max_backoff`, with ±50% jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for LockRetry {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_millis(200),
            max_attempts: 50,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl LockRetry {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.base_backoff, self.max_backoff)
    }

    /// `SET LOCAL lock_timeout` for the current transaction.
    pub fn set_local_sql(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'",
            self.lock_timeout.as_millis().max(1)
        )
    }
}

/// True for errors where trying the same transaction again can succeed.
fn is_lock_conflict(err: &tokio_postgres::Error) -> bool {
    RetryClass::of(err) == RetryClass::Concurrency
}

/// A statement with bind parameters, run last in a DDL transaction (the record of
/// what was installed: its values are parameters, never spliced into the SQL).
pub struct Bound<'a> {
    pub sql: &'a str,
    pub params: &'a [&'a (dyn ToSql + Sync)],
}

/// Runs `statements`, then `record` if given, as one transaction with a short
/// `lock_timeout`, retrying the whole transaction on lock conflicts with backoff.
/// `what` names the object for the log and the final error.
pub async fn run_with_lock_retry(
    client: &mut Client,
    retry: &LockRetry,
    what: &str,
    statements: &[String],
    record: Option<&Bound<'_>>,
) -> Result<(), PgError> {
    let mut n = 0;
    let mut backoff = retry.backoff();
    loop {
        n += 1;
        match try_once(client, retry, statements, record).await {
            Ok(()) => return Ok(()),
            Err(err) if is_lock_conflict(&err) && n < retry.max_attempts => {
                let wait = backoff.next_wait();
                tracing::warn!(
                    object = what,
                    attempt = n,
                    max_attempts = retry.max_attempts,
                    wait_ms = wait.as_millis() as u64,
                    "another transaction holds a lock; stepped out of the lock queue and will retry"
                );
                tokio::time::sleep(wait).await;
            }
            Err(source) if is_lock_conflict(&source) => {
                return Err(PgError::LockTimeout {
                    object: what.to_string(),
                    attempts: n,
                    source,
                })
            }
            Err(source) => {
                return Err(PgError::Ddl {
                    object: what.to_string(),
                    source,
                })
            }
        }
    }
}

async fn try_once(
    client: &mut Client,
    retry: &LockRetry,
    statements: &[String],
    record: Option<&Bound<'_>>,
) -> Result<(), tokio_postgres::Error> {
    // Dropping an uncommitted Transaction rolls it back, so an error leaves the
    // session clean for the next attempt.
    let tx = client.transaction().await?;
    tx.batch_execute(&retry.set_local_sql()).await?;
    for sql in statements {
        tx.batch_execute(sql).await?;
    }
    if let Some(r) = record {
        tx.execute(r.sql, r.params).await?;
    }
    tx.commit().await
}
