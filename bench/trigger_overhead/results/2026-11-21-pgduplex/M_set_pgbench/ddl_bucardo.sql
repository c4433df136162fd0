CREATE TRIGGER bucardo_delta_namemaker BEFORE INSERT OR UPDATE ON bucardo.bucardo_delta_names FOR EACH ROW EXECUTE FUNCTION bucardo.bucardo_delta_names_helper();
CREATE TRIGGER bucardo_delta AFTER INSERT OR DELETE OR UPDATE ON public.pgbench_accounts FOR EACH ROW EXECUTE FUNCTION bucardo.delta_public_pgbench_accounts();
CREATE TRIGGER bucardo_kick_sync_bench_bucardo AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.pgbench_accounts FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo();
CREATE TRIGGER bucardo_note_trunc_sync_bench_bucardo AFTER TRUNCATE ON public.pgbench_accounts FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_note_truncation('sync_bench_bucardo');
CREATE TRIGGER bucardo_delta AFTER INSERT OR DELETE OR UPDATE ON public.pgbench_branches FOR EACH ROW EXECUTE FUNCTION bucardo.delta_public_pgbench_branches();
CREATE TRIGGER bucardo_kick_sync_bench_bucardo AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.pgbench_branches FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo();
CREATE TRIGGER bucardo_note_trunc_sync_bench_bucardo AFTER TRUNCATE ON public.pgbench_branches FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_note_truncation('sync_bench_bucardo');
CREATE TRIGGER bucardo_delta AFTER INSERT OR DELETE OR UPDATE ON public.pgbench_history FOR EACH ROW EXECUTE FUNCTION bucardo.delta_public_pgbench_history();
CREATE TRIGGER bucardo_kick_sync_bench_bucardo AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.pgbench_history FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo();
CREATE TRIGGER bucardo_note_trunc_sync_bench_bucardo AFTER TRUNCATE ON public.pgbench_history FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_note_truncation('sync_bench_bucardo');
CREATE TRIGGER bucardo_delta AFTER INSERT OR DELETE OR UPDATE ON public.pgbench_tellers FOR EACH ROW EXECUTE FUNCTION bucardo.delta_public_pgbench_tellers();
CREATE TRIGGER bucardo_kick_sync_bench_bucardo AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.pgbench_tellers FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo();
CREATE TRIGGER bucardo_note_trunc_sync_bench_bucardo AFTER TRUNCATE ON public.pgbench_tellers FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_note_truncation('sync_bench_bucardo');
CREATE TRIGGER bucardo_delta AFTER INSERT OR DELETE OR UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION bucardo.delta_public_t();
CREATE TRIGGER bucardo_kick_sync_bench_bucardo AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.t FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo();
CREATE TRIGGER bucardo_note_trunc_sync_bench_bucardo AFTER TRUNCATE ON public.t FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_note_truncation('sync_bench_bucardo');
CREATE TRIGGER bucardo_delta AFTER INSERT OR DELETE OR UPDATE ON public.tk FOR EACH ROW EXECUTE FUNCTION bucardo.delta_public_tk();
CREATE TRIGGER bucardo_kick_sync_bench_bucardo AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.tk FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo();
CREATE TRIGGER bucardo_note_trunc_sync_bench_bucardo AFTER TRUNCATE ON public.tk FOR EACH STATEMENT EXECUTE FUNCTION bucardo.bucardo_note_truncation('sync_bench_bucardo');
CREATE OR REPLACE FUNCTION bucardo.bucardo_kick_sync_bench_bucardo()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
                  BEGIN
                    EXECUTE $nn$NOTIFY bucardo, 'kick_sync_sync_bench_bucardo'$nn$;
                  RETURN NEW;
                  END;
                  $function$
;
CREATE OR REPLACE FUNCTION bucardo.delta_public_pgbench_accounts()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$
        BEGIN
        IF (TG_OP = 'INSERT') THEN
          INSERT INTO bucardo.delta_public_pgbench_accounts VALUES (NEW."aid");
        ELSIF (TG_OP = 'UPDATE') THEN
          INSERT INTO bucardo.delta_public_pgbench_accounts VALUES (OLD."aid");
          IF (OLD."aid" <> NEW."aid") THEN
            INSERT INTO bucardo.delta_public_pgbench_accounts VALUES (NEW."aid");
          END IF;
        ELSE
          INSERT INTO bucardo.delta_public_pgbench_accounts VALUES (OLD."aid");
        END IF;
        RETURN NULL;
        END;
        $function$
