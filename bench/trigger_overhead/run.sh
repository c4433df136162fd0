#!/usr/bin/env bash
# Trigger-overhead benchmark: pgduplex's real capture triggers (installed by the real
# `pgduplex install`), the row-level prototype, and Bucardo's real delta triggers, against
# no triggers. The prototypes of the first measurement (row, stmt, row_noset) stay available.
#
# Method: one throw-away server; one database per variant, all cloned from one template
# (same data). Every test runs in "rounds"; a round is the bracketed sequence
#     none, v1, none, v2, none, ..., vk, none
# (variant order rotated each round) and each variant's ratio is taken against the mean of
# the two "none" runs right before and after it. Medians and spreads are over rounds.
# "none2" is a second database without triggers: an A/A control (its ratio shows the noise
# floor and any database-vs-database bias).
#
# Usage:  bench/trigger_overhead/run.sh            # full run (about 25 min on a busy 2-core box)
#         QUICK=1 bench/trigger_overhead/run.sh    # smoke/quick run (~4 min)
#         TESTS="pgbench_c1 bulk_update" bench/trigger_overhead/run.sh
#         FSYNC=on TESTS="pgbench_c1 pgbench_c4" bench/trigger_overhead/run.sh   # durable commits
# Tests: pgbench_c1, pgbench_c4 (tpcb-like), pgbench_c1_rtt, pgbench_c4_rtt (the same with the
# client waiting RTT_US after each statement: a network round trip), micro_update, micro_insert
# (MICRO_N single-row statements in one transaction of one backend), micro_tpcb (MICRO_N
# tpcb-like transactions in one backend, a COMMIT after each: pgbench -c 1 without client and
# protocol), bulk_update, bulk_insert (BULK_ROWS rows in one statement), bulk_keyupdate (one
# UPDATE changing the key of KEY_ROWS rows), apply_insert, apply_copy (pgduplex's own apply,
# which must not be captured).
# PGDUPLEX_PREV_BIN=<an older pgduplex binary> adds variant pgduplex_prev (before/after in one run).
# The pgduplex* variants need the release binary: it is built once into
# $CARGO_TARGET_DIR (default /work/target-bench) when missing; BUILD=1 rebuilds it.
# Output: $OUT/raw.csv (every single measurement), $OUT/summary.md, $OUT/ddl_*.sql
# See RESULTS.md for the method, the metrics (wall and CPU) and the first results.
set -euo pipefail

# ---------------------------------------------------------------- parameters
QUICK=${QUICK:-0}
SCALE=${SCALE:-10}                      # pgbench scale (10 = 1,000,000 pgbench_accounts rows)
ROUNDS=${ROUNDS:-$([ "$QUICK" = 1 ] && echo 2 || echo 5)}         # pgbench rounds
TX_C1=${TX_C1:-$([ "$QUICK" = 1 ] && echo 2000 || echo 7000)}      # -t for -c 1 (aim: 3-5 s/run)
TX_C4=${TX_C4:-$([ "$QUICK" = 1 ] && echo 700 || echo 2500)}       # -t per client for -c 4 -j 2
BULK_ROWS=${BULK_ROWS:-$([ "$QUICK" = 1 ] && echo 200000 || echo 1000000)}
BULK_ROUNDS=${BULK_ROUNDS:-$([ "$QUICK" = 1 ] && echo 2 || echo 3)}
MICRO_N=${MICRO_N:-20000}               # statements per micro_* run
KEY_ROWS=${KEY_ROWS:-100000}            # rows of table tk whose key bulk_keyupdate changes
RTT_US=${RTT_US:-100}                   # pgbench_*_rtt: client wait after each statement, µs
PAD=${PAD:-0}                           # extra bytes per row of table t (bulk insert/apply/copy)
WARMUP=${WARMUP:-1}                     # one discarded run per database before pgbench/bulk_update
TESTS=${TESTS:-"pgbench_c1 pgbench_c4 bulk_update bulk_insert apply_insert apply_copy"}
# Variants: pgduplex (real install), bucardo (real), none2 (A/A control), row (prototype of
# the design's row-level trigger, for reference where it is cheap to run). Also available:
# stmt, row_noset (prototypes), pgduplex_empty, pgduplex_noset, pgduplex_set, pgduplex_emptynoset,
# pgduplex_emptynotrans, pgduplex_nopk, pgduplex_updnojoin, pgduplex_nowhen (pgduplex's
# install altered afterwards to take the per-statement cost apart; see install_pgduplex_*).
PGB_VARIANTS=${PGB_VARIANTS:-"pgduplex bucardo none2 row"}
BULK_VARIANTS=${BULK_VARIANTS:-"pgduplex bucardo none2"}
APPLY_VARIANTS=${APPLY_VARIANTS:-"pgduplex none2 row"}
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
PGDUPLEX_BIN=${PGDUPLEX_BIN:-$CARGO_TARGET_DIR/release/pgduplex}
BUILD=${BUILD:-0}                       # 1: rebuild the pgduplex binary even if present
PORT=${PORT:-55432}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
# Durability: fsync=off + synchronous_commit=off (default). This removes commit-flush
# latency, which is pure noise on a shared box and would *dilute* the trigger overhead
# (a ratio measured with flushes is closer to 1), so these ratios are the pessimistic side.
FSYNC=${FSYNC:-off}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out/$(date +%Y%m%dT%H%M%S)}
KEEP_SERVER=${KEEP_SERVER:-0}           # 1: leave the server running at the end (debugging)

