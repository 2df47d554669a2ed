-- The unique-unit shortcut declared by an administrator (docs/dp.md, docs/scale-out.md): every
-- privacy unit has at most one row in the table. The DP planner then bounds no contributions (one
-- row per unit, nothing to rank). It takes the shortcut on its own only when a unique index on the
-- AID column proves it; a partitioned table over foreign partitions (a sharded table) can have no
-- such index, so an administrator who knows it (e.g. each shard has a unique index) declares it.
-- Nothing checks the data: a wrong declaration lets a unit count more than once, so only an
-- administrator may make it, and it goes with the table's personal label.

CREATE TABLE IF NOT EXISTS diffix.dp_unique_units (
  relid oid PRIMARY KEY REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  declared_by name NOT NULL,
  declared_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- part of what an answer means, like the other DP metadata: everyone may read it
REVOKE ALL ON diffix.dp_unique_units FROM PUBLIC;
GRANT SELECT ON diffix.dp_unique_units TO PUBLIC;

CALL diffix._register_label_metadata('dp_unique_units', 'personal', 'relid');

CREATE OR REPLACE FUNCTION diffix._declare_dp_unique_units(relid oid, is_unique boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._dp_target(relid, NULL, 'declare unique privacy units');
  IF is_unique IS NULL THEN
    RAISE EXCEPTION 'is_unique must be true or false'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF is_unique THEN
    INSERT INTO diffix.dp_unique_units (relid, declared_by) VALUES (relid, session_user)
    ON CONFLICT ON CONSTRAINT dp_unique_units_pkey DO UPDATE
      SET declared_by = EXCLUDED.declared_by, declared_at = EXCLUDED.declared_at;
  ELSE
    DELETE FROM diffix.dp_unique_units u WHERE u.relid = _declare_dp_unique_units.relid;
  END IF;
END
$$;
REVOKE ALL ON FUNCTION diffix._declare_dp_unique_units(oid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._declare_dp_unique_units(oid, boolean) TO PUBLIC;

CREATE OR REPLACE PROCEDURE diffix.declare_dp_unique_units(table_name text,
                                                           is_unique boolean DEFAULT true)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._declare_dp_unique_units(diffix._resolve_table(table_name), is_unique);
END;

-- One row per declared setting, in the style of show_labels(); here, after the tables it reads.
CREATE OR REPLACE FUNCTION diffix.show_dp_metadata()
RETURNS TABLE (objtype text, objname text, setting text, value text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT objtype, objname, setting, value FROM (
    SELECT 'table' AS objtype, l.relid::regclass::text AS objname, 'max_contributions' AS setting,
           COALESCE(t.max_contributions, 1)::text
           || CASE WHEN t.relid IS NULL THEN ' (default)' ELSE '' END AS value
    FROM diffix.table_labels l LEFT JOIN diffix.dp_tables t ON t.relid = l.relid
    WHERE l.label = 'personal'
    UNION ALL
    SELECT 'table', u.relid::regclass::text, 'unique_units',
           format('true (declared by %s)', u.declared_by)
    FROM diffix.dp_unique_units u
    UNION ALL
    SELECT 'table', t.relid::regclass::text, 'max_groups_per_unit', t.max_groups_per_unit::text
    FROM diffix.dp_tables t WHERE t.max_groups_per_unit IS NOT NULL
    UNION ALL
    SELECT 'table', t.relid::regclass::text, 'max_rows_per_group', t.max_rows_per_group::text
    FROM diffix.dp_tables t WHERE t.max_rows_per_group IS NOT NULL
    UNION ALL
    SELECT 'column', c.relid::regclass::text || '.' || quote_ident(a.attname), 'bounds',
           format('[%s, %s]', c.lower_bound, c.upper_bound)
    FROM diffix.dp_columns c JOIN pg_attribute a ON a.attrelid = c.relid AND a.attnum = c.attnum
    WHERE c.lower_bound IS NOT NULL AND NOT a.attisdropped
    UNION ALL
    SELECT 'column', c.relid::regclass::text || '.' || quote_ident(a.attname), 'domain',
           c.domain::text
    FROM diffix.dp_columns c JOIN pg_attribute a ON a.attrelid = c.relid AND a.attnum = c.attnum
    WHERE c.domain IS NOT NULL AND NOT a.attisdropped
  ) metadata
  ORDER BY objtype DESC, objname, setting
$$;
