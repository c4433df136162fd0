//! `pgduplex check`: whether replication can go ahead on this pair, and if not,
//! what to fix. The same analysis decides which tables `install` captures.
//!
//! Findings have a severity: an `Error` blocks replication (exit 1), a `Warning` is
//! something the user must know (a table left out), `Info` explains a choice.
//! `check` only reads: the one probe that looks like a write
//! (`SET LOCAL session_replication_role`) runs in a transaction that is rolled back.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use pgduplex_config::{Config, Side};
use pgduplex_pg::capture::APPLYING_SETTING;
use pgduplex_pg::catalog::{column_diff, Catalog, Table, TableKind, MIN_SERVER_VERSION};
use pgduplex_pg::{PgError, TableName};
use serde::Serialize;

use crate::pair::{open_both, SideState};
use crate::{error_chain, EngineError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// One thing `check` found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The side it concerns, when it concerns one.
    pub side: Option<Side>,
    /// What it is about: "connection", "table public.orders", ...
    pub subject: String,
    pub problem: String,
    /// How to fix it, when there is something to do.
    pub fix: Option<String>,
    /// The finding only matters for `replicate` (user triggers, FK actions):
    /// `install` may go ahead.
    #[serde(skip)]
    pub apply_only: bool,
}

/// A side as `check` saw it.
#[derive(Clone, Debug, Serialize)]
pub struct SideSummary {
    pub side: Side,
    pub address: String,
    pub connected: bool,
    pub server_version: Option<String>,
    pub user: Option<String>,
    pub can_use_replica_role: Option<bool>,
    pub installed: bool,
}

/// What `check` found on the pair.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub sides: Vec<SideSummary>,
    pub findings: Vec<Finding>,
    /// Tables that will be replicated.
    pub replicated: Vec<String>,
    /// Tables selected by the configuration but left out, with the reason.
    pub left_out: Vec<LeftOut>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LeftOut {
    pub table: String,
    pub reason: String,
}

impl CheckReport {
    /// No finding blocks replication.
    pub fn can_replicate(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Findings that block `install` (everything but the apply-only ones).
    pub fn blocking_install(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error && !f.apply_only)
            .count()
    }

    /// The report for a terminal or a log.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sides {
            let _ = write!(out, "{:<6} {}", format!("{}:", s.side), s.address);
            if let Some(v) = &s.server_version {
                let _ = write!(out, " (PostgreSQL {v}");
                if let Some(u) = &s.user {
                    let _ = write!(out, ", user {u}");
                }
                if let Some(r) = s.can_use_replica_role {
                    let _ = write!(
                        out,
                        ", {}",
                        if r {
                            "may use session_replication_role"
                        } else {
                            "may not use session_replication_role"
                        }
                    );
                }
                if s.installed {
                    out.push_str(", pgduplex installed");
                }
                out.push(')');
            } else if !s.connected {
                out.push_str(" (not reachable)");
            }
            out.push('\n');
        }
        let mut findings = self.findings.clone();
        findings.sort_by_key(|f| f.severity);
        for f in &findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let side = f.side.map(|s| format!("{s}: ")).unwrap_or_default();
            let _ = writeln!(out, "{sev:<7} {side}{}: {}", f.subject, f.problem);
            if let Some(fix) = &f.fix {
                let _ = writeln!(out, "        fix: {fix}");
            }
        }
        let errors = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let _ = writeln!(
            out,
            "{} table(s) to replicate, {} left out, {} error(s).",
            self.replicated.len(),
            self.left_out.len(),
            errors
        );
        out.push_str(if self.can_replicate() {
            "Replication can go ahead.\n"
        } else {
            "Replication cannot go ahead until the errors above are fixed.\n"
        });
        out
    }
}

/// The analysis shared by `check` and `install`: the report and the tables to
/// capture, as each side's catalog describes them.
pub struct Analysis {
    pub report: CheckReport,
    /// Per replicated table: its catalog entry on the left and on the right.
    pub tables: Vec<(Table, Table)>,
    pub left: Option<SideState>,
    pub right: Option<SideState>,
}

