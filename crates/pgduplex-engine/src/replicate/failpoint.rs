//! Fail points for crash tests: `PGDUPLEX_FAILPOINT=name` (or `name:n`, the n-th
//! time the point is reached) makes the daemon abort there at once, as `kill -9`
//! would: no destructor runs, no transaction is finished, the server sees the
//! connections drop. Unset (always, outside tests), a point costs one load.
//!
//! Compiled only with the cargo feature `failpoints` (the e2e tests enable it);
//! without it [`hit`] is empty and the release binary carries no fail point code.

#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

/// The environment variable naming the point.
pub const VAR: &str = "PGDUPLEX_FAILPOINT";

/// The points, in the order a cycle reaches them.
pub const POINTS: &[&str] = &[
    // Both sides read and the directions decided, nothing applied.
    "decided",
    // A direction's rows staged on its target, the source's snapshot released.
    "staged",
    // A direction's apply done, its COMMIT not yet sent.
    "before-commit",
    // Both directions committed, the sources' deltas not yet deleted.
    "applied",
    // A source's deltas deleted, the target's ledger row not yet.
    "source-deleted",
];

#[cfg(feature = "failpoints")]
fn spec() -> Option<&'static (String, u64)> {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let v = std::env::var(VAR).ok()?;
        let (name, n) = match v.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((name, n.max(1)))
    })
    .as_ref()
}

/// Aborts the process if `name` is the configured point (reached for the n-th time).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((want, n)) = spec() else { return };
    if want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("pgduplex: fail point {name:?} reached: aborting");
        std::process::abort();
    }
}

/// Built without the feature `failpoints`: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
