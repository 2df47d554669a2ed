-- DP clamping bounds for administrators (docs/dp.md, "Suggested bounds"): two DP quantiles of a
-- numeric column of a personal table, paid from the calling administrator's own budget before
-- any row is read, and written to the audit log (mechanism 'dp_bounds').

CREATE OR REPLACE FUNCTION diffix._dp_suggest_bounds(
  relid oid, column_name text, epsilon double precision)
RETURNS TABLE (lower_bound double precision, upper_bound double precision)
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.dp.bounds
return bounds.suggest(plpy, relid, column_name, epsilon)
$python$;
ALTER FUNCTION diffix._dp_suggest_bounds(oid, text, double precision) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._dp_suggest_bounds(oid, text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._dp_suggest_bounds(oid, text, double precision) TO PUBLIC;

-- Administrators only (checked inside); spends epsilon of their own budget. The suggestion is
-- what set_dp_bounds takes: CALL diffix.set_dp_bounds(table, column, lower_bound, upper_bound).
CREATE OR REPLACE FUNCTION diffix.dp_suggest_bounds(
  table_name text, column_name text, epsilon double precision)
RETURNS TABLE (lower_bound double precision, upper_bound double precision)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  RETURN QUERY SELECT b.lower_bound, b.upper_bound
    FROM diffix._dp_suggest_bounds(diffix._resolve_table(table_name), column_name, epsilon) b;
--@reraise
END
$$;