impl Analysis {
    /// The refusal of a command that writes (install, onetimecopy, replicate)
    /// when the report has `blocking` problems, carrying the report.
    pub fn not_ready(&self, blocking: usize) -> EngineError {
        EngineError::NotReady {
            blocking: blocking.max(1),
            report: Box::new(self.report.clone()),
        }
    }

    /// Reads both catalogs again on the same connections and analyses anew:
    /// after `install` changed them (its triggers are in the catalog now).
    pub async fn refresh(self, config: &Config) -> Result<Analysis, EngineError> {
        async fn reload(state: Option<SideState>) -> Result<SideState, EngineError> {
            let mut state = state.expect("refresh is for a pair with both sides connected");
            state.catalog = pgduplex_pg::catalog::load(&state.client)
                .await
                .map_err(EngineError::side(state.side))?;
            Ok(state)
        }
        let (l, r) = tokio::join!(reload(self.left), reload(self.right));
        Ok(analyse_sides(config, [l, r]))
    }
}

/// Connects to both sides and analyses the pair: once per command, which then
/// hands the analysis (with its connections) on.
pub async fn analyse(config: &Config) -> Result<Analysis, EngineError> {
    Ok(analyse_sides(config, open_both(config).await?))
}

/// Analyses the pair from both sides' states (or why a side is not connected).
fn analyse_sides(config: &Config, opened: [Result<SideState, EngineError>; 2]) -> Analysis {
    let [left, right] = opened;
    let mut findings = Vec::new();
    let mut sides = Vec::new();
    let mut states = Vec::new();
    for (side, result) in [(Side::Left, left), (Side::Right, right)] {
        match result {
            Ok(state) => {
                sides.push(SideSummary {
                    side,
                    address: state.endpoint.redacted().to_string(),
                    connected: true,
                    server_version: Some(state.catalog.server_version.clone()),
                    user: Some(state.catalog.current_user.clone()),
                    can_use_replica_role: Some(state.can_use_replica_role),
                    installed: state.catalog.schema_exists,
                });
                side_findings(side, &state.catalog, &mut findings);
                capture_findings(&state, &mut findings);
                partition_findings(&state, &mut findings);
                states.push(Some(state));
            }
            Err(err) => {
                sides.push(SideSummary {
                    side,
                    address: config.side(side).connection.redacted(),
                    connected: false,
                    server_version: None,
                    user: None,
                    can_use_replica_role: None,
                    installed: false,
                });
                findings.push(connection_finding(side, &err));
                states.push(None);
            }
        }
    }
    let right = states.pop().flatten();
    let left = states.pop().flatten();
    let mut report = CheckReport {
        sides,
        findings,
        replicated: Vec::new(),
        left_out: Vec::new(),
    };
    let mut tables = Vec::new();
    if let (Some(l), Some(r)) = (&left, &right) {
        if l.catalog.server_version_num >= MIN_SERVER_VERSION
            && r.catalog.server_version_num >= MIN_SERVER_VERSION
        {
            tables = compare_tables(config, l, r, &mut report);
        }
    }
    Analysis {
        report,
        tables,
        left,
        right,
    }
}

/// `pgduplex check`.
pub async fn check(config: &Config) -> Result<CheckReport, EngineError> {
    Ok(analyse(config).await?.report)
}

/// The side's own error without the "left: " prefix (the finding names the side).
fn inner_source(err: &EngineError) -> &(dyn std::error::Error + 'static) {
    match err {
        EngineError::Side { source, .. } => source,
        other => other,
    }
}

