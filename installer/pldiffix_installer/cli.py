"""The `pldiffix` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg

from pldiffix_installer import audit, cellkey, install, perturb, synthetic, uninstall
from pldiffix_proxy import command as proxy_command


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pldiffix", description="Install and inspect pldiffix in a PostgreSQL database."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    parsers = {}
    for name, help_text in [
        ("install", "install, or upgrade in place keeping labels, settings and roles"),
        ("uninstall", "remove pldiffix from the database"),
        ("status", "show version, labels, roles, settings and security findings"),
        ("tbe-configure", "validate a TBE configuration and its CSV files, then apply it"),
        ("tbe-keys", "add a column of random record keys in [0, bigN) to a table"),
        ("laplace-configure", "validate a Laplace configuration, then apply it"),
        ("perturb-report", "utility and risk figures of a row-perturbed table"),
        ("perturb-export", "write a row-perturbed table's view to a CSV file"),
        ("synthetic-report", "utility and risk figures of a DP synthetic twin"),
        ("audit", "show the audit log of analyst queries (administrators)"),
        ("proxy", "serve plain SQL to any PostgreSQL client, anonymized (docs/proxy.md)"),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--dsn",
            default=os.environ.get("PLDIFFIX_DSN"),
            help=proxy_command.DSN_HELP
            if name == "proxy"
            else "libpq connection string of a superuser (default: $PLDIFFIX_DSN)",
        )
        parsers[name] = command
    for name in (
        "tbe-configure",
        "tbe-keys",
        "laplace-configure",
        "perturb-report",
        "perturb-export",
    ):
        parsers[name].add_argument("--table", required=True, help="the table, as in SQL")
    for name in ("tbe-configure", "laplace-configure"):
        parsers[name].add_argument(
            "--config",
            required=True,
            help="the seed's JSON: the dataset document, transform_definitions or parameters",
        )
    parsers["tbe-configure"].add_argument(
        "--path",
        help="directory of the CSV files (default: the config's `path`, relative to its file)",
    )
    parsers["tbe-keys"].add_argument("--column", required=True, help="the new column's name")
    parsers["tbe-keys"].add_argument(
        "--big-n", type=int, help="bigN (default: from the table's stored TBE configuration)"
    )
    parsers["synthetic-report"].add_argument(
        "name", nargs="?", help="the twin's name in diffix_synthetic"
    )
    parsers["synthetic-report"].add_argument(
        "--name", dest="name_option", metavar="NAME", help="the same, as an option"
    )
    parsers["synthetic-report"].add_argument(
        "--html", type=Path, metavar="FILE", help="also write an HTML page with plots to FILE"
    )
    parsers["perturb-export"].add_argument("--csv", required=True, help="the file to write")
    parsers["uninstall"].add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)"
    )
    parsers["uninstall"].add_argument(
        "--export-audit",
        type=Path,
        metavar="FILE",
        help="first write the audit log, the ledger and the budgets to FILE (.json, or .csv: one "
        "file per table)",
    )
    parsers["audit"].add_argument("--role", help="only this role's queries (session or effective)")
    parsers["audit"].add_argument(
        "--since", help="only queries from this time on (a timestamptz, e.g. '2026-01-31 12:00')"
    )
    proxy_command.add_arguments(parsers["proxy"])
    return parser


def _serve_proxy(args: argparse.Namespace) -> None:
    try:
        proxy_command.serve(args)
    except (ValueError, OSError) as error:
        raise install.InstallError(str(error)) from None


def _ask(database: str) -> bool:
    """Confirmation on a terminal; without one the DBA must say --yes."""
    if not sys.stdin.isatty():
        raise install.InstallError(
            "not confirmed (no terminal to ask on): run again with --yes; nothing was dropped"
        )
    print(f"Type the database name ({database}) to uninstall: ", end="", flush=True)
    try:
        return input().strip() == database
    except EOFError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn is required (or set PLDIFFIX_DSN)")
    try:
        if args.command == "install":
            install.install(args.dsn)
        elif args.command == "uninstall":
            uninstall.uninstall(
                args.dsn, confirm=None if args.yes else _ask, export_to=args.export_audit
            )
        elif args.command == "tbe-configure":
            cellkey.configure_tbe(args.dsn, args.table, args.config, args.path)
        elif args.command == "tbe-keys":
            cellkey.tbe_keys(args.dsn, args.table, args.column, args.big_n)
        elif args.command == "laplace-configure":
            cellkey.configure_laplace(args.dsn, args.table, args.config)
        elif args.command == "perturb-report":
            perturb.report(args.dsn, args.table)
        elif args.command == "perturb-export":
            perturb.export(args.dsn, args.table, args.csv)
        elif args.command == "synthetic-report":
            name = args.name or args.name_option
            if not name:
                parser.error("synthetic-report needs the twin's name")
            synthetic.report(args.dsn, name, html_file=args.html)
        elif args.command == "audit":
            audit.show(args.dsn, args.role, args.since)
        elif args.command == "proxy":
            _serve_proxy(args)
        else:
            critical = install.status(args.dsn)
            return 1 if critical else 0
    except install.InstallError as error:
        print(f"pldiffix {args.command}: {error}", file=sys.stderr)
        return 2
    except psycopg.Error as error:
        message = error.diag.message_primary or install.connection_failure(error)
        print(f"pldiffix {args.command}: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
