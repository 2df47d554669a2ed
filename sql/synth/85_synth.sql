-- DP synthetic twins of personal tables (docs/synthetic.md): diffix.synthesize publishes one as
-- an ordinary table in diffix_synthetic, paid from the publishing administrator's own budget
-- and written to the audit log; analysts of every level read it like any public table.

-- The twins' schema belongs to the engine, which creates them; analysts' levels may use it.
CREATE SCHEMA IF NOT EXISTS diffix_synthetic;
ALTER SCHEMA diffix_synthetic OWNER TO diffix_engine;
REVOKE ALL ON SCHEMA diffix_synthetic FROM PUBLIC;
GRANT USAGE ON SCHEMA diffix_synthetic TO diffix_anonymized_trusted, diffix_anonymized_untrusted,
  diffix_anonymized_dp, diffix_admin;

-- The twins there now: what each was made from and how (column plans, tree, budget). Public:
-- bins and categories are declared metadata, like diffix.dp_columns; no count is stored.
CREATE TABLE IF NOT EXISTS diffix.synthetic_tables (
  name name PRIMARY KEY,
  source_relid oid NOT NULL,
  source_name text NOT NULL,
  epsilon double precision NOT NULL,
  delta double precision NOT NULL,
  rho double precision NOT NULL,
  rows bigint NOT NULL,
  model jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  created_by name NOT NULL
);
-- Every publication, replaced twins included: a table synthesized again is told what it spent.
CREATE TABLE IF NOT EXISTS diffix.synthetic_publications (
  id bigserial PRIMARY KEY,
  name name NOT NULL,
  source_relid oid NOT NULL,
  epsilon double precision NOT NULL,
  delta double precision NOT NULL,
  published_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  published_by name NOT NULL
);
ALTER TABLE diffix.synthetic_tables OWNER TO diffix_engine;
ALTER TABLE diffix.synthetic_publications OWNER TO diffix_engine;
ALTER SEQUENCE diffix.synthetic_publications_id_seq OWNER TO diffix_engine;
REVOKE ALL ON diffix.synthetic_tables, diffix.synthetic_publications FROM PUBLIC;
GRANT SELECT ON diffix.synthetic_tables, diffix.synthetic_publications TO PUBLIC;

-- The audit row of a publication. diffix._audit_record leaves administrators out; a
-- publication is logged whoever makes it. Only the synthesis (owner diffix_engine) calls it.
CREATE OR REPLACE FUNCTION diffix._audit_publication(
  mechanism text, statement text, accepted boolean, reason text, rows_returned bigint,
  epsilon double precision, delta double precision)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  kept record;
BEGIN
  SELECT * INTO kept FROM diffix._kept_text(statement, diffix._audit_sql_max_bytes());
  PERFORM diffix._loopback(pg_catalog.format(
    'SELECT diffix._audit_append(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
    pg_catalog.session_user(), diffix._invoking_role(), 'admin',
    COALESCE(pg_catalog.left(mechanism, 64), 'unknown'), kept.kept, kept.full_bytes,
    kept.sha256, COALESCE(accepted, false), (diffix._kept_text(reason, 1024)).kept,
    rows_returned, epsilon::numeric, delta::numeric));
