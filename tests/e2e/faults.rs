//! Faults: the daemon runs as a child process while seeded random workloads write on
//! both sides, and is stopped, killed, doubled, cut off from its servers or has a
//! server crash under it. Whatever happened, once the writers stop and the daemon
//! drains, both databases hold the same rows, nothing committed is missing, no
//! delta is left pending and the ledger is empty.
//!
//! Every workload writes a `journal` table with keys of its own (never conflicting,
//! never deleted), and remembers which of those inserts committed: that proves "no
//! loss" beyond "both sides agree".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgduplex_testkit::db::quote_literal;
use pgduplex_testkit::server::percent_encode;
use pgduplex_testkit::{Proxy, ServerOptions, TestDb, TestPair};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls};

use crate::support::*;

const SCHEMA: &str = "
    create table parent (id int primary key, name text, note text);
    create table child (id int primary key, parent_id int references parent (id), v text, big text);
    create table item (k text primary key, n int, payload text);
    create table journal (side text, task int, n int, payload text, primary key (side, task, n));";

/// `[replication]` of every test here: the default policy, a short poll interval.
const REPLICATION: &str = "[replication]\nconflict = \"left_wins\"\npoll_interval_ms = 20\n";

/// pgduplex's advisory lock class ("pgdx" in ASCII).
const LOCK_CLASS: i64 = pgduplex_pg::session::LOCK_CLASS as i64;

// ---------------------------------------------------------------------------
// The daemon as a child process
// ---------------------------------------------------------------------------

/// Daemon logs of one test; printed (tails) when the test panics.
struct Logs {
    dir: tempfile::TempDir,
    label: String,
    files: std::sync::Mutex<Vec<PathBuf>>,
}

impl Logs {
    fn new(label: impl Into<String>) -> Logs {
        Logs {
            dir: tempfile::tempdir().expect("temp dir"),
            label: label.into(),
            files: Default::default(),
        }
    }

    fn next(&self, name: &str) -> PathBuf {
        let mut files = self.files.lock().unwrap();
        let path = self.dir.path().join(format!("{}-{name}.log", files.len()));
        files.push(path.clone());
        path
    }

    fn dump(&self) -> String {
        let mut out = String::new();
        for f in self.files.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(60);
            out.push_str(&format!(
                "--- {} ({} lines, last {})\n",
                f.file_name().unwrap().to_string_lossy(),
                lines.len(),
                lines.len() - from
            ));
            for l in &lines[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== daemon logs of {} =====\n{}", self.label, self.dump());
            if std::env::var_os("PGDUPLEX_FAULT_KEEP_LOGS").is_some() {
                let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
                eprintln!("daemon logs kept in {}", dir.keep().display());
            }
        }
    }
}

/// `pgduplex replicate <extra>` as the kit's daemon handle, its log kept in `logs`
/// under `name`, at the level `PGDUPLEX_FAULT_LOG` says (info by default).
fn replicate(config: &Path, logs: &Logs, name: &str, extra: &[&str]) -> DaemonCommand {
    daemon(config, &["replicate"])
        .args(extra)
        .log_file(logs.next(name))
        .log_filter(&std::env::var("PGDUPLEX_FAULT_LOG").unwrap_or_else(|_| "info".into()))
}

/// `pgduplex replicate`, started.
fn spawn(config: &Path, logs: &Logs, name: &str) -> Daemon {
    replicate(config, logs, name, &[]).start()
}

/// SIGTERM; the daemon must exit 0 within 10 s. Returns how long it took.
async fn stop(daemon: &mut Daemon) -> Duration {
    let t = Instant::now();
    let status = daemon.terminate(Duration::from_secs(10)).await;
    let took = t.elapsed();
    assert!(
        status.success(),
        "daemon exited with {status} after SIGTERM; log:\n{}",
        daemon.log()
    );
    took
}

// ---------------------------------------------------------------------------
// The random workload
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct WorkloadOptions {
    tasks_per_side: usize,
    /// Random pause of 0..=pause_ms between statements.
    pause_ms: u64,
    /// TRUNCATEs per 1000 statements.
    truncate_per_mille: u32,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            tasks_per_side: 2,
            pause_ms: 2,
            truncate_per_mille: 4,
        }
    }
}

/// What one writer did. Journal rows are `(side, task, n)`.
#[derive(Debug, Default)]
struct WriterReport {
    side: &'static str,
    task: i32,
    ok: u64,
    failed: u64,
    connects: u64,
    /// Journal `n`s whose insert surely committed.
    committed: Vec<i32>,
    /// Journal `n`s whose commit is unknown (connection lost during it).
    maybe: Vec<i32>,
}

struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<WriterReport>>,
    seed: u64,
}

