-- Access levels. A role's level is its membership in one of the group roles (granted by
-- diffix.mark_role); unlabeled roles get default_access_level. A session may lower, never raise it.

CREATE OR REPLACE FUNCTION diffix.access_level() RETURNS text
LANGUAGE plpython3u STABLE
AS $python$
#@load pldiffix.server
return server.access_level(plpy)
$python$;

-- The level a role holds through (possibly indirect) membership in a group role, NULL when it
-- has none. pg_has_role cannot be used: it answers true for superusers whatever they are members of.
-- PL/pgSQL keeps the statement's plan for the session (a SQL function's is made again in every
-- statement that calls it, and every answer reads the level).
CREATE OR REPLACE FUNCTION diffix._stored_level(role_oid oid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN (
    WITH RECURSIVE memberships (roleid) AS (
      SELECT role_oid
      UNION
      SELECT m.roleid FROM pg_auth_members m JOIN memberships ms ON m.member = ms.roleid
    )
    SELECT CASE WHEN bool_or(r.rolname = 'diffix_perturbed') THEN 'perturbed'
                WHEN bool_or(r.rolname = 'diffix_anonymized_dp') THEN 'anonymized_dp'
                WHEN bool_or(r.rolname = 'diffix_anonymized_untrusted') THEN 'anonymized_untrusted'
                WHEN bool_or(r.rolname = 'diffix_anonymized_trusted') THEN 'anonymized_trusted'
                WHEN bool_or(r.rolname = 'diffix_direct') THEN 'direct' END
    FROM memberships ms JOIN pg_roles r ON r.oid = ms.roleid
  );
END
$$;

-- Every role whose stored level is anonymized (session lowering aside), with that level.
CREATE OR REPLACE FUNCTION diffix._anonymized_roles()
RETURNS TABLE (roleid oid, rolname name, level text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH defaults AS (
    SELECT COALESCE((SELECT s.value FROM diffix._database_settings() s
                     WHERE s.name = 'default_access_level'), 'direct') AS level
  ), levels AS (
    SELECT r.oid, r.rolname,
           COALESCE(diffix._stored_level(r.oid), (SELECT level FROM defaults)) AS level
    FROM pg_roles r
    WHERE r.rolname !~ '^pg_'
      AND r.rolname NOT IN ('diffix_engine', 'diffix_admin', 'diffix_direct', 'diffix_perturb_owner')
  )
  SELECT oid, rolname, level FROM levels WHERE level <> 'direct'
$$;

-- Removes direct grants on personal tables (every privilege, 45_exposures.sql), on relations
-- that read their rows, and INSERT and UPDATE on tables with a foreign key into one, from PUBLIC
-- and roles that are (now) anonymized. CASCADE: what such a role
-- passed on with a grant option goes with it.
CREATE OR REPLACE FUNCTION diffix._revoke_exposures() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  exposure record;
  revoked integer := 0;
BEGIN
  FOR exposure IN
    SELECT e.relid, e.grantee, 'ALL' AS privileges FROM diffix._personal_table_exposures() e
    WHERE e.via IN ('table grant', 'column grant')
    UNION  -- views and materialized views over personal rows (46_derived_relations.sql)
    SELECT e.relid, e.grantee, 'ALL' FROM diffix._derived_exposures() e
    WHERE e.via IN ('table grant', 'column grant')
    UNION  -- writes to a table with a foreign key into a personal table (45_exposures.sql)
    SELECT e.relid, e.grantee, 'INSERT, UPDATE' FROM diffix._personal_table_exposures() e
    WHERE e.via LIKE 'foreign key % into %'
  LOOP
    -- column privileges go with the table-level REVOKE
    EXECUTE format('REVOKE %s ON %s FROM %s CASCADE', exposure.privileges, exposure.relid::regclass,
                   CASE exposure.grantee WHEN 'PUBLIC' THEN 'PUBLIC'
                        ELSE quote_ident(exposure.grantee) END);
    revoked := revoked + 1;
  END LOOP;
  RETURN revoked;
END
$$;
REVOKE ALL ON FUNCTION diffix._revoke_exposures() FROM PUBLIC;
-- The exposing-grants trigger runs as whoever issued the GRANT (a table owner, say) and withholds
-- through this; with invoker rights it revokes only what that role may revoke, and only exposures.
GRANT EXECUTE ON FUNCTION diffix._revoke_exposures() TO PUBLIC;

-- Removes the role from every access-level group it is a direct member of.
CREATE OR REPLACE FUNCTION diffix._leave_level_groups(target oid) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  membership record;
BEGIN
  FOR membership IN
    SELECT g.rolname AS group_role, r.rolname AS member_role
    FROM pg_auth_members m
    JOIN pg_roles g ON g.oid = m.roleid
    JOIN pg_roles r ON r.oid = m.member
    WHERE m.member = target
      AND g.rolname IN ('diffix_direct', 'diffix_anonymized_trusted', 'diffix_anonymized_untrusted',
                        'diffix_anonymized_dp', 'diffix_perturbed')
  LOOP
    EXECUTE format('REVOKE %I FROM %I', membership.group_role, membership.member_role);
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION diffix._leave_level_groups(oid) FROM PUBLIC;

CREATE OR REPLACE PROCEDURE diffix.mark_role(role_name text, access_level text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  target oid;
  wanted text := lower(trim(access_level));
  revoked integer;
BEGIN
  PERFORM diffix._require_admin('mark roles');
  target := diffix._role_oid(role_name);
  IF wanted IS NULL OR wanted NOT IN ('direct', 'anonymized_trusted', 'anonymized_untrusted',
                                      'anonymized_dp', 'perturbed') THEN
    RAISE EXCEPTION 'unknown access level "%"', access_level
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'use direct, anonymized_trusted, anonymized_untrusted, anonymized_dp or perturbed';
  END IF;
  IF role_name ~ '^(diffix_|pg_)' THEN
    RAISE EXCEPTION 'role "%" is a system role and cannot be marked', role_name
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM diffix._leave_level_groups(target);
  EXECUTE format('GRANT %I TO %I', 'diffix_' || wanted, role_name);
  IF wanted <> 'direct' THEN
    revoked := diffix._revoke_exposures();
    IF revoked > 0 THEN
      RAISE NOTICE 'revoked % direct grant(s) on personal tables or views over them that anonymized roles held',
        revoked;
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE oid = target) THEN
      RAISE WARNING 'role "%" is a superuser and can still read personal tables directly', role_name
        USING HINT = 'anonymized access only protects data from roles that are not superusers';
    END IF;
  END IF;
END
$$;

CREATE OR REPLACE PROCEDURE diffix.unmark_role(role_name text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  target oid;
BEGIN
  PERFORM diffix._require_admin('unmark roles');
  target := diffix._role_oid(role_name);
  PERFORM diffix._leave_level_groups(target);
END
$$;
