-- Settings. Database-wide values live in diffix.database_settings; session values live in the
-- server's Python (pldiffix.core.session) so that no GUC a user can SET influences anonymization.

-- PL/Python prefixes every error message with the Python exception's type ("plpy.Error: ...").
-- The public entry points are thin PL/pgSQL wrappers that re-raise such errors without it.
CREATE OR REPLACE FUNCTION diffix._reraise(state text, message text, detail text, hint text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  clean text := regexp_replace(message, '^((plpy|spiexceptions)\.\w+: )+', '');
BEGIN
  IF coalesce(detail, '') = '' AND coalesce(hint, '') = '' THEN
    RAISE EXCEPTION USING MESSAGE = clean, ERRCODE = state;
  ELSIF coalesce(hint, '') = '' THEN
    RAISE EXCEPTION USING MESSAGE = clean, ERRCODE = state, DETAIL = detail;
  ELSIF coalesce(detail, '') = '' THEN
    RAISE EXCEPTION USING MESSAGE = clean, ERRCODE = state, HINT = hint;
  ELSE
    RAISE EXCEPTION USING MESSAGE = clean, ERRCODE = state, DETAIL = detail, HINT = hint;
  END IF;
END
$$;

-- The role a SECURITY DEFINER function acts for: what SET ROLE chose, else the session user.
CREATE OR REPLACE FUNCTION diffix._invoking_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN pg_catalog.current_setting('role') = 'none'
              THEN pg_catalog.session_user()
              ELSE pg_catalog.current_setting('role')::name END
$$;

CREATE OR REPLACE FUNCTION diffix._is_admin(role_name name) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT COALESCE((SELECT r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'diffix_admin', 'MEMBER')
                   FROM pg_catalog.pg_roles r WHERE r.rolname = role_name), false)
$$;

-- The admin check of the SQL administrators-only definers: raises unless the role the caller acts
-- as is a superuser or a member of diffix_admin. For definers only (their owners may call it).
CREATE OR REPLACE FUNCTION diffix._require_admin(action text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT diffix._is_admin(diffix._invoking_role()) THEN
    RAISE EXCEPTION 'only superusers and members of diffix_admin can %', action
      USING ERRCODE = 'insufficient_privilege';
  END IF;
END
$$;

-- A role's OID by name, with a clear error when there is no such role.
CREATE OR REPLACE FUNCTION diffix._role_oid(role_name text) RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  found oid;
BEGIN
  SELECT r.oid INTO found FROM pg_catalog.pg_roles r WHERE r.rolname = role_name;
  IF found IS NULL THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
  END IF;
  RETURN found;
END
$$;
REVOKE ALL ON FUNCTION diffix._require_admin(text), diffix._role_oid(text) FROM PUBLIC;
-- for the definers that call them: those of superusers, the engine's and (66_ledger.sql) the
-- ledger's
GRANT EXECUTE ON FUNCTION diffix._require_admin(text), diffix._role_oid(text) TO diffix_engine;

-- Database-wide values without the salt, for invoker-rights code run by any role.
-- PL/pgSQL keeps the plan for the session (a SQL function's is made again in every statement
-- that calls it, and every answer reads the settings).
CREATE OR REPLACE FUNCTION diffix._database_settings() RETURNS TABLE (name text, value text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY SELECT s.name, s.value FROM diffix.database_settings s WHERE s.name <> 'salt';
END
$$;
ALTER FUNCTION diffix._database_settings() OWNER TO diffix_engine;

-- The salt, for administrators only.
CREATE OR REPLACE FUNCTION diffix._salt() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('read the salt');
  RETURN (SELECT s.value FROM diffix.database_settings s WHERE s.name = 'salt');
END
$$;
ALTER FUNCTION diffix._salt() OWNER TO diffix_engine;

CREATE OR REPLACE FUNCTION diffix.show_settings()
RETURNS TABLE (name text, setting text, source text, description text)
LANGUAGE plpython3u STABLE
AS $python$
#@load pldiffix.server
return server.show_settings(plpy)
$python$;

-- A definer, so that who may change what is decided against the catalog with pinned settings,
-- never by invoker-rights code whose SQL the caller's session can bend; the session values it
-- writes are what the gate reads.
CREATE OR REPLACE FUNCTION diffix._set(name text, value text) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.server
return server.set_setting(plpy, name, value)
$python$;
ALTER FUNCTION diffix._set(text, text) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._set(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._set(text, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix._configure(name text, value text) RETURNS void
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.server
server.configure(plpy, name, value)
$python$;

REVOKE ALL ON FUNCTION diffix._database_settings(), diffix._salt() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._database_settings(), diffix._salt() TO PUBLIC;
REVOKE ALL ON FUNCTION diffix._configure(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._configure(text, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix.set(name text, value text) RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  RETURN diffix._set(name, value);
--@reraise
END
$$;

CREATE OR REPLACE PROCEDURE diffix.configure(name text, value text)
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM diffix._configure(name, value);
--@reraise
END
$$;
