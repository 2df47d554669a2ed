"""Where the installer finds what it deploys: the source tree it runs from."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"


def sql_files() -> list[Path]:
    """sql/<concern>/NN_name.sql, applied in the order of their numbers across concerns."""
    return sorted(SQL_DIR.glob("*/*.sql"), key=lambda path: (path.name, path.parent.name))


PLPYTHON_DIR = REPO_ROOT / "plpython"
