-- Statement-level capture with transition tables (the alternative to measure).
-- Three triggers per table (PostgreSQL allows transition tables only on single-event triggers).
-- The function returns at once inside an apply transaction of the apply role; the transition
-- table has been filled by then anyway (that is the cost being measured).
-- UPDATE: rows are matched by key SETS (a full join of OLD TABLE and NEW TABLE on the key):
--   key in both -> 'U', only in old -> 'D', only in new -> 'I'. Matching by position is impossible.
CREATE OR REPLACE FUNCTION bench_proto.ddl_stmt(tbl regclass, n int)
RETURNS text LANGUAGE plpgsql STABLE AS $g$
DECLARE
  cols  text := bench_proto.key_list(tbl);
  ocols text := bench_proto.key_list(tbl, 'o.');
  on_c  text;
  n_null text;
  o_null text;
  coal  text;
BEGIN
  SELECT string_agg(format('n.%1$I = o.%1$I', col), ' AND '),
         format('n.%I IS NULL', min(col)),           -- key columns are NOT NULL, one suffices
         format('o.%I IS NULL', min(col)),
         string_agg(format('CASE WHEN n.%1$I IS NULL THEN o.%1$I ELSE n.%1$I END', col), ', ')
    INTO on_c, n_null, o_null, coal FROM bench_proto.keycols(tbl);
  RETURN bench_proto.ddl_delta(tbl, n) || format($d$
CREATE FUNCTION pgduplex.capture_%1$s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('pgduplex.applying', true) IS NOT DISTINCT FROM 'on'
     AND session_user = 'postgres'::name THEN
    RETURN NULL;                      -- pgduplex's own apply: no echo
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_%1$s (op, %2$s) SELECT 'I', %2$s FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO pgduplex.delta_%1$s (op, %2$s)
      SELECT CASE WHEN %5$s THEN 'D' WHEN %6$s THEN 'I' ELSE 'U' END, %7$s
      FROM old_rows o FULL JOIN new_rows n ON %4$s;
  ELSE
    INSERT INTO pgduplex.delta_%1$s (op, %2$s) SELECT 'D', %2$s FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture_ins AFTER INSERT ON %8$s
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_%1$s();
CREATE TRIGGER pgduplex_capture_upd AFTER UPDATE ON %8$s
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_%1$s();
CREATE TRIGGER pgduplex_capture_del AFTER DELETE ON %8$s
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_%1$s();
ALTER TABLE %8$s ENABLE ALWAYS TRIGGER pgduplex_capture_ins;
ALTER TABLE %8$s ENABLE ALWAYS TRIGGER pgduplex_capture_upd;
ALTER TABLE %8$s ENABLE ALWAYS TRIGGER pgduplex_capture_del;
$d$, n, cols, ocols, on_c, n_null, o_null, coal, tbl)
  || bench_proto.ddl_truncate(tbl, n);
END $g$;