fn connection_finding(side: Side, err: &EngineError) -> Finding {
    use tokio_postgres::error::SqlState;
    let (problem, fix) = match err {
        EngineError::Side {
            source: PgError::Connect { source, .. },
            ..
        } => {
            let code = source.code();
            let fix = if code == Some(&SqlState::INVALID_PASSWORD)
                || code == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
            {
                format!(
                    "check the user and the password of [{side}] (in url, or in password_file), and that pg_hba.conf admits this client"
                )
            } else if code == Some(&SqlState::INVALID_CATALOG_NAME) {
                format!("check the database name in [{side}] url")
            } else if error_chain(source).contains("invalid peer certificate") {
                format!(
                    "the server's certificate was not accepted: check [{side}] sslrootcert (the CA that signed the \
                     server's certificate), and with verify-full that the url's host is a name the certificate \
                     is issued for; sslmode = \"require\" encrypts without verifying"
                )
            } else {
                format!(
                    "check the host and port in [{side}] url, that the server is running and reachable from here, and its sslmode"
                )
            };
            (error_chain(inner_source(err)), fix)
        }
        EngineError::Side {
            source: PgError::Tls { .. },
            ..
        } => (
            error_chain(inner_source(err)),
            format!("fix the TLS settings of [{side}] (sslmode, sslrootcert, sslcert, sslkey)"),
        ),
        other => (error_chain(other), "see the error above".to_string()),
    };
    Finding {
        severity: Severity::Error,
        side: Some(side),
        subject: "connection".into(),
        problem,
        fix: Some(fix),
        apply_only: false,
    }
}

fn side_findings(side: Side, c: &Catalog, findings: &mut Vec<Finding>) {
    let side = Some(side);
    if c.server_version_num < MIN_SERVER_VERSION {
        findings.push(Finding {
            severity: Severity::Error,
            side,
            subject: "server version".into(),
            problem: format!(
                "PostgreSQL {} is too old: pgduplex needs {} or newer",
                c.server_version,
                MIN_SERVER_VERSION / 10000
            ),
            fix: Some("upgrade this server (or move it with pg_dump/pg_restore)".into()),
            apply_only: false,
        });
    }
    if !c.schema_exists && !c.can_create_schema {
        findings.push(Finding {
            severity: Severity::Error,
            side,
            subject: "privileges".into(),
            problem: format!(
                "user {} may not create schema pgduplex in database {}",
                c.current_user, c.database
            ),
            fix: Some(format!(
                "GRANT CREATE ON DATABASE {} TO {};",
                pgduplex_pg::quote_ident(&c.database),
                pgduplex_pg::quote_ident(&c.current_user)
            )),
            apply_only: false,
        });
    }
}

fn capture_findings(state: &SideState, findings: &mut Vec<Finding>) {
    for (table, trigger, enabled) in &state.catalog.capture_triggers_not_always {
        let how = match enabled {
            'D' => "disabled",
            'R' => "enabled for replica sessions only",
            _ => "enabled for ordinary sessions only",
        };
        findings.push(Finding {
            severity: Severity::Error,
            side: Some(state.side),
            subject: format!("table {table}"),
            problem: format!(
                "pgduplex's capture trigger {trigger} is {how}: changes made meanwhile may not have been captured"
            ),
            fix: Some(
                "run `pgduplex install` to re-enable it, then `pgduplex scan` (and `sync`) to find what was missed".into(),
            ),
            apply_only: true,
        });
    }
}

fn partition_findings(state: &SideState, findings: &mut Vec<Finding>) {
    for p in &state.catalog.partitions_without_truncate_capture {
        findings.push(Finding {
            severity: Severity::Warning,
            side: Some(state.side),
            subject: format!("partition {p}"),
            problem: "created after the last install: its rows are captured, but a TRUNCATE aimed at this partition alone is not".into(),
            fix: Some("run `pgduplex install` again (it adds the TRUNCATE trigger; nothing else changes)".into()),
            apply_only: true,
        });
    }
}

fn describe_size(t: &Table) -> String {
    let b = t.size_bytes as f64;
    let size = if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    };
    format!("{size}, about {} rows", t.estimated_rows)
}