impl Workload {
    fn start(pair: &TestPair, seed: u64, opts: WorkloadOptions) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (s, (side, url)) in [("left", pair.left.url()), ("right", pair.right.url())]
            .into_iter()
            .enumerate()
        {
            for t in 0..opts.tasks_per_side {
                let task_seed = seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add((s * 100 + t) as u64);
                tasks.push(tokio::spawn(writer(
                    url.clone(),
                    side,
                    t as i32,
                    task_seed,
                    opts,
                    stop.clone(),
                )));
            }
        }
        Workload { stop, tasks, seed }
    }

    async fn stop(self, pair: &TestPair) -> Vec<WriterReport> {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        for t in self.tasks {
            match tokio::time::timeout(Duration::from_secs(30), t).await {
                Ok(r) => out.push(r.expect("writer task")),
                Err(_) => panic!(
                    "seed {}: a writer is stuck 30 s after the stop; {}",
                    self.seed,
                    Sessions(pair)
                ),
            }
        }
        let ok: u64 = out.iter().map(|r| r.ok).sum();
        let failed: u64 = out.iter().map(|r| r.failed).sum();
        let journal: usize = out.iter().map(|r| r.committed.len()).sum();
        eprintln!(
            "workload seed {}: {ok} statements committed, {failed} failed, {journal} journal rows",
            self.seed
        );
        assert!(
            ok > 50,
            "seed {}: the workload hardly ran ({ok} ok, {failed} failed): {out:?}",
            self.seed
        );
        out
    }
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

const PIECES: &[&str] = &[
    "a", "b", "z", " ", "\t", "\n", "\\", "\\N", "'", "\"", ",", "é", "漢", "NULL", "0",
];

/// An SQL expression for a text value: NULL, 100 kB, or a short awkward string.
fn text_expr(rng: &mut StdRng) -> String {
    match rng.gen_range(0..25) {
        0..=2 => "NULL".into(),
        3 => "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3125))".into(),
        4 => "''".into(),
        _ => {
            let n = rng.gen_range(1..10);
            let s: String = (0..n)
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect();
            quote_literal(&s)
        }
    }
}

const ANY_PARENT: &str = "(SELECT id FROM parent ORDER BY random() LIMIT 1)";

/// One random statement; `journal` gets the `n` of a journal insert.
fn statement(
    rng: &mut StdRng,
    side: &str,
    task: i32,
    next_n: &mut i32,
    journal: &mut Vec<i32>,
    opts: &WorkloadOptions,
) -> String {
    let pid = |rng: &mut StdRng| rng.gen_range(1..=40);
    let cid = |rng: &mut StdRng| rng.gen_range(1..=80);
    let key = |rng: &mut StdRng| quote_literal(&format!("k{}", rng.gen_range(0..60)));
    if rng.gen_range(0..1000) < opts.truncate_per_mille {
        return if rng.gen_bool(0.7) {
            "TRUNCATE item".into()
        } else {
            "TRUNCATE child".into()
        };
    }
    match rng.gen_range(0..22) {
        0 | 1 => format!(
            "INSERT INTO parent (id, name, note) VALUES ({}, {}, {})",
            pid(rng),
            text_expr(rng),
            text_expr(rng)
        ),
        2 => format!(
            "UPDATE parent SET name = {} WHERE id = {}",
            text_expr(rng),
            pid(rng)
        ),
        3 => format!(
            "UPDATE parent SET note = {}, name = {} WHERE id = {}",
            text_expr(rng),
            text_expr(rng),
            pid(rng)
        ),
        4 => format!("DELETE FROM parent WHERE id = {}", pid(rng)),
        5 => format!(
            "UPDATE parent SET id = {} WHERE id = {}",
            pid(rng),
            pid(rng)
        ),
        6 | 7 => format!(
            "INSERT INTO child (id, parent_id, v, big) VALUES ({}, {ANY_PARENT}, {}, {})",
            cid(rng),
            text_expr(rng),
            text_expr(rng)
        ),
        8 => format!(
            "UPDATE child SET v = {}, big = {} WHERE id = {}",
            text_expr(rng),
            text_expr(rng),
            cid(rng)
        ),
        9 => format!(
            "UPDATE child SET parent_id = {ANY_PARENT} WHERE id = {}",
            cid(rng)
        ),
        10 => format!("DELETE FROM child WHERE id = {}", cid(rng)),
        11 => format!("UPDATE child SET id = {} WHERE id = {}", cid(rng), cid(rng)),
        12 | 13 => format!(
            "INSERT INTO item VALUES ({}, {}, {}) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n, payload = EXCLUDED.payload",
            key(rng),
            if rng.gen_bool(0.1) { "NULL".to_string() } else { rng.gen_range(-5..1000).to_string() },
            text_expr(rng)
        ),
        14 => {
            let (a, b) = (key(rng), key(rng));
            format!("UPDATE item SET n = n + 1 WHERE k BETWEEN LEAST({a}, {b}) AND GREATEST({a}, {b})")
        }
        15 => format!("DELETE FROM item WHERE k = {}", key(rng)),
        16 => format!("UPDATE item SET k = {} WHERE k = {}", key(rng), key(rng)),
        17 => format!("DELETE FROM item WHERE n % 11 = {}", rng.gen_range(0..11)),
        18 => {
            // A swap of two keys in one statement (fails on a unique violation
            // half of the time; that is fine).
            let (a, b) = (key(rng), key(rng));
            format!("UPDATE item SET k = CASE WHEN k = {a} THEN {b} ELSE {a} END WHERE k IN ({a}, {b})")
        }
        19 => {
            let p = pid(rng);
            format!("DELETE FROM child WHERE parent_id = {p}; DELETE FROM parent WHERE id = {p}")
        }
        _ => {
            let n = *next_n;
            *next_n += 1;
            journal.push(n);
            format!(
                "INSERT INTO journal VALUES ({}, {task}, {n}, {})",
                quote_literal(side),
                text_expr(rng)
            )
        }
    }
}

