//! An exact comparer of two databases, independent of any pgduplex code, so replication
//! tests have an oracle that does not share the code under test.
//!
//! It compares every user table (plain tables, and partitioned tables through their
//! root; not `pg_catalog`, `information_schema`, `pg_toast*`, temp schemas or the
//! `pgduplex` schema): tables present on one side only, column names and types
//! (`format_type`), and the rows as multisets of their full text form (`ROW(...)::text`).
//! Rows are sorted by the servers (`COLLATE "C"`) and streamed with `COPY TO STDOUT`,
//! then merged, so a table of millions of rows compares in bounded memory.
//!
//! Each side is read in one `REPEATABLE READ READ ONLY` transaction with output
//! settings pinned (`SET LOCAL`), so the two text forms depend on the data only. The
//! clients must not be inside a transaction when called.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use tokio_postgres::Client;

use crate::db::quote_ident;

/// Differing rows listed per table before only counting the rest.
const MAX_ROWS_LISTED_PER_TABLE: usize = 50;

/// Output settings pinned before reading, so that values of time, float, interval,
/// bytea and money types print the same on both sides whatever the server defaults.
const PIN_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC'; \
     SET LOCAL DateStyle = 'ISO, MDY'; \
     SET LOCAL IntervalStyle = 'postgres'; \
     SET LOCAL extra_float_digits = 3; \
     SET LOCAL bytea_output = 'hex'; \
     SET LOCAL lc_monetary = 'C'";

/// The result of [`compare_databases`]: one human-readable line per difference.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub differences: Vec<String>,
}

impl Comparison {
    pub fn is_identical(&self) -> bool {
        self.differences.is_empty()
    }

    /// Panics with [`Comparison::summary`] if there are differences.
    pub fn assert_identical(&self) {
        if !self.is_identical() {
            panic!("{}", self.summary());
        }
    }

    /// "identical", or the number of differences and the first 20 of them, one a line.
    pub fn summary(&self) -> String {
        if self.is_identical() {
            return "identical".to_string();
        }
        let shown: Vec<&str> = self
            .differences
            .iter()
            .take(20)
            .map(String::as_str)
            .collect();
        let more = self.differences.len().saturating_sub(shown.len());
        let mut msg = format!(
            "databases differ ({} differences):\n  {}",
            self.differences.len(),
            shown.join("\n  ")
        );
        if more > 0 {
            msg.push_str(&format!("\n  ... and {more} more"));
        }
        msg
    }
}

/// A table as the comparer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableInfo {
    partitioned: bool,
    /// (column name, format_type) in attnum order.
    columns: Vec<(String, String)>,
}

type TableKey = (String, String);

/// Compares all user tables of the two databases. See the module docs.
pub async fn compare_databases(left: &Client, right: &Client) -> anyhow::Result<Comparison> {
    begin(left).await.context("left")?;
    begin(right).await.context("right")?;
    let result = compare_in_transaction(left, right).await;
    // Read-only: ending the transaction either way changes nothing.
    let l = left.batch_execute("COMMIT").await;
    let r = right.batch_execute("COMMIT").await;
    let cmp = result?;
    l.context("left: COMMIT")?;
    r.context("right: COMMIT")?;
    Ok(cmp)
}

async fn begin(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {PIN_SETTINGS}"
        ))
        .await
        .context("starting the comparison transaction")
}

async fn compare_in_transaction(left: &Client, right: &Client) -> anyhow::Result<Comparison> {
    let lt = list_tables(left).await.context("listing left tables")?;
    let rt = list_tables(right).await.context("listing right tables")?;
    let mut differences = Vec::new();

    for key in rt.keys() {
        if !lt.contains_key(key) {
            differences.push(format!("table {} only in right", qualified(key)));
        }
    }
    for (key, l) in &lt {
        let name = qualified(key);
        let Some(r) = rt.get(key) else {
            differences.push(format!("table {name} only in left"));
            continue;
        };
        if l.partitioned != r.partitioned {
            differences.push(format!(
                "table {name}: partitioned on {} side only",
                if l.partitioned { "left" } else { "right" }
            ));
        }
        if l.columns != r.columns {
            differences.push(format!(
                "table {name}: columns differ: left ({}) vs right ({})",
                render_columns(&l.columns),
                render_columns(&r.columns)
            ));
        }
        // Rows are compared over the columns both sides have, in left's order, so a
        // column difference doesn't hide (or fake) every row difference.
        let common: Vec<&str> = l
            .columns
            .iter()
            .filter(|(c, _)| r.columns.iter().any(|(rc, _)| rc == c))
            .map(|(c, _)| c.as_str())
            .collect();
        compare_rows(left, right, key, l, r, &common, &mut differences)
            .await
            .with_context(|| format!("comparing rows of {name}"))?;
    }
    Ok(Comparison { differences })
}

