-- Differentially private queries (docs/dp.md). diffix.dp_query_json(sql, epsilon, delta) is the
-- analyst's entry point (invoker rights, like diffix.query_json); it hands the query to the DP
-- engine, diffix._dp_answer, the only function that reads personal tables for it. The engine
-- charges the role's privacy budget before it returns anything, and returns the statement with
-- its DP subquery replaced by the released rows, which the entry point runs with the caller's
-- own privileges (STABLE: PostgreSQL refuses any data-modifying statement in it).

-- VOLATILE: every call draws fresh noise and spends budget (pldiffix.core.ledger). It executes
-- only SQL generated from the validated query (pldiffix/dp/planner.py).
CREATE OR REPLACE FUNCTION diffix._dp_answer(
  sql text, epsilon double precision, delta double precision, search_path text[])
RETURNS jsonb
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.dp_answer(plpy, sql, epsilon, delta, search_path)
$python$;
ALTER FUNCTION diffix._dp_answer(text, double precision, double precision, text[])
  OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._dp_answer(text, double precision, double precision, text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._dp_answer(text, double precision, double precision, text[])
  TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix._dp_query_json(
  sql text, epsilon double precision, delta double precision)
RETURNS jsonb
LANGUAGE plpython3u STABLE
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
