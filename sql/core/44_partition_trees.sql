-- Personal tables in partition trees (docs/scale-out.md). A partitioned table marked personal
-- keeps its rows in its partitions (plain tables, or postgres_fdw foreign tables on other
-- servers): every partition, at any depth and attached at any time, is covered by the label of
-- the root without a label of its own. So is every parent of a personal table in an inheritance
-- or partition tree: reading a parent reads its children's rows with the parent's privileges.

-- (member, the labeled table whose rows it holds) for every relation in such a tree other than
-- the labeled table itself.
CREATE OR REPLACE FUNCTION diffix._personal_tree_members()
RETURNS TABLE (relid oid, personal oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE labeled AS (
    SELECT p.relid FROM diffix.protected_tables p
  ), down(relid, personal) AS (
    SELECT l.relid, l.relid FROM labeled l
    UNION
    SELECT i.inhrelid, d.personal FROM down d JOIN pg_inherits i ON i.inhparent = d.relid
  ), up(relid, personal) AS (
    SELECT l.relid, l.relid FROM labeled l
    UNION
    SELECT i.inhparent, u.personal FROM up u JOIN pg_inherits i ON i.inhrelid = u.relid
  )
  SELECT d.relid, d.personal FROM down d WHERE d.relid <> d.personal
  UNION
  SELECT u.relid, u.personal FROM up u WHERE u.relid <> u.personal
$$;
REVOKE ALL ON FUNCTION diffix._personal_tree_members() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._personal_tree_members() TO PUBLIC;  -- check_security's callers

-- Why a partitioned table cannot be marked personal, or NULL when it can: it must be the root of
-- its tree, its partitions plain tables or postgres_fdw foreign tables without row-level
-- security, labels of their own or inheritance children outside the tree.
CREATE OR REPLACE FUNCTION diffix._partition_tree_refusal(root oid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT COALESCE(
    (SELECT format('%s is a partition of %s; mark the root of the tree personal', root::regclass,
                   pg_partition_root(root)::regclass)
     FROM pg_class c WHERE c.oid = root AND c.relispartition),
    (SELECT format('partition %s is %s; only plain tables and postgres_fdw foreign tables can '
                   'hold the rows of a personal table', t.relid::regclass,
                   CASE c.relkind WHEN 'f' THEN 'a foreign table of another wrapper'
                        ELSE 'not a table' END)
     FROM pg_partition_tree(root) t JOIN pg_class c ON c.oid = t.relid
     LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
     LEFT JOIN pg_foreign_server s ON s.oid = ft.ftserver
     LEFT JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
     WHERE c.relkind NOT IN ('r', 'p', 'f') OR (c.relkind = 'f' AND w.fdwname IS DISTINCT FROM
                                                                      'postgres_fdw')
     ORDER BY t.relid LIMIT 1),
    (SELECT format('partition %s has row-level security, which reads through the root and '
                   'partition by partition would apply differently', t.relid::regclass)
     FROM pg_partition_tree(root) t JOIN pg_class c ON c.oid = t.relid
     WHERE t.relid <> root AND c.relrowsecurity ORDER BY t.relid LIMIT 1),
    (SELECT format('partition %s is labeled %s; unmark it first', t.relid::regclass, l.label)
     FROM pg_partition_tree(root) t JOIN diffix.table_labels l ON l.relid = t.relid
     WHERE t.relid <> root ORDER BY t.relid LIMIT 1),
    (SELECT format('%s inherits from partition %s, which anonymization does not support',
                   i.inhrelid::regclass, t.relid::regclass)
     FROM pg_partition_tree(root) t JOIN pg_inherits i ON i.inhparent = t.relid
     JOIN pg_class c ON c.oid = i.inhrelid
     WHERE NOT c.relispartition ORDER BY i.inhrelid LIMIT 1))
$$;
REVOKE ALL ON FUNCTION diffix._partition_tree_refusal(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._partition_tree_refusal(oid) TO diffix_engine;  -- diffix/shards.py

-- check_security's findings about the foreign servers that hold partitions of personal tables:
-- a user mapping an anonymized role can use (its own, one of a role it belongs to, or PUBLIC's)
-- reads the shard's rows without the engine; the owner of such a server reads every mapping's
-- options, passwords included; the engine needs a mapping of its own.
CREATE OR REPLACE FUNCTION diffix._shard_findings()
RETURNS TABLE (severity text, object text, finding text, fix text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH shards AS (
    SELECT s.oid AS srvid, s.srvname, s.srvowner,
           string_agg(DISTINCT t.personal::regclass::text, ', ') AS tables
    FROM diffix._personal_tree_members() t
    JOIN pg_foreign_table ft ON ft.ftrelid = t.relid
    JOIN pg_foreign_server s ON s.oid = ft.ftserver
    GROUP BY s.oid, s.srvname, s.srvowner
  ), anonymized AS (
    SELECT a.roleid, a.rolname, a.level FROM diffix._anonymized_roles() a
    JOIN pg_roles r ON r.oid = a.roleid WHERE NOT r.rolsuper AND a.rolname !~ '^diffix_'
  ), mappings AS (
    SELECT m.srvid, m.umuser,
           CASE m.umuser WHEN 0 THEN 'PUBLIC' ELSE quote_ident(m.usename) END AS mapped
    FROM pg_user_mappings m
    WHERE m.umuser IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = 'diffix_engine')
  )
  SELECT CASE WHEN has_server_privilege(a.roleid, s.srvid, 'USAGE') THEN 'critical'
              ELSE 'warning' END,
         format('user mapping for %s on server %I', m.mapped, s.srvname),
         format('%s (%s) %s to read rows of %s on the shard directly', a.rolname, a.level,
                CASE WHEN has_server_privilege(a.roleid, s.srvid, 'USAGE') THEN 'can use it'
                     ELSE 'could use it once granted USAGE on the server' END, s.tables),
         format('DROP USER MAPPING FOR %s SERVER %I (only diffix_engine needs one)', m.mapped,
                s.srvname)
  FROM shards s JOIN mappings m ON m.srvid = s.srvid
  JOIN anonymized a ON m.umuser = 0 OR pg_has_role(a.roleid, m.umuser, 'MEMBER')
  UNION ALL
  SELECT 'critical', format('server %I', s.srvname),
         format('%s (%s) owns it: sees every user mapping''s password and maps itself to the '
                'shard holding rows of %s', a.rolname, a.level, s.tables),
         format('ALTER SERVER %I OWNER TO an administrator', s.srvname)
  FROM shards s JOIN anonymized a ON pg_has_role(a.roleid, s.srvowner, 'MEMBER')
  UNION ALL
  SELECT 'info', t.relid::regclass::text,
         format('diffix_engine cannot read this partition of %s: queries read the table through '
                'its root, not partition by partition', t.personal::regclass),
         format('CALL diffix.mark_personal(%L, ...) again, or GRANT SELECT ON %s TO diffix_engine',
                t.personal::regclass::text, t.relid::regclass)
  FROM diffix._personal_tree_members() t JOIN pg_class c ON c.oid = t.relid
  WHERE c.relispartition AND NOT has_table_privilege('diffix_engine', t.relid, 'SELECT')
    AND EXISTS (SELECT FROM diffix.table_labels l WHERE l.relid = t.personal
                AND l.label = 'personal')
  UNION ALL
  SELECT 'warning', format('server %I', s.srvname),
         format('no user mapping for diffix_engine: queries over %s fail', s.tables),
         format('CREATE USER MAPPING FOR diffix_engine SERVER %I OPTIONS (user ..., password ...)',
                s.srvname)
  FROM shards s
  WHERE NOT EXISTS (SELECT FROM pg_user_mappings m JOIN pg_roles r ON r.oid = m.umuser
                    WHERE m.srvid = s.srvid AND r.rolname = 'diffix_engine')
$$;
REVOKE ALL ON FUNCTION diffix._shard_findings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._shard_findings() TO diffix_admin;  -- check_security's callers
