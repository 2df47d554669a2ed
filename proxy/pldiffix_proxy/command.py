"""`pldiffix proxy`: its options and how it starts."""

from __future__ import annotations

import argparse
import logging
import re
import ssl

from pldiffix_proxy import buffers

DSN_HELP = (
    "where the server listens, as a libpq connection string: host and port only, no "
    "credentials (each client signs in as itself). Prefer TCP (host=localhost port=5432): "
    "over a Unix socket the server sees every client as the proxy's OS user, so 'peer' "
    "authentication fails (default: $PLDIFFIX_DSN)"
)
DEFAULT_LISTEN = "127.0.0.1:6432"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def byte_size(text: str) -> int:
    """A size such as 1048576, 512k, 64M or 1G (binary units; 'iB' and 'B' accepted)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 16M, 1G, 65536)")
    size = int(match[1]) * _UNITS[match[2]]
    if size < buffers.READ_CHUNK:
        raise argparse.ArgumentTypeError(f"{text!r} is below the minimum of 64k")
    return size


def _mib(size: int) -> str:
    return f"{size >> 20}M"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help="HOST:PORT to accept clients on (default: %(default)s)",
    )
    parser.add_argument("--tls-cert", help="PEM certificate: offer TLS to clients")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--max-client-buffer",
        type=byte_size,
        default=buffers.DEFAULT_MAX_CLIENT_BUFFER,
        metavar="BYTES",
        help="client messages read ahead and held per client; a client past it is not read "
        "from until its session catches up (one larger message, up to 64M, is still taken "
        f"when nothing else is held) (default: {_mib(buffers.DEFAULT_MAX_CLIENT_BUFFER)})",
    )
    parser.add_argument(
        "--max-total-buffer",
        type=byte_size,
        default=buffers.DEFAULT_MAX_TOTAL_BUFFER,
        metavar="BYTES",
        help="the same for all clients together: the process holds at most this much client "
        "input; it also bounds one message (default: "
        f"{_mib(buffers.DEFAULT_MAX_TOTAL_BUFFER)})",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def serve(args: argparse.Namespace) -> None:
    """Runs the proxy; ValueError or OSError (one line each) if it cannot start."""
    from pldiffix_proxy import listener  # the event loop and psycopg only for this command

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    listener.run(
        args.listen,
        args.dsn,
        tls=tls,
        max_client_buffer=args.max_client_buffer,
        max_total_buffer=args.max_total_buffer,
    )
