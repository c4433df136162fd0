CREATE OR REPLACE FUNCTION pgduplex.capture_1()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
AS $function$BEGIN RETURN NULL; END$function$