async fn writer(
    url: String,
    side: &'static str,
    task: i32,
    seed: u64,
    opts: WorkloadOptions,
    stop: Arc<AtomicBool>,
) -> WriterReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rep = WriterReport {
        side,
        task,
        ..WriterReport::default()
    };
    let mut next_n = 0;
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match client.take() {
            Some(c) if !c.is_closed() => c,
            _ => match connect(&url).await {
                Ok(c) => {
                    rep.connects += 1;
                    c
                }
                Err(_) => {
                    // The server is away (restarting, cut off): try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let mut journal = Vec::new();
        let sql = if rng.gen_bool(0.15) {
            let k = rng.gen_range(2..=4);
            let body: Vec<String> = (0..k)
                .map(|_| statement(&mut rng, side, task, &mut next_n, &mut journal, &opts))
                .collect();
            format!("BEGIN; {}; COMMIT", body.join("; "))
        } else {
            statement(&mut rng, side, task, &mut next_n, &mut journal, &opts)
        };
        match c.batch_execute(&sql).await {
            Ok(()) => {
                rep.ok += 1;
                rep.committed.extend(journal);
            }
            Err(e) => {
                rep.failed += 1;
                let lost_connection = c.is_closed()
                    || e.code()
                        .is_none_or(|s| s.code().starts_with("57") || s.code().starts_with("08"));
                if lost_connection {
                    rep.maybe.extend(journal);
                } else {
                    let _ = c.batch_execute("ROLLBACK").await;
                }
            }
        }
        client = Some(c);
        if opts.pause_ms > 0 {
            let ms = rng.gen_range(0..=opts.pause_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    rep
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// The other sessions of both databases, for messages; read when formatted.
struct Sessions<'a>(&'a TestPair);

impl std::fmt::Display for Sessions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sessions on the left:\n{}\nsessions on the right:\n{}",
            sessions(&self.0.left),
            sessions(&self.0.right)
        )
    }
}

/// Waits until neither side has pending deltas (the running daemon drained them).
async fn wait_drained(pair: &TestPair, label: &str) {
    let (l, r) = clients(pair).await;
    let last = std::cell::Cell::new((0, 0));
    let what = format!("{label}: nothing pending on either side");
    wait_for(
        Duration::from_secs(60),
        Drained {
            what: &what,
            last: &last,
            pair,
        },
        || async {
            let seen = (pending(&l).await, pending(&r).await);
            last.set(seen);
            seen == (0, 0)
        },
    )
    .await;
}

/// [`wait_drained`]'s description: what was last seen pending, and the sessions.
struct Drained<'a> {
    what: &'a str,
    last: &'a std::cell::Cell<(i64, i64)>,
    pair: &'a TestPair,
}

impl std::fmt::Display for Drained<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (l, r) = self.last.get();
        write!(
            f,
            "{} (last seen: {l} pending on the left, {r} on the right)\n{}",
            self.what,
            Sessions(self.pair)
        )
    }
}

