//! Schema drift: the columns of each replicated table compared between the
//! sides. A table whose columns differ is paused (its deltas wait, the other
//! tables go on) until the same DDL is applied on both sides; then it resumes,
//! with the new column list if both sides changed alike.

use std::collections::HashMap;

use pgduplex_pg::catalog::{column_diff, Column};
use pgduplex_pg::TableName;

use super::session::Conn;
use super::{plan, ReplError, Replicator};

impl Replicator {
    /// Compares the columns of plans `which` between the sides. A table whose
    /// columns differ is paused (its deltas wait) with a message saying what
    /// differs; when they match again it resumes, with the new column list if
    /// both sides changed alike.
    pub(super) async fn check_columns(
        &mut self,
        conns: &[Conn; 2],
        which: &[usize],
    ) -> Result<(), ReplError> {
        type Cols = Vec<Column>;
        if which.is_empty() {
            return Ok(());
        }
        let schemas: Vec<String> = which
            .iter()
            .map(|&i| self.plans[i].name.schema.clone())
            .collect();
        let names: Vec<String> = which
            .iter()
            .map(|&i| self.plans[i].name.name.clone())
            .collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&schemas, &names];
        let (l, r) = tokio::try_join!(
            conns[0].apply.query(&conns[0].columns, &params),
            conns[1].apply.query(&conns[1].columns, &params)
        )?;
        let group = |rows: Vec<tokio_postgres::Row>| {
            let mut m: HashMap<TableName, Cols> = HashMap::new();
            for r in rows {
                let identity: Option<String> = r.get(5);
                m.entry(TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
                    .or_default()
                    .push(Column {
                        name: r.get(2),
                        type_name: r.get(3),
                        not_null: false,
                        generated: r.get(4),
                        identity: identity.and_then(|s| s.chars().next()),
                    });
            }
            m
        };
        let (gl, gr) = (group(l), group(r));
        for &i in which {
            let name = self.plans[i].name.clone();
            let lc = gl.get(&name).cloned().unwrap_or_default();
            let rc = gr.get(&name).cloned().unwrap_or_default();
            let reason = columns_differ(&lc, &rc).or_else(|| {
                match self.plans[i].with_columns(&lc) {
                    None => Some("a key column is gone".to_string()),
                    Some(p) => {
                        if p.columns != self.plans[i].columns {
                            tracing::info!("{name}: the columns changed alike on both sides; replicating the new columns");
                            self.plans[i] = p;
                        }
                        None
                    }
                }
            });
            match reason {
                Some(r) => {
                    if self.paused[i].as_ref() != Some(&r) {
                        tracing::warn!(
                            "{name}: replication of this table is PAUSED: {r}. Its changes are kept and the other \
                             tables continue; apply the same DDL on both sides and it resumes by itself"
                        );
                        self.paused[i] = Some(r);
                    }
                }
                None => {
                    if self.paused[i].take().is_some() {
                        tracing::info!("{name}: the columns match on both sides again; replication of this table resumes");
                    }
                }
            }
        }
        Ok(())
    }

    /// The written columns of every plan (a change ends a read taken ahead).
    pub(super) fn plan_columns(&self) -> Vec<Vec<plan::PlanColumn>> {
        self.plans.iter().map(|p| p.columns.clone()).collect()
    }

    /// Tables paused because their columns differ, with the reason.
    pub fn paused(&self) -> Vec<(TableName, String)> {
        self.plans
            .iter()
            .zip(&self.paused)
            .filter_map(|(p, r)| r.clone().map(|r| (p.name.clone(), r)))
            .collect()
    }
}

/// What differs between the sides' columns of one table, if anything.
fn columns_differ(left: &[Column], right: &[Column]) -> Option<String> {
    if left.is_empty() || right.is_empty() {
        let side = if left.is_empty() { "left" } else { "right" };
        return Some(format!("the table is missing on the {side} side"));
    }
    let diffs = column_diff(left, right);
    (!diffs.is_empty()).then(|| {
        diffs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}
