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

use std::collections::{BTreeSet, HashMap, HashSet};

use pgduplex_config::Side;
use pgduplex_pg::catalog::ForeignKey;
use pgduplex_pg::params::param_rows;
use pgduplex_pg::quote_ident;
use tokio_postgres::{Client, Transaction};

use super::batch::{
    decide, idx, key_arrays, sql_params, Conflict, Direction, Key, SideRead, Winner,
};
use super::plan::TablePlan;

/// A foreign key between two replicated tables, or of a table to itself.
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

/// What the apply checks itself when it runs with `session_replication_role =
/// replica` (the server's foreign-key triggers do not fire then): it does what
/// those triggers would, so that a row the target changed after the read (a child
/// inserted under a parent this batch deletes, a parent deleted under a child this
/// batch inserts) cannot leave an orphan. A violation rolls the direction back;
/// the target's change is a delta the next cycle decides.
impl FkPlan {
    fn parent_types<'p>(&self, plans: &'p [TablePlan]) -> Option<Vec<&'p str>> {
        let parent = &plans[self.parent];
        self.parent_cols
            .iter()
            .map(|c| parent.column_type(c))
            .collect()
    }

    fn parent_exists(&self, plans: &[TablePlan]) -> String {
        format!(
            "EXISTS (SELECT 1 FROM {} p WHERE {})",
            plans[self.parent].name.quoted(),
            self.join()
        )
    }

    fn not_null(&self, alias: &str) -> String {
        self.child_cols
            .iter()
            .map(|c| format!("{alias}.{} IS NOT NULL", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The referenced values of the target's rows of the staged parent keys, as
    /// text (before the apply rewrites them).
    fn referenced_values(&self, plans: &[TablePlan]) -> String {
        let parent = &plans[self.parent];
        let cols = self
            .parent_cols
            .iter()
            .map(|c| format!("p.{}::pg_catalog.text", quote_ident(c)))
            .collect::<Vec<_>>();
        let not_null = self
            .parent_cols
            .iter()
            .map(|c| format!("p.{} IS NOT NULL", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "SELECT {} FROM {} p JOIN {} s ON {} WHERE {not_null}",
            cols.join(", "),
            parent.name.quoted(),
            parent.stage_temp(),
            parent.stage_key_join("p")
        )
    }

    /// A child row referencing one of the values `$1..` that no parent holds now.
    fn lost_children(&self, plans: &[TablePlan], types: &[&str]) -> String {
        let rows = param_rows(self.parent_cols.len());
        let on = self
            .child_cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("c.{} = u.a{}::{}", quote_ident(c), i + 1, types[i]))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "SELECT 1 FROM {} c JOIN {rows} ON {on} WHERE NOT {} LIMIT 1",
            plans[self.child].name.quoted(),
            self.parent_exists(plans)
        )
    }

    /// Locks the parents of the staged child rows `FOR KEY SHARE`, as the
    /// server's trigger does for an inserted child.
    fn lock_parents(&self, plans: &[TablePlan]) -> String {
        let child = &plans[self.child];
        format!(
            "SELECT 1 FROM {} p WHERE EXISTS (SELECT 1 FROM {} c JOIN {} s ON {} WHERE s.present AND {}) \
             FOR KEY SHARE OF p",
            plans[self.parent].name.quoted(),
            child.name.quoted(),
            child.stage_temp(),
            child.stage_key_join("c"),
            self.join()
        )
    }

    /// A staged child row whose parent is missing.
    fn missing_parents(&self, plans: &[TablePlan]) -> String {
        let child = &plans[self.child];
        format!(
            "SELECT 1 FROM {} c JOIN {} s ON {} WHERE s.present AND {} AND NOT {} LIMIT 1",
            child.name.quoted(),
            child.stage_temp(),
            child.stage_key_join("c"),
            self.not_null("c"),
            self.parent_exists(plans)
        )
    }
}

/// The referenced values, per foreign key, of the staged parent rows on the
/// target before the apply writes them; `None` where the parent is not staged.
pub async fn referenced_before(
    tx: &Transaction<'_>,
    fks: &[FkPlan],
    plans: &[TablePlan],
    staged: &[usize],
) -> Result<Vec<Option<Vec<Vec<String>>>>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(fks.len());
    for fk in fks {
        if !staged.contains(&fk.parent) || fk.parent_types(plans).is_none() {
            out.push(None);
            continue;
        }
        let rows = tx.query(&fk.referenced_values(plans), &[]).await?;
        let n = fk.parent_cols.len();
        let mut cols = vec![Vec::with_capacity(rows.len()); n];
        for r in rows {
            for (i, col) in cols.iter_mut().enumerate() {
                col.push(r.get::<_, String>(i));
            }
        }
        out.push(Some(cols));
    }
    Ok(out)
}

