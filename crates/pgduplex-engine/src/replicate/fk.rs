//! Foreign keys between the sides' changes: a row referencing a row the other side
//! removed is a conflict, decided by policy like any other, never a batch that
//! fails for ever.
//!
//! Two shapes, seen from a direction source → target:
//!
//! * Orphan: the source's batch writes a child whose parent is absent on the
//!   target (the target deleted it). If the child side wins, the parent is written
//!   back to the target; if the parent side wins, the child is deleted on the
//!   source (the target's state of that key, absent, travels back).
//! * Blocked delete: the source deleted a parent that still has children on the
//!   target (rows only the target has). If the deleting side wins, those children
//!   are deleted on the target too; if the other side wins, the parent is written
//!   back to the source.
//!
//! Both moves are expressed as keys moving between the two directions (the apply
//! is state-based, so "delete on the source" is "send the target's absent row").
//! The same checks find the orphans that `session_replication_role = replica`
//! would let through silently.

use std::collections::BTreeSet;

use pgduplex_config::Side;
use pgduplex_pg::catalog::ForeignKey;
use pgduplex_pg::quote_ident;
use tokio_postgres::Client;

use super::batch::{
    decide, idx, key_arrays, sql_params, Conflict, Direction, Key, SideRead, Winner,
};
use super::plan::TablePlan;

/// A foreign key between two replicated tables (not a self-reference).
#[derive(Clone, Debug)]
pub struct FkPlan {
    pub child: usize,
    pub parent: usize,
    pub child_cols: Vec<String>,
    pub parent_cols: Vec<String>,
}

impl FkPlan {
    pub fn from_catalog(plans: &[TablePlan], fks: &[ForeignKey]) -> Vec<FkPlan> {
        fks.iter()
            .filter(|fk| fk.table != fk.references)
            .filter_map(|fk| {
                let child = plans.iter().position(|p| p.name == fk.table)?;
                let parent = plans.iter().position(|p| p.name == fk.references)?;
                Some(FkPlan {
                    child,
                    parent,
                    child_cols: fk.columns.clone(),
                    parent_cols: fk.referenced_columns.clone(),
                })
            })
            .collect()
    }

