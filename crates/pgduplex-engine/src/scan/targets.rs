//! What a scan compares: the sessions on each side ([`Sessions`], [`connect`]) and,
//! per table, its shape, the columns and key compared on both sides, the schema
//! problems found on the way and the capture's delta tables ([`Target`], [`targets`]).

use std::collections::HashMap;

use pgduplex_config::{Config, Side};
use pgduplex_pg::catalog::{column_diff, Catalog, Table};
use pgduplex_pg::session;
use pgduplex_pg::TableName;
use tokio_postgres::Client;

use super::sql::{self, ScanColumn, Shape};
use super::{db, ScanError};
use crate::pair::{open_both, SideState};

/// A table to scan: its shape, and the problems found comparing definitions.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub shape: Shape,
    pub problem: Option<String>,
    /// Present on one side only: which.
    pub only_on: Option<Side>,
    /// The delta tables of the capture on each side, when installed.
    pub delta: [Option<TableName>; 2],
}

/// The connections of a scan: `jobs` per side, pinned session settings.
pub(super) struct Sessions {
    pub left: Vec<Client>,
    pub right: Vec<Client>,
    pub catalogs: [Catalog; 2],
    pub can_use_replica_role: [bool; 2],
    pub sync_name: String,
}

impl Sessions {
    pub fn side(&self, side: Side) -> &[Client] {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }
}

/// Connects `jobs` sessions to each side and reads both catalogs.
pub(super) async fn connect(config: &Config, jobs: usize) -> Result<Sessions, ScanError> {
    let [l, r] = open_both(config).await?;
    let l = l?;
    let r = r?;
    let more = |s: &SideState| {
        let endpoint = s.endpoint.clone();
        let side = s.side;
        async move {
            let mut v = Vec::new();
            for _ in 1..jobs.max(1) {
                v.push(
                    endpoint
                        .connect()
                        .await
                        .map_err(|source| ScanError::Pg { side, source })?,
                );
            }
            Ok::<_, ScanError>(v)
        }
    };
    let (lm, rm) = tokio::try_join!(more(&l), more(&r))?;
    let mut left = vec![l.client];
    left.extend(lm);
    let mut right = vec![r.client];
    right.extend(rm);
    for (side, clients) in [(Side::Left, &left), (Side::Right, &right)] {
        for c in clients {
            session::pin_settings(c, "")
                .await
                .map_err(db(side, "setting the session"))?;
        }
    }
    Ok(Sessions {
        left,
        right,
        catalogs: [l.catalog, r.catalog],
        can_use_replica_role: [l.can_use_replica_role, r.can_use_replica_role],
        sync_name: config.replication.sync.clone(),
    })
}

fn scan_columns(t: &Table) -> Vec<ScanColumn> {
    t.columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| ScanColumn {
            name: c.name.clone(),
            type_name: c.type_name.clone(),
        })
        .collect()
}

/// The tables to scan: every table the configuration selects (and `filter`
/// matches) on either side, with what to compare.
pub(super) async fn targets(
    config: &Config,
    sessions: &Sessions,
    filter: Option<&regex::Regex>,
) -> Result<Vec<Target>, ScanError> {
    let [lc, rc] = &sessions.catalogs;
    let wanted = |t: &&Table| {
        let q = t.name.qualified();
        config.tables.selects(&q) && filter.is_none_or(|f| f.is_match(&q))
    };
    let mut names: Vec<TableName> = lc
        .tables
        .iter()
        .filter(wanted)
        .chain(rc.tables.iter().filter(wanted))
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    names.dedup();
    let installed = installed_ids(sessions).await?;
    let mut out = Vec::new();
    for name in names {
        let (l, r) = (lc.table(&name), rc.table(&name));
        let delta = [0, 1].map(|i| {
            installed[i]
                .get(&name)
                .copied()
                .map(pgduplex_pg::capture::delta_table)
        });
        let (shape, problem, only_on) = match (l, r) {
            (Some(l), Some(r)) => {
                let (shape, problem) = on_both_sides(&name, l, r);
                (shape, problem, None)
            }
            (Some(t), None) | (None, Some(t)) => {
                let side = if l.is_some() { Side::Left } else { Side::Right };
                (
                    Shape {
                        table: name.clone(),
                        columns: scan_columns(t),
                        key: None,
                        mask: 0,
                    },
                    Some(format!("exists on the {side} side only")),
                    Some(side),
                )
            }
            (None, None) => unreachable!("the name came from a catalog"),
        };
        out.push(Target {
            shape,
            problem,
            only_on,
            delta,
        });
    }
    Ok(out)
}

/// The tables of this sync whose capture is installed, with their ids, on each
/// side (none on a side whose role may not read schema pgduplex).
async fn installed_ids(sessions: &Sessions) -> Result<[HashMap<TableName, i32>; 2], ScanError> {
    let mut installed: [HashMap<TableName, i32>; 2] = [HashMap::new(), HashMap::new()];
    for (i, side) in [Side::Left, Side::Right].into_iter().enumerate() {
        let c = &sessions.side(side)[0];
        let tables = match pgduplex_pg::install::installed_tables(c).await {
            Ok(t) => t,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                tracing::warn!(
                    "{side}: this role may not read schema pgduplex: keys that differ are not looked \
                     at again while replication runs (connect as the role that ran install)"
                );
                Vec::new()
            }
            Err(source) => return Err(ScanError::Pg { side, source }),
        };
        for t in tables {
            if t.sync == sessions.sync_name {
                installed[i].insert(t.table, t.id);
            }
        }
    }
    Ok(installed)
}

/// What to compare of table `name`, present on both sides: its shape, and the
/// definitions' differences as a problem.
fn on_both_sides(name: &TableName, l: &Table, r: &Table) -> (Shape, Option<String>) {
    let diffs: Vec<String> = column_diff(&l.columns, &r.columns)
        .iter()
        .map(ToString::to_string)
        .collect();
    // Compared: the columns both sides have alike (generated ones are
    // computed by each side from the others).
    let columns: Vec<ScanColumn> = scan_columns(l)
        .into_iter()
        .filter(|c| {
            r.column(&c.name)
                .is_some_and(|o| !o.generated && o.type_name == c.type_name)
        })
        .collect();
    let key = match (&l.key, &r.key) {
        (Some(a), Some(b)) if a.columns == b.columns => a
            .columns
            .iter()
            .map(|k| columns.iter().find(|c| &c.name == k).cloned())
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    // Bucket sizing only: `reltuples` is unknown before a first
    // ANALYZE; the size is a floor then.
    let rows = [l, r]
        .iter()
        .map(|t| t.estimated_rows.max(t.size_bytes / 200))
        .max()
        .unwrap_or(0);
    let problem = (!diffs.is_empty()).then(|| {
        format!(
            "the definitions differ ({}); the other columns were compared",
            diffs.join("; ")
        )
    });
    (
        Shape {
            table: name.clone(),
            columns,
            key,
            mask: sql::mask_for(rows),
        },
        problem,
    )
}
