-- The audit log: one row per analyst query through any entry point, accepted or refused, written
-- over the ledger's loopback connection (66_ledger.sql) so that a ROLLBACK does not erase it.
-- Who asked is taken from the session (session_user and the role SET ROLE chose) by the writer
-- itself, never from its arguments. Queries of administrators (superusers, members of
-- diffix_admin) are not logged.
--
-- What an analyst can make the log (and the ledger) store is bounded per row: the statement's
-- text up to audit_sql_max_bytes (with its full length and sha256), a refusal's reason up to
-- 1 KiB, level and mechanism up to 64 characters. The definer functions cut them, so no caller
-- can bypass it.

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
-- The statement's full length in bytes and the sha256 of those bytes (hex): `sql` keeps at most
-- audit_sql_max_bytes of it. NULL in rows logged before these columns existed.
ALTER TABLE diffix.audit_log ADD COLUMN IF NOT EXISTS sql_bytes bigint;
ALTER TABLE diffix.audit_log ADD COLUMN IF NOT EXISTS sql_sha256 text;
CREATE INDEX IF NOT EXISTS audit_log_logged_at ON diffix.audit_log (logged_at);
ALTER TABLE diffix.audit_log OWNER TO diffix_ledger;
ALTER SEQUENCE diffix.audit_log_id_seq OWNER TO diffix_ledger;
REVOKE ALL ON diffix.audit_log FROM PUBLIC;

-- How many bytes of a statement the audit log and the ledger keep: the database-wide setting
-- audit_sql_max_bytes (diffix.configure), 8 KiB by default, never more than 1 MiB.
CREATE OR REPLACE FUNCTION diffix._audit_sql_max_bytes() RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT COALESCE((SELECT LEAST(s.value::pg_catalog.int4, 1048576)
                   FROM diffix._database_settings() s
                   WHERE s.name = 'audit_sql_max_bytes' AND s.value ~ '^[0-9]{1,7}$'), 8192)
$$;

-- A text as the log keeps it: its first max_bytes bytes (whole characters, in the database
-- encoding), its full length in bytes and the sha256 of all its bytes (hex).
CREATE OR REPLACE FUNCTION diffix._kept_text(value text, max_bytes integer,
                                             OUT kept text, OUT full_bytes bigint,
                                             OUT sha256 text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  cap integer := GREATEST(COALESCE(max_bytes, 0), 0);
BEGIN
  IF value IS NULL THEN
    RETURN;
  END IF;
  full_bytes := pg_catalog.octet_length(value);
  sha256 := pg_catalog.encode(pg_catalog.sha256(
    pg_catalog.convert_to(value, pg_catalog.getdatabaseencoding())), 'hex');
  kept := value;
  IF full_bytes > cap THEN
    -- at most cap characters, then whole characters off the end until it fits: each round drops
    -- at least a quarter of the excess (a character has at most 4 bytes)
    kept := pg_catalog.left(value, cap);
    WHILE pg_catalog.octet_length(kept) > cap LOOP
      kept := pg_catalog.left(kept, pg_catalog.length(kept)
                                    - (pg_catalog.octet_length(kept) - cap + 3) / 4);
    END LOOP;
  END IF;
END
$$;

-- Text as a terminal shows it faithfully: control characters (C0, DEL, C1), the bidirectional
-- and other invisible formatting characters, line and paragraph separators, and the backslash
-- itself are written as escapes (\n, \r, \t, \\, \xHH, \uHHHH), so that no stored text can move
-- the cursor, erase or reorder what is shown, or pass for another row. Backslashes are made with
-- chr(92): the body reads the same whatever standard_conforming_strings says.
CREATE OR REPLACE FUNCTION diffix._visible(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  backslash text := pg_catalog.chr(92);
  unsafe text := pg_catalog.chr(1) || '-' || pg_catalog.chr(31) || pg_catalog.chr(127)
                 || backslash || backslash;
  shown text;
BEGIN
  IF pg_catalog.getdatabaseencoding() = 'UTF8' THEN
    unsafe := unsafe || pg_catalog.chr(128) || '-' || pg_catalog.chr(159)  -- C1
              || pg_catalog.chr(1564)                                     -- U+061C ALM
              || pg_catalog.chr(8203) || '-' || pg_catalog.chr(8207)      -- U+200B-U+200F
              || pg_catalog.chr(8232) || '-' || pg_catalog.chr(8238)      -- U+2028-U+202E
              || pg_catalog.chr(8288) || '-' || pg_catalog.chr(8303)      -- U+2060-U+206F
              || pg_catalog.chr(65279);                                   -- U+FEFF
  ELSIF pg_catalog.pg_encoding_max_length(
          pg_catalog.pg_char_to_encoding(pg_catalog.getdatabaseencoding())) = 1 THEN
    unsafe := unsafe || pg_catalog.chr(128) || '-' || pg_catalog.chr(159);
  END IF;
  IF value !~ ('[' || unsafe || ']') THEN
    RETURN value;
  END IF;
  SELECT pg_catalog.string_agg(
           r.m[1] || CASE
             WHEN r.m[2] = '' THEN ''
             WHEN pg_catalog.ascii(r.m[2]) = 9 THEN backslash || 't'
             WHEN pg_catalog.ascii(r.m[2]) = 10 THEN backslash || 'n'
             WHEN pg_catalog.ascii(r.m[2]) = 13 THEN backslash || 'r'
             WHEN pg_catalog.ascii(r.m[2]) = 92 THEN backslash || backslash
             WHEN pg_catalog.ascii(r.m[2]) < 256
               THEN backslash || 'x'
                    || pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.ascii(r.m[2])), 2, '0')
             ELSE backslash || 'u'
                  || pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.ascii(r.m[2])), 4, '0')
           END, '' ORDER BY r.n)
    INTO shown
    FROM pg_catalog.regexp_matches(value, '([^' || unsafe || ']*)([' || unsafe || ']?)', 'g')
         WITH ORDINALITY AS r(m, n);
  RETURN COALESCE(shown, '');
