-- The diffix schema and its catalog tables. Tables are created only if missing so that an
-- upgrade keeps every label and setting.
CREATE SCHEMA IF NOT EXISTS diffix;
REVOKE ALL ON SCHEMA diffix FROM PUBLIC;
GRANT USAGE ON SCHEMA diffix TO PUBLIC;

CREATE TABLE IF NOT EXISTS diffix.installation (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version text NOT NULL,
  installed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  upgraded_at timestamptz
);

-- Table labels, keyed by OID so that renames keep working.
CREATE TABLE IF NOT EXISTS diffix.table_labels (
  relid oid PRIMARY KEY,
  label text NOT NULL CHECK (label IN ('personal', 'public', 'cellkey'))
);
-- 'cellkey' (cell-key or Laplace tables, sql/cellkey/90_tbe.sql) came later: widen older installs.
-- Older installs called that label 'perturbed', which now names the row-level access level only:
-- relabel their tables. The trigger that forgets a table's configuration when it is relabeled is
-- dropped first (an old one would forget it here); sql/cellkey/90_tbe.sql creates it again.
ALTER TABLE diffix.table_labels DROP CONSTRAINT IF EXISTS table_labels_label_check;
DROP TRIGGER IF EXISTS forget_perturbation ON diffix.table_labels;
UPDATE diffix.table_labels SET label = 'cellkey' WHERE label = 'perturbed';
ALTER TABLE diffix.table_labels ADD CONSTRAINT table_labels_label_check
  CHECK (label IN ('personal', 'public', 'cellkey'));

-- Column labels: AID columns of personal tables and columns untrusted users cannot filter on.
CREATE TABLE IF NOT EXISTS diffix.column_labels (
  relid oid NOT NULL REFERENCES diffix.table_labels (relid) ON DELETE CASCADE,
  attnum int2 NOT NULL,
  label text NOT NULL CHECK (label IN ('aid', 'not_filterable')),
  PRIMARY KEY (relid, attnum)
);

-- Database-wide setting values; the salt among them. Readable by the engine and superusers only.
CREATE TABLE IF NOT EXISTS diffix.database_settings (
  name text PRIMARY KEY,
  value text NOT NULL
);

REVOKE ALL ON ALL TABLES IN SCHEMA diffix FROM PUBLIC;
GRANT SELECT ON diffix.installation, diffix.table_labels, diffix.column_labels TO PUBLIC;
GRANT SELECT ON diffix.database_settings TO diffix_engine;