    fn join(&self) -> String {
        self.child_cols
            .iter()
            .zip(&self.parent_cols)
            .map(|(c, p)| format!("c.{} = p.{}", quote_ident(c), quote_ident(p)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

fn key_text(plan: &TablePlan, alias: &str) -> String {
    (0..plan.key.len())
        .map(|i| format!("{alias}.{}::pg_catalog.text", plan.key_col(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn pairs(
    client: &Client,
    sql: &str,
    keys: &[Key],
    nkey: usize,
    split: usize,
) -> Result<Vec<(Key, Key)>, tokio_postgres::Error> {
    let a = key_arrays(keys, nkey);
    let rows = client.query(sql, &sql_params(&a)).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let all: Vec<String> = (0..r.len()).map(|i| r.get(i)).collect();
            (all[..split].to_vec(), all[split..].to_vec())
        })
        .collect())
}

async fn existing(
    client: &Client,
    plan: &TablePlan,
    keys: &[Key],
) -> Result<BTreeSet<Key>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(BTreeSet::new());
    }
    let sql = format!(
        "SELECT {} FROM {} t JOIN {}",
        key_text(plan, "t"),
        plan.name.quoted(),
        plan.key_param_join("t")
    );
    Ok(pairs(client, &sql, keys, plan.key.len(), plan.key.len())
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

/// Moves keys of plan `i` between the directions: `key` leaves `from` (its seqs
/// become consumed on its own side) unless `keep_in_from`, and is added to `to`.
fn take_seqs(read: &SideRead, i: usize, key: &Key) -> Vec<i64> {
    read.changes[i]
        .get(key)
        .map(|c| c.seqs.clone())
        .unwrap_or_default()
}

fn remove_key(dir: &mut Direction, i: usize, key: &Key, seqs: &[i64]) -> bool {
    let before = dir.keys[i].len();
    dir.keys[i].retain(|k| k != key);
    dir.ledger[i].retain(|s| !seqs.contains(s));
    dir.keys[i].len() != before
}

fn add_key(dir: &mut Direction, i: usize, key: &Key) {
    if !dir.keys[i].contains(key) {
        dir.keys[i].push(key.clone());
    }
}

/// Finds foreign-key conflicts between the two directions and rewrites them by
/// policy. `clients` are the sides' read transactions.
pub async fn resolve(
    fks: &[FkPlan],
    plans: &[TablePlan],
    reads: [&SideRead; 2],
    clients: [&Client; 2],
    dirs: &mut [Direction; 2],
    touched: &mut Vec<usize>,
) -> Result<usize, tokio_postgres::Error> {
    let mut found = 0;
    for fk in fks {
        let relevant = (0..2)
            .any(|d| !dirs[d].keys[fk.child].is_empty() || !dirs[d].keys[fk.parent].is_empty());
        if !relevant {
            continue;
        }
        // The checks read both tables in both read transactions.
        touched.extend([fk.child, fk.parent]);
        let (child, parent) = (&plans[fk.child], &plans[fk.parent]);
        for s in [Side::Left, Side::Right] {
            let t = s.other();
            let (src, tgt) = (clients[idx(s)], clients[idx(t)]);
            let mut handled: BTreeSet<Key> = BTreeSet::new();

            // Blocked deletes: parents the source removed, children on the target.
            let sent_parents = dirs[idx(s)].keys[fk.parent].clone();
            if !sent_parents.is_empty() {
                let present = existing(src, parent, &sent_parents).await?;
                let deleted: Vec<Key> = sent_parents
                    .into_iter()
                    .filter(|k| !present.contains(k))
                    .collect();
                if !deleted.is_empty() {
                    let sql = format!(
                        "SELECT {}, {} FROM {} p JOIN {} JOIN {} c ON {}",
                        key_text(child, "c"),
                        key_text(parent, "p"),
                        parent.name.quoted(),
                        parent.key_param_join("p"),
                        child.name.quoted(),
                        fk.join()
                    );
                    let found_pairs =
                        pairs(tgt, &sql, &deleted, parent.key.len(), child.key.len()).await?;
                    for (ck, pk) in found_pairs {
                        if dirs[idx(s)].keys[fk.child].contains(&ck) {
                            continue; // the source's own change of that child goes first
                        }
                        found += 1;
                        handled.insert(pk.clone());
                        let s_at = reads[idx(s)].changes[fk.parent]
                            .get(&pk)
                            .map_or(i64::MIN, |c| c.last_at);
                        let t_at = reads[idx(t)].changes[fk.child]
                            .get(&ck)
                            .map_or(i64::MIN, |c| c.last_at);
                        let mut at = [0; 2];
                        at[idx(s)] = s_at;
                        at[idx(t)] = t_at;
                        let winner = decide(parent.policy, at);
                        let t_child_seqs = take_seqs(reads[idx(t)], fk.child, &ck);
                        let s_parent_seqs = take_seqs(reads[idx(s)], fk.parent, &pk);
                        match winner {
                            Winner::Side(w) if w == s => {
                                // The delete wins: the target's child goes too.
                                add_key(&mut dirs[idx(s)], fk.child, &ck);
                                remove_key(&mut dirs[idx(t)], fk.child, &ck, &t_child_seqs);
                                dirs[idx(s)].own_consumed[fk.child].extend(&t_child_seqs);
                            }
                            _ => {
                                // The child wins (or ignore): the parent stays.
                                remove_key(&mut dirs[idx(s)], fk.parent, &pk, &s_parent_seqs);
                                dirs[idx(t)].own_consumed[fk.parent].extend(&s_parent_seqs);
                                if winner != Winner::Neither {
                                    add_key(&mut dirs[idx(t)], fk.parent, &pk);
                                } else {
                                    remove_key(&mut dirs[idx(t)], fk.child, &ck, &t_child_seqs);
                                    dirs[idx(s)].own_consumed[fk.child].extend(&t_child_seqs);
                                }
                            }
                        }
                        log(dirs, fk.child, ck, parent.policy, winner, at);
                    }
                }
            }

            // Orphans: children the source writes whose parent the target lacks.
            let sent_children = dirs[idx(s)].keys[fk.child].clone();
            if sent_children.is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT {}, {} FROM {} c JOIN {} JOIN {} p ON {}",
                key_text(child, "c"),
                key_text(parent, "p"),
                child.name.quoted(),
                child.key_param_join("c"),
                parent.name.quoted(),
                fk.join()
            );
            let refs = pairs(src, &sql, &sent_children, child.key.len(), child.key.len()).await?;
            let parent_keys: Vec<Key> = refs
                .iter()
                .map(|(_, p)| p.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let on_target = existing(tgt, parent, &parent_keys).await?;
            for (ck, pk) in refs {
                if on_target.contains(&pk)
                    || handled.contains(&pk)
                    || dirs[idx(s)].keys[fk.parent].contains(&pk)
                {
                    continue;
                }
                found += 1;
                let s_at = reads[idx(s)].changes[fk.child]
                    .get(&ck)
                    .map_or(i64::MIN, |c| c.last_at);
                let t_at = reads[idx(t)].changes[fk.parent]
                    .get(&pk)
                    .map_or(i64::MIN, |c| c.last_at);
                let mut at = [0; 2];
                at[idx(s)] = s_at;
                at[idx(t)] = t_at;
                let winner = decide(child.policy, at);
                let s_child_seqs = take_seqs(reads[idx(s)], fk.child, &ck);
                let t_parent_seqs = take_seqs(reads[idx(t)], fk.parent, &pk);
                match winner {
                    Winner::Side(w) if w == s => {
                        // The child wins: its parent goes back to the target.
                        add_key(&mut dirs[idx(s)], fk.parent, &pk);
                        remove_key(&mut dirs[idx(t)], fk.parent, &pk, &t_parent_seqs);
                        dirs[idx(s)].own_consumed[fk.parent].extend(&t_parent_seqs);
                    }
                    _ => {
                        // The parent's removal wins (or ignore): the child does not travel.
                        remove_key(&mut dirs[idx(s)], fk.child, &ck, &s_child_seqs);
                        dirs[idx(t)].own_consumed[fk.child].extend(&s_child_seqs);
                        if winner != Winner::Neither {
                            add_key(&mut dirs[idx(t)], fk.child, &ck);
                        } else {
                            remove_key(&mut dirs[idx(t)], fk.parent, &pk, &t_parent_seqs);
                            dirs[idx(s)].own_consumed[fk.parent].extend(&t_parent_seqs);
                        }
                    }
                }
                log(dirs, fk.child, ck, child.policy, winner, at);
            }
        }
    }
    if found > 0 {
        for d in dirs.iter_mut() {
            for k in &mut d.keys {
                k.sort();
                k.dedup();
            }
        }
    }
    Ok(found)
}

fn log(
    dirs: &mut [Direction; 2],
    plan: usize,
    key: Key,
    policy: pgduplex_config::ConflictPolicy,
    winner: Winner,
    at: [i64; 2],
) {
    let c = Conflict {
        plan,
        key: Some(key),
        kind: "foreign_key",
        rows: [None, None],
        changed_at: at.map(|a| (a != i64::MIN).then_some(a)),
        policy,
        winner,
    };
    dirs[0].conflicts.push(c.clone());
    dirs[1].conflicts.push(c);
}
