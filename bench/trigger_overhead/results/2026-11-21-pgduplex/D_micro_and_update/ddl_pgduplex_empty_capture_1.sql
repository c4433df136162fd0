CREATE OR REPLACE FUNCTION pgduplex.capture_1()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$BEGIN RETURN NULL; END$function$