/// Journal rows on `db` are exactly the committed ones (plus possibly some whose
/// commit was unknown).
async fn check_journal(db: &TestDb, name: &str, reports: &[WriterReport]) -> Vec<String> {
    let c = db.client().await.unwrap();
    let have: BTreeSet<(String, i32, i32)> = c
        .query("SELECT side, task, n FROM journal", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut problems = Vec::new();
    let mut allowed = BTreeSet::new();
    for rep in reports {
        for &n in &rep.committed {
            let k = (rep.side.to_string(), rep.task, n);
            if !have.contains(&k) {
                problems.push(format!("{name}: committed journal row {k:?} is missing"));
            }
            allowed.insert(k);
        }
        for &n in &rep.maybe {
            allowed.insert((rep.side.to_string(), rep.task, n));
        }
    }
    for k in have.difference(&allowed) {
        if !k.0.starts_with("marker") {
            problems.push(format!("{name}: journal row {k:?} was never committed"));
        }
    }
    problems
}

async fn orphans(c: &Client) -> Vec<String> {
    c.query(
        "SELECT c.id::text || ' -> ' || c.parent_id::text FROM child c \
          WHERE c.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.parent_id) \
          ORDER BY c.id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The kit's convergence check (both sides identical, nothing pending on either side,
/// both ledgers empty), then no loss: every journal row a writer saw commit is on both
/// sides, and no other.
async fn assert_converged_without_loss(pair: &TestPair, label: &str, reports: &[WriterReport]) {
    write_audit(pair, label).await;
    assert_converged(pair).await;
    let mut problems = check_journal(&pair.left, "left", reports).await;
    problems.extend(check_journal(&pair.right, "right", reports).await);
    assert!(
        problems.is_empty(),
        "{label}: journal problems:\n  {}",
        problems.join("\n  ")
    );
    let (l, _) = clients(pair).await;
    let row = l
        .query_one(
            "SELECT (SELECT count(*) FROM parent), (SELECT count(*) FROM child), \
                    (SELECT count(*) FROM item), (SELECT count(*) FROM journal)",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<i64> = (0..4).map(|i| row.get(i)).collect();
    eprintln!("{label}: converged; rows parent/child/item/journal = {counts:?}");
}

/// No child references a parent missing on its side (the schema's foreign key
/// holds on both sides, though the apply may run with replica role).
async fn assert_no_orphans(pair: &TestPair, label: &str) {
    let (l, r) = clients(pair).await;
    let (ol, or) = (orphans(&l).await, orphans(&r).await);
    if !(ol.is_empty() && or.is_empty()) {
        write_audit(pair, label).await;
    }
    assert!(
        ol.is_empty() && or.is_empty(),
        "{label}: children whose parent does not exist: left {ol:?}, right {or:?}\n--- last conflicts logged (left):\n{}",
        last_conflicts(&l).await
    );
}

/// With `PGDUPLEX_FAULT_AUDIT=DIR`: every row change on both sides, the daemon's
/// included, is logged to `pgduplex.test_audit` (not replicated) and written to DIR
/// before the final convergence check and when orphans are found. A debugging aid.
const AUDIT: &str = "
    create table pgduplex.test_audit (n bigserial primary key, at timestamptz default clock_timestamp(), tbl text, op text,
        applying text, old jsonb, new jsonb, xid bigint default txid_current());
    create function pgduplex.test_audit_fn() returns trigger language plpgsql as $$ begin
        insert into pgduplex.test_audit (tbl, op, applying, old, new) values (TG_TABLE_NAME, TG_OP,
            current_setting('pgduplex.applying', true),
            case when TG_OP in ('UPDATE', 'DELETE') then to_jsonb(OLD) end,
            case when TG_OP in ('UPDATE', 'INSERT') then to_jsonb(NEW) end);
        return null; end $$;
    create trigger audit after insert or update or delete on parent for each row execute function pgduplex.test_audit_fn();
    create trigger audit after insert or update or delete on child for each row execute function pgduplex.test_audit_fn();
    create trigger audit after insert or update or delete on item for each row execute function pgduplex.test_audit_fn();
    create trigger audit_t after truncate on child for each statement execute function pgduplex.test_audit_fn();
    create trigger audit_t after truncate on item for each statement execute function pgduplex.test_audit_fn();
    alter table parent enable always trigger audit;
    alter table child enable always trigger audit;
    alter table item enable always trigger audit;
    alter table child enable always trigger audit_t;
    alter table item enable always trigger audit_t;";

async fn write_audit(pair: &TestPair, label: &str) {
    let Ok(dir) = std::env::var("PGDUPLEX_FAULT_AUDIT") else {
        return;
    };
    let (l, r) = clients(pair).await;
    for (side, c) in [("left", &l), ("right", &r)] {
        let rows = c
            .query(
                "SELECT n || ' ' || at || ' ' || xid || ' ' || tbl || ' ' || op || ' ' || coalesce(applying, '-') \
                   || ' old=' || coalesce(old::text, '-') || ' new=' || coalesce(new::text, '-') FROM pgduplex.test_audit ORDER BY n",
                &[],
            )
            .await
            .unwrap();
        let text: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let path = format!("{dir}/audit-{}-{side}.txt", label.replace(' ', "-"));
        std::fs::write(&path, text.join("\n")).unwrap();
        eprintln!("audit written to {path}");
    }
}

/// A policy and who the daemon connects as.
#[derive(Clone, Copy, Debug)]
struct Variant {
    policy: &'static str,
    /// A plain role owning the tables (the server checks foreign keys on
    /// apply) instead of a superuser (replica role: pgduplex checks them).
    owner: bool,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        policy: "left_wins",
        owner: false,
    },
    Variant {
        policy: "latest_wins",
        owner: true,
    },
    Variant {
        policy: "right_wins",
        owner: false,
    },
];

async fn setup(pair: &TestPair, cfg_urls: Option<(&str, &str)>) -> ConfigFile {
    setup_with(pair, cfg_urls, VARIANTS[0]).await
}

async fn setup_with(pair: &TestPair, cfg_urls: Option<(&str, &str)>, v: Variant) -> ConfigFile {
    pair.execute_both(SCHEMA).await.unwrap();
    let mut replication = REPLICATION.replace("left_wins", v.policy);
    if std::env::var_os("PGDUPLEX_FAULT_AUDIT").is_some() {
        replication.push_str("allow_apply_triggers = true\n");
    }
    let cfg = match cfg_urls {
        Some((l, r)) => ConfigFile::for_urls(l, r, &replication),
        None if v.owner => config_as_owner(pair, &replication).await,
        None => ConfigFile::for_pair(pair, &replication),
    };
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    if std::env::var_os("PGDUPLEX_FAULT_AUDIT").is_some() {
        pair.execute_both(AUDIT).await.unwrap();
    }
    cfg
}

/// `replicate --until-idle`, which must exit 0 within two minutes.
async fn until_idle(cfg: &ConfigFile, logs: &Logs, label: &str) {
    let mut run = replicate(&cfg.path, logs, "until-idle", &["--until-idle"]).start();
    let status = run.wait_exit(Duration::from_secs(120)).await;
    assert!(
        status.success(),
        "{label}: replicate --until-idle exited with {status}:\n{}",
        run.log()
    );
}

fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("PGDUPLEX_FAULT_SEEDS") {
        Ok(s) => s
            .split(',')
            .map(|x| x.trim().parse().expect("PGDUPLEX_FAULT_SEEDS: u64s"))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// 1. Concurrent random writes on both sides, TRUNCATEs included, while the
/// daemon runs converge, with no orphan on either side: under three policies,
/// with the apply as a superuser (replica role: pgduplex checks foreign keys)
/// and as the tables' owner (the server checks them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_random_workloads_converge() {
    for seed in seeds(&[1, 2, 3]) {
        let v = VARIANTS[(seed % 3) as usize];
        let label = format!(
            "seed {seed} ({}, {})",
            v.policy,
            if v.owner { "table owner" } else { "superuser" }
        );
        let pair = TestPair::new().await;
        let cfg = setup_with(&pair, None, v).await;
        let logs = Logs::new(&label);
        let mut daemon = spawn(&cfg.path, &logs, "daemon");
        daemon
            .wait_log("replicating", 1, Duration::from_secs(60))
            .await;
        let workload = Workload::start(&pair, seed, WorkloadOptions::default());
        tokio::time::sleep(Duration::from_secs(3)).await; // the workload's duration
        let reports = workload.stop(&pair).await;
        let took = stop(&mut daemon).await;
        eprintln!("{label}: daemon stopped {took:?} after SIGTERM");
        until_idle(&cfg, &logs, &label).await;
        assert_converged_without_loss(&pair, &label, &reports).await;
        assert_no_orphans(&pair, &label).await;
    }
}

/// 2. kill -9 at random moments, restarting each time: nothing lost, nothing
/// duplicated, nothing left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing() {
    for seed in seeds(&[11]) {
        let label = format!("seed {seed}");
        let pair = TestPair::new().await;
        let cfg = setup(&pair, None).await;
        let logs = Logs::new(&label);
        let mut rng = StdRng::seed_from_u64(seed);
        let workload = Workload::start(&pair, seed, WorkloadOptions::default());
        let mut daemon = spawn(&cfg.path, &logs, "daemon");
        for k in 0..6 {
            if k % 2 == 0 {
                // Kill while replicating...
                daemon
                    .wait_log("replicating", 1, Duration::from_secs(60))
                    .await;
            }
            // ... or anywhere from the start (prepare, lock, recovery).
            let ms = rng.gen_range(100..=700);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            assert!(
                daemon.running(),
                "{label}: daemon exited by itself:\n{}",
                daemon.log()
            );
            daemon.kill();
            daemon = spawn(&cfg.path, &logs, "daemon");
        }
        daemon
            .wait_log("replicating", 1, Duration::from_secs(60))
            .await;
        let reports = workload.stop(&pair).await;
        stop(&mut daemon).await;
        until_idle(&cfg, &logs, &label).await;
        let recovered = logs
            .dump()
            .matches("before the last stop but not yet removed")
            .count();
        eprintln!("{label}: ledger recoveries seen in the logs: {recovered}");
        assert_converged_without_loss(&pair, &label, &reports).await;
    }
}

/// 2b. The daemon aborts (as kill -9 would) at each fail point of a batch: after
/// the decision, after staging, before a target's COMMIT, after both commits,
/// after a source's deltas went but before the target's ledger row. Each time it
/// is restarted; nothing is lost, nothing left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_at_each_fail_point_loses_nothing() {
    let seed = seeds(&[31])[0];
    let label = format!("seed {seed}");
    let pair = TestPair::new().await;
    let cfg = setup(&pair, None).await;
    let logs = Logs::new(&label);
    let mut rng = StdRng::seed_from_u64(seed);
    let workload = Workload::start(&pair, seed, WorkloadOptions::default());
    for point in pgduplex_engine::replicate::failpoint::POINTS {
        let spec = format!("{point}:{}", rng.gen_range(1..=3));
        let mut daemon = replicate(&cfg.path, &logs, point, &[])
            .env(pgduplex_engine::replicate::failpoint::VAR, &spec)
            .start();
        // Reached within 60 s, or the wait fails with the log.
        let st = daemon.wait_exit(Duration::from_secs(60)).await;
        let reached = format!("fail point {point:?} reached");
        assert!(
            !st.success() && daemon.log().contains(&reached),
            "{label}: the daemon exited ({st}) without reaching {spec}:\n{}",
            daemon.log()
        );
    }
    let mut daemon = spawn(&cfg.path, &logs, "daemon");
    daemon
        .wait_log("replicating", 1, Duration::from_secs(60))
        .await;
    let reports = workload.stop(&pair).await;
    stop(&mut daemon).await;
    until_idle(&cfg, &logs, &label).await;
    assert_converged_without_loss(&pair, &label, &reports).await;
    assert_no_orphans(&pair, &label).await;
}

/// 3. SIGTERM under load: exit 0 within 10 s; a restart carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_restart_continues() {
    let seed = seeds(&[21])[0];
    let label = format!("seed {seed}");
    let pair = TestPair::new().await;
    let cfg = setup(&pair, None).await;
    let logs = Logs::new(&label);
    let workload = Workload::start(
        &pair,
        seed,
        WorkloadOptions {
            pause_ms: 0,
            ..WorkloadOptions::default()
        },
    );
    let mut daemon = spawn(&cfg.path, &logs, "daemon");
    daemon
        .wait_log("replicating", 1, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // load builds up
    let took = stop(&mut daemon).await;
    eprintln!("{label}: exit 0 {took:?} after SIGTERM");
    let log = daemon.log();
    assert!(
        log.contains("SIGTERM received") && log.contains("stopped"),
        "{label}: expected the SIGTERM and stop lines:\n{log}"
    );
    // Writes continue while no daemon runs, then a new one picks everything up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut daemon = spawn(&cfg.path, &logs, "restarted");
    daemon
        .wait_log("replicating", 1, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // load with the new daemon
    let reports = workload.stop(&pair).await;
    wait_drained(&pair, &label).await;
    stop(&mut daemon).await;
    until_idle(&cfg, &logs, &label).await;
    assert_converged_without_loss(&pair, &label, &reports).await;
}

async fn advisory_locks(c: &Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted \
            AND classid = $1::int8::oid \
            AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
        &[&LOCK_CLASS],
    )
    .await
    .unwrap()
    .get(0)
}

async fn marker_present(c: &Client, side: &str, n: i32) -> bool {
    let sql = format!(
        "SELECT count(*) FROM journal WHERE side = {} AND n = {n}",
        quote_literal(side)
    );
    c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) == 1
}

