#!/usr/bin/env bash
# A/B benchmark of two pgduplex release binaries (issue 12: "no behaviour change"):
# the initial copy, the catch-up drain and the scan, the OLD and the NEW binary
# alternated in the same run on the same two throw-away PostgreSQL servers.
#
#   copy     `pgduplex onetimecopy` of pgbench data at scale $SCALE (about 15 MB per
#            unit of scale) from left to right, into a fresh target database holding
#            only the schema (pg_dump -s of the pristine source; the existing
#            bench/onetimecopy/run.sh method). Timed: the whole command (it also
#            installs pgduplex's schema on the fresh target). Checked: the target is
#            empty before, and every table holds as many rows as on the source after.
#            (pgbench_history is empty and has no key: pgduplex leaves it out.)
#            COPY_TARGET=truncate keeps one target database per binary instead and
#            runs `onetimecopy --mode truncate` into it (the emptying is then timed;
#            checked as well: the tables got new files, i.e. were written again).
#   catchup  `pgduplex replicate --until-idle` draining a backlog of $BACKLOG pgbench
#            transactions (tpcb-like, -c 2 -j 2) built on left while no daemon runs;
#            pgbench data at scale $CATCHUP_SCALE, pgbench_history given a primary
#            key. Timed: the drain only (start-up included, like the recorded
#            catch-up figures); apply_s is the time from the daemon's "replicating"
#            log line to its "no pending changes" line. Checked: exit 0 and both
#            sides' contents equal (md5 over the four tables, in SQL; pgduplex is
#            not asked).
#   scan     `pgduplex scan` (default --jobs 2) of an identical pair of pgbench
#            databases at scale $SCALE without pgduplex installed. Checked: exit 0.
#
# The two binaries install different versions of pgduplex's own schema (an older
# binary refuses a newer schema), so copy and catch-up give each binary its own pair
# of databases (cp_a/cp_b, cu_a/cu_b; a = OLD, b = NEW), made from the same template
# database; the read-only scan pair serves both. Before the timed runs each binary
# runs once untimed per area (the copy and catch-up warm-ups also install its schema
# on both sides and make the catch-up pair's initial copy).
#
# Round r runs OLD then NEW when r is odd, NEW then OLD when r is even. Before every
# timed run: VACUUM ANALYZE of the databases involved (catch-up), CHECKPOINT on both
# servers. Per run: wall seconds, pgduplex's peak RSS (/usr/bin/time), the exit code,
# the check, the 1-minute load. Figures: per area the median over rounds of each
# binary, NEW/OLD as the ratio of those medians and as the median of the per-round
# ratios (above 1: NEW is slower; the latter is the figure of record, as in
# BENCHMARKS.md).
#
# Time on a 2-core machine shared with builds (load 3-4): the defaults take about
# 4 minutes, each extra round about 1 minute (catch-up: 40 s, mostly building the
# backlog). A 20,000-transaction drain lasts about 1 s, so its per-round ratios
# spread widely on a loaded machine (0.46-1.61 in one 7-round run): use ROUNDS=7 or
# more for a figure of record (about 8 minutes).
#
# Usage (as root: the servers run as the `postgres` user; from anywhere):
#   bench/reorg/ab.sh OLD_BIN NEW_BIN
#   SCALE=2 CATCHUP_SCALE=2 BACKLOG=2000 ROUNDS=1 bench/reorg/ab.sh OLD_BIN NEW_BIN   # smoke run
# Settings (environment): ROUNDS (3; COPY_ROUNDS, CATCHUP_ROUNDS, SCAN_ROUNDS override
# it per area), SCALE (20: copy and scan), CATCHUP_SCALE (10), BACKLOG (20000
# transactions), AREAS ("copy catchup scan"), COPY_TARGET (fresh | truncate),
# OLD_LABEL / NEW_LABEL (e.g. the commits; default "old" / "new"), PORT_L / PORT_R
# (55491 / 55492), WORK (/tmp/pgdx_reorg_ab: servers, sockets, the binaries' copies),
# OUT (default /tmp/pgduplex-reorg-ab/<timestamp>, outside the repository).
# Output in $OUT: raw.csv (one line per run), summary.md (the table), params.txt
# (binaries, their sha256, machine, settings), run.log (pgduplex's output of every run,
# the servers' logs at the end).
set -euo pipefail

