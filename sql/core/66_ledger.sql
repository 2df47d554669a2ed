-- The ledger's loopback connection (docs/dp.md, "Accounting and audit"): writes that must survive
-- the caller's ROLLBACK (privacy budget charges, sql/dp/60_budgets.sql; the audit log,
-- 67_audit.sql; stored DP answers) go through it.
--
-- One dblink connection per backend, named pldiffix_ledger, logged in as this database's ledger
-- login role (diffix_ledger_<database oid>, a member of diffix_ledger) with a random password
-- that only diffix_ledger can read. Each statement sent over it commits on its own, before the
-- caller's function returns. The installer chooses how the loopback reaches the server (unix
-- socket or localhost) after the install has committed (diffix._ledger_choose_link).

-- diffix_ledger owns the budgets, the ledger, the audit log, the password and the definer
-- functions that write them. It cannot log in; its members are the loopback login roles (one per
-- database: roles are cluster-wide).
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'diffix_ledger') THEN
    CREATE ROLE diffix_ledger NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
      NOREPLICATION NOBYPASSRLS;
  END IF;
  ALTER ROLE diffix_ledger NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
    NOREPLICATION NOBYPASSRLS;
END
$roles$;
-- The admin check of its administrators-only definers (30_settings.sql).
GRANT EXECUTE ON FUNCTION diffix._require_admin(text), diffix._role_oid(text) TO diffix_ledger;

-- How the loopback logs in. options: libpq keywords (host, port) chosen by the installer.
CREATE TABLE IF NOT EXISTS diffix.ledger_link (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  login_role name NOT NULL,
  password text NOT NULL,
  options text
);
ALTER TABLE diffix.ledger_link OWNER TO diffix_ledger;
REVOKE ALL ON diffix.ledger_link FROM PUBLIC;

-- The login role and its password: kept on upgrade (and in databases cloned from this one, which
-- share it); created with a fresh random password otherwise.
DO $login$
DECLARE
  link record;
  login name;
  secret text;
BEGIN
  SELECT l.login_role, l.password INTO link FROM diffix.ledger_link l;
  IF FOUND AND EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = link.login_role) THEN
    login := link.login_role;
  ELSE
    login := 'diffix_ledger_' || (SELECT d.oid FROM pg_catalog.pg_database d
                                  WHERE d.datname = pg_catalog.current_database());
    secret := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
      pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text, 'UTF8')), 'hex');
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = login) THEN
      EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN', login);
    END IF;
    -- Inside a DO block the password never appears in a logged statement.
    EXECUTE pg_catalog.format('ALTER ROLE %I PASSWORD %L', login, secret);
    INSERT INTO diffix.ledger_link (login_role, password) VALUES (login, secret)
    ON CONFLICT (singleton) DO UPDATE
      SET login_role = EXCLUDED.login_role, password = EXCLUDED.password, options = NULL;
  END IF;
  EXECUTE pg_catalog.format('ALTER ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE '
                            'NOREPLICATION NOBYPASSRLS', login);
  EXECUTE pg_catalog.format('GRANT diffix_ledger TO %I', login);
  -- A marker in pg_shdepend (PUBLIC has USAGE already), copied into databases cloned from this
  -- one: pldiffix uninstall keeps the login role while another database holds one.
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA diffix TO %I', login);
END
$login$;

