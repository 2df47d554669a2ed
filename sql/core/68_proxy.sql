-- The wire-protocol front (proxy/) asks this function what to do with each client statement
-- it sees: forward it ('pass'), answer it through the engine ('engine'), or answer a type probe
-- ('probe') from the server's Describe. Invoker rights: it decides and answers as the client's
-- own role, so the front grants nothing the role does not have.
-- Installs before the token column had the answer's token inlined in the fetch statement: their
-- functions return another row type, which CREATE OR REPLACE cannot change.
DO $$
BEGIN
  IF pg_catalog.strpos(pg_catalog.pg_get_function_result(pg_catalog.to_regprocedure(
       'diffix.proxy_plan(text,boolean,text[],oid[],oid[],integer[])')), 'token') = 0 THEN
    DROP FUNCTION diffix.proxy_plan(text, boolean, text[], oid[], oid[], integer[]);
    DROP FUNCTION diffix._proxy_plan(text, boolean, text[], oid[], oid[], integer[]);
  END IF;
END
$$;
CREATE OR REPLACE FUNCTION diffix._proxy_plan(
  sql text, answer boolean, params text[], param_types oid[], column_types oid[],
  column_typmods integer[]
) RETURNS TABLE (route text, statement text, token bigint)
LANGUAGE plpython3u VOLATILE
AS $python$
#@load pldiffix.server
return server.proxy_plan(plpy, sql, answer, params, param_types, column_types, column_typmods)
$python$;

-- Statements that name no protected table (catalog queries, most of what tools send) are
-- passed without starting Python: a protected table's name must at least appear in the text.
-- An answer comes as a fetch statement whose $1 is the token its rows wait under (the same
-- text for every answer of one shape, which the front keeps prepared).
CREATE OR REPLACE FUNCTION diffix.proxy_plan(
  sql text, answer boolean DEFAULT true, params text[] DEFAULT NULL,
  param_types oid[] DEFAULT NULL, column_types oid[] DEFAULT NULL,
  column_typmods integer[] DEFAULT NULL
) RETURNS TABLE (route text, statement text, token bigint)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM diffix.protected_tables l
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relid
    WHERE pg_catalog.strpos(pg_catalog.lower(sql), pg_catalog.lower(c.relname))
          OPERATOR(pg_catalog.>) 0
  ) THEN
    -- invoker rights: every type and operator written out, whatever the caller's search_path
    RETURN QUERY SELECT CAST('pass' AS pg_catalog.text), CAST(NULL AS pg_catalog.text),
                        CAST(NULL AS pg_catalog.int8);
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM diffix._proxy_plan(sql, answer, params, param_types, column_types,
                                               column_typmods);
--@reraise
END
$$;

-- The rows of an answer proxy_plan gave, once, to the role that asked (see server.proxy_rows).
CREATE OR REPLACE FUNCTION diffix._proxy_rows(token bigint) RETURNS SETOF record
LANGUAGE plpython3u VOLATILE
AS $python$
from pldiffix import server
return server.proxy_rows(plpy, token)
$python$;
