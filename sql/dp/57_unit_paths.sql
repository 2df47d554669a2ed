-- DP unit paths (docs/dp.md, "Joins on the privacy unit"): an administrator declares that the AID
-- column of a personal table identifies the same privacy unit as the AID column of another
-- personal table (transactions.cid is customers.id), so that a DP query may join the two on
-- those columns. Declared, never derived from the data; rows go with both tables' personal labels.

CREATE TABLE IF NOT EXISTS diffix.dp_unit_paths (
  relid oid PRIMARY KEY REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  attnum int2 NOT NULL,
  target_relid oid NOT NULL REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  target_attnum int2 NOT NULL,
  CHECK (relid <> target_relid)
);
-- Part of what an answer means, like the other DP metadata: everyone may read it.
REVOKE ALL ON diffix.dp_unit_paths FROM PUBLIC;
GRANT SELECT ON diffix.dp_unit_paths TO PUBLIC;

-- Relabeling either table removes the path.
CALL diffix._register_label_metadata('dp_unit_paths', 'personal', 'relid', 'target_relid');

-- The attnum of the single AID column of a personal table, or a clear error.
CREATE OR REPLACE FUNCTION diffix._dp_unit_column(relid oid, column_name text)
RETURNS int2
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  found int2;
BEGIN
  IF NOT EXISTS (SELECT FROM diffix.table_labels l WHERE l.relid = _dp_unit_column.relid
                 AND l.label = 'personal') THEN
    RAISE EXCEPTION 'table % is not personal', relid::regclass
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'unit paths join personal tables: CALL diffix.mark_personal(table, aid) first';
  END IF;
  found := diffix._column_attnum(relid, column_name);
  IF NOT EXISTS (SELECT FROM diffix.column_labels c WHERE c.relid = _dp_unit_column.relid
                 AND c.attnum = found AND c.label = 'aid')
     OR (SELECT count(*) FROM diffix.column_labels c WHERE c.relid = _dp_unit_column.relid
         AND c.label = 'aid') <> 1 THEN
    RAISE EXCEPTION 'column "%" is not the single AID column of %', column_name, relid::regclass
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'a unit path links the AID columns of two personal tables with one AID each';
  END IF;
  RETURN found;
END
$$;

CREATE OR REPLACE FUNCTION diffix._set_dp_unit_path(
  relid oid, column_name text, target_relid oid, target_column text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  source int2;
  target int2;
BEGIN
  PERFORM diffix._require_admin('set DP unit paths');
  IF target_relid IS NULL AND target_column IS NULL THEN  -- removes the path
    PERFORM diffix._dp_unit_column(relid, column_name);
    DELETE FROM diffix.dp_unit_paths p WHERE p.relid = _set_dp_unit_path.relid;
    RETURN;
  END IF;
  source := diffix._dp_unit_column(relid, column_name);
  target := diffix._dp_unit_column(target_relid, target_column);
  IF relid = target_relid THEN
    RAISE EXCEPTION 'a unit path links two different tables'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
      WHERE a.attrelid = relid AND a.attnum = source)
     IS DISTINCT FROM (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
                       WHERE a.attrelid = target_relid AND a.attnum = target) THEN
    RAISE EXCEPTION 'the AID columns of % and % have different types', relid::regclass,
      target_relid::regclass
      USING ERRCODE = 'datatype_mismatch',
            HINT = 'a unit path joins equal values of the same type';
  END IF;
  -- no cycles: the target's own path must not lead back to this table
  IF EXISTS (
    WITH RECURSIVE reach(r, depth) AS (
      SELECT target_relid, 0
      UNION ALL
      SELECT p.target_relid, reach.depth + 1 FROM diffix.dp_unit_paths p
      JOIN reach ON p.relid = reach.r WHERE reach.depth < 100)
    SELECT FROM reach WHERE r = _set_dp_unit_path.relid) THEN
    RAISE EXCEPTION 'the unit path from % to % would make a cycle', relid::regclass,
      target_relid::regclass
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'declare each table''s path towards the one table of the unit, e.g. customers';
  END IF;
  INSERT INTO diffix.dp_unit_paths (relid, attnum, target_relid, target_attnum)
  VALUES (relid, source, target_relid, target)
  ON CONFLICT ON CONSTRAINT dp_unit_paths_pkey DO UPDATE
    SET attnum = EXCLUDED.attnum, target_relid = EXCLUDED.target_relid,
        target_attnum = EXCLUDED.target_attnum;
END
$$;
REVOKE ALL ON FUNCTION diffix._set_dp_unit_path(oid, text, oid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._set_dp_unit_path(oid, text, oid, text) TO PUBLIC;
REVOKE ALL ON FUNCTION diffix._dp_unit_column(oid, text) FROM PUBLIC;

-- CALL diffix.set_dp_unit_path('transactions', 'cid', 'customers', 'id'); NULL, NULL for the
-- target removes the path.
CREATE OR REPLACE PROCEDURE diffix.set_dp_unit_path(
  table_name text, column_name text, target_table text, target_column text)
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM diffix._set_dp_unit_path(
    diffix._resolve_table(table_name), column_name,
    CASE WHEN target_table IS NULL THEN NULL ELSE diffix._resolve_table(target_table) END,
    target_column);
END
$$;
