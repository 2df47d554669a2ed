"""`pldiffix proxy` in a child process, as a deployment runs it (bench, demo)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pldiffix_tools.cluster import free_port


@contextmanager
def running_proxy(dsn: str, *, log_level: str = "WARNING") -> Iterator[int]:
    """Starts the front for the server at `dsn` on a free loopback port; yields the port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "pldiffix_installer.cli",
        "proxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--dsn",
        dsn,
        "--log-level",
        log_level,
    ]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pldiffix proxy exited with status {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pldiffix proxy did not start listening") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
