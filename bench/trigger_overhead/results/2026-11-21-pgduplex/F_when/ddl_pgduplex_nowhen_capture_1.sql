CREATE OR REPLACE FUNCTION pgduplex.capture_1()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$BEGIN
IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'I', "aid" FROM pgduplex_new;
ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
    INSERT INTO "pgduplex"."delta_1" (op, k1)
    SELECT CASE WHEN o.k1 IS NULL THEN 'I' WHEN n.k1 IS NULL THEN 'D' ELSE 'U' END, COALESCE(n.k1, o.k1)
      FROM (SELECT "aid" AS k1 FROM pgduplex_new) n
      FULL JOIN (SELECT "aid" AS k1 FROM pgduplex_old) o ON n.k1::pg_catalog.text OPERATOR(pg_catalog.=) o.k1::pg_catalog.text;
ELSE
    INSERT INTO "pgduplex"."delta_1" (op, k1) SELECT 'D', "aid" FROM pgduplex_old;
END IF;
RETURN NULL;
END$function$

