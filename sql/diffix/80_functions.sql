-- Plain functions usable in any query. Bodies are schema-qualified SQL so the planner can inline
-- them and no user object can change what they mean. The generalizations are not STRICT: the
-- planner never inlines a STRICT function whose body (a CASE) it cannot prove strict, and a call
-- per row costs ~3 us. The bodies already give NULL for a NULL argument.

CREATE OR REPLACE FUNCTION diffix.floor_by(value numeric, amount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN amount OPERATOR(pg_catalog.<=) 0 THEN NULL
            ELSE pg_catalog.floor(value OPERATOR(pg_catalog./) amount) OPERATOR(pg_catalog.*) amount END;

CREATE OR REPLACE FUNCTION diffix.floor_by(value double precision, amount double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN amount OPERATOR(pg_catalog.<=) 0 THEN NULL
            ELSE pg_catalog.floor(value OPERATOR(pg_catalog./) amount) OPERATOR(pg_catalog.*) amount END;

CREATE OR REPLACE FUNCTION diffix.round_by(value numeric, amount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN amount OPERATOR(pg_catalog.<=) 0 THEN NULL
            ELSE pg_catalog.round(value OPERATOR(pg_catalog./) amount) OPERATOR(pg_catalog.*) amount END;

CREATE OR REPLACE FUNCTION diffix.round_by(value double precision, amount double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN amount OPERATOR(pg_catalog.<=) 0 THEN NULL
            ELSE pg_catalog.round(value OPERATOR(pg_catalog./) amount) OPERATOR(pg_catalog.*) amount END;

CREATE OR REPLACE FUNCTION diffix.ceil_by(value numeric, amount numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN amount OPERATOR(pg_catalog.<=) 0 THEN NULL
            ELSE pg_catalog.ceil(value OPERATOR(pg_catalog./) amount) OPERATOR(pg_catalog.*) amount END;

CREATE OR REPLACE FUNCTION diffix.ceil_by(value double precision, amount double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN amount OPERATOR(pg_catalog.<=) 0 THEN NULL
            ELSE pg_catalog.ceil(value OPERATOR(pg_catalog./) amount) OPERATOR(pg_catalog.*) amount END;

-- Unnests the first dimension of an array: {{1,2},{3,4}} -> {1,2}, {3,4}.
CREATE OR REPLACE FUNCTION diffix.unnest_histogram(histogram anyarray) RETURNS SETOF anyarray
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT ARRAY(SELECT pg_catalog.unnest(histogram[i:i]))
  FROM pg_catalog.generate_subscripts(histogram, 1) AS i
  ORDER BY i
$$;

-- Aggregates that only mean something in anonymizing queries. At the direct level they report
-- what a raw answer carries: no noise, no suppress bin.
CREATE OR REPLACE FUNCTION diffix._no_noise(state double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN state;
CREATE OR REPLACE FUNCTION diffix._no_noise(state double precision, value anyelement)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT state';
CREATE OR REPLACE FUNCTION diffix._not_suppress_bin(state boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN state;

CREATE OR REPLACE AGGREGATE diffix.count_noise(*) (
  sfunc = diffix._no_noise, stype = double precision, initcond = '0');
CREATE OR REPLACE AGGREGATE diffix.count_noise(anyelement) (
  sfunc = diffix._no_noise, stype = double precision, initcond = '0');
CREATE OR REPLACE AGGREGATE diffix.sum_noise(anyelement) (
  sfunc = diffix._no_noise, stype = double precision, initcond = '0');
CREATE OR REPLACE AGGREGATE diffix.avg_noise(anyelement) (
  sfunc = diffix._no_noise, stype = double precision, initcond = '0');
CREATE OR REPLACE AGGREGATE diffix.is_suppress_bin(*) (
  sfunc = diffix._not_suppress_bin, stype = boolean, initcond = 'false');

-- count_histogram at the direct level: the exact histogram {{rows_per_entity, entities}, ...}.
CREATE OR REPLACE FUNCTION diffix._histogram_step(state text[], aid anyelement, bin_size bigint)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN aid IS NULL THEN COALESCE(state, ARRAY[bin_size::text])
              ELSE pg_catalog.array_append(COALESCE(state, ARRAY[bin_size::text]), aid::text) END
$$;
CREATE OR REPLACE FUNCTION diffix._histogram_step(state text[], aid anyelement)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS 'SELECT diffix._histogram_step(state, aid, 1)';
CREATE OR REPLACE FUNCTION diffix._histogram_final(state text[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT COALESCE(pg_catalog.array_agg(ARRAY[bin, entities] ORDER BY bin), '{}')
  FROM (
    SELECT diffix.floor_by(rows_per_aid, state[1]::numeric)::bigint AS bin, pg_catalog.count(*) AS entities
    FROM (SELECT pg_catalog.count(*) AS rows_per_aid
          FROM pg_catalog.unnest(state[2:]) AS aid GROUP BY aid) per_aid
    GROUP BY 1
  ) bins
$$;
CREATE OR REPLACE AGGREGATE diffix.count_histogram(anyelement) (
  sfunc = diffix._histogram_step, stype = text[], finalfunc = diffix._histogram_final);
CREATE OR REPLACE AGGREGATE diffix.count_histogram(anyelement, bigint) (
  sfunc = diffix._histogram_step, stype = text[], finalfunc = diffix._histogram_final);
