-- Entry points for analysts. Invoker rights: each hands the statement to the gate,
-- diffix._answer (below), and runs what the gate hands back with the caller's own privileges.
-- STABLE makes PostgreSQL refuse any data-modifying statement inside them.
-- The settings that change how results are written (floats, arrays, bytea, intervals) are pinned
-- on the PL/Python functions (by 99_routine_settings.sql); DateStyle and TimeZone are not: they
-- govern casts inside the query, and results are rendered with row_to_json (ISO 8601 dates and
-- timestamps) whatever they are.

CREATE OR REPLACE FUNCTION diffix._query_json(sql text) RETURNS jsonb
LANGUAGE plpython3u STABLE
AS $python$
#@load pldiffix.server
return server.query_json(plpy, sql)
$python$;

-- diffix.query(sql) in two steps, because PL/pgSQL cannot hand its caller's column definition
-- list to a PL/Python function and PL/Python cannot raise an error without prefixing it:
-- _query_prepare answers the query and returns the result's column definition list (its exact
-- types), _query_stashed returns the rows it kept.
CREATE OR REPLACE FUNCTION diffix._query_prepare(sql text) RETURNS text
LANGUAGE plpython3u STABLE
AS $python$
#@load pldiffix.server
return server.prepare_rows(plpy, sql)
$python$;

CREATE OR REPLACE FUNCTION diffix._query_stashed() RETURNS SETOF record
LANGUAGE plpython3u STABLE
AS $python$
from pldiffix import server
return server.stashed_rows(plpy)
$python$;

CREATE OR REPLACE FUNCTION diffix.query(sql text) RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET standard_conforming_strings = on
AS $$
DECLARE
  columns text;
  message text; detail text; hint text;
BEGIN
  columns := diffix._query_prepare(sql);
  -- columns is built from format_type() of the result's types, never from the query's text
  RETURN QUERY EXECUTE pg_catalog.format('SELECT * FROM diffix._query_stashed() AS t(%s)', columns);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT;
  IF SQLSTATE = '42804' AND columns IS NOT NULL THEN
    hint := pg_catalog.format('declare the columns with the types the query returns: %s',
                              pg_catalog.regexp_replace(columns, '(^|, )c\d+ ', '\1', 'g'));
  END IF;
  PERFORM diffix._reraise(SQLSTATE, message, detail, hint);
END
$$;

CREATE OR REPLACE FUNCTION diffix.query_json(sql text) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
  RETURN diffix._query_json(sql);
--@reraise
END
$$;

-- The gate every analyst answer passes (pldiffix/answers.py): the level from the catalog, the
-- mechanism, the DP charge before any data is read, the audit row before anything is returned.
-- Its owner reads personal tables; its settings are pinned so that the SQL it generates and runs
-- means the same whatever the caller did to the session.
DROP FUNCTION IF EXISTS diffix._anonymized_query_json(text, text, text[]);
DROP FUNCTION IF EXISTS diffix._anonymized_query_json(text, text);
DROP FUNCTION IF EXISTS diffix._dp_answer(text, double precision, double precision, text[]);
DROP FUNCTION IF EXISTS diffix._perturbed_query_json(text, oid, text);
CREATE OR REPLACE FUNCTION diffix._answer(
  sql text, epsilon double precision, delta double precision, search_path text[],
  explicit_dp boolean)
RETURNS jsonb
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.server
return server.gate(plpy, sql, epsilon, delta, search_path, explicit_dp)
$python$;
ALTER FUNCTION diffix._answer(text, double precision, double precision, text[], boolean)
  OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._answer(text, double precision, double precision, text[], boolean)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._answer(text, double precision, double precision, text[], boolean)
  TO PUBLIC;

-- A statement the proxy's router refused (COPY of a personal table, ...), logged for the caller
-- as a refusal: the level is the catalog's, and a caller can only add refusals about itself.
CREATE OR REPLACE FUNCTION diffix._audit_refusal(statement text, mechanism text, reason text)
RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.server
server.audit_refusal(plpy, statement, mechanism, reason)
$python$;
ALTER FUNCTION diffix._audit_refusal(text, text, text) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._audit_refusal(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._audit_refusal(text, text, text) TO PUBLIC;
