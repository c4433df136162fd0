//! The pgduplex test kit: throw-away PostgreSQL servers run from the installed server
//! binaries ([`server`]), shared servers and fresh per-test databases ([`db`]), an exact
//! comparer of two databases that shares no code with pgduplex ([`compare`]), a
//! fault-injecting TCP proxy ([`proxy`]), test certificates ([`tls`]) and the harness of
//! the end-to-end tests ([`harness`]: one daemon handle, one `wait_for`, one
//! `assert_converged`).
//!
//! It owns test infrastructure only: no pgduplex logic lives here, so tests that use it
//! check the product against an independent oracle.

pub mod compare;
pub mod db;
pub mod harness;
pub mod proxy;
pub mod server;
pub mod tls;

pub use compare::{compare_databases, Comparison};
pub use db::{shared_pair, unique_name, TestDb, TestPair};
pub use harness::{assert_converged, assert_drained, wait_for, Daemon};
pub use proxy::Proxy;
pub use server::{PgServer, ServerOptions};
pub use tls::TlsFiles;
