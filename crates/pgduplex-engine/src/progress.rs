//! Progress of the long commands: the copy (a line per running table or range
//! and a total) and scan / sync (the table in hand and the blocks read). Workers
//! bump counters; a reporter shows them every so often in one of three styles:
//! on a terminal, lines redrawn in place on standard error (drawn by indicatif);
//! otherwise an INFO log line at a steady interval; or nothing. The lines are
//! formatted here, the same text on a terminal and in the log. The copy's totals
//! and ETA come from the source catalog's estimates (`reltuples`), so they are
//! approximate.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use pgduplex_pg::TableName;

/// How often the lines on a terminal are redrawn.
const TERMINAL_TICK: Duration = Duration::from_millis(250);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Lines on standard error, redrawn in place.
    Terminal,
    /// An INFO log line every so often.
    Log(Duration),
    /// Nothing (the summary only).
    Quiet,
}

impl ProgressStyle {
    /// Lines when standard error is a terminal, else a log line every 10 s.
    pub fn detect() -> ProgressStyle {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressStyle::Terminal
        } else {
            ProgressStyle::Log(Duration::from_secs(10))
        }
    }

    /// The reporter's interval, `None` when quiet.
    fn tick(self) -> Option<Duration> {
        match self {
            ProgressStyle::Quiet => None,
            ProgressStyle::Terminal => Some(TERMINAL_TICK),
            ProgressStyle::Log(every) => Some(every),
        }
    }
}

/// A line of text on standard error that indicatif redraws in place.
fn text_line() -> ProgressBar {
    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(indicatif::ProgressStyle::with_template("{msg}").expect("a valid template"))
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

/// The copy's progress: the units done and those running.
pub struct CopyProgress {
    started: Instant,
    estimated_rows: u64,
    done_rows: AtomicU64,
    done_bytes: AtomicU64,
    done_units: AtomicU64,
    total_units: u64,
    running: Mutex<Vec<Arc<UnitProgress>>>,
}

impl CopyProgress {
    pub fn new(estimated_rows: u64, total_units: u64) -> Arc<CopyProgress> {
        Arc::new(CopyProgress {
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

    /// Runs the reporter until `stop` fires; clears the terminal lines at the end.
    pub async fn report(
        self: Arc<Self>,
        style: ProgressStyle,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(tick) = style.tick() else { return };
        let mut lines: Option<CopyLines> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => break,
            }
            if style == ProgressStyle::Terminal {
                lines.get_or_insert_with(CopyLines::new).draw(&self);
            } else {
                self.log_line();
            }
        }
        if let Some(lines) = lines {
            lines.clear();
        }
    }
}

/// The copy on a terminal: a line per running unit, then the total.
struct CopyLines {
    multi: MultiProgress,
    units: Vec<ProgressBar>,
    total: ProgressBar,
}

impl CopyLines {
    fn new() -> CopyLines {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(text_line());
        CopyLines {
            multi,
            units: Vec::new(),
            total,
        }
    }

    fn draw(&mut self, progress: &CopyProgress) {
        let (_, _, running) = progress.totals();
        while self.units.len() < running.len() {
            let line = self.multi.insert_before(&self.total, text_line());
            self.units.push(line);
        }
        for line in self.units.drain(running.len()..) {
            line.finish_and_clear();
            self.multi.remove(&line);
        }
        for (line, (label, rows, bytes, est)) in self.units.iter().zip(&running) {
            line.set_message(format!(
                "{label:<40} {} {rows}/~{est} rows {}",
                bar(*rows, *est),
                human_bytes(*bytes)
            ));
        }
        self.total.set_message(progress.total_line());
    }

    fn clear(self) {
        for line in self.units.iter().chain([&self.total]) {
            line.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The progress of scan and sync: tables done, and the blocks of the table in
/// hand read on both sides.
pub struct ScanProgress {
    style: ProgressStyle,
    started: Instant,
    tables: usize,
    tables_done: AtomicUsize,
    table: Mutex<String>,
    blocks: AtomicU64,
    blocks_done: AtomicU64,
    /// The line on a terminal, from the reporter's first tick.
    line: OnceLock<ProgressBar>,
}

impl ScanProgress {
    pub fn new(tables: usize, style: ProgressStyle) -> Arc<ScanProgress> {
        Arc::new(ScanProgress {
            style,
            started: Instant::now(),
            tables,
            tables_done: AtomicUsize::new(0),
            table: Mutex::new(String::new()),
            blocks: AtomicU64::new(0),
            blocks_done: AtomicU64::new(0),
            line: OnceLock::new(),
        })
    }

    pub fn start_table(&self, table: &TableName) {
        *self.table.lock().expect("progress") = table.to_string();
        self.blocks.store(0, Ordering::Relaxed);
        self.blocks_done.store(0, Ordering::Relaxed);
    }

    pub fn add_blocks(&self, n: i64) {
        self.blocks.fetch_add(n.max(0) as u64, Ordering::Relaxed);
    }

    pub fn blocks_done(&self, n: i64) {
        self.blocks_done
            .fetch_add(n.max(0) as u64, Ordering::Relaxed);
    }

    pub fn table_done(&self) {
        self.tables_done.fetch_add(1, Ordering::Relaxed);
    }

    fn text(&self) -> String {
        let blocks = self.blocks.load(Ordering::Relaxed);
        let done = self.blocks_done.load(Ordering::Relaxed).min(blocks);
        let pct = match (done * 100).checked_div(blocks) {
            Some(p) => format!(" {p:>3}% of {} MiB (both sides)", blocks * 8 / 1024),
            None => String::new(),
        };
        format!(
            "scan: table {}/{} {}{pct}, {:.0} s",
            (self.tables_done.load(Ordering::Relaxed) + 1).min(self.tables),
            self.tables,
            self.table.lock().expect("progress"),
            self.started.elapsed().as_secs_f64()
        )
    }

    /// Starts the reporter (aborted by the caller when the scan ends).
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let Some(every) = me.style.tick() else { return };
            loop {
                tokio::time::sleep(every).await;
                if me.style == ProgressStyle::Terminal {
                    me.line.get_or_init(text_line).set_message(me.text());
                } else {
                    tracing::info!("{}", me.text());
                }
            }
        })
    }

    /// Clears the terminal line.
    pub fn clear(&self) {
        if let Some(line) = self.line.get() {
            line.finish_and_clear();
        }
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
