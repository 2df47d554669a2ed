-- Guards that keep the security model true after installation, and the report of what is left.

-- Labels follow their tables: dropping a table or column removes its labels.
CREATE OR REPLACE FUNCTION diffix._forget_dropped_objects() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM diffix.table_labels l
  USING pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND l.relid = d.objid;
  DELETE FROM diffix.microdata_tables m
  USING pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND m.relid = d.objid;
  DELETE FROM diffix.copied_tables k
  USING pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND k.relid = d.objid;
  DELETE FROM diffix.column_labels c
  USING pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_class'::regclass AND d.objsubid > 0
    AND c.relid = d.objid AND c.attnum = d.objsubid;
END
$$;

-- Fingerprint of the privileges on every relation that is not personal or perturbed and reads no
-- personal rows. Taken before and after a GRANT, it tells whether the GRANT also opened other
-- tables (see below).
CREATE OR REPLACE FUNCTION diffix._other_tables_acl_digest() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT md5(COALESCE(string_agg(
           c.oid::text || ':' || COALESCE(c.relacl::text, '') || ':' ||
           COALESCE((SELECT string_agg(a.attnum::text || '=' || a.attacl::text, ',' ORDER BY a.attnum)
                     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL), ''),
           ';' ORDER BY c.oid), ''))
  FROM pg_class c
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND c.oid NOT IN (SELECT p.relid FROM diffix.protected_tables p)
    AND c.oid NOT IN (SELECT m.relid FROM diffix.microdata_tables m)
    AND c.oid NOT IN (SELECT t.relid FROM diffix._personal_tree_members() t)
    AND c.oid NOT IN (SELECT d.relid FROM diffix._derived_relations() d)
    -- tables with a foreign key into a personal one: writing them probes it (45_exposures.sql)
    AND c.oid NOT IN (SELECT con.conrelid FROM pg_constraint con
                      WHERE con.contype = 'f'
                        AND (con.confrelid IN (SELECT p.relid FROM diffix.protected_tables p)
                             OR con.confrelid IN (SELECT m.relid FROM diffix.microdata_tables m)
                             OR con.confrelid IN (SELECT t.relid
                                                  FROM diffix._personal_tree_members() t)))
$$;

-- Before a GRANT, the fingerprint above; before a CREATE TABLE AS or SELECT INTO, what has been
-- read of protected rows so far (46_derived_relations.sql).
CREATE OR REPLACE FUNCTION diffix._note_acls_before_grant() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF tg_tag = 'GRANT' THEN
    PERFORM set_config('pldiffix.acl_digest_before_grant', diffix._other_tables_acl_digest(), true);
  ELSE
    PERFORM set_config('pldiffix.protected_reads_before', diffix._protected_reads()::text, true);
  END IF;
END
$$;

-- The protected table a CREATE TABLE AS or SELECT INTO that just ran read rows of, or NULL. Without
-- statistics (track_counts off) any protected table the role can read counts as read. Counts
-- only grow: a count below the one noted before (the command set the setting itself) counts as
-- read too. (Whoever can read the rows can copy them by other means; this catches mistakes.)
CREATE OR REPLACE FUNCTION diffix._copied_source() RETURNS oid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  before jsonb := COALESCE(NULLIF(current_setting('pldiffix.protected_reads_before', true), ''),
                           '{}')::jsonb;
BEGIN
  IF current_setting('track_counts')::boolean THEN
    RETURN (SELECT a.key::oid FROM jsonb_each_text(diffix._protected_reads()) a
            WHERE a.value::numeric IS DISTINCT FROM COALESCE((before ->> a.key)::numeric, 0)
            ORDER BY a.key::oid LIMIT 1);
  END IF;
  RETURN (SELECT a.key::oid FROM jsonb_each_text(diffix._protected_reads()) a
          WHERE has_table_privilege(a.key::oid, 'SELECT') ORDER BY a.key::oid LIMIT 1);
END
$$;

