
CREATE TABLE pgduplex.delta_1 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  aid integer NOT NULL);

CREATE FUNCTION pgduplex.capture_1() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_1 (op, aid) VALUES ('I', NEW.aid);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.aid IS NOT DISTINCT FROM OLD.aid THEN
      INSERT INTO pgduplex.delta_1 (op, aid) VALUES ('U', NEW.aid);
    ELSE
      INSERT INTO pgduplex.delta_1 (op, aid) VALUES ('D', OLD.aid), ('I', NEW.aid);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_1 (op, aid) VALUES ('D', OLD.aid);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON pgbench_accounts FOR EACH ROW
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_1();
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture;

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
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_2 (op, bid) VALUES ('I', NEW.bid);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.bid IS NOT DISTINCT FROM OLD.bid THEN
      INSERT INTO pgduplex.delta_2 (op, bid) VALUES ('U', NEW.bid);
    ELSE
      INSERT INTO pgduplex.delta_2 (op, bid) VALUES ('D', OLD.bid), ('I', NEW.bid);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_2 (op, bid) VALUES ('D', OLD.bid);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON pgbench_branches FOR EACH ROW
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_2();
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture;

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
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_3 (op, tid) VALUES ('I', NEW.tid);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.tid IS NOT DISTINCT FROM OLD.tid THEN
      INSERT INTO pgduplex.delta_3 (op, tid) VALUES ('U', NEW.tid);
    ELSE
      INSERT INTO pgduplex.delta_3 (op, tid) VALUES ('D', OLD.tid), ('I', NEW.tid);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_3 (op, tid) VALUES ('D', OLD.tid);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON pgbench_tellers FOR EACH ROW
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_3();
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture;

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
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_4 (op, id) VALUES ('I', NEW.id);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.id IS NOT DISTINCT FROM OLD.id THEN
      INSERT INTO pgduplex.delta_4 (op, id) VALUES ('U', NEW.id);
    ELSE
      INSERT INTO pgduplex.delta_4 (op, id) VALUES ('D', OLD.id), ('I', NEW.id);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_4 (op, id) VALUES ('D', OLD.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON pgbench_history FOR EACH ROW
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_4();
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture;

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
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_5 (op, id) VALUES ('I', NEW.id);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.id IS NOT DISTINCT FROM OLD.id THEN
      INSERT INTO pgduplex.delta_5 (op, id) VALUES ('U', NEW.id);
    ELSE
      INSERT INTO pgduplex.delta_5 (op, id) VALUES ('D', OLD.id), ('I', NEW.id);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_5 (op, id) VALUES ('D', OLD.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_5();
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON t FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('5');
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;


CREATE TABLE pgduplex.delta_6 (
  seq bigint NOT NULL DEFAULT nextval('pgduplex.delta_seq') PRIMARY KEY,
  op "char" NOT NULL,
  txid bigint NOT NULL DEFAULT txid_current(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  id bigint NOT NULL);

CREATE FUNCTION pgduplex.capture_6() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgduplex.delta_6 (op, id) VALUES ('I', NEW.id);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.id IS NOT DISTINCT FROM OLD.id THEN
      INSERT INTO pgduplex.delta_6 (op, id) VALUES ('U', NEW.id);
    ELSE
      INSERT INTO pgduplex.delta_6 (op, id) VALUES ('D', OLD.id), ('I', NEW.id);
    END IF;
  ELSE
    INSERT INTO pgduplex.delta_6 (op, id) VALUES ('D', OLD.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER pgduplex_capture AFTER INSERT OR UPDATE OR DELETE ON tk FOR EACH ROW
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_6();
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_capture;

CREATE TRIGGER pgduplex_capture_truncate AFTER TRUNCATE ON tk FOR EACH STATEMENT
  WHEN (pg_catalog.current_setting('pgduplex.applying', true) IS DISTINCT FROM 'on' OR session_user <> 'postgres'::name)
  EXECUTE FUNCTION pgduplex.capture_truncate('6');
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_capture_truncate;

