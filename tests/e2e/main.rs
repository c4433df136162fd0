//! End-to-end tests of pgduplex against two real PostgreSQL servers started by the
//! test kit. One test binary (link time); a module per area; `support` is the
//! harness's e2e side (the kit's `harness` module has the daemon handle, `wait_for`
//! and `assert_converged`; `support` re-exports them). Tests that need the binary's
//! exit codes and output run it (`CARGO_BIN_EXE_pgduplex`); others call the library
//! crates directly.

mod support;

mod capture;
mod check;
mod config_errors;
mod conflicts;
mod faults;
mod hard_cases;
mod identifiers;
mod install;
mod onetimecopy;
mod replicate;
mod scan;
mod sync;
mod tls;
