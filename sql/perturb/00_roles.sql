-- Row-level perturbation (docs/perturbation.md): the group role of the `perturbed` access level,
-- whose members read the perturbed views only, and the role that owns those views. The owner is
-- the only role besides superusers that reads the base tables and the perturbation key.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'diffix_perturbed') THEN
    CREATE ROLE diffix_perturbed NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'diffix_perturb_owner') THEN
    CREATE ROLE diffix_perturb_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
      NOREPLICATION NOBYPASSRLS;
  END IF;
  ALTER ROLE diffix_perturb_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
    NOREPLICATION NOBYPASSRLS;
END
$roles$;
