-- Row-level capture, exactly as DESIGN.md / the brief specifies it.
-- bench_proto.ddl_row(tbl, n, with_set) returns the DDL for one table:
--   with_set = true : the design ("row")       - SECURITY DEFINER SET search_path = pg_catalog, pg_temp
--   with_set = false: variant  ("row_noset")   - SECURITY DEFINER, no SET clause; every name is
--                     schema-qualified, so the body resolves the same objects.
CREATE OR REPLACE FUNCTION bench_proto.ddl_row(tbl regclass, n int, with_set boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql STABLE AS $g$
DECLARE
  cols  text := bench_proto.key_list(tbl);
  newk  text := bench_proto.key_list(tbl, 'NEW.');
  oldk  text := bench_proto.key_list(tbl, 'OLD.');
  same  text;
BEGIN
  SELECT string_agg(format('NEW.%1$I IS NOT DISTINCT FROM OLD.%1$I', col), ' AND ')
    INTO same FROM bench_proto.keycols(tbl);
  RETURN bench_proto.ddl_delta(tbl, n) || format($d$
CREATE FUNCTION pgduplex.capture_%1$s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  %6$s AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_%1$s (op, %2$s) VALUES ('I', %3$s);
  ELSIF TG_OP = 'UPDATE' THEN
    IF %5$s THEN
      INSERT INTO pgduplex.delta_%1$s (op, %2$s) VALUES ('U', %3$s);
    ELSE
      INSERT INTO pgduplex.delta_%1$s (op, %2$s) VALUES ('D', %4$s), ('I', %3$s);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_%1$s (op, %2$s) VALUES ('D', %4$s);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON %7$s FOR EACH ROW
  WHEN %8$s
  EXECUTE FUNCTION pgduplex.capture_%1$s();
ALTER TABLE %7$s ENABLE ALWAYS TRIGGER pgduplex_capture;
$d$, n, cols, newk, oldk, same,
     CASE WHEN with_set THEN 'SET search_path = pg_catalog, pg_temp' ELSE '' END,
     tbl, bench_proto.when_clause())
  || bench_proto.ddl_truncate(tbl, n);
END $g$;