/// Inserts marker `n` on each side and waits until each reached the other side,
/// sampling the advisory locks meanwhile. Returns the most pgduplex locks seen at
/// once on (left, right).
async fn exchange_markers(l: &Client, r: &Client, n: i32, what: &str) -> (i64, i64) {
    for (c, side) in [(l, "marker-left"), (r, "marker-right")] {
        c.batch_execute(&format!(
            "INSERT INTO journal VALUES ({}, 0, {n}, {})",
            quote_literal(side),
            quote_literal(what)
        ))
        .await
        .unwrap();
    }
    let most = std::cell::Cell::new((0, 0));
    wait_for(
        Duration::from_secs(30),
        format!("markers {n} ({what}) to reach the other side"),
        || async {
            let (l_locks, r_locks) = (advisory_locks(l).await, advisory_locks(r).await);
            let (ml, mr) = most.get();
            most.set((ml.max(l_locks), mr.max(r_locks)));
            marker_present(r, "marker-left", n).await && marker_present(l, "marker-right", n).await
        },
    )
    .await;
    most.get()
}

/// Whether the daemon's log says it holds the sync now: its last "replicating",
/// "waiting for it to stop" or "replication interrupted" line is "replicating".
fn holds_lock(d: &Daemon) -> bool {
    let log = d.log();
    let last = |s: &str| log.rfind(s).map_or(-1, |i| i as i64);
    let r = last("replicating ");
    r >= 0 && r > last("waiting for it to stop") && r > last("replication interrupted")
}

