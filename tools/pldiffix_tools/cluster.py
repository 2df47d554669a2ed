"""A throwaway PostgreSQL cluster: initdb in a temporary directory, unix socket only.

Used by `make demo`, `make test` and `make bench`. As root the server runs as the `postgres`
OS user, because initdb refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

LEDGER_HBA_LINE = "local all +diffix_ledger scram-sha-256\n"
# Members of this group sign in with a password: the proxy's tests relay SCRAM with them.
PASSWORD_HBA_LINE = "local all +pldiffix_password_users scram-sha-256\n"


def find_bindir() -> Path:
    """PG_BINDIR, else the newest /usr/lib/postgresql/*/bin that has a server."""
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries found; set PG_BINDIR")
    return candidates[-1].parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedCluster:
    def __init__(self, bindir: Path | None = None, settings: dict[str, str] | None = None):
        self.bindir = bindir or find_bindir()
        self.settings = settings or {}
        self.root: Path | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        return f"host={self.root} port={self.port} user=postgres dbname=postgres"

    def _run(self, *command: str) -> None:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", "postgres", "--"]
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{Path(command[0]).name} failed:\n{result.stderr}{tail}")

    def start(self) -> EmbeddedCluster:
        self.root = Path(tempfile.mkdtemp(prefix="pldiffix-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        data = self.root / "data"
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        # The ledger's loopback connection (sql/core/66_ledger.sql) logs in with a password, as
        # dblink requires of non-superusers; everyone else keeps trust.
        hba = data / "pg_hba.conf"
        hba.write_text(LEDGER_HBA_LINE + PASSWORD_HBA_LINE + hba.read_text())
        self.port = free_port()
        options = {
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "listen_addresses": "",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            # each analyst session holds a second (loopback) connection; the proxy's load test
            # runs 50 clients at once
            "max_connections": "250",
        } | self.settings
        option_text = " ".join(f"-c {key}={value}" for key, value in options.items())
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            option_text,
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                "fast",
                "-w",
                "stop",
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
