-- The Diffix engine's definer function and what only it may execute.

-- The flat in-memory form of an array (ArrayType: header, then the elements in the server's
-- byte order) as bytea. The engine packs per-AID values with array_agg and reads them through
-- this (anonymization/bulk.py decodes and checks the header), which is cheaper than string_agg
-- of a send function, which allocates a bytea per value (docs/engine.md, "Packed arrays").
-- byteasend returns a detoasted, flattened copy of any varlena argument, so every array is safe
-- to pass.
CREATE OR REPLACE FUNCTION diffix._array_bytes(anyarray) RETURNS bytea
LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE
AS 'byteasend';
REVOKE ALL ON FUNCTION diffix._array_bytes(anyarray) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._array_bytes(anyarray) TO diffix_engine;

-- The engine. It validates the query again at the invoking role's level, with the caller's
-- search path (only schemas that role may use), checks every object it executes on the role's
-- behalf and returns {"query": ...}: the statement with each anonymizing part replaced by its
-- anonymized rows, which the invoker-rights entry point then runs with the caller's privileges.
-- Older versions took (sql, requested_level); the installer upgrades in place, so drop that one.
DROP FUNCTION IF EXISTS diffix._anonymized_query_json(text, text);
CREATE OR REPLACE FUNCTION diffix._anonymized_query_json(
  sql text, requested_level text, search_path text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.anonymized_query_json(plpy, sql, requested_level, search_path)
$python$;
ALTER FUNCTION diffix._anonymized_query_json(text, text, text[]) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._anonymized_query_json(text, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._anonymized_query_json(text, text, text[]) TO PUBLIC;