/// After the writes: the foreign key (child table name) that the apply would
/// break on the target, if any. Locks the staged children's parents first.
pub async fn violated(
    tx: &Transaction<'_>,
    fks: &[FkPlan],
    plans: &[TablePlan],
    staged: &[usize],
    before: &[Option<Vec<Vec<String>>>],
) -> Result<Option<String>, tokio_postgres::Error> {
    for (fk, values) in fks.iter().zip(before) {
        let Some(types) = fk.parent_types(plans) else {
            continue;
        };
        if staged.contains(&fk.child) {
            tx.execute(&fk.lock_parents(plans), &[]).await?;
            if tx
                .query_opt(&fk.missing_parents(plans), &[])
                .await?
                .is_some()
            {
                return Ok(Some(plans[fk.child].name.to_string()));
            }
        }
        if let Some(values) = values {
            if values.first().is_some_and(|v| !v.is_empty())
                && tx
                    .query_opt(&fk.lost_children(plans, &types), &sql_params(values))
                    .await?
                    .is_some()
            {
                return Ok(Some(plans[fk.child].name.to_string()));
            }
        }
    }
    Ok(None)
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

/// How many times the checks run over the whole batch at most: a key brought in
/// by one check (a parent, a child) is checked in the next round.
const MAX_ROUNDS: usize = 8;

/// The decisions of one [`resolve`]: moves of keys between the directions, and
/// who owns the keys that a conflict decided (later conflicts touching those keys
/// follow the same winner, so the rows of one conflict travel together).
struct Resolver<'a> {
    reads: [&'a SideRead; 2],
    owner: HashMap<(usize, Key), Side>,
    /// Keys of conflicts that `ignore` left alone: no later check moves them.
    left_alone: HashSet<(usize, Key)>,
    found: usize,
    changed: bool,
}

impl Resolver<'_> {
    fn seqs(&self, side: Side, i: usize, key: &Key) -> Vec<i64> {
        self.reads[idx(side)].changes[i]
            .get(key)
            .map(|c| c.seqs.clone())
            .unwrap_or_default()
    }

    fn at(&self, side: Side, i: usize, key: &Key) -> i64 {
        self.reads[idx(side)].changes[i]
            .get(key)
            .map_or(i64::MIN, |c| c.last_at)
    }

    /// `key` of plan `i` travels from `w` (w's current row, or its absence) to the
    /// other side; the other side's pending change of it is consumed there.
    fn send(&mut self, dirs: &mut [Direction; 2], w: Side, (i, key): (usize, &Key)) {
        let l = w.other();
        let lost = self.seqs(l, i, key);
        if drop_key(&mut dirs[idx(l)], i, key, &lost) {
            self.changed = true;
        }
        dirs[idx(w)].own_consumed[i].extend(&lost);
        if !dirs[idx(w)].keys[i].contains(key) {
            let mine = self.seqs(w, i, key);
            dirs[idx(w)].keys[i].push(key.clone());
            dirs[idx(w)].ledger[i].extend(&mine);
            dirs[idx(l)].own_consumed[i].retain(|s| !mine.contains(s));
            self.changed = true;
        }
    }

    /// Neither side's change of `key` travels (policy `ignore`); both are consumed.
    fn leave(&mut self, dirs: &mut [Direction; 2], i: usize, key: &Key) {
        for s in Side::BOTH {
            let seqs = self.seqs(s, i, key);
            if drop_key(&mut dirs[idx(s)], i, key, &seqs) {
                self.changed = true;
            }
            dirs[idx(s.other())].own_consumed[i].extend(&seqs);
        }
        self.left_alone.insert((i, key.clone()));
    }

    fn settled(&self, i: usize, key: &Key) -> bool {
        self.left_alone.contains(&(i, key.clone()))
    }

    /// The winner of a conflict between `a` and `b` (plan, key): the owner of a
    /// key an earlier conflict decided, else the policy.
    fn winner(
        &self,
        a: (usize, &Key),
        b: (usize, &Key),
        policy: pgduplex_config::ConflictPolicy,
        at: [i64; 2],
    ) -> Winner {
        let owned = |(i, k): (usize, &Key)| self.owner.get(&(i, k.clone())).copied();
        match owned(a).or_else(|| owned(b)) {
            Some(w) => Winner::Side(w),
            None => decide(policy, at),
        }
    }

    fn own(&mut self, winner: Winner, keys: [(usize, &Key); 2]) {
        if let Winner::Side(w) = winner {
            for (i, k) in keys {
                self.owner.insert((i, k.clone()), w);
            }
        }
    }

    fn contested(&self, side: Side, i: usize, key: &Key) -> bool {
        self.reads[idx(side)].changes[i].contains_key(key)
            || self.owner.contains_key(&(i, key.clone()))
    }
}

