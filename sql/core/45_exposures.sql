-- Direct grants through which an anonymized role could read a personal table without the engine
-- (personal tables and perturbed ones, which hold personal records too).
-- Grants to the table owner and to superusers are left to diffix.check_security(), which reports
-- every path; the event trigger refuses commands that would add one of these.
CREATE OR REPLACE FUNCTION diffix._personal_table_exposures()
RETURNS TABLE (relid oid, table_name text, grantee text, via text)
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
  )
  SELECT p.oid, p.oid::regclass::text,
         CASE acl.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee)::text END,
         'table grant'
  FROM personal p, aclexplode(p.relacl) acl
  WHERE acl.privilege_type = 'SELECT' AND acl.grantee <> p.relowner
    AND (acl.grantee = 0 OR acl.grantee IN (SELECT roleid FROM anonymized))
  UNION
  SELECT p.oid, p.oid::regclass::text,
         CASE acl.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee)::text END,
         'column grant'
  FROM personal p JOIN pg_attribute att ON att.attrelid = p.oid AND att.attacl IS NOT NULL,
       aclexplode(att.attacl) acl
  WHERE acl.privilege_type = 'SELECT' AND acl.grantee <> p.relowner
    AND (acl.grantee = 0 OR acl.grantee IN (SELECT roleid FROM anonymized))
  UNION
  SELECT p.oid, p.oid::regclass::text, pg_get_userbyid(p.relowner)::text, 'ownership'
  FROM personal p WHERE p.relowner IN (SELECT roleid FROM anonymized)
$$;