export PATH=$PGBIN:$PATH
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/pgduplex_trigbench.XXXXXX)
chmod 755 "$WORK"
PGDATA=$WORK/data
SOCK=$WORK
export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres
RAW=$OUT/raw.csv
LOG=$OUT/run.log
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
psqlq() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

# ---------------------------------------------------------------- server
start_server() {
  chown postgres "$WORK"
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >>"$LOG" 2>&1
  cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 2GB
fsync = $FSYNC
synchronous_commit = $( [ "$FSYNC" = off ] && echo off || echo on )
full_page_writes = on
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
max_connections = 50
work_mem = 4MB
EOF
  # work_mem stays at the production default: transition tables spill past it.
  # autovacuum off: each test prepares its tables itself (VACUUM/TRUNCATE) before each run.
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w start >>"$LOG" 2>&1
  say "server up: $(psql -X -Atc 'select version()' -d postgres)"
}
stop_server() {
  if [ -f "$PGDATA/postmaster.pid" ] && [ "$KEEP_SERVER" != 1 ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >>"$LOG" 2>&1 || true
    cp "$WORK/server.log" "$OUT/server.log" 2>/dev/null || true
    rm -rf "$WORK"
  fi
}
trap stop_server EXIT

# ---------------------------------------------------------------- data
# Replicated tables (all with a primary key) and their pgduplex table ids.
TABLES="pgbench_accounts:1 pgbench_branches:2 pgbench_tellers:3 pgbench_history:4 t:5 tk:6"

make_template() {
  createdb bench_tpl
  pgbench -i -q -s "$SCALE" bench_tpl >>"$LOG" 2>&1
  psqlq bench_tpl <<'EOF'
ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY;
CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL);
CREATE TABLE tk (id bigint PRIMARY KEY, a int NOT NULL);
VACUUM ANALYZE;
EOF
  # data file for COPY (the same rows the bulk INSERT writes)
  psqlq bench_tpl -c "\copy (SELECT g, g % 1000, 'row ' || g || repeat('x', $PAD) FROM generate_series(1, $BULK_ROWS) g) TO '$WORK/t.copy'"
}

