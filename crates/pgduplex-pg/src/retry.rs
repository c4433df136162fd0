//! What to do after a PostgreSQL error, and how long to wait before trying
//! again: one classification of SQLSTATEs and one jittered backoff for the DDL
//! on live tables, the apply and the daemon's reconnects.

use std::time::Duration;

use rand::Rng;
use tokio_postgres::error::SqlState;

/// Why an error happened, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Another transaction was in the way (a lock held past `lock_timeout`, a
    /// deadlock, a serialization failure): the same transaction again can succeed.
    Concurrency,
    /// The data broke a constraint (foreign key, unique, exclusion) because of a
    /// concurrent change: decided again, the batch can succeed.
    Constraint,
    /// The connection failed or broke, the server is shutting down or out of a
    /// resource (SQLSTATE classes 08, 57, 53, or no SQLSTATE at all: an I/O or
    /// protocol error): a new connection can succeed.
    Connection,
    /// Anything else: the same work fails again.
    Fatal,
}

impl RetryClass {
    /// Classifies an error of the driver.
    pub fn of(err: &tokio_postgres::Error) -> RetryClass {
        match err.code() {
            None => RetryClass::Connection,
            Some(c) => RetryClass::of_code(c),
        }
    }

    /// Classifies a SQLSTATE.
    pub fn of_code(c: &SqlState) -> RetryClass {
        if *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
        {
            RetryClass::Concurrency
        } else if *c == SqlState::FOREIGN_KEY_VIOLATION
            || *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::EXCLUSION_VIOLATION
        {
            RetryClass::Constraint
        } else if ["08", "57", "53"].iter().any(|p| c.code().starts_with(p)) {
            RetryClass::Connection
        } else {
            RetryClass::Fatal
        }
    }
}

/// Exponential backoff with ±50 % jitter: `base`, `2·base`, `4·base`, ... up to
/// `max`, each multiplied by a random factor in [0.5, 1.5) so that several
/// waiters (daemons, DDL retries) do not come back in step.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The un-jittered wait after `attempt` failures (1 = the first).
    pub fn nominal(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max)
    }

    /// The next wait, jittered.
    pub fn next_wait(&mut self) -> Duration {
        self.attempt += 1;
        self.nominal(self.attempt)
            .mul_f64(rand::thread_rng().gen_range(0.5..1.5))
    }

    /// Starts again from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        use RetryClass::*;
        let cases = [
            (SqlState::LOCK_NOT_AVAILABLE, Concurrency),
            (SqlState::T_R_DEADLOCK_DETECTED, Concurrency),
            (SqlState::T_R_SERIALIZATION_FAILURE, Concurrency),
            (SqlState::FOREIGN_KEY_VIOLATION, Constraint),
            (SqlState::UNIQUE_VIOLATION, Constraint),
            (SqlState::EXCLUSION_VIOLATION, Constraint),
            (SqlState::CONNECTION_FAILURE, Connection),
            (SqlState::ADMIN_SHUTDOWN, Connection),
            (SqlState::CANNOT_CONNECT_NOW, Connection),
            (SqlState::TOO_MANY_CONNECTIONS, Connection),
            (SqlState::OUT_OF_MEMORY, Connection),
            (SqlState::QUERY_CANCELED, Connection),
            (SqlState::SYNTAX_ERROR, Fatal),
            (SqlState::INSUFFICIENT_PRIVILEGE, Fatal),
            (SqlState::UNDEFINED_TABLE, Fatal),
            (SqlState::CHECK_VIOLATION, Fatal),
            (SqlState::NOT_NULL_VIOLATION, Fatal),
        ];
        for (code, want) in cases {
            assert_eq!(RetryClass::of_code(&code), want, "{}", code.code());
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let nominal: Vec<u128> = (1..=6).map(|a| b.nominal(a).as_millis()).collect();
        assert_eq!(nominal, [100, 200, 400, 800, 1000, 1000]);
        for want in [100u64, 200, 400, 800, 1000, 1000] {
            let w = b.next_wait();
            assert!(
                w >= Duration::from_millis(want / 2) && w < Duration::from_millis(want * 3 / 2),
                "{w:?} for {want} ms"
            );
        }
        b.reset();
        assert!(b.next_wait() < Duration::from_millis(150));
        // Far past the cap the shift does not overflow.
        assert_eq!(b.nominal(1000), Duration::from_secs(1));
    }
}
