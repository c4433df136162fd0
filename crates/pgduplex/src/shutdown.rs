//! Stop signals: SIGTERM or SIGINT turns the shutdown flag that the daemon takes
//! (`Replicator::run`) to true, so that it finishes the batch in hand and stops; a
//! second signal exits at once. The engine never sees a signal: tests and the
//! demo drive it with a flag of their own.

use signal_hook::consts::{SIGINT, SIGTERM};
use tokio::sync::watch;

/// The exit status after a second stop signal (128 + SIGINT, as a shell reports
/// an interrupted command).
const EXIT_SECOND_SIGNAL: i32 = 130;

/// Starts watching SIGTERM and SIGINT (on a thread of its own) and returns the
/// flag they set.
pub fn on_stop_signals() -> anyhow::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = false;
            for sig in signals.forever() {
                if seen {
                    tracing::warn!("second stop signal: exiting now");
                    std::process::exit(EXIT_SECOND_SIGNAL);
                }
                seen = true;
                tracing::info!(
                    "{} received: finishing the batch in hand, then stopping",
                    if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
                );
                let _ = tx.send(true);
            }
        })?;
    Ok(rx)
}
