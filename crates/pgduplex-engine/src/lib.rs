//! pgduplex's work on a pair of databases, in pipeline order: connecting to both
//! sides and reading their catalogs ([`pair`]); deciding, once per command, what
//! can be replicated and what blocks it ([`check`]); installing / uninstalling the
//! capture on both sides ([`setup`]); the initial copy ([`copy`]); the daemon
//! ([`replicate`]); what stands where ([`status`]); the exact compare and its
//! repair ([`scan`]); progress shown on a terminal or in the log ([`progress`]).
//! Primitives that touch one database live in `pgduplex-pg`.

pub mod check;
pub mod copy;
pub mod pair;
pub mod progress;
pub mod replicate;
pub mod scan;
pub mod setup;
pub mod status;

use pgduplex_config::Side;
use pgduplex_pg::PgError;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{side}")]
    Side {
        side: Side,
        #[source]
        source: PgError,
    },
    /// `check` finds something that blocks the command; the report says what.
    #[error("the pair is not ready: {blocking} problem(s) must be fixed first (run `pgduplex check` for the details); nothing was changed")]
    NotReady {
        blocking: usize,
        report: Box<check::CheckReport>,
    },
}

impl EngineError {
    pub fn side(side: Side) -> impl FnOnce(PgError) -> EngineError {
        move |source| EngineError::Side { side, source }
    }
}

/// An error with its causes for people: "outer: cause: root cause". pgduplex's
/// own errors never repeat their source in their message; tokio_postgres's do
/// (its `Display` appends its cause, which is also its `source()`), so a cause
/// that a message above already contains is not printed twice.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
