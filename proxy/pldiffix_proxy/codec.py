"""PostgreSQL v3 wire-protocol messages: framing, the few fields the front reads, and the few
messages it writes. Pure functions over bytes; everything else is relayed untouched.

Reference: https://www.postgresql.org/docs/15/protocol-message-formats.html
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_LENGTH = 10_000  # the server's own limit for a startup packet
# The server's limit for a message answering an authentication request (PG_MAX_AUTH_TOKEN_LENGTH):
# password, SASL and GSS messages, their declared length included.
MAX_AUTH_MESSAGE_LENGTH = 65_535


class ProtocolError(Exception):
    """The peer sent something that is not valid protocol; its connection is closed."""


@dataclass(frozen=True)
class Message:
    """One typed message: its type byte and its body (without type and length)."""

    kind: bytes
    body: bytes

    @property
    def raw(self) -> bytes:
        return self.kind + struct.pack("!I", len(self.body) + 4) + self.body


def frame(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def cstring(text: str) -> bytes:
    return text.encode() + b"\0"


class Reader:
    """Cuts a byte stream into messages; `max_length` bounds one message's declared length (it
    may be changed between reads, as the front does once a client has signed in)."""

    def __init__(self, max_length: int):
        self.max_length = max_length
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def buffered(self) -> int:
        return len(self._buffer)

    def incomplete_length(self) -> int | None:
        """The whole size (type byte included) of the message begun at the head of the buffer,
        once its header is in and checked; None when no header is waiting."""
        if len(self._buffer) < 5:
            return None
        return 1 + self._checked_length(0)

    def messages(self) -> list[Message]:
        out = []
        buffer = self._buffer
        start = 0
        with memoryview(buffer) as view:
            while len(buffer) - start >= 5:
                end = start + 1 + self._checked_length(start)
                if len(buffer) < end:
                    break
                out.append(Message(bytes(view[start : start + 1]), bytes(view[start + 5 : end])))
                start = end
        del buffer[:start]
        return out

    def _checked_length(self, start: int) -> int:
        (length,) = struct.unpack_from("!I", self._buffer, start + 1)
        if length < 4 or length > self.max_length:
            raise ProtocolError(f"message length {length} is out of bounds")
        return length


# --- startup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    """The first packet of a connection: a startup message, or an SSL/GSS/cancel request."""

    code: int
    raw: bytes
    parameters: dict[str, str]


def startup_length(header: bytes) -> int:
    (length,) = struct.unpack("!I", header)
    if length < 8 or length > MAX_STARTUP_LENGTH:
        raise ProtocolError(f"startup packet length {length} is out of bounds")
    return length


def parse_startup(packet: bytes) -> Startup:
    """`packet` includes its length word."""
    if len(packet) < 8:
        raise ProtocolError("startup packet too short")
    (code,) = struct.unpack_from("!I", packet, 4)
    parameters: dict[str, str] = {}
    if code == PROTOCOL_3:
        fields = packet[8:].split(b"\0")
        if len(fields) < 2 or fields[-1] != b"" or fields[-2] != b"":
            raise ProtocolError("startup parameters are not terminated")
        items = fields[:-2]
        if len(items) % 2:
            raise ProtocolError("startup parameters come in name/value pairs")
        try:
            for i in range(0, len(items), 2):
                parameters[items[i].decode()] = items[i + 1].decode()
        except UnicodeDecodeError:
            raise ProtocolError("startup parameters are not UTF-8") from None
        if "user" not in parameters:
            raise ProtocolError("no user name in the startup packet")
    elif code == CANCEL_REQUEST:
        if len(packet) != 16:
            raise ProtocolError("a cancel request is 16 bytes")
    elif code not in (SSL_REQUEST, GSSENC_REQUEST):
        raise ProtocolError(f"unsupported protocol version {code >> 16}.{code & 0xFFFF}")
    return Startup(code, packet, parameters)


# --- fields the front reads --------------------------------------------------------------------


class _Cursor:
    def __init__(self, body: bytes):
        self.body = body
        self.at = 0

    def string(self) -> str:
        end = self.body.find(b"\0", self.at)
        if end < 0:
            raise ProtocolError("string field is not terminated")
        text = self.body[self.at : end]
        self.at = end + 1
        try:
            return text.decode()
        except UnicodeDecodeError:
            raise ProtocolError("string field is not UTF-8") from None

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.body):
            raise ProtocolError("message ends early")
        values = struct.unpack_from(fmt, self.body, self.at)
        self.at += size
        return values

    def int16s(self) -> list[int]:
        (count,) = self.unpack("!h")
        if count < 0:
            raise ProtocolError("negative count")
        return list(self.unpack(f"!{count}h"))

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.body):
            raise ProtocolError("message ends early")
        data = self.body[self.at : self.at + size]
        self.at += size
        return data


def query_text(body: bytes) -> str:
    return _Cursor(body).string()


@dataclass(frozen=True)
class Parse:
    name: str
    sql: str
    param_types: list[int]


def parse_parse(body: bytes) -> Parse:
    cursor = _Cursor(body)
    name, sql = cursor.string(), cursor.string()
    (count,) = cursor.unpack("!h")
    if count < 0:
        raise ProtocolError("negative parameter count")
    return Parse(name, sql, list(cursor.unpack(f"!{count}I")))


@dataclass(frozen=True)
class Bind:
    portal: str
    statement: str
    param_formats: list[int]
    values: list[bytes | None]
    result_formats: list[int]

    def format_of(self, index: int) -> int:
        """The format code of parameter `index` (none given: text; one: all)."""
        if not self.param_formats:
            return 0
        return self.param_formats[0 if len(self.param_formats) == 1 else index]


def parse_bind(body: bytes) -> Bind:
    cursor = _Cursor(body)
    portal, statement = cursor.string(), cursor.string()
    formats = cursor.int16s()
    (count,) = cursor.unpack("!h")
    if count < 0:
        raise ProtocolError("negative parameter count")
    values: list[bytes | None] = []
    for _ in range(count):
        (size,) = cursor.unpack("!i")
        values.append(None if size == -1 else cursor.take(size))
    if len(formats) not in (0, 1, count):
        raise ProtocolError("parameter format codes do not match the parameters")
    return Bind(portal, statement, formats, values, cursor.int16s())


def encode_bind(
    portal: str,
    statement: str,
    formats: Sequence[int],
    values: Sequence[bytes | None],
    result_formats: Sequence[int],
) -> bytes:
    body = bytearray(cstring(portal) + cstring(statement))
    body += struct.pack(f"!h{len(formats)}h", len(formats), *formats)
    body += struct.pack("!h", len(values))
    for value in values:
        if value is None:
            body += struct.pack("!i", -1)
        else:
            body += struct.pack("!i", len(value)) + value
    body += struct.pack(f"!h{len(result_formats)}h", len(result_formats), *result_formats)
    return frame(b"B", bytes(body))


def parse_target(body: bytes) -> tuple[str, str]:
    """Describe and Close: ('S' or 'P', name)."""
    if not body or body[:1] not in (b"S", b"P"):
        raise ProtocolError("Describe/Close must name a statement (S) or a portal (P)")
    return body[:1].decode(), _Cursor(body[1:]).string()


@dataclass(frozen=True)
class Column:
    name: str
    table_oid: int
    attnum: int
    type_oid: int
    type_size: int
    typmod: int
    format: int


def parse_row_description(body: bytes) -> list[Column]:
    cursor = _Cursor(body)
    (count,) = cursor.unpack("!h")
    return [Column(cursor.string(), *cursor.unpack("!IhIhih")) for _ in range(count)]


def encode_row_description(columns: Sequence[Column]) -> bytes:
    body = bytearray(struct.pack("!h", len(columns)))
    for c in columns:
        body += cstring(c.name)
        body += struct.pack(
            "!IhIhih", c.table_oid, c.attnum, c.type_oid, c.type_size, c.typmod, c.format
        )
    return frame(b"T", bytes(body))


def parse_parameter_description(body: bytes) -> list[int]:
    cursor = _Cursor(body)
    (count,) = cursor.unpack("!h")
    return list(cursor.unpack(f"!{count}I"))


def parse_data_row(body: bytes) -> list[bytes | None]:
    cursor = _Cursor(body)
    (count,) = cursor.unpack("!h")
    values: list[bytes | None] = []
    for _ in range(count):
        (size,) = cursor.unpack("!i")
        values.append(None if size == -1 else cursor.take(size))
    return values


def parse_error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their code letter (S, C, M, D, H, ...)."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode(errors="replace")
    return fields


# --- messages the front writes -----------------------------------------------------------------


def query(sql: str) -> bytes:
    return frame(b"Q", cstring(sql))


def parse(name: str, sql: str, param_types: Sequence[int] = ()) -> bytes:
    body = cstring(name) + cstring(sql)
    body += struct.pack(f"!h{len(param_types)}I", len(param_types), *param_types)
    return frame(b"P", body)


def describe(kind: str, name: str) -> bytes:
    return frame(b"D", kind.encode() + cstring(name))


def close(kind: str, name: str) -> bytes:
    return frame(b"C", kind.encode() + cstring(name))


def execute(portal: str, max_rows: int = 0) -> bytes:
    return frame(b"E", cstring(portal) + struct.pack("!i", max_rows))


SYNC = frame(b"S")
FLUSH = frame(b"H")
PARSE_COMPLETE = frame(b"1")
BIND_COMPLETE = frame(b"2")
CLOSE_COMPLETE = frame(b"3")
NO_DATA = frame(b"n")


def command_complete(tag: str) -> bytes:
    return frame(b"C", cstring(tag))


def ready_for_query(status: bytes) -> bytes:
    return frame(b"Z", status)


def error_response(
    sqlstate: str, message: str, hint: str | None = None, severity: str = "ERROR"
) -> bytes:
    body = b"S" + cstring(severity) + b"V" + cstring(severity)
    body += b"C" + cstring(sqlstate) + b"M" + cstring(message)
    if hint:
        body += b"H" + cstring(hint)
    return frame(b"E", body + b"\0")


def with_hint(body: bytes, hint: str) -> bytes:
    """An ErrorResponse with `hint` added (after the server's own hint, if it gave one)."""
    fields = [part for part in body.split(b"\0") if part]
    given = next((part[1:].decode(errors="replace") for part in fields if part[:1] == b"H"), None)
    text = f"{given}\n{hint}" if given else hint
    kept = [part for part in fields if part[:1] != b"H"] + [b"H" + text.encode()]
    return frame(b"E", b"".join(part + b"\0" for part in kept) + b"\0")


_INTERNAL_FIELDS = frozenset(b"WPpq")  # context, positions and the text of the front's own query


def without_internal_context(body: bytes) -> bytes:
    """An ErrorResponse raised by the front's own statement, as the client should see it: its
    SQLSTATE, message, detail and hint, without the context and positions of our internals."""
    kept = [part for part in body.split(b"\0") if part and part[0] not in _INTERNAL_FIELDS]
    return frame(b"E", b"".join(part + b"\0" for part in kept) + b"\0")


def cancel_request(backend_key: bytes) -> bytes:
    """A CancelRequest for the backend whose BackendKeyData body is `backend_key`."""
    return struct.pack("!II", 16, CANCEL_REQUEST) + backend_key


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST)


def authentication_code(body: bytes) -> int:
    if len(body) < 4:
        raise ProtocolError("authentication request too short")
    return struct.unpack_from("!i", body)[0]
