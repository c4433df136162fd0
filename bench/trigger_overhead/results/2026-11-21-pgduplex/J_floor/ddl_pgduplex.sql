-- public.pgbench_accounts: id 1, apply_role postgres
-- public.pgbench_branches: id 2, apply_role postgres
-- public.pgbench_history: id 3, apply_role postgres
-- public.pgbench_tellers: id 4, apply_role postgres
-- public.t: id 5, apply_role postgres
-- public.tk: id 6, apply_role postgres
CREATE TRIGGER pgduplex_capture_delete AFTER DELETE ON public.pgbench_accounts REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_1();
CREATE TRIGGER pgduplex_capture_insert AFTER INSERT ON public.pgbench_accounts REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_1();
CREATE TRIGGER pgduplex_capture_key AFTER UPDATE OF aid ON public.pgbench_accounts FOR EACH ROW WHEN ((((old.aid)::text IS DISTINCT FROM (new.aid)::text) AND ((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name)))) EXECUTE FUNCTION pgduplex.capture_1();
CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON public.pgbench_accounts REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_1();
CREATE TRIGGER pgduplex_truncate AFTER TRUNCATE ON public.pgbench_accounts FOR EACH STATEMENT WHEN (((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name))) EXECUTE FUNCTION pgduplex.capture_truncate('1');
CREATE TRIGGER pgduplex_capture_delete AFTER DELETE ON public.pgbench_branches REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_2();
CREATE TRIGGER pgduplex_capture_insert AFTER INSERT ON public.pgbench_branches REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_2();
CREATE TRIGGER pgduplex_capture_key AFTER UPDATE OF bid ON public.pgbench_branches FOR EACH ROW WHEN ((((old.bid)::text IS DISTINCT FROM (new.bid)::text) AND ((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name)))) EXECUTE FUNCTION pgduplex.capture_2();
CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON public.pgbench_branches REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_2();
CREATE TRIGGER pgduplex_truncate AFTER TRUNCATE ON public.pgbench_branches FOR EACH STATEMENT WHEN (((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name))) EXECUTE FUNCTION pgduplex.capture_truncate('2');
CREATE TRIGGER pgduplex_capture_delete AFTER DELETE ON public.pgbench_history REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_3();
CREATE TRIGGER pgduplex_capture_insert AFTER INSERT ON public.pgbench_history REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_3();
CREATE TRIGGER pgduplex_capture_key AFTER UPDATE OF id ON public.pgbench_history FOR EACH ROW WHEN ((((old.id)::text IS DISTINCT FROM (new.id)::text) AND ((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name)))) EXECUTE FUNCTION pgduplex.capture_3();
CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON public.pgbench_history REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_3();
CREATE TRIGGER pgduplex_truncate AFTER TRUNCATE ON public.pgbench_history FOR EACH STATEMENT WHEN (((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name))) EXECUTE FUNCTION pgduplex.capture_truncate('3');
CREATE TRIGGER pgduplex_capture_delete AFTER DELETE ON public.pgbench_tellers REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_4();
CREATE TRIGGER pgduplex_capture_insert AFTER INSERT ON public.pgbench_tellers REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_4();
CREATE TRIGGER pgduplex_capture_key AFTER UPDATE OF tid ON public.pgbench_tellers FOR EACH ROW WHEN ((((old.tid)::text IS DISTINCT FROM (new.tid)::text) AND ((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name)))) EXECUTE FUNCTION pgduplex.capture_4();
CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON public.pgbench_tellers REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_4();
CREATE TRIGGER pgduplex_truncate AFTER TRUNCATE ON public.pgbench_tellers FOR EACH STATEMENT WHEN (((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name))) EXECUTE FUNCTION pgduplex.capture_truncate('4');
CREATE TRIGGER pgduplex_capture_delete AFTER DELETE ON public.t REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_5();
CREATE TRIGGER pgduplex_capture_insert AFTER INSERT ON public.t REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_5();
CREATE TRIGGER pgduplex_capture_key AFTER UPDATE OF id ON public.t FOR EACH ROW WHEN ((((old.id)::text IS DISTINCT FROM (new.id)::text) AND ((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name)))) EXECUTE FUNCTION pgduplex.capture_5();
CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON public.t REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_5();
CREATE TRIGGER pgduplex_truncate AFTER TRUNCATE ON public.t FOR EACH STATEMENT WHEN (((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name))) EXECUTE FUNCTION pgduplex.capture_truncate('5');
CREATE TRIGGER pgduplex_capture_delete AFTER DELETE ON public.tk REFERENCING OLD TABLE AS pgduplex_old FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_6();
CREATE TRIGGER pgduplex_capture_insert AFTER INSERT ON public.tk REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_6();
CREATE TRIGGER pgduplex_capture_key AFTER UPDATE OF id ON public.tk FOR EACH ROW WHEN ((((old.id)::text IS DISTINCT FROM (new.id)::text) AND ((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name)))) EXECUTE FUNCTION pgduplex.capture_6();
CREATE TRIGGER pgduplex_capture_update AFTER UPDATE ON public.tk REFERENCING NEW TABLE AS pgduplex_new FOR EACH STATEMENT EXECUTE FUNCTION pgduplex.capture_6();
CREATE TRIGGER pgduplex_truncate AFTER TRUNCATE ON public.tk FOR EACH STATEMENT WHEN (((current_setting('pgduplex.applying'::text, true) IS DISTINCT FROM 'on'::text) OR (SESSION_USER <> 'postgres'::name))) EXECUTE FUNCTION pgduplex.capture_truncate('6');
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_delete;
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_insert;
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_key;
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_capture_update;
ALTER TABLE pgbench_accounts ENABLE ALWAYS TRIGGER pgduplex_truncate;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_delete;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_insert;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_key;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_capture_update;
ALTER TABLE pgbench_branches ENABLE ALWAYS TRIGGER pgduplex_truncate;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_delete;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_insert;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_key;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_capture_update;
ALTER TABLE pgbench_history ENABLE ALWAYS TRIGGER pgduplex_truncate;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_delete;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_insert;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_key;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_capture_update;
ALTER TABLE pgbench_tellers ENABLE ALWAYS TRIGGER pgduplex_truncate;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_delete;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_insert;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_key;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_capture_update;
ALTER TABLE t ENABLE ALWAYS TRIGGER pgduplex_truncate;
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_capture_delete;
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_capture_insert;
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_capture_key;
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_capture_update;
ALTER TABLE tk ENABLE ALWAYS TRIGGER pgduplex_truncate;
CREATE OR REPLACE FUNCTION pgduplex.capture_1()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN
IF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '') OPERATOR(pg_catalog.=) 'on' AND session_user OPERATOR(pg_catalog.=) 'postgres'::pg_catalog.name THEN
    RETURN NULL;
