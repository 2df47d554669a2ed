-- The Python that runs in the server is stored here by the installer and imported from here,
-- so nothing has to be copied onto the database host.
CREATE TABLE IF NOT EXISTS diffix.python_modules (
  module text PRIMARY KEY,
  is_package boolean NOT NULL,
  source text NOT NULL
);
-- Bytecode compiled by the server's own Python at install time (diffix._compile_python): the
-- interpreter's magic number (4 bytes) followed by the marshalled code object. Compiling the
-- sources was most of a new session's first-call latency. NULL or a foreign magic number (the
-- server's Python was upgraded since) falls back to compiling the source.
ALTER TABLE diffix.python_modules ADD COLUMN IF NOT EXISTS bytecode bytea;
REVOKE ALL ON diffix.python_modules FROM PUBLIC;
GRANT SELECT ON diffix.python_modules TO PUBLIC;

-- Installs an import hook that serves the modules above. Called once per session by every
-- PL/Python entry point before it imports pldiffix.
CREATE OR REPLACE FUNCTION diffix._load_python() RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
import sys

if any(getattr(finder, "is_pldiffix_finder", False) for finder in sys.meta_path):
    return

import importlib.machinery
import importlib.util
import marshal

# A finder and loader by protocol: subclassing importlib.abc would import importlib.resources
# and importlib.metadata, a fifth of the import time of everything else.
class DatabaseModuleFinder:
    is_pldiffix_finder = True

    def __init__(self, modules):
        self.modules = modules
        # Modules are imported in whatever context first needs them, an analyst's included,
        # and then serve every function of the backend: the statements are fully qualified, so
        # they mean the same under any search_path, and the row's name is checked.
        self.code_plan = plpy.prepare(
            "SELECT m.module, m.bytecode FROM diffix.python_modules m"
            " WHERE m.module OPERATOR(pg_catalog.=) $1", ["pg_catalog.text"])
        self.source_plan = plpy.prepare(
            "SELECT m.module, m.source FROM diffix.python_modules m"
            " WHERE m.module OPERATOR(pg_catalog.=) $1", ["pg_catalog.text"])

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, self, is_package=self.modules[fullname])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        origin = "<diffix.python_modules:%s>" % name
        module.__file__ = origin
        row = self._row(self.code_plan, name)
        bytecode = row["bytecode"]
        if bytecode is not None and bytecode[:4] == importlib.util.MAGIC_NUMBER:
            code = marshal.loads(bytecode[4:])
        else:
            code = compile(self._row(self.source_plan, name)["source"], origin, "exec")
        exec(code, module.__dict__)

    @staticmethod
    def _row(plan, name):
        rows = plpy.execute(plan, [name])
        if rows.nrows() != 1 or rows[0]["module"] != name:
            raise ImportError("pldiffix module %s could not be read" % name)
        return rows[0]

rows = plpy.execute("SELECT module, is_package FROM diffix.python_modules")
sys.meta_path.insert(0, DatabaseModuleFinder({r["module"]: r["is_package"] for r in rows}))
$python$;
REVOKE ALL ON FUNCTION diffix._load_python() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._load_python() TO PUBLIC;

-- Called by the installer after it stores the sources: compiles every module with the server's
-- Python (bytecode is specific to its version) under the origin name the loader gives it.
CREATE OR REPLACE FUNCTION diffix._compile_python() RETURNS integer
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
import importlib.util
import marshal

update = plpy.prepare(
    "UPDATE diffix.python_modules SET bytecode = $2 WHERE module = $1", ["text", "bytea"])
compiled = 0
for row in plpy.cursor("SELECT module, source FROM diffix.python_modules"):
    origin = "<diffix.python_modules:%s>" % row["module"]
    code = compile(row["source"], origin, "exec", dont_inherit=True)
    plpy.execute(update, [row["module"], importlib.util.MAGIC_NUMBER + marshal.dumps(code)])
    compiled += 1
return compiled
$python$;
REVOKE ALL ON FUNCTION diffix._compile_python() FROM PUBLIC;

-- Used by the installer to prove that the deployed code imports in the server's Python.
CREATE OR REPLACE FUNCTION diffix._python_versions() RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
import json, sys
plpy.execute("SELECT diffix._load_python()")
import pldiffix, sqlglot
from pldiffix import server  # noqa: imports every module the entry points need
from pldiffix.diffix.anonymization import bulk
numpy = sys.modules.get("numpy")
return json.dumps({"python": sys.version.split()[0], "pldiffix": pldiffix.__version__,
                   "sqlglot": sqlglot.__version__, "kernel": bulk.KERNEL.name,
                   "numpy": numpy.__version__ if numpy is not None else None})
$python$;
REVOKE ALL ON FUNCTION diffix._python_versions() FROM PUBLIC;
