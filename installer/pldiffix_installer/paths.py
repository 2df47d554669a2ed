"""Where the installer finds what it deploys: the source tree it runs from."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"
PLPYTHON_DIR = REPO_ROOT / "plpython"
