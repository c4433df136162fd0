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

