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
  IF NOT diffix._is_admin(diffix._invoking_role()) THEN
    RAISE EXCEPTION 'only superusers and members of diffix_admin can read the salt'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN (SELECT s.value FROM diffix.database_settings s WHERE s.name = 'salt');
END
$$;
ALTER FUNCTION diffix._salt() OWNER TO diffix_engine;

CREATE OR REPLACE FUNCTION diffix.show_settings()
RETURNS TABLE (name text, setting text, source text, description text)
LANGUAGE plpython3u STABLE
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.show_settings(plpy)
$python$;

-- A definer, so that who may change what is decided against the catalog with pinned settings,
-- never by invoker-rights code whose SQL the caller's session can bend; the session values it
-- writes are what the gate reads.
CREATE OR REPLACE FUNCTION diffix._set(name text, value text) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
return server.set_setting(plpy, name, value)
$python$;
ALTER FUNCTION diffix._set(text, text) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._set(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._set(text, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix._configure(name text, value text) RETURNS void
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
import sys
if "pldiffix.server" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from pldiffix import server
server.configure(plpy, name, value)
$python$;

REVOKE ALL ON FUNCTION diffix._database_settings(), diffix._salt() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._database_settings(), diffix._salt() TO PUBLIC;
REVOKE ALL ON FUNCTION diffix._configure(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._configure(text, text) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix.set(name text, value text) RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  message text; detail text; hint text;
BEGIN
  RETURN diffix._set(name, value);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT;
  PERFORM diffix._reraise(SQLSTATE, message, detail, hint);
END
$$;

CREATE OR REPLACE PROCEDURE diffix.configure(name text, value text)
LANGUAGE plpgsql
AS $$
DECLARE
  message text; detail text; hint text;
BEGIN
  PERFORM diffix._configure(name, value);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT;
  PERFORM diffix._reraise(SQLSTATE, message, detail, hint);
END
$$;
