-- Table and column labels (pg_diffix's admin API). The public procedures run with the caller's
-- rights only to resolve names with the caller's search_path; the work happens in definer-rights
-- functions that take OIDs and check that the caller is an administrator.

-- Resolves a table name as the caller sees it, with a clear error when it does not exist.
CREATE OR REPLACE FUNCTION diffix._resolve_table(table_name text) RETURNS oid
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  relid oid;
BEGIN
  IF table_name IS NULL THEN
    RAISE EXCEPTION 'table name must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  relid := pg_catalog.to_regclass(table_name);
  IF relid IS NULL THEN
    RAISE EXCEPTION 'table "%" does not exist', table_name
      USING ERRCODE = 'undefined_table',
            HINT = 'check the name; schema-qualify it if it is not on your search_path';
  END IF;
  RETURN relid;
END
$$;

CREATE OR REPLACE FUNCTION diffix._column_attnum(relid oid, column_name text) RETURNS int2
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  found int2;
BEGIN
  SELECT a.attnum INTO found FROM pg_attribute a
  WHERE a.attrelid = relid AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
  IF found IS NULL THEN
    RAISE EXCEPTION 'column "%" does not exist in table %', column_name, relid::regclass
      USING ERRCODE = 'undefined_column';
  END IF;
  RETURN found;
END
$$;

CREATE OR REPLACE FUNCTION diffix._check_labelable(relid oid, label text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  kind "char";
  schema_name name;
  covering oid;
  refusal text;
BEGIN
  SELECT c.relkind, n.nspname INTO kind, schema_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relid;
  IF schema_name IN ('pg_catalog', 'information_schema', 'diffix') OR schema_name ~ '^pg_' THEN
    RAISE EXCEPTION '% is a system table and cannot be labeled', relid::regclass
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- A partition or parent of a personal table is covered by that table's label (44_partition_trees.sql).
  SELECT t.personal INTO covering FROM diffix._personal_tree_members() t
  WHERE t.relid = _check_labelable.relid LIMIT 1;
  IF covering IS NOT NULL THEN
    RAISE EXCEPTION '% holds rows of personal table % and takes no label of its own',
      relid::regclass, covering::regclass USING ERRCODE = 'invalid_parameter_value',
      HINT = 'the label of the partitioned table covers its partitions';
  END IF;
  IF label = 'personal' AND kind = 'p' THEN  -- sharded personal tables (docs/scale-out.md)
    refusal := diffix._partition_tree_refusal(relid);
    IF refusal IS NOT NULL THEN
      RAISE EXCEPTION '% cannot be marked personal: %', relid::regclass, refusal
        USING ERRCODE = 'feature_not_supported';
    END IF;
  ELSIF label = 'personal' THEN
    IF kind NOT IN ('r', 'm') THEN
      RAISE EXCEPTION '% is not a plain table, materialized view or partitioned table and cannot be marked personal',
        relid::regclass USING ERRCODE = 'wrong_object_type',
        HINT = 'mark the underlying table personal instead';
    END IF;
    IF EXISTS (SELECT FROM pg_inherits WHERE inhrelid = relid OR inhparent = relid) THEN
      RAISE EXCEPTION '% uses table inheritance, which anonymization does not support',
        relid::regclass USING ERRCODE = 'feature_not_supported';
    END IF;
  ELSIF kind NOT IN ('r', 'p', 'm', 'v', 'f') THEN
    RAISE EXCEPTION '% is not a table or view', relid::regclass USING ERRCODE = 'wrong_object_type';
  END IF;
END
$$;

-- When a table's label changes, the metadata that went with its old label goes (every table
-- registered in diffix.label_metadata for another label than the new one, sql/core/10_schema.sql):
-- a table marked personal again starts without the DP bounds of before, a cell-key table
-- relabeled personal keeps no configuration. Dropping or unmarking the table removes them too
-- (their foreign keys).
CREATE OR REPLACE FUNCTION diffix._forget_on_relabel() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  registered record;
BEGIN
  FOR registered IN SELECT m.metadata_table, m.relid_columns FROM diffix.label_metadata m
                    WHERE m.label <> NEW.label ORDER BY m.metadata_table LOOP
    EXECUTE format('DELETE FROM diffix.%I WHERE %s', registered.metadata_table,
                   (SELECT string_agg(format('%I = $1', c), ' OR ')
                    FROM unnest(registered.relid_columns) c))
      USING NEW.relid;
  END LOOP;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION diffix._forget_on_relabel() FROM PUBLIC;
DROP TRIGGER IF EXISTS forget_on_relabel ON diffix.table_labels;
CREATE TRIGGER forget_on_relabel AFTER UPDATE OF label ON diffix.table_labels
  FOR EACH ROW EXECUTE FUNCTION diffix._forget_on_relabel();

CREATE OR REPLACE FUNCTION diffix._mark_personal(relid oid, aid_columns text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  aid_column text;
  aid_attnum int2;
  attnums int2[] := '{}';
  aid_type oid;
  partition oid;
  readers text;
BEGIN
  PERFORM diffix._require_admin('label tables');
  PERFORM diffix._check_labelable(relid, 'personal');
  IF aid_columns IS NULL OR cardinality(aid_columns) = 0 THEN
    RAISE EXCEPTION 'a personal table needs at least one AID column'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'CALL diffix.mark_personal(''table'', ''aid_column'', ...)';
  END IF;
  FOREACH aid_column IN ARRAY aid_columns LOOP
    aid_attnum := diffix._column_attnum(relid, aid_column);
    IF aid_attnum = ANY (attnums) THEN
      RAISE EXCEPTION 'column "%" is listed twice', aid_column USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT a.atttypid INTO aid_type FROM pg_attribute a
    WHERE a.attrelid = relid AND a.attnum = aid_attnum;
    IF aid_type NOT IN ('int4'::regtype, 'int8'::regtype, 'text'::regtype, 'varchar'::regtype) THEN
      RAISE EXCEPTION 'column "%" has type %, which cannot be an AID', aid_column, aid_type::regtype
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'AID columns must be integer, bigint, text or varchar';
    END IF;
    attnums := attnums || aid_attnum;
  END LOOP;

  INSERT INTO diffix.table_labels (relid, label) VALUES (relid, 'personal')
  ON CONFLICT ON CONSTRAINT table_labels_pkey DO UPDATE SET label = 'personal';
  DELETE FROM diffix.column_labels c
  WHERE c.relid = _mark_personal.relid AND (c.label = 'aid' OR c.attnum = ANY (attnums));
  INSERT INTO diffix.column_labels (relid, attnum, label)
  SELECT _mark_personal.relid, unnest(attnums), 'aid';

  -- Anonymized roles read personal tables only through the engine, and not through the views
  -- over them either (46_derived_relations.sql): their grants are revoked, with a NOTICE. They
  -- write, truncate, reference or trigger on them neither (45_exposures.sql).
  EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, diffix_anonymized_trusted, '
                 'diffix_anonymized_untrusted, diffix_anonymized_dp CASCADE', relid::regclass);
  SELECT string_agg(DISTINCT format('%s from %s', e.relation_name, e.grantee), ', ') INTO readers
  FROM diffix._derived_exposures() e WHERE e.via IN ('table grant', 'column grant');
  PERFORM diffix._revoke_exposures();
  IF readers IS NOT NULL THEN
    RAISE NOTICE 'revoked access to views over personal rows: %', readers
      USING HINT = 'a view reads with its owner''s privileges; analysts query personal tables '
                   'through diffix.query_json';
  END IF;
  -- What no REVOKE takes back: an analyst owning the table, or a foreign key or trigger it made
  -- with a grant it held. The call fails (the exposing-grants trigger would refuse the GRANT to
  -- the engine below anyway) and leaves the table as it was.
  SELECT string_agg(format('%s: %s', e.grantee, COALESCE(e.privileges, 'owner')), '; ')
    INTO readers
  FROM diffix._personal_table_exposures() e
  WHERE e.relid = _mark_personal.relid AND e.via IN ('ownership', 'foreign key', 'trigger');
  IF readers IS NOT NULL THEN
    RAISE EXCEPTION '% cannot be marked personal: it would stay open to anonymized roles: %',
      relid::regclass, readers
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'drop the constraint or trigger, or give its table, function or the table '
                   'itself an owner of the direct level, first';
  END IF;
  EXECUTE format('GRANT SELECT ON %s TO diffix_engine', relid::regclass);
  -- The engine reads a table partitioned on its AID partition by partition (docs/scale-out.md).
  FOR partition IN SELECT t.relid FROM pg_partition_tree(_mark_personal.relid) t
                   WHERE t.relid <> _mark_personal.relid LOOP
    EXECUTE format('GRANT SELECT ON %s TO diffix_engine', partition::regclass);
  END LOOP;
END
$$;

-- Taking the label off a personal (or cell-key) table ends its protection: the next ordinary
-- GRANT (ON ALL TABLES IN SCHEMA ...) hands its raw rows out. So mark_public and unmark_table
-- refuse such a table unless called with force => true; with force they warn what goes with the
-- label and leave a check_security finding until an administrator acknowledges it.
CREATE TABLE IF NOT EXISTS diffix.unlabeled_tables (
  id bigserial PRIMARY KEY,
  table_name text NOT NULL,
  previous_label text NOT NULL,
  new_label text,
  dropped text NOT NULL,
  changed_by name NOT NULL,
  session_role name NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  acknowledged_by name,
  acknowledged_at timestamptz
);
-- The label 'cellkey' was called 'perturbed' before (sql/core/10_schema.sql): its history too.
UPDATE diffix.unlabeled_tables SET previous_label = 'cellkey' WHERE previous_label = 'perturbed';
-- Like the labels themselves, everyone may read what happened to them.
REVOKE ALL ON diffix.unlabeled_tables FROM PUBLIC;
GRANT SELECT ON diffix.unlabeled_tables TO PUBLIC;

-- What goes with a table's protected label, in words; NULL for other tables.
CREATE OR REPLACE FUNCTION diffix._protection_of(relid oid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  table_label text;
  column_label text;
  parts text[] := '{}';
  names text;
BEGIN
  SELECT p.label INTO table_label FROM diffix.protected_tables p
  WHERE p.relid = _protection_of.relid;
  IF table_label IS NULL THEN
    RETURN NULL;
  END IF;
  FOREACH column_label IN ARRAY ARRAY['aid', 'not_filterable'] LOOP
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO names
    FROM diffix.column_labels c
    JOIN pg_attribute a ON a.attrelid = c.relid AND a.attnum = c.attnum
    WHERE c.relid = _protection_of.relid AND c.label = column_label;
    IF names IS NOT NULL THEN
      parts := parts || format('%s labels (%s)',
                               CASE column_label WHEN 'aid' THEN 'AID column' ELSE 'not-filterable' END,
                               names);
    END IF;
  END LOOP;
  IF EXISTS (SELECT FROM diffix.dp_tables t WHERE t.relid = _protection_of.relid) THEN
    parts := parts || 'DP contributions per person'::text;
  END IF;
  SELECT string_agg(quote_ident(a.attname) || CASE WHEN d.lower_bound IS NOT NULL
                                                   AND d.domain IS NOT NULL THEN ' bounds, domain'
                                              WHEN d.lower_bound IS NOT NULL THEN ' bounds'
                                              ELSE ' domain' END, ', ' ORDER BY a.attnum)
    INTO names
  FROM diffix.dp_columns d JOIN pg_attribute a ON a.attrelid = d.relid AND a.attnum = d.attnum
  WHERE d.relid = _protection_of.relid;
  IF names IS NOT NULL THEN
    parts := parts || format('DP bounds/domains (%s)', names);
  END IF;
  IF EXISTS (SELECT FROM diffix.perturbation_configs p WHERE p.relid = _protection_of.relid) THEN
    parts := parts || 'its cell-key/Laplace configuration'::text;
  END IF;
  parts := parts || 'the refusal of grants that expose it to analysts'::text;
  RETURN array_to_string(parts, '; ');
END
$$;

-- Called before a table's label is changed or removed: refuses to take protection away without
-- force; with force warns and records the finding.
CREATE OR REPLACE FUNCTION diffix._release_protection(relid oid, force boolean, new_label text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  previous text := (SELECT l.label FROM diffix.table_labels l
                    WHERE l.relid = _release_protection.relid);
  dropped text := diffix._protection_of(relid);
  verb text := CASE WHEN new_label IS NULL THEN 'unmark' ELSE 'mark ' || new_label END;
  call text := CASE WHEN new_label IS NULL THEN 'unmark_table' ELSE 'mark_' || new_label END;
BEGIN
  IF dropped IS NULL THEN
    RETURN;
  END IF;
  IF force IS NOT TRUE THEN
    RAISE EXCEPTION '% is a % table: % it only with force => true', relid::regclass, previous,
      verb
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('this would drop: %s', dropped),
            HINT = format('if that is meant: CALL diffix.%s(%L, force => true)', call,
                          relid::regclass::text);
  END IF;
  RAISE WARNING '% table % is no longer protected', previous, relid::regclass
    USING DETAIL = format('dropped: %s', dropped),
          HINT = 'check_security reports it until an administrator calls '
                 'diffix.acknowledge_finding';
  INSERT INTO diffix.unlabeled_tables (table_name, previous_label, new_label, dropped, changed_by,
                                       session_role)
  VALUES (relid::regclass::text, previous, new_label, dropped, diffix._invoking_role(),
          session_user);
END
$$;

DROP PROCEDURE IF EXISTS diffix.mark_public(text);
DROP PROCEDURE IF EXISTS diffix.unmark_table(text);
DROP FUNCTION IF EXISTS diffix._mark_public(oid);
DROP FUNCTION IF EXISTS diffix._unmark_table(oid);

CREATE OR REPLACE FUNCTION diffix._mark_public(relid oid, force boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('label tables');
  PERFORM diffix._check_labelable(relid, 'public');
  PERFORM diffix._release_protection(relid, force, 'public');
  PERFORM diffix._release_derived(relid, force);  -- a view over personal rows
  INSERT INTO diffix.table_labels (relid, label) VALUES (relid, 'public')
  ON CONFLICT ON CONSTRAINT table_labels_pkey DO UPDATE SET label = 'public';
  DELETE FROM diffix.column_labels c WHERE c.relid = _mark_public.relid;
  -- The engine joins public tables into anonymizing queries (after checking the analyst may read them).
  EXECUTE format('GRANT SELECT ON %s TO diffix_engine', relid::regclass);
END
$$;

CREATE OR REPLACE FUNCTION diffix._unmark_table(relid oid, force boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  revoked integer;
BEGIN
  PERFORM diffix._require_admin('label tables');
  IF NOT EXISTS (SELECT FROM diffix.table_labels l WHERE l.relid = _unmark_table.relid) THEN
    RAISE EXCEPTION 'table % has no label', relid::regclass USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM diffix._release_protection(relid, force, NULL);
  DELETE FROM diffix.table_labels l WHERE l.relid = _unmark_table.relid;
  EXECUTE format('REVOKE SELECT ON %s FROM diffix_engine', relid::regclass);
  -- A view over personal rows that was labeled public is protected again.
  revoked := diffix._revoke_exposures();
  IF revoked > 0 THEN
    RAISE NOTICE 'revoked % grant(s) through which anonymized roles read personal rows', revoked;
  END IF;
END
$$;

-- Ends the finding a forced unmark left, once an administrator has looked at the table.
CREATE OR REPLACE PROCEDURE diffix.acknowledge_finding(finding_id bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('acknowledge findings');
  UPDATE diffix.unlabeled_tables u
  SET acknowledged_by = diffix._invoking_role(), acknowledged_at = now()
  WHERE u.id = finding_id AND u.acknowledged_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no open finding %', finding_id
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'the fix column of diffix.check_security() names the finding''s number';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION diffix._set_filterable(relid oid, column_name text, filterable boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  column_attnum int2;
BEGIN
  PERFORM diffix._require_admin('label columns');
  column_attnum := diffix._column_attnum(relid, column_name);
  IF NOT EXISTS (SELECT FROM diffix.table_labels l
                 WHERE l.relid = _set_filterable.relid AND l.label = 'personal') THEN
    RAISE EXCEPTION 'table % is not marked personal', relid::regclass
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'filtering restrictions apply to personal tables; mark it with diffix.mark_personal first';
  END IF;
  IF EXISTS (SELECT FROM diffix.column_labels c WHERE c.relid = _set_filterable.relid
             AND c.attnum = column_attnum AND c.label = 'aid') THEN
    RAISE EXCEPTION 'column "%" is an AID column', column_name
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'AID columns can never be filtered on; no label is needed';
  END IF;
  IF filterable THEN
    DELETE FROM diffix.column_labels c
    WHERE c.relid = _set_filterable.relid AND c.attnum = column_attnum;
  ELSE
    INSERT INTO diffix.column_labels (relid, attnum, label)
    VALUES (relid, column_attnum, 'not_filterable')
    ON CONFLICT ON CONSTRAINT column_labels_pkey DO NOTHING;
  END IF;
END
$$;

REVOKE ALL ON FUNCTION diffix._mark_personal(oid, text[]), diffix._mark_public(oid, boolean),
  diffix._unmark_table(oid, boolean), diffix._set_filterable(oid, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._mark_personal(oid, text[]), diffix._mark_public(oid, boolean),
  diffix._unmark_table(oid, boolean), diffix._set_filterable(oid, text, boolean) TO PUBLIC;
REVOKE ALL ON FUNCTION diffix._release_protection(oid, boolean, text) FROM PUBLIC;

CREATE OR REPLACE PROCEDURE diffix.mark_personal(table_name text, VARIADIC aid_columns text[])
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._mark_personal(diffix._resolve_table(table_name), aid_columns);
END;

-- Without AID columns the variadic form would not match at all; say what is missing instead.
CREATE OR REPLACE PROCEDURE diffix.mark_personal(table_name text)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._mark_personal(diffix._resolve_table(table_name), '{}'::text[]);
END;

CREATE OR REPLACE PROCEDURE diffix.mark_public(table_name text, force boolean DEFAULT false)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._mark_public(diffix._resolve_table(table_name), force);
END;

CREATE OR REPLACE PROCEDURE diffix.unmark_table(table_name text, force boolean DEFAULT false)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._unmark_table(diffix._resolve_table(table_name), force);
END;

CREATE OR REPLACE PROCEDURE diffix.mark_not_filterable(table_name text, column_name text)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._set_filterable(diffix._resolve_table(table_name), column_name, false);
END;

CREATE OR REPLACE PROCEDURE diffix.mark_filterable(table_name text, column_name text)
LANGUAGE sql
BEGIN ATOMIC
  SELECT diffix._set_filterable(diffix._resolve_table(table_name), column_name, true);
END;

CREATE OR REPLACE FUNCTION diffix.show_labels()
RETURNS TABLE (objtype text, objname text, label text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT objtype, objname, label FROM (
    SELECT 1 AS sort, 'table' AS objtype, l.relid::regclass::text AS objname, l.label
    FROM diffix.table_labels l
    UNION ALL
    SELECT 2, 'column', c.relid::regclass::text || '.' || quote_ident(a.attname), c.label
    FROM diffix.column_labels c
    JOIN pg_attribute a ON a.attrelid = c.relid AND a.attnum = c.attnum
    UNION ALL  -- row-level perturbation for the perturbed level (sql/perturb)
    SELECT 1, 'table', m.relid::regclass::text,
           format('perturbed rows (view %I.%I)', m.view_schema, m.view_name)
    FROM diffix.microdata_tables m
    UNION ALL
    SELECT 2, 'column', m.relid::regclass::text || '.' || quote_ident(a.attname),
           CASE WHEN a.attnum = m.row_key_attnum THEN 'row key, ' ELSE '' END
             || COALESCE('perturb ' || mc.method, CASE WHEN a.attnum = m.row_key_attnum
                                                       THEN 'drop' END)
    FROM diffix.microdata_tables m
    JOIN pg_attribute a ON a.attrelid = m.relid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN diffix.microdata_columns mc ON mc.relid = m.relid AND mc.attnum = a.attnum
    WHERE mc.attnum IS NOT NULL OR a.attnum = m.row_key_attnum
    UNION ALL
    SELECT 3, 'role', quote_ident(r.rolname), substr(g.rolname, 8)
    FROM pg_auth_members m
    JOIN pg_roles g ON g.oid = m.roleid
    JOIN pg_roles r ON r.oid = m.member
    WHERE g.rolname IN ('diffix_direct', 'diffix_anonymized_trusted', 'diffix_anonymized_untrusted',
                        'diffix_anonymized_dp', 'diffix_perturbed')
  ) labels
  ORDER BY sort, objname, label
$$;
