//! Printing for people: error chains and a panic hook that never shows a secret.

use std::sync::Arc;

pub use pgduplex_engine::error_chain as chain;

/// Replaces every occurrence of a secret with `[redacted]`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out
}

/// A panic message may carry anything a bug put into it: print it only after
/// scrubbing the configuration's passwords out of it.
pub fn install_panic_hook(secrets: Vec<String>) {
    let secrets = Arc::new(secrets);
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "pgduplex panicked{location}: {}\nThis is a bug; please report it.",
            scrub(&payload, &secrets)
        );
    }));
}
