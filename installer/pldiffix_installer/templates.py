"""The two pieces of routine code every entry point shares, written once here and put in place of
a directive line when the installer reads a SQL file:

- ``#@load pldiffix.<package>.<module> [as <name>]`` in a PL/Python body: load pldiffix into the
  session unless the module is already imported (an SPI call saved on every later call), then
  import it under its last name (or the one given: an argument may have that name);
- ``--@reraise`` in a PL/pgSQL body, as the last part of a block: re-raise any error through
  diffix._reraise (sql/core/30_settings.sql), which drops PL/Python's "plpy.Error: " prefix and
  keeps SQLSTATE, message, detail and hint.

A directive is the whole line (indentation aside); any other line starting with ``#@`` or
``--@`` is an error, so that a mistyped one cannot pass unexpanded."""

from __future__ import annotations

import re

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)(?P<mark>#@|--@)(?P<rest>.*)$", re.MULTILINE)
_LOAD = re.compile(r"(?P<module>pldiffix(\.[a-z_][a-z0-9_]*)+)(?: as (?P<alias>[a-z_][a-z0-9_]*))?")

LOAD = """\
import sys
if "{module}" not in sys.modules:
    plpy.execute("SELECT diffix._load_python()")
from {package} import {name}{alias}"""

RERAISE = """\
EXCEPTION WHEN OTHERS THEN
  DECLARE
    message text; detail text; hint text;
  BEGIN
    GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                            hint = PG_EXCEPTION_HINT;
    PERFORM diffix._reraise(SQLSTATE, message, detail, hint);
  END;"""


class TemplateError(ValueError):
    """A directive the installer does not know."""


def _load(what: str) -> str:
    found = _LOAD.fullmatch(what)
    if not found:
        raise TemplateError(f"#@load wants a pldiffix module (as a name), not {what!r}")
    package, name = found["module"].rsplit(".", 1)
    alias = f" as {found['alias']}" if found["alias"] else ""
    return LOAD.format(module=found["module"], package=package, name=name, alias=alias)


def _expand(match: re.Match[str]) -> str:
    mark, rest = match["mark"], match["rest"].strip()
    if mark == "#@" and rest.startswith("load "):
        code = _load(rest.removeprefix("load ").strip())
    elif mark == "--@" and rest == "reraise":
        code = RERAISE
    else:
        raise TemplateError(f"unknown directive {match[0].strip()!r}")
    return "\n".join(match["indent"] + line for line in code.splitlines())


def expand(sql: str) -> str:
    """The SQL with every directive line replaced by its code."""
    return _DIRECTIVE.sub(_expand, sql)
