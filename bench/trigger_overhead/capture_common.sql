-- Prototype of the objects pgduplex installs once per database (DESIGN.md "Capture").
-- Shared by every pgduplex-style variant (row, row_noset, stmt).
-- Plus bench_proto: DDL generators used by the per-variant prototype files.
-- bench_proto is benchmark scaffolding only, never part of pgduplex.

CREATE SCHEMA pgduplex;
CREATE SEQUENCE pgduplex.delta_seq;

-- TRUNCATE is captured as its own event, with its transaction id.
CREATE TABLE pgduplex.truncate_log (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  table_id int NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp());

CREATE FUNCTION pgduplex.capture_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO pgduplex.truncate_log (table_id) VALUES (TG_ARGV[0]::int);
  RETURN NULL;
END $$;

CREATE SCHEMA IF NOT EXISTS bench_proto;

-- Key columns of a table (its primary key), in index order.
CREATE OR REPLACE FUNCTION bench_proto.keycols(tbl regclass)
RETURNS TABLE (col name, typ text) LANGUAGE sql STABLE AS $$
  SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
  FROM pg_catalog.pg_index i
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
  WHERE i.indrelid = tbl AND i.indisprimary
  ORDER BY k.ord
$$;

-- "k1 type1 NOT NULL, k2 type2 NOT NULL"
CREATE OR REPLACE FUNCTION bench_proto.key_defs(tbl regclass) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT string_agg(format('%I %s NOT NULL', col, typ), ', ') FROM bench_proto.keycols(tbl) $$;

-- "k1, k2" ; with a prefix: "NEW.k1, NEW.k2"
CREATE OR REPLACE FUNCTION bench_proto.key_list(tbl regclass, prefix text DEFAULT '') RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT string_agg(prefix || quote_ident(col), ', ') FROM bench_proto.keycols(tbl) $$;

-- The WHEN clause of every pgduplex capture trigger ('postgres' = the apply role).
CREATE OR REPLACE FUNCTION bench_proto.when_clause() RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT $w$(pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)$w$ $$;

-- Delta table for table number n.
CREATE OR REPLACE FUNCTION bench_proto.ddl_delta(tbl regclass, n int) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT format($d$
CREATE TABLE pgduplex.delta_%1$s (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  %2$s);
$d$, n, bench_proto.key_defs(tbl)) $$;

-- TRUNCATE trigger (same for every pgduplex variant).
CREATE OR REPLACE FUNCTION bench_proto.ddl_truncate(tbl regclass, n int) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT format($d$
CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON %1$s FOR EACH STATEMENT
  WHEN %3$s
  EXECUTE FUNCTION pgduplex.capture_truncate('%2$s');
ALTER TABLE %1$s ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;
$d$, tbl, n, bench_proto.when_clause()) $$;