OLD_SRC=${1:?usage: $0 OLD_BIN NEW_BIN}
NEW_SRC=${2:?usage: $0 OLD_BIN NEW_BIN}
ROUNDS=${ROUNDS:-3}
COPY_ROUNDS=${COPY_ROUNDS:-$ROUNDS}
CATCHUP_ROUNDS=${CATCHUP_ROUNDS:-$ROUNDS}
SCAN_ROUNDS=${SCAN_ROUNDS:-$ROUNDS}
SCALE=${SCALE:-20}
CATCHUP_SCALE=${CATCHUP_SCALE:-10}
BACKLOG=${BACKLOG:-20000}
BUILD_CLIENTS=${BUILD_CLIENTS:-2}
AREAS=${AREAS:-"copy catchup scan"}
COPY_TARGET=${COPY_TARGET:-fresh}
OLD_LABEL=${OLD_LABEL:-old}
NEW_LABEL=${NEW_LABEL:-new}
PORT_L=${PORT_L:-55491}
PORT_R=${PORT_R:-55492}
PGBIN=${PGBIN:-$(pg_config --bindir)}
WORK=${WORK:-/tmp/pgdx_reorg_ab}
OUT=${OUT:-/tmp/pgduplex-reorg-ab/$(date +%Y%m%dT%H%M%S)}
HERE=$(cd "$(dirname "$0")" && pwd)
SOCK=$WORK/sock
export PATH=$PGBIN:$PATH PGUSER=postgres PGHOST=$SOCK
# psql and pgbench only (pgduplex does not read PGOPTIONS): no NOTICE noise.
export PGOPTIONS="-c client_min_messages=warning"
# Both binaries with their defaults: no settings from the caller's environment (the
# old binary reads PGDUPLEX_COPY_FORMAT, PGDUPLEX_COPY_KEEP_INDEXES, PGDUPLEX_FAILPOINT;
# the new one may not), default log level.
unset RUST_LOG $(compgen -e | grep '^PGDUPLEX_' || true)

case $COPY_TARGET in fresh | truncate) ;; *) echo "COPY_TARGET: fresh or truncate" >&2; exit 2 ;; esac
for b in "$OLD_SRC" "$NEW_SRC"; do [ -x "$b" ] || { echo "$b: not an executable" >&2; exit 2; }; done
mkdir -p "$OUT"
[ ! -e "$WORK" ] || { echo "$WORK exists (another run, or a killed one: stop its servers and remove it)" >&2; exit 1; }

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now() { date +%s.%N; }
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }
pl() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -p "$PORT_L" -d "$db" "$@"; }
pr() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -p "$PORT_R" -d "$db" "$@"; }
bin() { case $1 in a) echo "$WORK/pgduplex_old" ;; b) echo "$WORK/pgduplex_new" ;; esac; }
tag() { case $1 in a) echo old ;; b) echo new ;; esac; }
T0=$(now)