-- dblink lives in diffix_dblink, a schema only superusers own and nobody else may create in: the
-- loopback sends its password through dblink_connect, so whoever could put a function named
-- dblink_connect where the loopback looks would receive it (in PostgreSQL 15 the database owner
-- controls `public`). A dblink the database had elsewhere is moved there (its other users must
-- now write diffix_dblink.dblink...). Its named connections are visible to every caller in the
-- backend, so nobody but diffix_ledger may execute any of its functions (check_security reports
-- a grant that comes back, and a schema on the loopback's path that a non-superuser could write).
-- diffix.dblink_origin remembers where it was, for pldiffix uninstall to put it back.
CREATE TABLE IF NOT EXISTS diffix.dblink_origin (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  schema_name name NOT NULL
);
REVOKE ALL ON diffix.dblink_origin FROM PUBLIC;

DO $dblink$
DECLARE
  dblink_schema name;
  schema_owner oid;
  fn regprocedure;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name = 'dblink') THEN
    RAISE EXCEPTION 'the dblink extension (PostgreSQL contrib) is not available on the server'
      USING HINT = 'install the server''s contrib modules (on Debian they come with postgresql-NN)';
  END IF;
  SELECT n.nspowner INTO schema_owner FROM pg_catalog.pg_namespace n
  WHERE n.nspname = 'diffix_dblink';
  IF schema_owner IS NOT NULL
     AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = schema_owner) THEN
    RAISE EXCEPTION 'schema diffix_dblink exists and belongs to %, who is not a superuser',
      schema_owner::regrole
      USING HINT = 'pldiffix keeps the ledger''s dblink there: look at what that role put in it, '
                   'drop the schema, and install again';
  END IF;
  CREATE SCHEMA IF NOT EXISTS diffix_dblink;
  REVOKE ALL ON SCHEMA diffix_dblink FROM PUBLIC;
  SELECT n.nspname INTO dblink_schema
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
  WHERE e.extname = 'dblink';
  IF dblink_schema IS NULL THEN
    CREATE EXTENSION dblink SCHEMA diffix_dblink;
  ELSIF dblink_schema <> 'diffix_dblink' THEN
    ALTER EXTENSION dblink SET SCHEMA diffix_dblink;
    INSERT INTO diffix.dblink_origin (schema_name) VALUES (dblink_schema)
    ON CONFLICT (singleton) DO NOTHING;
    RAISE NOTICE 'moved the dblink extension from schema % to diffix_dblink', dblink_schema
      USING DETAIL = 'other users of dblink must now qualify it: diffix_dblink.dblink(...)';
  END IF;
  GRANT USAGE ON SCHEMA diffix_dblink TO diffix_ledger;
  FOR fn IN
    SELECT d.objid::regprocedure FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'dblink'
    WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
  LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO diffix_ledger', fn);
  END LOOP;
END
$dblink$;

