-- Row-level perturbation behind views: the admin API, view (re)creation and the report
-- (docs/perturbation.md). The work happens in PL/Python (pldiffix.perturb.admin), definer
-- rights, after checking that the caller is an administrator; the public procedures resolve
-- names with the caller's search_path and re-raise errors without PL/Python's prefix.

CREATE OR REPLACE FUNCTION diffix._perturb_admin(action text, relid oid, options jsonb)
RETURNS text
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
import json
#@load pldiffix.perturb.admin
a = json.loads(options) if options is not None else {}
if action == "mark":
    return admin.mark(plpy, relid, a.get("row_key"), a.get("view_schema"))
if action == "column":
    params = a.get("params")
    return admin.perturb_column(plpy, relid, a.get("column"), a.get("method"),
                                None if params is None else json.dumps(params))
if action == "quasi_identifiers":
    return admin.set_quasi_identifiers(plpy, relid, a.get("columns"))
if action == "unmark":
    return admin.unmark(plpy, relid)
if action == "rebuild":
    return admin.rebuild_view(plpy, relid)
plpy.error("unknown perturbation action")
$python$;
REVOKE ALL ON FUNCTION diffix._perturb_admin(text, oid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._perturb_admin(text, oid, jsonb) TO PUBLIC;

-- One admin action on a table, its summary as a NOTICE; on error nothing is changed.
CREATE OR REPLACE PROCEDURE diffix._perturb_table(table_name text, action text, args jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
  summary text;
BEGIN
  summary := diffix._perturb_admin(action, diffix._resolve_table(table_name), args);
  RAISE NOTICE '%', summary;
--@reraise
END
$$;

CREATE OR REPLACE PROCEDURE diffix.mark_perturbed(table_name text, row_key_column text,
                                                  view_schema text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._perturb_table(table_name, 'mark',
    jsonb_build_object('row_key', row_key_column, 'view_schema', view_schema));
END
$$;

CREATE OR REPLACE PROCEDURE diffix.perturb_column(table_name text, column_name text, method text,
                                                  params jsonb DEFAULT '{}')
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._perturb_table(table_name, 'column',
    jsonb_build_object('column', column_name, 'method', method, 'params', params));
END
$$;

CREATE OR REPLACE PROCEDURE diffix.set_quasi_identifiers(table_name text,
                                                         VARIADIC column_names text[])
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._perturb_table(table_name, 'quasi_identifiers',
    jsonb_build_object('columns', to_jsonb(column_names)));
END
$$;

CREATE OR REPLACE PROCEDURE diffix.unmark_perturbed(table_name text)
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._perturb_table(table_name, 'unmark', '{}');
END
$$;

CREATE OR REPLACE PROCEDURE diffix.rebuild_perturbed_view(table_name text)
LANGUAGE plpgsql
AS $$
BEGIN
  CALL diffix._perturb_table(table_name, 'rebuild', '{}');
END
$$;

-- Replaces the key (to restore one kept from an earlier install, or to re-draw every value).
-- The views read it at query time, so they need no rebuild.
CREATE OR REPLACE PROCEDURE diffix.set_perturbation_key(new_key text DEFAULT NULL)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  chosen text := COALESCE(new_key, replace(gen_random_uuid()::text || gen_random_uuid()::text,
                                          '-', ''));
BEGIN
  PERFORM diffix._require_admin('set the perturbation key');
  IF length(chosen) < 32 THEN
    RAISE EXCEPTION 'the perturbation key must have at least 32 characters'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'CALL diffix.set_perturbation_key() draws a random one';
  END IF;
  INSERT INTO diffix.microdata_key (secret) VALUES (chosen)
  ON CONFLICT (singleton) DO UPDATE SET secret = EXCLUDED.secret;
END
$$;
REVOKE ALL ON PROCEDURE diffix.set_perturbation_key(text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE diffix.set_perturbation_key(text) TO diffix_admin;

-- Utility and risk figures (administrators only): see pldiffix.perturb.admin.perturbation_report.
-- Dropped first: an upgrade from a version without the explanation column changes the result type.
DROP FUNCTION IF EXISTS diffix.perturbation_report(text);
DROP FUNCTION IF EXISTS diffix._perturbation_report(oid);
CREATE OR REPLACE FUNCTION diffix._perturbation_report(relid oid)
RETURNS TABLE (metric text, column_name text, other_column text, original float8,
               perturbed float8, explanation text)
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $python$
#@load pldiffix.perturb.admin
return admin.perturbation_report(plpy, relid)
$python$;
REVOKE ALL ON FUNCTION diffix._perturbation_report(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._perturbation_report(oid) TO PUBLIC;

CREATE OR REPLACE FUNCTION diffix.perturbation_report(table_name text)
RETURNS TABLE (metric text, column_name text, other_column text, original float8,
               perturbed float8, explanation text)
LANGUAGE plpgsql
AS $$
BEGIN
  RETURN QUERY SELECT * FROM diffix._perturbation_report(diffix._resolve_table(table_name));
--@reraise
END
$$;
