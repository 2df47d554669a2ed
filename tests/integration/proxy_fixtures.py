"""Shared by the proxy's tests: a labeled data set, its analyst queries, a running front, and how
to compare what a client got with what diffix.query_json answers."""

from __future__ import annotations

import datetime
import decimal
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pldiffix_proxy.listener import Front

DATA = """
CREATE TABLE customers (id integer, city text, age integer, joined date, balance numeric(10, 2));
INSERT INTO customers
  SELECT i, (ARRAY['Berlin', 'Rome', 'Oslo', 'Lima'])[1 + i % 4], 20 + i % 45,
         DATE '2020-01-01' + i % 700, (i % 997) * 1.25
  FROM generate_series(1, 1200) i;
INSERT INTO customers VALUES (5001, 'Nuuk', 33, DATE '2021-05-05', 10.00),
                             (5002, 'Nuuk', 34, DATE '2021-05-06', 20.00);
CREATE TABLE cities (name text, country text);
INSERT INTO cities VALUES ('Berlin', 'DE'), ('Rome', 'IT'), ('Oslo', 'NO'), ('Lima', 'PE');
GRANT SELECT ON customers, cities TO PUBLIC;
CALL diffix.mark_personal('customers', 'id');
CALL diffix.mark_public('cities');
"""

# The analyst guide's kinds of query, over the data above.
ANALYST_QUERIES = [
    "SELECT city, count(*) FROM customers GROUP BY city ORDER BY city",
    "SELECT count(*), count(DISTINCT id) FROM customers",
    "SELECT diffix.floor_by(age, 10) AS decade, count(*) FROM customers GROUP BY 1 ORDER BY 1",
    "SELECT city, sum(balance), count(*) FROM customers GROUP BY city ORDER BY city",
    "SELECT count(*) AS n FROM customers WHERE city = 'Rome'",
    "SELECT city, count(*), diffix.count_noise(*) FROM customers GROUP BY 1 ORDER BY 1",
    "SELECT name, country FROM cities ORDER BY name",
]


@dataclass
class ProxyWorld:
    db: Any
    front: Front
    analyst: str
    direct: str
    # the analyst's session straight to the server behind `expected`: kept for the module, as a
    # session's first call loads the engine (about half a second)
    straight: psycopg.Connection | None = field(default=None, repr=False)

    def proxy_dsn(self, user: str, *, port: int | None = None, **extra: Any) -> str:
        """A DSN for `user` through the module's front (or the one on `port`)."""
        return make_conninfo(
            self.db.dsn(user), host="127.0.0.1", port=port or self.front.port, **extra
        )

    def expected(self, sql: str) -> list[list[Any]]:
        """The rows diffix.query_json gives the analyst connected straight to the server."""
        if self.straight is None or self.straight.closed:
            self.straight = self.db.connect(self.analyst)  # closed with the module's database
        answer = self.straight.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]
        return answer["rows"]

    def straight_pid(self) -> int:
        """The backend of the session behind `expected` (0: none open)."""
        if self.straight is None or self.straight.closed:
            return 0
        return self.straight.info.backend_pid


def normalized(value: Any) -> Any:
    """A client's value in query_json's terms: numbers as floats, dates as ISO text."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def normalized_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[normalized(v) for v in row] for row in rows]


def text_matches(expected: Any, text: str | None) -> bool:
    """A value a client printed as text against query_json's value."""
    if expected is None or text is None:
        return expected is None and text in (None, "", "null")
    if isinstance(expected, bool):
        return text.lower() in (("t", "true") if expected else ("f", "false"))
    if isinstance(expected, int | float):
        try:
            return float(text) == float(expected)
        except ValueError:
            return False
    return str(expected) == text


def assert_text_rows(expected: list[list[Any]], got: list[list[str | None]]) -> None:
    assert len(got) == len(expected), (expected, got)
    for want, have in zip(expected, got, strict=True):
        assert len(want) == len(have), (want, have)
        assert all(text_matches(w, h) for w, h in zip(want, have, strict=True)), (want, have)


# --- a raw socket, for what no driver would send ----------------------------------------------


def startup_packet(user: str, database: str) -> bytes:
    body = struct.pack("!I", 196608)
    body += f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def raw_connect(world: ProxyWorld) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", world.front.port), timeout=10)
    return sock


def read_until_ready(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    """Messages up to and including ReadyForQuery (or until the peer closes)."""
    messages = []
    buffer = b""
    while True:
        while len(buffer) >= 5:
            (length,) = struct.unpack_from("!I", buffer, 1)
            if len(buffer) < 1 + length:
                break
            kind, body = buffer[:1], buffer[5 : 1 + length]
            buffer = buffer[1 + length :]
            messages.append((kind, body))
            if kind == b"Z":
                return messages
        chunk = sock.recv(65536)
        if not chunk:
            return messages
        buffer += chunk


def signed_in(world: ProxyWorld, user: str) -> socket.socket:
    sock = raw_connect(world)
    sock.sendall(startup_packet(user, world.db.name))
    assert read_until_ready(sock)[-1][0] == b"Z"
    return sock
