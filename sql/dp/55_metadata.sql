-- DP metadata declared by administrators, never derived from the data (docs/dp.md): per table the
-- most rows one privacy unit contributes (in all, or per group and groups per unit), per column
-- clamping bounds (sums, averages, deviations, quantiles) and an optional domain of grouping
-- values (released without partition selection).
-- Rows go with the table's personal label (foreign key); relabeling the table removes them
-- (registered in diffix.label_metadata).

CREATE TABLE IF NOT EXISTS diffix.dp_tables (
  relid oid PRIMARY KEY REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  max_contributions integer NOT NULL DEFAULT 1 CHECK (max_contributions BETWEEN 1 AND 100000)
);
-- Per-partition bounds (both or neither, set_dp_bounds_per_partition); when set they replace
-- max_contributions. Added to tables of earlier installations.
ALTER TABLE diffix.dp_tables ALTER COLUMN max_contributions SET DEFAULT 1;
ALTER TABLE diffix.dp_tables
  ADD COLUMN IF NOT EXISTS max_groups_per_unit integer
    CHECK (max_groups_per_unit BETWEEN 1 AND 100000),
  ADD COLUMN IF NOT EXISTS max_rows_per_group integer
    CHECK (max_rows_per_group BETWEEN 1 AND 100000);

CREATE TABLE IF NOT EXISTS diffix.dp_columns (
  relid oid NOT NULL REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  attnum int2 NOT NULL,
  lower_bound double precision,
  upper_bound double precision,
  domain text[],
  PRIMARY KEY (relid, attnum),
  CHECK ((lower_bound IS NULL) = (upper_bound IS NULL)),
  CHECK (lower_bound < upper_bound)
);
-- Bounds and domains are part of what an answer means (docs/dp.md): everyone may read them.
REVOKE ALL ON diffix.dp_tables, diffix.dp_columns FROM PUBLIC;
GRANT SELECT ON diffix.dp_tables, diffix.dp_columns TO PUBLIC;

CALL diffix._register_label_metadata('dp_tables', 'personal', 'relid');
CALL diffix._register_label_metadata('dp_columns', 'personal', 'relid');

-- The personal table and, unless column_name is NULL, the column's attnum; clear errors otherwise.
CREATE OR REPLACE FUNCTION diffix._dp_target(relid oid, column_name text, action text)
RETURNS int2
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  found int2;
BEGIN
  PERFORM diffix._require_admin(action);
  IF NOT EXISTS (SELECT FROM diffix.table_labels l WHERE l.relid = _dp_target.relid
                 AND l.label = 'personal') THEN
    RAISE EXCEPTION 'table % is not personal', relid::regclass
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'DP metadata describes personal tables: CALL diffix.mark_personal(table, aid) first';
  END IF;
  IF column_name IS NULL THEN
    RETURN NULL;
  END IF;
  found := diffix._column_attnum(relid, column_name);
  IF EXISTS (SELECT FROM diffix.column_labels c WHERE c.relid = _dp_target.relid
             AND c.attnum = found AND c.label = 'aid') THEN
    RAISE EXCEPTION 'column "%" is the AID column of %', column_name, relid::regclass
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'the AID identifies the privacy unit; it has no bounds or domain';
  END IF;
  RETURN found;
END
$$;

CREATE OR REPLACE FUNCTION diffix._set_dp_bounds(
  relid oid, column_name text, lower_bound double precision, upper_bound double precision)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  target int2 := diffix._dp_target(relid, column_name, 'set DP bounds');
  kind "char";
BEGIN
  IF column_name IS NULL THEN
    RAISE EXCEPTION 'column name must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT t.typcategory INTO kind FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  WHERE a.attrelid = relid AND a.attnum = target;
  IF kind <> 'N' THEN
    RAISE EXCEPTION 'column "%" of % is not numeric', column_name, relid::regclass
      USING ERRCODE = 'datatype_mismatch',
            HINT = 'bounds apply to the numeric columns of sums, averages, deviations and quantiles';
  END IF;
  IF (lower_bound IS NULL) <> (upper_bound IS NULL) THEN
    RAISE EXCEPTION 'give both bounds, or NULL for both to remove them'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF lower_bound IS NOT NULL AND NOT (lower_bound > '-Infinity' AND upper_bound < 'Infinity'
                                      AND lower_bound < upper_bound) THEN
    RAISE EXCEPTION 'bounds [%, %] are not finite with lower < upper', lower_bound, upper_bound
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'e.g. CALL diffix.set_dp_bounds(''accounts'', ''balance'', 0, 100000)';
  END IF;
  INSERT INTO diffix.dp_columns (relid, attnum, lower_bound, upper_bound)
  VALUES (relid, target, lower_bound, upper_bound)
  ON CONFLICT ON CONSTRAINT dp_columns_pkey DO UPDATE
    SET lower_bound = EXCLUDED.lower_bound, upper_bound = EXCLUDED.upper_bound;
  DELETE FROM diffix.dp_columns c WHERE c.lower_bound IS NULL AND c.domain IS NULL;
END
$$;

