//! Step 1 of the copy, read only: the analysed pair as source and target, the
//! tables selected, the progress earlier runs recorded, and every reason to
//! refuse (the install would be refused, no table matches, `--fk replica` is not
//! allowed, user triggers would fire on the copied rows, the foreign keys form a
//! cycle, target tables hold rows), all looked for before anything changes on
//! either side.

use pgduplex_config::{Config, CopyMode, FkStrategy, Side};
use pgduplex_pg::catalog::{foreign_key_order, ForeignKey, Table};
use pgduplex_pg::session::{self, SEARCH_PATH};
use pgduplex_pg::{store, TableName};
use tokio_postgres::Client;

use super::plan::{self, FkLinks, Recorded};
use super::{db, names, CopyError, CopyOptions};
use crate::check::Analysis;
use crate::pair::SideState;

/// What step 1 found: the copy may go ahead.
pub(super) struct Preflight {
    pub src: SideState,
    pub tgt: SideState,
    /// What the install in step 2 captures: every replicable table (left, right).
    pub install_tables: Vec<(Table, Table)>,
    /// Every replicated table (source names): the copy is complete when all are.
    pub all_names: Vec<TableName>,
    /// The tables this run copies (source, target): those `--tables` matches.
    pub selected: Vec<(Table, Table)>,
    /// The target names of `selected`.
    pub selected_names: Vec<TableName>,
    /// The progress recorded on the target (without the selected tables' when
    /// `restart`).
    pub recorded: Recorded,
    /// A finished copy run again with `--mode truncate`: it starts over.
    pub restart: bool,
    /// How the copy gets past the target's foreign keys (`auto` resolved).
    pub strategy: FkStrategy,
    pub links: FkLinks,
}

/// Step 1 of [`super::run`]: reads, and refuses with the first reason found.
pub(super) async fn look(
    config: &Config,
    pair: Analysis,
    options: &CopyOptions,
) -> Result<Preflight, CopyError> {
    let sync = config.replication.sync.as_str();
    let target_side = options.from.other();
    let Oriented {
        src,
        tgt,
        install_tables,
        all_names,
        selected,
    } = orient(pair, options)?;
    session::pin_settings(&tgt.client, SEARCH_PATH)
        .await
        .map_err(db(target_side, "setting up the session"))?;
    let (recorded, restart) =
        read_recorded(&tgt.client, target_side, sync, options, &selected).await?;
    let strategy = fk_strategy(options.fk, tgt.can_use_replica_role, target_side)?;
    if !config.replication.allow_apply_triggers {
        refuse_firing_triggers(&selected, strategy, target_side)?;
    }
    let selected_names: Vec<TableName> = selected.iter().map(|(_, t)| t.name.clone()).collect();
    let fks = &tgt.catalog.foreign_keys;
    let links = FkLinks::new(&selected_names, fks, strategy);
    if strategy == FkStrategy::Order {
        refuse_fk_cycle(&selected_names, &recorded, fks, target_side)?;
    }
    if options.mode == CopyMode::IfEmpty {
        refuse_not_empty(&tgt.client, target_side, &selected_names, &recorded).await?;
    }
    Ok(Preflight {
        src,
        tgt,
        install_tables,
        all_names,
        selected,
        selected_names,
        recorded,
        restart,
        strategy,
        links,
    })
}

/// The analysed pair seen from the copy.
struct Oriented {
    src: SideState,
    tgt: SideState,
    /// What the install in step 2 captures: every replicable table (left, right).
    install_tables: Vec<(Table, Table)>,
    /// Every replicated table (source names): the copy is complete when all are.
    all_names: Vec<TableName>,
    /// The tables this run copies (source, target): those `--tables` matches.
    selected: Vec<(Table, Table)>,
}

/// the pair as source and target, and the tables selected; refused when
/// the install would be.
fn orient(analysis: Analysis, options: &CopyOptions) -> Result<Oriented, CopyError> {
    // What blocks the install blocks the copy. Findings about the apply only
    // (foreign-key actions, user triggers) are looked at below for the copy's own
    // writes, which are INSERTs only.
    let blocking = analysis.report.blocking_install();
    if blocking > 0 || analysis.left.is_none() || analysis.right.is_none() {
        return Err(analysis.not_ready(blocking).into());
    }
    let install_tables = analysis.tables.clone();
    let (Some(left), Some(right)) = (analysis.left, analysis.right) else {
        unreachable!("both sides were just found connected");
    };
    let (src, tgt) = match options.from {
        Side::Left => (left, right),
        Side::Right => (right, left),
    };
    let all: Vec<(Table, Table)> = analysis
        .tables
        .into_iter()
        .map(|(l, r)| match options.from {
            Side::Left => (l, r),
            Side::Right => (r, l),
        })
        .collect();
    let all_names: Vec<TableName> = all.iter().map(|(s, _)| s.name.clone()).collect();
    let selected: Vec<(Table, Table)> = all
        .into_iter()
        .filter(|(s, _)| {
            options
                .tables
                .as_ref()
                .is_none_or(|re| re.is_match(&s.name.qualified()))
        })
        .collect();
    if selected.is_empty() {
        return Err(CopyError::NoTables);
    }
    Ok(Oriented {
        src,
        tgt,
        install_tables,
        all_names,
        selected,
    })
}