# ---------------------------------------------------------------- capture variants
# One install function per variant: install_<variant> <db>.  The lead's real-install mode
# only needs another function here (e.g. install_pgduplex() { pgduplex install ...; }).
gen_and_apply() {   # gen_and_apply <db> <variant> <sql-generator-call with %T %N>
  local db=$1 v=$2 call=$3 ddl="$OUT/ddl_$2.sql"
  psqlq "$db" -f "$HERE/capture_common.sql" -f "$HERE/capture_row.sql" -f "$HERE/capture_stmt.sql"
  : >"$ddl"
  local tn tbl n c
  for tn in $TABLES; do
    tbl=${tn%%:*}; n=${tn##*:}
    c=${call//%T/\'$tbl\'::regclass}; c=${c//%N/$n}
    psql -X -At -v ON_ERROR_STOP=1 -d "$db" -c "SELECT $c" >>"$ddl"
  done
  psqlq "$db" -f "$ddl"
}
install_none()      { :; }
install_none2()     { :; }
install_row()       { gen_and_apply "$1" row       "bench_proto.ddl_row(%T, %N, true)"; }
install_row_noset() { gen_and_apply "$1" row_noset "bench_proto.ddl_row(%T, %N, false)"; }
install_stmt()      { gen_and_apply "$1" stmt      "bench_proto.ddl_stmt(%T, %N)"; }
install_bucardo() { # real Bucardo: bucardo install + add db/tables/sync => it creates its triggers
  local db=$1 peer=${1}_peer
  createdb -T bench_tpl "$peer"
  local bc=(bucardo --db-host "$SOCK" --db-port "$PORT" --db-user postgres --db-name bucardo
            --no-bucardorc --quiet)
  if ! psql -X -Atc "select 1 from pg_database where datname='bucardo'" -d postgres | grep -q 1; then
    mkdir -p "$WORK/bucardo_run"
    "${bc[@]}" --piddir "$WORK/bucardo_run" --batch install >>"$LOG" 2>&1
  fi
  "${bc[@]}" add db "src_$db" dbname="$db" host="$SOCK" port="$PORT" user=postgres >>"$LOG" 2>&1
  "${bc[@]}" add db "dst_$db" dbname="$peer" host="$SOCK" port="$PORT" user=postgres >>"$LOG" 2>&1
  local tn list=""
  for tn in $TABLES; do list="$list public.${tn%%:*}"; done
  # shellcheck disable=SC2086
  "${bc[@]}" add table $list db="src_$db" relgroup="rg_$db" >>"$LOG" 2>&1
  # both databases are sources: a two-way (multi-source) sync, like pgduplex
  "${bc[@]}" add sync "sync_$db" relgroup="rg_$db" dbs="src_$db:source,dst_$db:source" >>"$LOG" 2>&1
  # record exactly what Bucardo created on the source
  psql -X -At -d "$db" >"$OUT/ddl_bucardo.sql" <<'EOF'
SELECT pg_get_triggerdef(t.oid) || ';' FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY t.tgrelid::regclass::text, t.tgname;
SELECT pg_get_functiondef(p.oid) || ';' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'bucardo' AND (p.proname LIKE 'delta\_%' OR p.proname LIKE 'bucardo\_kick\_%' OR p.proname = 'bucardo_note_truncation');
EOF
  grep -q 'CREATE TRIGGER bucardo_delta' "$OUT/ddl_bucardo.sql" || { say "bucardo did not create its triggers"; return 1; }
}

# pgduplex's real capture, installed by the real binary: `pgduplex --config FILE install`
# with [left] = the variant's database and [right] = a sibling clone of the same template
# (install needs the tables on both sides with identical columns). Both URLs log in as
# postgres over the unix socket, so install records postgres as the apply role, and the
# apply tests below (run by psql as postgres, with SET LOCAL pgduplex.applying = 'on')
# really exercise the no-echo WHEN clause.
build_pgduplex() {
  if [ "$BUILD" = 1 ] || [ ! -x "$PGDUPLEX_BIN" ]; then
    say "building pgduplex (release) into $CARGO_TARGET_DIR"
    (cd "$REPO" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -p pgduplex) >>"$LOG" 2>&1 \
      || { say "FATAL: cargo build of pgduplex failed (see $LOG)"; exit 1; }
  fi
  [ -x "$PGDUPLEX_BIN" ] || { say "FATAL: no pgduplex binary at $PGDUPLEX_BIN"; exit 1; }
  say "pgduplex binary: $PGDUPLEX_BIN ($("$PGDUPLEX_BIN" --version 2>&1)), built $(date -r "$PGDUPLEX_BIN" -Is)"
}
install_pgduplex() {   # install_pgduplex <db> [<binary> <ddl name>]
  local db=$1 peer=${1}_peer cfg=$OUT/pgduplex_$1.toml bin=${2:-$PGDUPLEX_BIN} ddl=${3:-pgduplex}
  createdb -T bench_tpl "$peer"
  cat >"$cfg" <<EOF
# written by bench/trigger_overhead/run.sh
[left]
url = "postgres://postgres@/$db?host=$SOCK&port=$PORT"
sslmode = "disable"

[right]
url = "postgres://postgres@/$peer?host=$SOCK&port=$PORT"
sslmode = "disable"
EOF
  local rc=0
  "$bin" --config "$cfg" install >>"$LOG" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    say "FATAL: pgduplex install on $db exited with $rc; its output:"
    tail -30 "$LOG" >&2
    exit 1
  fi
  # what the real install created on the measured side
  psql -X -At -v ON_ERROR_STOP=1 -d "$db" >"$OUT/ddl_$ddl.sql" <<'EOF'
SELECT '-- ' || table_schema || '.' || table_name || ': id ' || id || ', apply_role ' || apply_role FROM pgduplex.replicated_table ORDER BY id;
SELECT pg_get_triggerdef(t.oid) || ';' FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY t.tgrelid::regclass::text, t.tgname;
SELECT 'ALTER TABLE ' || t.tgrelid::regclass || ' ENABLE ALWAYS TRIGGER ' || quote_ident(t.tgname) || ';' FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgenabled = 'A' ORDER BY 1;
SELECT pg_get_functiondef(p.oid) || ';' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgduplex' ORDER BY p.proname;
SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgduplex' AND c.relname LIKE 'delta\_%' ORDER BY 1;
EOF
  verify_pgduplex "$db"
}
# Another pgduplex binary (an earlier build) installed side by side, for a before/after
# comparison in one run: PGDUPLEX_PREV_BIN=<binary>, variant pgduplex_prev.
install_pgduplex_prev() {
  [ -x "${PGDUPLEX_PREV_BIN:-}" ] || { say "FATAL: variant pgduplex_prev needs PGDUPLEX_PREV_BIN"; exit 1; }
  install_pgduplex "$1" "$PGDUPLEX_PREV_BIN" pgduplex_prev
}
# Capture works (insert, update, key-changing update, delete give 5 delta rows) and the
# apply path captures nothing; all inside a transaction that is rolled back.
verify_pgduplex() {
  local out
  out=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" <<'EOF'
BEGIN;
SELECT 'pgduplex.delta_' || id AS d FROM pgduplex.replicated_table WHERE table_schema = 'public' AND table_name = 't' \gset
SELECT apply_role = session_user AS same_role FROM pgduplex.replicated_table WHERE table_name = 't' \gset
INSERT INTO t VALUES (-1, 1, 'x');
UPDATE t SET a = 2 WHERE id = -1;
UPDATE t SET id = -2 WHERE id = -1;
DELETE FROM t WHERE id = -2;
SELECT count(*) AS app FROM :d \gset
SET LOCAL pgduplex.applying = 'on';
INSERT INTO t VALUES (-3, 1, 'y');
UPDATE t SET a = 3 WHERE id = -3;
DELETE FROM t WHERE id = -3;
SELECT :app || ' ' || count(*) || ' ' || :'same_role' FROM :d;
ROLLBACK;
EOF
  ) || { say "FATAL: verifying pgduplex capture on $1 failed"; exit 1; }
  [ "$out" = "5 5 t" ] || { say "FATAL: pgduplex capture on $1: expected '5 5 t' (app rows, after apply, apply role = postgres), got '$out'"; exit 1; }
  say "  $1: capture verified (4 application statements -> 5 delta rows; apply transaction as postgres -> none)"
}
# Experiments that take pgduplex's per-statement cost apart: the real install, then one
# thing changed (never used for the figures of record).
pgduplex_alter() {   # pgduplex_alter <db> <name> <DO-block body>
  install_pgduplex "$1"
  psqlq "$1" -c "DO \$do\$ DECLARE r record; BEGIN $3 END \$do\$"
  psql -X -At -d "$1" -c "SELECT pg_get_functiondef('pgduplex.capture_1'::regproc)" >"$OUT/ddl_$2_capture_1.sql"
}
CAPTURE_FUNCS="FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'pgduplex' AND p.proname ~ '^capture_[0-9]+\$' LOOP"
EMPTY_BODY="$CAPTURE_FUNCS EXECUTE format('CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L', r.f, 'BEGIN RETURN NULL; END'); END LOOP;"
NO_SET="$CAPTURE_FUNCS EXECUTE format('ALTER FUNCTION %s RESET search_path', r.f); END LOOP;"
WITH_SET="$CAPTURE_FUNCS EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', r.f); END LOOP;"
# same body, same triggers (with transition tables and WHEN), but the function returns at once
install_pgduplex_empty()      { pgduplex_alter "$1" pgduplex_empty "$EMPTY_BODY"; }
# the same without the SET search_path clause: empty - emptynoset = cost of the SET clause
install_pgduplex_emptynoset() { pgduplex_alter "$1" pgduplex_emptynoset "$EMPTY_BODY $NO_SET"; }
# full body without the SET search_path clause
install_pgduplex_noset()      { pgduplex_alter "$1" pgduplex_noset "$NO_SET"; }
# full body with the SET search_path clause (whichever way the install generates it)
install_pgduplex_set()        { pgduplex_alter "$1" pgduplex_set "$WITH_SET"; }
# empty function, statement triggers without REFERENCING: empty - emptynotrans = transition tables
install_pgduplex_emptynotrans() { pgduplex_alter "$1" pgduplex_emptynotrans "$EMPTY_BODY
  FOR r IN SELECT t.tgname, t.tgrelid::regclass AS rel, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
    WHERE t.tgname IN ('pgduplex_capture_insert', 'pgduplex_capture_update', 'pgduplex_capture_delete') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.rel);
    EXECUTE regexp_replace(r.def, 'REFERENCING .* FOR EACH STATEMENT', 'FOR EACH STATEMENT');
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.rel, r.tgname);
  END LOOP;"; }
