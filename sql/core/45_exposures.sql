-- Direct grants through which an anonymized role could read, change or probe a personal table
-- without the engine (personal tables and perturbed ones, which hold personal records too).
-- Every privilege counts, not only SELECT: INSERT answers by unique and check violations whether
-- a key exists, UPDATE and DELETE by their row counts (and destroy data), TRUNCATE destroys it,
-- REFERENCES lets an analyst's own foreign key probe the key column, TRIGGER runs the analyst's
-- function as whoever next writes the table. privileges lists them (SELECT first, then in
-- PostgreSQL's order; NULL for ownership; the constraint or trigger for what such grants left).
-- Grants to the table owner and to superusers are left to diffix.check_security(), which reports
-- every path; the event trigger refuses commands that would add one of these.
-- Installs before the privileges column returned another row type, which CREATE OR REPLACE
-- cannot change.
DO $$
BEGIN
  IF pg_catalog.strpos(pg_catalog.pg_get_function_result(pg_catalog.to_regprocedure(
       'diffix._personal_table_exposures()')), 'privileges') = 0 THEN
    DROP FUNCTION diffix._personal_table_exposures();
  END IF;
END
$$;
CREATE OR REPLACE FUNCTION diffix._personal_table_exposures()
RETURNS TABLE (relid oid, table_name text, grantee text, via text, privileges text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH personal AS (
    SELECT c.oid, c.relacl, c.relowner FROM diffix.protected_tables l
    JOIN pg_class c ON c.oid = l.relid
    UNION  -- tables perturbed row by row for the perturbed level (sql/perturb)
    SELECT c.oid, c.relacl, c.relowner FROM diffix.microdata_tables m
    JOIN pg_class c ON c.oid = m.relid
    UNION  -- partitions and parents holding a personal table's rows (44_partition_trees.sql)
    SELECT c.oid, c.relacl, c.relowner FROM diffix._personal_tree_members() t
    JOIN pg_class c ON c.oid = t.relid
  ), anonymized AS (
    SELECT a.roleid FROM diffix._anonymized_roles() a
    JOIN pg_roles r ON r.oid = a.roleid WHERE NOT r.rolsuper
  ), granted AS (
    SELECT p.oid, acl.grantee, 'table grant' AS via, acl.privilege_type
    FROM personal p, aclexplode(p.relacl) acl
    WHERE acl.grantee <> p.relowner
      AND (acl.grantee = 0 OR acl.grantee IN (SELECT roleid FROM anonymized))
    UNION
    SELECT p.oid, acl.grantee, 'column grant', acl.privilege_type
    FROM personal p JOIN pg_attribute att ON att.attrelid = p.oid AND att.attacl IS NOT NULL,
         aclexplode(att.attacl) acl
    WHERE acl.grantee <> p.relowner
      AND (acl.grantee = 0 OR acl.grantee IN (SELECT roleid FROM anonymized))
  )
  SELECT g.oid, g.oid::regclass::text,
         CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee)::text END, g.via,
         string_agg(g.privilege_type, ', ' ORDER BY COALESCE(array_position(
           ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'],
           g.privilege_type), 99), g.privilege_type)
  FROM granted g
  GROUP BY g.oid, g.grantee, g.via
  UNION ALL
  SELECT p.oid, p.oid::regclass::text, pg_get_userbyid(p.relowner)::text, 'ownership', NULL
  FROM personal p WHERE p.relowner IN (SELECT roleid FROM anonymized)
  UNION ALL
  -- What a REFERENCES or TRIGGER grant left behind once revoked (mark_personal, mark_role): a
  -- foreign key from a table an anonymized role owns is still checked, as the personal table's
  -- owner, on every row that role writes; a trigger still runs its function, which that role
  -- owns and may replace, as whoever writes the personal table.
  SELECT p.oid, p.oid::regclass::text, pg_get_userbyid(r.relowner)::text, 'foreign key',
         format('REFERENCES (constraint %I on %s)', con.conname, con.conrelid::regclass)
  FROM personal p JOIN pg_constraint con ON con.confrelid = p.oid AND con.contype = 'f'
  JOIN pg_class r ON r.oid = con.conrelid
  WHERE r.relowner IN (SELECT roleid FROM anonymized)
  UNION ALL
  SELECT p.oid, p.oid::regclass::text, pg_get_userbyid(f.proowner)::text, 'trigger',
         format('TRIGGER (%I runs %s)', t.tgname, f.oid::regprocedure)
  FROM personal p JOIN pg_trigger t ON t.tgrelid = p.oid AND NOT t.tgisinternal
  JOIN pg_proc f ON f.oid = t.tgfoid
  WHERE f.proowner IN (SELECT roleid FROM anonymized)
  UNION ALL
  -- INSERT or UPDATE on another role's table with a foreign key into a personal table: every
  -- value written is checked against the personal table, so a foreign key violation (or none)
  -- answers whether a person's key exists. relid is the referencing table (the one to revoke on);
  -- every INSERT or UPDATE grant on it counts, table or column, whichever column it names.
  SELECT r.oid, r.oid::regclass::text,
         CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee)::text END,
         format('foreign key %I into %s', con.conname, p.oid::regclass),
         string_agg(DISTINCT g.privilege_type, ', ')
  FROM personal p JOIN pg_constraint con ON con.confrelid = p.oid AND con.contype = 'f'
  JOIN pg_class r ON r.oid = con.conrelid,
  LATERAL (SELECT acl.grantee, acl.privilege_type FROM aclexplode(r.relacl) acl
           UNION
           SELECT acl.grantee, acl.privilege_type
           FROM pg_attribute att, aclexplode(att.attacl) acl
           WHERE att.attrelid = r.oid AND att.attacl IS NOT NULL) g
  WHERE g.privilege_type IN ('INSERT', 'UPDATE') AND g.grantee <> r.relowner
    AND (g.grantee = 0 OR g.grantee IN (SELECT roleid FROM anonymized))
  GROUP BY r.oid, g.grantee, con.conname, p.oid
$$;
