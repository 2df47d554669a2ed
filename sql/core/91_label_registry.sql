-- Once every folder has registered its labels and their metadata (sql/core/10_schema.sql):
-- every table label must be a registered one (older installs listed them in a CHECK constraint
-- and may hold labels a folder registers only now, so the foreign key comes here), and every
-- registered metadata table must exist with the relid columns it names.
DO $registry$
DECLARE
  missing text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_constraint c
                 WHERE c.conrelid OPERATOR(pg_catalog.=) 'diffix.table_labels'::pg_catalog.regclass
                   AND c.conname OPERATOR(pg_catalog.=) 'table_labels_label_fkey') THEN
    ALTER TABLE diffix.table_labels ADD CONSTRAINT table_labels_label_fkey
      FOREIGN KEY (label) REFERENCES diffix.registered_labels (label);
  END IF;
  SELECT pg_catalog.format('diffix.%I.%I', m.metadata_table, c) INTO missing
  FROM diffix.label_metadata m, pg_catalog.unnest(m.relid_columns) c
  WHERE NOT EXISTS (
    SELECT FROM pg_catalog.pg_attribute a
    WHERE a.attrelid OPERATOR(pg_catalog.=)
            pg_catalog.to_regclass(pg_catalog.format('diffix.%I', m.metadata_table))
      AND a.attname OPERATOR(pg_catalog.=) c
      AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.oid'::pg_catalog.regtype
      AND NOT a.attisdropped)
  LIMIT 1;
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'diffix.label_metadata names %, which is not an oid column', missing;
  END IF;
END
$registry$;
