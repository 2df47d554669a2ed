"""The front's own prepared statements in a server connection (session.OwnStatements)."""

from __future__ import annotations

from pldiffix_proxy import codec, session


def test_a_statement_is_parsed_on_first_use_only():
    own = session.OwnStatements()
    name, payload, replies = own.use("SELECT $1", (20,))
    assert payload == codec.close("S", name) + codec.parse(name, "SELECT $1", (20,))
    assert replies == 2
    assert own.use("SELECT $1", (20,)) == (name, b"", 0)


def test_other_parameter_types_are_another_statement():
    own = session.OwnStatements()
    first, _, _ = own.use("SELECT $1", (20,))
    second, _, replies = own.use("SELECT $1", (25,))
    assert first != second and replies == 2


def test_forgotten_statements_are_parsed_again_under_their_names():
    own = session.OwnStatements()
    name, payload, _ = own.use("SELECT 1", ())
    own.forget()
    assert own.use("SELECT 1", ()) == (name, payload, 2)


def test_beyond_the_bound_the_least_recently_used_is_closed(monkeypatch):
    monkeypatch.setattr(session, "_OWN_KEPT", 2)
    own = session.OwnStatements()
    a, _, _ = own.use("SELECT 'a'", ())
    b, _, _ = own.use("SELECT 'b'", ())
    own.use("SELECT 'a'", ())  # a is now the most recent
    c, payload, replies = own.use("SELECT 'c'", ())
    assert payload.startswith(codec.close("S", b)) and replies == 3
    assert own.use("SELECT 'a'", ()) == (a, b"", 0)
    assert len({a, b, c}) == 3
