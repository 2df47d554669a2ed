"""What the front holds for its clients: bounded input per client and per process, small
messages before sign-in, and clear answers when the server is not there."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from proxy_fixtures import ANALYST_QUERIES, ProxyWorld, normalized_rows, read_until_ready

from pldiffix_proxy import codec
from pldiffix_proxy.listener import running_in_thread
from pldiffix_tools.cluster import find_bindir, free_port
from pldiffix_tools.proxy_process import proxy_child

pytestmark = pytest.mark.db

MIB = 1 << 20
BIG_MESSAGE = 32 * MIB
PIPELINED = 100
UNAUTHENTICATED = 50
CLIENT_BUFFER = 16 * MIB
TOTAL_BUFFER = 128 * MIB
# What the proxy may grow by while the floods below run (a client pipelining 100 x 32 MiB, 50
# clients sending 32 MiB password messages at once, 50 holding most of a legal one): the one
# oversized message a client may send when nothing else is held (its bytes and the framing
# buffer they were cut from), the client bound, and 32 MiB for the interpreter's own churn.
# Without the bounds the proxy reads the 3.2 GB offered.
RSS_GROWTH_BOUND = 2 * BIG_MESSAGE + CLIENT_BUFFER + 32 * MIB


@pytest.fixture
def world(proxy_world: ProxyWorld) -> ProxyWorld:
    return proxy_world


def _memory(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _startup(user: str, database: str) -> bytes:
    body = struct.pack("!I", codec.PROTOCOL_3) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def _signed_in(port: int, user: str, database: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(_startup(user, database))
    assert read_until_ready(sock)[-1][0] == b"Z"
    return sock


def _big_queries(count: int, size: int) -> Iterator[bytes]:
    """`count` Query messages of `size` bytes each, produced 1 MiB at a time."""
    filler = b" " * MIB
    for _ in range(count):
        text = b"SELECT 1 /*"
        body_size = size - 5
        yield b"Q" + struct.pack("!I", body_size + 4) + text
        left = body_size - len(text) - 3
        while left > 0:
            yield filler[: min(left, MIB)]
            left -= MIB
        yield b"*/\0"


def _pipeline(sock: socket.socket, sent: list[int]) -> None:
    try:
        for chunk in _big_queries(PIPELINED, BIG_MESSAGE):
            sock.sendall(chunk)
            sent[0] += len(chunk)
    except OSError:
        pass  # the test closed the socket


def _password_role(world: ProxyWorld) -> str:
    admin = world.db.admin
    admin.execute(
        "DO $$ BEGIN CREATE ROLE pldiffix_password_users NOLOGIN;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    role = world.db.create_role("anonymized_trusted", prefix="flood")
    admin.execute(f"ALTER ROLE \"{role}\" PASSWORD 'right horse'")
    admin.execute(f'GRANT pldiffix_password_users TO "{role}"')
    return role


def _large_password_message(port: int, role: str, database: str) -> list[tuple[bytes, bytes]]:
    """Signs in as `role` and answers the password request with a 32 MiB message."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    with sock:
        sock.sendall(_startup(role, database))
        kind, body = read_until_ready_or(sock, b"R")
        assert kind == b"R" and codec.authentication_code(body) == 10  # SASL
        try:
            sock.sendall(b"p" + struct.pack("!I", BIG_MESSAGE))
            for _ in range(BIG_MESSAGE // MIB):
                sock.sendall(b"\0" * MIB)
        except OSError:
            pass  # refused and closed before all of it was sent
        return read_until_ready(sock)


def _half_a_password_message(port: int, role: str, database: str) -> socket.socket:
    """Signs in as `role` and sends most of the largest password message the server takes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(_startup(role, database))
    read_until_ready_or(sock, b"R")
    sock.sendall(b"p" + struct.pack("!I", codec.MAX_AUTH_MESSAGE_LENGTH) + b"\0" * 60_000)
    return sock


def read_until_ready_or(sock: socket.socket, kind: bytes) -> tuple[bytes, bytes]:
    header = b""
    while len(header) < 5:
        header += sock.recv(5 - len(header))
    (length,) = struct.unpack("!I", header[1:])
    body = b""
    while len(body) < length - 4:
        body += sock.recv(length - 4 - len(body))
    assert header[:1] == kind, (header, body)
    return header[:1], body


def test_floods_leave_the_proxys_memory_bounded_while_others_are_served(world):
    role = _password_role(world)
    sleeper = world.db.create_role("direct", prefix="pipeline")
    sql = ANALYST_QUERIES[0]
    expected = world.expected(sql)
    options = ["--max-client-buffer", str(CLIENT_BUFFER), "--max-total-buffer", str(TOTAL_BUFFER)]
    with proxy_child(world.db.dsn(), *options, log_level="ERROR") as (process, port):
        baseline = _memory(process.pid, "VmRSS")
        pipeliner = _signed_in(port, sleeper, world.db.name)
        pipeliner.sendall(codec.query("SELECT pg_sleep(20)"))
        sent = [0]
        sender = threading.Thread(target=_pipeline, args=(pipeliner, sent), daemon=True)
        sender.start()
        with concurrent.futures.ThreadPoolExecutor(UNAUTHENTICATED) as pool:
            refusals = list(
                pool.map(
                    lambda _: _large_password_message(port, role, world.db.name),
                    range(UNAUTHENTICATED),
                )
            )
        holding = [
            _half_a_password_message(port, role, world.db.name) for _ in range(UNAUTHENTICATED)
        ]
        dsn = world.proxy_dsn(world.analyst, port=port)
        started = time.monotonic()
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(sql).fetchall()
        served_in = time.monotonic() - started
        time.sleep(0.5)
        offered = sent[0]
        peak = _memory(process.pid, "VmHWM")
        pipeliner.shutdown(socket.SHUT_RDWR)
        pipeliner.close()
        for sock in holding:
            sock.close()
        sender.join(10)
    assert normalized_rows(rows) == expected
    assert served_in < 10
    for messages in refusals:
        fields = codec.parse_error_fields(messages[-1][1])
        assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
        assert "out of bounds" in fields["M"]
    # The pipelining client was held back: it got a message and a socket buffer's worth in.
    assert offered < BIG_MESSAGE + CLIENT_BUFFER + 16 * MIB, offered
    assert peak - baseline < RSS_GROWTH_BOUND, (baseline, peak)


class _Replies:
    """The server's messages on a socket, read as they are needed (replies to a pipeline)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        messages = []
        while True:
            while len(self.buffer) >= 5:
                (length,) = struct.unpack_from("!I", self.buffer, 1)
                if len(self.buffer) < 1 + length:
                    break
                kind, body = self.buffer[:1], self.buffer[5 : 1 + length]
                self.buffer = self.buffer[1 + length :]
                messages.append((kind, body))
                if kind == b"Z":
                    return messages
            chunk = self.sock.recv(65536)
            assert chunk, "the proxy closed the connection"
            self.buffer += chunk


def test_a_client_held_back_is_read_again_once_its_session_catches_up(world):
    """Simple and extended pipelines of 1 MiB messages behind a sleep, through a front that
    holds 256 KiB per client and sends the server at most 1 MiB ahead: every reply comes."""
    role = world.db.create_role("direct", prefix="resume")
    text = "SELECT 1 /*" + " " * MIB + "*/"
    with running_in_thread(
        world.db.dsn(), max_client_buffer=256 << 10, max_total_buffer=4 * MIB, max_message=2 * MIB
    ) as front:
        with _signed_in(front.port, role, world.db.name) as sock:
            sock.sendall(codec.query("SELECT pg_sleep(0.5)") + codec.query(text) * 20)
            stream = _Replies(sock)
            replies = [stream.until_ready() for _ in range(21)]
            assert all(r[-1][0] == b"Z" for r in replies)
            assert [m for r in replies[1:] for m in r if m[0] == b"D"] == [
                (b"D", struct.pack("!hi", 1, 1) + b"1")
            ] * 20
            pipeline = codec.parse("", "SELECT pg_sleep(0.5)") + codec.encode_bind(
                "", "", [], [], []
            )
            pipeline += codec.execute("")
            for _ in range(20):
                pipeline += codec.parse("", text) + codec.encode_bind("", "", [], [], [])
                pipeline += codec.execute("")
            sock.sendall(pipeline + codec.SYNC)
            kinds = [m[0] for m in stream.until_ready()]
            assert kinds == [b"1", b"2", b"D", b"C"] * 21 + [b"Z"]
        assert front.budget.used == 0


def test_a_large_copy_in_goes_through_small_buffers(world):
    """COPY FROM STDIN streams through a 256 KiB client bound and the 1 MiB send buffer."""
    role = world.db.create_role("direct", prefix="copyin")
    line = b"x" * 1000 + b"\n"
    with (
        running_in_thread(
            world.db.dsn(), max_client_buffer=256 << 10, max_total_buffer=MIB
        ) as front,
        psycopg.connect(world.proxy_dsn(role, port=front.port), autocommit=True) as conn,
    ):
        conn.execute("CREATE TEMP TABLE lines (line text)")
        with conn.cursor().copy("COPY lines FROM STDIN") as copy:
            for _ in range(20):
                copy.write(line * 1000)  # 20 MB in all
        assert conn.execute("SELECT count(*), sum(length(line)) FROM lines").fetchone() == (
            20_000,
            20_000_000,
        )
        assert front.budget.used < MIB


def test_password_messages_are_bounded_as_the_server_bounds_them(world):
    role = _password_role(world)
    with running_in_thread(world.db.dsn(), startup_timeout=5.0) as front:
        sock = socket.create_connection(("127.0.0.1", front.port), timeout=20)
        with sock:
            sock.sendall(_startup(role, world.db.name))
            read_until_ready_or(sock, b"R")
            sock.sendall(b"p" + struct.pack("!I", codec.MAX_AUTH_MESSAGE_LENGTH + 1))
            fields = codec.parse_error_fields(read_until_ready(sock)[-1][1])
        assert fields["C"] == "08P01" and "65536 is out of bounds" in fields["M"]


# --- when the server is not there ---------------------------------------------------------------


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pldiffix_installer.cli", "proxy", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PLDIFFIX_DSN": ""},
        check=False,
    )


