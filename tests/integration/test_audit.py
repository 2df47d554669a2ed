"""The audit log, attacked: every analyst query is logged durably, accepted or refused, under the
session's own identity; analysts can neither read, change nor forge it."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout

import psycopg
import pytest
from psycopg import sql

from pldiffix_installer import cli, install

COLUMNS = "session_role, effective_role, level, mechanism, sql, accepted, reason, rows_returned"


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(
        """
        CREATE TABLE customers (id integer, city text);
        INSERT INTO customers SELECT i, (ARRAY['Berlin', 'Rome'])[1 + i % 2]
          FROM generate_series(1, 60) i;
        CREATE TABLE cities (name text);
        INSERT INTO cities VALUES ('Berlin'), ('Rome'), ('Oslo');
        CREATE TABLE noisy (pet text, amount numeric);
        INSERT INTO noisy SELECT (ARRAY['cat', 'dog'])[1 + i % 2], i FROM generate_series(1, 40) i;
        GRANT SELECT ON customers, cities, noisy TO PUBLIC;
        CALL diffix.mark_personal('customers', 'id');
        CALL diffix.mark_public('cities');
        CALL diffix.mark_laplace('noisy', '{"scale": 2, "key": "k"}');
        """
    )
    _create_writers(module_db)
    return module_db


def _create_writers(db) -> None:
    """Only the gate (owner diffix_engine) may write rows or charge; the tests of the writers'
    own bounds call them as it does, through definers of the same owner."""
    db.admin.execute(
        """
        CREATE FUNCTION public.record_as_engine(level text, mechanism text, statement text,
                                                accepted boolean, reason text DEFAULT NULL)
        RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$ SELECT diffix._audit_record(level, mechanism, statement, accepted, reason) $$;
        ALTER FUNCTION public.record_as_engine(text, text, text, boolean, text)
          OWNER TO diffix_engine;
        CREATE FUNCTION public.charge_as_engine(e double precision, d double precision, s text)
        RETURNS double precision LANGUAGE sql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$ SELECT c.epsilon_remaining FROM diffix._charge_budget(e, d, s, 'dp') c $$;
        ALTER FUNCTION public.charge_as_engine(double precision, double precision, text)
          OWNER TO diffix_engine;
        """
    )


def _log(db, role: str) -> list[tuple]:
    return db.execute(f"SELECT {COLUMNS} FROM diffix.show_audit(%s)", (role,))


def test_every_entry_point_and_mechanism_logs_accepted_queries(shop):
    analyst = shop.create_role("anonymized_untrusted")
    direct = shop.create_role("direct")
    conn = shop.as_role(analyst)
    # rows_returned: what the mechanism released; NULL for statements the caller runs with its
    # own privileges (the gate never runs them)
    queries = [
        ("SELECT name FROM cities", "public", None),
        (
            "SELECT name AS \"Städte\", 'it''s \\ ok' FROM cities WHERE name = 'Zürich'",
            "public",
            None,
        ),
        ("SELECT city, count(*) FROM customers GROUP BY city", "diffix", 2),
        ("SELECT pet, count(*) FROM noisy GROUP BY pet", "laplace", 2),
    ]
    for query, _, _ in queries:
        conn.execute("SELECT diffix.query_json(%s)", (query,))
    conn.execute("SELECT * FROM diffix.query('SELECT name FROM cities') AS t(name text)")
    shop.admin.execute(sql.SQL("GRANT SELECT ON customers TO {}").format(sql.Identifier(direct)))
    shop.as_role(direct).execute("SELECT diffix.query_json('SELECT id FROM customers')")
    level = "anonymized_untrusted"
    # show_audit renders text visibly: a backslash shows doubled
    assert _log(shop, analyst) == [
        (analyst, analyst, level, mechanism, query.replace("\\", "\\\\"), True, None, rows)
        for query, mechanism, rows in queries
    ] + [(analyst, analyst, level, "public", "SELECT name FROM cities", True, None, None)]
    assert _log(shop, direct) == [
        (direct, direct, "direct", "direct", "SELECT id FROM customers", True, None, None)
    ]


@pytest.mark.parametrize(
    ("query", "mechanism", "error"),
    [
        ("SELECT id FROM customers", "diffix", psycopg.errors.FeatureNotSupported),
        ("DELETE FROM cities", "diffix", psycopg.errors.FeatureNotSupported),
        ("SELECT amount FROM noisy", "cellkey", psycopg.errors.FeatureNotSupported),
    ],
)
def test_refusals_are_logged_with_their_reason_and_raised_unchanged(shop, query, mechanism, error):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    with pytest.raises(error) as refused:
        conn.execute("SELECT diffix.query_json(%s)", (query,))
    message = refused.value.diag.message_primary
    assert not message.startswith(("plpy.", "spiexceptions."))
    assert _log(shop, analyst) == [
        (analyst, analyst, "anonymized_untrusted", mechanism, query, False, message, None)
    ]


def test_a_rollback_does_not_erase_the_entry(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    conn.execute("BEGIN")
    conn.execute("SELECT diffix.query_json('SELECT city, count(*) FROM customers GROUP BY city')")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("SELECT diffix.query_json('SELECT id FROM customers')")
    conn.execute("ROLLBACK")
    assert [(r[4], r[5]) for r in _log(shop, analyst)] == [
        ("SELECT city, count(*) FROM customers GROUP BY city", True),
        ("SELECT id FROM customers", False),
    ]


def test_set_role_is_logged_as_the_effective_role_of_the_login(shop):
    team = shop.create_role("anonymized_untrusted", login=False)
    member = shop.create_role("direct")
    grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(team), sql.Identifier(member))
    shop.admin.execute(grant)
    conn = shop.as_role(member)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(team)))
    conn.execute("SELECT diffix.query_json('SELECT name FROM cities')")
    assert [r[:3] for r in _log(shop, team)] == [(member, team, "anonymized_untrusted")]


def test_administrators_queries_are_not_logged(shop):
    admin = shop.create_role()
    shop.admin.execute(sql.SQL("GRANT diffix_admin TO {}").format(sql.Identifier(admin)))
    shop.as_role(admin).execute("SELECT diffix.query_json('SELECT name FROM cities')")
    shop.execute("SELECT diffix.query_json('SELECT name FROM cities')")
    assert _log(shop, admin) == []
    assert _log(shop, "postgres") == []


def test_analysts_cannot_read_change_or_forge_the_log(shop):
    analyst = shop.create_role("anonymized_untrusted")
    victim = shop.create_role("anonymized_untrusted")
    shop.as_role(victim).execute("SELECT diffix.query_json('SELECT name FROM cities')")
    conn = shop.as_role(analyst)
    for attack in [
        "SELECT * FROM diffix.audit_log",
        "SELECT * FROM diffix.show_audit()",
        "UPDATE diffix.audit_log SET accepted = false",
        "DELETE FROM diffix.audit_log",
        "TRUNCATE diffix.audit_log",
        f"INSERT INTO diffix.audit_log (session_role, effective_role, mechanism, accepted) "
        f"VALUES ('{victim}', '{victim}', 'diffix', true)",
        f"SELECT diffix._audit_append('{victim}', '{victim}', 'direct', 'direct', 'forged', "
        "6, NULL, true, NULL, 1, NULL, NULL)",
        # only the gate writes rows: not even rows about oneself
        "SELECT diffix._audit_record('direct', 'direct', 'claimed to be the victim', true)",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)
    assert [r[4] for r in _log(shop, victim)] == ["SELECT name FROM cities"]
    assert _log(shop, analyst) == []


def test_the_cli_shows_the_log_by_role_and_time(shop):
    analyst = shop.create_role("anonymized_untrusted")
    shop.as_role(analyst).execute("SELECT diffix.query_json('SELECT name\n  FROM cities')")
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["audit", "--dsn", shop.dsn(), "--role", analyst]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "logged_at",
        "|",
        "session_role",
        "|",
        "effective_role",
        "|",
        "level",
        "|",
        "mechanism",
        "|",
        "accepted",
        "|",
        "rows_returned",
        "|",
        "epsilon",
        "|",
        "delta",
        "|",
        "reason",
        "|",
        "sql_bytes",
        "|",
        "sql",
    ]
    assert len(lines) == 3 and analyst in lines[2] and "SELECT name\\n  FROM cities" in lines[2]
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["audit", "--dsn", shop.dsn(), "--since", "2999-01-01"]) == 0
    assert out.getvalue().strip() == "(no audited queries)"


def test_an_analyst_cannot_run_the_cli(shop):
    analyst = shop.create_role("anonymized_untrusted")
    assert cli.main(["audit", "--dsn", shop.dsn(analyst)]) == 2


CAP = 8192  # audit_sql_max_bytes by default
REASON_CAP = 1024


def _incompressible(size: int) -> str:
    """Text that TOAST cannot compress: base64 of random bytes."""
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def _raw_rows(db, role: str) -> list[tuple]:
    return db.execute(
        "SELECT level, mechanism, sql, sql_bytes, sql_sha256, reason FROM diffix.audit_log "
        "WHERE effective_role = %s ORDER BY id",
        (role,),
    )


def test_statement_text_is_kept_up_to_the_cap_with_its_full_length_and_sha256(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    # 39 bytes of ASCII, then 2-byte characters: the cap falls inside one
    long_query = "SELECT name FROM cities WHERE name <> '" + "é" * 6000 + "'"
    conn.execute("SELECT diffix.query_json(%s)", (long_query,))
    huge = _incompressible(1 << 20)
    conn.execute(
        "SELECT public.record_as_engine(repeat('l', 100000), repeat('m', 100000), %s, false, %s)",
        (huge, "why " * 5000),
    )
    conn.execute("SELECT public.record_as_engine('direct', 'direct', %s, true)", ("😀" * 3000,))
    (_, _, sql1, bytes1, sha1, _), (level, mechanism, sql2, bytes2, sha2, reason), emoji = (
        _raw_rows(shop, analyst)
    )
    encoded = long_query.encode()
    assert (bytes1, sha1) == (len(encoded), hashlib.sha256(encoded).hexdigest())
    assert long_query.startswith(sql1) and len(sql1.encode()) == CAP - 1  # whole characters
    assert (sql2, bytes2, sha2) == (huge[:CAP], 1 << 20, hashlib.sha256(huge.encode()).hexdigest())
    assert (level, mechanism, reason) == ("l" * 64, "m" * 64, ("why " * 5000)[:REASON_CAP])
    assert emoji[2] == "😀" * (CAP // 4) and emoji[3] == 12000


def test_the_cap_is_a_database_setting_analysts_cannot_change(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    with pytest.raises(psycopg.Error):
        conn.execute("SELECT diffix.set('audit_sql_max_bytes', '1000000')")
    with pytest.raises(psycopg.Error):
        conn.execute("CALL diffix.configure('audit_sql_max_bytes', '1000000')")
    shop.admin.execute("CALL diffix.configure('audit_sql_max_bytes', '100')")
    try:
        conn.execute("SELECT public.record_as_engine('direct', 'direct', %s, true)", ("€" * 50,))
        shop.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0)", (analyst,))
        conn.execute("SELECT public.charge_as_engine(0.5, 0, %s)", ("€" * 50,))
    finally:
        shop.admin.execute(
            "DELETE FROM diffix.database_settings WHERE name = 'audit_sql_max_bytes'"
        )
    assert _raw_rows(shop, analyst)[0][2:4] == ("€" * 33, 150)
    assert shop.execute(
        "SELECT sql, sql_bytes, sql_sha256 FROM diffix.budget_ledger WHERE role_name = %s",
        (analyst,),
    ) == [("€" * 33, 150, hashlib.sha256(("€" * 50).encode()).hexdigest())]


def _audit_size(db) -> int:
    return db.execute("SELECT pg_total_relation_size('diffix.audit_log')")[0][0]


def test_one_analyst_cannot_grow_the_log_faster_than_the_cap_allows(shop):
    """20 statements of 1 MiB each (and 1 MiB reasons), through query_json and by calling the
    writer directly: the log grows by what 20 capped rows take, not by 40 MiB."""
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    before = _audit_size(shop)
    for i in range(20):
        text = _incompressible(1 << 20)
        if i < 2:
            conn.execute(
                "SELECT diffix.query_json(%s)", (f"SELECT name FROM cities WHERE name <> '{text}'",)
            )
        else:
            conn.execute(
                "SELECT public.record_as_engine('direct', 'direct', %s, false, %s)", (text, text)
            )
    growth = _audit_size(shop) - before
    assert len(_raw_rows(shop, analyst)) == 20
    # per row: the capped statement and reason, plus up to 8 KiB for the other columns, the
    # indexes, TOAST's granularity (four 2 KiB chunks to a page) and a fresh table's first
    # pages; 40 MiB went in
    assert growth < 20 * (CAP + REASON_CAP + 8192), growth


def test_status_shows_the_size_of_the_log_and_the_ledger(shop):
    analyst = shop.create_role("anonymized_untrusted")
    shop.as_role(analyst).execute("SELECT diffix.query_json('SELECT name FROM cities')")
    rows, size = shop.execute(
        "SELECT count(*), pg_total_relation_size('diffix.audit_log') FROM diffix.audit_log"
    )[0]
    out = io.StringIO()
    install.status(shop.dsn(), out=out)
    text = out.getvalue()
    section = text[text.index("Audit log:") :].splitlines()
    [line] = [line for line in section if "diffix.audit_log" in line]
    assert [cell.strip() for cell in line.split("|")][1:3] == [str(rows), str(size)]
    assert any("diffix.budget_ledger" in line for line in section)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shop.as_role(analyst).execute("SELECT * FROM diffix.audit_storage()")


# Every C0 control but NUL (text cannot hold it), DEL, every C1 control, and the bidirectional
# embeddings, overrides and isolates.
HOSTILE = "".join(
    chr(c)
    for c in [
        *range(0x01, 0x20),
        0x7F,
        *range(0x80, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
)
FORGED_ROW = (
    "\x1b[2K\x1b[1A\r\n  2026-01-01 00:00:00 | postgres | postgres | direct | direct | t | 1"
    " |  |  |  | 12 | SELECT * FROM salaries"
)


def _raw_characters(text: str) -> set[str]:
    return {c for c in text if c in HOSTILE}


def test_the_log_shows_every_control_and_bidi_character_as_an_escape(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    statement = f"SELECT name FROM cities -- {HOSTILE}\\{FORGED_ROW}"
    with pytest.raises(psycopg.Error):
        conn.execute("SELECT diffix.query_json(%s)", (statement,))
    conn.execute(
        "SELECT diffix.query_json(%s)", (f"SELECT name FROM cities WHERE name <> '{HOSTILE}'",)
    )
    conn.execute(
        "SELECT public.record_as_engine(%s, %s, %s, false, %s)",
        (HOSTILE, HOSTILE, HOSTILE + "\\" + FORGED_ROW, FORGED_ROW),
    )
    # the table keeps the raw text
    assert [row[2] for row in _raw_rows(shop, analyst)] == [
        statement,
        f"SELECT name FROM cities WHERE name <> '{HOSTILE}'",
        HOSTILE + "\\" + FORGED_ROW,
    ]
    shown = shop.execute(
        "SELECT session_role, effective_role, level, mechanism, sql, reason "
        "FROM diffix.show_audit(%s)",
        (analyst,),
    )
    assert len(shown) == 3
    for row in shown:
        for value in row:
            assert not _raw_characters(value or ""), value
    level, mechanism, sql_shown, reason = shown[2][2:]
    # reversible: Python's unicode_escape reads the escapes back into the stored text
    assert level.encode("ascii").decode("unicode_escape") == HOSTILE[:64]
    assert sql_shown.encode("ascii").decode("unicode_escape") == HOSTILE + "\\" + FORGED_ROW
    assert sql_shown.startswith("\\x01\\x02") and "\\n" in sql_shown and "\\u202e" in sql_shown
    assert mechanism == level and reason.startswith("\\x1b[2K\\x1b[1A\\r\\n")
    # the rendering does not depend on the reader's session (no backslash literal in its body)
    reader = shop.connect()
    reader.execute("SET standard_conforming_strings = off")
    again = reader.execute(
        "SELECT session_role, effective_role, level, mechanism, sql, reason "
        "FROM diffix.show_audit(%s)",
        (analyst,),
    ).fetchall()
    assert again == shown


def test_the_audit_command_prints_no_control_or_bidi_character(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    conn.execute(
        "SELECT diffix.query_json(%s)", (f"SELECT name FROM cities WHERE name <> '{HOSTILE}'",)
    )
    conn.execute(
        "SELECT public.record_as_engine(%s, %s, %s, false, %s)",
        (HOSTILE, HOSTILE, HOSTILE + FORGED_ROW, FORGED_ROW),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pldiffix_installer.cli",
            "audit",
            "--dsn",
            shop.dsn(),
            "--role",
            analyst,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 5  # header, separator, one line per row
    assert all(analyst in line for line in lines[2:4])
    assert not _raw_characters(result.stdout.replace("\n", ""))
    assert "\\x1b[2K\\x1b[1A\\r\\n" in lines[3] and "\\u202e" in lines[2]


def test_an_upgrade_keeps_the_rows_logged_before_the_cap(db):
    """An install over the earlier schema: the old rows stay (length and hash NULL), the old
    writers' signatures go, and new rows are capped."""
    db.admin.execute(
        """
        ALTER TABLE diffix.audit_log DROP COLUMN sql_bytes, DROP COLUMN sql_sha256;
        ALTER TABLE diffix.budget_ledger DROP COLUMN sql_bytes, DROP COLUMN sql_sha256;
        INSERT INTO diffix.audit_log (session_role, effective_role, mechanism, sql, accepted)
          VALUES ('old', 'old', 'diffix', 'SELECT old', true);
        INSERT INTO diffix.budget_ledger (roleid, role_name, session_role, epsilon, delta,
                                          mechanism, sql)
          VALUES (10, 'old', 'old', 1, 0, 'dp', 'SELECT old');
        DROP FUNCTION diffix.show_audit(name, timestamptz);
        CREATE FUNCTION diffix.show_audit(role_name name DEFAULT NULL,
                                          since timestamptz DEFAULT NULL)
          RETURNS SETOF diffix.audit_log LANGUAGE sql AS 'SELECT * FROM diffix.audit_log';
        CREATE FUNCTION diffix._audit_append(name, name, text, text, text, boolean, text, bigint,
                                             numeric, numeric)
          RETURNS text LANGUAGE sql AS 'SELECT ''old''';
        """
    )
    install.install(db.dsn(), out=io.StringIO())
    _create_writers(db)
    analyst = db.create_role("anonymized_untrusted")
    db.as_role(analyst).execute(
        "SELECT public.record_as_engine('direct', 'direct', %s, true)", ("y" * 10000,)
    )
    assert db.execute(
        "SELECT session_role, sql, sql_bytes, sql_sha256 FROM diffix.show_audit() ORDER BY id"
    ) == [
        ("old", "SELECT old", None, None),
        (analyst, "y" * CAP, 10000, hashlib.sha256(b"y" * 10000).hexdigest()),
    ]
    assert db.execute("SELECT sql, sql_bytes FROM diffix.budget_ledger") == [("SELECT old", None)]
    assert db.execute(
        "SELECT count(*) FROM pg_proc WHERE proname IN ('_audit_append', '_ledger_spend')"
    ) == [(2,)]
