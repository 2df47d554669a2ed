-- Row-level perturbation catalog. A table is perturbed for the `perturbed` level by a row here,
-- independent of its label in diffix.table_labels: a personal table can also be perturbed (Diffix
-- roles query it through the engine, perturbed roles read its view). Cell-key tables (sql/cellkey) carry the
-- label 'cellkey' there; the tables here are called microdata tables internally.

CREATE TABLE IF NOT EXISTS diffix.microdata_tables (
  relid oid PRIMARY KEY,
  row_key_attnum int2 NOT NULL,
  -- the table's name when first marked: part of every cell's noise input, so renames keep values
  table_tag text NOT NULL,
  view_schema name NOT NULL,
  view_name name NOT NULL,
  quasi_identifiers text[] NOT NULL DEFAULT '{}',
  next_slot int4 NOT NULL DEFAULT 0,  -- the next unused noise draw (pldiffix/perturb/expressions.py)
  marked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  UNIQUE (view_schema, view_name)
);

CREATE TABLE IF NOT EXISTS diffix.microdata_columns (
  relid oid NOT NULL REFERENCES diffix.microdata_tables (relid) ON DELETE CASCADE,
  attnum int2 NOT NULL,
  method text NOT NULL,
  params jsonb NOT NULL,
  PRIMARY KEY (relid, attnum)
);

-- The secret every cell's noise and every pseudonym is keyed with. Only the view owner reads it
-- (the views read it in a scalar subquery, with their owner's privileges); an install keeps it.
CREATE TABLE IF NOT EXISTS diffix.microdata_key (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  secret text NOT NULL CHECK (pg_catalog.length(secret) >= 32)
);
INSERT INTO diffix.microdata_key (secret)
SELECT pg_catalog.replace(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text,
                          '-', '')
ON CONFLICT (singleton) DO NOTHING;

REVOKE ALL ON diffix.microdata_tables, diffix.microdata_columns, diffix.microdata_key FROM PUBLIC;
-- Rules are no secret (the views' definitions show them); the key is.
GRANT SELECT ON diffix.microdata_tables, diffix.microdata_columns TO PUBLIC;
GRANT SELECT ON diffix.microdata_key TO diffix_perturb_owner;

CREATE SCHEMA IF NOT EXISTS diffix_perturbed;
REVOKE ALL ON SCHEMA diffix_perturbed FROM PUBLIC;
GRANT USAGE ON SCHEMA diffix_perturbed TO diffix_perturbed, diffix_admin;
