"""One client of the front and its one server connection.

Everything is relayed byte for byte, except statements that read protected tables: for each
Query and Parse the front asks the server (diffix.proxy_plan, as the client's own role) whether
to forward it, answer it through the engine, or answer a type probe from the server's Describe.
Engine answers come back as the rows of a fetch statement the server itself runs and describes,
so RowDescription carries the engine's real types and the client's formats.

Extended-protocol messages are handled in order; forwarded messages are pipelined and their
replies are relayed as they come, and before the front answers or asks anything itself it waits
for the replies still owed (`pending`), so the client always sees replies in the order of its
messages. After an error the server skips to Sync; so does the front.

Longer than the ~600 lines modules aim for: it is one state machine (the client's statements,
portals and replies still owed), and its handlers read and change that state together; the
message codec, buffers and command classification are the sibling modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pldiffix_proxy import buffers, codec
from pldiffix_proxy.codec import Message, ProtocolError

log = logging.getLogger("pldiffix.proxy")

# Replies that complete one extended-protocol message (Describe of a statement sends two).
_COMPLETIONS = frozenset(b"123CIsntT")
_ASYNC = frozenset(b"NSA")  # notice, parameter status, notification: relayed whenever they come
# Prepared statements the front answers itself, per client (the server bounds its own by memory).
MAX_LOCAL_STATEMENTS = 10_000
# Bytes waiting in a server connection's send buffer beyond which forwarding waits for the server
# to take them (a client pipelining behind a slow statement is held back, not buffered).
SERVER_SEND_BUFFER = 1 << 20

_PROBE_STATEMENT = "_pldiffix_describe"
_PLAN_PORTAL = "_pldiffix_plan"
# The front's own statements kept prepared in the server connection (the routing call per
# parameter types, the fetch statement per result shape), named _pldiffix_<n>.
_OWN_PREFIX = "_pldiffix_"
_OWN_KEPT = 64
_ROUTING_CHECK = (
    "SELECT pg_catalog.to_regprocedure("
    "'diffix.proxy_plan(text,boolean,text[],oid[],oid[],integer[])') IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'diffix'"
    " AND pg_catalog.has_schema_privilege(oid, 'USAGE'))"
)
# The perturbed views of row-perturbed tables, by table name, for a role of the perturbed level
# (none for other roles): a permission error on such a table gets a hint naming its view.
_PERTURBED_VIEWS = (
    "SELECT c.relname::pg_catalog.text, pg_catalog.format('%I.%I', m.view_schema, m.view_name)"
    " FROM diffix.microdata_tables m"
    " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.relid"
    " JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) 'diffix_perturbed'"
    " WHERE pg_catalog.pg_has_role(r.oid, 'USAGE')"
)
_DENIED_TABLE = "permission denied for table "
_TEXT, _BOOL, _INT8, _OID_ARRAY, _INT4_ARRAY = 25, 16, 20, 1028, 1007
_ROUTES_KEPT = 512
# Statements after which cached routes are forgotten: anything but reading and transaction
# control may change labels, levels or name resolution (SET search_path, diffix.set(...)).
_READ_ONLY_STARTS = frozenset(
    {
        "select",
        "with",
        "values",
        "table",
        "show",
        "begin",
        "start",
        "commit",
        "end",
        "rollback",
        "savepoint",
        "release",
        "fetch",
        "close",
    }
)


class RouteCache:
    """Routes of statement texts this client sent before (most recent last).

    A stale route never grants anything: a statement wrongly passed meets the server's
    privileges, one wrongly sent to the engine is re-routed by the server when answered, and a
    probe's answer (no rows) is right whatever the table's label.
    """

    def __init__(self) -> None:
        self._routes: dict[str, str] = {}

    def get(self, sql: str) -> str | None:
        route = self._routes.pop(sql, None)
        if route is not None:
            self._routes[sql] = route
        return route

    def put(self, sql: str, route: str) -> None:
        self._routes.pop(sql, None)
        self._routes[sql] = route
        while len(self._routes) > _ROUTES_KEPT:
            del self._routes[next(iter(self._routes))]

    def clear(self) -> None:
        self._routes.clear()

    def note_forwarded(self, sql: str) -> bool:
        """Forgets the routes after a statement that may change them; True if it did."""
        words = sql.lstrip(" \t\r\n(").split(None, 1)
        if not words or words[0].lower() not in _READ_ONLY_STARTS or "diffix" in sql.lower():
            self._routes.clear()
            return True
        return False


class OwnStatements:
    """The front's prepared statements in its server connection, by (text, parameter types).

    Each is parsed the first time it is used and again after `forget` (the client may have sent
    DEALLOCATE ALL or DISCARD ALL, or used one of the names); the oldest is closed beyond
    _OWN_KEPT. A statement is never trusted to exist: at worst a Bind to it fails, as the
    client's own Bind would.
    """

    def __init__(self) -> None:
        self._names: dict[tuple[str, tuple[int, ...]], str] = {}
        self._parsed: set[str] = set()
        self._count = 0

    def use(self, sql: str, param_types: tuple[int, ...]) -> tuple[str, bytes, int]:
        """The statement's name, the messages to send before binding it, and how many
        completions (CloseComplete, ParseComplete) those messages are answered with."""
        key = (sql, param_types)
        name = self._names.pop(key, None)
        payload, replies = b"", 0
        if name is None:
            if len(self._names) >= _OWN_KEPT:
                oldest = self._names.pop(next(iter(self._names)))
                self._parsed.discard(oldest)
                payload, replies = codec.close("S", oldest), 1
            self._count += 1
            name = f"{_OWN_PREFIX}{self._count}"
        self._names[key] = name  # most recently used last
        if name not in self._parsed:
            payload += codec.close("S", name) + codec.parse(name, sql, param_types)
            replies += 2
            self._parsed.add(name)
        return name, payload, replies

    def forget(self) -> None:
        """Each statement is parsed again before its next use."""
        self._parsed.clear()


class ClientGone(Exception):
    """The client closed its connection, or sent something the front cannot read."""


class ServerGone(Exception):
    """The server closed the connection."""


@dataclass
class Peer:
    """One side of the relay: a stream cut into messages."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    framing: codec.Reader
    ready: list[Message] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@dataclass