END
$$;
ALTER FUNCTION diffix._audit_publication(text, text, boolean, text, bigint, double precision,
                                         double precision) OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._audit_publication(text, text, boolean, text, bigint,
                                                 double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._audit_publication(text, text, boolean, text, bigint,
                                                    double precision, double precision)
  TO diffix_engine;

DROP FUNCTION IF EXISTS diffix._synthesize(oid, double precision, double precision, text, bigint,
                                           text[], jsonb);
CREATE FUNCTION diffix._synthesize(
  relid oid, epsilon double precision, delta double precision, name text, "rows" bigint,
  columns text[], options jsonb)
RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.synth.engine
return engine.synthesize(plpy, relid, epsilon, delta, name, rows, columns, options)
$python$;
ALTER FUNCTION diffix._synthesize(oid, double precision, double precision, text, bigint, text[],
                                  jsonb) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._synthesize(oid, double precision, double precision, text, bigint,
                                          text[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._synthesize(oid, double precision, double precision, text,
                                             bigint, text[], jsonb) TO PUBLIC;

-- Publishes a DP synthetic twin of a personal table as diffix_synthetic.<name> (replacing a
-- twin of that name). Administrators only; spends (epsilon, delta) of their own budget.
CREATE OR REPLACE PROCEDURE diffix.synthesize(
  table_name text, epsilon double precision, delta double precision, name text,
  "rows" bigint DEFAULT NULL, columns text[] DEFAULT NULL, options jsonb DEFAULT '{}')
LANGUAGE plpgsql
AS $$
DECLARE
  summary text;
BEGIN
  summary := diffix._synthesize(diffix._resolve_table(table_name), epsilon, delta, name, "rows",
                                columns, options);
  RAISE NOTICE '%', summary;
--@reraise
END
$$;

-- k rows drawn at random from the newest published twin of a personal table, as jsonb. Free: a
-- twin is public once published (its privacy cost was paid then). diffix.dp_sample(table, k,
-- epsilon [, delta]) below samples the table itself instead, charged. Caller's rights: it reads
-- the twin with the caller's own SELECT privilege.
CREATE OR REPLACE FUNCTION diffix.dp_sample(table_name text, k integer)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  source oid := diffix._resolve_table(table_name);
  twin name;
BEGIN
  IF k IS NULL OR k < 1 OR k > 1000000 THEN
    RAISE EXCEPTION 'k must be between 1 and 1000000, not %', k
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT s.name INTO twin FROM diffix.synthetic_tables s
  WHERE s.source_relid OPERATOR(pg_catalog.=) source
  ORDER BY s.created_at DESC LIMIT 1;
  IF twin IS NULL THEN
    RAISE EXCEPTION 'no synthetic twin of % is published', source::regclass
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'samples come from a published DP synthetic twin, for free',
            HINT = 'an administrator publishes one: CALL diffix.synthesize(table, epsilon, '
                   'delta, name)';
  END IF;
  RETURN QUERY EXECUTE pg_catalog.format(
    'SELECT pg_catalog.to_jsonb(t) FROM diffix_synthetic.%I AS t '
    'ORDER BY pg_catalog.random() LIMIT $1', twin) USING k;
END
$$;

-- k synthetic rows of a personal table, as jsonb, paid from the caller's own budget: a tree
-- model fitted to noisy marginals of the table on each call (docs/synthetic.md). Every refusal
-- comes before the charge, the charge before any personal row is read; each call is audited.
CREATE OR REPLACE FUNCTION diffix._dp_sample(
  relid oid, k integer, epsilon double precision, delta double precision)
RETURNS SETOF jsonb
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.synth.engine
return engine.dp_sample(plpy, relid, k, epsilon, delta)
$python$;
ALTER FUNCTION diffix._dp_sample(oid, integer, double precision, double precision)
  OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._dp_sample(oid, integer, double precision, double precision)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._dp_sample(oid, integer, double precision, double precision)
  TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix.dp_sample(
  table_name text, k integer, epsilon double precision, delta double precision DEFAULT 1e-6)
RETURNS SETOF jsonb
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  RETURN QUERY SELECT * FROM diffix._dp_sample(diffix._resolve_table(table_name), k, epsilon,
                                               delta);
--@reraise
END
$$;

-- A twin against its source, exactly (administrators only): TVD of every one-way and two-way
-- marginal over the synthesis's cells, correlations of binned columns, exact-match share.
CREATE OR REPLACE FUNCTION diffix._synthetic_report(name text)
RETURNS TABLE (metric text, column_name text, other_column text, "real" float8,
               synthetic float8, value float8)
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.synth.engine
return engine.synthetic_report(plpy, name)
$python$;
ALTER FUNCTION diffix._synthetic_report(text) OWNER TO diffix_engine;
REVOKE ALL ON FUNCTION diffix._synthetic_report(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._synthetic_report(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix.synthetic_report(name text)
RETURNS TABLE (metric text, column_name text, other_column text, "real" float8,
               synthetic float8, value float8)
LANGUAGE plpgsql
AS $$
BEGIN
  RETURN QUERY SELECT * FROM diffix._synthetic_report(name);
--@reraise
END
$$;