;
CREATE OR REPLACE FUNCTION bucardo.delta_public_pgbench_branches()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$
        BEGIN
        IF (TG_OP = 'INSERT') THEN
          INSERT INTO bucardo.delta_public_pgbench_branches VALUES (NEW."bid");
        ELSIF (TG_OP = 'UPDATE') THEN
          INSERT INTO bucardo.delta_public_pgbench_branches VALUES (OLD."bid");
          IF (OLD."bid" <> NEW."bid") THEN
            INSERT INTO bucardo.delta_public_pgbench_branches VALUES (NEW."bid");
          END IF;
        ELSE
          INSERT INTO bucardo.delta_public_pgbench_branches VALUES (OLD."bid");
        END IF;
        RETURN NULL;
        END;
        $function$
;
CREATE OR REPLACE FUNCTION bucardo.delta_public_pgbench_history()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$
        BEGIN
        IF (TG_OP = 'INSERT') THEN
          INSERT INTO bucardo.delta_public_pgbench_history VALUES (NEW."id");
        ELSIF (TG_OP = 'UPDATE') THEN
          INSERT INTO bucardo.delta_public_pgbench_history VALUES (OLD."id");
          IF (OLD."id" <> NEW."id") THEN
            INSERT INTO bucardo.delta_public_pgbench_history VALUES (NEW."id");
          END IF;
        ELSE
          INSERT INTO bucardo.delta_public_pgbench_history VALUES (OLD."id");
        END IF;
        RETURN NULL;
        END;
        $function$
;
CREATE OR REPLACE FUNCTION bucardo.bucardo_note_truncation()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$ 
DECLARE
  mytable TEXT;
  myst TEXT;
BEGIN
  INSERT INTO bucardo.bucardo_truncate_trigger(tablename,sname,tname,sync)
    VALUES (TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]);

  SELECT INTO mytable
    bucardo.bucardo_tablename_maker(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'delta_');
  myst = 'TRUNCATE TABLE bucardo.' || mytable;
  EXECUTE myst;

  SELECT INTO mytable
    bucardo.bucardo_tablename_maker(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'track_');
  myst = 'TRUNCATE TABLE bucardo.' || mytable;
  EXECUTE myst;

  -- Not strictly necessary, but nice to have a clean slate
  SELECT INTO mytable
    bucardo.bucardo_tablename_maker(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'stage_');
  myst = 'TRUNCATE TABLE bucardo.' || mytable;
  EXECUTE myst;

  RETURN NEW;
END;
 $function$
;
CREATE OR REPLACE FUNCTION bucardo.delta_public_pgbench_tellers()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$
        BEGIN
        IF (TG_OP = 'INSERT') THEN
          INSERT INTO bucardo.delta_public_pgbench_tellers VALUES (NEW."tid");
        ELSIF (TG_OP = 'UPDATE') THEN
          INSERT INTO bucardo.delta_public_pgbench_tellers VALUES (OLD."tid");
          IF (OLD."tid" <> NEW."tid") THEN
            INSERT INTO bucardo.delta_public_pgbench_tellers VALUES (NEW."tid");
          END IF;
        ELSE
          INSERT INTO bucardo.delta_public_pgbench_tellers VALUES (OLD."tid");
        END IF;
        RETURN NULL;
        END;
        $function$
;
CREATE OR REPLACE FUNCTION bucardo.delta_public_t()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$
        BEGIN
        IF (TG_OP = 'INSERT') THEN
          INSERT INTO bucardo.delta_public_t VALUES (NEW."id");
        ELSIF (TG_OP = 'UPDATE') THEN
          INSERT INTO bucardo.delta_public_t VALUES (OLD."id");
          IF (OLD."id" <> NEW."id") THEN
            INSERT INTO bucardo.delta_public_t VALUES (NEW."id");
          END IF;
        ELSE
          INSERT INTO bucardo.delta_public_t VALUES (OLD."id");
        END IF;
        RETURN NULL;
        END;
        $function$
;
CREATE OR REPLACE FUNCTION bucardo.delta_public_tk()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$
        BEGIN
        IF (TG_OP = 'INSERT') THEN
          INSERT INTO bucardo.delta_public_tk VALUES (NEW."id");
        ELSIF (TG_OP = 'UPDATE') THEN
          INSERT INTO bucardo.delta_public_tk VALUES (OLD."id");
          IF (OLD."id" <> NEW."id") THEN
            INSERT INTO bucardo.delta_public_tk VALUES (NEW."id");
          END IF;
        ELSE
          INSERT INTO bucardo.delta_public_tk VALUES (OLD."id");
        END IF;
        RETURN NULL;
        END;
        $function$
;
