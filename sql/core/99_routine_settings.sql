-- What every pldiffix function pins, in one place (applied last, after every CREATE; an upgrade
-- re-creates the functions and so passes here again). Each function that pins
-- `search_path = pg_catalog, pg_temp` in its own header is pldiffix's own code, which must mean
-- the same whatever the caller did to the session (docs/security.md, "Definer code means the same
-- in any session"):
-- - every one reads string constants as standard SQL (a backslash is a character);
-- - SECURITY DEFINER ones also pin backslash_quote;
-- - PL/Python SECURITY DEFINER ones run the SQL pldiffix generates and render the canonical texts
--   that seed noise, so they also pin how values read and print.
-- tests/security/test_entry_points.py checks pg_proc.proconfig of every definer.
-- The invoker entry points that answer analysts (`answering` below) pin how results are written
-- (floats, arrays, bytea, intervals) and nothing else: they run the caller's query under the
-- caller's search_path, DateStyle and TimeZone (sql/core/60_query.sql).
DO $pin$
DECLARE
  routine record;
  setting text;
  parsing constant text[] := ARRAY['standard_conforming_strings = on'];
  definer constant text[] := ARRAY['backslash_quote = safe_encoding'];
  generated_sql constant text[] := ARRAY[
    'DateStyle = ''ISO, MDY''', 'IntervalStyle = postgres', 'TimeZone = ''UTC''',
    'extra_float_digits = 1', 'bytea_output = hex', 'array_nulls = on',
    'quote_all_identifiers = off', 'lc_monetary = ''C''', 'lc_numeric = ''C'''];
  output constant text[] := ARRAY[
    'extra_float_digits = 1', 'array_nulls = on', 'bytea_output = hex', 'intervalstyle = postgres'];
  answering constant pg_catalog.regprocedure[] := ARRAY[
    'diffix._query_json(text)', 'diffix._query_prepare(text)',
    'diffix._dp_query_json(text, double precision, double precision)',
    'diffix._proxy_plan(text, boolean, text[], oid[], oid[], integer[])'];
  signature pg_catalog.regprocedure;
BEGIN
  FOR routine IN
    SELECT p.oid::pg_catalog.regprocedure AS signature, p.prosecdef, l.lanname
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
    WHERE n.nspname OPERATOR(pg_catalog.~) '^diffix'
      AND l.lanname OPERATOR(pg_catalog.<>) ALL (ARRAY['c', 'internal']::pg_catalog.name[])
      AND 'search_path=pg_catalog, pg_temp' OPERATOR(pg_catalog.=) ANY (p.proconfig)
  LOOP
    FOREACH setting IN ARRAY parsing
      || CASE WHEN routine.prosecdef THEN definer ELSE '{}' END
      || CASE WHEN routine.prosecdef AND routine.lanname OPERATOR(pg_catalog.=) 'plpython3u'
              THEN generated_sql ELSE '{}' END
    LOOP
      EXECUTE pg_catalog.format('ALTER ROUTINE %s SET %s', routine.signature, setting);
    END LOOP;
  END LOOP;
  FOREACH signature IN ARRAY answering LOOP
    FOREACH setting IN ARRAY output LOOP
      EXECUTE pg_catalog.format('ALTER ROUTINE %s SET %s', signature, setting);
    END LOOP;
  END LOOP;
END
$pin$;