# ---------------------------------------------------------------- servers
stop_all() {
  local n
  for n in left right; do
    if [ -f "$WORK/$n/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$WORK/$n" -m immediate -w stop >/dev/null 2>&1 || true
      { echo "---- server $n log"; cat "$WORK/$n.log"; } >>"$OUT/run.log" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap stop_all EXIT
mkdir -p "$WORK" "$SOCK"; chown postgres "$WORK" "$SOCK" 2>/dev/null || true; chmod 755 "$WORK"
# Copies: a rebuild elsewhere during the run cannot change what is measured.
cp "$OLD_SRC" "$(bin a)"; cp "$NEW_SRC" "$(bin b)"

start_one() {   # start_one <name> <port>: the settings of bench/replicate/run.sh, autovacuum off
  local d=$WORK/$1
  as_pg "$PGBIN/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >>"$OUT/run.log" 2>&1
  cat >>"$d/postgresql.conf" <<EOF
listen_addresses = ''
port = $2
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
fsync = off
synchronous_commit = off
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
max_connections = 100
work_mem = 4MB
EOF
  as_pg "$PGBIN/pg_ctl" -D "$d" -l "$WORK/$1.log" -w start >>"$OUT/run.log" 2>&1
}
cfg() {   # cfg <left db> <right db>: a configuration for that pair; prints its path
  local f=$WORK/pgduplex_$1_$2.toml
  cat >"$f" <<EOF
# written by bench/reorg/ab.sh
[left]
url = "postgres://postgres@/$1?host=$SOCK&port=$PORT_L"
sslmode = "disable"
[right]
url = "postgres://postgres@/$2?host=$SOCK&port=$PORT_R"
sslmode = "disable"
[tables]
include = ['^public\.pgbench_(accounts|branches|tellers|history)\$']
EOF
  echo "$f"
}
checkpoint() { pl postgres -c "CHECKPOINT"; pr postgres -c "CHECKPOINT"; }
TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
counts() {   # counts <psql fn> <db>: the four tables' row counts, one line
  "$1" "$2" -c "SELECT concat_ws(' ', $(for t in $TABLES; do printf "(SELECT count(*) FROM %s)," "$t"; done | sed 's/,$//'))"
}
checksum() {   # checksum <psql fn> <db>: one md5 over the four tables' contents (history by its key)
  "$1" "$2" -c "SELECT md5((SELECT string_agg(md5(a::text), '' ORDER BY aid) FROM pgbench_accounts a) || (SELECT string_agg(md5(b::text), '' ORDER BY bid) FROM pgbench_branches b) || (SELECT string_agg(md5(t::text), '' ORDER BY tid) FROM pgbench_tellers t) || coalesce((SELECT string_agg(md5(h::text), '' ORDER BY id) FROM pgbench_history h), ''))"
}

# timed <label> <expected exit> <cmd...>: runs it under /usr/bin/time, output to run.log;
# sets RUN_S (wall seconds), RUN_RSS (peak RSS kB), RUN_RC.
timed() {
  local label=$1 want=$2 t0 t1; shift 2
  echo "---- $label: $*" >>"$OUT/run.log"
  RUN_RC=0
  t0=$(now)
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >>"$OUT/run.log" 2>"$WORK/stderr" || RUN_RC=$?
  t1=$(now)
  cat "$WORK/stderr" >>"$OUT/run.log"
  RUN_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
  RUN_RSS=$(tail -n 1 "$WORK/time" | awk '{print $2}')
  if [ "$RUN_RC" != "$want" ]; then
    say "FATAL: $label exited $RUN_RC, wanted $want (its output is at the end of $OUT/run.log)"; exit 1
  fi
}
record() {   # record <area> <round> <position> <variant> <check> [apply_s]
  local b; case $4 in a) b=$OLD_LABEL ;; b) b=$NEW_LABEL ;; esac
  echo "$1,$2,$3,$(tag "$4"),$b,$RUN_S,${6:-},$RUN_RSS,$RUN_RC,$5,$(load)" >>"$OUT/raw.csv"
  say "$1 round $2 $(tag "$4"): ${RUN_S}s${6:+ (apply ${6}s)}, rss ${RUN_RSS} kB, rc $RUN_RC, check $5 (load $(load))"
}
order() { if (( $1 % 2 )); then echo "a b"; else echo "b a"; fi; }   # order <round>