-- A GRANT (or ALTER TABLE ... OWNER TO) that would let an anonymized role or PUBLIC read, write
-- or probe a personal table directly (any privilege, 45_exposures.sql; INSERT or UPDATE on a
-- table with a foreign key into it), or read or write it
-- through a view or materialized view over its rows (46_derived_relations.sql), never takes
-- effect on that relation:
-- * a GRANT that also opened other tables (GRANT ... ON ALL TABLES IN SCHEMA, or a list mixing
--   personal and other tables) keeps what it gave on the others; every privilege on the personal
--   and perturbed tables (SELECT, INSERT, UPDATE, DELETE on the views over them) is revoked again
--   and a NOTICE names them;
-- * any other such command (a GRANT naming only protected relations, a change of owner, a view
--   created or replaced over personal rows where analysts already read it, default privileges
--   that open a new view) is refused: the whole command is rolled back;
-- * a materialized view over personal rows, or a table created AS SELECT from them, made by a
--   role that is not an administrator is refused (it is a copy of the rows outside every label);
--   an administrator's copy by CREATE TABLE AS is recorded (diffix.copied_tables) and protected
--   like a view over its source.
-- Whether a GRANT opened other tables is told by the privilege fingerprint taken before it, or by
-- the statement's text naming ALL TABLES IN SCHEMA (re-running such a grant changes nothing on
-- the other tables). Either way no exposure survives: the choice is only between an error and a
-- NOTICE.
CREATE OR REPLACE FUNCTION diffix._refuse_exposing_grants() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  exposure record;
  opened_others boolean;
  withheld text;
  copy record;
  source oid;
