-- Group roles for the access levels, the administrators' role, and the engine role that owns the
-- anonymizing SECURITY DEFINER functions. Roles are cluster-wide; creating them is idempotent.
DO $roles$
DECLARE
  group_role text;
BEGIN
  FOREACH group_role IN ARRAY ARRAY['diffix_direct', 'diffix_anonymized_trusted',
                                    'diffix_anonymized_untrusted', 'diffix_anonymized_dp',
                                    'diffix_admin'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = group_role) THEN
      EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', group_role);
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'diffix_engine') THEN
    CREATE ROLE diffix_engine NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
      NOREPLICATION NOBYPASSRLS;
  END IF;
  -- The engine must stay a plain role whatever happened to it since the last install.
  ALTER ROLE diffix_engine NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
    NOREPLICATION NOBYPASSRLS;
END
$roles$;
