-- The Python that runs in the server is stored here by the installer and imported from here,
-- so nothing has to be copied onto the database host.
CREATE TABLE IF NOT EXISTS diffix.python_modules (
  module text PRIMARY KEY,
  is_package boolean NOT NULL,
  source text NOT NULL
);
REVOKE ALL ON diffix.python_modules FROM PUBLIC;
GRANT SELECT ON diffix.python_modules TO PUBLIC;

-- Installs an import hook that serves the modules above. Called once per session by every
-- PL/Python entry point before it imports pldiffix.
CREATE OR REPLACE FUNCTION diffix._load_python() RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
import sys
import importlib.abc
import importlib.machinery

if any(getattr(finder, "is_pldiffix_finder", False) for finder in sys.meta_path):
    return

class DatabaseModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    is_pldiffix_finder = True

    def __init__(self, modules):
        self.modules = modules
        self.plan = plpy.prepare(
            "SELECT source FROM diffix.python_modules WHERE module = $1", ["text"])

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, self, is_package=self.modules[fullname])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        rows = plpy.execute(self.plan, [module.__name__])
        origin = "<diffix.python_modules:%s>" % module.__name__
        module.__file__ = origin
        exec(compile(rows[0]["source"], origin, "exec"), module.__dict__)

rows = plpy.execute("SELECT module, is_package FROM diffix.python_modules")
sys.meta_path.insert(0, DatabaseModuleFinder({r["module"]: r["is_package"] for r in rows}))
$python$;
REVOKE ALL ON FUNCTION diffix._load_python() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._load_python() TO PUBLIC;

-- Used by the installer to prove that the deployed code imports in the server's Python.
CREATE OR REPLACE FUNCTION diffix._python_versions() RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
import json, sys
plpy.execute("SELECT diffix._load_python()")
import pldiffix, sqlglot
from pldiffix import server  # noqa: imports every module the entry points need
return json.dumps({"python": sys.version.split()[0], "pldiffix": pldiffix.__version__,
                   "sqlglot": sqlglot.__version__})
$python$;
REVOKE ALL ON FUNCTION diffix._python_versions() FROM PUBLIC;
