#!/usr/bin/env bash
# Initial-copy benchmark (issue 4): pgduplex onetimecopy against the raw sequential
# `COPY | COPY` pipe, pg_dump -Fd -j 2 + pg_restore -j 2, and pgcopydb clone.
#
# Two throw-away servers on this machine (left = source, right = target), pgbench
# data at scale $SCALE on the left. Every run starts from a fresh target database:
#   * pgduplex, raw pipe, dump/restore: the schema with primary keys already in
#     place on the target (pg_dump --schema-only), data only is copied;
#   * pgcopydb clone: an empty target database (it creates the schema itself,
#     loads the data, then builds the primary keys: its normal way of working).
# A round runs every variant once, in an order rotated each round; medians over
# rounds. MB/s is the source's table data (pg_table_size of the four pgbench
# tables, without indexes) divided by the wall time.
#
# DATASET=pgbench (default) | narrow | bigtext: the two extra tables of the issue
# (added to the pgbench tables, with a primary key each, and the only tables
# copied for that data set, by every variant):
#   narrow:  narrow_cols, 1,000,000 rows of 60 small columns (int2/int4/bool/int8);
#   bigtext: big_text, 20,000 rows of a ~16 kB text value each (TOASTed; little
#            compressible) plus a short one.
# Besides wall time, the CPU seconds of the target and source servers (all their
# processes, exited backends included) and of the client side are recorded: on a
# shared machine they move less than wall time.
#
# Usage: bench/onetimecopy/run.sh            (SCALE=50 ROUNDS=3)
#        SCALE=10 ROUNDS=1 bench/onetimecopy/run.sh    (smoke run)
# Variants (VARIANTS=...): pgduplex (default options), pgduplex_j1 (--jobs 1),
# pgduplex_split (--range-rows 1000000, the old default: pgbench_accounts in 5
# ranges), pgduplex_text ([onetimecopy] copy_format = "text"), pgduplex_keepidx
# ([onetimecopy] rebuild_indexes = false: rows copied into the existing indexes), raw_pipe,
# dump_restore, pgcopydb.
# Needs: the release binary (CARGO_TARGET_DIR/release/pgduplex), pgbench,
# pg_dump/pg_restore, pgcopydb (apt-get install --no-install-recommends pgcopydb).
set -euo pipefail
SCALE=${SCALE:-50}
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-"pgduplex pgduplex_j1 pgduplex_split pgduplex_text pgduplex_keepidx raw_pipe dump_restore pgcopydb"}
DATASET=${DATASET:-pgbench}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
PGDUPLEX_BIN=${PGDUPLEX_BIN:-${CARGO_TARGET_DIR:-/work/target-bench}/release/pgduplex}
LPORT=${LPORT:-55441}
RPORT=${RPORT:-55442}
FSYNC=${FSYNC:-off}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/results/$(date +%Y-%m-%d)-s$SCALE-$DATASET}
export PATH=$PGBIN:$PATH
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/pgduplex_copybench.XXXXXX)
chown postgres "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

start() { # dir port
  as_pg "$PGBIN/initdb -D $WORK/$1 -A trust -U postgres >/dev/null"
  as_pg "$PGBIN/pg_ctl -D $WORK/$1 -l $WORK/$1.log -w -o '-p $2 -k $WORK -c fsync=$FSYNC -c max_wal_size=4GB -c shared_buffers=256MB -c max_connections=50' start >/dev/null"
}
cleanup() {
  for d in left right; do as_pg "$PGBIN/pg_ctl -D $WORK/$d -m immediate stop" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
start left $LPORT
start right $RPORT
L="psql -X -q -h $WORK -p $LPORT -U postgres"
R="psql -X -q -h $WORK -p $RPORT -U postgres"
LURL="postgres://postgres@localhost:$LPORT/src?host=$WORK"
RURL="postgres://postgres@localhost:$RPORT/dst?host=$WORK"

$L -c "create database src"
pgbench -q -i -s "$SCALE" -h "$WORK" -p $LPORT -U postgres src >/dev/null 2>&1
case $DATASET in
  pgbench) TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"; CHECK=pgbench_accounts ;;
  narrow)
    TABLES=narrow_cols; CHECK=narrow_cols
    cols=$(python3 -c "print(', '.join(f'c{i} ' + ['int2', 'int4', 'bool', 'int8'][i % 4] for i in range(60)))")
    vals=$(python3 -c "print(', '.join(['(g % 30000)::int2', '(g * 7)::int4', '(g % 2 = 0)', '(g * 13)::int8'][i % 4] for i in range(60)))")
    $L -d src -c "create table narrow_cols (id int primary key, $cols)" \
       -c "insert into narrow_cols select g, $vals from generate_series(1, 1000000) g" ;;
  bigtext)
    TABLES=big_text; CHECK=big_text
    $L -d src -c "create table big_text (id int primary key, note text, body text)" \
       -c "insert into big_text select g, 'n' || g, (select string_agg(md5(g::text || ':' || i), '') from generate_series(1, 500) i) from generate_series(1, 20000) g" ;;