/// Compares the selected tables of both sides, records the findings and which
/// tables are replicated or left out, and returns the replicated ones.
fn compare_tables(
    config: &Config,
    l: &SideState,
    r: &SideState,
    report: &mut CheckReport,
) -> Vec<(Table, Table)> {
    let selected = |c: &Catalog| -> Vec<TableName> {
        c.tables
            .iter()
            .filter(|t| config.tables.selects(&t.name.qualified()))
            .map(|t| t.name.clone())
            .collect()
    };
    let names: BTreeSet<TableName> = selected(&l.catalog)
        .into_iter()
        .chain(selected(&r.catalog))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let (Some(lt), Some(rt)) = (l.catalog.table(&name), r.catalog.table(&name)) else {
            let has = if l.catalog.table(&name).is_some() {
                Side::Left
            } else {
                Side::Right
            };
            on_one_side_only(&name, has, report);
            continue;
        };
        let subject = format!("table {name}");
        let verdict = match definition_findings(&name, lt, rt, &subject, report) {
            Verdict::LeftOut => continue,
            v => v,
        };
        let mut blocked = verdict == Verdict::Blocked;
        for (st, t) in [(l, lt), (r, rt)] {
            blocked |= rights_findings(st, t, &name, &subject, report);
            apply_findings(config, st, t, &subject, &mut report.findings);
        }
        if lt.kind == TableKind::Partitioned || rt.kind == TableKind::Partitioned {
            report.findings.push(Finding {
                severity: Severity::Info,
                side: None,
                subject: subject.clone(),
                problem: format!(
                    "partitioned table ({} partitions on the left, {} on the right): the root is replicated, \
                     not each partition; writes into partitions, also ones created later, are captured",
                    lt.partitions.len(),
                    rt.partitions.len()
                ),
                fix: None,
                apply_only: false,
            });
        }
        if blocked {
            report.left_out.push(LeftOut {
                table: name.to_string(),
                reason: "see the errors above".into(),
            });
        } else {
            report.replicated.push(name.to_string());
            out.push((lt.clone(), rt.clone()));
        }
    }
    unreplicated_references(l, r, &out, report);
    out
}

/// What the definitions of a table on both sides allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Replicable,
    /// An error blocks it (the findings say which).
    Blocked,
    /// No usable key: left out (already recorded as such).
    LeftOut,
}

fn on_one_side_only(name: &TableName, has: Side, report: &mut CheckReport) {
    let lacks = has.other();
    report.findings.push(Finding {
        severity: Severity::Error,
        side: Some(lacks),
        subject: format!("table {name}"),
        problem: format!("exists on the {has} side only"),
        fix: Some(format!(
            "create it on the {lacks} side (e.g. pg_dump --schema-only -t '{}' from the {has} side), or exclude it in [tables] exclude",
            name.quoted()
        )),
        apply_only: false,
    });
    report.left_out.push(LeftOut {
        table: name.to_string(),
        reason: format!("exists on the {has} side only"),
    });
}

/// Columns and key of the table on both sides.
fn definition_findings(
    name: &TableName,
    lt: &Table,
    rt: &Table,
    subject: &str,
    report: &mut CheckReport,
) -> Verdict {
    let mut verdict = Verdict::Replicable;
    // Columns: compared by name and type; order does not matter (every
    // statement pgduplex writes names its columns).
    let diffs: Vec<String> = column_diff(&lt.columns, &rt.columns)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !diffs.is_empty() {
        verdict = Verdict::Blocked;
        report.findings.push(Finding {
            severity: Severity::Error,
            side: None,
            subject: subject.to_string(),
            problem: format!("the sides differ: {}", diffs.join("; ")),
            fix: Some(
                "make the two definitions the same (ALTER TABLE on one side), or exclude the table"
                    .into(),
            ),
            apply_only: false,
        });
    }
    match (&lt.key, &rt.key) {
        (Some(a), Some(b)) if a.columns != b.columns => {
            report.findings.push(Finding {
                severity: Severity::Error,
                side: None,
                subject: subject.to_string(),
                problem: format!(
                    "the key differs: ({}) on the left, ({}) on the right",
                    a.columns.join(", "),
                    b.columns.join(", ")
                ),
                fix: Some("give both sides the same primary key".into()),
                apply_only: false,
            });
            Verdict::Blocked
        }
        (Some(_), Some(_)) => verdict,
        (a, b) => {
            let side = if a.is_none() { lt } else { rt };
            report.findings.push(Finding {
                severity: Severity::Warning,
                side: match (a, b) {
                    (None, None) => None,
                    (None, _) => Some(Side::Left),
                    _ => Some(Side::Right),
                },
                subject: subject.to_string(),
                problem: format!(
                    "has no primary key and no unique index on NOT NULL columns ({}): left out of replication",
                    describe_size(side)
                ),
                fix: Some(format!(
                    "add a primary key on both sides (ALTER TABLE {} ADD PRIMARY KEY (...)) to replicate it",
                    name.quoted()
                )),
                apply_only: false,
            });
            report.left_out.push(LeftOut {
                table: name.to_string(),
                reason: "no usable key".into(),
            });
            Verdict::LeftOut
        }
    }
}

