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

-- The table labels there are, each registered once by the folder it belongs to: core's here,
-- a mechanism's in its own folder (sql/cellkey/90_tbe.sql). A protected label keeps analysts
-- from the table's rows (the grants refused, check_security, the proxy), and
-- diffix.protected_tables lists the tables it is on: the one list of protected labels.
CREATE TABLE IF NOT EXISTS diffix.registered_labels (
  label text PRIMARY KEY,
  protected boolean NOT NULL
);
-- Registers a table label (install time only: the installer runs it, nobody else may).
CREATE OR REPLACE PROCEDURE diffix._register_label(label text, protected boolean)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  INSERT INTO diffix.registered_labels (label, protected) VALUES (label, protected)
  ON CONFLICT ON CONSTRAINT registered_labels_pkey DO UPDATE SET protected = EXCLUDED.protected;
END;
REVOKE ALL ON PROCEDURE diffix._register_label(text, boolean) FROM PUBLIC;
CALL diffix._register_label('personal', protected => true);
CALL diffix._register_label('public', protected => false);

-- Table labels, keyed by OID so that renames keep working. A label must be registered: the
-- foreign key is added by sql/core/91_label_registry.sql, once every folder has registered its own.
CREATE TABLE IF NOT EXISTS diffix.table_labels (
  relid oid PRIMARY KEY,
  label text NOT NULL
);
-- Older installs listed the labels in a CHECK constraint, and called the cell-key label
-- 'perturbed', which now names the row-level access level only: relabel their tables. The
-- trigger that forgot a table's configuration when it was relabeled is dropped first (it would
-- forget it here); the one relabel trigger of sql/core/50_labels.sql replaces it.
ALTER TABLE diffix.table_labels DROP CONSTRAINT IF EXISTS table_labels_label_check;
DROP TRIGGER IF EXISTS forget_perturbation ON diffix.table_labels;
UPDATE diffix.table_labels SET label = 'cellkey' WHERE label = 'perturbed';
-- They also had a relabel trigger per folder.
DROP TRIGGER IF EXISTS forget_dp_metadata ON diffix.table_labels;
DROP TRIGGER IF EXISTS forget_unique_units ON diffix.table_labels;
DROP TRIGGER IF EXISTS forget_dp_unit_paths ON diffix.table_labels;
DROP FUNCTION IF EXISTS diffix._forget_perturbation(), diffix._forget_dp_metadata(),
  diffix._forget_unique_units(), diffix._forget_dp_unit_paths();

CREATE OR REPLACE VIEW diffix.protected_tables AS
  SELECT l.relid, l.label FROM diffix.table_labels l
  JOIN diffix.registered_labels r ON r.label = l.label WHERE r.protected;

-- Metadata that goes with a label: when a table's label changes to another, its rows in each
-- table registered here (in schema diffix, found by the relid columns named) are deleted
-- (diffix._forget_on_relabel, sql/core/50_labels.sql). Each folder registers its own tables.
CREATE TABLE IF NOT EXISTS diffix.label_metadata (
  metadata_table name PRIMARY KEY,
  label text NOT NULL REFERENCES diffix.registered_labels (label),
  relid_columns name[] NOT NULL CHECK (cardinality(relid_columns) > 0)
);
CREATE OR REPLACE PROCEDURE diffix._register_label_metadata(
  metadata_table name, label text, VARIADIC relid_columns name[])
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  INSERT INTO diffix.label_metadata (metadata_table, label, relid_columns)
  VALUES (metadata_table, label, relid_columns)
  ON CONFLICT ON CONSTRAINT label_metadata_pkey DO UPDATE
    SET label = EXCLUDED.label, relid_columns = EXCLUDED.relid_columns;
END;
REVOKE ALL ON PROCEDURE diffix._register_label_metadata(name, text, name[]) FROM PUBLIC;

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
GRANT SELECT ON diffix.installation, diffix.registered_labels, diffix.table_labels,
  diffix.protected_tables, diffix.label_metadata, diffix.column_labels TO PUBLIC;
GRANT SELECT ON diffix.database_settings TO diffix_engine;
