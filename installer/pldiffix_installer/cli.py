"""The `pldiffix` command."""

from __future__ import annotations

import argparse
import os
import sys

from pldiffix_installer import install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pldiffix", description="Install and inspect pldiffix in a PostgreSQL database."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("install", "install, or upgrade in place keeping labels, settings and roles"),
        ("uninstall", "remove pldiffix from the database"),
        ("status", "show version, labels, roles, settings and security findings"),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--dsn",
            default=os.environ.get("PLDIFFIX_DSN"),
            help="libpq connection string of a superuser (default: $PLDIFFIX_DSN)",
        )
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn is required (or set PLDIFFIX_DSN)")
    try:
        if args.command == "install":
            install.install(args.dsn)
        elif args.command == "uninstall":
            install.uninstall(args.dsn)
        else:
            critical = install.status(args.dsn)
            return 1 if critical else 0
    except install.InstallError as error:
        print(f"pldiffix {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