esac
$L -d src -c "vacuum analyze"
pg_dump -s -h "$WORK" -p $LPORT -U postgres src > "$WORK/schema.sql"
# pgcopydb clones a whole database: it reads an identical copy without pgduplex's
# schema and triggers (pgcopydb 0.10's --filters fails on the excluded schema's
# sequences).
$L -c "create database src_plain template src"
# The capture on the source once (the pgduplex variants need it; it does not slow
# the others' reads).
cat > "$WORK/pgduplex.toml" <<TOML
[left]
url = "$LURL"
[right]
url = "$RURL"
[tables]
include = ['^public\.($(echo $TABLES | tr ' ' '|'))\$']
TOML
# The variants that change an [onetimecopy] setting get a configuration of their own.
{ cat "$WORK/pgduplex.toml"; printf '[onetimecopy]\ncopy_format = "text"\n'; } > "$WORK/pgduplex_text.toml"
{ cat "$WORK/pgduplex.toml"; printf '[onetimecopy]\nrebuild_indexes = false\n'; } > "$WORK/pgduplex_keepidx.toml"
INLIST=$(for t in $TABLES; do printf "'%s'," "$t"; done | sed 's/,$//')
DATA_BYTES=$($L -d src -Atc "select sum(pg_table_size(c.oid)) from pg_class c where relname in ($INLIST)")
ROWS=$($L -d src -Atc "select count(*) from $CHECK")
{
  echo "date: $(date -u +%FT%TZ)"; echo "dataset: $DATASET ($TABLES)"; echo "scale: $SCALE"; echo "rounds: $ROUNDS"; echo "fsync: $FSYNC"
  echo "source table data bytes: $DATA_BYTES"; echo "$CHECK rows: $ROWS"; echo "variants: $VARIANTS"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"; echo "postgres: $(postgres --version)"
  echo "pgcopydb: $(pgcopydb --version 2>&1 | head -1 || true)"; echo "pgduplex: $PGDUPLEX_BIN ($(cd "$REPO" && git rev-parse --short HEAD) + working tree)"
} > "$OUT/params.txt"

fresh_target() { # with_schema
  $R -c "drop database if exists dst with (force)" -c "create database dst"
  if [ "$1" = 1 ]; then $R -d dst -f "$WORK/schema.sql" >/dev/null; fi
}

# CPU seconds (user + system) used so far by every process of a server: the
# postmaster's own and its reaped children's, plus the live children's.
server_cpu() { # datadir
  local pm; pm=$(head -1 "$WORK/$1/postmaster.pid")
  local tck; tck=$(getconf CLK_TCK)
  local sum; sum=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
  for c in $(pgrep -P "$pm"); do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "scale=2; $sum / $tck" | bc -l
}

