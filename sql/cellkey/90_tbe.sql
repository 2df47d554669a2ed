-- Cell-key (TBE) perturbation and keyed Laplace noise (docs/tbe.md).
--
-- A cell-key table carries the label 'cellkey' in diffix.table_labels, a protected label
-- registered here, so it is protected like a personal table (diffix._personal_table_exposures,
-- the event trigger, check_security, mark_role all cover it), and one row here with its validated
-- configuration, everything inline. Dropping or unmarking the table removes the row (foreign
-- key); relabeling it removes it too (registered in diffix.label_metadata).
CALL diffix._register_label('cellkey', protected => true);

CREATE TABLE IF NOT EXISTS diffix.perturbation_configs (
  relid oid PRIMARY KEY REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  method text NOT NULL CHECK (method IN ('tbe', 'laplace')),
  config jsonb NOT NULL,
  configured_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- The configuration is secret (s-matrix, scope keys, Laplace key): engine and superusers only.
REVOKE ALL ON diffix.perturbation_configs FROM PUBLIC;
GRANT SELECT ON diffix.perturbation_configs TO diffix_engine;

CALL diffix._register_label_metadata('perturbation_configs', 'cellkey', 'relid');

-- Validates the configuration against the table and its data (in Python, with the same parser the
-- queries use), then labels the table, stores the configuration and moves SELECT to the engine.
-- Any error leaves everything as it was.
-- Named _mark_perturbed and _mark_perturbed_table before 'perturbed' became the row-level level's
-- name alone: dropped on upgrade.
DROP PROCEDURE IF EXISTS diffix._mark_perturbed_table(text, text, jsonb);
DROP FUNCTION IF EXISTS diffix._mark_perturbed(oid, text, jsonb);
CREATE OR REPLACE FUNCTION diffix._mark_cellkey(relid oid, method text, config jsonb)
RETURNS text
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.cellkey.config as cellkey_config
return cellkey_config.mark(plpy, relid, method, config)
$python$;
REVOKE ALL ON FUNCTION diffix._mark_cellkey(oid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._mark_cellkey(oid, text, jsonb) TO PUBLIC;

-- Configures a table and reports the summary; errors are re-raised without PL/Python's
-- "plpy.Error: " prefix.
CREATE OR REPLACE PROCEDURE diffix._mark_cellkey_table(table_name text, method text, config jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
  summary text;
BEGIN
  summary := diffix._mark_cellkey(diffix._resolve_table(table_name), method, config);
  RAISE NOTICE '%', summary;
--@reraise
END
$$;

CREATE OR REPLACE PROCEDURE diffix.mark_tbe(table_name text, config jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._mark_cellkey_table(table_name, 'tbe', config);
END
$$;

CREATE OR REPLACE PROCEDURE diffix.mark_laplace(table_name text, config jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._mark_cellkey_table(table_name, 'laplace', config);
END
$$;

-- Perturbed tables with their method and non-secret parameters (administrators only).
CREATE OR REPLACE FUNCTION diffix.show_perturbations()
RETURNS TABLE (table_name text, method text, summary text, configured_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('see perturbation configurations');
  RETURN QUERY
  SELECT p.relid::regclass::text, p.method,
         CASE p.method
           WHEN 'tbe' THEN format('record key %s, tiebreaker %s, bigN %s, smallN %s, smallC %s, '
                                  'scope keys %s%s',
                                  p.config ->> 'record_key_name', p.config ->> 'value_tiebreaker_name',
                                  p.config ->> 'bigN', p.config ->> 'smallN', p.config ->> 'smallC',
                                  CASE WHEN p.config ? 'primitive_scope_key_declarations'
                                       THEN 'on' ELSE 'off' END,
                                  CASE WHEN (p.config ->> 'use_additive_scope_perturbation')::boolean
                                       THEN ' (additive)' ELSE '' END)
           ELSE format('scale %s', p.config ->> 'scale') END,
         p.configured_at
  FROM diffix.perturbation_configs p
  ORDER BY 1;
END
$$;
REVOKE ALL ON FUNCTION diffix.show_perturbations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix.show_perturbations() TO PUBLIC;

-- The cell key of a group of records: the sum of their keys mod bigN. bigN is an argument (the
-- aggregate cannot look up a table's configuration per row); take it from the configuration,
-- e.g. diffix.tbe_cell_key(record_key, 1766976779). Keys must be in [0, bigN); NULLs are skipped.
CREATE OR REPLACE FUNCTION diffix._tbe_bad_key(record_key bigint, big_n bigint) RETURNS numeric[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF big_n IS NULL OR big_n <= 0 THEN
    RAISE EXCEPTION 'bigN must be a positive integer, got %', big_n
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RAISE EXCEPTION 'record key % is outside [0, bigN=%)', record_key, big_n
    USING ERRCODE = 'invalid_parameter_value';
END
$$;

CREATE OR REPLACE FUNCTION diffix._tbe_key_step(state numeric[], record_key bigint, big_n bigint)
RETURNS numeric[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN record_key IS NULL THEN state
    WHEN big_n IS NULL OR big_n OPERATOR(pg_catalog.<=) 0 OR record_key OPERATOR(pg_catalog.<) 0
         OR record_key OPERATOR(pg_catalog.>=) big_n THEN diffix._tbe_bad_key(record_key, big_n)
    ELSE ARRAY[COALESCE(state[1], 0) OPERATOR(pg_catalog.+) record_key, big_n]::numeric[] END
$$;

CREATE OR REPLACE FUNCTION diffix._tbe_key_final(state numeric[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (state[1] OPERATOR(pg_catalog.%) state[2])::bigint;

CREATE OR REPLACE AGGREGATE diffix.tbe_cell_key(bigint, bigint) (
  sfunc = diffix._tbe_key_step, stype = numeric[], finalfunc = diffix._tbe_key_final);

-- The perturbed count max(0, n + p) of a cell with n records and cell key `key` under the
-- table's configuration. With scope keys on, pass the scope key (default 1: the grand total's
-- scope). It reveals the p-matrix, so only administrators and direct-level roles may call it.
CREATE OR REPLACE FUNCTION diffix._tbe_perturb(n bigint, key bigint, table_name regclass,
                                               scope_key bigint)
RETURNS bigint
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.cellkey.config
return config.perturb_count(plpy, n, key, table_name, scope_key)
$python$;
ALTER FUNCTION diffix._tbe_perturb(bigint, bigint, regclass, bigint) OWNER TO diffix_engine;

CREATE OR REPLACE FUNCTION diffix.tbe_perturb(n bigint, key bigint, table_name regclass,
                                              scope_key bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN diffix._tbe_perturb(n, key, table_name, scope_key);
--@reraise
END
$$;
-- Earlier installs had the PL/Python function under this name, owned by the engine.
ALTER FUNCTION diffix.tbe_perturb(bigint, bigint, regclass, bigint) OWNER TO CURRENT_USER;

-- The declared range name of a numeric value of a field of a TBE table (NULL: the sentinel '').
-- Inside diffix.query_json write diffix.tbe_range(column): the engine turns it into this (or an
-- equivalent CASE expression) for the column's field and the queried table.
CREATE OR REPLACE FUNCTION diffix._tbe_range(value numeric, field text, table_name regclass)
RETURNS text
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.cellkey.config
return config.range_label(plpy, value, field, table_name)
$python$;
ALTER FUNCTION diffix._tbe_range(numeric, text, regclass) OWNER TO diffix_engine;

CREATE OR REPLACE FUNCTION diffix.tbe_range(value numeric, field text, table_name regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN diffix._tbe_range(value, field, table_name);
--@reraise
END
$$;
-- (earlier installs: the PL/Python function, owned by the engine)
ALTER FUNCTION diffix.tbe_range(numeric, text, regclass) OWNER TO CURRENT_USER;

-- float4/float8 columns (compared with the float nearest each range bound, as `col <= 39.99`).
CREATE OR REPLACE FUNCTION diffix._tbe_range(value double precision, field text,
                                            table_name regclass)
RETURNS text
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.cellkey.config
return config.range_label(plpy, value, field, table_name)
$python$;
ALTER FUNCTION diffix._tbe_range(double precision, text, regclass) OWNER TO diffix_engine;

CREATE OR REPLACE FUNCTION diffix.tbe_range(value double precision, field text, table_name regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN diffix._tbe_range(value, field, table_name);
--@reraise
END
$$;
-- (earlier installs: the PL/Python function, owned by the engine)
ALTER FUNCTION diffix.tbe_range(double precision, text, regclass) OWNER TO CURRENT_USER;

CREATE OR REPLACE FUNCTION diffix.tbe_range(value anyelement) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'diffix.tbe_range(column) only works inside diffix.query_json'
    USING ERRCODE = 'feature_not_supported',
          HINT = 'outside diffix.query_json write diffix.tbe_range(column, ''FIELD'', ''table'')';
END
$$;

