-- Differentially private queries (docs/dp.md). diffix.dp_query_json(sql, epsilon, delta) is the
-- analyst's entry point (invoker rights, like diffix.query_json); it hands the query to the gate,
-- diffix._answer (core/60_query.sql), which charges the role's privacy budget before it reads
-- any personal row and returns the statement with its DP subquery replaced by the released rows,
-- which the entry point runs with the caller's own privileges.

CREATE OR REPLACE FUNCTION diffix._dp_query_json(
  sql text, epsilon double precision, delta double precision)
RETURNS jsonb
LANGUAGE plpython3u STABLE
AS $python$
#@load pldiffix.server
return server.dp_query_json(plpy, sql, epsilon, delta)
$python$;

CREATE OR REPLACE FUNCTION diffix.dp_query_json(
  sql text, epsilon double precision, delta double precision DEFAULT 0)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  RETURN diffix._dp_query_json(sql, epsilon, delta);
--@reraise
END
$$;

-- Accuracy and budget columns for clients that only see columns (dp/markers.py). Inside the DP
-- subquery's select list the engine answers them from the released rows; anywhere else the
-- interval markers have nothing to describe, so they refuse (an aggregate computed outside the
-- DP engine has no noise).
CREATE OR REPLACE FUNCTION diffix.dp_ci_low(aggregate anyelement) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'diffix.dp_ci_low(aggregate) only works in the select list of a DP query'
    USING ERRCODE = 'feature_not_supported',
          HINT = 'put it next to the aggregate in the query sent to diffix.dp_query_json, or '
                 'as an anonymized_dp role to diffix.query_json or the proxy: '
                 'SELECT count(*), diffix.dp_ci_low(count(*)) FROM t';
END
$$;

CREATE OR REPLACE FUNCTION diffix.dp_ci_high(aggregate anyelement) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'diffix.dp_ci_high(aggregate) only works in the select list of a DP query'
    USING ERRCODE = 'feature_not_supported',
          HINT = 'put it next to the aggregate in the query sent to diffix.dp_query_json, or '
                 'as an anonymized_dp role to diffix.query_json or the proxy: '
                 'SELECT count(*), diffix.dp_ci_high(count(*)) FROM t';
END
$$;

-- The epsilon the invoking role has left in the current period (NULL: it has no budget). In a
-- DP query's select list: what is left once that query is paid.
CREATE OR REPLACE FUNCTION diffix.dp_budget_remaining() RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN (SELECT CAST(b.epsilon_remaining AS pg_catalog.float8) FROM diffix.privacy_budget() b
          WHERE b.role OPERATOR(pg_catalog.=) diffix._invoking_role());
END
$$;