run_variant() {
  case $1 in
    pgduplex) "$PGDUPLEX_BIN" --config "$WORK/pgduplex.toml" onetimecopy >>"$OUT/run.log" 2>&1 ;;
    pgduplex_j1) "$PGDUPLEX_BIN" --config "$WORK/pgduplex.toml" onetimecopy --jobs 1 >>"$OUT/run.log" 2>&1 ;;
    pgduplex_split) "$PGDUPLEX_BIN" --config "$WORK/pgduplex.toml" onetimecopy --range-rows 1000000 >>"$OUT/run.log" 2>&1 ;;
    pgduplex_nosplit) "$PGDUPLEX_BIN" --config "$WORK/pgduplex.toml" onetimecopy --range-rows 1000000000 >>"$OUT/run.log" 2>&1 ;;
    pgduplex_text) "$PGDUPLEX_BIN" --config "$WORK/pgduplex_text.toml" onetimecopy >>"$OUT/run.log" 2>&1 ;;
    pgduplex_keepidx) "$PGDUPLEX_BIN" --config "$WORK/pgduplex_keepidx.toml" onetimecopy >>"$OUT/run.log" 2>&1 ;;
    pgduplex_defer) "$PGDUPLEX_BIN" --config "$WORK/pgduplex.toml" onetimecopy --defer-indexes >>"$OUT/run.log" 2>&1 ;;
    raw_pipe)
      for t in $TABLES; do
        $L -d src -c "copy $t to stdout" | $R -d dst -c "copy $t from stdin"
      done ;;
    dump_restore)
      rm -rf "$WORK/dump"
      as_pg "pg_dump -Fd -j 2 --data-only $(for t in $TABLES; do printf -- '-t public.%s ' "$t"; done) -h $WORK -p $LPORT -U postgres -f $WORK/dump src"
      pg_restore -j 2 --data-only -h "$WORK" -p $RPORT -U postgres -d dst "$WORK/dump" ;;
    pgcopydb)
      rm -rf "$WORK/pgcopydb"
      as_pg "setsid -w pgcopydb clone --source 'postgres://postgres@localhost:$LPORT/src_plain?host=$WORK' --target 'postgres://postgres@localhost:$RPORT/dst?host=$WORK' --dir $WORK/pgcopydb --no-owner --no-acl >$WORK/pgcopydb.log 2>&1" || { cat "$WORK/pgcopydb.log" >> "$OUT/run.log"; exit 1; }; cat "$WORK/pgcopydb.log" >> "$OUT/run.log" ;;
  esac
}

echo "round,variant,seconds,target_cpu_s,source_cpu_s,client_cpu_s" > "$OUT/raw.csv"
set -- $VARIANTS
n=$#
for round in $(seq 1 "$ROUNDS"); do
  vs=($VARIANTS)
  for i in $(seq 0 $((n - 1))); do
    v=${vs[$(((i + round - 1) % n))]}
    if [ "$v" = pgcopydb ]; then fresh_target 0; else fresh_target 1; fi
    $R -d dst -c "checkpoint" ; $L -d src -c "checkpoint"
    rc0=$(server_cpu right); lc0=$(server_cpu left)
    t0=$(date +%s.%N)
    # The client side's CPU: this subshell's children (pgduplex, psql, pg_dump, ...).
    cc=$( ( run_variant "$v"; times ) | tail -1 | python3 -c "import sys, re
v = [float(m) * 60 + float(s) for m, s in re.findall(r'(\d+)m([\d.]+)s', sys.stdin.read())]
print(f'{sum(v):.2f}')")
    t1=$(date +%s.%N)
    rc1=$(server_cpu right); lc1=$(server_cpu left)
    # The target must hold every row.
    got=$($R -d dst -Atc "select count(*) from $CHECK")
    [ "$got" = "$ROWS" ] || { echo "$v: $got rows, wanted $ROWS" >&2; exit 1; }
    s=$(echo "$t1 - $t0" | bc -l)
    echo "$round,$v,$s,$(echo "$rc1 - $rc0" | bc -l),$(echo "$lc1 - $lc0" | bc -l),$cc" | tee -a "$OUT/raw.csv"
  done
done
python3 - "$OUT/raw.csv" "$DATA_BYTES" > "$OUT/summary.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
mb = int(sys.argv[2]) / 1e6
by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(float(r["seconds"]))
med = {v: statistics.median(s) for v, s in by.items()}
base = med.get("pgduplex")
cpu = {}
for r in rows:
    cpu.setdefault(r["variant"], []).append(
        [float(r.get(k) or 0) for k in ("target_cpu_s", "source_cpu_s", "client_cpu_s")])
# Ratios within a round (same conditions), then their median.
rounds = {}
for r in rows:
    rounds.setdefault(r["round"], {})[r["variant"]] = float(r["seconds"])
def ratio(v):
    rs = [x[v] / x["pgduplex"] for x in rounds.values() if v in x and "pgduplex" in x]
    return f"{statistics.median(rs):.2f}x" if rs else ""
print("| variant | runs | median s | min–max s | MB/s | pgduplex speed-up vs this (median of per-round ratios) | CPU s target / source / client (medians) |")
print("|---|---|---|---|---|---|---|")
for v, s in by.items():
    m = med[v]
    c = [statistics.median(x[i] for x in cpu[v]) for i in range(3)]
    print(f"| {v} | {len(s)} | {m:.2f} | {min(s):.2f}–{max(s):.2f} | {mb / m:.0f} | {ratio(v)} | {c[0]:.1f} / {c[1]:.1f} / {c[2]:.1f} |")
PY
cat "$OUT/summary.md"