END
$$;

-- Runs on the loopback connection (as the ledger login role).
DROP FUNCTION IF EXISTS diffix._audit_append(name, name, text, text, text, boolean, text, bigint,
                                             numeric, numeric);
CREATE OR REPLACE FUNCTION diffix._audit_append(
  session_role name, effective_role name, level text, mechanism text, statement text,
  statement_bytes bigint, statement_sha256 text, accepted boolean, reason text,
  rows_returned bigint, epsilon numeric, delta numeric)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO diffix.audit_log (session_role, effective_role, level, mechanism, sql, sql_bytes,
                                sql_sha256, accepted, reason, rows_returned, epsilon, delta)
  VALUES (session_role, effective_role, level, mechanism, statement, statement_bytes,
          statement_sha256, accepted, reason, rows_returned, epsilon, delta)
  RETURNING 'logged'
$$;

-- Appends one row for the role the session acts as, durably, before returning. Every role may
-- call it, but only ever about itself, and only ever a bounded row.
CREATE OR REPLACE FUNCTION diffix._audit_record(
  level text, mechanism text, statement text, accepted boolean, reason text DEFAULT NULL,
  rows_returned bigint DEFAULT NULL, epsilon double precision DEFAULT NULL,
  delta double precision DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  role_name name := diffix._invoking_role();
  kept record;
BEGIN
  IF diffix._is_admin(role_name) THEN
    RETURN;
  END IF;
  SELECT * INTO kept FROM diffix._kept_text(statement, diffix._audit_sql_max_bytes());
  PERFORM diffix._loopback(pg_catalog.format(
    'SELECT diffix._audit_append(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
    pg_catalog.session_user(), role_name, pg_catalog.left(level, 64),
    COALESCE(pg_catalog.left(mechanism, 64), 'unknown'), kept.kept, kept.full_bytes,
    kept.sha256, COALESCE(accepted, false), (diffix._kept_text(reason, 1024)).kept,
    rows_returned, epsilon::numeric, delta::numeric));
END
$$;

-- The log, for administrators: every row, or one role's (as session or effective role), since a
-- time. Text columns are rendered visibly (diffix._visible); diffix.audit_log keeps them raw.
DO $drop$
BEGIN
  -- it returned SETOF diffix.audit_log before
  IF EXISTS (SELECT FROM pg_catalog.pg_proc p
             WHERE p.oid = pg_catalog.to_regprocedure('diffix.show_audit(name, timestamptz)')
               AND p.prorettype = pg_catalog.to_regtype('diffix.audit_log')) THEN
    DROP FUNCTION diffix.show_audit(name, timestamptz);
  END IF;
END
$drop$;
CREATE OR REPLACE FUNCTION diffix.show_audit(role_name name DEFAULT NULL,
                                             since timestamptz DEFAULT NULL)
RETURNS TABLE (id bigint, logged_at timestamptz, session_role text, effective_role text,
               level text, mechanism text, sql text, sql_bytes bigint, sql_sha256 text,
               accepted boolean, reason text, rows_returned bigint, epsilon numeric,
               delta numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  PERFORM diffix._require_admin('read the audit log');
  RETURN QUERY
    SELECT a.id, a.logged_at, diffix._visible(a.session_role::pg_catalog.text),
           diffix._visible(a.effective_role::pg_catalog.text), diffix._visible(a.level),
           diffix._visible(a.mechanism), diffix._visible(a.sql), a.sql_bytes, a.sql_sha256,
           a.accepted, diffix._visible(a.reason), a.rows_returned, a.epsilon, a.delta
    FROM diffix.audit_log a
    WHERE (show_audit.role_name IS NULL OR a.effective_role = show_audit.role_name
           OR a.session_role = show_audit.role_name)
      AND (show_audit.since IS NULL OR a.logged_at >= show_audit.since)
    ORDER BY a.id;
END
$$;

-- How large the audit log and the ledger are, for administrators (pldiffix status).
CREATE OR REPLACE FUNCTION diffix.audit_storage()
RETURNS TABLE (relation text, row_count bigint, total_bytes bigint, total_size text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('read the audit log''s size');
  RETURN QUERY
    SELECT 'diffix.audit_log', (SELECT pg_catalog.count(*) FROM diffix.audit_log),
           pg_catalog.pg_total_relation_size('diffix.audit_log'::pg_catalog.regclass),
           pg_catalog.pg_size_pretty(
             pg_catalog.pg_total_relation_size('diffix.audit_log'::pg_catalog.regclass))
    UNION ALL
    SELECT 'diffix.budget_ledger', (SELECT pg_catalog.count(*) FROM diffix.budget_ledger),
           pg_catalog.pg_total_relation_size('diffix.budget_ledger'::pg_catalog.regclass),
           pg_catalog.pg_size_pretty(
             pg_catalog.pg_total_relation_size('diffix.budget_ledger'::pg_catalog.regclass));
END
$$;

ALTER FUNCTION diffix._audit_sql_max_bytes() OWNER TO diffix_ledger;
ALTER FUNCTION diffix._kept_text(text, integer) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._visible(text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._audit_append(name, name, text, text, text, bigint, text, boolean, text,
                                    bigint, numeric, numeric) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._audit_record(text, text, text, boolean, text, bigint, double precision,
                                    double precision) OWNER TO diffix_ledger;
ALTER FUNCTION diffix.show_audit(name, timestamptz) OWNER TO diffix_ledger;
ALTER FUNCTION diffix.audit_storage() OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._audit_append(name, name, text, text, text, bigint, text, boolean,
                                            text, bigint, numeric, numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._audit_append(name, name, text, text, text, bigint, text,
                                               boolean, text, bigint, numeric, numeric)
  TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._audit_record(text, text, text, boolean, text, bigint,
                                            double precision, double precision) FROM PUBLIC;
-- Only the gate (owner diffix_engine) writes rows: an analyst cannot add any.
GRANT EXECUTE ON FUNCTION diffix._audit_record(text, text, text, boolean, text, bigint,
                                               double precision, double precision) TO diffix_engine;