BEGIN
  IF tg_tag IN ('CREATE TABLE AS', 'SELECT INTO') THEN
    source := diffix._copied_source();
    IF source IS NOT NULL THEN
      FOR copy IN SELECT cmd.objid FROM pg_event_trigger_ddl_commands() cmd
                  JOIN pg_class c ON c.oid = cmd.objid
                  WHERE cmd.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')
                    AND c.relpersistence <> 't' LOOP  -- no other session reads a temporary table
        IF NOT diffix._is_admin(current_user) THEN
          RAISE EXCEPTION '% refused: % would copy rows of %', tg_tag, copy.objid::regclass,
            source::regclass
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'only superusers and members of diffix_admin copy personal rows into '
                         'new tables';
        END IF;
        INSERT INTO diffix.copied_tables (relid, personal, copied_by)
        VALUES (copy.objid, source, current_user)
        ON CONFLICT (relid) DO UPDATE SET personal = excluded.personal,
          copied_by = excluded.copied_by, copied_at = excluded.copied_at;
        RAISE NOTICE '% holds rows of %: it is protected like a view over them',
          copy.objid::regclass, source::regclass
          USING HINT = 'mark it personal (diffix.mark_personal), or public with force => true '
                       'if it holds only what may be published';
      END LOOP;
    END IF;
  END IF;
  IF tg_tag = 'CREATE MATERIALIZED VIEW' AND NOT diffix._is_admin(current_user) THEN
    SELECT d.relid, d.personal INTO copy
    FROM pg_event_trigger_ddl_commands() cmd
    JOIN diffix._derived_relations() d ON d.relid = cmd.objid
    WHERE cmd.classid = 'pg_class'::regclass LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION 'CREATE MATERIALIZED VIEW refused: % would copy rows of %', copy.relid::regclass,
        copy.personal::regclass
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only superusers and members of diffix_admin create materialized views over '
                     'personal rows; a view reads them without copying';
    END IF;
  END IF;
  IF NOT EXISTS (SELECT FROM diffix._personal_table_exposures())
     AND NOT EXISTS (SELECT FROM diffix._derived_exposures()) THEN
    RETURN;
  END IF;
  opened_others := tg_tag = 'GRANT' AND (
    current_setting('pldiffix.acl_digest_before_grant', true)
      IS DISTINCT FROM diffix._other_tables_acl_digest()
    OR current_query() ~* '\mall\s+tables\s+in\s+schema\M');
  IF opened_others THEN
    SELECT string_agg(DISTINCT w.name, '; ') INTO withheld FROM (
      SELECT format('%s on %s table %s', e.privileges, COALESCE(l.label, 'perturbed'),
                    e.table_name) AS name
      FROM diffix._personal_table_exposures() e
      LEFT JOIN diffix.table_labels l ON l.relid = e.relid
      WHERE e.via IN ('table grant', 'column grant')
      UNION ALL
      SELECT format('%s on %s (%s)', e.privileges, e.table_name, e.via)
      FROM diffix._personal_table_exposures() e WHERE e.via LIKE 'foreign key % into %'
      UNION ALL
      SELECT format('SELECT on %s %s (reads %s)', CASE c.relkind WHEN 'v' THEN 'view'
                                                      WHEN 'm' THEN 'materialized view'
                                                      ELSE 'relation' END,
                    e.relation_name, e.personal::regclass)
      FROM diffix._derived_exposures() e JOIN pg_class c ON c.oid = e.relid
      WHERE e.via IN ('table grant', 'column grant')) w;
    PERFORM diffix._revoke_exposures();
    RAISE NOTICE 'GRANT applied except %', withheld
      USING DETAIL = 'anonymized roles read personal and perturbed tables only through pldiffix '
                     'and hold no other privilege on them (nor read or write views over them: '
                     'SELECT, INSERT, UPDATE and DELETE on those are withheld)',
            HINT = 'to give a role raw access, first CALL diffix.mark_role(role, ''direct'')';
  END IF;
  -- What could not be withheld (an owner change, another grantor's grant) refuses the command.
  SELECT e.* INTO exposure FROM diffix._personal_table_exposures() e
  WHERE e.via LIKE 'foreign key % into %' LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION '% refused: % would hold % on % (%): its foreign key violations tell '
      'whether a key exists in a protected table', tg_tag, exposure.grantee, exposure.privileges,
      exposure.table_name, exposure.via
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'grant writes on it to direct roles only, or drop the foreign key';
  END IF;
  SELECT e.*, COALESCE(l.label, 'perturbed') AS label INTO exposure
  FROM diffix._personal_table_exposures() e LEFT JOIN diffix.table_labels l ON l.relid = e.relid
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION
      '% refused: % table % would be readable or writable by % (%) outside anonymization',
      tg_tag, exposure.label, exposure.table_name, exposure.grantee,
      COALESCE(exposure.privileges || ' by ', '') || exposure.via
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'anonymized roles query personal tables through diffix.query_json; to give a role '
                   'raw access, first CALL diffix.mark_role(role, ''direct'')';
  END IF;
  SELECT e.* INTO exposure FROM diffix._derived_exposures() e LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION '% refused: % reads rows of % and would be readable by % (%) outside '
      'anonymization', tg_tag, exposure.relation_name, exposure.personal::regclass,
      exposure.grantee, exposure.via
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'a view or materialized view reads with its owner''s privileges: granting it '
                     'grants the rows',
            HINT = format('analysts query personal tables through diffix.query_json; if %s '
                          'releases only what may be published, CALL diffix.mark_public(%L, '
                          'force => true) first', exposure.relation_name,
                          exposure.relation_name);
  END IF;
END
$$;

-- The event triggers that run these are created by 90_event_triggers.sql.

-- Every remaining path from an anonymized role to personal data, and other configuration risks.
CREATE OR REPLACE FUNCTION diffix.check_security()
RETURNS TABLE (severity text, object text, finding text, fix text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- catalog queries of a few ms; compiling them would take longer
AS $$
  WITH personal AS (
    SELECT c.oid FROM diffix.protected_tables l JOIN pg_class c ON c.oid = l.relid
    UNION
    SELECT m.relid FROM diffix.microdata_tables m
    UNION  -- partitions and parents holding a personal table's rows (44_partition_trees.sql)
    SELECT t.relid FROM diffix._personal_tree_members() t
  ), anonymized AS (
    SELECT a.roleid, a.rolname, a.level, r.rolsuper, r.rolbypassrls, r.rolcanlogin
    FROM diffix._anonymized_roles() a JOIN pg_roles r ON r.oid = a.roleid
  )
  SELECT 'critical', e.table_name,
         CASE e.via WHEN 'ownership' THEN format('%s can read it directly (ownership)', e.grantee)
              ELSE format('%s holds %s on it directly (%s)', e.grantee, e.privileges, e.via) END,
         CASE e.via WHEN 'ownership' THEN format('ALTER TABLE %s OWNER TO a direct role', e.table_name)
              WHEN 'foreign key' THEN 'drop the constraint, or give its table a direct owner'
              WHEN 'trigger' THEN 'drop the trigger, or give its function a direct owner'
              ELSE CASE WHEN e.via LIKE 'foreign key % into %'
                        THEN format('REVOKE INSERT, UPDATE ON %s FROM %s, or drop the constraint',
                                    e.table_name, CASE e.grantee WHEN 'PUBLIC' THEN 'PUBLIC'
                                                       ELSE quote_ident(e.grantee) END)
                        ELSE format('REVOKE ALL ON %s FROM %s', e.table_name,
                          CASE e.grantee WHEN 'PUBLIC' THEN 'PUBLIC'
                               ELSE quote_ident(e.grantee) END) END END
  FROM diffix._personal_table_exposures() e
  UNION ALL
  -- Every privilege counts (45_exposures.sql); one inherited from a table's owner role is all.
  SELECT 'critical', m.relid::regclass::text,
         CASE WHEN m.held = 'SELECT'
              THEN format('%s (%s) can read it through role membership', m.rolname, m.level)
              ELSE format('%s (%s) holds %s on it through role membership', m.rolname, m.level,
                          m.held) END,
         format('find the role %s inherits %s from and revoke the grant or the membership',
                m.rolname, m.held)
  FROM (
    SELECT p.oid AS relid, a.rolname, a.level,
           (SELECT string_agg(w.privilege, ', ' ORDER BY w.n)
            FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                              'TRIGGER']) WITH ORDINALITY w(privilege, n)
            WHERE has_table_privilege(a.roleid, p.oid, w.privilege)
               OR (w.privilege IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                   AND has_any_column_privilege(a.roleid, p.oid, w.privilege))) AS held
    FROM personal p CROSS JOIN anonymized a
    WHERE NOT a.rolsuper AND a.rolname !~ '^diffix_'
      AND NOT EXISTS (SELECT FROM diffix._personal_table_exposures() e
                      WHERE e.relid = p.oid AND e.grantee IN (a.rolname::text, 'PUBLIC'))
  ) m
  WHERE m.held IS NOT NULL
  UNION ALL
  -- Writes on a table with a foreign key into a personal one, inherited through membership.
  SELECT 'critical', w.relid::regclass::text,
         format('%s (%s) holds %s on it through role membership (foreign key %I into %s)',
                w.rolname, w.level, w.held, w.conname, w.personal::regclass),
         format('find the role %s inherits %s from and revoke the grant or the membership',
                w.rolname, w.held)
  FROM (
    SELECT con.conrelid AS relid, con.conname, con.confrelid AS personal, a.rolname, a.level,
           (SELECT string_agg(v.privilege, ', ' ORDER BY v.privilege)
            FROM unnest(ARRAY['INSERT', 'UPDATE']) v(privilege)
            WHERE has_table_privilege(a.roleid, con.conrelid, v.privilege)
               OR has_any_column_privilege(a.roleid, con.conrelid, v.privilege)) AS held
    FROM pg_constraint con JOIN pg_class r ON r.oid = con.conrelid CROSS JOIN anonymized a
    WHERE con.contype = 'f' AND con.confrelid IN (SELECT oid FROM personal)
      AND NOT a.rolsuper AND a.rolname !~ '^diffix_' AND a.roleid <> r.relowner
      AND NOT EXISTS (SELECT FROM diffix._personal_table_exposures() e
                      WHERE e.relid = con.conrelid AND e.grantee IN (a.rolname::text, 'PUBLIC'))
  ) w
  WHERE w.held IS NOT NULL
  UNION ALL
  SELECT 'critical', quote_ident(a.rolname), format('superuser with access level %s', a.level),
         'superusers bypass every privilege check; use a non-superuser role for analysts'
  FROM anonymized a WHERE a.rolsuper
  UNION ALL
  SELECT 'warning', quote_ident(a.rolname), format('BYPASSRLS with access level %s', a.level),
         format('ALTER ROLE %I NOBYPASSRLS', a.rolname)
  FROM anonymized a WHERE a.rolbypassrls AND NOT a.rolsuper
  UNION ALL
  SELECT 'critical', 'diffix_engine', 'the engine role has attributes beyond a plain NOLOGIN role',
         'ALTER ROLE diffix_engine NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS'
  FROM pg_roles r WHERE r.rolname = 'diffix_engine'
    AND (r.rolcanlogin OR r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolbypassrls)
  UNION ALL
  SELECT 'critical', quote_ident(m.rolname), 'member of diffix_engine: can read every personal table',
         format('REVOKE diffix_engine FROM %I', m.rolname)
  FROM pg_auth_members am JOIN pg_roles e ON e.oid = am.roleid AND e.rolname = 'diffix_engine'
  JOIN pg_roles m ON m.oid = am.member
  UNION ALL
  SELECT 'critical', p.oid::regprocedure::text, 'SECURITY DEFINER function without a pinned search_path',
         'reinstall pldiffix'
  FROM pg_proc p WHERE p.pronamespace = 'diffix'::regnamespace AND p.prosecdef
    AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
  UNION ALL
  SELECT 'critical', 'diffix_perturb_owner',
         'the owner of the perturbed views has attributes beyond a plain NOLOGIN role',
         'ALTER ROLE diffix_perturb_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS'
  FROM pg_roles r WHERE r.rolname = 'diffix_perturb_owner'
    AND (r.rolcanlogin OR r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolbypassrls)
  UNION ALL
  SELECT 'critical', quote_ident(m.rolname),
         'member of diffix_perturb_owner: can read perturbed tables and the perturbation key',
         format('REVOKE diffix_perturb_owner FROM %I', m.rolname)
  FROM pg_auth_members am JOIN pg_roles o ON o.oid = am.roleid AND o.rolname = 'diffix_perturb_owner'
  JOIN pg_roles m ON m.oid = am.member
  UNION ALL
  SELECT 'critical', quote_ident(a.rolname),
         format('%s (%s) can read the perturbation key', a.rolname, a.level),
         format('REVOKE SELECT ON diffix.microdata_key FROM %I', a.rolname)
  FROM anonymized a
  WHERE NOT a.rolsuper AND has_table_privilege(a.roleid, 'diffix.microdata_key', 'SELECT')
  UNION ALL
  -- SET ROLE never weakens a session's level (it follows the login), but such a membership is
  -- where an analyst's queries are charged to another role's budget, or would have been
  -- answered at a weaker level by versions before 0.2.
  SELECT 'warning', quote_ident(a.rolname),
         format('%s (%s) can SET ROLE to %s, whose level is %s', a.rolname, a.level, g.rolname,
                COALESCE(diffix._stored_level(g.oid), 'none (default_access_level)')),
         format('REVOKE %I FROM %I, or give %I a level with diffix.mark_role', g.rolname,
                a.rolname, g.rolname)
  FROM anonymized a
  JOIN pg_roles g ON g.oid <> a.roleid AND pg_has_role(a.roleid, g.oid, 'MEMBER')
  WHERE a.rolcanlogin AND NOT a.rolsuper AND g.rolname !~ '^diffix_'
    AND COALESCE(array_position(ARRAY['direct', 'anonymized_trusted', 'anonymized_untrusted',
                                      'anonymized_dp', 'perturbed'],
                                diffix._stored_level(g.oid)), 0)
        < array_position(ARRAY['direct', 'anonymized_trusted', 'anonymized_untrusted',
                               'anonymized_dp', 'perturbed'], a.level)
  UNION ALL
  SELECT 'warning', m.relid::regclass::text,
         format('its perturbed view %I.%I is missing', m.view_schema, m.view_name),
         format('CALL diffix.rebuild_perturbed_view(%L)', m.relid::regclass::text)
  FROM diffix.microdata_tables m
  WHERE to_regclass(format('%I.%I', m.view_schema, m.view_name)) IS NULL
  UNION ALL
  SELECT 'warning', u.table_name,
         format('%s table %s was %s by %s (session %s) at %s; dropped: %s', u.previous_label,
                u.table_name, COALESCE('marked ' || u.new_label, 'unmarked'), u.changed_by,
                u.session_role, u.changed_at, u.dropped),
         format('check who can now read it directly, then CALL diffix.acknowledge_finding(%s)',
                u.id)
  FROM diffix.unlabeled_tables u WHERE u.acknowledged_at IS NULL
  UNION ALL
  -- Views and materialized views over personal rows (directly or through other views,
  -- 46_derived_relations.sql) that an anonymized role can read or write, also through role
  -- membership, which no event trigger sees: a view reads with its owner's privileges, so SELECT
  -- on it is SELECT on the rows. The perturbed views (owner diffix_perturb_owner) are meant to
  -- be read.
  SELECT 'critical', v.relid::regclass::text,
         format('%s (%s) can read rows of %s through this view', a.rolname, a.level,
                v.personal::regclass),
         format('REVOKE ALL ON %s FROM %I, or CALL diffix.mark_public(%L, force => true) if it '
                'releases only what may be published', v.relid::regclass, a.rolname,
                v.relid::regclass::text)
  FROM diffix._derived_relations() v
  JOIN pg_class c ON c.oid = v.relid
  CROSS JOIN anonymized a
  WHERE NOT a.rolsuper AND a.rolname !~ '^diffix_'
    AND (v.holds_rows  -- a view an anonymized role owns reads with that role's privileges
         OR c.relowner NOT IN (SELECT o.roleid FROM anonymized o WHERE NOT o.rolsuper))
    AND (has_table_privilege(a.roleid, v.relid, 'SELECT, INSERT, UPDATE, DELETE')
         OR has_any_column_privilege(a.roleid, v.relid, 'SELECT, INSERT, UPDATE'))
  UNION ALL
  -- SECURITY DEFINER functions outside pldiffix run with their owner's privileges: one whose
  -- owner reads personal rows and that an anonymized role may execute is a path to them.
  -- Critical when it names such a relation (its body's text or, for BEGIN ATOMIC, its
  -- dependencies), a warning otherwise (dynamic SQL may still build the name).
  SELECT CASE WHEN f.names_one THEN 'critical' ELSE 'warning' END, f.oid::regprocedure::text,
         format('SECURITY DEFINER function owned by %s, who can read personal rows (%s), '
                'executable by %s', pg_get_userbyid(f.proowner), f.readable, f.callers),
         format('ALTER FUNCTION %s SECURITY INVOKER, or REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC '
                'and the anonymized roles', f.oid::regprocedure, f.oid::regprocedure)
  FROM (
    WITH protected AS (  -- computed once for every function
      SELECT pr.oid AS relid FROM personal pr UNION SELECT d.relid FROM diffix._derived_relations() d
    )
    SELECT p.oid, p.proowner,
           (SELECT string_agg(DISTINCT r.relid::regclass::text, ', ') FROM protected r
            WHERE has_table_privilege(p.proowner, r.relid, 'SELECT')
               OR has_any_column_privilege(p.proowner, r.relid, 'SELECT')) AS readable,
           EXISTS (SELECT FROM protected r JOIN pg_class c ON c.oid = r.relid
                   WHERE position(lower(c.relname) IN lower(p.prosrc)) > 0
                      OR EXISTS (SELECT FROM pg_depend dep
                                 WHERE dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid
                                   AND dep.refclassid = 'pg_class'::regclass
                                   AND dep.refobjid = r.relid)) AS names_one,
           (SELECT string_agg(format('%s (%s)', quote_ident(a.rolname), a.level), ', '
                              ORDER BY a.rolname)
            FROM anonymized a
            WHERE NOT a.rolsuper AND a.rolname !~ '^diffix_'
              AND has_function_privilege(a.roleid, p.oid, 'EXECUTE')
              AND has_schema_privilege(a.roleid, p.pronamespace, 'USAGE')) AS callers
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prosecdef AND n.nspname !~ '^(pg_|diffix)' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                        AND e.objid = p.oid AND e.deptype = 'e')  -- extensions' own
  ) f
  WHERE f.readable IS NOT NULL AND f.callers IS NOT NULL
  UNION ALL
  SELECT * FROM diffix._ledger_findings()
  UNION ALL
  SELECT * FROM diffix._shard_findings()  -- servers holding partitions (44_partition_trees.sql)
  UNION ALL
  SELECT 'info', quote_ident(r.rolname), 'can log in but has no access level label; gets the default',
         format('CALL diffix.mark_role(%L, ''anonymized_untrusted'') or ''direct''', r.rolname)
  FROM pg_roles r
  WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname !~ '^(pg_|diffix_)'
    AND diffix._stored_level(r.oid) IS NULL
$$;

-- For administrators (superusers bypass the grant): an analyst asking gets a plain permission
-- error, never a partial report from the parts of the catalog it happens to reach.
REVOKE ALL ON FUNCTION diffix.check_security() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix.check_security() TO diffix_admin;
