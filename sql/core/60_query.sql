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

CREATE OR REPLACE FUNCTION diffix.query(sql text) RETURNS SETOF record
LANGUAGE plpython3u STABLE
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.query_rows(plpy, sql)
$python$;

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
