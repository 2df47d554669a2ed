"""The installer's pure parts: uninstall's release statements, connection messages, confirmation."""

from __future__ import annotations

import io
import sys

import psycopg
import pytest

from pldiffix_installer import cli, install, uninstall


def test_release_statements_name_the_object_and_the_role():
    dependency = uninstall.Dependency("diffix_engine", "a", "view", 'public."v w"', "view v w")
    assert uninstall.release_statement(dependency).as_string(None) == (
        'REVOKE ALL ON TABLE public."v w" FROM "diffix_engine"'
    )
    owned = uninstall.Dependency("diffix_admin", "o", "function", "public.f(integer)", "f")
    assert uninstall.release_statement(owned).as_string(None) == (
        "ALTER FUNCTION public.f(integer) OWNER TO CURRENT_USER"
    )
    policy = uninstall.Dependency("diffix_admin", "r", "policy", "p on public.t", "policy p")
    assert uninstall.release_statement(policy) is None


def test_a_connection_failure_keeps_libpq_whole_message_on_one_line():
    error = psycopg.OperationalError(
        'connection is bad: connection to server on socket "/run/x/.s.PGSQL.5432" failed: '
        "No such file or directory\n\tIs the server running locally and accepting connections "
        "on that socket?\n"
    )
    assert install.connection_failure(error) == (
        'connection to server on socket "/run/x/.s.PGSQL.5432" failed: No such file or '
        "directory Is the server running locally and accepting connections on that socket?"
    )
    assert install.connection_failure(psycopg.OperationalError("")) == "no reason given"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("typed", "confirmed"), [("health\n", True), ("yes\n", False), ("", False)]
)
def test_cli_confirmation_on_a_terminal_wants_the_database_name(
    monkeypatch, capsys, typed, confirmed
):
    monkeypatch.setattr(sys, "stdin", _Terminal(typed))
    assert cli._ask("health") is confirmed
    assert "Type the database name (health) to uninstall" in capsys.readouterr().out
