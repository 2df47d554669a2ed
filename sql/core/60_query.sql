-- Entry points for analysts. Invoker rights: a direct-level role's query runs with its own
-- privileges; a query that touches personal tables at an anonymized level is handed to the
-- engine function (diffix/62_engine.sql), the only place that reads personal tables on an
-- analyst's behalf.
-- STABLE makes PostgreSQL refuse any data-modifying statement inside them.
-- No DateStyle is pinned: the session's DateStyle governs casts inside the query, and results
-- are rendered with row_to_json (ISO 8601 dates and timestamps) whatever it is.

CREATE OR REPLACE FUNCTION diffix._query_json(sql text) RETURNS jsonb
LANGUAGE plpython3u STABLE
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.query_json(plpy, sql)
$python$;

-- diffix.query(sql) in two steps, because PL/pgSQL cannot hand its caller's column definition
-- list to a PL/Python function and PL/Python cannot raise an error without prefixing it:
-- _query_prepare answers the query and returns the result's column definition list (its exact
-- types), _query_stashed returns the rows it kept.
CREATE OR REPLACE FUNCTION diffix._query_prepare(sql text) RETURNS text
LANGUAGE plpython3u STABLE
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
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
DECLARE
  message text; detail text; hint text;
BEGIN
  RETURN diffix._query_json(sql);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT;
  PERFORM diffix._reraise(SQLSTATE, message, detail, hint);
END
$$;