# UPDATE captured as 'U' from the new rows only (no FULL JOIN of old and new keys): what
# the key-set matching costs. Not a correct capture of key changes; a measurement only.
install_pgduplex_updnojoin() { pgduplex_alter "$1" pgduplex_updnojoin "
  FOR r IN SELECT p.oid::regprocedure AS f, p.prosrc AS src FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'pgduplex' AND p.proname ~ '^capture_[0-9]+\$' LOOP
    EXECUTE format('CREATE OR REPLACE FUNCTION %s RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L',
      r.f, split_part(r.src, 'ELSIF', 1) || 'ELSIF TG_OP OPERATOR(pg_catalog.=) ''UPDATE'' THEN '
        || replace(substring(split_part(r.src, 'ELSIF', 1) from 'THEN\s+(INSERT INTO [^;]*;)'), 'SELECT ''I''', 'SELECT ''U''')
        || E'\nELSE' || substring(r.src from '\nELSE(.*)\$'));
  END LOOP;"; }
# the same statement triggers without their WHEN clause (PostgreSQL prepares a trigger's WHEN
# expression once per statement): what the no-echo WHEN costs per statement. Measurement only:
# without WHEN the apply would be captured.
install_pgduplex_nowhen() { pgduplex_alter "$1" pgduplex_nowhen "
  FOR r IN SELECT t.tgname, t.tgrelid::regclass AS rel, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
    WHERE t.tgname IN ('pgduplex_capture_insert', 'pgduplex_capture_update', 'pgduplex_capture_delete') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.rel);
    EXECUTE regexp_replace(r.def, ' WHEN \(.*\) EXECUTE FUNCTION ', ' EXECUTE FUNCTION ');
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.rel, r.tgname);
  END LOOP;"; }
