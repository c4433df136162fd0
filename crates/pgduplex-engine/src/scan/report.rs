//! What a scan reports: how a key differs ([`DiffKind`], [`Diff`]), the keys listed
//! with `--details` ([`Detail`]), each table's counts ([`TableResult`]) and the whole
//! result ([`ScanReport`]), serialized as JSON and rendered as text.

use serde::Serialize;

/// How a differing key or row differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    OnlyLeft,
    OnlyRight,
    Different,
    InFlight,
}

impl DiffKind {
    pub(super) fn of(left: Option<i64>, right: Option<i64>) -> Option<DiffKind> {
        match (left, right) {
            (Some(l), Some(r)) if l == r => None,
            (Some(_), Some(_)) => Some(DiffKind::Different),
            (Some(_), None) => Some(DiffKind::OnlyLeft),
            (None, Some(_)) => Some(DiffKind::OnlyRight),
            (None, None) => None,
        }
    }
}

/// One differing key (keyed tables) or distinct row (keyless tables).
#[derive(Clone, Debug)]
pub(super) struct Diff {
    pub kind: DiffKind,
    /// The key's (or keyless row's) canonical text, `(1,abc)`.
    pub key_text: String,
    /// Each key column's text (keyed tables).
    pub key: Vec<String>,
    /// Row hashes (keyed tables); for keyless tables the copies on each side.
    pub left: Option<i64>,
    pub right: Option<i64>,
    /// Rows this line stands for: 1 for a key, the surplus copies for a keyless row.
    pub rows: u64,
}

impl Diff {
    /// The same difference seen from the other side.
    pub(super) fn swap(mut self) -> Diff {
        self.kind = match self.kind {
            DiffKind::OnlyLeft => DiffKind::OnlyRight,
            DiffKind::OnlyRight => DiffKind::OnlyLeft,
            k => k,
        };
        std::mem::swap(&mut self.left, &mut self.right);
        self
    }
}

/// A differing key as reported with `--details`.
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    pub kind: DiffKind,
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(skip_serializing_if = "is_one")]
    pub rows: u64,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// One table's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TableResult {
    pub table: String,
    pub left_rows: u64,
    pub right_rows: u64,
    pub only_left: u64,
    pub only_right: u64,
    pub different: u64,
    pub in_flight: u64,
    /// "key" (compared key by key) or "rows" (as a multiset of rows).
    pub compared_by: &'static str,
    /// A schema difference found on the way (missing table, columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
    pub seconds: f64,
    /// The table exists on one side only (its rows are the differences).
    #[serde(skip)]
    pub one_side_only: bool,
}

impl TableResult {
    /// Differing rows, plus one for a definition that differs (a table missing
    /// on one side counts by its rows).
    pub fn differences(&self) -> u64 {
        self.only_left
            + self.only_right
            + self.different
            + u64::from(self.problem.is_some() && !self.one_side_only)
    }
}

/// The whole scan's result.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub tables: Vec<TableResult>,
    pub total_differences: u64,
    pub total_in_flight: u64,
    pub identical: bool,
    pub seconds: f64,
}

impl ScanReport {
    pub(super) fn new(tables: Vec<TableResult>, seconds: f64) -> ScanReport {
        let total_differences = tables.iter().map(TableResult::differences).sum();
        let total_in_flight = tables.iter().map(|t| t.in_flight).sum();
        ScanReport {
            tables,
            total_differences,
            total_in_flight,
            identical: total_differences == 0,
            seconds,
        }
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let width = name_width(self.tables.iter().map(|t| t.table.as_str()));
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>10}  {:>9}  {:>10}  {:>9}  {:>9}\n",
            "table", "left rows", "right rows", "only left", "only right", "different", "in flight"
        ));
        for t in &self.tables {
            out.push_str(&format!(
                "{:<width$}  {:>10}  {:>10}  {:>9}  {:>10}  {:>9}  {:>9}{}\n",
                t.table,
                t.left_rows,
                t.right_rows,
                t.only_left,
                t.only_right,
                t.different,
                t.in_flight,
                if t.compared_by == "rows" {
                    "  (no key: compared as rows)"
                } else {
                    ""
                }
            ));
            if let Some(p) = &t.problem {
                out.push_str(&format!("  problem: {p}\n"));
            }
            for d in &t.details {
                let kind = match d.kind {
                    DiffKind::OnlyLeft => "only left",
                    DiffKind::OnlyRight => "only right",
                    DiffKind::Different => "different",
                    DiffKind::InFlight => "in flight",
                };
                out.push_str(&format!("  {kind:<10} {}", d.key));
                if d.rows != 1 {
                    out.push_str(&format!("  ({} rows)", d.rows));
                }
                if !d.columns.is_empty() {
                    out.push_str(&format!("  columns: {}", d.columns.join(", ")));
                }
                out.push('\n');
            }
            let listed = t.details.len() as u64;
            let all = t.only_left + t.only_right + t.different + t.in_flight;
            if !t.details.is_empty() && listed < all {
                out.push_str(&format!("  ... {} more not listed\n", all - listed));
            }
        }
        let differing = self.tables.iter().filter(|t| t.differences() > 0).count();
        out.push_str(&format!(
            "total: {} table(s), {} {}{}; {:.1} s\n",
            self.tables.len(),
            self.total_differences,
            if self.identical {
                "differences: identical".to_string()
            } else {
                format!("difference(s) in {differing} table(s)")
            },
            if self.total_in_flight > 0 {
                format!(
                    ", {} key(s) in flight (still being replicated, not differences)",
                    self.total_in_flight
                )
            } else {
                String::new()
            },
            self.seconds
        ));
        out
    }
}

/// The width of a "table" column holding `names`.
pub(super) fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names
        .map(str::len)
        .chain(["table".len()])
        .max()
        .unwrap_or(5)
}