/// Removes `key` and the ledger entries `seqs` from `dir`; true if it was there.
fn drop_key(dir: &mut Direction, i: usize, key: &Key, seqs: &[i64]) -> bool {
    let before = dir.keys[i].len();
    dir.keys[i].retain(|k| k != key);
    dir.ledger[i].retain(|s| !seqs.contains(s));
    dir.keys[i].len() != before
}

/// Finds the foreign-key relations between the two directions' keys and rewrites
/// the directions: a parent or child that must travel with a key (a batch cut
/// between them, a cascade) is added to the same direction, and a real conflict
/// (the other side changed the related row) is decided by policy and logged.
/// Repeated until nothing changes, so the keys brought in are checked too.
/// `clients` are the sides' read transactions.
pub async fn resolve(
    fks: &[FkPlan],
    plans: &[TablePlan],
    reads: [&SideRead; 2],
    clients: [&Client; 2],
    dirs: &mut [Direction; 2],
) -> Result<usize, tokio_postgres::Error> {
    let mut r = Resolver {
        reads,
        owner: HashMap::new(),
        left_alone: HashSet::new(),
        found: 0,
        changed: false,
    };
    for round in 0..MAX_ROUNDS {
        r.changed = false;
        for fk in fks {
            check(&mut r, fk, plans, clients, dirs).await?;
        }
        if !r.changed {
            break;
        }
        if round + 1 == MAX_ROUNDS {
            tracing::debug!("foreign-key checks still moving keys after {MAX_ROUNDS} rounds; the apply checks the rest");
        }
    }
    if r.found > 0 {
        child_images(plans, clients, dirs).await?;
    }
    for d in dirs.iter_mut() {
        for k in &mut d.keys {
            k.sort();
            k.dedup();
        }
        for s in &mut d.own_consumed {
            s.sort_unstable();
            s.dedup();
        }
    }
    Ok(r.found)
}

/// Checks one foreign key between the two directions' keys, both ways.
async fn check(
    r: &mut Resolver<'_>,
    fk: &FkPlan,
    plans: &[TablePlan],
    clients: [&Client; 2],
    dirs: &mut [Direction; 2],
) -> Result<(), tokio_postgres::Error> {
    let relevant =
        (0..2).any(|d| !dirs[d].keys[fk.child].is_empty() || !dirs[d].keys[fk.parent].is_empty());
    if !relevant {
        return Ok(());
    }
    for s in Side::BOTH {
        deleted_parents(r, fk, plans, s, clients, dirs).await?;
        orphans(r, fk, plans, s, clients, dirs).await?;
    }
    Ok(())
}

/// Parents the source `s` removed that still have children on the target.
async fn deleted_parents(
    r: &mut Resolver<'_>,
    fk: &FkPlan,
    plans: &[TablePlan],
    s: Side,
    clients: [&Client; 2],
    dirs: &mut [Direction; 2],
) -> Result<(), tokio_postgres::Error> {
    let (child, parent) = (&plans[fk.child], &plans[fk.parent]);
    let t = s.other();
    let (src, tgt) = (clients[idx(s)], clients[idx(t)]);
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
            for (ck, pk) in pairs(tgt, &sql, &deleted, parent.key.len(), child.key.len()).await? {
                tracing::trace!(
                    "fk {}: {s} deletes parent {pk:?}, {t} has child {ck:?}; child sent by {s}: {}, pending on {t}: {}, owners: {:?} {:?}",
                    child.name,
                    dirs[idx(s)].keys[fk.child].contains(&ck),
                    r.contested(t, fk.child, &ck),
                    r.owner.get(&(fk.parent, pk.clone())),
                    r.owner.get(&(fk.child, ck.clone()))
                );
                if dirs[idx(s)].keys[fk.child].contains(&ck)
                    || r.settled(fk.child, &ck)
                    || r.settled(fk.parent, &pk)
                {
                    continue; // the source's own row of that child travels too
                }
                if !r.contested(t, fk.child, &ck) && !r.owner.contains_key(&(fk.parent, pk.clone()))
                {
                    // The target did not touch that child: the source's row of
                    // it (gone or pointing elsewhere, as a cascade or a batch
                    // cut between child and parent left it) travels along.
                    r.send(dirs, s, (fk.child, &ck));
                    continue;
                }
                let mut at = [0; 2];
                at[idx(s)] = r.at(s, fk.parent, &pk);
                at[idx(t)] = r.at(t, fk.child, &ck);
                let winner = r.winner((fk.parent, &pk), (fk.child, &ck), parent.policy, at);
                match winner {
                    // The delete wins: the target's child goes too.
                    Winner::Side(w) if w == s => r.send(dirs, s, (fk.child, &ck)),
                    // The child wins: the parent comes back to the source.
                    Winner::Side(_) => r.send(dirs, t, (fk.parent, &pk)),
                    Winner::Neither => {
                        r.leave(dirs, fk.parent, &pk);
                        r.leave(dirs, fk.child, &ck);
                    }
                }
                r.own(winner, [(fk.parent, &pk), (fk.child, &ck)]);
                r.found += 1;
                r.changed = true;
                log(dirs, fk.child, ck, parent.policy, winner, at);
            }
        }
    }
    Ok(())
}

