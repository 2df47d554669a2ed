"""Where the installer finds what it deploys: the source tree it runs from."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"
CORE = "core"
FINAL_STEP = 90
"""core files numbered from here on run after every mechanism folder."""


def _number(path: Path) -> int:
    return int(path.name.split("_", 1)[0])


def sql_files(root: Path = SQL_DIR) -> list[Path]:
    """root/<folder>/NN_name.sql, one folder at a time: core's files below FINAL_STEP, then each
    mechanism folder in name order, then core's files from FINAL_STEP on; by name within a
    folder. A folder's numbers order only its own files."""
    core = sorted((root / CORE).glob("*.sql"))
    mechanisms = sorted({path.parent for path in root.glob("*/*.sql")} - {root / CORE})
    ordered = [path for path in core if _number(path) < FINAL_STEP]
    for folder in mechanisms:
        ordered += sorted(folder.glob("*.sql"))
    return ordered + [path for path in core if _number(path) >= FINAL_STEP]


PLPYTHON_DIR = REPO_ROOT / "plpython"
