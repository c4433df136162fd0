CREATE OR REPLACE FUNCTION pgduplex.capture_1()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$BEGIN
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'I', "aid" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'U', "aid" FROM pgduplex_new;
ELSE
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'D', "aid" FROM pgduplex_old;
END IF;
RETURN NULL;
END$function$

