"""The front's listener: accepts clients, relays their authentication to the server, and runs one
Session per client. Each client's problems (bad packets, timeouts, disconnects) close that
client only; they are logged with its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict

from pldiffix_proxy import buffers, codec
from pldiffix_proxy.codec import Message, ProtocolError
from pldiffix_proxy.session import ClientGone, Peer, ServerGone, Session

log = logging.getLogger("pldiffix.proxy")

DEFAULT_MAX_MESSAGE = 64 << 20
SERVER_MAX_MESSAGE = 1 << 30  # the server's own bound on what it sends (a row of 1 GB)
CONNECT_TIMEOUT = 10.0
# Connection parameters that say where the server is; anything else in --dsn is not used.
_ADDRESS_KEYS = frozenset({"host", "hostaddr", "port"})
_CREDENTIAL_KEYS = frozenset({"password", "passfile", "sslkey", "sslpassword", "sslcert"})
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
        """The server's address in `dsn`; a DSN holding credentials is refused (each client
        signs in as itself; the front never does)."""
        try:
            params = conninfo_to_dict(dsn)
        except Exception as error:  # psycopg's ProgrammingError: the DSN does not parse
            raise ValueError(f"--dsn: {error}") from None
        credentials = sorted(_CREDENTIAL_KEYS & params.keys())
        if credentials:
            raise ValueError(
                f"--dsn holds {', '.join(credentials)}: the proxy takes no credentials, "
                "each client signs in as itself; give only host and port"
            )
        ignored = sorted(params.keys() - _ADDRESS_KEYS)
        if ignored:
            log.info("--dsn: only host and port are used; ignoring %s", ", ".join(ignored))
        host = params.get("host") or params.get("hostaddr") or "/var/run/postgresql"
        port = params.get("port") or "5432"
        try:
            return cls(str(host).split(",")[0], int(str(port).split(",")[0]))
        except ValueError:
            raise ValueError(f"--dsn: port {port!r} is not a number") from None

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    def __str__(self) -> str:
        if self.is_socket:
            return f"{self.host}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the server; OSError (with a readable reason) if there is none."""
        try:
            if self.is_socket:
                opening = asyncio.open_unix_connection(str(self))
            else:
                opening = asyncio.open_connection(self.host, self.port)
            return await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        except TimeoutError:
            raise OSError(f"no answer within {CONNECT_TIMEOUT:.0f} s") from None
        except FileNotFoundError:
            raise OSError("no server socket there") from None
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise OSError(reason.lower()) from None

    async def check(self) -> None:
        """Checks that a PostgreSQL server answers, without signing in: an SSLRequest, which
        the server answers with one byte (S or N) before any authentication. OSError if not."""
        reader, writer = await self.connect()
        try:
            writer.write(codec.ssl_request())
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.readexactly(1), CONNECT_TIMEOUT)
            except (asyncio.IncompleteReadError, TimeoutError):
                raise OSError("it does not answer as a PostgreSQL server") from None
            if answer not in (b"S", b"N"):
                raise OSError("it does not answer as a PostgreSQL server")
            if answer == b"S":
                # Complete the TLS handshake before leaving, so the server logs nothing.
                probe = ssl.create_default_context()
                probe.check_hostname = False
                probe.verify_mode = ssl.CERT_NONE
                with contextlib.suppress(ssl.SSLError, OSError, TimeoutError):
                    await asyncio.wait_for(writer.start_tls(probe), CONNECT_TIMEOUT)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                await writer.wait_closed()

    def peer_auth_hint(self) -> str:
        return (
            f"pldiffix proxy reaches the server over its Unix socket as the OS user "
            f"{getpass.getuser()!r}, so peer authentication checks that user, not yours; "
            "run the proxy with a TCP --dsn (host=localhost) so that clients sign in with "
            "their passwords"
        )


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
        max_client_buffer: int = buffers.DEFAULT_MAX_CLIENT_BUFFER,
        max_total_buffer: int = buffers.DEFAULT_MAX_TOTAL_BUFFER,
    ):
        self.server_address = ServerAddress.from_dsn(dsn)
        self.host = host
        self.port = port
        self.tls = tls
        self.startup_timeout = startup_timeout
        # A message must fit the process-wide budget, or its client would wait forever.
        self.max_message = min(max_message, max_total_buffer)
        self.max_client_buffer = max_client_buffer
        self.budget = buffers.MemoryBudget(max_total_buffer)
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
        client = Peer(reader, writer, codec.Reader(codec.MAX_AUTH_MESSAGE_LENGTH))
        server: Peer | None = None
        session: Session | None = None
        backend_key = b""
        try:
            startup = await asyncio.wait_for(self._startup(client), self.startup_timeout)
            if startup is None:
                return
            try:
                server_reader, server_writer = await self.server_address.connect()
            except OSError as error:
                self._refuse(
                    client, name, f"cannot reach the server at {self.server_address}: {error}"
                )
                return
            server = Peer(server_reader, server_writer, codec.Reader(SERVER_MAX_MESSAGE))
            server.write(startup.raw)
            try:
                backend_key = await asyncio.wait_for(
                    self._authenticate(client, server), self.startup_timeout
                )
            except ServerGone:
                self._refuse(client, name, "the server closed the connection during sign-in")
                return
            if not backend_key:
                return
            log.info("%s: connected as %s", name, startup.parameters.get("user"))
            client.framing.max_length = self.max_message
            inbox = buffers.ClientInbox(self.budget, self.max_client_buffer)
            session = Session(client, server, name, inbox)
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

    def _refuse(self, client: Peer, name: str, reason: str) -> None:
        """A client signing in gets a FATAL naming why its server connection failed."""
        log.warning("%s: %s", name, reason)
        with contextlib.suppress(ConnectionError, OSError):
            client.write(
                codec.error_response("08006", f"pldiffix proxy {reason}", severity="FATAL")
            )

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
            message = await _read(server, ServerGone)
            if message.kind == b"E" and self._is_peer_auth_failure(message):
                message = Message(
                    b"E", codec.with_hint(message.body, self.server_address.peer_auth_hint())[5:]
                )
            client.write(message.raw)
            if message.kind == b"R" and codec.authentication_code(message.body) in _ANSWERED_AUTH:
                await client.writer.drain()
                answer = await _read(client, ClientGone)
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

    def _is_peer_auth_failure(self, error: Message) -> bool:
        """The server refused peer authentication of the front's own OS user (its message is
        in the server's language: English is recognized)."""
        fields = codec.parse_error_fields(error.body)
        return (
            self.server_address.is_socket
            and fields.get("C") == "28000"
            and "peer authentication" in fields.get("M", "").lower()
        )

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


async def _read(peer: Peer, gone: type[Exception]) -> Message:
    while not peer.ready:
        data = await peer.reader.read(buffers.READ_CHUNK)
        if not data:
            raise gone("connection closed during sign-in")
        peer.framing.feed(data)
        peer.ready.extend(peer.framing.messages())
    return peer.ready.pop(0)


def run(listen: str, dsn: str, *, tls: ssl.SSLContext | None = None, **limits: int) -> None:
    """Serves until interrupted. ValueError for bad options; OSError if the server does not
    answer at start or the listen address cannot be taken."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--listen takes HOST:PORT, not {listen!r}")
    front = Front(dsn, host.strip("[]"), int(port), tls=tls, **limits)  # type: ignore[arg-type]
    address = front.server_address
    try:
        asyncio.run(address.check())
    except OSError as error:
        raise OSError(f"cannot reach the PostgreSQL server at {address}: {error}") from None
    if address.is_socket:
        log.warning(
            "the server at %s sees every client as the OS user %r: pg_hba.conf 'peer' and "
            "'trust' lines for local connections apply to all clients of the proxy; "
            "prefer a TCP --dsn (host=localhost)",
            address,
            getpass.getuser(),
        )
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