CREATE OR REPLACE FUNCTION diffix._set_dp_max_contributions(relid oid, contributions integer)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._dp_target(relid, NULL, 'set DP contribution limits');
  IF contributions IS NULL OR contributions < 1 OR contributions > 100000 THEN
    RAISE EXCEPTION 'max_contributions must be between 1 and 100000, not %', contributions
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'the most rows one privacy unit contributes to an answer (1 for one row per person)';
  END IF;
  -- the L1 bound replaces per-partition bounds
  INSERT INTO diffix.dp_tables (relid, max_contributions) VALUES (relid, contributions)
  ON CONFLICT ON CONSTRAINT dp_tables_pkey DO UPDATE
    SET max_contributions = EXCLUDED.max_contributions, max_groups_per_unit = NULL,
        max_rows_per_group = NULL;
END
$$;

CREATE OR REPLACE FUNCTION diffix._set_dp_bounds_per_partition(
  relid oid, max_groups_per_unit integer, max_rows_per_group integer)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._dp_target(relid, NULL, 'set DP contribution limits');
  IF (max_groups_per_unit IS NULL) <> (max_rows_per_group IS NULL) THEN
    RAISE EXCEPTION 'give both per-partition bounds, or NULL for both to remove them'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF max_groups_per_unit IS NOT NULL AND NOT (max_groups_per_unit BETWEEN 1 AND 100000
                                              AND max_rows_per_group BETWEEN 1 AND 100000) THEN
    RAISE EXCEPTION 'max_groups_per_unit and max_rows_per_group must be between 1 and 100000, not % and %',
      max_groups_per_unit, max_rows_per_group
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'the most groups one privacy unit is in, and its most rows in one group';
  END IF;
  INSERT INTO diffix.dp_tables (relid, max_groups_per_unit, max_rows_per_group)
  VALUES (relid, max_groups_per_unit, max_rows_per_group)
  ON CONFLICT ON CONSTRAINT dp_tables_pkey DO UPDATE
    SET max_groups_per_unit = EXCLUDED.max_groups_per_unit,
        max_rows_per_group = EXCLUDED.max_rows_per_group;
END
$$;
REVOKE ALL ON FUNCTION diffix._set_dp_bounds_per_partition(oid, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._set_dp_bounds_per_partition(oid, integer, integer) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix._set_dp_domain(relid oid, column_name text, vals text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  target int2 := diffix._dp_target(relid, column_name, 'set DP domains');
  column_type text;
BEGIN
  IF column_name IS NULL THEN
    RAISE EXCEPTION 'column name must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF vals IS NOT NULL THEN
    IF cardinality(vals) = 0 OR cardinality(vals) > 10000 THEN
      RAISE EXCEPTION 'a domain has 1 to 10000 values, not %', cardinality(vals)
        USING ERRCODE = 'invalid_parameter_value', HINT = 'pass NULL to remove the domain';
    END IF;
    IF array_position(vals, NULL) IS NOT NULL THEN
      RAISE EXCEPTION 'a domain cannot contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT count(DISTINCT v) FROM unnest(vals) v) <> cardinality(vals) THEN
      RAISE EXCEPTION 'the domain lists a value twice' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO column_type FROM pg_attribute a
    WHERE a.attrelid = relid AND a.attnum = target;
    -- every value must be one of the column's type (raises the cast's own error otherwise)
    EXECUTE format('SELECT CAST($1 AS %s[])', column_type) USING vals;
  END IF;
  INSERT INTO diffix.dp_columns (relid, attnum, domain) VALUES (relid, target, vals)
  ON CONFLICT ON CONSTRAINT dp_columns_pkey DO UPDATE SET domain = EXCLUDED.domain;
  DELETE FROM diffix.dp_columns c WHERE c.lower_bound IS NULL AND c.domain IS NULL;
END
$$;
REVOKE ALL ON FUNCTION diffix._set_dp_bounds(oid, text, double precision, double precision),
  diffix._set_dp_max_contributions(oid, integer), diffix._set_dp_domain(oid, text, text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._set_dp_bounds(oid, text, double precision, double precision),
  diffix._set_dp_max_contributions(oid, integer), diffix._set_dp_domain(oid, text, text[])
  TO PUBLIC;

CREATE OR REPLACE PROCEDURE diffix.set_dp_bounds(
  table_name text, column_name text, lower_bound double precision, upper_bound double precision)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._set_dp_bounds(diffix._resolve_table(table_name), column_name, lower_bound,
                               upper_bound);
END;

CREATE OR REPLACE PROCEDURE diffix.set_dp_max_contributions(table_name text, contributions integer)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._set_dp_max_contributions(diffix._resolve_table(table_name), contributions);
END;

CREATE OR REPLACE PROCEDURE diffix.set_dp_bounds_per_partition(
  table_name text, max_groups_per_unit integer, max_rows_per_group integer)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._set_dp_bounds_per_partition(diffix._resolve_table(table_name),
                                             max_groups_per_unit, max_rows_per_group);
END;

DROP PROCEDURE IF EXISTS diffix.set_dp_domain(text, text, text[]);
-- Any array (text[], integer[], date[], ...): stored as the values' text.
CREATE OR REPLACE PROCEDURE diffix.set_dp_domain(table_name text, column_name text, vals anyarray)
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM diffix._set_dp_domain(diffix._resolve_table(table_name), column_name,
                                (SELECT array_agg(v::text) FROM unnest(vals) v));
END
$$;
