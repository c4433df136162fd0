#!/usr/bin/env bash
# Benchmark of `pgduplex scan` (issue 5): an identical pair holding pgbench_accounts at
# scale 50 (5,000,000 rows, about 640 MB per side), on two PostgreSQL servers on this
# machine, against the floor of reading the table once on both sides at the same time
# (`COPY pgbench_accounts TO STDOUT` into /dev/null, both sides concurrently).
#
# Rounds alternate the variants (order rotated each round): the floor, `scan --jobs 1`,
# `scan --jobs 2`; then, with one row changed on the right, the time to find it
# (`scan` exits 1 and lists it). Wall seconds and the scan's peak RSS (/usr/bin/time).
#
# Usage (from the repository root): bench/scan/run.sh
#   SCALE=50 ROUNDS=5 JOBS_LIST="1 2" bench/scan/run.sh
# Output: $OUT (default bench/scan/results/<timestamp>): raw.csv, summary.md, run.log.
set -euo pipefail

SCALE=${SCALE:-50}
ROUNDS=${ROUNDS:-5}
JOBS_LIST=${JOBS_LIST:-"1 2"}
PORT_L=${PORT_L:-55481}
PORT_R=${PORT_R:-55482}
PGBIN=${PGBIN:-$(pg_config --bindir)}
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$(cd "$(dirname "$0")" && pwd)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-scanbench}
WORK=${WORK:-/tmp/pgdx_scanbench}
OUT=${OUT:-$HERE/results/$(date +%Y-%m-%dT%H%M%S)}
BIN=$WORK/pgduplex
SOCK=$WORK/sock
export PATH=$PGBIN:$PATH PGUSER=postgres PGHOST=$SOCK

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }
p() { local port=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -p "$port" -d bench "$@"; }

stop_all() {
  for n in left right; do
    [ -d "$WORK/$n" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/$n" -m immediate stop >/dev/null 2>&1 || true
  done
}
trap stop_all EXIT

mkdir -p "$OUT"
stop_all
rm -rf "$WORK"; mkdir -p "$WORK" "$SOCK"; chown postgres "$WORK" "$SOCK" 2>/dev/null || true

say "building pgduplex (release)"
(cd "$REPO" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release -q -p pgduplex)
cp "$CARGO_TARGET_DIR/release/pgduplex" "$BIN"
git -C "$REPO" rev-parse --short HEAD > "$OUT/commit.txt"

for side in left:$PORT_L right:$PORT_R; do
  n=${side%%:*}; port=${side##*:}
  as_pg "$PGBIN/initdb" -D "$WORK/$n" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >>"$OUT/run.log" 2>&1
  cat >>"$WORK/$n/postgresql.conf" <<EOF
listen_addresses = ''
port = $port
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
fsync = off
synchronous_commit = off
max_wal_size = 8GB
autovacuum = off
EOF
  as_pg "$PGBIN/pg_ctl" -D "$WORK/$n" -l "$WORK/$n.log" -w start >/dev/null
  createdb -p "$port" bench
  say "$n: pgbench -i -s $SCALE"
  pgbench -i -q -s "$SCALE" -I dtGvp -p "$port" bench >>"$OUT/run.log" 2>&1
done
ROWS=$(p "$PORT_L" -c "select count(*) from pgbench_accounts")
SIZE=$(p "$PORT_L" -c "select pg_size_pretty(pg_relation_size('pgbench_accounts'))")
say "pgbench_accounts: $ROWS rows, $SIZE per side"

cat >"$WORK/pgduplex.toml" <<EOF
[left]
url = "postgres://postgres@/bench?host=$SOCK&port=$PORT_L"
[right]
url = "postgres://postgres@/bench?host=$SOCK&port=$PORT_R"
[tables]
include = ['^public\.pgbench_accounts\$']
EOF

floor() {
  p "$PORT_L" -c "copy pgbench_accounts to stdout" >/dev/null &
  local a=$!
  p "$PORT_R" -c "copy pgbench_accounts to stdout" >/dev/null &
  local b=$!
  wait "$a" "$b"
}

run_scan() {   # run_scan <jobs> <expected exit> -> "seconds maxrss_kb"
  local code=0
  /usr/bin/time -o "$WORK/time" -f "%e %M" "$BIN" --config "$WORK/pgduplex.toml" scan \
    --jobs "$1" --format json --details >"$WORK/scan.json" 2>>"$OUT/run.log" || code=$?
  if [ "$code" != "$2" ]; then say "scan exited $code, wanted $2"; cat "$WORK/scan.json" >&2; exit 1; fi
  tail -n 1 "$WORK/time"
}

timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

echo "round,variant,seconds,maxrss_kb,load" >"$OUT/raw.csv"
say "warm-up: one floor and one scan"
floor; run_scan 1 0 >/dev/null
variants=(floor)
for j in $JOBS_LIST; do variants+=("scan_j$j"); done
for r in $(seq 1 "$ROUNDS"); do
  n=${#variants[@]}
  for i in $(seq 0 $((n - 1))); do
    v=${variants[$(((i + r) % n))]}
    if [ "$v" = floor ]; then
      s=$(timed floor); m=""
    else
      read -r s m < <(run_scan "${v#scan_j}" 0)
    fi
    echo "$r,$v,$s,$m,$(load)" >>"$OUT/raw.csv"
    say "round $r $v: ${s}s ${m:+rss ${m} kB}"
  done
done

say "one row changed on the right: time to find it"
AID=$((ROWS * 42 / 100 + 7))
p "$PORT_R" -c "update pgbench_accounts set abalance = abalance + 1 where aid = $AID"
for r in $(seq 1 "$ROUNDS"); do
  s=$(timed floor)
  echo "$r,floor_diff,$s,,$(load)" >>"$OUT/raw.csv"
  read -r s m < <(run_scan 2 1)
  echo "$r,find_one_j2,$s,$m,$(load)" >>"$OUT/raw.csv"
  say "round $r find one: ${s}s rss ${m} kB"
done
grep -q "\"key\": \"($AID)\"" "$WORK/scan.json" || { say "the changed row was not listed"; exit 1; }
cp "$WORK/scan.json" "$OUT/find_one.json"

python3 "$HERE/summarize.py" "$OUT/raw.csv" | tee "$OUT/summary.md"
{ echo "rows=$ROWS size=$SIZE scale=$SCALE rounds=$ROUNDS jobs=$JOBS_LIST"; nproc; uname -r; postgres --version; } >"$OUT/params.txt"
say "done: $OUT"