# ---------------------------------------------------------------- copy
copy_setup() {
  say "copy: pgbench scale $SCALE on left (cp_a, cp_b from one template)"
  pl postgres -c "CREATE DATABASE cp_pristine"
  pgbench -i -q -s "$SCALE" -p "$PORT_L" cp_pristine >>"$OUT/run.log" 2>&1
  pl cp_pristine -c "VACUUM ANALYZE"
  pg_dump -s -p "$PORT_L" cp_pristine >"$WORK/cp_schema.sql"
  pl postgres -c "CREATE DATABASE cp_a TEMPLATE cp_pristine" -c "CREATE DATABASE cp_b TEMPLATE cp_pristine"
  COPY_ROWS=$(counts pl cp_pristine)
  COPY_BYTES=$(pl cp_pristine -c "SELECT sum(pg_table_size(c.oid)) FROM pg_class c WHERE relname IN ('pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history')")
  say "copy: source rows (accounts branches tellers history) $COPY_ROWS, table data $((COPY_BYTES / 1000000)) MB"
  echo "copy source: rows $COPY_ROWS, table data bytes $COPY_BYTES" >>"$OUT/params.txt"
}
copy_target_ready() {   # copy_target_ready <v>: an empty target cp_<v> on right
  if [ "$COPY_TARGET" = fresh ] || [ "$(pr postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'cp_$1'")" = 0 ]; then
    pr postgres -c "DROP DATABASE IF EXISTS cp_$1 WITH (FORCE)" -c "CREATE DATABASE cp_$1"
    pr "cp_$1" -f "$WORK/cp_schema.sql" >/dev/null
  fi
}
copy_one() {   # copy_one <v> <label>: one copy into an empty (fresh) or emptied (truncate) target, checked
  local v=$1 c; c=$(cfg "cp_$v" "cp_$v")
  copy_target_ready "$v"
  checkpoint
  # The copy must write every row again: a fresh target starts empty; a kept one
  # (truncate) gets new files for the tables holding rows (TRUNCATE, then COPY FREEZE).
  local mode=() before
  before=$(filenodes "cp_$v")
  if [ "$COPY_TARGET" = truncate ]; then
    mode=(--mode truncate)
  else
    [ "$(counts pr "cp_$v")" = "0 0 0 0" ] || { say "FATAL: $2: the target is not empty"; exit 1; }
  fi
  timed "$2" 0 "$(bin "$v")" --config "$c" onetimecopy "${mode[@]}"
  local got; got=$(counts pr "cp_$v")
  [ "$got" = "$COPY_ROWS" ] || { say "FATAL: $2: target rows $got, source $COPY_ROWS"; exit 1; }
  if [ "$COPY_TARGET" = truncate ]; then
    local after; after=$(filenodes "cp_$v")
    paste -d' ' <(tr ' ' '\n' <<<"$before") <(tr ' ' '\n' <<<"$after") | awk '$1 == $2 {exit 1}' \
      || { say "FATAL: $2: a table was not rewritten (filenodes before: $before, after: $after)"; exit 1; }
  fi
}
filenodes() {   # filenodes <db>: the target's files of the tables that hold rows (history is empty)
  pr "$1" -c "SELECT concat_ws(' ', pg_relation_filenode('pgbench_accounts'), pg_relation_filenode('pgbench_branches'), pg_relation_filenode('pgbench_tellers'))"
}
copy_area() {
  copy_setup
  local v r i
  for v in a b; do copy_one "$v" "copy warm-up $(tag "$v")"; say "copy warm-up $(tag "$v"): ${RUN_S}s"; done
  for ((r = 1; r <= COPY_ROUNDS; r++)); do
    i=0
    for v in $(order "$r"); do
      i=$((i + 1))
      copy_one "$v" "copy r$r $(tag "$v")"
      record copy "$r" "$i" "$v" rows_ok
    done
  done
}

# ---------------------------------------------------------------- catch-up
catchup_setup() {
  say "catchup: pgbench scale $CATCHUP_SCALE on left (cu_a, cu_b), schema only on right, one onetimecopy each (untimed)"
  pl postgres -c "CREATE DATABASE cu_pristine"
  pgbench -i -q -s "$CATCHUP_SCALE" -p "$PORT_L" cu_pristine >>"$OUT/run.log" 2>&1
  pl cu_pristine -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY" -c "VACUUM ANALYZE"
  pg_dump -s -p "$PORT_L" cu_pristine >"$WORK/cu_schema.sql"
  local v
  for v in a b; do
    pl postgres -c "CREATE DATABASE cu_$v TEMPLATE cu_pristine"
    pr postgres -c "CREATE DATABASE cu_$v"
    pr "cu_$v" -f "$WORK/cu_schema.sql" >/dev/null
    timed "catchup initial copy $(tag "$v")" 0 "$(bin "$v")" --config "$(cfg "cu_$v" "cu_$v")" onetimecopy
    say "catchup: initial copy $(tag "$v") ${RUN_S}s"
  done
}
build_backlog() {   # build_backlog <db>: $BACKLOG tpcb-like transactions on left, no daemon running
  pgbench -n -p "$PORT_L" -c "$BUILD_CLIENTS" -j "$BUILD_CLIENTS" -t $((BACKLOG / BUILD_CLIENTS)) "$1" >>"$OUT/run.log" 2>&1
}
apply_s() {   # apply_s <log>: seconds from the "replicating" line to the "no pending changes" line
  python3 - "$1" <<'PY'
import datetime, re, sys
s = e = None
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)", line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1)[:26])
    if "replicating" in line and s is None:
        s = t
    if "no pending changes" in line:
        e = t