# full capture, delta tables without their primary key (seq still filled from the sequence)
install_pgduplex_nopk() { pgduplex_alter "$1" pgduplex_nopk "
  FOR r IN SELECT c.conrelid::regclass AS rel, c.conname FROM pg_constraint c JOIN pg_class k ON k.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname = 'pgduplex' AND k.relname LIKE 'delta\_%' AND c.contype = 'p' LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
  END LOOP;"; }

# Empty every capture table so that each run starts from the same state.
reset_deltas() {
  psqlq "$1" <<'EOF'
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.oid::regclass AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'r' AND ((n.nspname = 'pgduplex' AND c.relname ~ '^(delta_[0-9]+|truncate_log)$')
              OR (n.nspname = 'bucardo' AND c.relname ~ '^(delta|track|stage)_'))
  LOOP EXECUTE 'TRUNCATE ' || r.t; END LOOP;
END $$;
EOF
}

# ---------------------------------------------------------------- measurements
# Each prints two numbers. pgbench_*: "<TPS> <server CPU us/tx>".
# bulk/apply tests: "<wall ms> <backend CPU ms>" (lower is better). The CPU time is the
# backend's own on-CPU time (/proc/self/schedstat read by the backend itself, ns resolution):
# on a shared, busy machine it is far less disturbed by other processes than wall time.
BEGIN_CLOCK="SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS c0, clock_timestamp() AS t0 \gset"
END_CLOCK="SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1) AS wall, round((split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :c0) / 1e6, 1) AS cpu \gset
\echo :wall :cpu"
T_ROWS="SELECT g, g % 1000, 'row ' || g || repeat('x', $PAD) FROM generate_series(1, $BULK_ROWS) g"

# Server CPU for pgbench runs: all CPU consumed by the server's processes (backends, which
# the postmaster reaps into its cutime/cstime, plus the background processes) during the run,
# in clock ticks; reported as CPU microseconds per transaction. Client (pgbench) CPU excluded.
server_ticks() {
  local pm; pm=$(head -1 "$PGDATA/postmaster.pid")
  { awk '{print $16 + $17 + $14 + $15}' "/proc/$pm/stat"
    for c in $(ps --ppid "$pm" -o pid=); do awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || true; done
  } | awk '{s += $1} END {print s}'
}
pgbench_run() {   # pgbench_run <db> <pgbench options...>  -> "<tps> <server CPU us per tx>"
  local db=$1; shift
  reset_deltas "$db"
  # what pgbench -v does, done here so that it stays outside the measured interval
  psqlq "$db" -c "VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts" -c "TRUNCATE pgbench_history"
  reset_deltas "$db"
  sleep 0.2
  local t0 t1 out tps ntx
  t0=$(server_ticks)
  out=$(pgbench -n "$@" "$db" 2>>"$LOG")
  sleep 0.3   # let the postmaster reap the backends
  t1=$(server_ticks)
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
  ntx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  echo "$tps $(awk -v d=$((t1 - t0)) -v n="$ntx" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", d / hz * 1e6 / n}')"
}
measure_pgbench_c1() { pgbench_run "$1" -c 1 -t "$TX_C1"; }
measure_pgbench_c4() { pgbench_run "$1" -c 4 -j 2 -t "$TX_C4"; }
# The same tpcb-like transaction with the client waiting RTT_US after each of its 7
# statements: a model of an application that talks to the server over a network (the
# server is idle during the wait, as it is during a real round trip). This machine's
# kernel has no netem, so the latency is the client's; the statements and the server's
# work are pgbench's built-in tpcb-like ones.
write_rtt_script() {
  local f=$WORK/tpcb_rtt.sql s="\\sleep $RTT_US us"
  cat >"$f" <<EOF
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
$s
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
$s
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
$s
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
$s
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
$s
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
$s
END;
$s
EOF
  chmod 644 "$f"
}
measure_pgbench_c1_rtt() { pgbench_run "$1" -c 1 -t "$TX_C1" -s "$SCALE" -f "$WORK/tpcb_rtt.sql"; }
measure_pgbench_c4_rtt() { pgbench_run "$1" -c 4 -j 2 -t "$TX_C4" -s "$SCALE" -f "$WORK/tpcb_rtt.sql"; }
timed() {   # timed <db> <sql>   (stdin passed through, for COPY)
  psqlq "$1" -t -f <(printf '%s\n%s\n%s\n' "$BEGIN_CLOCK" "$2" "$END_CLOCK")
}
measure_bulk_update() {
  reset_deltas "$1"
  psqlq "$1" -c "VACUUM pgbench_accounts" -c "CHECKPOINT"
  timed "$1" "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $BULK_ROWS;"
}
prep_t() { reset_deltas "$1"; psqlq "$1" -c "TRUNCATE t" -c "CHECKPOINT"; reset_deltas "$1"; }
measure_bulk_insert() {
  prep_t "$1"
  timed "$1" "INSERT INTO t $T_ROWS;"
}
# One UPDATE that changes the key of KEY_ROWS rows (the key trigger's path).
measure_bulk_keyupdate() {
  reset_deltas "$1"
  psqlq "$1" -c "TRUNCATE tk" -c "INSERT INTO tk SELECT g, g FROM generate_series(1, $KEY_ROWS) g" -c "VACUUM ANALYZE tk" -c "CHECKPOINT"
  reset_deltas "$1"
  timed "$1" "UPDATE tk SET id = id + 1000000000;"
}
measure_apply_insert() {   # pgduplex's apply path: SET LOCAL pgduplex.applying, as the apply role
  prep_t "$1"
  timed "$1" "BEGIN; SET LOCAL pgduplex.applying = 'on'; INSERT INTO t $T_ROWS; COMMIT;"
}
measure_apply_copy() {     # pgduplex's copy path: COPY FROM STDIN inside an apply transaction
  prep_t "$1"
  timed "$1" "BEGIN; SET LOCAL pgduplex.applying = 'on';
\copy t FROM pstdin
COMMIT;" <"$WORK/t.copy"
}
# Per-statement cost, measured inside one backend (no client, no network): MICRO_N
# single-row statements in a plpgsql loop, one transaction; each fires the statement
# triggers once. (ms per run) * 1000 / MICRO_N = µs per statement.
measure_micro_update() {
  reset_deltas "$1"
  psqlq "$1" -c "VACUUM pgbench_accounts"
  # a different row each time: repeated updates of one row in one transaction would make
  # ever longer version chains and measure those instead
  timed "$1" "DO \$\$ BEGIN FOR i IN 1..$MICRO_N LOOP UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = i; END LOOP; END \$\$;"
}
# tpcb-like transactions in one backend, each committed: the server's work of pgbench -c 1
# (the same 3 UPDATEs and 1 INSERT, rows spread like pgbench's) without the client, the
# protocol and the parsing, so that the triggers' share is measured with less noise.
measure_micro_tpcb() {
  reset_deltas "$1"
  psqlq "$1" -c "VACUUM pgbench_accounts, pgbench_tellers, pgbench_branches" -c "TRUNCATE pgbench_history"
  reset_deltas "$1"
  timed "$1" "DO \$\$ DECLARE a int; t int; b int; BEGIN FOR i IN 1..$MICRO_N LOOP
  a := 1 + (i * 7919) % (100000 * $SCALE); t := 1 + (i * 13) % (10 * $SCALE); b := 1 + i % $SCALE;
  UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = a;
  UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = t;
  UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = b;
  INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (t, b, a, 1, now());
  COMMIT;
END LOOP; END \$\$;"
}
measure_micro_insert() {
  reset_deltas "$1"
  psqlq "$1" -c "TRUNCATE pgbench_history"
  reset_deltas "$1"
  timed "$1" "DO \$\$ BEGIN FOR i IN 1..$MICRO_N LOOP INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, i, 1, now()); END LOOP; END \$\$;"
}
check_no_echo() {          # the apply paths must leave no deltas behind
  local n
  n=$(psql -X -At -d "$1" -c "SELECT coalesce(sum((xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')))[1]::text::bigint), 0)
    FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
    WHERE s.nspname = 'pgduplex' AND c.relkind = 'r' AND c.relname ~ '^delta_[0-9]+\$'" 2>/dev/null || echo 0)
  [ "$n" = 0 ] || say "WARNING: $1 captured $n rows in an apply transaction (echo!)"
}

record() {   # record <test> <round> <seq> <variant> "<v1> [<v2>]"
  local v1 v2; read -r v1 v2 <<<"$5"
  echo "$1,$2,$3,$4,$v1" >>"$RAW"
  [ -z "${v2:-}" ] || echo "${1}_cpu,$2,$3,$4,$v2" >>"$RAW"
}
run_test() {   # run_test <test> <rounds> <variants...>
  local test=$1 rounds=$2; shift 2
  local vs=("$@") k=${#@} r i v val
  say "test $test: $rounds rounds, variants: ${vs[*]}"
  case $test in pgbench_*|bulk_update|bulk_keyupdate|micro_*)   # warm-up: once per database, recorded as round 0
    if [ "$WARMUP" = 1 ]; then
      for v in none "${vs[@]}"; do record "$test" 0 0 "$v" "$("measure_$test" "bench_$v")"; done
      say "  warm-up done"
    fi ;;
  esac
  for ((r = 1; r <= rounds; r++)); do
    local seq=0 order=()
    for ((i = 0; i < k; i++)); do order+=("${vs[$(( (i + r - 1) % k ))]}"); done
    for v in "${order[@]}"; do
      seq=$((seq + 1)); record "$test" "$r" "$seq" none "$("measure_$test" "bench_none")"
      seq=$((seq + 1)); record "$test" "$r" "$seq" "$v" "$("measure_$test" "bench_$v")"
      case $test in apply_*) check_no_echo "bench_$v" ;; esac
    done
    seq=$((seq + 1)); record "$test" "$r" "$seq" none "$("measure_$test" "bench_none")"
    say "  round $r done (load $(cut -d' ' -f1-3 /proc/loadavg)): $(grep "^$test,$r," "$RAW" | cut -d, -f4,5 | tr '\n' ' ')"
  done
}