def test_help_states_what_the_dsn_is_and_the_defaults():
    result = _cli("--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "host and port only, no credentials" in text
    assert "(default: 127.0.0.1:6432)" in text
    assert "--max-client-buffer BYTES" in text and "(default: 16M)" in text
    assert "--max-total-buffer BYTES" in text and "(default: 256M)" in text


def test_start_with_no_server_exits_2_with_one_clear_line():
    port = free_port()
    result = _cli("--dsn", f"host=127.0.0.1 port={port}", "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pldiffix proxy: cannot reach the PostgreSQL server at 127.0.0.1:{port}: "
        "connection refused"
    ]


def test_a_dsn_with_a_password_is_refused():
    result = _cli("--dsn", "host=localhost port=5432 user=ana password=secret")
    assert result.returncode == 2
    assert "takes no credentials" in result.stderr and "secret" not in result.stderr


@pytest.fixture
def front_without_server() -> Iterator[tuple[int, int]]:
    """A front whose server went away after it started: (front port, server port)."""
    server_port = free_port()
    with running_in_thread(f"host=127.0.0.1 port={server_port}") as front:
        yield front.port, server_port


def test_a_client_of_an_unreachable_server_gets_a_fatal_naming_the_cause(front_without_server):
    port, server_port = front_without_server
    with pytest.raises(psycopg.OperationalError) as error:
        psycopg.connect(f"host=127.0.0.1 port={port} user=ana dbname=bank", connect_timeout=10)
    reason = (
        f"pldiffix proxy cannot reach the server at 127.0.0.1:{server_port}: connection refused"
    )
    assert f"FATAL:  {reason}" in str(error.value)
    # libpq keeps no SQLSTATE of a failed connection: read the ErrorResponse itself.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_startup("ana", "bank"))
        messages = read_until_ready(sock)
    assert [kind for kind, _ in messages] == [b"E"]
    fields = codec.parse_error_fields(messages[0][1])
    assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", "08006", reason)


def test_psql_of_an_unreachable_server_gets_a_fatal_naming_the_cause(front_without_server):
    port, server_port = front_without_server
    result = subprocess.run(
        [str(find_bindir() / "psql"), f"host=127.0.0.1 port={port} user=ana dbname=bank"],
        input="SELECT 1",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert (
        f"FATAL:  pldiffix proxy cannot reach the server at 127.0.0.1:{server_port}: "
        "connection refused" in result.stderr
    )


def test_a_peer_authentication_failure_says_what_the_proxy_is(tmp_path):
    """A server refusing the proxy's OS user on its Unix socket, as Debian's default
    `local all all peer` does: the client's FATAL carries a hint."""
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / ".s.PGSQL.5432"))
    listening.listen()

    def refuse_one() -> None:
        connection, _ = listening.accept()
        with connection:
            (length,) = struct.unpack("!I", connection.recv(4, socket.MSG_WAITALL))
            connection.recv(length - 4, socket.MSG_WAITALL)
            connection.sendall(
                codec.error_response(
                    "28000", 'Peer authentication failed for user "ana"', severity="FATAL"
                )
            )

    server = threading.Thread(target=refuse_one, daemon=True)
    server.start()
    with (
        running_in_thread(f"host={tmp_path} port=5432") as front,
        pytest.raises(psycopg.OperationalError) as error,
    ):
        psycopg.connect(f"host=127.0.0.1 port={front.port} user=ana dbname=bank")
    server.join(10)
    listening.close()
    assert 'Peer authentication failed for user "ana"' in str(error.value)
    assert "over its Unix socket as the OS user" in str(error.value)
    assert "host=localhost" in str(error.value)
