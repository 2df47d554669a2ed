"""Collects the Python modules that run inside the server: pldiffix and sqlglot."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pldiffix_installer.paths import PLPYTHON_DIR


@dataclass(frozen=True)
class Module:
    name: str
    is_package: bool
    source: str


def _package_modules(root: Path, package: str) -> list[Module]:
    modules = []
    for path in sorted((root / package).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(root).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules.append(Module(".".join(parts), is_package, path.read_text(encoding="utf-8")))
    return modules


def server_modules() -> list[Module]:
    """pldiffix from this source tree and sqlglot from the installer's own environment."""
    spec = importlib.util.find_spec("sqlglot")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("sqlglot is not installed in the installer's environment")
    sqlglot_root = Path(next(iter(spec.submodule_search_locations))).parent
    return _package_modules(PLPYTHON_DIR, "pldiffix") + _package_modules(sqlglot_root, "sqlglot")