# ---------------------------------------------------------------- main
{
  echo "# trigger_overhead run $(date -Is)"
  echo "nproc=$(nproc) mem=$(free -g | awk '/Mem:/{print $2}')GB"
  echo "SCALE=$SCALE ROUNDS=$ROUNDS TX_C1=$TX_C1 TX_C4=$TX_C4 BULK_ROWS=$BULK_ROWS BULK_ROUNDS=$BULK_ROUNDS MICRO_N=$MICRO_N KEY_ROWS=$KEY_ROWS RTT_US=$RTT_US PAD=$PAD WARMUP=$WARMUP FSYNC=$FSYNC QUICK=$QUICK"
} >"$OUT/params.txt"
echo "test,round,seq,variant,value" >"$RAW"
ALL_VARIANTS=$(echo none $PGB_VARIANTS $BULK_VARIANTS $APPLY_VARIANTS | tr ' ' '\n' | awk '!s[$0]++' | tr '\n' ' ')
case " $ALL_VARIANTS" in *" pgduplex"*)
  build_pgduplex
  echo "pgduplex=$PGDUPLEX_BIN ($("$PGDUPLEX_BIN" --version 2>&1)) commit=$(git -C "$REPO" rev-parse --short HEAD) uncommitted:[$(git -C "$REPO" diff --name-only HEAD -- crates sql 2>/dev/null | tr '\n' ' ')]" >>"$OUT/params.txt" ;;
