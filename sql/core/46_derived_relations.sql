-- Relations that read personal rows with their owner's privileges: views and materialized views
-- over personal, cell-key or perturbed tables (or their partitions and parents), directly or
-- through other views, and relations whose rules read them. Granting one of them is granting the
-- rows, so the exposing-grants trigger (70_security.sql) treats them like the tables they read.

-- (relation, a protected table whose rows it reads) for every relation whose rewrite rules
-- depend, transitively, on a protected table. The walk stops at relations an administrator
-- labeled public (mark_public with force => true, a finding until acknowledged); the views of
-- row-level perturbation (owner diffix_perturb_owner) are meant to be read by their level.
-- security_invoker views are included: they are one ALTER VIEW away from reading as their owner.
CREATE OR REPLACE FUNCTION diffix._derived_relations()
RETURNS TABLE (relid oid, personal oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE protected AS (
    SELECT l.relid FROM diffix.table_labels l WHERE l.label IN ('personal', 'cellkey')
    UNION
    SELECT m.relid FROM diffix.microdata_tables m
    UNION
    SELECT t.relid FROM diffix._personal_tree_members() t
  ), tainted(relid, personal) AS (
    SELECT p.relid, p.relid FROM protected p
    UNION
    SELECT rw.ev_class, t.personal FROM tainted t
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid
      AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite rw ON rw.oid = d.objid
    WHERE rw.ev_class <> t.relid
      AND NOT EXISTS (SELECT FROM diffix.table_labels l
                      WHERE l.relid = rw.ev_class AND l.label = 'public')
  )
  SELECT DISTINCT ON (t.relid) t.relid, t.personal FROM tainted t
  JOIN pg_class c ON c.oid = t.relid
  WHERE t.relid NOT IN (SELECT p.relid FROM protected p)
    AND c.relowner IS DISTINCT FROM (SELECT r.oid FROM pg_roles r
                                     WHERE r.rolname = 'diffix_perturb_owner')
  ORDER BY t.relid, t.personal
$$;

-- Grants through which PUBLIC or an anonymized role reads or writes such a relation (SELECT,
-- and INSERT, UPDATE, DELETE: they fire its rules, write the protected table through an
-- updatable view, and answer by unique violations and row counts), and materialized views
-- (copies of the rows) that an anonymized role owns. A view (or a table's rules) that an
-- anonymized role owns reads with that role's privileges, which reach no personal row: neither
-- its ownership nor its grants are exposures.
CREATE OR REPLACE FUNCTION diffix._derived_exposures()
RETURNS TABLE (relid oid, relation_name text, grantee text, via text, personal oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH anonymized AS (
    SELECT a.roleid FROM diffix._anonymized_roles() a
    JOIN pg_roles r ON r.oid = a.roleid WHERE NOT r.rolsuper
  ), derived AS (
    SELECT d.relid, d.personal, c.relacl, c.relowner, c.relkind
    FROM diffix._derived_relations() d JOIN pg_class c ON c.oid = d.relid
    WHERE c.relkind = 'm' OR c.relowner NOT IN (SELECT roleid FROM anonymized)
  )
  SELECT d.relid, d.relid::regclass::text,
         CASE acl.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee)::text END,
         'table grant', d.personal
  FROM derived d, aclexplode(d.relacl) acl
  WHERE acl.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
    AND acl.grantee <> d.relowner
    AND (acl.grantee = 0 OR acl.grantee IN (SELECT roleid FROM anonymized))
  UNION
  SELECT d.relid, d.relid::regclass::text,
         CASE acl.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee)::text END,
         'column grant', d.personal
  FROM derived d JOIN pg_attribute att ON att.attrelid = d.relid AND att.attacl IS NOT NULL,
       aclexplode(att.attacl) acl
  WHERE acl.privilege_type IN ('SELECT', 'INSERT', 'UPDATE')
    AND acl.grantee <> d.relowner
    AND (acl.grantee = 0 OR acl.grantee IN (SELECT roleid FROM anonymized))
  UNION
  SELECT d.relid, d.relid::regclass::text, pg_get_userbyid(d.relowner)::text, 'ownership',
         d.personal
  FROM derived d WHERE d.relkind = 'm' AND d.relowner IN (SELECT roleid FROM anonymized)
$$;

-- Called by mark_public before a relation that reads personal rows is labeled public: refuses
-- without force; with force warns and records the finding (diffix.unlabeled_tables, reported
-- by check_security until acknowledged).
CREATE OR REPLACE FUNCTION diffix._release_derived(relid oid, force boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  source oid := (SELECT d.personal FROM diffix._derived_relations() d
                 WHERE d.relid = _release_derived.relid);
  dropped text;
BEGIN
  IF source IS NULL THEN
    RETURN;
  END IF;
  dropped := format('the refusal of grants that let analysts read the rows of %s through it',
                    source::regclass);
  IF force IS NOT TRUE THEN
    RAISE EXCEPTION '% reads rows of %: mark it public only with force => true', relid::regclass,
      source::regclass
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('this would drop: %s', dropped),
            HINT = format('if it releases only what may be published: '
                          'CALL diffix.mark_public(%L, force => true)', relid::regclass::text);
  END IF;
  RAISE WARNING '% reads rows of % and is no longer protected', relid::regclass, source::regclass
    USING DETAIL = format('dropped: %s', dropped),
          HINT = 'check_security reports it until an administrator calls '
                 'diffix.acknowledge_finding';
  INSERT INTO diffix.unlabeled_tables (table_name, previous_label, new_label, dropped, changed_by,
                                       session_role)
  VALUES (relid::regclass::text, 'derived', 'public', dropped, diffix._invoking_role(),
          session_user);
END
$$;
REVOKE ALL ON FUNCTION diffix._release_derived(oid, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION diffix._derived_relations(), diffix._derived_exposures() FROM PUBLIC;
-- the exposing-grants trigger and check_security run as whoever calls them
GRANT EXECUTE ON FUNCTION diffix._derived_relations(), diffix._derived_exposures() TO PUBLIC;