print(f"{(e - s).total_seconds():.3f}" if s and e else "")
PY
}
drain_one() {   # drain_one <v> <label>: backlog, then the timed drain, checked
  local v=$1 db=cu_$1 c; c=$(cfg "cu_$1" "cu_$1")
  build_backlog "$db"
  pl "$db" -c "VACUUM ANALYZE"; pr "$db" -c "VACUUM ANALYZE"
  checkpoint
  sleep 1
  local mark; mark=$(wc -c <"$OUT/run.log")
  timed "$2" 0 "$(bin "$v")" --config "$c" replicate --until-idle
  tail -c +$((mark + 1)) "$OUT/run.log" >"$WORK/drain.log"
  DRAIN_APPLY=$(apply_s "$WORK/drain.log")
  local l r; l=$(checksum pl "$db"); r=$(checksum pr "$db")
  [ "$l" = "$r" ] || { say "FATAL: $2: the sides differ after the drain"; exit 1; }
}
catchup_area() {
  catchup_setup
  local v r i
  for v in a b; do drain_one "$v" "catchup warm-up $(tag "$v")"; say "catchup warm-up $(tag "$v"): ${RUN_S}s"; done
  for ((r = 1; r <= CATCHUP_ROUNDS; r++)); do
    i=0
    for v in $(order "$r"); do
      i=$((i + 1))
      drain_one "$v" "catchup r$r $(tag "$v")"
      record catchup "$r" "$i" "$v" converged "$DRAIN_APPLY"
    done
  done
}

# ---------------------------------------------------------------- scan
scan_area() {
  say "scan: pgbench scale $SCALE on both sides (database sc, no pgduplex installed)"
  pl postgres -c "CREATE DATABASE sc"; pr postgres -c "CREATE DATABASE sc"
  pgbench -i -q -s "$SCALE" -p "$PORT_L" sc >>"$OUT/run.log" 2>&1
  pgbench -i -q -s "$SCALE" -p "$PORT_R" sc >>"$OUT/run.log" 2>&1
  pl sc -c "VACUUM ANALYZE"; pr sc -c "VACUUM ANALYZE"
  local c v r i; c=$(cfg sc sc)
  for v in a b; do timed "scan warm-up $(tag "$v")" 0 "$(bin "$v")" --config "$c" scan; say "scan warm-up $(tag "$v"): ${RUN_S}s"; done
  for ((r = 1; r <= SCAN_ROUNDS; r++)); do
    i=0
    for v in $(order "$r"); do
      i=$((i + 1))
      checkpoint
      timed "scan r$r $(tag "$v")" 0 "$(bin "$v")" --config "$c" scan
      record scan "$r" "$i" "$v" identical
    done
  done
}

# ---------------------------------------------------------------- run
{
  echo "# bench/reorg/ab.sh, $(date -u +%FT%TZ)"
  echo "old ($OLD_LABEL): $OLD_SRC sha256=$(sha256sum "$(bin a)" | cut -c1-16) $("$(bin a)" --version)"
  echo "new ($NEW_LABEL): $NEW_SRC sha256=$(sha256sum "$(bin b)" | cut -c1-16) $("$(bin b)" --version)"
  echo "areas: $AREAS; rounds copy $COPY_ROUNDS, catchup $CATCHUP_ROUNDS, scan $SCAN_ROUNDS; order: odd rounds old then new, even rounds new then old"
  echo "SCALE=$SCALE CATCHUP_SCALE=$CATCHUP_SCALE BACKLOG=$BACKLOG BUILD_CLIENTS=$BUILD_CLIENTS COPY_TARGET=$COPY_TARGET"
  echo "servers: fsync=off synchronous_commit=off shared_buffers=1GB autovacuum=off, unix sockets; $("$PGBIN/postgres" --version)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/params.txt"
echo "area,round,position,binary,label,seconds,apply_s,peak_rss_kb,rc,check,load1" >"$OUT/raw.csv"
say "output in $OUT"
start_one left "$PORT_L"; start_one right "$PORT_R"
for a in $AREAS; do
  case $a in
    copy) copy_area ;;
    catchup) catchup_area ;;
    scan) scan_area ;;
    *) say "unknown area $a"; exit 2 ;;
  esac
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg); total $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.0f", b - a}') s" >>"$OUT/params.txt"
python3 "$HERE/summarize.py" "$OUT/raw.csv" | tee "$OUT/summary.md"
say "done in $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.0f", b - a}') s: $OUT"
