-- Differentially private queries (docs/dp.md). diffix.dp_query_json(sql, epsilon, delta) is the
-- analyst's entry point (invoker rights, like diffix.query_json); it hands the query to the gate,
-- diffix._answer (core/60_query.sql), which charges the role's privacy budget before it reads
-- any personal row and returns the statement with its DP subquery replaced by the released rows,
-- which the entry point runs with the caller's own privileges.

CREATE OR REPLACE FUNCTION diffix._dp_query_json(
  sql text, epsilon double precision, delta double precision)
RETURNS jsonb
LANGUAGE plpython3u STABLE
SET extra_float_digits = 1
SET array_nulls = on
SET bytea_output = hex
SET intervalstyle = postgres
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.dp_query_json(plpy, sql, epsilon, delta)
$python$;

CREATE OR REPLACE FUNCTION diffix.dp_query_json(
  sql text, epsilon double precision, delta double precision DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  message text; detail text; hint text;
BEGIN
  RETURN diffix._dp_query_json(sql, epsilon, delta);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT;
  PERFORM diffix._reraise(SQLSTATE, message, detail, hint);
END
$$;
