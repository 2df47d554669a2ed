-- Relations that read personal rows with their owner's privileges: views and materialized views
-- over personal, cell-key or perturbed tables (or their partitions and parents), directly or
-- through other views, and relations whose rules read them. Granting one of them is granting the
-- rows, so the exposing-grants trigger (70_security.sql) treats them like the tables they read.

-- Tables created by CREATE TABLE AS or SELECT INTO from the rows of a protected table (told by
-- the table statistics of the command, _protected_reads below): copies that no rewrite rule
-- links to their source. Written by the exposing-grants trigger as the administrator who ran
-- the command (only administrators may make such copies).
CREATE TABLE IF NOT EXISTS diffix.copied_tables (
  relid oid PRIMARY KEY,
  personal oid NOT NULL,
  copied_by name NOT NULL,
  copied_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON diffix.copied_tables FROM PUBLIC;
GRANT SELECT ON diffix.copied_tables TO PUBLIC;
GRANT INSERT, UPDATE ON diffix.copied_tables TO diffix_admin;

-- (relation, a protected table whose rows it reads, whether it holds a copy of them) for every
-- relation whose rewrite rules depend, transitively, on a protected table, and every copy. The
-- walk stops at relations an administrator labeled public (mark_public with force => true, a
-- finding until acknowledged); the views of row-level perturbation (owner
-- diffix_perturb_owner) are meant to be read by their level. security_invoker views are
-- included: they are one ALTER VIEW away from reading as their owner.
CREATE OR REPLACE FUNCTION diffix._derived_relations()
RETURNS TABLE (relid oid, personal oid, holds_rows boolean)
LANGUAGE sql STABLE ROWS 10
SET search_path = pg_catalog, pg_temp
SET jit = off  -- catalog queries of a few ms; compiling them would take longer
AS $$
  WITH RECURSIVE protected AS (
    SELECT l.relid FROM diffix.protected_tables l
    UNION
    SELECT m.relid FROM diffix.microdata_tables m
    UNION
    SELECT t.relid FROM diffix._personal_tree_members() t
  ), copies AS (  -- a copy labeled personal is protected, one labeled public released
    SELECT k.relid, k.personal FROM diffix.copied_tables k
    WHERE NOT EXISTS (SELECT FROM diffix.table_labels l WHERE l.relid = k.relid)
  ), tainted(relid, personal) AS (
    SELECT p.relid, p.relid FROM protected p
    UNION
    SELECT k.relid, k.personal FROM copies k
    UNION
    SELECT rw.ev_class, t.personal FROM tainted t
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid
      AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite rw ON rw.oid = d.objid
    WHERE rw.ev_class <> t.relid
      AND NOT EXISTS (SELECT FROM diffix.table_labels l
                      WHERE l.relid = rw.ev_class AND l.label = 'public')
  )
  SELECT DISTINCT ON (t.relid) t.relid, t.personal,
         c.relkind = 'm' OR t.relid IN (SELECT k.relid FROM copies k)
  FROM tainted t
  JOIN pg_class c ON c.oid = t.relid
  WHERE t.relid NOT IN (SELECT p.relid FROM protected p)
    AND c.relowner IS DISTINCT FROM (SELECT r.oid FROM pg_roles r
                                     WHERE r.rolname = 'diffix_perturb_owner')
  ORDER BY t.relid, t.personal
$$;

-- Per relation holding protected rows (protected tables, materialized views and copies of them)
-- the scans and tuples read in this transaction, indexes included. Taken before and after a
-- CREATE TABLE AS or SELECT INTO, it tells whether the command read such rows (a read by TID or
-- from a foreign partition is not counted: docs/security.md).
CREATE OR REPLACE FUNCTION diffix._protected_reads() RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- catalog queries of a few ms; compiling them would take longer
AS $$
  WITH held AS (
    SELECT l.relid FROM diffix.protected_tables l
    UNION SELECT m.relid FROM diffix.microdata_tables m
    UNION SELECT t.relid FROM diffix._personal_tree_members() t
    UNION SELECT d.relid FROM diffix._derived_relations() d WHERE d.holds_rows
  )
  SELECT COALESCE(jsonb_object_agg(h.relid::text, (
           SELECT sum(pg_stat_get_xact_numscans(s.o) + pg_stat_get_xact_tuples_returned(s.o)
                      + pg_stat_get_xact_tuples_fetched(s.o))
           FROM (SELECT h.relid AS o UNION ALL
                 SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = h.relid) s)), '{}')
  FROM held h
$$;

-- Grants through which PUBLIC or an anonymized role reads or writes such a relation (SELECT,
-- and INSERT, UPDATE, DELETE: they fire its rules, write the protected table through an
-- updatable view, and answer by unique violations and row counts), and materialized views and
-- copies that an anonymized role owns. A view (or a table's rules) that an
-- anonymized role owns reads with that role's privileges, which reach no personal row: neither
-- its ownership nor its grants are exposures.
CREATE OR REPLACE FUNCTION diffix._derived_exposures()
RETURNS TABLE (relid oid, relation_name text, grantee text, via text, personal oid)
LANGUAGE sql STABLE ROWS 10
SET search_path = pg_catalog, pg_temp
SET jit = off  -- catalog queries of a few ms; compiling them would take longer
AS $$
  WITH anonymized AS (
    SELECT a.roleid FROM diffix._anonymized_roles() a
    JOIN pg_roles r ON r.oid = a.roleid WHERE NOT r.rolsuper
  ), derived AS (
    SELECT d.relid, d.personal, d.holds_rows, c.relacl, c.relowner
    FROM diffix._derived_relations() d JOIN pg_class c ON c.oid = d.relid
    WHERE d.holds_rows OR c.relowner NOT IN (SELECT roleid FROM anonymized)
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
  FROM derived d WHERE d.holds_rows AND d.relowner IN (SELECT roleid FROM anonymized)
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
REVOKE ALL ON FUNCTION diffix._derived_relations(), diffix._derived_exposures(),
  diffix._protected_reads() FROM PUBLIC;
-- the event triggers and check_security run as whoever calls them
GRANT EXECUTE ON FUNCTION diffix._derived_relations(), diffix._derived_exposures(),
  diffix._protected_reads() TO PUBLIC;