-- Runs one statement over this backend's loopback connection (opened on first use) and returns
-- its one text value; the statement commits on its own. A connection that died (its backend
-- was terminated) is opened again once; a statement whose answer was lost may then run twice,
-- which for a charge errs on the side of spending. Every dblink call names diffix_dblink and
-- passes typed arguments, so nothing on anyone's search_path can stand in for it.
CREATE OR REPLACE FUNCTION diffix._loopback(statement text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  link constant pg_catalog.text := 'pldiffix_ledger';
  result text;
BEGIN
  IF NOT COALESCE(link OPERATOR(pg_catalog.=) ANY (diffix_dblink.dblink_get_connections()), false)
  THEN
    PERFORM diffix_dblink.dblink_connect(link, diffix._ledger_connstr());
  END IF;
  BEGIN
    SELECT t.r INTO result FROM diffix_dblink.dblink(link, statement) AS t(r pg_catalog.text);
  EXCEPTION WHEN connection_failure THEN
    PERFORM diffix_dblink.dblink_disconnect(link);
    PERFORM diffix_dblink.dblink_connect(link, diffix._ledger_connstr());
    SELECT t.r INTO result FROM diffix_dblink.dblink(link, statement) AS t(r pg_catalog.text);
  END;
  RETURN result;
END
$$;

-- Opens a loopback connection with the given options, runs SELECT 1 and closes it: NULL when
-- that works, else the reason. Runs as diffix_ledger, so dblink's checks for non-superusers
-- (a password must be sent and used) apply as they do for the real connection.
CREATE OR REPLACE FUNCTION diffix._ledger_probe(options text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  probe constant pg_catalog.text := 'pldiffix_ledger_probe';
BEGIN
  PERFORM diffix_dblink.dblink_connect(probe, diffix._ledger_connstr(options));
  PERFORM * FROM diffix_dblink.dblink(probe, 'SELECT 1'::pg_catalog.text) AS t(one pg_catalog.int4);
  PERFORM diffix_dblink.dblink_disconnect(probe);
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  IF probe OPERATOR(pg_catalog.=) ANY (diffix_dblink.dblink_get_connections()) THEN
    PERFORM diffix_dblink.dblink_disconnect(probe);
  END IF;
  RETURN SQLERRM;
END
$$;

-- A libpq value in single quotes, as conninfo strings quote them.
CREATE OR REPLACE FUNCTION diffix._conninfo_value(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT '''' || replace(replace(value, '\', '\\'), '''', '\''') || ''''
$$;

-- The loopback's connection string: the stored (or given) options, this database, the login role
-- and its password.
CREATE OR REPLACE FUNCTION diffix._ledger_connstr(options text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  link record;
BEGIN
  SELECT l.login_role, l.password, l.options INTO link FROM diffix.ledger_link l;
  IF NOT FOUND OR COALESCE(options, link.options) IS NULL THEN
    RAISE EXCEPTION 'the pldiffix ledger loopback is not configured'
      USING ERRCODE = 'connection_exception',
            HINT = 'an administrator runs pldiffix install again; docs/security.md, '
                   '"The loopback connection", says what pg_hba.conf needs';
  END IF;
  RETURN format('%s dbname=%s user=%s password=%s application_name=pldiffix_ledger',
                COALESCE(options, link.options),
                diffix._conninfo_value(current_database()),
                diffix._conninfo_value(link.login_role),
                diffix._conninfo_value(link.password));
END
$$;

-- Tries the stored options, then the server's unix sockets, then localhost, and keeps the first
-- that works (NULL when none does, with every reason). Called by the installer once the install
-- has committed (a new login role cannot log in before).
DROP FUNCTION IF EXISTS diffix._ledger_choose_link();
CREATE FUNCTION diffix._ledger_choose_link(OUT options text, OUT reasons text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  port text := current_setting('port');
  candidates text[] := ARRAY[]::text[];
  directory text;
  candidate text;
  reason text;
  failures text[] := ARRAY[]::text[];
BEGIN
  SELECT ARRAY[l.options] INTO candidates FROM diffix.ledger_link l WHERE l.options IS NOT NULL;
  candidates := COALESCE(candidates, ARRAY[]::text[]);
  FOREACH directory IN ARRAY string_to_array(current_setting('unix_socket_directories'), ',') LOOP
    directory := trim(directory);
    IF directory <> '' AND left(directory, 1) <> '@' THEN
      candidates := candidates || format('host=%s port=%s', diffix._conninfo_value(directory), port);
    END IF;
  END LOOP;
  IF trim(current_setting('listen_addresses')) <> '' THEN
    candidates := candidates || format('host=127.0.0.1 port=%s', port)
                             || format('host=::1 port=%s', port);
  END IF;
  FOREACH candidate IN ARRAY candidates LOOP
    reason := diffix._ledger_probe(candidate);
    IF reason IS NULL THEN
      options := candidate;
      EXIT;
    END IF;
    IF NOT candidate = ANY (failures) THEN
      failures := failures || format('%s: %s', candidate, reason);
    END IF;
  END LOOP;
  UPDATE diffix.ledger_link SET options = _ledger_choose_link.options;
  reasons := array_to_string(failures, E'\n');
END
$$;

-- What check_security reports about the ledger: anyone who could use the loopback connection or
-- act as diffix_ledger could rewrite budgets and the audit log.
CREATE OR REPLACE FUNCTION diffix._ledger_findings()
RETURNS TABLE (severity text, object text, finding text, fix text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'critical', p.oid::regprocedure::text,
         format('%s may execute it and so use the ledger''s loopback connection',
                CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END),
         format('REVOKE EXECUTE ON FUNCTION %s FROM %s', p.oid::regprocedure,
                CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'dblink'
  JOIN pg_proc p ON p.oid = d.objid
  CROSS JOIN LATERAL aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
  WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e' AND a.privilege_type = 'EXECUTE'
    AND a.grantee <> p.proowner
    AND a.grantee NOT IN (SELECT r.oid FROM pg_roles r WHERE r.rolname = 'diffix_ledger' OR r.rolsuper)
  UNION ALL
  -- Where the loopback finds dblink_connect, which receives its password, and the ledger's own
  -- functions: only superusers (or diffix_ledger) may own those schemas or create in them.
  SELECT 'critical', quote_ident(n.nspname),
         format('the ledger and audit log call functions in this schema (dblink_connect receives '
                'the loopback''s password) and %s', w.what),
         w.fix
  FROM pg_namespace n
  CROSS JOIN LATERAL (
    SELECT format('%s, not a superuser, owns it', n.nspowner::regrole) AS what,
           format('ALTER SCHEMA %I OWNER TO CURRENT_USER', n.nspname) AS fix
    WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = n.nspowner
                      AND (r.rolsuper OR r.rolname = 'diffix_ledger'))
    UNION ALL
    SELECT format('%s may create objects in it',
                  CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END),
           format('REVOKE CREATE ON SCHEMA %I FROM %s', n.nspname,
                  CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
    FROM aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a
    WHERE a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
      AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = a.grantee AND r.rolsuper)) w
  WHERE n.nspname IN ('diffix', 'diffix_dblink')
     OR n.oid = (SELECT e.extnamespace FROM pg_extension e WHERE e.extname = 'dblink')
  UNION ALL
  SELECT 'critical', 'dblink',
         format('the dblink extension is in schema %s, not diffix_dblink: the ledger''s loopback '
                'does not work', e.extnamespace::regnamespace),
         'run pldiffix install again (it moves dblink back)'
  FROM pg_extension e
  WHERE e.extname = 'dblink' AND e.extnamespace <> to_regnamespace('diffix_dblink')
  UNION ALL
  SELECT 'critical', p.oid::regprocedure::text,
         CASE WHEN e.oid IS NULL
              THEN 'a function that is not dblink''s, beside the loopback''s dblink'
              ELSE format('%s, not a superuser, owns it and could replace it with a function '
                          'that reads the loopback''s password', p.proowner::regrole) END,
         CASE WHEN e.oid IS NULL THEN format('DROP FUNCTION %s', p.oid::regprocedure)
              ELSE format('ALTER FUNCTION %s OWNER TO CURRENT_USER', p.oid::regprocedure) END
  FROM pg_proc p
  LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  LEFT JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'dblink'
  WHERE (p.pronamespace = to_regnamespace('diffix_dblink') AND e.oid IS NULL)
     OR (e.oid IS NOT NULL AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = p.proowner
                                           AND r.rolsuper))
  UNION ALL
  SELECT 'critical', quote_ident(m.rolname),
         'member of diffix_ledger: can rewrite privacy budgets and the audit log',
         format('REVOKE diffix_ledger FROM %I', m.rolname)
  FROM pg_auth_members am
  JOIN pg_roles l ON l.oid = am.roleid AND l.rolname = 'diffix_ledger'
  JOIN pg_roles m ON m.oid = am.member
  -- every database's loopback login role is one (roles are cluster-wide)
  WHERE m.rolname NOT IN (SELECT k.login_role FROM diffix.ledger_link k)
    AND m.rolname !~ '^diffix_ledger_[0-9]+$'
  UNION ALL
  SELECT 'warning', quote_ident(m.rolname),
         'loopback login role of a database that no longer exists',
         format('DROP ROLE %I', m.rolname)
  FROM pg_auth_members am
  JOIN pg_roles l ON l.oid = am.roleid AND l.rolname = 'diffix_ledger'
  JOIN pg_roles m ON m.oid = am.member
  WHERE m.rolname ~ '^diffix_ledger_[0-9]+$'
    AND m.rolname NOT IN (SELECT k.login_role FROM diffix.ledger_link k)
    AND m.rolname NOT IN (SELECT 'diffix_ledger_' || d.oid FROM pg_database d)
  UNION ALL
  SELECT 'critical', 'diffix_ledger', 'the ledger''s loopback is not configured: analyst queries are '
         'refused', 'run pldiffix install again and follow its hint about pg_hba.conf'
  WHERE NOT EXISTS (SELECT FROM diffix.ledger_link k WHERE k.options IS NOT NULL)
$$;
ALTER FUNCTION diffix._ledger_findings() OWNER TO diffix_ledger;
-- read by check_security, which is for administrators (70_security.sql)
REVOKE ALL ON FUNCTION diffix._ledger_findings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._ledger_findings() TO diffix_admin;

ALTER FUNCTION diffix._loopback(text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._ledger_probe(text) OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._loopback(text), diffix._ledger_probe(text),
  diffix._ledger_connstr(text), diffix._ledger_choose_link() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._loopback(text), diffix._ledger_connstr(text) TO diffix_ledger;