esac
[ -z "${PGDUPLEX_PREV_BIN:-}" ] || echo "pgduplex_prev=$PGDUPLEX_PREV_BIN, built $(date -r "$PGDUPLEX_PREV_BIN" -Is)" >>"$OUT/params.txt"
[ -z "${NOTE:-}" ] || echo "note: $NOTE" >>"$OUT/params.txt"
echo "variants: pgbench=[$PGB_VARIANTS] bulk=[$BULK_VARIANTS] apply=[$APPLY_VARIANTS] tests=[$TESTS]" >>"$OUT/params.txt"
start_server
say "building template (scale $SCALE)"
make_template
write_rtt_script
for v in $ALL_VARIANTS; do
  createdb -T bench_tpl "bench_$v"
  say "install capture: $v"
  "install_$v" "bench_$v"
  psqlq "bench_$v" -c "VACUUM ANALYZE"
done
psqlq postgres -c "CHECKPOINT"

for test in $TESTS; do
  case $test in
    pgbench_*) run_test "$test" "$ROUNDS" $PGB_VARIANTS ;;
    bulk_*)    run_test "$test" "$BULK_ROUNDS" $BULK_VARIANTS ;;
    apply_*)   run_test "$test" "$BULK_ROUNDS" $APPLY_VARIANTS ;;
    micro_*)   run_test "$test" "$ROUNDS" $PGB_VARIANTS ;;
  esac
done

python3 "$HERE/summarize.py" "$RAW" | tee "$OUT/summary.md"
say "done: $OUT"