/// 4. A second daemon waits on the advisory lock, and takes over when the first is
/// killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_waits_then_takes_over() {
    let seed = seeds(&[31])[0];
    let label = format!("seed {seed}");
    let pair = TestPair::new().await;
    let cfg = setup(&pair, None).await;
    let logs = Logs::new(&label);
    let (l, r) = clients(&pair).await;
    let workload = Workload::start(
        &pair,
        seed,
        WorkloadOptions {
            tasks_per_side: 1,
            ..WorkloadOptions::default()
        },
    );
    let mut a = spawn(&cfg.path, &logs, "A");
    a.wait_log("replicating", 1, Duration::from_secs(60)).await;
    let mut b = spawn(&cfg.path, &logs, "B");
    b.wait_log("waiting for it to stop", 1, Duration::from_secs(60))
        .await;

    // Both running: never more than one lock holder per side, and changes still
    // flow both ways.
    let most = exchange_markers(&l, &r, 1, "A and B running").await;
    assert_eq!(
        most,
        (1, 1),
        "most pgduplex locks held at once (left, right)"
    );
    assert!(a.running(), "A exited:\n{}", a.log());
    assert!(b.running(), "B exited:\n{}", b.log());

    // The holder is A, unless a transient error made A reconnect and B got the
    // lock in between (allowed: one writer at a time); then A must be waiting.
    let mut holder_is_a = None;
    wait_for(
        Duration::from_secs(30),
        "exactly one daemon holding the sync",
        || {
            let (ha, hb) = (holds_lock(&a), holds_lock(&b));
            holder_is_a = (ha != hb).then_some(ha);
            async move { ha != hb }
        },
    )
    .await;
    let (mut holder, mut survivor) = if holder_is_a == Some(true) {
        (a, b)
    } else {
        eprintln!(
            "{label}: B took the sync over while A reconnected:\n{}",
            logs.dump()
        );
        (b, a)
    };
    // The survivor takes over: it was waiting for the lock ("taking over"), or it
    // was between sessions after an error and simply gets the lock next time.
    let log = survivor.log();
    let last = |s: &str| log.rfind(s).map_or(-1, |i| i as i64);
    let was_waiting = last("waiting for it to stop") > last("replicating ")
        && last("waiting for it to stop") > last("replication interrupted");
    let before = log.len();
    let replicating = log.matches("replicating ").count();
    holder.kill();
    survivor
        .wait_log("replicating ", replicating + 1, Duration::from_secs(60))
        .await;
    let text = survivor.log();
    assert!(
        !was_waiting || text[before..].contains("taking over"),
        "the waiting daemon replicates without saying it takes over:\n{text}"
    );
    let most = exchange_markers(&l, &r, 2, "after the kill").await;
    assert_eq!(
        most,
        (1, 1),
        "most pgduplex locks held at once after the takeover"
    );

    let reports = workload.stop(&pair).await;
    wait_drained(&pair, &label).await;
    stop(&mut survivor).await;
    assert_converged_without_loss(&pair, &label, &reports).await;
}

