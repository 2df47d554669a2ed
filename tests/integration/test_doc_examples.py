"""Every ```sql block of the user docs runs, in order, on a fresh database with the data the doc
names, as the roles the doc says.

Conventions in the docs (README.md, docs/*.md):
- a block runs as the administrator (a superuser); a comment line `-- as ROLE` switches the rest
  of the block to ROLE (`-- as administrator` back), `-- as ROLE through the proxy` to ROLE
  connected through `pldiffix proxy` (plain SQL over personal tables);
- `<!-- not-runnable: reason -->` on the line before a block skips it (grammar, placeholders);
- every statement is its own transaction (budgets are charged over the ledger's loopback).
A failing statement is a doc bug or a code bug; the failure names the file, line and role.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pldiffix_installer import cellkey
from pldiffix_installer.paths import REPO_ROOT
from pldiffix_proxy.listener import running_in_thread
from pldiffix_tools import demo

ADMIN = "administrator"
_NOT_RUNNABLE = re.compile(r"^<!--\s*not-runnable:\s*\S.*-->\s*$")
_AS_ROLE = re.compile(r"^--\s*as\s+(\w+)(\s+through the proxy)?\s*$")
_CREATE_ROLE = re.compile(r"\bCREATE\s+ROLE\s+(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    line: int  # 1-based line of the doc where the statement starts
    role: str
    proxy: bool
    text: str


def sql_blocks(markdown: str) -> Iterator[tuple[int, list[str]]]:
    """The runnable ```sql blocks: (line of the first SQL line, its lines)."""
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```sql":
            start = index + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            previous = next((ln for ln in reversed(lines[:index]) if ln.strip()), "")
            if not _NOT_RUNNABLE.match(previous.strip()):
                yield start + 1, lines[start:end]
            index = end
        index += 1


def split_statements(first_line: int, lines: list[str]) -> Iterator[Statement]:
    """The block's statements with the role each runs as; `;` ends a statement outside quotes,
    dollar quotes and comments, and so does a role switch."""
    role, proxy = ADMIN, False
    buffer: list[str] = []
    start: int | None = None  # the line of the statement's first SQL
    quote: str | None = None  # "'", '"' or a dollar tag while inside one

    def flush() -> Iterator[Statement]:
        nonlocal buffer, start
        if start is not None:
            yield Statement(start, role, proxy, "\n".join(buffer).strip())
        buffer, start = [], None

    for number, line in enumerate(lines, first_line):
        switch = _AS_ROLE.match(line.strip()) if quote is None else None
        if switch:
            yield from flush()
            role, proxy = switch.group(1), bool(switch.group(2))
            continue
        position = 0
        while position < len(line):
            if quote is not None:
                close = line.find(quote, position)
                position = len(line) if close < 0 else close + len(quote)
                quote = None if close >= 0 else quote
                continue
            if line.startswith("--", position):
                line = line[:position]
                break
            if start is None and not line[position].isspace():
                start = number
            dollar = re.match(r"\$\w*\$", line[position:])
            if line[position] in "'\"" or dollar:
                quote = dollar.group(0) if dollar else line[position]
                position += len(quote)
            elif line[position] == ";":
                buffer.append(line[:position])
                yield from flush()
                line, position = line[position + 1 :], 0
            else:
                position += 1
        if start is not None:
            buffer.append(line)
    yield from flush()


def doc_statements(path: Path) -> list[Statement]:
    return [
        statement
        for first_line, lines in sql_blocks(path.read_text())
        for statement in split_statements(first_line, lines)
    ]


def _tbe_dwellings(conn: psycopg.Connection, dsn: str) -> None:
    """docs/tbe.md's dwellings: demo.DWELLINGS configured with examples/tbe/dataset.json."""
    conn.execute(demo.DWELLINGS.replace("GRANT SELECT ON dwellings TO teller;", ""))
    config = REPO_ROOT / "examples" / "tbe" / "dataset.json"
    big_n = cellkey.load_tbe_config(config).big_n
    cellkey.add_record_keys(conn, "dwellings", "record_key", big_n, out=io.StringIO())
    cellkey.configure_tbe(dsn, "dwellings", config, out=io.StringIO())


# the data each doc says it uses; dp.md and synthetic.md create theirs in their first block
DOCS = {
    "README.md": demo.BANK_TABLES + demo.PATIENTS_TABLE,
    "docs/dp.md": "",
    "docs/synthetic.md": "",
    "docs/perturbation.md": demo.PATIENTS_TABLE,
    "docs/tbe.md": _tbe_dwellings,
}


def test_parser_splits_statements_and_roles() -> None:
    lines = [
        "SELECT 'a;b' AS x; -- c; d",
        "CALL f($$x;y$$,",
        "       2);",
        "-- as analyst",
        'SELECT "q;" FROM t',
        "-- as analyst through the proxy",
        "SELECT 1;",
    ]
    assert list(split_statements(10, lines)) == [
        Statement(10, ADMIN, False, "SELECT 'a;b' AS x"),
        Statement(11, ADMIN, False, "CALL f($$x;y$$,\n       2)"),
        Statement(14, "analyst", False, 'SELECT "q;" FROM t'),
        Statement(16, "analyst", True, "SELECT 1"),
    ]
    markdown = "```sql\nSELECT 1;\n```\n<!-- not-runnable: grammar -->\n```sql\nSELECT <x>\n```\n"
    assert list(sql_blocks(markdown)) == [(2, ["SELECT 1;"])]


@pytest.fixture
def doc_lock(server_dsn: str) -> Iterator[None]:
    """The docs create roles with fixed names (cluster-wide): one doc at a time on a shared
    server, from before its database is made until its roles are dropped with it (the lock is
    held in the database every test server has)."""
    with psycopg.connect(make_conninfo(server_dsn, dbname="postgres"), autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(hashtext('pldiffix doc examples'))")
        yield


@pytest.mark.db
@pytest.mark.parametrize("doc", sorted(DOCS))
def test_doc_examples_run(doc_lock: None, db, doc: str) -> None:
    path = REPO_ROOT / doc
    statements = doc_statements(path)
    assert statements, f"{doc} has no runnable sql block"
    created = sorted({m for s in statements for m in _CREATE_ROLE.findall(s.text)})
    existing = db.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (created,))
    assert not existing, f"roles of {doc} already exist on the server: {existing}"
    db.roles.extend(created)  # dropped with the database
    data = DOCS[doc]
    if callable(data):
        data(db.admin, db.dsn())
    elif data:
        db.admin.execute(data)
    connections: dict[tuple[str, bool], psycopg.Connection] = {(ADMIN, False): db.admin}
    proxied: list[psycopg.Connection] = []
    with running_in_thread(db.dsn(), startup_timeout=2.0, max_message=1 << 20) as front:
        try:
            for statement in statements:
                key = (statement.role, statement.proxy)
                user = None if statement.role == ADMIN else statement.role
                if key in connections:
                    pass
                elif statement.proxy:
                    dsn = make_conninfo(db.dsn(user), host="127.0.0.1", port=front.port)
                    connections[key] = psycopg.connect(dsn, autocommit=True)
                    proxied.append(connections[key])
                else:
                    connections[key] = db.connect(user)
                try:
                    connections[key].execute(sql.SQL(statement.text))  # type: ignore[arg-type]
                except psycopg.Error as error:
                    via = " through the proxy" if statement.proxy else ""
                    pytest.fail(
                        f"{doc}:{statement.line} as {statement.role}{via}: {error}\n"
                        f"{statement.text}"
                    )
        finally:
            for conn in proxied:
                conn.close()