class LocalStatement:
    """A client's prepared statement that the front answers itself (engine or probe route)."""

    sql: str
    route: str
    param_types: list[int]
    parameter_description: bytes
    row_description: bytes  # a RowDescription, or NoData


@dataclass
class PlanResult:
    route: str
    statement: str | None
    token: bytes | None = None  # the fetch statement's $1 (text), None if it takes none


class Session:
    def __init__(self, client: Peer, server: Peer, peer_name: str, inbox: buffers.ClientInbox):
        self.client = client
        self.server = server
        self.peer_name = peer_name
        self.status = b"I"
        self.routing = False
        self.pending = 0
        self.skipping = False
        self.statements: dict[str, LocalStatement] = {}
        self.probe_portals: dict[str, bytes] = {}  # portal -> its RowDescription
        self.routes = RouteCache()
        self.own = OwnStatements()
        self.hidden = 0  # completions owed for the front's own pipelined messages, not relayed
        self.perturbed_views: dict[str, list[str]] = {}
        self._out: list[bytes] = []
        self._inbox = inbox
        self._gone = asyncio.Event()
        self._gone_wait: asyncio.Future | None = None
        self.client_error: ProtocolError | None = None
        self.waiting_for_server = False
        self._pending_read: asyncio.Future | None = None

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        self._gone_wait = asyncio.ensure_future(self._gone.wait())
        transport = self.server.writer.transport
        transport.set_write_buffer_limits(high=SERVER_SEND_BUFFER)
        reader = asyncio.ensure_future(self._read_client())
        try:
            self.routing = await self._routing_available()
            if self.routing:
                self.perturbed_views = await self._perturbed_views()
            while True:
                message = await self._next_client(idle=not self.pending)
                if message.kind == b"X":
                    self.server.write(message.raw)
                    return
                if message.kind == b"Q":
                    await self._simple_query(message)
                elif message.kind in b"PBDECHS":
                    await self._extended(message)
                else:  # FunctionCall, stray copy data, unknown types: the server decides
                    self.server.write(message.raw)
                    await self._relay_until_ready()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._inbox.release_all()
            self._gone_wait.cancel()
            if self._pending_read is not None:
                self._pending_read.cancel()

    async def _read_client(self) -> None:
        first = list(self.client.ready)  # sent right behind the startup exchange
        self.client.ready.clear()
        try:
            await buffers.read_into(self.client.reader, self.client.framing, self._inbox, first)
        except ProtocolError as error:
            self.client_error = error
        except (ConnectionError, OSError):
            pass
        finally:
            self._gone.set()
            self._inbox.close()

    async def _next_client(self, *, idle: bool = False) -> Message:
        """The client's next message. When `idle` (no reply owed), whatever the server sends
        meanwhile (notifications, a FATAL before it closes) is relayed at once."""
        await self._flush_client()
        while idle and self._inbox.empty():
            get = asyncio.ensure_future(self._inbox.get())
            read = self._server_read()
            done, _ = await asyncio.wait({get, read}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
            if read in done:
                for message in self._take_server_read():
                    self._to_client(message.raw)
                await self._flush_client()
            if get in done:
                message = get.result()
                break
        else:
            message = await self._inbox.get()
        if message is None:
            raise ClientGone
        return message

    async def _flush_client(self) -> None:
        if self._out:
            self.client.write(b"".join(self._out))
            self._out.clear()
            await self.client.writer.drain()

    def _to_client(self, data: bytes) -> None:
        self._out.append(data)

    async def _next_server(self) -> Message:
        if self.server.ready:
            return self.server.ready.pop(0)
        await self._flush_client()
        while not self.server.ready:
            read = self._server_read()
            assert self._gone_wait is not None
            self.waiting_for_server = True
            done, _ = await asyncio.wait(
                {read, self._gone_wait}, return_when=asyncio.FIRST_COMPLETED
            )
            if read not in done:
                raise ClientGone
            self.waiting_for_server = False
            self.server.ready.extend(self._take_server_read())
        return self.server.ready.pop(0)

    def _server_read(self) -> asyncio.Future:
        """The one outstanding read of the server's stream, shared by both waits above."""
        if self._pending_read is None:
            self._pending_read = asyncio.ensure_future(self.server.reader.read(65536))
        return self._pending_read

    def _take_server_read(self) -> list[Message]:
        assert self._pending_read is not None
        data = self._pending_read.result()
        self._pending_read = None
        if not data:
            raise ServerGone
        self.server.framing.feed(data)
        return self.server.framing.messages()

    # --- relaying ------------------------------------------------------------------------------

    async def _relay_until_ready(self) -> None:
        """Relays the server's replies up to ReadyForQuery, COPY FROM STDIN data included."""
        while True:
            message = await self._next_server()
            if self._hidden_reply(message):
                continue
            self._to_client(self._hinted(message))
            if message.kind == b"Z":
                self._ready(message)
                return
            if message.kind == b"E":
                self._forget_routes_if_denied(message)
            if message.kind == b"G":
                await self._relay_copy_in()

    async def _relay_copy_in(self) -> None:
        await self._flush_client()
        while True:
            message = await self._next_client()
            self.server.write(message.raw)
            if message.kind in (b"c", b"f"):
                return
            # What the server says meanwhile (an error, then ReadyForQuery) is read in order after.
            await self._let_server_catch_up(self.server.ready.append)
            if message.kind != b"d":
                raise ProtocolError(f"unexpected message {message.kind!r} during COPY")

    def _hinted(self, message: Message) -> bytes:
        """A server message as relayed: "permission denied for table t", where t has a
        perturbed view the role may read, with a hint naming that view."""
        if message.kind != b"E" or b"C42501\0" not in message.body or not self.perturbed_views:
            return message.raw
        text = codec.parse_error_fields(message.body).get("M", "")
        views = self.perturbed_views.get(text.removeprefix(_DENIED_TABLE))
        if not text.startswith(_DENIED_TABLE) or not views:
            return message.raw
        return codec.with_hint(
            message.body,
            f"your role reads this table's perturbed rows in the view {' or '.join(views)}: "
            f"write SELECT ... FROM {views[0]}",
        )

    def _forget_routes_if_denied(self, error: Message) -> None:
        """A forwarded statement was denied: perhaps a table was labeled since its route was
        cached. The next attempt asks the server again."""
        if b"C42501\0" in error.body:
            self.routes.clear()

    def _ready(self, message: Message) -> None:
        self.status = message.body[:1]
        self.skipping = False
        if self.status == b"I":
            self.probe_portals.clear()

    async def _drain(self) -> bool:
        """Relays the replies owed for forwarded messages; False if one was an error."""
        if not self.pending:
            return not self.skipping
        self.server.write(codec.FLUSH)
        while self.pending:
            self._relay_reply(await self._next_server())
        return not self.skipping

    def _hidden_reply(self, message: Message) -> bool:
        """True for a completion of the front's own pipelined messages (not the client's to
        see). An error or ReadyForQuery ends them: the server skips the rest."""
        if self.hidden and message.kind in (b"1", b"2", b"3"):
            self.hidden -= 1
            return True
        if message.kind in (b"E", b"Z"):
            if self.hidden:
                self.own.forget()  # the error may be ours: a statement may not exist
            self.hidden = 0
        return False

    def _relay_reply(self, message: Message) -> None:
        """One reply to forwarded extended-protocol messages, relayed and counted."""
        if self._hidden_reply(message):
            self.pending -= 1
            return
        self._to_client(self._hinted(message))
        if message.kind == b"E":
            self._forget_routes_if_denied(message)
            self.pending = 0
            self.skipping = True
        elif message.kind == b"G":
            # COPY FROM STDIN cannot share a pipeline with statements the front answers.
            self.server.write(codec.frame(b"f", codec.cstring("COPY FROM STDIN in a pipeline")))
            self.server.write(codec.FLUSH)
        elif message.kind[0] in _COMPLETIONS:
            self.pending -= 1

    async def _exchange(
        self, payload: bytes, completions: int, *, sync: bool, extended: bool = True
    ) -> list[Message]:
        """Sends the front's own messages and returns their replies.

        With `sync`, the exchange ends at ReadyForQuery (extended messages are followed by Sync);
        otherwise after `completions` replies (followed by Flush). An error is relayed to the
        client and returned as the last reply.
        """
        if extended:
            payload += codec.SYNC if sync else codec.FLUSH
        self.server.write(payload)
        replies: list[Message] = []
        seen = 0
        while True:
            message = await self._next_server()
            if message.kind[0] in _ASYNC:
                self._to_client(message.raw)
                continue
            if message.kind == b"E":
                self._to_client(codec.without_internal_context(message.body))
                replies.append(message)
                if not sync:
                    self.skipping = True
                    return replies
                continue
            if message.kind == b"Z":
                self._ready(message)
                return replies
            replies.append(message)
            if message.kind[0] in _COMPLETIONS:
                seen += 1
                if not sync and seen == completions:
                    return replies

    # --- routing -------------------------------------------------------------------------------

    async def _routing_available(self) -> bool:
        replies = await self._exchange(codec.query(_ROUTING_CHECK), 0, sync=True, extended=False)
        rows = [codec.parse_data_row(m.body) for m in replies if m.kind == b"D"]
        available = bool(rows) and rows[0][0] == b"t"
        if not available:
            log.info("%s: no diffix.proxy_plan for this role; relaying only", self.peer_name)
        return available

    async def _perturbed_views(self) -> dict[str, list[str]]:
        replies = await self._exchange(codec.query(_PERTURBED_VIEWS), 0, sync=True, extended=False)
        views: dict[str, list[str]] = {}
        for message in replies:
            if message.kind == b"D":
                table, view = codec.parse_data_row(message.body)
                if table is not None and view is not None:
                    views.setdefault(table.decode(), []).append(view.decode())
        return views

    def _should_route(self) -> bool:
        return self.routing and self.status != b"E" and not self.skipping

    async def _plan(
        self,
        sql: str,
        *,
        answer: bool,
        sync: bool,
        statement: LocalStatement | None = None,
        bind: codec.Bind | None = None,
    ) -> PlanResult | None:
        """diffix.proxy_plan for `sql`; None if it raised (the error went to the client)."""
        values: list[bytes | None] = [sql.encode(), b"t" if answer else b"f"]
        types = [_TEXT, _BOOL]
        formats = [0, 0]
        call = "SELECT route, statement, token FROM diffix.proxy_plan($1, $2"
        if statement is not None and bind is not None:
            columns = _row_columns(statement.row_description)
            values += [
                _array([str(t) for t in statement.param_types]),
                _array([str(c.type_oid) for c in columns]),
                _array([str(c.typmod) for c in columns]),
            ]
            types += [_OID_ARRAY, _OID_ARRAY, _INT4_ARRAY]
            formats += [0, 0, 0]
            if len(bind.values) != len(statement.param_types):
                self._to_client(
                    codec.error_response(
                        "08P01",
                        f"bind message supplies {len(bind.values)} parameters, but prepared "
                        f"statement requires {len(statement.param_types)}",
                    )
                )
                self.skipping = True
                return None
            placeholders = [f"${6 + i}::pg_catalog.text" for i in range(len(bind.values))]
            values += bind.values
            types += statement.param_types
            formats += [bind.format_of(i) for i in range(len(bind.values))]
            call += (
                ", ARRAY[" + ", ".join(placeholders) + "]::pg_catalog.text[], $3, $4, $5"
                if placeholders
                else ", NULL, $3, $4, $5"
            )
        call += ")"
        name, prepare, prepared_replies = self.own.use(call, tuple(types))
        payload = (
            prepare
            + codec.encode_bind(_PLAN_PORTAL, name, formats, values, [0, 0, 0])
            + codec.execute(_PLAN_PORTAL)
            + codec.close("P", _PLAN_PORTAL)
        )
        replies = await self._exchange(payload, prepared_replies + 3, sync=sync)
        if any(m.kind == b"E" for m in replies):
            self.own.forget()  # the error may be ours: the statement may not exist
            return None
        rows = [codec.parse_data_row(m.body) for m in replies if m.kind == b"D"]
        route, fetch, token = rows[0]
        return PlanResult(
            (route or b"pass").decode(), fetch.decode() if fetch is not None else None, token
        )

    def _bind_fetch(self, plan: PlanResult, portal: str, result_formats: list[int]) -> bytes:
        """Bind of `portal` to the plan's fetch statement (kept prepared), after what prepares
        it; the replies to those are owed as `hidden`."""
        assert plan.statement is not None
        types = (_INT8,) if plan.token is not None else ()
        name, prepare, replies = self.own.use(plan.statement, types)
        self.hidden += replies
        values = [plan.token] if plan.token is not None else []
        return prepare + codec.encode_bind(portal, name, [0] * len(values), values, result_formats)

    async def _describe(self, sql: str, param_types: list[int], *, sync: bool) -> list[Message]:
        payload = (
            codec.close("S", _PROBE_STATEMENT)
            + codec.parse(_PROBE_STATEMENT, sql, param_types)
            + codec.describe("S", _PROBE_STATEMENT)
            + codec.close("S", _PROBE_STATEMENT)
        )
        return await self._exchange(payload, 5, sync=sync)

    # --- simple query --------------------------------------------------------------------------

    async def _simple_query(self, message: Message) -> None:
        sql = codec.query_text(message.body)
        await self._drain()  # replies owed for a pipeline the client left without Sync
        cached = self.routes.get(sql)
        if not self._should_route() or not sql.strip() or cached == "pass":
            self._pass_query(message, sql)
            await self._relay_until_ready()
            return
        if cached == "probe":
            plan: PlanResult | None = PlanResult("probe", None)
        else:
            plan = await self._plan(sql, answer=True, sync=True)
            if plan is None:
                self._to_client(codec.ready_for_query(self.status))
                return
            self.routes.put(sql, plan.route)
        if plan.route == "probe":
            replies = await self._describe(sql, [], sync=True)
            if not any(m.kind == b"E" for m in replies):
                shape = next(m for m in replies if m.kind in (b"T", b"n"))
                if shape.kind == b"T":
                    self._to_client(shape.raw)
                self._to_client(codec.command_complete("SELECT 0"))
            self._to_client(codec.ready_for_query(self.status))
            return
        if plan.route == "engine" and plan.statement and plan.token is not None:
            bind = self._bind_fetch(plan, "", [])
            self.hidden += 1  # BindComplete: a simple query's reply has none
            self.server.write(bind + codec.describe("P", "") + codec.execute("") + codec.SYNC)
        elif plan.route == "engine" and plan.statement:  # COPY (query) TO STDOUT
            self.server.write(codec.query(plan.statement))
        else:
            self._pass_query(message, sql)
        await self._relay_until_ready()

    def _pass_query(self, message: Message, sql: str) -> None:
        if self.routes.note_forwarded(sql):
            self.own.forget()  # DEALLOCATE ALL, DISCARD ALL, ...
        self.server.write(message.raw)

    # --- extended query ------------------------------------------------------------------------

    async def _extended(self, message: Message) -> None:
        kind = message.kind
        if kind == b"S":
            self.pending = 0
            self.server.write(message.raw)
            await self._relay_until_ready()
            return
        if kind == b"H":
            await self._drain()
            return
        if self.skipping:
            return  # the server discards everything up to Sync after an error; so do we
        if kind == b"P":
            await self._on_parse(message)
        elif kind == b"B":
            await self._on_bind(message)
        elif kind == b"D":
            await self._on_describe(message)
        elif kind == b"E":
            await self._on_execute(message)
        else:
            await self._on_close(message)

    async def _forward(self, message: Message, replies: int = 1) -> None:
        self.pending += replies
        self.server.write(message.raw)
        await self._let_server_catch_up(self._relay_or_keep)

    def _relay_or_keep(self, message: Message) -> None:
        if self.pending and not self.server.ready:
            self._relay_reply(message)
        else:
            self.server.ready.append(message)  # read in order later

    async def _let_server_catch_up(self, relay: Callable[[Message], None]) -> None:
        """Waits while more than SERVER_SEND_BUFFER bytes wait for the server. The server reads
        no more while its own replies wait to be read, so they are read meanwhile and handed
        to `relay`."""
        transport = self.server.writer.transport
        assert self._gone_wait is not None
        while transport.get_write_buffer_size() > SERVER_SEND_BUFFER:
            drained = asyncio.ensure_future(self.server.writer.drain())
            read = self._server_read()
            self.waiting_for_server = True
            done, _ = await asyncio.wait(
                {drained, read, self._gone_wait}, return_when=asyncio.FIRST_COMPLETED
            )
            if drained not in done:
                drained.cancel()
            if read in done:
                for message in self._take_server_read():
                    relay(message)
                await self._flush_client()
            elif self._gone_wait in done:
                raise ClientGone
            self.waiting_for_server = False

    async def _on_parse(self, message: Message) -> None:
        parse = codec.parse_parse(message.body)
        route = self.routes.get(parse.sql) if self._should_route() else "pass"
        if route is None:
            if not await self._drain():
                return
            plan = await self._plan(parse.sql, answer=False, sync=False)
            if plan is None:
                return
            route = plan.route
            self.routes.put(parse.sql, route)
        if route == "pass":
            if self.routes.note_forwarded(parse.sql) or parse.name.startswith(_OWN_PREFIX):
                self.own.forget()
            self.statements.pop(parse.name, None)
            await self._forward(message)
            return
        if not await self._drain():
            return
        if parse.name not in self.statements and len(self.statements) >= MAX_LOCAL_STATEMENTS:
            self._to_client(
                codec.error_response(
                    "53400",
                    f"more than {MAX_LOCAL_STATEMENTS} prepared statements over protected tables",
                    hint="close (DEALLOCATE) prepared statements you no longer use",
                )
            )
            self.skipping = True
            return
        if parse.name and parse.name in self.statements:
            self._to_client(
                codec.error_response("42P05", f'prepared statement "{parse.name}" already exists')
            )
            self.skipping = True
            return
        replies = await self._describe(parse.sql, parse.param_types, sync=False)
        if any(m.kind == b"E" for m in replies):
            return
        parameters = next(m for m in replies if m.kind == b"t")
        shape = next(m for m in replies if m.kind in (b"T", b"n"))
        self.statements[parse.name] = LocalStatement(
            parse.sql,
            route,
            codec.parse_parameter_description(parameters.body),
            parameters.raw,
            shape.raw,
        )
        self._to_client(codec.PARSE_COMPLETE)

    async def _on_bind(self, message: Message) -> None:
        bind = codec.parse_bind(message.body)
        self.probe_portals.pop(bind.portal, None)
        statement = self.statements.get(bind.statement)
        if statement is None:
            await self._forward(message)
            return
        if not await self._drain():
            return
        if statement.route == "probe":
            described = _with_formats(statement.row_description, bind.result_formats)
            if described is None:
                self._to_client(
                    codec.error_response(
                        "08P01", f"bind message has {len(bind.result_formats)} result formats"
                    )
                )
                self.skipping = True
                return
            self.probe_portals[bind.portal] = described
            self._to_client(codec.BIND_COMPLETE)
            return
        plan = await self._plan(
            statement.sql, answer=True, sync=False, statement=statement, bind=bind
        )
        if plan is None:
            return
        if plan.statement is None:
            self._to_client(
                codec.error_response(
                    "0A000",
                    "the tables this statement reads changed their labels since it was prepared",
                    hint="prepare the statement again",
                )
            )
            self.skipping = True
            return
        # pipelined like a forwarded Bind: its BindComplete is the client's
        payload = self._bind_fetch(plan, bind.portal, bind.result_formats)
        self.pending += self.hidden + 1
        self.server.write(payload)

    async def _on_describe(self, message: Message) -> None:
        target, name = codec.parse_target(message.body)
        if target == "S" and name in self.statements:
            if await self._drain():
                statement = self.statements[name]
                self._to_client(statement.parameter_description + statement.row_description)
        elif target == "P" and name in self.probe_portals:
            if await self._drain():
                self._to_client(self.probe_portals[name])
        else:
            await self._forward(message, 2 if target == "S" else 1)

    async def _on_execute(self, message: Message) -> None:
        portal = codec.query_text(message.body)
        if portal in self.probe_portals:
            if await self._drain():
                self._to_client(codec.command_complete("SELECT 0"))
        else:
            await self._forward(message)

    async def _on_close(self, message: Message) -> None:
        target, name = codec.parse_target(message.body)
        local = self.statements if target == "S" else self.probe_portals
        if name in local:
            if await self._drain():
                del local[name]
                self._to_client(codec.CLOSE_COMPLETE)
        else:
            if name.startswith(_OWN_PREFIX):
                self.own.forget()
            await self._forward(message)


def _array(items: list[str]) -> bytes:
    return ("{" + ",".join(items) + "}").encode()


def _row_columns(row_description: bytes) -> list[codec.Column]:
    if row_description[:1] != b"T":
        return []
    return codec.parse_row_description(row_description[5:])


def _with_formats(row_description: bytes, formats: list[int]) -> bytes | None:
    """The statement's RowDescription with a portal's result format codes (None if the codes
    do not fit its columns)."""
    columns = _row_columns(row_description)
    if not columns:
        return row_description
    if len(formats) not in (0, 1, len(columns)):
        return None
    chosen = [
        formats[0] if len(formats) == 1 else formats[i] if formats else 0
        for i in range(len(columns))
    ]
    return codec.encode_row_description(
        [
            codec.Column(c.name, c.table_oid, c.attnum, c.type_oid, c.type_size, c.typmod, f)
            for c, f in zip(columns, chosen, strict=True)
        ]
    )