/// 5. The right server crashes (immediate stop) and comes back under load: the
/// daemon reconnects by itself and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_server_crash_and_restart() {
    let seed = seeds(&[41])[0];
    let label = format!("seed {seed}");
    // The kit's servers run with synchronous_commit = off, which loses the last
    // acknowledged commits in an immediate stop: turned on, so that every commit the
    // writers saw acknowledged must survive.
    let pair = TestPair::dedicated(ServerOptions {
        extra_conf: vec![("synchronous_commit".into(), "on".into())],
        ..ServerOptions::default()
    })
    .await;
    let cfg = setup(&pair, None).await;
    let logs = Logs::new(&label);
    let mut daemon = spawn(&cfg.path, &logs, "daemon");
    daemon
        .wait_log("replicating", 1, Duration::from_secs(60))
        .await;
    let workload = Workload::start(&pair, seed, WorkloadOptions::default());
    tokio::time::sleep(Duration::from_millis(1000)).await; // load builds up
    let server = pair.right.server();
    tokio::task::block_in_place(|| server.stop_immediate()).expect("stop right");
    daemon
        .wait_log("replication interrupted", 1, Duration::from_secs(30))
        .await;
    tokio::task::block_in_place(|| server.start_again()).expect("start right again");
    daemon
        .wait_log("replicating", 2, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // load after the restart
    let reports = workload.stop(&pair).await;
    let reconnects: u64 = reports
        .iter()
        .filter(|r| r.side == "right")
        .map(|r| r.connects)
        .sum();
    assert!(reconnects >= 2, "{label}: right writers never reconnected");
    wait_drained(&pair, &label).await;
    assert!(daemon.running(), "daemon exited:\n{}", daemon.log());
    stop(&mut daemon).await;
    assert_converged_without_loss(&pair, &label, &reports).await;
}

