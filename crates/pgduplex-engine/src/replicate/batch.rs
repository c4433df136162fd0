//! One cycle's view of the pending changes: what each side's deltas say (read in one
//! snapshot per side), and the decisions that turn them into work per direction.
//!
//! A key pending on both sides is a conflict candidate; when both sides now hold
//! the same row it is not a conflict and nothing is written. Otherwise the table's
//! policy picks the winner, and the key travels in one direction only: a key is
//! never in flight both ways.

use std::collections::{BTreeMap, HashMap};

use pgduplex_config::{ConflictPolicy, Side};
use pgduplex_pg::TableName;

use super::plan::TablePlan;

/// A key's text form, one string per key column.
pub type Key = Vec<String>;

/// The deltas of one key on one side.
#[derive(Clone, Debug, Default)]
pub struct KeyChange {
    pub seqs: Vec<i64>,
    /// Capture time of the newest delta, µs since the epoch.
    pub last_at: i64,
}

/// A captured TRUNCATE.
#[derive(Clone, Debug)]
pub struct TruncateEvent {
    pub seq: i64,
    pub plan: usize,
    /// The relation truncated: the replicated table or one of its partitions.
    pub relation: TableName,
    pub txid: i64,
    pub at: i64,
}

/// What one side's read transaction saw.
#[derive(Debug, Default)]
pub struct SideRead {
    /// Per plan: pending keys.
    pub changes: Vec<BTreeMap<Key, KeyChange>>,
    pub truncates: Vec<TruncateEvent>,
    /// Delta rows read (the batch cap counts these).
    pub delta_rows: usize,
    /// The cap stopped the read before every pending delta was read.
    pub cut: bool,
    /// Per plan (or empty): deltas of this side that an earlier batch applied
    /// and whose delete is not committed yet (see `Prefetch` in `mod.rs`): other
    /// sessions still see them, and must not take them for new changes.
    pub settled: Vec<Vec<i64>>,
}

impl SideRead {
    pub fn is_empty(&self) -> bool {
        self.truncates.is_empty() && self.changes.iter().all(BTreeMap::is_empty)
    }

    /// Every seq read for plan `i`, and those settled earlier.
    pub fn seen_of(&self, i: usize) -> Vec<i64> {
        let mut seqs = self.seqs_of(i);
        if let Some(s) = self.settled.get(i) {
            seqs.extend(s);
        }
        seqs
    }

    /// Every seq read for plan `i`.
    pub fn seqs_of(&self, i: usize) -> Vec<i64> {
        self.changes[i]
            .values()
            .flat_map(|c| c.seqs.iter().copied())
            .collect()
    }
}

/// Who won a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winner {
    Side(Side),
    /// Policy `ignore`: neither side is overwritten.
    Neither,
}

impl Winner {
    pub fn as_str(self) -> &'static str {
        match self {
            Winner::Side(Side::Left) => "left",
            Winner::Side(Side::Right) => "right",
            Winner::Neither => "none",
        }
    }
}

/// A conflict, as written to `pgduplex.conflicts`.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub plan: usize,
    pub key: Option<Key>,
    /// `row`, `truncate`.
    pub kind: &'static str,
    /// The rows as jsonb text, `None` where absent.
    pub rows: [Option<String>; 2],
    pub changed_at: [Option<i64>; 2],
    pub policy: ConflictPolicy,
    pub winner: Winner,
}

/// The decision of `policy` between a change on `side_a` at `at_a` and one on the
/// other side at `at_b`. Ties of `latest_wins` go to the left side.
pub fn decide(policy: ConflictPolicy, at: [i64; 2]) -> Winner {
    match policy {
        ConflictPolicy::LeftWins => Winner::Side(Side::Left),
        ConflictPolicy::RightWins => Winner::Side(Side::Right),
        ConflictPolicy::LatestWins => {
            if at[1] > at[0] {
                Winner::Side(Side::Right)
            } else {
                Winner::Side(Side::Left)
            }
        }
        ConflictPolicy::Ignore => Winner::Neither,
    }
}

/// How a TRUNCATE from the source is replayed on the target.
#[derive(Clone, Debug)]
pub enum TruncateAction {
    /// `TRUNCATE` of these relations (with their plans) in one statement (one
    /// source transaction).
    ///
    /// Both kinds keep, on the target, the keys the source holds now when it
    /// holds any (the apply then DELETEs, children first): rows that reached the
    /// source after its TRUNCATE from the target, in a cycle whose other
    /// direction (this one) rolled back, are on both sides and stay there.
    Truncate(Vec<(usize, TableName)>),
    /// `DELETE` of every row of `relation` (plan `plan` or one of its partitions)
    /// except `keep` (the target's own changes that won against the TRUNCATE).
    DeleteExcept {
        plan: usize,
        relation: TableName,
        keep: Vec<Key>,
    },
}