/// Children the source `s` writes whose parent the target lacks.
async fn orphans(
    r: &mut Resolver<'_>,
    fk: &FkPlan,
    plans: &[TablePlan],
    s: Side,
    clients: [&Client; 2],
    dirs: &mut [Direction; 2],
) -> Result<(), tokio_postgres::Error> {
    let (child, parent) = (&plans[fk.child], &plans[fk.parent]);
    let t = s.other();
    let (src, tgt) = (clients[idx(s)], clients[idx(t)]);
    let sent_children = dirs[idx(s)].keys[fk.child].clone();
    if sent_children.is_empty() {
        return Ok(());
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
        if !on_target.contains(&pk) {
            tracing::trace!(
                "fk {}: {s} sends child {ck:?} of parent {pk:?} missing on {t}; parent sent by {s}: {}, pending on {t}: {}",
                child.name,
                dirs[idx(s)].keys[fk.parent].contains(&pk),
                r.contested(t, fk.parent, &pk)
            );
        }
        if on_target.contains(&pk)
            || dirs[idx(s)].keys[fk.parent].contains(&pk)
            || r.settled(fk.child, &ck)
            || r.settled(fk.parent, &pk)
        {
            continue;
        }
        if !r.contested(t, fk.parent, &pk) && !r.owner.contains_key(&(fk.child, ck.clone())) {
            // The target did not remove that parent: it is missing there
            // because the batch was cut before it; it travels along.
            r.send(dirs, s, (fk.parent, &pk));
            continue;
        }
        let mut at = [0; 2];
        at[idx(s)] = r.at(s, fk.child, &ck);
        at[idx(t)] = r.at(t, fk.parent, &pk);
        let winner = r.winner((fk.child, &ck), (fk.parent, &pk), child.policy, at);
        match winner {
            // The child wins: its parent goes back to the target.
            Winner::Side(w) if w == s => r.send(dirs, s, (fk.parent, &pk)),
            // The parent's removal wins: the target's row of the child (its
            // absence) goes to the source.
            Winner::Side(_) => r.send(dirs, t, (fk.child, &ck)),
            Winner::Neither => {
                r.leave(dirs, fk.child, &ck);
                r.leave(dirs, fk.parent, &pk);
            }
        }
        r.own(winner, [(fk.child, &ck), (fk.parent, &pk)]);
        r.found += 1;
        r.changed = true;
        log(dirs, fk.child, ck, child.policy, winner, at);
    }
    Ok(())
}

/// The child rows of the foreign-key conflicts as both read transactions see
/// them, for the conflict log.
async fn child_images(
    plans: &[TablePlan],
    clients: [&Client; 2],
    dirs: &mut [Direction; 2],
) -> Result<(), tokio_postgres::Error> {
    let mut wanted: HashMap<usize, BTreeSet<Key>> = HashMap::new();
    for c in &dirs[0].conflicts {
        if let (true, Some(key)) = (c.kind == "foreign_key", &c.key) {
            wanted.entry(c.plan).or_default().insert(key.clone());
        }
    }
    for (plan, keys) in wanted {
        let p = &plans[plan];
        let keys: Vec<Key> = keys.into_iter().collect();
        let arrays = key_arrays(&keys, p.key.len());
        let params = sql_params(&arrays);
        let sql = p.row_images();
        let mut images: [HashMap<Key, String>; 2] = Default::default();
        for (side, client) in clients.iter().enumerate() {
            for row in client.query(&sql, &params).await? {
                let key: Key = (0..p.key.len()).map(|i| row.get(i)).collect();
                images[side].insert(key, row.get(p.key.len()));
            }
        }
        for d in dirs.iter_mut() {
            for c in d.conflicts.iter_mut() {
                if c.kind == "foreign_key" && c.plan == plan {
                    if let Some(key) = &c.key {
                        c.rows = [images[0].get(key).cloned(), images[1].get(key).cloned()];
                    }
                }
            }
        }
    }
    Ok(())
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