fn proxied_url(db: &TestDb, proxy: &Proxy) -> String {
    format!(
        "postgres://postgres:{}@127.0.0.1:{}/{}?sslmode=disable",
        percent_encode(db.server().superuser_password()),
        proxy.port(),
        percent_encode(db.name())
    )
}

/// 6. Latency and cut connections between the daemon and both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_latency_and_cut_connections() {
    let seed = seeds(&[51])[0];
    let label = format!("seed {seed}");
    let pair = TestPair::new().await;
    let target = |db: &TestDb| -> std::net::SocketAddr {
        format!("127.0.0.1:{}", db.server().port()).parse().unwrap()
    };
    let lp = Proxy::start(target(&pair.left)).await.unwrap();
    let rp = Proxy::start(target(&pair.right)).await.unwrap();
    let cfg = setup(
        &pair,
        Some((
            &proxied_url(&pair.left, &lp),
            &proxied_url(&pair.right, &rp),
        )),
    )
    .await;
    lp.set_latency(Duration::from_millis(20));
    rp.set_latency(Duration::from_millis(20));
    let logs = Logs::new(&label);
    let mut daemon = spawn(&cfg.path, &logs, "daemon");
    daemon
        .wait_log("replicating", 1, Duration::from_secs(120))
        .await;
    let opts = WorkloadOptions {
        pause_ms: 10,
        ..WorkloadOptions::default()
    };
    let workload = Workload::start(&pair, seed, opts);
    for (n, (name, proxy)) in [("left", &lp), ("right", &rp)].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(800)).await; // mid-load
        let before = proxy.total_connections();
        assert!(
            proxy.connection_count() > 0,
            "no daemon connection on {name}"
        );
        proxy.cut_all();
        daemon
            .wait_log("replication interrupted", n + 1, Duration::from_secs(30))
            .await;
        daemon
            .wait_log("replicating", n + 2, Duration::from_secs(60))
            .await;
        assert!(
            proxy.total_connections() > before,
            "the daemon did not reconnect through the {name} proxy"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await; // load after the cuts
    let reports = workload.stop(&pair).await;
    wait_drained(&pair, &label).await;
    stop(&mut daemon).await;
    assert_converged_without_loss(&pair, &label, &reports).await;
}

/// 7. No echo: once drained, a quiet pair has no deltas and keeps having none while
/// the daemon runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_system_stays_without_deltas() {
    let seed = seeds(&[61])[0];
    let label = format!("seed {seed}");
    let pair = TestPair::new().await;
    let cfg = setup(&pair, None).await;
    let logs = Logs::new(&label);
    let mut daemon = spawn(&cfg.path, &logs, "daemon");
    daemon
        .wait_log("replicating", 1, Duration::from_secs(60))
        .await;
    let workload = Workload::start(
        &pair,
        seed,
        WorkloadOptions {
            tasks_per_side: 1,
            ..WorkloadOptions::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(1000)).await; // the workload's duration
    let reports = workload.stop(&pair).await;
    wait_drained(&pair, &label).await;
    let (l, r) = clients(&pair).await;
    // Observe for a while: an echo would show up as new deltas on either side.
    let until = Instant::now() + Duration::from_millis(1200);
    let mut samples = 0;
    while Instant::now() < until {
        let (pl, pr) = (pending(&l).await, pending(&r).await);
        assert_eq!(
            (pl, pr),
            (0, 0),
            "{label}: deltas reappeared on a quiet pair (left, right) after {samples} samples"
        );
        samples += 1;
        // The sampling interval of a fixed observation window, not a wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(daemon.running(), "daemon exited:\n{}", daemon.log());
    assert_converged_without_loss(&pair, &label, &reports).await;
    stop(&mut daemon).await;
    assert_eq!((pending(&l).await, pending(&r).await), (0, 0));
}
