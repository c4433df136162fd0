//! Progress of a running copy: counters the workers bump, and a reporter that
//! draws them. On a terminal: a line per running table or range plus a total,
//! redrawn in place on standard error. Otherwise: an INFO log line at a steady
//! interval. Totals and the ETA come from the source catalog's estimates
//! (`reltuples`), so they are approximate.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Bars on standard error, redrawn in place.
    Terminal,
    /// An INFO log line every so often.
    Log(Duration),
    /// Nothing (the summary only).
    Quiet,
}

impl ProgressStyle {
    /// Bars when standard error is a terminal, else a log line every 10 s.
    pub fn detect() -> ProgressStyle {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressStyle::Terminal
        } else {
            ProgressStyle::Log(Duration::from_secs(10))
        }
    }
}

/// The counters of one running table or range.
pub struct UnitProgress {
    pub label: String,
    pub estimated_rows: u64,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

/// A running unit as shown: label, rows, bytes, estimated rows.
type RunningLine = (String, u64, u64, u64);

/// Everything the reporter shows.
pub struct Progress {
    started: Instant,
    estimated_rows: u64,
    done_rows: AtomicU64,
    done_bytes: AtomicU64,
    done_units: AtomicU64,
    total_units: u64,
    running: Mutex<Vec<Arc<UnitProgress>>>,
}

impl Progress {
    pub fn new(estimated_rows: u64, total_units: u64) -> Arc<Progress> {
        Arc::new(Progress {
            started: Instant::now(),
            estimated_rows,
            done_rows: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            done_units: AtomicU64::new(0),
            total_units,
            running: Mutex::new(Vec::new()),
        })
    }

    pub fn start(&self, label: String, estimated_rows: u64) -> Arc<UnitProgress> {
        let unit = Arc::new(UnitProgress {
            label,
            estimated_rows,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(unit.clone());
        unit
    }

    /// The unit finished (`committed`) or failed: its counters leave the running list.
    pub fn finish(&self, unit: &Arc<UnitProgress>, committed: bool) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|u| !Arc::ptr_eq(u, unit));
        if committed {
            self.done_rows
                .fetch_add(unit.rows.load(Ordering::Relaxed), Ordering::Relaxed);
            self.done_bytes
                .fetch_add(unit.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
            self.done_units.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn totals(&self) -> (u64, u64, Vec<RunningLine>) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = self.done_rows.load(Ordering::Relaxed);
        let mut bytes = self.done_bytes.load(Ordering::Relaxed);
        let mut lines = Vec::new();
        for u in running.iter() {
            let r = u.rows.load(Ordering::Relaxed);
            let b = u.bytes.load(Ordering::Relaxed);
            rows += r;
            bytes += b;
            lines.push((u.label.clone(), r, b, u.estimated_rows));
        }
        (rows, bytes, lines)
    }

    fn total_line(&self) -> String {
        let (rows, bytes, _) = self.totals();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = rows as f64 / secs;
        let eta = if rate > 0.0 && self.estimated_rows > rows {
            format!(
                ", ETA {}",
                human_duration((self.estimated_rows - rows) as f64 / rate)
            )
        } else {
            String::new()
        };
        format!(
            "total {} {}/{} parts, {} of ~{} rows, {}, {}/s{eta}",
            bar(rows, self.estimated_rows),
            self.done_units.load(Ordering::Relaxed),
            self.total_units,
            rows,
            self.estimated_rows,
            human_bytes(bytes),
            human_bytes((bytes as f64 / secs) as u64),
        )
    }

    fn log_line(&self) {
        let (rows, bytes, lines) = self.totals();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let running: Vec<String> = lines
            .iter()
            .map(|(l, r, _, e)| format!("{l} {r}/~{e}"))
            .collect();
        tracing::info!(
            rows,
            bytes,
            estimated_rows = self.estimated_rows,
            parts_done = self.done_units.load(Ordering::Relaxed),
            parts = self.total_units,
            rows_per_second = (rows as f64 / secs) as u64,
            running = %running.join(", "),
            "copy progress: {}",
            self.total_line()
        );
    }
}

fn bar(done: u64, total: u64) -> String {
    const WIDTH: usize = 20;
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as f64 / total as f64) * WIDTH as f64) as usize
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled))
}

pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Runs the reporter until `stop` fires; clears the terminal lines at the end.
pub async fn report(
    progress: Arc<Progress>,
    style: ProgressStyle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tick = match style {
        ProgressStyle::Quiet => return,
        ProgressStyle::Terminal => Duration::from_millis(250),
        ProgressStyle::Log(every) => every,
    };
    let mut drawn = 0usize;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => break,
        }
        match style {
            ProgressStyle::Terminal => drawn = draw(&progress, drawn),
            ProgressStyle::Log(_) => progress.log_line(),
            ProgressStyle::Quiet => {}
        }
    }
    if drawn > 0 {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\x1b[{drawn}A\x1b[J");
        let _ = err.flush();
    }
}

/// Redraws the bars in place; returns the number of lines drawn.
fn draw(progress: &Progress, previous: usize) -> usize {
    let (_, _, lines) = progress.totals();
    let mut out = String::new();
    if previous > 0 {
        out.push_str(&format!("\x1b[{previous}A\x1b[J"));
    }
    for (label, rows, bytes, est) in &lines {
        out.push_str(&format!(
            "{label:<40} {} {rows}/~{est} rows {}\n",
            bar(*rows, *est),
            human_bytes(*bytes)
        ));
    }
    out.push_str(&progress.total_line());
    out.push('\n');
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
    lines.len() + 1
}
