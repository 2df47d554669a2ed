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
