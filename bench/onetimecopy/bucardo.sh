#!/usr/bin/env bash
# Bucardo onetimecopy (sync with onetimecopy=2 into empty tables) against pgduplex onetimecopy,
# pgbench scale 50, in one run on the same two servers. Setup by hand before it: two servers
# as in run.sh on ports 55471/55472 with socket dir /tmp/sb (see results/2026-11-21-bucardo/env.sh),
# pgbench -i -s 50 into database src on the left, pg_dump -s of it in /tmp/sb/schema.sql,
# /tmp/sb/pgduplex.toml (results/2026-11-21-bucardo/pgduplex.toml). Bucardo 5 from Debian
# (/usr/bin/bucardo, postgresql-plperl-15). Each round: Bucardo first, then pgduplex.
# Bucardo onetimecopy of pgbench scale 50 (left src -> right dst, schema with PKs),
# ROUNDS times; prints seconds from `bucardo start` to the sync's first run ending.
set -uo pipefail
. /tmp/sb/env.sh
ROUNDS=${ROUNDS:-3}
BC="bucardo --db-host $W --db-port $LP --db-user postgres --db-name bucardo --no-bucardorc --quiet"
mkdir -p $W/bucardo_run; chmod 777 $W/bucardo_run
if ! $L -Atc "select 1 from pg_database where datname='bucardo'" | grep -q 1; then
  $BC --piddir $W/bucardo_run --batch install >> $W/bucardo.log 2>&1 || { echo install failed; tail $W/bucardo.log; exit 1; }
fi
for r in $(seq 1 $ROUNDS); do
  $BC stop >> $W/bucardo.log 2>&1; sleep 2
  $BC remove sync s1 >> $W/bucardo.log 2>&1
  $BC remove relgroup rg1 >> $W/bucardo.log 2>&1
  $BC remove table all --force >> $W/bucardo.log 2>&1
  $BC remove db src dst --force >> $W/bucardo.log 2>&1
  $R -c "drop database if exists dst with (force)" -c "create database dst" >/dev/null
  $R -d dst -f $W/schema.sql >/dev/null
  $BC add db src dbname=src host=$W port=$LP user=postgres >> $W/bucardo.log 2>&1
  $BC add db dst dbname=dst host=$W port=$RP user=postgres >> $W/bucardo.log 2>&1
  $BC add table public.pgbench_accounts public.pgbench_branches public.pgbench_tellers db=src relgroup=rg1 >> $W/bucardo.log 2>&1
  $BC add sync s1 relgroup=rg1 dbs=src:source,dst:target onetimecopy=2 >> $W/bucardo.log 2>&1 || { echo add sync failed; tail $W/bucardo.log; exit 1; }
  $L -d bucardo -c "delete from bucardo.syncrun" >/dev/null 2>&1
  $R -d dst -c checkpoint; $L -d src -c checkpoint
  t0=$(date +%s.%N)
  $BC --piddir $W/bucardo_run --log-destination $W start >> $W/bucardo.log 2>&1
  for i in $(seq 1 900); do
    n=$($L -d bucardo -Atc "select count(*) from bucardo.syncrun where sync='s1' and ended is not null" 2>/dev/null)
    [ "${n:-0}" -ge 1 ] && break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  got=$($R -d dst -Atc "select count(*) from pgbench_accounts")
  echo "$r,bucardo,$(echo "$t1 - $t0" | bc -l),rows=$got" | tee -a $W/bucardo.csv
  $BC stop >> $W/bucardo.log 2>&1; sleep 2
  # pgduplex in the same round, same servers, fresh target
  $R -c "drop database if exists dst with (force)" -c "create database dst" >/dev/null
  $R -d dst -f $W/schema.sql >/dev/null
  $R -d dst -c checkpoint; $L -d src -c checkpoint
  t0=$(date +%s.%N)
  /work/target-speed/release/pgduplex --config $W/pgduplex.toml onetimecopy >> $W/pgduplex.log 2>&1
  t1=$(date +%s.%N)
  got=$($R -d dst -Atc "select count(*) from pgbench_accounts")
  echo "$r,pgduplex,$(echo "$t1 - $t0" | bc -l),rows=$got" | tee -a $W/bucardo.csv
done
$BC stop >> $W/bucardo.log 2>&1
