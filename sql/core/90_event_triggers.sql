-- The event triggers of 70_security.sql, created once every folder is applied: their functions
-- read the catalogs of several folders (labels, row-level perturbation). An upgrade keeps the
-- ones it finds until here, in the same transaction.
DROP EVENT TRIGGER IF EXISTS diffix_forget_dropped_objects;
CREATE EVENT TRIGGER diffix_forget_dropped_objects ON sql_drop
  EXECUTE FUNCTION diffix._forget_dropped_objects();

DROP EVENT TRIGGER IF EXISTS diffix_note_acls_before_grant;
CREATE EVENT TRIGGER diffix_note_acls_before_grant ON ddl_command_start
  WHEN TAG IN ('GRANT', 'CREATE TABLE AS', 'SELECT INTO')
  EXECUTE FUNCTION diffix._note_acls_before_grant();

DROP EVENT TRIGGER IF EXISTS diffix_refuse_exposing_grants;
CREATE EVENT TRIGGER diffix_refuse_exposing_grants ON ddl_command_end
  WHEN TAG IN ('GRANT', 'ALTER TABLE', 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE',
               'CREATE TABLE', 'CREATE FOREIGN TABLE',  -- partitions attached or created
               'CREATE TRIGGER',  -- an analyst's function on a personal table (45_exposures.sql)
               'CREATE VIEW', 'ALTER VIEW', 'CREATE MATERIALIZED VIEW', 'CREATE RULE',
               'CREATE TABLE AS', 'SELECT INTO')  -- views over personal rows, copies of them
  EXECUTE FUNCTION diffix._refuse_exposing_grants();
