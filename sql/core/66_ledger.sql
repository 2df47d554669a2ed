-- Privacy budgets and the durable ledger of what was spent (docs/dp.md, "Accounting and audit").
--
-- Writes that must survive the caller's ROLLBACK go through a loopback connection: one dblink
-- connection per backend, named pldiffix_ledger, logged in as this database's ledger login role
-- (diffix_ledger_<database oid>, a member of diffix_ledger) with a random password that only
-- diffix_ledger can read. Each statement sent over it commits on its own, before the caller's
-- function returns. The installer chooses how the loopback reaches the server (unix socket or
-- localhost) after the install has committed (diffix._ledger_choose_link).

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

CREATE TABLE IF NOT EXISTS diffix.privacy_budgets (
  roleid oid PRIMARY KEY,
  epsilon_total numeric NOT NULL CHECK (epsilon_total >= 0),
  delta_total numeric NOT NULL CHECK (delta_total >= 0 AND delta_total < 1),
  epsilon_spent numeric NOT NULL DEFAULT 0,
  delta_spent numeric NOT NULL DEFAULT 0,
  renew_every interval CHECK (renew_every > interval '0'),
  period_start timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- One row per successful charge, never updated or deleted.
CREATE TABLE IF NOT EXISTS diffix.budget_ledger (
  id bigserial PRIMARY KEY,
  charged_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  roleid oid NOT NULL,
  role_name name NOT NULL,
  session_role name NOT NULL,
  epsilon numeric NOT NULL,
  delta numeric NOT NULL,
  mechanism text NOT NULL,
  sql text
);
-- As in the audit log (67_audit.sql): `sql` keeps at most audit_sql_max_bytes of the statement,
-- these its full length in bytes and sha256 (NULL in rows charged before they existed).
ALTER TABLE diffix.budget_ledger ADD COLUMN IF NOT EXISTS sql_bytes bigint;
ALTER TABLE diffix.budget_ledger ADD COLUMN IF NOT EXISTS sql_sha256 text;
ALTER TABLE diffix.privacy_budgets OWNER TO diffix_ledger;
ALTER TABLE diffix.budget_ledger OWNER TO diffix_ledger;
ALTER SEQUENCE diffix.budget_ledger_id_seq OWNER TO diffix_ledger;
REVOKE ALL ON diffix.privacy_budgets, diffix.budget_ledger FROM PUBLIC;

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
SET standard_conforming_strings = on
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
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
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
SET standard_conforming_strings = on
AS $$
  SELECT '''' || replace(replace(value, '\', '\\'), '''', '\''') || ''''
$$;

-- The loopback's connection string: the stored (or given) options, this database, the login role
-- and its password.
CREATE OR REPLACE FUNCTION diffix._ledger_connstr(options text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
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
SET standard_conforming_strings = on
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

-- The start of the budget period that contains `at`: periods of renew_every from period_start.
CREATE OR REPLACE FUNCTION diffix._budget_period(period_start timestamptz, renew_every interval,
                                                 at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
DECLARE
  start timestamptz := period_start;
  whole bigint;
BEGIN
  IF renew_every IS NULL OR at < start + renew_every THEN
    RETURN start;
  END IF;
  -- jump close (months count as 30 days here), then step exactly
  whole := floor(extract(epoch FROM at - start) / extract(epoch FROM renew_every))::bigint - 1;
  IF whole > 0 THEN
    start := start + renew_every * whole;
  END IF;
  WHILE start + renew_every <= at LOOP
    start := start + renew_every;
  END LOOP;
  WHILE start > at LOOP
    start := start - renew_every;
  END LOOP;
  RETURN start;
END
$$;

-- Runs on the loopback connection (as the ledger login role): one conditional UPDATE, so
-- concurrent charges on one budget serialize on its row and none overspends. Renews a budget
-- whose period has passed. Returns {"status": charged | exceeded | no_budget, remaining}.
DROP FUNCTION IF EXISTS diffix._ledger_spend(oid, name, name, numeric, numeric, text, text);
CREATE OR REPLACE FUNCTION diffix._ledger_spend(
  target oid, target_name name, session_role name, epsilon numeric, delta numeric,
  mechanism text, statement text, statement_bytes bigint, statement_sha256 text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
DECLARE
  budget record;
  at timestamptz := pg_catalog.clock_timestamp();
BEGIN
  IF epsilon IS NULL OR delta IS NULL OR epsilon < 0 OR delta < 0
     OR epsilon = 'NaN' OR delta = 'NaN' THEN
    RAISE EXCEPTION 'invalid charge' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE diffix.privacy_budgets p
  SET period_start = diffix._budget_period(p.period_start, p.renew_every, at),
      epsilon_spent = CASE WHEN diffix._budget_period(p.period_start, p.renew_every, at)
                                = p.period_start THEN p.epsilon_spent ELSE 0 END + epsilon,
      delta_spent = CASE WHEN diffix._budget_period(p.period_start, p.renew_every, at)
                              = p.period_start THEN p.delta_spent ELSE 0 END + delta
  WHERE p.roleid = target
    AND CASE WHEN diffix._budget_period(p.period_start, p.renew_every, at) = p.period_start
             THEN p.epsilon_spent ELSE 0 END + epsilon <= p.epsilon_total
    AND CASE WHEN diffix._budget_period(p.period_start, p.renew_every, at) = p.period_start
             THEN p.delta_spent ELSE 0 END + delta <= p.delta_total
  RETURNING p.* INTO budget;
  IF FOUND THEN
    INSERT INTO diffix.budget_ledger (roleid, role_name, session_role, epsilon, delta, mechanism,
                                      sql, sql_bytes, sql_sha256)
    VALUES (target, target_name, session_role, epsilon, delta, mechanism, statement,
            statement_bytes, statement_sha256);
    RETURN pg_catalog.jsonb_build_object('status', 'charged', 'epsilon_remaining',
                              budget.epsilon_total - budget.epsilon_spent,
                              'delta_remaining', budget.delta_total - budget.delta_spent)::text;
  END IF;
  SELECT * INTO budget FROM diffix._budget_now(target, at);
  IF NOT FOUND THEN
    RETURN '{"status": "no_budget"}';
  END IF;
  RETURN pg_catalog.jsonb_build_object('status', 'exceeded',
                            'epsilon_remaining', budget.epsilon_remaining,
                            'delta_remaining', budget.delta_remaining,
                            'renews_at', budget.renews_at)::text;
END
$$;

-- A budget as it stands at `at` (a period that has passed counts as renewed).
CREATE OR REPLACE FUNCTION diffix._budget_now(target oid, at timestamptz)
RETURNS TABLE (roleid oid, epsilon_total numeric, delta_total numeric, epsilon_spent numeric,
               delta_spent numeric, epsilon_remaining numeric, delta_remaining numeric,
               renews_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
  SELECT p.roleid, p.epsilon_total, p.delta_total, s.epsilon_spent, s.delta_spent,
         p.epsilon_total - s.epsilon_spent, p.delta_total - s.delta_spent,
         diffix._budget_period(p.period_start, p.renew_every, at) + p.renew_every
  FROM diffix.privacy_budgets p
  CROSS JOIN LATERAL (
    SELECT CASE WHEN diffix._budget_period(p.period_start, p.renew_every, at) = p.period_start
                THEN p.epsilon_spent ELSE 0 END AS epsilon_spent,
           CASE WHEN diffix._budget_period(p.period_start, p.renew_every, at) = p.period_start
                THEN p.delta_spent ELSE 0 END AS delta_spent) s
  WHERE target IS NULL OR p.roleid = target
$$;

-- Charges the role the session acts as (SET ROLE's role, else the session user; never an
-- argument) for one answer, durably, before returning what is left. Raises, spending nothing,
-- when the role has no budget or not enough of it. The ledger keeps at most
-- audit_sql_max_bytes of the statement (diffix._kept_text, 67_audit.sql) and 64 characters of
-- the mechanism.
CREATE OR REPLACE FUNCTION diffix._charge_budget(
  epsilon double precision, delta double precision, statement text, mechanism text,
  OUT epsilon_remaining double precision, OUT delta_remaining double precision)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
AS $$
DECLARE
  role_name name := diffix._invoking_role();
  target oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = role_name);
  kept record;
  outcome jsonb;
BEGIN
  IF epsilon IS NULL OR delta IS NULL OR NOT epsilon > 0 OR NOT delta >= 0
     OR epsilon = 'Infinity' OR delta >= 1 OR epsilon = 'NaN' OR delta = 'NaN' THEN
    RAISE EXCEPTION 'invalid privacy cost: epsilon %, delta %', epsilon, delta
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'epsilon must be a positive finite number and delta a number in [0, 1)';
  END IF;
  SELECT * INTO kept FROM diffix._kept_text(statement, diffix._audit_sql_max_bytes());
  outcome := diffix._loopback(pg_catalog.format(
    'SELECT diffix._ledger_spend(%s, %L, %L, %L::numeric, %L::numeric, %L, %L, %L::bigint, %L)',
    target, role_name, pg_catalog.session_user(), epsilon::numeric, delta::numeric,
    COALESCE(pg_catalog.left(mechanism, 64), 'dp'), kept.kept, kept.full_bytes,
    kept.sha256))::jsonb;
  IF outcome ->> 'status' = 'charged' THEN
    epsilon_remaining := (outcome ->> 'epsilon_remaining')::double precision;
    delta_remaining := (outcome ->> 'delta_remaining')::double precision;
    RETURN;
  ELSIF outcome ->> 'status' = 'no_budget' THEN
    RAISE EXCEPTION 'role "%" has no privacy budget', role_name
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'differentially private answers are paid for from a budget set per role',
            HINT = pg_catalog.format('an administrator sets one: '
                                     'CALL diffix.set_privacy_budget(%L, epsilon, delta)',
                                     role_name);
  END IF;
  RAISE EXCEPTION 'privacy budget exceeded: this query costs epsilon %, delta %; role "%" has '
                  'epsilon %, delta % left', epsilon, delta, role_name,
                  outcome ->> 'epsilon_remaining', outcome ->> 'delta_remaining'
    USING ERRCODE = 'program_limit_exceeded',
          DETAIL = 'nothing was spent',
          HINT = CASE WHEN outcome ->> 'renews_at' IS NOT NULL
                      THEN pg_catalog.format('ask for a smaller epsilon, or wait until the '
                                             'budget renews at %s', outcome ->> 'renews_at')
                      ELSE 'ask for a smaller epsilon, or ask an administrator for more budget' END;
END
$$;

-- Budgets: analysts see their own row, administrators every role's.
CREATE OR REPLACE FUNCTION diffix.privacy_budget()
RETURNS TABLE (role name, epsilon_total numeric, delta_total numeric, epsilon_spent numeric,
               delta_spent numeric, epsilon_remaining numeric, delta_remaining numeric,
               renews_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
AS $$
  SELECT r.rolname, b.epsilon_total, b.delta_total, b.epsilon_spent, b.delta_spent,
         b.epsilon_remaining, b.delta_remaining, b.renews_at
  FROM diffix._budget_now(NULL, clock_timestamp()) b JOIN pg_roles r ON r.oid = b.roleid
  WHERE diffix._is_admin(diffix._invoking_role()) OR r.rolname = diffix._invoking_role()
  ORDER BY r.rolname
$$;

-- Sets a role's budget totals (and renewal period); what was spent in the current period stays
-- spent. Administrators only. Ordinary transactional semantics: an admin's ROLLBACK undoes it.
CREATE OR REPLACE PROCEDURE diffix.set_privacy_budget(
  role_name text, epsilon double precision, delta double precision,
  renew_every interval DEFAULT NULL)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
AS $$
DECLARE
  target oid;
BEGIN
  IF NOT diffix._is_admin(diffix._invoking_role()) THEN
    RAISE EXCEPTION 'only superusers and members of diffix_admin can set privacy budgets'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT oid INTO target FROM pg_roles WHERE rolname = role_name;
  IF target IS NULL THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
  END IF;
  IF epsilon IS NULL OR NOT epsilon >= 0 OR epsilon = 'Infinity' OR epsilon = 'NaN' THEN
    RAISE EXCEPTION 'invalid epsilon %', epsilon
      USING ERRCODE = 'invalid_parameter_value', HINT = 'epsilon is a finite number >= 0';
  END IF;
  IF delta IS NULL OR NOT delta >= 0 OR NOT delta < 1 OR delta = 'NaN' THEN
    RAISE EXCEPTION 'invalid delta %', delta
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'delta is a number in [0, 1), typically below 1/(number of people)';
  END IF;
  IF renew_every IS NOT NULL AND NOT renew_every > interval '0' THEN
    RAISE EXCEPTION 'invalid renewal period %', renew_every
      USING ERRCODE = 'invalid_parameter_value', HINT = 'renew_every is a positive interval';
  END IF;
  INSERT INTO diffix.privacy_budgets AS p (roleid, epsilon_total, delta_total, renew_every)
  VALUES (target, epsilon::numeric, delta::numeric, renew_every)
  ON CONFLICT (roleid) DO UPDATE
    SET epsilon_total = EXCLUDED.epsilon_total, delta_total = EXCLUDED.delta_total,
        renew_every = EXCLUDED.renew_every,
        period_start = CASE WHEN p.renew_every IS NOT DISTINCT FROM EXCLUDED.renew_every
                            THEN p.period_start ELSE now() END;
END
$$;

-- What check_security reports about the ledger: anyone who could use the loopback connection or
-- act as diffix_ledger could rewrite budgets and the audit log.
CREATE OR REPLACE FUNCTION diffix._ledger_findings()
RETURNS TABLE (severity text, object text, finding text, fix text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
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

ALTER FUNCTION diffix._loopback(text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._ledger_probe(text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._ledger_spend(oid, name, name, numeric, numeric, text, text, bigint, text)
  OWNER TO diffix_ledger;
ALTER FUNCTION diffix._charge_budget(double precision, double precision, text, text)
  OWNER TO diffix_ledger;
ALTER FUNCTION diffix.privacy_budget() OWNER TO diffix_ledger;
ALTER PROCEDURE diffix.set_privacy_budget(text, double precision, double precision, interval)
  OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._loopback(text), diffix._ledger_probe(text),
  diffix._ledger_connstr(text), diffix._ledger_choose_link(),
  diffix._ledger_spend(oid, name, name, numeric, numeric, text, text, bigint, text),
  diffix._budget_now(oid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._loopback(text), diffix._ledger_connstr(text),
  diffix._ledger_spend(oid, name, name, numeric, numeric, text, text, bigint, text),
  diffix._budget_now(oid, timestamptz) TO diffix_ledger;
-- Charging spends the caller's own budget; only the gate (owner diffix_engine) calls it.
REVOKE ALL ON FUNCTION diffix._charge_budget(double precision, double precision, text, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._charge_budget(double precision, double precision, text, text)
  TO diffix_engine;