/// Ownership and privileges of the connecting role on one side's table; true
/// when they block replication.
fn rights_findings(
    st: &SideState,
    t: &Table,
    name: &TableName,
    subject: &str,
    report: &mut CheckReport,
) -> bool {
    let mut blocked = false;
    if !t.owned {
        blocked = true;
        report.findings.push(Finding {
            severity: Severity::Error,
            side: Some(st.side),
            subject: subject.to_string(),
            problem: format!(
                "user {} does not own this table; making the capture trigger fire in every session (ENABLE ALWAYS) needs the owner",
                st.catalog.current_user
            ),
            fix: Some(format!(
                "connect as the owner, or GRANT <owner role> TO {}",
                pgduplex_pg::quote_ident(&st.catalog.current_user)
            )),
            apply_only: false,
        });
    }
    if !t.missing_privileges.is_empty() {
        blocked = true;
        report.findings.push(Finding {
            severity: Severity::Error,
            side: Some(st.side),
            subject: subject.to_string(),
            problem: format!(
                "user {} lacks {}",
                st.catalog.current_user,
                t.missing_privileges.join(", ")
            ),
            fix: Some(format!(
                "GRANT {} ON {} TO {};",
                t.missing_privileges.join(", "),
                name.quoted(),
                pgduplex_pg::quote_ident(&st.catalog.current_user)
            )),
            apply_only: false,
        });
    }
    blocked
}

/// Foreign keys from a replicated table to one that is not: pgduplex cannot
/// bring the referenced row along.
fn unreplicated_references(
    l: &SideState,
    r: &SideState,
    out: &[(Table, Table)],
    report: &mut CheckReport,
) {
    let replicated: Vec<&TableName> = out.iter().map(|(t, _)| &t.name).collect();
    for st in [l, r] {
        for fk in &st.catalog.foreign_keys {
            if !replicated.contains(&&fk.table) || replicated.contains(&&fk.references) {
                continue;
            }
            report.findings.push(Finding {
                severity: Severity::Warning,
                side: Some(st.side),
                subject: format!("table {}", fk.table),
                problem: format!(
                    "foreign key {} references {}, which is not replicated: a row whose referenced row \
                     is missing on the other side cannot be applied there (it is retried, with a warning) \
                     or, where pgduplex applies with session_replication_role = replica, is applied without it",
                    fk.name, fk.references
                ),
                fix: Some(format!(
                    "replicate {} too ([tables] include), or keep it identical on both sides",
                    fk.references
                )),
                apply_only: true,
            });
        }
    }
}

