-- The audit log: one row per analyst query through any entry point, accepted or refused, written
-- over the ledger's loopback connection (66_ledger.sql) so that a ROLLBACK does not erase it.
-- Who asked is taken from the session (session_user and the role SET ROLE chose) by the writer
-- itself, never from its arguments. Queries of administrators (superusers, members of
-- diffix_admin) are not logged.

CREATE TABLE IF NOT EXISTS diffix.audit_log (
  id bigserial PRIMARY KEY,
  logged_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  session_role name NOT NULL,
  effective_role name NOT NULL,
  level text,
  mechanism text NOT NULL,
  sql text,
  accepted boolean NOT NULL,
  reason text,
  rows_returned bigint,
  epsilon numeric,
  delta numeric
);
CREATE INDEX IF NOT EXISTS audit_log_logged_at ON diffix.audit_log (logged_at);
ALTER TABLE diffix.audit_log OWNER TO diffix_ledger;
ALTER SEQUENCE diffix.audit_log_id_seq OWNER TO diffix_ledger;
REVOKE ALL ON diffix.audit_log FROM PUBLIC;

-- Runs on the loopback connection (as the ledger login role).
CREATE OR REPLACE FUNCTION diffix._audit_append(
  session_role name, effective_role name, level text, mechanism text, statement text,
  accepted boolean, reason text, rows_returned bigint, epsilon numeric, delta numeric)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $$
  INSERT INTO diffix.audit_log (session_role, effective_role, level, mechanism, sql, accepted,
                                reason, rows_returned, epsilon, delta)
  VALUES (session_role, effective_role, level, mechanism, statement, accepted, reason,
          rows_returned, epsilon, delta)
  RETURNING 'logged'
$$;

-- Appends one row for the role the session acts as, durably, before returning. Every role may
-- call it, but only ever about itself.
CREATE OR REPLACE FUNCTION diffix._audit_record(
  level text, mechanism text, statement text, accepted boolean, reason text DEFAULT NULL,
  rows_returned bigint DEFAULT NULL, epsilon double precision DEFAULT NULL,
  delta double precision DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
AS $$
DECLARE
  role_name name := diffix._invoking_role();
BEGIN
  IF diffix._is_admin(role_name) THEN
    RETURN;
  END IF;
  PERFORM diffix._loopback(format(
    'SELECT diffix._audit_append(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
    session_user, role_name, level, COALESCE(mechanism, 'unknown'), statement,
    COALESCE(accepted, false), reason, rows_returned, epsilon::numeric, delta::numeric));
END
$$;

-- The log, for administrators: every row, or one role's (as session or effective role), since a
-- time.
CREATE OR REPLACE FUNCTION diffix.show_audit(role_name name DEFAULT NULL,
                                             since timestamptz DEFAULT NULL)
RETURNS SETOF diffix.audit_log
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET backslash_quote = safe_encoding
AS $$
BEGIN
  IF NOT diffix._is_admin(diffix._invoking_role()) THEN
    RAISE EXCEPTION 'only superusers and members of diffix_admin can read the audit log'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN QUERY
    SELECT * FROM diffix.audit_log a
    WHERE (role_name IS NULL OR a.effective_role = role_name OR a.session_role = role_name)
      AND (since IS NULL OR a.logged_at >= since)
    ORDER BY a.id;
END
$$;

ALTER FUNCTION diffix._audit_append(name, name, text, text, text, boolean, text, bigint, numeric,
                                    numeric) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._audit_record(text, text, text, boolean, text, bigint, double precision,
                                    double precision) OWNER TO diffix_ledger;
ALTER FUNCTION diffix.show_audit(name, timestamptz) OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._audit_append(name, name, text, text, text, boolean, text, bigint,
                                            numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._audit_append(name, name, text, text, text, boolean, text,
                                               bigint, numeric, numeric) TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._audit_record(text, text, text, boolean, text, bigint,
                                            double precision, double precision) FROM PUBLIC;
-- Only the gate (owner diffix_engine) writes rows: an analyst cannot add any.
GRANT EXECUTE ON FUNCTION diffix._audit_record(text, text, text, boolean, text, bigint,
                                               double precision, double precision) TO diffix_engine;