END IF;
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'I', "aid" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'D', "aid" FROM pgduplex_old;
ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'U', "aid" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_1" (op, k1) VALUES ('D', OLD."aid");
END IF;
RETURN NULL;
END$function$
;
CREATE OR REPLACE FUNCTION pgduplex.capture_2()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN
IF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '') OPERATOR(pg_catalog.=) 'on' AND session_user OPERATOR(pg_catalog.=) 'postgres'::pg_catalog.name THEN
    RETURN NULL;
END IF;
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_2" (op, k1) SELECT 'I', "bid" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "pgduplex"."delta_2" (op, k1) SELECT 'D', "bid" FROM pgduplex_old;
ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
    INSERT INTO "pgduplex"."delta_2" (op, k1) SELECT 'U', "bid" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_2" (op, k1) VALUES ('D', OLD."bid");
END IF;
RETURN NULL;
END$function$
;
CREATE OR REPLACE FUNCTION pgduplex.capture_3()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN
IF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '') OPERATOR(pg_catalog.=) 'on' AND session_user OPERATOR(pg_catalog.=) 'postgres'::pg_catalog.name THEN
    RETURN NULL;
END IF;
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_3" (op, k1) SELECT 'I', "id" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "pgduplex"."delta_3" (op, k1) SELECT 'D', "id" FROM pgduplex_old;
ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
    INSERT INTO "pgduplex"."delta_3" (op, k1) SELECT 'U', "id" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_3" (op, k1) VALUES ('D', OLD."id");
END IF;
RETURN NULL;
END$function$
;
CREATE OR REPLACE FUNCTION pgduplex.capture_4()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN
IF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '') OPERATOR(pg_catalog.=) 'on' AND session_user OPERATOR(pg_catalog.=) 'postgres'::pg_catalog.name THEN
    RETURN NULL;
END IF;
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_4" (op, k1) SELECT 'I', "tid" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "pgduplex"."delta_4" (op, k1) SELECT 'D', "tid" FROM pgduplex_old;
ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
    INSERT INTO "pgduplex"."delta_4" (op, k1) SELECT 'U', "tid" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_4" (op, k1) VALUES ('D', OLD."tid");
END IF;
RETURN NULL;
END$function$
;
CREATE OR REPLACE FUNCTION pgduplex.capture_5()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN
IF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '') OPERATOR(pg_catalog.=) 'on' AND session_user OPERATOR(pg_catalog.=) 'postgres'::pg_catalog.name THEN
    RETURN NULL;
END IF;
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_5" (op, k1) SELECT 'I', "id" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "pgduplex"."delta_5" (op, k1) SELECT 'D', "id" FROM pgduplex_old;
ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
    INSERT INTO "pgduplex"."delta_5" (op, k1) SELECT 'U', "id" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_5" (op, k1) VALUES ('D', OLD."id");
END IF;
RETURN NULL;
END$function$
;
CREATE OR REPLACE FUNCTION pgduplex.capture_6()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN
IF COALESCE(pg_catalog.current_setting('pgduplex.applying', true), '') OPERATOR(pg_catalog.=) 'on' AND session_user OPERATOR(pg_catalog.=) 'postgres'::pg_catalog.name THEN
    RETURN NULL;
END IF;
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_6" (op, k1) SELECT 'I', "id" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    INSERT INTO "pgduplex"."delta_6" (op, k1) SELECT 'D', "id" FROM pgduplex_old;
ELSIF TG_LEVEL OPERATOR(pg_catalog.=) 'STATEMENT' THEN
    INSERT INTO "pgduplex"."delta_6" (op, k1) SELECT 'U', "id" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_6" (op, k1) VALUES ('D', OLD."id");
END IF;
RETURN NULL;
END$function$
;
CREATE OR REPLACE FUNCTION pgduplex.capture_truncate()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    INSERT INTO pgduplex.truncate_log (table_id, truncated_schema, truncated_table)
    VALUES (TG_ARGV[0]::integer, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NULL;
END
$function$
;
CREATE UNIQUE INDEX delta_1_pkey ON pgduplex.delta_1 USING btree (seq);
CREATE UNIQUE INDEX delta_2_pkey ON pgduplex.delta_2 USING btree (seq);
CREATE UNIQUE INDEX delta_3_pkey ON pgduplex.delta_3 USING btree (seq);
CREATE UNIQUE INDEX delta_4_pkey ON pgduplex.delta_4 USING btree (seq);
CREATE UNIQUE INDEX delta_5_pkey ON pgduplex.delta_5 USING btree (seq);
CREATE UNIQUE INDEX delta_6_pkey ON pgduplex.delta_6 USING btree (seq);
