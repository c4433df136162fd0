#!/usr/bin/env bash
# Benchmark of `pgduplex replicate` (issue 3) against Bucardo 5.6, on two real PostgreSQL
# servers ("left" and "right") on this machine.
#
#   catchup   (a)+(c) drain a pgbench backlog built on left while no replicator runs:
#             `pgduplex replicate --until-idle` against a Bucardo two-way sync, A/B alternated,
#             several backlog sizes; changed rows/s, daemon peak RSS and CPU.
#   lag       (b)+(c) the daemon runs while pgbench writes on left; the age of the oldest
#             pending change (now() - min(captured_at) over the delta tables) is sampled.
#   bigdrain  (d) 1,000,000 rows changed by one UPDATE while no replicator runs, then drained;
#             the daemon's RSS is sampled every RSS_EVERY s (Bucardo once for comparison).
#   steady    the daemon's own cost while pgbench writes at a fixed rate on left: its CPU per
#             changed row, the lag, several binaries A/B alternated.
#   soak      (e) pgbench at a fixed rate on BOTH sides (disjoint branches) with the daemon
#             running for SOAK_MIN minutes; delta-table sizes, rows, lag and RSS every minute.
#
# Usage (from the repository root; phases can run one by one, the servers stay up between
# them until `teardown`):
#   bench/replicate/run.sh setup
#   ROUNDS=3 BACKLOGS="20000 100000" bench/replicate/run.sh catchup
#     (TOOLS="pgduplex" for the daemon alone, BIN_TAG=name to label the binary's rows, BATCH_ROWS=n)
#   PROFILE_TX=20000 bench/replicate/run.sh profile   # statement time of one drain (not a figure of record)
#   bench/replicate/run.sh lag
#   STEADY_BINS="new=path old=path" bench/replicate/run.sh steady   # daemon CPU per changed row at -R STEADY_RATE
#   bench/replicate/run.sh bigdrain
#   SOAK_MIN=60 bench/replicate/run.sh soak
#   PGDX_BIN=path/to/pgduplex bench/replicate/run.sh usebin   # swap the daemon binary between phases
#   bench/replicate/run.sh teardown
#   bench/replicate/run.sh all            # setup, catchup, lag, bigdrain, soak, teardown
# Output: $OUT (default bench/replicate/out/<timestamp>; kept in $WORK/out_dir across phases).
# Summary: python3 bench/replicate/summarize.py $OUT
set -euo pipefail

SCALE=${SCALE:-10}
ROUNDS=${ROUNDS:-3}
ROUND_BASE=${ROUND_BASE:-0}                 # catchup rounds are numbered ROUND_BASE+1 ...
BACKLOGS=${BACKLOGS:-"20000 100000"}       # pgbench transactions per backlog (catchup)
BUILD_CLIENTS=${BUILD_CLIENTS:-2}           # pgbench -c for building backlogs (-j the same)
LAG_SECS=${LAG_SECS:-60}                    # per lag run
LAG_ROUNDS=${LAG_ROUNDS:-2}
LAG_RATE=${LAG_RATE:-500}                   # fixed-rate lag run: pgbench -R
LAG_EVERY=${LAG_EVERY:-0.2}                 # lag sample period (s)
RSS_EVERY=${RSS_EVERY:-0.25}                # RSS sample period (s)
BIG_ROUNDS=${BIG_ROUNDS:-3}
BIG_BUCARDO=${BIG_BUCARDO:-1}               # also drain the 1M backlog with Bucardo (rounds)
SOAK_MIN=${SOAK_MIN:-60}
STEADY_ROUNDS=${STEADY_ROUNDS:-3}
STEADY_RATE=${STEADY_RATE:-200}             # steady: pgbench -R on left
STEADY_SECS=${STEADY_SECS:-30}
SOAK_RATE=${SOAK_RATE:-100}                 # pgbench -R per side during the soak
FSYNC=${FSYNC:-off}
PORT_L=${PORT_L:-55471}
PORT_R=${PORT_R:-55472}
PGBIN=${PGBIN:-$(pg_config --bindir)}
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$(cd "$(dirname "$0")" && pwd)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
WORK=${WORK:-/tmp/pgdx_replbench}
BIN=$WORK/pgduplex                          # a copy: a rebuild elsewhere cannot change it mid-run
SOCK=$WORK/sock
export PATH=$PGBIN:$PATH PGUSER=postgres PGHOST=$SOCK

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
ts() { date +%s.%N; }
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
pl() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -p "$PORT_L" -d "$db" "$@"; }
pr() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -p "$PORT_R" -d "$db" "$@"; }
both() { pl "$@"; pr "$@"; }
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/'; }

if [ -f "$WORK/out_dir" ]; then OUT=${OUT:-$(cat "$WORK/out_dir")}; else OUT=${OUT:-$HERE/out/$(date +%Y%m%dT%H%M%S)}; fi
mkdir -p "$OUT"