fn qualified((schema, table): &TableKey) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

fn render_columns(cols: &[(String, String)]) -> String {
    cols.iter()
        .map(|(c, t)| format!("{} {t}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn list_tables(client: &Client) -> anyhow::Result<BTreeMap<TableKey, TableInfo>> {
    let rows = client
        .query(
            r#"SELECT n.nspname::text, c.relname::text, c.relkind = 'p',
                      a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_attribute a
                 ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE c.relkind IN ('r', 'p')
                 AND NOT c.relispartition
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgduplex')
                 AND n.nspname NOT LIKE 'pg\_toast%'
                 AND n.nspname NOT LIKE 'pg\_temp\_%'
               ORDER BY n.nspname, c.relname, a.attnum"#,
            &[],
        )
        .await?;
    let mut tables: BTreeMap<TableKey, TableInfo> = BTreeMap::new();
    for row in rows {
        let key = (row.get::<_, String>(0), row.get::<_, String>(1));
        let info = tables.entry(key).or_insert_with(|| TableInfo {
            partitioned: row.get(2),
            columns: Vec::new(),
        });
        // NULL attname: a table without columns (LEFT JOIN found none).
        if let Some(col) = row.get::<_, Option<String>>(3) {
            info.columns.push((col, row.get(4)));
        }
    }
    Ok(tables)
}

/// One table by name, whatever its schema or kind (a partition or a `pgduplex` table
/// too). `None` if it does not exist.
async fn table_info(
    client: &Client,
    (schema, table): &TableKey,
) -> anyhow::Result<Option<TableInfo>> {
    let rows = client
        .query(
            r#"SELECT c.relkind = 'p', a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_attribute a
                 ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
               ORDER BY a.attnum"#,
            &[schema, table],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut info = TableInfo {
        partitioned: first.get(0),
        columns: Vec::new(),
    };
    for row in &rows {
        if let Some(col) = row.get::<_, Option<String>>(1) {
            info.columns.push((col, row.get(2)));
        }
    }
    Ok(Some(info))
}

/// The sorted-rows query for one side.
fn rows_query(key: &TableKey, info: &TableInfo, columns: &[&str]) -> String {
    let cols = columns
        .iter()
        .map(|c| format!("t.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ");
    // ONLY for plain tables: an inheritance child is listed (and compared) on its own.
    // Not for a partitioned root, whose rows all live in its partitions.
    let only = if info.partitioned { "" } else { "ONLY " };
    // A subquery because `ORDER BY 1 COLLATE ...` would collate the constant 1, and an
    // output alias can't appear inside an ORDER BY expression.
    format!(
        "SELECT r FROM (SELECT ROW({cols})::text AS r FROM {only}{} AS t) AS s \
         ORDER BY r COLLATE \"C\"",
        qualified(key)
    )
}

async fn compare_rows(
    left: &Client,
    right: &Client,
    key: &TableKey,
    l: &TableInfo,
    r: &TableInfo,
    common: &[&str],
    differences: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = qualified(key);
    let lq = format!("COPY ({}) TO STDOUT", rows_query(key, l, common));
    let rq = format!("COPY ({}) TO STDOUT", rows_query(key, r, common));
    let lstream = left.copy_out(lq.as_str()).await.context("left COPY")?;
    let rstream = right.copy_out(rq.as_str()).await.context("right COPY")?;
    // CopyOutStream is !Unpin; boxing it once per table is cheap.
    let mut lrows = CopyLines::new(Box::pin(lstream));
    let mut rrows = CopyLines::new(Box::pin(rstream));

    let mut listed = 0usize;
    let mut unlisted = 0usize;
    let mut report = |side: &str, row: &[u8]| {
        if listed < MAX_ROWS_LISTED_PER_TABLE {
            listed += 1;
            differences.push(format!(
                "table {name}: row only in {side}: {}",
                printable(row)
            ));
        } else {
            unlisted += 1;
        }
    };

    let mut lnext = lrows.next_line().await.context("reading left rows")?;
    let mut rnext = rrows.next_line().await.context("reading right rows")?;
    loop {
        match (&lnext, &rnext) {
            (None, None) => break,
            (Some(lrow), None) => {
                report("left", lrow);
                lnext = lrows.next_line().await.context("reading left rows")?;
            }
            (None, Some(rrow)) => {
                report("right", rrow);
                rnext = rrows.next_line().await.context("reading right rows")?;
            }
            (Some(lrow), Some(rrow)) => match lrow.cmp(rrow) {
                Ordering::Equal => {
                    lnext = lrows.next_line().await.context("reading left rows")?;
                    rnext = rrows.next_line().await.context("reading right rows")?;
                }
                Ordering::Less => {
                    report("left", lrow);
                    lnext = lrows.next_line().await.context("reading left rows")?;
                }
                Ordering::Greater => {
                    report("right", rrow);
                    rnext = rrows.next_line().await.context("reading right rows")?;
                }
            },
        }
    }
    if unlisted > 0 {
        differences.push(format!(
            "table {name}: ... and {unlisted} more differing rows"
        ));
    }
    Ok(())
}

/// A row for a one-line message: line breaks and tabs inside values shown as escapes.
fn printable(row: &[u8]) -> String {
    String::from_utf8_lossy(row)
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

/// Splits a `COPY ... TO STDOUT` (text format, one column) stream into rows, each
/// unescaped back to the value's bytes. Unescaping matters for the merge: the server
/// sorted the raw values bytewise (`COLLATE "C"`), and COPY's escapes (`\t`, `\\`, ...)
/// would not sort the same way.
struct CopyLines<S> {
    stream: S,
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    pos: usize,
    done: bool,
}

impl<S, B, E> CopyLines<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    fn new(stream: S) -> Self {
        CopyLines {
            stream,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    async fn next_line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(nl) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let line = unescape_copy_text(&self.buf[self.pos..self.pos + nl]);
                self.pos += nl + 1;
                return Ok(Some(line));
            }
            if self.done {
                anyhow::ensure!(self.pos == self.buf.len(), "COPY data ended mid-row");
                return Ok(None);
            }
            // Drop consumed bytes before reading more, so the buffer stays one chunk
            // plus one partial row in size.
            self.buf.drain(..self.pos);
            self.pos = 0;
            match self.stream.next().await {
                Some(chunk) => self.buf.extend_from_slice(chunk?.as_ref()),
                None => self.done = true,
            }
        }
    }
}

/// Undoes COPY text-format escaping of one column value. `ROW(...)::text` is never NULL,
/// so `\N` does not occur.
fn unescape_copy_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = raw[i + 1];
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            // COPY TO only emits the escapes above and `\\`; other bytes stand for
            // themselves.
            other => out.push(other),
        }
    }
    out
}

/// The rows of one table as sorted text (`ROW(...)::text`, bytewise order), read with
/// the same pinned settings as [`compare_databases`]. For small tables: all rows are
/// held in memory. A partitioned table returns the rows of all its partitions.
pub async fn table_rows_text(
    client: &Client,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    begin(client).await?;
    let result = async {
        let key = (schema.to_string(), table.to_string());
        let info = table_info(client, &key)
            .await?
            .with_context(|| format!("no table {}", qualified(&key)))?;
        let cols: Vec<&str> = info.columns.iter().map(|(c, _)| c.as_str()).collect();
        let rows = client.query(&rows_query(&key, &info, &cols), &[]).await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<String>>(),
        )
    }
    .await;
    let end = client.batch_execute("COMMIT").await;
    let rows = result?;
    end.context("COMMIT")?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::unescape_copy_text;

    #[test]
    fn unescapes_copy_text() {
        assert_eq!(unescape_copy_text(br"a\tb\\c\nd"), b"a\tb\\c\nd".to_vec());
        assert_eq!(unescape_copy_text(br"(1,x)"), b"(1,x)".to_vec());
    }
}
