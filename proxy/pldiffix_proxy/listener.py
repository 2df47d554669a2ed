"""The front's listener: accepts clients, relays their authentication to the server, and runs one
Session per client. Each client's problems (bad packets, timeouts, disconnects) close that
client only; they are logged with its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict

from pldiffix_proxy import codec
from pldiffix_proxy.codec import Message, ProtocolError
from pldiffix_proxy.session import ClientGone, Peer, ServerGone, Session

log = logging.getLogger("pldiffix.proxy")

DEFAULT_MAX_MESSAGE = 64 << 20
# Authentication requests the client answers with a PasswordMessage ('p'): cleartext, MD5,
# GSS/SSPI continuation, SASL and SASL continue.
_ANSWERED_AUTH = frozenset({3, 5, 7, 8, 9, 10, 11})


@dataclass(frozen=True)
class ServerAddress:
    """Where the PostgreSQL server listens: a Unix socket directory or a TCP host."""

    host: str
    port: int

    @classmethod
    def from_dsn(cls, dsn: str) -> ServerAddress:
        params = conninfo_to_dict(dsn)
        host = params.get("host") or params.get("hostaddr") or "/var/run/postgresql"
        port = params.get("port") or "5432"
        return cls(str(host).split(",")[0], int(str(port).split(",")[0]))

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.host}/.s.PGSQL.{self.port}")
        return await asyncio.open_connection(self.host, self.port)


class Front:
    """`pldiffix proxy`: a PostgreSQL wire-protocol front on host:port for the server at `dsn`."""

    def __init__(
        self,
        dsn: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
        startup_timeout: float = 30.0,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ):
        self.server_address = ServerAddress.from_dsn(dsn)
        self.host = host
        self.port = port
        self.tls = tls
        self.startup_timeout = startup_timeout
        self.max_message = max_message
        self.clients = 0
        self._listener: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._listener = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info(
            "listening on %s:%d for the server at %s", self.host, self.port, self.server_address
        )

    async def close(self, grace: float = 5.0) -> None:
        """Stops accepting; clients still connected get `grace` seconds, then are cut off."""
        if self._listener is not None:
            self._listener.close()
        if self._handlers:
            _done, running = await asyncio.wait(set(self._handlers), timeout=grace)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=grace)
        if self._listener is not None:
            await self._listener.wait_closed()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._listener is not None
        async with self._listener:
            await self._listener.serve_forever()

    # --- one client ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.clients += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        client = Peer(reader, writer, codec.Reader(self.max_message))
        server: Peer | None = None
        session: Session | None = None
        backend_key = b""
        try:
            startup = await asyncio.wait_for(self._startup(client), self.startup_timeout)
            if startup is None:
                return
            server_reader, server_writer = await self.server_address.connect()
            server = Peer(server_reader, server_writer, codec.Reader(DEFAULT_MAX_MESSAGE << 4))
            server.write(startup.raw)
            backend_key = await asyncio.wait_for(
                self._authenticate(client, server), self.startup_timeout
            )
            if not backend_key:
                return
            log.info("%s: connected as %s", name, startup.parameters.get("user"))
            session = Session(client, server, name)
            await session.run()
            log.info("%s: disconnected", name)
        except ProtocolError as error:
            log.warning("%s: closing the connection: %s", name, error)
            with contextlib.suppress(ConnectionError, OSError):
                client.write(
                    codec.error_response("08P01", f"protocol violation: {error}", severity="FATAL")
                )
        except ClientGone:
            if session is not None and session.client_error is not None:
                log.warning("%s: closing the connection: %s", name, session.client_error)
                with contextlib.suppress(ConnectionError, OSError):
                    client.write(
                        codec.error_response(
                            "08P01", f"protocol violation: {session.client_error}", severity="FATAL"
                        )
                    )
            else:
                log.info("%s: client went away", name)
            if backend_key and session is not None and session.waiting_for_server:
                await self._cancel(backend_key)
        except TimeoutError:
            log.warning(
                "%s: closing the connection: no startup within %.1f s", name, self.startup_timeout
            )
        except ServerGone:
            log.warning("%s: the server closed the connection", name)
        except (ConnectionError, OSError) as error:
            log.info("%s: connection lost: %s", name, error)
        except Exception:
            log.exception("%s: internal error; closing the connection", name)
        finally:
            self.clients -= 1
            if task is not None:
                self._handlers.discard(task)
            if server is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    server.write(codec.frame(b"X"))
                await server.close()
            with contextlib.suppress(ConnectionError, OSError):
                await client.writer.drain()
            await client.close()

    async def _startup(self, client: Peer) -> codec.Startup | None:
        """Reads the startup packet, answering SSL and GSS requests; None after a cancel or
        when the client leaves without a word."""
        first = True
        while True:
            try:
                header = await client.reader.readexactly(4)
                length = codec.startup_length(header)
                body = await client.reader.readexactly(length - 4)
            except asyncio.IncompleteReadError as error:
                if first and not error.partial:
                    return None  # connected and left (a port probe): nothing to report
                raise ProtocolError("the connection ended inside a startup packet") from None
            first = False
            startup = codec.parse_startup(header + body)
            if startup.code == codec.SSL_REQUEST:
                if self.tls is None:
                    client.write(b"N")
                    continue
                client.write(b"S")
                await client.writer.drain()
                await client.writer.start_tls(self.tls)
                continue
            if startup.code == codec.GSSENC_REQUEST:
                client.write(b"N")
                continue
            if startup.code == codec.CANCEL_REQUEST:
                await self._cancel(startup.raw[8:])
                return None
            return startup

    async def _authenticate(self, client: Peer, server: Peer) -> bytes:
        """Relays authentication until ReadyForQuery; the backend key, or b"" if refused."""
        backend_key = b""
        while True:
            message = await _read(server)
            client.write(message.raw)
            if message.kind == b"R" and codec.authentication_code(message.body) in _ANSWERED_AUTH:
                await client.writer.drain()
                answer = await _read(client)
                if answer.kind != b"p":
                    raise ProtocolError("expected a password message")
                server.write(answer.raw)
            elif message.kind == b"K":
                backend_key = message.body
            elif message.kind == b"E":
                return b""
            elif message.kind == b"Z":
                await client.writer.drain()
                return backend_key

    async def _cancel(self, backend_key: bytes) -> None:
        """Forwards a cancel request; the key is the server's own, relayed unchanged."""
        try:
            _reader, writer = await self.server_address.connect()
            writer.write(codec.cancel_request(backend_key))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError) as error:
            log.warning("could not forward a cancel request: %s", error)


async def _read(peer: Peer) -> Message:
    while not peer.ready:
        data = await peer.reader.read(65536)
        if not data:
            raise ConnectionResetError("connection closed during startup")
        peer.framing.feed(data)
        peer.ready.extend(peer.framing.messages())
    return peer.ready.pop(0)


def run(listen: str, dsn: str, *, tls: ssl.SSLContext | None = None) -> None:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--listen takes HOST:PORT, not {listen!r}")
    front = Front(dsn, host.strip("[]"), int(port), tls=tls)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(front.serve_forever())


@contextlib.contextmanager
def running_in_thread(dsn: str, **options: object) -> Iterator[Front]:
    """A Front on a loopback port, served by an event loop in a daemon thread (tests, bench)."""
    loop = asyncio.new_event_loop()
    front = Front(dsn, **options)  # type: ignore[arg-type]
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(front.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="pldiffix-proxy", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the proxy did not start")
    try:
        yield front
    finally:
        asyncio.run_coroutine_threadsafe(front.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