# ---------------------------------------------------------------- servers
start_one() {   # start_one <name> <port>
  local d=$WORK/$1
  as_pg "$PGBIN/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >>"$OUT/run.log" 2>&1
  cat >>"$d/postgresql.conf" <<EOF
listen_addresses = ''
port = $2
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
fsync = $FSYNC
synchronous_commit = $([ "$FSYNC" = off ] && echo off || echo on)
full_page_writes = on
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = on
max_connections = 100
work_mem = 4MB
EOF
  as_pg "$PGBIN/pg_ctl" -D "$d" -l "$WORK/$1.log" -w start >>"$OUT/run.log" 2>&1
}
cfg() {   # cfg <db> : pgduplex configuration for the pair <db>@left <-> <db>@right
  local f=$OUT/pgduplex_$1.toml
  cat >"$f" <<EOF
# written by bench/replicate/run.sh
[left]
url = "postgres://postgres@/$1?host=$SOCK&port=$PORT_L"
sslmode = "disable"
[right]
url = "postgres://postgres@/$1?host=$SOCK&port=$PORT_R"
sslmode = "disable"
[replication]
batch_rows = ${BATCH_ROWS:-10000}
batch_megabytes = 64
poll_interval_ms = ${POLL_MS:-100}
EOF
  echo "$f"
}
make_db() {   # make_db <db> : identical pgbench data on both servers, history with a PK
  local p
  for p in "$PORT_L" "$PORT_R"; do
    createdb -p "$p" "$1"
    pgbench -p "$p" -i -q -s "$SCALE" "$1" >>"$OUT/run.log" 2>&1
    psql -X -q -v ON_ERROR_STOP=1 -p "$p" -d "$1" -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY" -c "VACUUM ANALYZE"
  done
}
BC=(bucardo --db-host "$SOCK" --db-port "$PORT_L" --db-user postgres --db-name bucardo --no-bucardorc --quiet)
install_bucardo() {   # real Bucardo two-way sync between bc@left and bc@right (copied from trigger_overhead)
  mkdir -p "$WORK/bucardo_run" "$WORK/bucardo_log"
  (cd "$WORK" && "${BC[@]}" --piddir "$WORK/bucardo_run" --batch install) >>"$OUT/run.log" 2>&1
  "${BC[@]}" add db src_bc dbname=bc host="$SOCK" port="$PORT_L" user=postgres >>"$OUT/run.log" 2>&1
  "${BC[@]}" add db dst_bc dbname=bc host="$SOCK" port="$PORT_R" user=postgres >>"$OUT/run.log" 2>&1
  "${BC[@]}" add table public.pgbench_accounts public.pgbench_branches public.pgbench_tellers public.pgbench_history \
    db=src_bc relgroup=rg_bc >>"$OUT/run.log" 2>&1
  "${BC[@]}" add sync sync_bc relgroup=rg_bc dbs=src_bc:source,dst_bc:source >>"$OUT/run.log" 2>&1
  pl bc -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'bucardo_delta'" | grep -q '^4$' \
    || { say "FATAL: bucardo did not create its triggers on left"; exit 1; }
  pl bc >"$OUT/ddl_bucardo.sql" <<'EOF'
SELECT pg_get_triggerdef(t.oid) || ';' FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY t.tgrelid::regclass::text, t.tgname;
EOF
}
bucardo_start() { (cd "$WORK" && "${BC[@]}" --piddir "$WORK/bucardo_run" --log-destination "$WORK/bucardo_log" start "bench") >>"$OUT/run.log" 2>&1; }
bucardo_stop() {
  (cd "$WORK" && "${BC[@]}" --piddir "$WORK/bucardo_run" stop "bench") >>"$OUT/run.log" 2>&1 || true
  local i; for i in $(seq 1 60); do ls "$WORK"/bucardo_run/*.pid >/dev/null 2>&1 || return 0; sleep 0.5; done
  say "WARNING: bucardo pid files still present after stop"
}

setup() {
  [ ! -d "$WORK" ] || { echo "$WORK exists: run teardown first" >&2; exit 1; }
  mkdir -p "$WORK" "$SOCK"; chown postgres "$WORK" "$SOCK"; chmod 755 "$WORK"
  echo "$OUT" >"$WORK/out_dir"
  if [ "${BUILD:-1}" = 1 ]; then
    say "building pgduplex (release) into $CARGO_TARGET_DIR"
    (cd "$REPO" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -p pgduplex) >>"$OUT/run.log" 2>&1
  fi
  cp "${PGDX_BIN:-$CARGO_TARGET_DIR/release/pgduplex}" "$BIN"
  {
    echo "# replicate benchmark, setup $(date -Is)"
    echo "machine: nproc=$(nproc) $(grep MemTotal /proc/meminfo | tr -s ' ') kernel=$(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "postgres: $("$PGBIN/postgres" --version); bucardo: $(bucardo --version 2>&1 | head -1)"
    echo "pgduplex: $("$BIN" --version) sha256=$(sha256sum "$BIN" | cut -c1-16) commit=$(git -C "$REPO" rev-parse --short HEAD) uncommitted:[$(git -C "$REPO" diff --name-only HEAD -- crates sql | tr '\n' ' ')]"
    echo "SCALE=$SCALE FSYNC=$FSYNC (synchronous_commit=$([ "$FSYNC" = off ] && echo off || echo on)) shared_buffers=1GB autovacuum=on max_wal_size=8GB checkpoint_timeout=30min"
  } >>"$OUT/params.txt"
  start_one left "$PORT_L"; start_one right "$PORT_R"
  say "servers up: $(pl postgres -c 'select version()')"
  say "creating pgbench scale $SCALE databases dx (pgduplex) and bc (Bucardo) on both servers"
  make_db dx; make_db bc
  "$BIN" --config "$(cfg dx)" install >>"$OUT/run.log" 2>&1 || { say "FATAL: pgduplex install failed"; exit 1; }
  install_bucardo
  say "setup done (pgduplex installed on dx, Bucardo sync_bc on bc, Bucardo stopped)"
}
usebin() {   # the daemon binary for the following phases (the servers and data stay)
  cp "${PGDX_BIN:?set PGDX_BIN}" "$BIN"
  echo "usebin $(date -Is): $PGDX_BIN sha256=$(sha256sum "$BIN" | cut -c1-16) $("$BIN" --version)" >>"$OUT/params.txt"
  say "daemon binary now $PGDX_BIN ($(sha256sum "$BIN" | cut -c1-16))"
}
teardown() {
  bucardo_stop 2>/dev/null || true
  local n
  for n in left right; do
    [ -f "$WORK/$n/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/$n" -m fast -w stop >/dev/null 2>&1 || true
    cp "$WORK/$n.log" "$OUT/server_$n.log" 2>/dev/null || true
  done
  rm -rf "$WORK"
  echo "torn down; results in $OUT"
}

# ---------------------------------------------------------------- measuring helpers
# Delta rows pending on a side: pgduplex (dx, soak) or Bucardo (bc).
DX_PENDING="SELECT (SELECT count(*) FROM pgduplex.delta_1) + (SELECT count(*) FROM pgduplex.delta_2) + (SELECT count(*) FROM pgduplex.delta_3) + (SELECT count(*) FROM pgduplex.delta_4)"
BC_PENDING="SELECT (SELECT count(*) FROM bucardo.delta_public_pgbench_accounts) + (SELECT count(*) FROM bucardo.delta_public_pgbench_branches) + (SELECT count(*) FROM bucardo.delta_public_pgbench_tellers) + (SELECT count(*) FROM bucardo.delta_public_pgbench_history)"
bucardo_purge() {   # empties Bucardo's delta/track/stage tables on both sides; prints the stale delta rows on left
  local n; n=$(pending bucardo)
  both bc -c "TRUNCATE bucardo.delta_public_pgbench_accounts, bucardo.delta_public_pgbench_branches, bucardo.delta_public_pgbench_tellers, bucardo.delta_public_pgbench_history, bucardo.track_public_pgbench_accounts, bucardo.track_public_pgbench_branches, bucardo.track_public_pgbench_tellers, bucardo.track_public_pgbench_history, bucardo.stage_public_pgbench_accounts, bucardo.stage_public_pgbench_branches, bucardo.stage_public_pgbench_tellers, bucardo.stage_public_pgbench_history"
  echo "$n"
}
pending() { case $1 in pgduplex) pl dx -c "$DX_PENDING" ;; bucardo) pl bc -c "$BC_PENDING" ;; esac; }
lag_sql() { echo "SELECT to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.MS'), round(coalesce(extract(epoch FROM clock_timestamp() - least((SELECT min(captured_at) FROM pgduplex.delta_1), (SELECT min(captured_at) FROM pgduplex.delta_2), (SELECT min(captured_at) FROM pgduplex.delta_3), (SELECT min(captured_at) FROM pgduplex.delta_4), (SELECT min(captured_at) FROM pgduplex.truncate_log))), 0), 4)"; }
lag_stats() {   # lag_stats <samples.csv> : "n,p50,p90,p99,max" of the lag column of \watch samples
  python3 - "$1" <<'PY'
import sys
v = sorted(float(l.split(",")[1]) for l in open(sys.argv[1]) if l.count(",") == 1)
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
print(f"{len(v)},{q(.5):.3f},{q(.9):.3f},{q(.99):.3f},{v[-1] if v else 'nan'}")
PY
}
checksum() {   # checksum <psql fn> <db> : one md5 over the 4 tables' contents
  "$1" "$2" -c "SELECT md5((SELECT string_agg(md5(a::text), '' ORDER BY aid) FROM pgbench_accounts a) || (SELECT string_agg(md5(b::text), '' ORDER BY bid) FROM pgbench_branches b) || (SELECT string_agg(md5(t::text), '' ORDER BY tid) FROM pgbench_tellers t) || (SELECT string_agg(md5(h::text), '' ORDER BY id) FROM pgbench_history h))"
}
converged() {   # converged <db> -> "yes"/"NO"
  local l r; l=$(checksum pl "$1"); r=$(checksum pr "$1")
  [ "$l" = "$r" ] && echo yes || echo NO
}
rss_sampler() {   # rss_sampler <pid> <csv> : t,VmRSS kB,VmHWM kB every RSS_EVERY s while the pid lives
  local pid=$1 f=$2 s
  echo "t,rss_kb,hwm_kb" >"$f"
  while s=$(cat "/proc/$pid/status" 2>/dev/null); do
    awk -v t="$(ts)" '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{if (r != "") print t "," r "," h}' <<<"$s" >>"$f"
    sleep "$RSS_EVERY"
  done
}
bucardo_rss() {   # "<sum> <max>" of the RSS (kB) of Bucardo's processes (MCP, CTL, KIDs, VAC; by pid file)
  local p r s=0 m=0
  for p in $(cat "$WORK"/bucardo_run/bucardo*.pid 2>/dev/null | grep -o '^[0-9]*'); do
    r=$(awk '/^VmRSS/{r=$2} END{print r + 0}' "/proc/$p/status" 2>/dev/null || echo 0)
    s=$((s + r)); [ "$r" -gt "$m" ] && m=$r
  done
  echo "$s $m"
}
prep_drain() {   # prep_drain <db>: same starting conditions for both tools, outside the timing
  both "$1" -c "VACUUM ANALYZE" -c "CHECKPOINT"
  sleep 1
}
build_backlog() {   # build_backlog <db> <tx>: pgbench tpcb-like on left, no replicator running
  local per=$(( $2 / BUILD_CLIENTS ))
  pgbench -n -p "$PORT_L" -c "$BUILD_CLIENTS" -j "$BUILD_CLIENTS" -t "$per" "$1" 2>>"$OUT/run.log" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}

# one pgduplex drain: prints "wall_s apply_s user_s sys_s maxrss_kb rc"
pgduplex_drain() {   # pgduplex_drain <cfg> <label>
  local c=$1 label=$2 t0 t1 tp pid rc=0
  t0=$(ts)
  RUST_LOG=${DAEMON_LOG:-info,pgduplex_engine::replicate=debug} /usr/bin/time -f "%e %U %S %M" -o "$OUT/time_$label.txt" "$BIN" --config "$c" replicate --until-idle \
    2>"$OUT/daemon_$label.log" &
  tp=$!
  pid=""; for _ in $(seq 1 200); do pid=$(pgrep -P "$tp" || true); [ -n "$pid" ] && break; sleep 0.01; done
  [ -n "$pid" ] && rss_sampler "$pid" "$OUT/rss_$label.csv" &
  wait "$tp" || rc=$?
  t1=$(ts)
  wait
  # apply time: from the log line "replicating N table(s)" (after start checks) to "no pending changes"
  local a
  a=$(python3 - "$OUT/daemon_$label.log" <<'PY'
import re, sys, datetime
s = e = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\x1b?\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z?", line)
    if not m: continue
    t = datetime.datetime.fromisoformat(m.group(1)[:26])
    if "replicating" in line and s is None: s = t
    if "no pending changes" in line: e = t
print(f"{(e - s).total_seconds():.3f}" if s and e else "NA")
PY
)
  read -r el us sy mr <"$OUT/time_$label.txt" || true
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}') $a $us $sy $mr $rc"
}
# one Bucardo drain: start Bucardo (stopped while the backlog was built), kick the sync and
# wait until it has finished. Prints "wall_s syncrun_s maxrss_kb(sum of its processes) rc"
bucardo_drain() {   # bucardo_drain <label>
  local label=$1 t0 t1 rc=0 mx=0 r
  local bdb=(psql -X -q -At -p "$PORT_L" -d bucardo)
  t0=$(ts)
  bucardo_start
  ( echo "t,rss_sum_kb,rss_max_kb"; while :; do r=$(bucardo_rss); echo "$(ts),${r/ /,}"; sleep "$RSS_EVERY"; done ) >"$OUT/rss_$label.csv" &
  local sp=$!
  (cd "$WORK" && timeout 1800 "${BC[@]}" --notimer kick sync_bc 0) >>"$OUT/bucardo_$label.log" 2>&1 || rc=$?
  # the kick returns when a run of the sync that started after it has ended: every delta
  # committed before it is applied (checked afterwards by comparing both sides' contents)
  t1=$(ts)
  kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true
  mx=$(tail -n +2 "$OUT/rss_$label.csv" | cut -d, -f2 | sort -n | tail -1)
  local sr
  sr=$("${bdb[@]}" -c "SELECT round(extract(epoch FROM max(ended) - min(started))::numeric, 3) FROM bucardo.syncrun WHERE sync = 'sync_bc' AND started >= to_timestamp($t0)")
  "${bdb[@]}" -c "SELECT started, ended, status, details FROM bucardo.syncrun WHERE sync = 'sync_bc' AND started >= to_timestamp($t0) ORDER BY started" >>"$OUT/bucardo_$label.log" 2>&1 || true
  bucardo_stop
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}') ${sr:-NA} $mx $rc"
}

# ---------------------------------------------------------------- (a)+(c) catch-up
catchup() {
  local f=$OUT/catchup.csv cdx; cdx=$(cfg dx)
  [ -f "$f" ] || echo "round,tool,backlog_tx,build_tps,delta_rows,changed_rows,wall_s,apply_s,rows_per_s_wall,rows_per_s_apply,user_s,sys_s,peak_rss_kb,rc,converged,load,bucardo_stale_deltas,bin" >"$f"
  local r tx tool order
  for ((r = ROUND_BASE + 1; r <= ROUND_BASE + ROUNDS; r++)); do
    for tx in $BACKLOGS; do
      if (( r % 2 )); then order=${TOOLS:-"pgduplex bucardo"}; else order=$(echo ${TOOLS:-"pgduplex bucardo"} | tr ' ' '\n' | tac | tr '\n' ' '); fi
      for tool in $order; do
        local label="catchup_r${r}_${tx}_${tool}${BIN_TAG:+_$BIN_TAG}" db tps nd
        case $tool in pgduplex) db=dx ;; bucardo) db=bc ;; esac
        # Bucardo keeps applied deltas (and their track rows) until its VAC process purges
        # them, which it never does here (it is stopped between drains): purge them now,
        # outside the timing, so that each Bucardo drain starts clean like pgduplex's.
        # bucardo_stale_deltas: Bucardo delta rows left when the drain starts, not from this backlog
        # (0 since the purge; the purged count goes to run.log).
        local stale=0; if [ "$tool" = bucardo ]; then say "bucardo: purged $(bucardo_purge) applied delta rows"; stale=$(pending bucardo); fi
        # delta rows the backlog added
        local n0; n0=$(pending "$tool")
        tps=$(build_backlog "$db" "$tx")
        nd=$(( $(pending "$tool") - n0 ))
        prep_drain "$db"
        local out wall ap us sy mr rc
        if [ "$tool" = pgduplex ]; then
          out=$(pgduplex_drain "$cdx" "$label"); read -r wall ap us sy mr rc <<<"$out"
        else
          out=$(bucardo_drain "$label"); read -r wall ap mr rc <<<"$out"; us=NA; sy=NA
        fi
        local ch=$((tx * 4)) cv; cv=$(converged "$db")
        echo "$r,$tool,$tx,$tps,$nd,$ch,$wall,$ap,$(awk -v c=$ch -v w="$wall" 'BEGIN{printf "%.0f", c / w}'),$(awk -v c=$ch -v w="$ap" 'BEGIN{if (w + 0 > 0) printf "%.0f", c / w; else print "NA"}'),$us,$sy,$mr,$rc,$cv,$(load),$stale,$([ "$tool" = pgduplex ] && echo "${BIN_TAG:-}")" >>"$f"
        say "catchup r$r $tool $tx tx: build $tps tps, $nd delta rows, drain wall ${wall}s apply ${ap}s, rss ${mr} kB, rc $rc, converged $cv (load $(load))"
      done
    done
  done
}

# ---------------------------------------------------------------- where a drain's time goes
# One extra drain (not a figure of record) of a PROFILE_TX backlog with every statement's
# duration logged by both servers (log_min_duration_statement = 0), summed per statement.
profile() {
  local cdx tx=${PROFILE_TX:-20000} ol or; cdx=$(cfg dx)
  build_backlog dx "$tx" >/dev/null
  prep_drain dx
  ol=$(stat -c %s "$WORK/left.log"); or=$(stat -c %s "$WORK/right.log")
  both postgres -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
  local out; out=$(pgduplex_drain "$cdx" "profile_${tx}_b${BATCH_ROWS:-10000}")
  both postgres -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null
  say "profile drain ($tx tx, batch_rows ${BATCH_ROWS:-10000}): wall apply user sys maxrss rc = $out"
  { tail -c +$((ol + 1)) "$WORK/left.log" | sed 's/^/left /'; tail -c +$((or + 1)) "$WORK/right.log" | sed 's/^/right /'; } |
    python3 "$HERE/profile.py" "$out" >"$OUT/profile_${tx}_b${BATCH_ROWS:-10000}.txt"
  cat "$OUT/profile_${tx}_b${BATCH_ROWS:-10000}.txt" >&2
}

# ---------------------------------------------------------------- (b)+(c) steady-state lag
lag() {
  local f=$OUT/lag.csv cdx tp pid; cdx=$(cfg dx)
  [ -f "$f" ] || echo "round,mode,secs,tps,samples,lag_p50,lag_p90,lag_p99,lag_max,peak_rss_kb,converged,load" >"$f"
  "$BIN" --config "$cdx" replicate --until-idle >>"$OUT/run.log" 2>&1
  prep_drain dx
  RUST_LOG=info /usr/bin/time -f "%e %U %S %M" -o "$OUT/time_lag_daemon.txt" "$BIN" --config "$cdx" replicate 2>"$OUT/daemon_lag.log" &
  tp=$!
  sleep 0.3; pid=$(pgrep -P "$tp")
  rss_sampler "$pid" "$OUT/rss_lag.csv" &
  local rsp=$!
  sleep 3
  local r mode opts
  for ((r = 1; r <= LAG_ROUNDS; r++)); do
    for mode in max fixed; do
      case $mode in max) opts=(-c 2 -j 2) ;; fixed) opts=(-c 2 -j 2 -R "$LAG_RATE") ;; esac
      local samp=$OUT/lag_r${r}_${mode}.csv
      printf '%s \\watch %s\n' "$(lag_sql)" "$LAG_EVERY" | psql -X -q -At -F, -p "$PORT_L" -d dx >"$samp" 2>/dev/null &
      local wp=$!
      local tps
      tps=$(pgbench -n -p "$PORT_L" "${opts[@]}" -T "$LAG_SECS" dx 2>>"$OUT/run.log" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
      sleep 2   # the tail: changes of the last transactions
      kill "$wp" 2>/dev/null || true; wait "$wp" 2>/dev/null || true
      local st; st=$(lag_stats "$samp")
      local hwm; hwm=$(tail -1 "$OUT/rss_lag.csv" | cut -d, -f3)
      echo "$r,$mode,$LAG_SECS,$tps,$st,$hwm,$(converged dx),$(load)" >>"$f"
      say "lag r$r $mode: $tps tps; samples,p50,p90,p99,max = $st; daemon VmHWM $hwm kB (load $(load))"
      sleep 3
    done
  done
  kill -TERM "$pid"; wait "$tp" || true; wait "$rsp" 2>/dev/null || true
  say "lag daemon: $(cat "$OUT/time_lag_daemon.txt") (elapsed user sys maxrss_kB)"
}

# ---------------------------------------------------------------- (d) 1M-row backlog
bigdrain() {
  local f=$OUT/bigdrain.csv cdx; cdx=$(cfg dx)
  [ -f "$f" ] || echo "round,tool,changed_rows,delta_rows,update_s,wall_s,apply_s,rows_per_s_wall,rows_per_s_apply,user_s,sys_s,peak_rss_kb,rss_p50_kb,rss_first_kb,rss_last_kb,rc,converged,load" >"$f"
  local r tool
  for ((r = 1; r <= BIG_ROUNDS; r++)); do
    local tools="pgduplex"; [ "$r" -le "$BIG_BUCARDO" ] && tools="pgduplex bucardo"
    (( r % 2 )) || tools=$(echo "$tools" | tr ' ' '\n' | tac | tr '\n' ' ')
    for tool in $tools; do
      local db label="big_r${r}_${tool}" t0 t1 nd out wall ap us sy mr rc
      case $tool in pgduplex) db=dx ;; bucardo) db=bc ;; esac
      prep_drain "$db"
      [ "$tool" = bucardo ] && bucardo_purge >/dev/null
      local n0; n0=$(pending "$tool")
      t0=$(ts); pl "$db" -c "UPDATE pgbench_accounts SET abalance = abalance + 1"; t1=$(ts)
      nd=$(( $(pending "$tool") - n0 ))
      prep_drain "$db"
      if [ "$tool" = pgduplex ]; then
        out=$(pgduplex_drain "$cdx" "$label"); read -r wall ap us sy mr rc <<<"$out"
      else
        out=$(bucardo_drain "$label"); read -r wall ap mr rc <<<"$out"; us=NA; sy=NA
      fi
      local st; st=$(python3 - "$OUT/rss_$label.csv" <<'PY'
import sys
v = [int(l.split(",")[1]) for l in list(open(sys.argv[1]))[1:] if l.strip() and l.split(",")[1].strip().isdigit()]
s = sorted(v)
print(f"{s[len(s)//2]},{v[0]},{v[-1]}" if v else "NA,NA,NA")
PY
)
      local ch=1000000
      echo "$r,$tool,$ch,$nd,$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}'),$wall,$ap,$(awk -v c=$ch -v w="$wall" 'BEGIN{printf "%.0f", c / w}'),$(awk -v c=$ch -v w="$ap" 'BEGIN{if (w + 0 > 0) printf "%.0f", c / w; else print "NA"}'),$us,$sy,$mr,$st,$rc,$(converged "$db"),$(load)" >>"$f"
      say "bigdrain r$r $tool: $nd delta rows, drain wall ${wall}s apply ${ap}s, peak rss ${mr} kB (p50,first,last $st), rc $rc (load $(load))"
    done
  done
}

# ---------------------------------------------------------------- (e) soak
soak() {
  local f=$OUT/soak.csv csk tp pid
  say "soak: fresh databases 'soak' on both servers"
  make_db soak
  # disjoint keys per side: left writes branches 1-5, right 6-10; history ids from different ranges
  pr soak -c "ALTER SEQUENCE pgbench_history_id_seq RESTART 1000000000"
  csk=$(cfg soak)
  "$BIN" --config "$csk" install >>"$OUT/run.log" 2>&1
  cat >"$OUT/soak_tpcb.sql" <<'EOF'
-- tpcb-like, restricted to branches :bmin..:bmax (and their tellers and accounts)
\set bid random(:bmin, :bmax)
\set tid 10 * (:bid - 1) + random(1, 10)
\set aid 100000 * (:bid - 1) + random(1, 100000)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
EOF
  RUST_LOG=info /usr/bin/time -f "%e %U %S %M" -o "$OUT/time_soak_daemon.txt" "$BIN" --config "$csk" replicate 2>"$OUT/daemon_soak.log" &
  tp=$!
  sleep 0.3; pid=$(pgrep -P "$tp")
  ( RSS_EVERY=5; rss_sampler "$pid" "$OUT/rss_soak.csv" ) &
  local rsp=$!
  sleep 3
  local secs=$((SOAK_MIN * 60))
  pgbench -n -p "$PORT_L" -c 2 -j 2 -R "$SOAK_RATE" -T "$secs" -f "$OUT/soak_tpcb.sql" -D bmin=1 -D bmax=5 soak >"$OUT/soak_pgbench_left.txt" 2>&1 &
  local pbl=$!
  pgbench -n -p "$PORT_R" -c 2 -j 2 -R "$SOAK_RATE" -T "$secs" -f "$OUT/soak_tpcb.sql" -D bmin=6 -D bmax=10 soak >"$OUT/soak_pgbench_right.txt" 2>&1 &
  local pbr=$!
  # lag on both sides every second for the whole soak (p50/p99 over the soak)
  printf '%s \\watch 1\n' "$(lag_sql)" | psql -X -q -At -F, -p "$PORT_L" -d soak >"$OUT/soak_lag_left.csv" 2>/dev/null &
  local wl=$!
  printf '%s \\watch 1\n' "$(lag_sql)" | psql -X -q -At -F, -p "$PORT_R" -d soak >"$OUT/soak_lag_right.csv" 2>/dev/null &
  local wr=$!
  local q="SELECT ($DX_PENDING), (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgduplex' AND c.relkind = 'r' AND c.relname ~ '^delta_[0-9]+\$'), (SELECT sum(n_dead_tup) FROM pg_stat_user_tables WHERE schemaname = 'pgduplex' AND relname ~ '^delta_'), (SELECT sum(autovacuum_count) FROM pg_stat_user_tables WHERE schemaname = 'pgduplex' AND relname ~ '^delta_'), pg_total_relation_size('pgduplex.applied'), (SELECT count(*) FROM pgduplex.conflicts), (SELECT count(*) FROM pgbench_history)"
  echo "minute,elapsed_s,side,pending_rows,delta_bytes,delta_dead_tup,delta_autovacuums,ledger_bytes,conflicts,history_rows,lag_s,daemon_rss_kb" >"$f"
  local m=0 t0; t0=$(ts)
  while kill -0 "$pbl" 2>/dev/null || kill -0 "$pbr" 2>/dev/null; do
    local side fn lg rss
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo NA)
    for side in left right; do
      fn=pl; [ "$side" = right ] && fn=pr
      lg=$($fn soak -c "$(lag_sql)" | cut -d'|' -f2)
      echo "$m,$(awk -v a="$t0" -v b="$(ts)" 'BEGIN{printf "%.0f", b - a}'),$side,$($fn soak -F, -c "$q"),$lg,$rss" >>"$f"
    done
    say "soak minute $m: $(tail -2 "$f" | tr '\n' ' ') (load $(load))"
    m=$((m + 1))
    local i; for i in $(seq 1 60); do kill -0 "$pbl" 2>/dev/null || kill -0 "$pbr" 2>/dev/null || break; sleep 1; done
  done
  wait "$pbl" || true; wait "$pbr" || true
  sleep 5
  kill "$wl" "$wr" 2>/dev/null || true
  local side fn
  for side in left right; do
    fn=pl; [ "$side" = right ] && fn=pr
    echo "$m,$(awk -v a="$t0" -v b="$(ts)" 'BEGIN{printf "%.0f", b - a}'),$side,$($fn soak -F, -c "$q"),$($fn soak -c "$(lag_sql)" | cut -d'|' -f2),$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")" >>"$f"
  done
  kill -TERM "$pid"; wait "$tp" || true; wait "$rsp" 2>/dev/null || true
  {
    echo "converged=$(converged soak)"
    echo "daemon(elapsed user sys maxrss_kB)=$(cat "$OUT/time_soak_daemon.txt")"
    grep -h '^tps\|^number of transactions actually\|latency average' "$OUT"/soak_pgbench_*.txt
  } | tee "$OUT/soak_end.txt" >&2
}

steady() {   # steady-state cost: the daemon running while pgbench writes at a fixed rate on left
  # STEADY_BINS="tag=path ..." (default: the phase's binary, tag "bin"): each round runs every
  # binary once, the order rotated by round. Daemon CPU from /proc over the pgbench run.
  local f=$OUT/steady.csv cdx; cdx=$(cfg dx)
  local tck; tck=$(getconf CLK_TCK)
  [ -f "$f" ] || echo "round,bin,rate,secs,tx,changed_rows,daemon_user_s,daemon_sys_s,daemon_cpu_us_per_row,left_xacts_not_pgbench,lag_p50,lag_p99,lag_max,converged,load" >"$f"
  "$BIN" --config "$cdx" replicate --until-idle >>"$OUT/run.log" 2>&1
  local bins=(${STEADY_BINS:-bin=$BIN}) n r i
  n=${#bins[@]}
  for ((r = 1; r <= STEADY_ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
      local spec=${bins[$(((i + r - 1) % n))]}
      local tag=${spec%%=*} path=${spec#*=} b=$WORK/pgduplex_steady
      cp "$path" "$b"
      prep_drain dx
      RUST_LOG=info "$b" --config "$cdx" replicate 2>"$OUT/daemon_steady_r${r}_$tag.log" &
      local dp=$!
      sleep 3
      local u0 s0 u1 s1 x0 x1
      read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$dp/stat")
      x0=$(pl dx -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'dx'")
      local samp=$OUT/steady_lag_r${r}_$tag.csv
      printf '%s \\watch %s\n' "$(lag_sql)" "$LAG_EVERY" | psql -X -q -At -F, -p "$PORT_L" -d dx >"$samp" 2>/dev/null &
      local wp=$!
      local tx
      tx=$(pgbench -n -p "$PORT_L" -c 2 -j 2 -R "$STEADY_RATE" -T "$STEADY_SECS" dx 2>>"$OUT/run.log" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
      read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$dp/stat")
      sleep 2   # the tail, and the statistics flushed
      x1=$(pl dx -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'dx'")
      kill "$wp" 2>/dev/null || true; wait "$wp" 2>/dev/null || true
      kill -TERM "$dp"; wait "$dp" || true
      local st; st=$(lag_stats "$samp" | cut -d, -f2,4,5)
      local rows=$((tx * 4))
      local us sy; us=$(awk -v a="$u0" -v b="$u1" -v t="$tck" 'BEGIN{printf "%.2f", (b - a) / t}'); sy=$(awk -v a="$s0" -v b="$s1" -v t="$tck" 'BEGIN{printf "%.2f", (b - a) / t}')
      echo "$r,$tag,$STEADY_RATE,$STEADY_SECS,$tx,$rows,$us,$sy,$(awk -v u="$us" -v s="$sy" -v n="$rows" 'BEGIN{printf "%.0f", (u + s) * 1e6 / n}'),$((x1 - x0 - tx)),$st,$(converged dx),$(load)" >>"$f"
      say "steady r$r $tag: $tx tx at -R $STEADY_RATE, daemon $us s user $sy s sys; lag p50,p99,max $st (load $(load))"
    done
  done
}

case ${1:-all} in
  setup) setup ;;
  catchup) catchup ;;
  lag) lag ;;
  bigdrain) bigdrain ;;
  soak) soak ;;
  profile) profile ;;
  steady) steady ;;
  usebin) usebin ;;
  teardown) teardown ;;
  all) setup; catchup; lag; bigdrain; soak; teardown ;;
  *) echo "usage: $0 setup|catchup|profile|lag|steady|bigdrain|soak|usebin|teardown|all" >&2; exit 2 ;;
esac
