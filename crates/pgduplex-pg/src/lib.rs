//! pgduplex's PostgreSQL primitives: connections with libpq's TLS modes
//! ([`connect`]), identifier quoting ([`ident`]), catalog introspection
//! ([`catalog`]), the capture DDL ([`capture`]) and the install / uninstall of
//! everything pgduplex puts into a database ([`install`]), with lock-aware DDL
//! ([`ddl`]); what every session shares: settings, the pair's lock and the
//! apply-role check ([`session`]); the SQLSTATE retry classes and one backoff
//! ([`retry`]); the COPY pipe between two sessions ([`copy_pipe`]); every
//! statement on pgduplex's own state tables ([`store`]); many rows of values as
//! bind parameters ([`params`]); COPY text for the few rows pgduplex writes
//! itself ([`copytext`]).

pub mod capture;
pub mod catalog;
pub mod connect;
pub mod copy_pipe;
pub mod copytext;
pub mod ddl;
pub mod ident;
pub mod install;
pub mod params;
pub mod retry;
pub mod session;
pub mod store;

pub use connect::Endpoint;
pub use ident::{quote_ident, quote_literal, TableName};

/// The schema that holds everything pgduplex installs.
pub const SCHEMA: &str = "pgduplex";

/// Errors of this crate. Messages name the side, object and what to do; the
/// underlying PostgreSQL error stays available as the source.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to the {side} database at {address}")]
    Connect {
        side: String,
        address: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("TLS settings of the {side} database: {message}")]
    Tls { side: String, message: String },
    #[error("{context} failed")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{object}: DDL failed")]
    Ddl {
        object: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "{object}: still locked by another transaction after {attempts} attempts; \
         find it with `SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE \
         pid IN (SELECT pid FROM pg_locks WHERE relation = '<table>'::regclass)` and retry \
         when it has finished, or raise [install] max_attempts"
    )]
    LockTimeout {
        object: String,
        attempts: u32,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "table {table} is already captured by sync {other:?}, not {sync:?}: a table can belong to one sync only; \
         exclude it from this configuration's [tables]"
    )]
    OtherSync {
        table: TableName,
        sync: String,
        other: String,
    },
    #[error(
        "table {table}: its key changed while {pending} captured changes are still pending; \
         run `pgduplex replicate --until-idle` before changing the key, then install again"
    )]
    KeyChangedWithPending { table: TableName, pending: i64 },
    #[error(
        "objects outside schema pgduplex depend on pgduplex's objects: {objects}; \
         drop them (or detach them) first, then run uninstall again (nothing was dropped)"
    )]
    ExternalDependents { objects: String },
    #[error(
        "schema pgduplex exists but was installed by a newer pgduplex (schema version {found}, this one knows {known}); \
         use the newer pgduplex"
    )]
    NewerSchema { found: i32, known: i32 },
}

impl PgError {
    /// The SQLSTATE of the underlying PostgreSQL error, if any.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            PgError::Connect { source, .. }
            | PgError::Query { source, .. }
            | PgError::Ddl { source, .. }
            | PgError::LockTimeout { source, .. } => source.code(),
            _ => None,
        }
    }
}
