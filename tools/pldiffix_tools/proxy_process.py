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
    with proxy_child(dsn, log_level=log_level) as (_process, port):
        yield port


@contextmanager
def proxy_child(
    dsn: str, *options: str, log_level: str = "WARNING"
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`pldiffix proxy` with more command-line `options`; yields the process and its port."""
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
        *options,
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
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
