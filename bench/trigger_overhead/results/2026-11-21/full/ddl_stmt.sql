
CREATE TABLE pgduplex.delta_1 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  aid integer NOT NULL);

CREATE FUNCTION pgduplex.capture_1() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('pgduplex.applying', true) IS NOT DISTINCT FROM 'on'
     AND session_user = 'postgres'::name THEN
    RETURN NULL;                      -- pgduplex's own apply: no echo
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_1 (op, aid) SELECT 'I', aid FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO pgduplex.delta_1 (op, aid)
      SELECT CASE WHEN n.aid IS NULL THEN 'D' WHEN o.aid IS NULL THEN 'I' ELSE 'U' END, CASE WHEN n.aid IS NULL THEN o.aid ELSE n.aid END
      FROM old_rows o FULL JOIN new_rows n ON n.aid = o.aid;
  ELSE
    INSERT INTO pgduplex.delta_1 (op, aid) SELECT 'D', aid FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture_ins AFTER INSERT ON pgbench_accounts
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_1();
CREATE TRIGGER pgduplex_capture_upd AFTER UPDATE ON pgbench_accounts
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_1();
CREATE TRIGGER pgduplex_capture_del AFTER DELETE ON pgbench_accounts
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_1();
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_ins;
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_upd;
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_del;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON pgbench_accounts FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('1');
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;


CREATE TABLE pgduplex.delta_2 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  bid integer NOT NULL);

CREATE FUNCTION pgduplex.capture_2() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('pgduplex.applying', true) IS NOT DISTINCT FROM 'on'
     AND session_user = 'postgres'::name THEN
    RETURN NULL;                      -- pgduplex's own apply: no echo
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_2 (op, bid) SELECT 'I', bid FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO pgduplex.delta_2 (op, bid)
      SELECT CASE WHEN n.bid IS NULL THEN 'D' WHEN o.bid IS NULL THEN 'I' ELSE 'U' END, CASE WHEN n.bid IS NULL THEN o.bid ELSE n.bid END
      FROM old_rows o FULL JOIN new_rows n ON n.bid = o.bid;
  ELSE
    INSERT INTO pgduplex.delta_2 (op, bid) SELECT 'D', bid FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture_ins AFTER INSERT ON pgbench_branches
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_2();
CREATE TRIGGER pgduplex_capture_upd AFTER UPDATE ON pgbench_branches
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_2();
CREATE TRIGGER pgduplex_capture_del AFTER DELETE ON pgbench_branches
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_2();
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_ins;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_upd;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_del;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON pgbench_branches FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('2');
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;


CREATE TABLE pgduplex.delta_3 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  tid integer NOT NULL);

CREATE FUNCTION pgduplex.capture_3() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('pgduplex.applying', true) IS NOT DISTINCT FROM 'on'
     AND session_user = 'postgres'::name THEN
    RETURN NULL;                      -- pgduplex's own apply: no echo
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_3 (op, tid) SELECT 'I', tid FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO pgduplex.delta_3 (op, tid)
      SELECT CASE WHEN n.tid IS NULL THEN 'D' WHEN o.tid IS NULL THEN 'I' ELSE 'U' END, CASE WHEN n.tid IS NULL THEN o.tid ELSE n.tid END
      FROM old_rows o FULL JOIN new_rows n ON n.tid = o.tid;
  ELSE
    INSERT INTO pgduplex.delta_3 (op, tid) SELECT 'D', tid FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture_ins AFTER INSERT ON pgbench_tellers
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_3();
CREATE TRIGGER pgduplex_capture_upd AFTER UPDATE ON pgbench_tellers
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_3();
CREATE TRIGGER pgduplex_capture_del AFTER DELETE ON pgbench_tellers
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_3();
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_ins;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_upd;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_del;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON pgbench_tellers FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('3');
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;


CREATE TABLE pgduplex.delta_4 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  id bigint NOT NULL);

CREATE FUNCTION pgduplex.capture_4() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('pgduplex.applying', true) IS NOT DISTINCT FROM 'on'
     AND session_user = 'postgres'::name THEN
    RETURN NULL;                      -- pgduplex's own apply: no echo
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_4 (op, id) SELECT 'I', id FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO pgduplex.delta_4 (op, id)
      SELECT CASE WHEN n.id IS NULL THEN 'D' WHEN o.id IS NULL THEN 'I' ELSE 'U' END, CASE WHEN n.id IS NULL THEN o.id ELSE n.id END
      FROM old_rows o FULL JOIN new_rows n ON n.id = o.id;
  ELSE
    INSERT INTO pgduplex.delta_4 (op, id) SELECT 'D', id FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture_ins AFTER INSERT ON pgbench_history
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_4();
CREATE TRIGGER pgduplex_capture_upd AFTER UPDATE ON pgbench_history
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_4();
CREATE TRIGGER pgduplex_capture_del AFTER DELETE ON pgbench_history
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_4();
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_ins;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_upd;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_del;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON pgbench_history FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('4');
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;


CREATE TABLE pgduplex.delta_5 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  id bigint NOT NULL);

CREATE FUNCTION pgduplex.capture_5() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('pgduplex.applying', true) IS NOT DISTINCT FROM 'on'
     AND session_user = 'postgres'::name THEN
    RETURN NULL;                      -- pgduplex's own apply: no echo
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_5 (op, id) SELECT 'I', id FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO pgduplex.delta_5 (op, id)
      SELECT CASE WHEN n.id IS NULL THEN 'D' WHEN o.id IS NULL THEN 'I' ELSE 'U' END, CASE WHEN n.id IS NULL THEN o.id ELSE n.id END
      FROM old_rows o FULL JOIN new_rows n ON n.id = o.id;
  ELSE
    INSERT INTO pgduplex.delta_5 (op, id) SELECT 'D', id FROM old_rows;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture_ins AFTER INSERT ON t
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_5();
CREATE TRIGGER pgduplex_capture_upd AFTER UPDATE ON t
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_5();
CREATE TRIGGER pgduplex_capture_del AFTER DELETE ON t
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_5();
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_ins;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_upd;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_del;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON t FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('5');
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;