/// The work of one direction (source to target) in a cycle.
#[derive(Debug)]
pub struct Direction {
    pub source: Side,
    pub target: Side,
    /// Per plan: the keys whose source rows are written to the target.
    pub keys: Vec<Vec<Key>>,
    /// Per plan: the source's seqs consumed by this direction's apply (ledger,
    /// deleted on the source after the target commits).
    pub ledger: Vec<Vec<i64>>,
    /// The source's TRUNCATE seqs consumed by this direction.
    pub truncate_seqs: Vec<i64>,
    pub truncates: Vec<TruncateAction>,
    /// Per plan: the target's own seqs consumed by decisions (lost, ignored or
    /// identical), deleted in the target's apply transaction.
    pub own_consumed: Vec<Vec<i64>>,
    /// Truncate seqs of the target consumed by decisions (lost or ignored).
    pub own_truncates_consumed: Vec<i64>,
    /// Conflicts to log in the target's apply transaction.
    pub conflicts: Vec<Conflict>,
}

impl Direction {
    fn new(source: Side, n: usize) -> Self {
        Direction {
            source,
            target: source.other(),
            keys: vec![Vec::new(); n],
            ledger: vec![Vec::new(); n],
            truncate_seqs: Vec::new(),
            truncates: Vec::new(),
            own_consumed: vec![Vec::new(); n],
            own_truncates_consumed: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    /// Nothing to write and nothing to record on the target.
    pub fn is_idle(&self) -> bool {
        self.keys.iter().all(Vec::is_empty)
            && self.truncates.is_empty()
            && self.own_consumed.iter().all(Vec::is_empty)
            && self.own_truncates_consumed.is_empty()
            && self.conflicts.is_empty()
            && self.truncate_seqs.is_empty()
    }
}

/// Index of a side in the `[left, right]` arrays.
pub(crate) fn idx(side: Side) -> usize {
    match side {
        Side::Left => 0,
        Side::Right => 1,
    }
}

/// Keys as one text array per key column (the `ROWS FROM (unnest($1), ...)` form).
pub(crate) fn key_arrays(keys: &[Key], nkey: usize) -> Vec<Vec<String>> {
    (0..nkey)
        .map(|c| keys.iter().map(|k| k[c].clone()).collect())
        .collect()
}

/// Bind parameters from a slice of values.
pub(crate) fn sql_params<T: tokio_postgres::types::ToSql + Sync>(
    values: &[T],
) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Turns what both sides read into the work of both directions. `images` holds,
/// per plan, the rows (jsonb text, `None` = absent) of the keys pending on both
/// sides, as each side's read transaction sees them.
pub fn plan_directions(
    plans: &[TablePlan],
    reads: [&SideRead; 2],
    images: &[HashMap<Key, [Option<String>; 2]>],
) -> [Direction; 2] {
    let n = plans.len();
    let mut dirs = [
        Direction::new(Side::Left, n),
        Direction::new(Side::Right, n),
    ];
    let dropped = plan_truncates(plans, reads, &mut dirs);
    plan_keys(plans, reads, images, &dropped, &mut dirs);
    for d in &mut dirs {
        for k in &mut d.keys {
            k.sort();
        }
    }
    dirs
}

/// The TRUNCATEs each side read, decided before the keys: a TRUNCATE conflicts
/// with the other side's pending changes to the table (a TRUNCATE deletes every
/// row, so it meets every pending key). Returns `dropped[s][i]`: side s's pending keys of plan i are consumed (lost).
fn plan_truncates(
    plans: &[TablePlan],
    reads: [&SideRead; 2],
    dirs: &mut [Direction; 2],
) -> [Vec<bool>; 2] {
    let n = plans.len();
    let mut dropped = [vec![false; n], vec![false; n]];
    for s in [Side::Left, Side::Right] {
        let (src, tgt) = (reads[idx(s)], reads[idx(s.other())]);
        let mut group: Vec<(usize, TableName)> = Vec::new();
        let mut group_txid = None;
        let flush = |group: &mut Vec<(usize, TableName)>, dir: &mut Direction| {
            if !group.is_empty() {
                dir.truncates
                    .push(TruncateAction::Truncate(std::mem::take(group)));
            }
        };
        for ev in &src.truncates {
            let plan = &plans[ev.plan];
            let other_pending = &tgt.changes[ev.plan];
            if group_txid != Some(ev.txid) {
                flush(&mut group, &mut dirs[idx(s)]);
                group_txid = Some(ev.txid);
            }
            if other_pending.is_empty() {
                group.push((ev.plan, ev.relation.clone()));
                dirs[idx(s)].truncate_seqs.push(ev.seq);
                continue;
            }
            // Conflict with the other side's pending changes.
            let other_at = other_pending.values().map(|c| c.last_at).max();
            let mut at = [0; 2];
            at[idx(s)] = ev.at;
            at[idx(s.other())] = other_at.unwrap_or(i64::MIN);
            let winner = if other_pending.is_empty() {
                Winner::Side(s)
            } else {
                decide(plan.policy, at)
            };
            flush(&mut group, &mut dirs[idx(s)]);
            match winner {
                Winner::Side(w) if w == s => {
                    dirs[idx(s)].truncates.push(TruncateAction::DeleteExcept {
                        plan: ev.plan,
                        relation: ev.relation.clone(),
                        keep: Vec::new(),
                    });
                    dirs[idx(s)].truncate_seqs.push(ev.seq);
                    dropped[idx(s.other())][ev.plan] = true;
                }
                Winner::Side(_) => {
                    // The other side's changes win: it keeps those rows (and
                    // what the truncating side holds now) and loses the rest.
                    dirs[idx(s)].truncates.push(TruncateAction::DeleteExcept {
                        plan: ev.plan,
                        relation: ev.relation.clone(),
                        keep: other_pending.keys().cloned().collect(),
                    });
                    dirs[idx(s)].truncate_seqs.push(ev.seq);
                }
                Winner::Neither => {
                    // Neither side changes: the TRUNCATE is consumed on its own side.
                    dirs[idx(s.other())].own_truncates_consumed.push(ev.seq);
                    dropped[idx(s.other())][ev.plan] = true;
                }
            }
            if !other_pending.is_empty() {
                let mut changed_at = [None, None];
                changed_at[idx(s)] = Some(ev.at);
                changed_at[idx(s.other())] = other_at;
                let c = Conflict {
                    plan: ev.plan,
                    key: None,
                    kind: "truncate",
                    rows: [None, None],
                    changed_at,
                    policy: plan.policy,
                    winner,
                };
                dirs[0].conflicts.push(c.clone());
                dirs[1].conflicts.push(c);
            }
        }
        flush(&mut group, &mut dirs[idx(s)]);
    }
    dropped
}

/// The keys each side read, per direction: a key pending on one side only
/// travels from it; a key pending on both is a conflict unless both sides hold
/// the same row, decided by the table's policy. `dropped`: see
/// [`plan_truncates`].
fn plan_keys(
    plans: &[TablePlan],
    reads: [&SideRead; 2],
    images: &[HashMap<Key, [Option<String>; 2]>],
    dropped: &[Vec<bool>; 2],
    dirs: &mut [Direction; 2],
) {
    for (i, plan) in plans.iter().enumerate() {
        let (l, r) = (&reads[0].changes[i], &reads[1].changes[i]);
        for s in [Side::Left, Side::Right] {
            let (mine, theirs) = if s == Side::Left { (l, r) } else { (r, l) };
            if dropped[idx(s)][i] {
                // Lost against the other side's TRUNCATE: consumed on this side, in
                // the apply transaction that truncates it.
                let other = &mut dirs[idx(s.other())];
                other.own_consumed[i].extend(mine.values().flat_map(|c| c.seqs.iter().copied()));
                continue;
            }
            let dir = &mut dirs[idx(s)];
            for (key, change) in mine {
                if !theirs.contains_key(key) || dropped[idx(s.other())][i] {
                    dir.keys[i].push(key.clone());
                    dir.ledger[i].extend(&change.seqs);
                }
            }
        }
        if dropped[0][i] || dropped[1][i] {
            continue;
        }
        // Keys pending on both sides.
        for (key, lc) in l {
            let Some(rc) = r.get(key) else { continue };
            let rows = images
                .get(i)
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or([None, None]);
            if rows[0] == rows[1] {
                // Both sides hold the same row: not a conflict, nothing to write.
                dirs[0].own_consumed[i].extend(&rc.seqs);
                dirs[1].own_consumed[i].extend(&lc.seqs);
                continue;
            }
            let winner = decide(plan.policy, [lc.last_at, rc.last_at]);
            match winner {
                Winner::Side(w) => {
                    let (wc, lcs) = if w == Side::Left { (lc, rc) } else { (rc, lc) };
                    let dir = &mut dirs[idx(w)];
                    dir.keys[i].push(key.clone());
                    dir.ledger[i].extend(&wc.seqs);
                    dir.own_consumed[i].extend(&lcs.seqs);
                }
                Winner::Neither => {
                    dirs[0].own_consumed[i].extend(&rc.seqs);
                    dirs[1].own_consumed[i].extend(&lc.seqs);
                }
            }
            let c = Conflict {
                plan: i,
                key: Some(key.clone()),
                kind: "row",
                rows,
                changed_at: [Some(lc.last_at), Some(rc.last_at)],
                policy: plan.policy,
                winner,
            };
            dirs[0].conflicts.push(c.clone());
            dirs[1].conflicts.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_wins_ties_go_left() {
        assert_eq!(
            decide(ConflictPolicy::LatestWins, [5, 5]),
            Winner::Side(Side::Left)
        );
        assert_eq!(
            decide(ConflictPolicy::LatestWins, [5, 6]),
            Winner::Side(Side::Right)
        );
        assert_eq!(decide(ConflictPolicy::Ignore, [5, 6]), Winner::Neither);
    }
}