/// the progress an earlier run recorded on the target, and whether this
/// run starts over (a finished copy run again with `--mode truncate`: then the
/// selected tables' progress is ignored here and cleared in step 3).
async fn read_recorded(
    client: &Client,
    side: Side,
    sync: &str,
    options: &CopyOptions,
    selected: &[(Table, Table)],
) -> Result<(Recorded, bool), CopyError> {
    let run_record = store::copy_run(client, sync)
        .await
        .map_err(db(side, "reading the copy's record"))?;
    let mut recorded = plan::read_progress(client, side, sync).await?;
    let restart = options.mode == CopyMode::Truncate
        && run_record.as_ref().is_some_and(|r| r.finished_at.is_some());
    if restart {
        for (s, _) in selected {
            recorded.remove(&s.name);
        }
    }
    Ok((recorded, restart))
}

/// how the copy gets past the target's foreign keys (`auto` resolved).
fn fk_strategy(
    asked: FkStrategy,
    can_use_replica_role: bool,
    target_side: Side,
) -> Result<FkStrategy, CopyError> {
    Ok(match asked {
        FkStrategy::Auto if can_use_replica_role => FkStrategy::Replica,
        FkStrategy::Auto => FkStrategy::Order,
        FkStrategy::Replica if !can_use_replica_role => {
            return Err(CopyError::ReplicaRoleNotAllowed { side: target_side })
        }
        s => s,
    })
}

/// user triggers on the target fire on the copy's INSERTs unless guarded
/// by `pgduplex.applying`, or (for those not ENABLE ALWAYS) under replica role.
fn refuse_firing_triggers(
    selected: &[(Table, Table)],
    strategy: FkStrategy,
    target_side: Side,
) -> Result<(), CopyError> {
    let firing: Vec<String> = selected
        .iter()
        .flat_map(|(_, t)| t.user_triggers.iter())
        .filter(|tr| {
            !tr.guarded
                && tr.enabled != 'D'
                && !(strategy == FkStrategy::Replica && tr.enabled == 'O')
                && tr.definition.contains("INSERT")
        })
        .map(|tr| format!("{} on {}", tr.name, tr.table))
        .collect();
    if firing.is_empty() {
        return Ok(());
    }
    Err(CopyError::Triggers {
        side: target_side,
        triggers: firing.join(", "),
    })
}

/// `--fk order`: the tables not copied yet must have a load order.
fn refuse_fk_cycle(
    tables: &[TableName],
    recorded: &Recorded,
    fks: &[ForeignKey],
    target_side: Side,
) -> Result<(), CopyError> {
    let unfinished: Vec<TableName> = tables
        .iter()
        .filter(|n| !plan::complete(recorded, n))
        .cloned()
        .collect();
    let (_, cyclic) = foreign_key_order(&unfinished, fks);
    if cyclic.is_empty() {
        return Ok(());
    }
    Err(CopyError::FkCycle {
        side: target_side,
        tables: names(&cyclic),
    })
}

/// `--mode if-empty`: every table without a copied part must be empty on
/// the target.
async fn refuse_not_empty(
    client: &Client,
    side: Side,
    tables: &[TableName],
    recorded: &Recorded,
) -> Result<(), CopyError> {
    let mut not_empty = Vec::new();
    for name in tables.iter().filter(|n| plan::done_parts(recorded, n) == 0) {
        let has_rows: bool = client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", name.quoted()),
                &[],
            )
            .await
            .map_err(db(side, "checking that the target tables are empty"))?
            .get(0);
        if has_rows {
            not_empty.push(name.clone());
        }
    }
    if not_empty.is_empty() {
        return Ok(());
    }
    Err(CopyError::NotEmpty {
        side,
        them: if not_empty.len() == 1 { "it" } else { "them" },
        tables: names(&not_empty),
    })
}
