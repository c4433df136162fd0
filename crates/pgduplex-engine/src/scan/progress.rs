//! Progress of a scan: tables done, and blocks read of the table in hand (both
//! sides), redrawn in place on a terminal, or an INFO line every so often.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgduplex_pg::TableName;

/// How progress is shown: the copy's styles.
pub use crate::copy::progress::ProgressStyle as Style;

pub struct ScanProgress {
    style: Style,
    started: Instant,
    tables: usize,
    tables_done: AtomicUsize,
    table: Mutex<String>,
    blocks: AtomicU64,
    blocks_done: AtomicU64,
}

impl ScanProgress {
    pub fn new(tables: usize, style: Style) -> Arc<ScanProgress> {
        Arc::new(ScanProgress {
            style,
            started: Instant::now(),
            tables,
            tables_done: AtomicUsize::new(0),
            table: Mutex::new(String::new()),
            blocks: AtomicU64::new(0),
            blocks_done: AtomicU64::new(0),
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

    fn line(&self) -> String {
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
            let every = match me.style {
                Style::Quiet => return,
                Style::Terminal => Duration::from_millis(250),
                Style::Log(d) => d,
            };
            loop {
                tokio::time::sleep(every).await;
                match me.style {
                    Style::Terminal => {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "\r\x1b[2K{}", me.line());
                        let _ = err.flush();
                    }
                    _ => tracing::info!("{}", me.line()),
                }
            }
        })
    }

    /// Clears the terminal line.
    pub fn clear(&self) {
        if self.style == Style::Terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