/// User triggers and foreign-key actions that would fire when the apply writes
/// into this table on this side.
fn apply_findings(
    config: &Config,
    st: &SideState,
    t: &Table,
    subject: &str,
    findings: &mut Vec<Finding>,
) {
    let severity = if config.replication.allow_apply_triggers {
        Severity::Warning
    } else {
        Severity::Error
    };
    let opt_in = "or set [replication] allow_apply_triggers = true to replicate anyway";
    for trg in &t.user_triggers {
        // Under session_replication_role = replica only ENABLE ALWAYS and ENABLE
        // REPLICA triggers fire; without it every enabled trigger does.
        let fires = match trg.enabled {
            'D' => false,
            'O' => !st.can_use_replica_role,
            _ => true,
        };
        if !fires || trg.guarded {
            continue;
        }
        findings.push(Finding {
            severity,
            side: Some(st.side),
            subject: subject.to_string(),
            problem: format!(
                "trigger {} on {} would fire when pgduplex applies changes (it would change or count replicated rows again)",
                trg.name, trg.table
            ),
            fix: Some(format!(
                "guard it: recreate it with WHEN (current_setting('{APPLYING_SETTING}', true) IS DISTINCT FROM 'on') \
                 (CREATE OR REPLACE TRIGGER {} ... WHEN (...) EXECUTE FUNCTION ...), {opt_in}",
                pgduplex_pg::quote_ident(&trg.name)
            )),
            apply_only: true,
        });
    }
    if st.can_use_replica_role {
        return;
    }
    for fk in st
        .catalog
        .foreign_keys
        .iter()
        .filter(|fk| fk.references == t.name && fk.has_actions())
    {
        let action = |c: char| match c {
            'c' => "CASCADE",
            'n' => "SET NULL",
            'd' => "SET DEFAULT",
            _ => "",
        };
        let mut acts = Vec::new();
        if !action(fk.on_delete).is_empty() {
            acts.push(format!("ON DELETE {}", action(fk.on_delete)));
        }
        if !action(fk.on_update).is_empty() {
            acts.push(format!("ON UPDATE {}", action(fk.on_update)));
        }
        findings.push(Finding {
            severity,
            side: Some(st.side),
            subject: subject.to_string(),
            problem: format!(
                "foreign key {} of {} has {}, which would fire when pgduplex applies a change to this table \
                 (user {} may not set session_replication_role)",
                fk.name,
                fk.table,
                acts.join(" and "),
                st.catalog.current_user
            ),
            fix: Some(format!(
                "apply as a role that may set session_replication_role (PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role TO {}), {opt_in}",
                pgduplex_pg::quote_ident(&st.catalog.current_user)
            )),
            apply_only: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(version: i32, can_create: bool, schema_exists: bool) -> Catalog {
        Catalog {
            server_version_num: version,
            server_version: format!("{}.0", version / 10000),
            current_user: "app".into(),
            database: "shop".into(),
            can_create_schema: can_create,
            schema_exists,
            tables: Vec::new(),
            foreign_keys: Vec::new(),
            sequences: Vec::new(),
            capture_triggers_not_always: Vec::new(),
            partitions_without_truncate_capture: Vec::new(),
        }
    }

    // The test servers are all one version; the version rule is checked here on a
    // catalog as `catalog::load` returns it.
    #[test]
    fn too_old_a_server_is_an_error_with_the_minimum() {
        let mut findings = Vec::new();
        side_findings(Side::Right, &catalog(120011, true, false), &mut findings);
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.side, Some(Side::Right));
        assert!(
            f.problem
                .contains("PostgreSQL 12.0 is too old: pgduplex needs 13 or newer"),
            "{}",
            f.problem
        );
        let mut findings = Vec::new();
        side_findings(
            Side::Left,
            &catalog(MIN_SERVER_VERSION, true, false),
            &mut findings,
        );
        assert!(findings.is_empty());
    }

    #[test]
    fn creating_the_schema_needs_create_on_the_database_unless_it_exists() {
        let mut findings = Vec::new();
        side_findings(Side::Left, &catalog(150000, false, false), &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("GRANT CREATE ON DATABASE \"shop\" TO \"app\";"));
        let mut findings = Vec::new();
        side_findings(Side::Left, &catalog(150000, false, true), &mut findings);
        assert!(findings.is_empty());
    }
}
