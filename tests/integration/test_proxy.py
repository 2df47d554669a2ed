"""The wire-protocol front (proxy/): plain SQL answered as diffix.query_json answers it, both
query protocols, errors, transactions, and what it must never do (grant more than the role has,
or let one bad client disturb another)."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest
from proxy_fixtures import (
    ANALYST_QUERIES,
    ProxyWorld,
    assert_text_rows,
    normalized_rows,
    raw_connect,
    read_until_ready,
    signed_in,
    startup_packet,
)

from pldiffix_proxy import codec
from pldiffix_tools.cluster import find_bindir

pytestmark = pytest.mark.db


@pytest.fixture
def world(proxy_world: ProxyWorld) -> ProxyWorld:
    return proxy_world


@pytest.mark.parametrize("prepare", [False, True], ids=["simple", "extended"])
@pytest.mark.parametrize("sql", ANALYST_QUERIES)
def test_plain_sql_gets_query_json_rows(world, sql, prepare):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        rows = conn.execute(sql, prepare=prepare).fetchall()
    assert normalized_rows(rows) == world.expected(sql)


def test_result_carries_the_engines_types(world):
    sql = (
        "SELECT city, count(*), sum(balance), diffix.floor_by(age, 10) AS decade "
        "FROM customers GROUP BY city, 4"
    )
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        simple = conn.execute(sql, prepare=False).description
        extended = conn.execute(sql, prepare=True).description
    with psycopg.connect(world.db.dsn(world.analyst)) as conn:
        types = conn.execute(
            "SELECT pg_catalog.format_type(oid, NULL) FROM unnest(%s::oid[]) AS oid",
            ([c.type_code for c in simple],),
        ).fetchall()
    assert [c.name for c in simple] == ["city", "count", "sum", "decade"]
    assert [t[0] for t in types] == ["text", "bigint", "numeric", "double precision"]
    assert [c.type_code for c in extended] == [c.type_code for c in simple]


def test_bound_parameters_are_inlined_with_their_types(world):
    literal = "SELECT count(*) FROM customers WHERE city = 'Rome' AND age = 30"
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        text = conn.execute(
            "SELECT count(*) FROM customers WHERE city = %s AND age = %s", ("Rome", 30)
        ).fetchall()
        binary = conn.execute(
            "SELECT count(*) FROM customers WHERE city = %b AND age = %b", ("Rome", 30)
        ).fetchall()
    expected = world.expected(literal)
    assert normalized_rows(text) == expected
    assert normalized_rows(binary) == expected


def test_a_quote_in_a_parameter_stays_a_value(world):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM customers WHERE city = %s", ("Rome' OR 'a' = 'a",)
        ).fetchall()
    assert normalized_rows(rows) == world.expected(
        "SELECT count(*) FROM customers WHERE city = 'Rome'' OR ''a'' = ''a'"
    )


def test_repeated_column_names_survive(world):
    sql = "SELECT city, count(*), count(*) FROM customers GROUP BY city ORDER BY city"
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        cur = conn.execute(sql)
        names = [c.name for c in cur.description]
        rows = cur.fetchall()
    assert names == ["city", "count", "count"]
    assert normalized_rows(rows) == world.expected(sql)


def test_everything_else_passes_through(world):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (world.analyst,)
        assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
        tables = conn.execute(
            "SELECT relname FROM pg_class WHERE relname IN ('customers', 'cities') ORDER BY 1"
        ).fetchall()
        assert tables == [("cities",), ("customers",)]
        conn.execute("CREATE TEMP TABLE scratch (x int)")
        with conn.cursor() as cur:
            with cur.copy("COPY scratch FROM STDIN") as copy:
                copy.write_row((1,))
                copy.write_row((2,))
            assert cur.execute("SELECT sum(x) FROM scratch").fetchone() == (3,)


def test_a_direct_role_reads_raw_rows(world):
    with psycopg.connect(world.proxy_dsn(world.direct), autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM customers WHERE city = 'Nuuk'").fetchall()
    assert rows == [(2,)]


def test_engine_errors_keep_sqlstate_message_and_hint(world):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as through:
            conn.execute("SELECT id FROM customers")
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    with (
        psycopg.connect(world.db.dsn(world.analyst)) as conn,
        pytest.raises(psycopg.Error) as direct,
    ):
        conn.execute("SELECT diffix.query_json('SELECT id FROM customers')")
    assert through.value.sqlstate == direct.value.sqlstate == "0A000"
    assert through.value.diag.message_primary == direct.value.diag.message_primary
    assert through.value.diag.message_hint == direct.value.diag.message_hint


def test_type_probes_get_typed_empty_results(world):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        for sql in (
            "SELECT * FROM customers LIMIT 0",
            "SELECT * FROM customers WHERE 1 <> 1",
            "SELECT city, age FROM customers WHERE false",
        ):
            for prepare in (False, True):
                cur = conn.execute(sql, prepare=prepare)
                assert cur.fetchall() == []
                assert cur.description[0].name in ("id", "city")
        cur = conn.execute("SELECT * FROM customers LIMIT 0")
        assert [(c.name, c.type_code) for c in cur.description] == [
            ("id", 23),
            ("city", 25),
            ("age", 23),
            ("joined", 1082),
            ("balance", 1700),
        ]


def test_copy_of_a_personal_table_is_refused(world):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        with conn.cursor() as cur:
            for statement in (
                "COPY customers TO STDOUT",
                "COPY (SELECT count(*) FROM customers) TO '/tmp/pldiffix-counts'",
            ):
                with (
                    pytest.raises(psycopg.errors.InsufficientPrivilege) as error,
                    cur.copy(statement) as copy,
                ):
                    list(copy)
                assert "COPY is not available for personal or cell-key tables" in str(error.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_copy_out_of_an_anonymizing_query_gets_the_engines_rows(world):
    sql = ANALYST_QUERIES[0]
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        with conn.cursor().copy(f"COPY ({sql}) TO STDOUT") as copy:
            rows = list(copy.rows())
        with conn.cursor().copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            csv = b"".join(bytes(block) for block in copy).decode()
    expected = world.expected(sql)
    assert_text_rows(expected, [list(row) for row in rows])
    lines = csv.splitlines()
    assert lines[0] == "city,count"
    assert_text_rows(expected, [line.split(",") for line in lines[1:]])


@pytest.mark.parametrize("conforming", ["on", "off"])
@pytest.mark.parametrize(
    "statement",
    [
        r"COPY (SELECT count(*) FROM customers WHERE city = 'a\') TO STDOUT;"
        r" SELECT id FROM customers --') TO STDOUT",
        r"COPY (SELECT count(*) FROM customers WHERE city = 'a\') TO STDOUT"
        r" --') TO STDOUT; COPY customers TO STDOUT",
        "COPY (SELECT count(*) FROM customers) TO STDOUT; COPY customers TO STDOUT",
        "COPY (SELECT count(*) FROM customers) TO PROGRAM 'cat'",
        "COPY (SELECT id FROM customers) TO STDOUT (FORMAT csv); SELECT id FROM customers",
    ],
)
def test_copy_out_cannot_be_stretched_to_raw_rows(world, statement, conforming):
    """Text around the copied query, read differently under standard_conforming_strings, never
    yields a raw row: the statement is refused, or answers what the engine answers."""
    ids = {str(i) for i in range(1, 1201)} | {"5001", "5002"}
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        conn.execute(f"SET standard_conforming_strings = {conforming}")
        try:
            with conn.cursor().copy(statement) as copy:
                got = [row for row in copy.rows()]
        except psycopg.Error as error:
            assert error.sqlstate in ("42501", "0A000", "42601", "22P02"), error
        else:
            assert not any(value in ids for row in got for value in row), got
        conn.execute("RESET standard_conforming_strings")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psql_copy_of_an_anonymizing_query(world):
    sql = "SELECT city, count(*) FROM customers GROUP BY city"
    result = subprocess.run(
        [
            str(find_bindir() / "psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            world.proxy_dsn(world.analyst),
        ],
        input=f"\\copy ({sql}) TO STDOUT WITH (FORMAT csv)\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = sorted(line.split(",") for line in result.stdout.splitlines())
    assert_text_rows(sorted(world.expected(sql)), got)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "PREPARE counts AS SELECT city, count(*) FROM customers GROUP BY city",
            "PREPARE of a statement over personal or cell-key tables is not available",
        ),
        (
            "EXPLAIN SELECT city, count(*) FROM customers GROUP BY city",
            "EXPLAIN of a query over personal or cell-key tables is not available",
        ),
    ],
)
def test_sql_prepare_and_explain_are_refused_with_what_to_do(world, statement, message):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as error:
            conn.execute(statement)
        assert message in str(error.value)
        assert error.value.diag.message_hint
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_transactions_behave_as_on_the_server(world):
    with psycopg.connect(world.proxy_dsn(world.analyst)) as conn:
        conn.execute("CREATE TEMP TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        expected = world.expected(ANALYST_QUERIES[0])
        assert normalized_rows(conn.execute(ANALYST_QUERIES[0]).fetchall()) == expected
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM t")
        conn.rollback()
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT id FROM customers")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute(ANALYST_QUERIES[0])
        conn.rollback()
        assert normalized_rows(conn.execute(ANALYST_QUERIES[0]).fetchall()) == expected


def test_the_proxy_grants_nothing_the_role_lacks(world):
    outsider = world.db.create_role(prefix="outsider")  # no access level
    with (
        psycopg.connect(world.proxy_dsn(outsider), autocommit=True) as conn,
        pytest.raises(psycopg.Error) as through,
    ):
        conn.execute("SELECT count(*) FROM customers")
    with (
        psycopg.connect(world.db.dsn(outsider), autocommit=True) as conn,
        pytest.raises(psycopg.Error) as direct,
    ):
        conn.execute("SELECT diffix.query_json('SELECT count(*) FROM customers')")
    assert through.value.sqlstate == direct.value.sqlstate
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        for statement in (
            "SELECT * FROM customers WHERE id = 1 FOR UPDATE",  # the engine refuses
            "CREATE TEMP TABLE copied AS SELECT * FROM customers",  # the server refuses
            "EXPLAIN ANALYZE SELECT * FROM customers",
            "SELECT * FROM public.customers AS c, LATERAL (SELECT 1) AS x",
        ):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(statement)
            assert refused.value.sqlstate in ("42501", "0A000"), statement


# Texts aimed at the router (core/proxy_routing.py: tokens first, then the parse), each reading
# customers, whose two Nuuk rows a raw read would show and the engine suppresses. What each must
# get: what diffix.query_json gives for it, rows or error ("engine"), the server's permission
# error ("denied": a text the router cannot see through meets the privileges analysts lack), or
# a refusal with this SQLSTATE.
ROUTER_ATTACKS = [
    ('SELECT city, count(*) FROM "customers" GROUP BY city', "engine"),
    ("SELECT city, count(*) FROM public.customers GROUP BY city", "engine"),
    ('SELECT city, count(*) FROM "public"."customers" GROUP BY city', "engine"),
    ("select CITY, COUNT(*) from CUSTOMERS group by CITY", "engine"),
    (
        "/* FROM cities */ SELECT city, count(*) FROM /* x */ customers -- JOIN cities\n"
        "GROUP BY city",
        "engine",
    ),
    ("SELECT city, count(*) FROM customers /* a /* b */ FROM cities */ GROUP BY city", "engine"),
    ("SELECT $$ FROM cities $$ AS s, city, count(*) FROM customers GROUP BY city", "engine"),
    ("SELECT $a$ $$ $a$ AS s, city, count(*) FROM customers GROUP BY city", "engine"),
    ("SELECT city AS x$a$, count(*) FROM customers AS c$a$ GROUP BY city", "engine"),
    ("SELECT E'\\'' AS quote, city, count(*) FROM customers GROUP BY city", "engine"),
    (
        "SELECT city, count(*) FROM customers WHERE city IS DISTINCT FROM 'x' GROUP BY city",
        "engine",
    ),
    ("SELECT city, count(*) FROM customers WHERE 1 = 1 GROUP BY city", "engine"),
    ("SELECT city, count(*) FROM customers GROUP BY city LIMIT 10", "engine"),
    ("SELECT city, count(*) FROM customers GROUP BY city;", "engine"),
    # a CTE named like another table, over the protected one
    (
        "WITH cities AS (SELECT city FROM customers) SELECT city, count(*) FROM cities GROUP BY 1",
        "engine",
    ),
    # a name the router does not decode (a Unicode escape): the server's privileges answer
    ('SELECT city, count(*) FROM U&"\\0063ustomers" GROUP BY city', "denied"),
    ('SELECT city, count(*) FROM public.U&"\\0063ustomers" GROUP BY city', "denied"),
    # several statements: refused before the server sees any
    ("SELECT city, count(*) FROM customers GROUP BY city; SELECT 1", "0A000"),
    ("SELECT 1; SELECT city, count(*) FROM customers GROUP BY city", "0A000"),
    ('SELECT 1; SELECT city, count(*) FROM U&"\\0063ustomers" GROUP BY city', "denied"),
]


@pytest.mark.parametrize(
    ("sql", "expected", "prepare"),
    [
        pytest.param(sql, expected, prepare, id=f"{sql}-{'extended' if prepare else 'simple'}")
        for sql, expected in ROUTER_ATTACKS
        for prepare in (False, True)
        if not prepare or ";" not in sql.rstrip(";")  # a Parse holds one statement
    ],
)
def test_texts_aimed_at_the_router_never_read_raw_rows(world, sql, expected, prepare):
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        if expected != "engine":
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(sql, prepare=prepare)
            want = "42501" if expected == "denied" else expected
            assert refused.value.sqlstate == want, refused.value
            return
        try:  # rows in any order: the texts have no ORDER BY
            got: object = sorted(
                normalized_rows(conn.execute(sql, prepare=prepare).fetchall()), key=repr
            )
        except psycopg.Error as error:
            got = (error.sqlstate, error.diag.message_primary)
    try:
        want: object = sorted(world.expected(sql), key=repr)
    except psycopg.Error as error:
        want = (error.sqlstate, error.diag.message_primary)
    assert got == want
    assert "Nuuk" not in str(got)


def test_a_text_routed_from_its_tokens_that_sqlglot_cannot_parse_gets_an_error(world):
    sql = "SELECT city, count(*) FROM customers GROUP BY city HAVING"
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as simple:
            conn.execute(sql)
        with pytest.raises(psycopg.Error) as extended:
            conn.execute(sql, prepare=True)
    with pytest.raises(psycopg.Error) as direct:
        world.expected(sql)
    # the gate's parse error, as diffix.query_json gives it; at Parse, the server's own
    assert (simple.value.sqlstate, simple.value.diag.message_primary) == (
        direct.value.sqlstate,
        direct.value.diag.message_primary,
    )
    assert "could not parse" in direct.value.diag.message_primary
    assert extended.value.sqlstate == "42601"


def test_a_cte_shadowing_a_protected_table_is_the_servers_to_answer(world):
    sql = (
        "WITH customers AS (SELECT 'Nuuk' AS city) SELECT city, count(*) FROM customers GROUP BY 1"
    )
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        assert conn.execute(sql).fetchall() == [("Nuuk", 1)]
        # the same CTE inside a subquery does not hide the table read beside it: the engine
        # answers that (here with its refusal)
        beside = (
            "SELECT c.city, count(*) FROM (WITH customers AS (SELECT 1 AS x) SELECT x FROM"
            " customers) AS s, customers AS c GROUP BY 1"
        )
        with pytest.raises(psycopg.Error) as through:
            conn.execute(beside)
    with pytest.raises(psycopg.Error) as engine:
        world.expected(beside)
    assert through.value.diag.message_primary == engine.value.diag.message_primary
    with (
        psycopg.connect(world.db.dsn(world.analyst), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT city, count(*) FROM customers GROUP BY city")  # the backstop


def test_a_text_the_server_reads_otherwise_than_the_router_meets_its_privileges(world):
    # With standard_conforming_strings off the server ends the first string at the second quote
    # and reads customers; pldiffix reads strings as with it on, so it sees a dollar-quoted
    # string hiding that FROM, and passes the text: the analyst's missing SELECT answers it.
    sql = "SELECT 'a\\', $$' AS x, city FROM customers --$$"
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        conn.execute("SET standard_conforming_strings = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql, prepare=True)
        conn.execute("SET standard_conforming_strings = on")
        assert conn.execute(sql).fetchall() == [("a\\", "' AS x, city FROM customers --")]


def test_passwords_are_checked_by_the_server(world):
    admin = world.db.admin
    admin.execute(
        "DO $$ BEGIN CREATE ROLE pldiffix_password_users NOLOGIN;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    role = world.db.create_role("anonymized_trusted", prefix="pw")
    admin.execute(f"ALTER ROLE \"{role}\" PASSWORD 'right horse'")
    admin.execute(f'GRANT pldiffix_password_users TO "{role}"')
    with psycopg.connect(world.proxy_dsn(role, password="right horse"), autocommit=True) as conn:
        rows = conn.execute(ANALYST_QUERIES[0]).fetchall()
        assert len(rows) == len(world.expected(ANALYST_QUERIES[0]))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(world.proxy_dsn(role, password="wrong"))


def test_cancel_reaches_the_server(world):
    with psycopg.connect(world.proxy_dsn(world.direct), autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        assert time.monotonic() - started < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psql_through_the_proxy(world):
    import shutil
    import subprocess

    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    sql = ANALYST_QUERIES[0]
    result = subprocess.run(
        [
            psql,
            "-X",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            world.proxy_dsn(world.analyst),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = [line.split("|") for line in result.stdout.splitlines() if line]
    expected = world.expected(sql)
    assert [[city, int(n)] for city, n in got] == expected


# --- bad input: each closes its own client only ------------------------------------------------


def _healthy(world: ProxyWorld) -> bool:
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def _error_code(messages: list[tuple[bytes, bytes]]) -> str | None:
    for kind, body in messages:
        if kind == b"E":
            return codec.parse_error_fields(body).get("C")
    return None


def _active_backends(world: ProxyWorld, role: str) -> int:
    """The role's backends, besides the analyst's straight session behind world.expected."""
    return world.db.admin.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE usename = %s AND backend_type = 'client backend' AND pid <> %s",
        (role, world.straight_pid()),
    ).fetchone()[0]


def _wait_for_backends(world: ProxyWorld, role: str, count: int) -> int:
    deadline = time.monotonic() + 10
    while (found := _active_backends(world, role)) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack("!I", 3),  # a length shorter than itself
        struct.pack("!II", 8, 1234),  # an unknown protocol
        struct.pack("!II", 12, 196608) + b"user",  # unterminated parameters
    ],
    ids=["short-length", "unknown-protocol", "unterminated"],
)
def test_malformed_startup_closes_that_client(world, packet, caplog):
    with caplog.at_level("WARNING", logger="pldiffix.proxy"), raw_connect(world) as sock:
        sock.sendall(packet)
        assert _closed(sock)
    assert _healthy(world)
    assert "closing the connection" in caplog.text


def test_malformed_message_after_sign_in_closes_that_client(world, caplog):
    role = world.db.create_role("anonymized_trusted", prefix="bad")
    with caplog.at_level("WARNING", logger="pldiffix.proxy"), signed_in(world, role) as sock:
        sock.sendall(codec.frame(b"B", b"\x00\x00\xff\xff"))  # Bind cut short
        messages = read_until_ready(sock)
        assert _error_code(messages) == "08P01"
        assert _closed(sock)
    assert _wait_for_backends(world, role, 0) == 0
    assert _healthy(world)
    assert "closing the connection" in caplog.text


def test_oversized_message_is_refused_before_it_is_read(world, caplog):
    with (
        caplog.at_level("WARNING", logger="pldiffix.proxy"),
        signed_in(world, world.analyst) as sock,
    ):
        sock.sendall(b"Q" + struct.pack("!I", 0x7FFFFFF0) + b"SELECT")
        assert _error_code(read_until_ready(sock)) == "08P01"
        assert _closed(sock)
    assert "out of bounds" in caplog.text
    assert _healthy(world)


def test_half_open_startup_times_out(world, caplog):
    with caplog.at_level("WARNING", logger="pldiffix.proxy"), raw_connect(world) as sock:
        sock.sendall(startup_packet(world.analyst, world.db.name)[:6])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            healthy = pool.submit(_healthy, world)  # served while the other one hangs
            assert healthy.result(timeout=20)
        started = time.monotonic()
        assert _closed(sock)
        assert time.monotonic() - started < 10
    assert "no startup within" in caplog.text


def test_client_gone_mid_query_frees_its_server_connection(world):
    role = world.db.create_role("direct", prefix="gone")
    sock = signed_in(world, role)
    sock.sendall(codec.query("SELECT pg_sleep(30)"))
    time.sleep(0.3)
    assert _active_backends(world, role) == 1
    sock.close()
    assert _wait_for_backends(world, role, 0) == 0
    assert _healthy(world)


def test_concurrent_clients_each_get_their_answers(world):
    expected = {sql: world.expected(sql) for sql in ANALYST_QUERIES}

    def client(n: int) -> bool:
        with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
            for i in range(20):
                sql = ANALYST_QUERIES[(n + i) % len(ANALYST_QUERIES)]
                rows = conn.execute(sql, prepare=bool(i % 2)).fetchall()
                assert normalized_rows(rows) == expected[sql]
        return True

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        assert all(pool.map(client, range(50)))
    assert _wait_for_backends(world, world.analyst, 0) == 0


def test_portals_bound_before_either_runs_keep_their_own_rows(world):
    by_city = "SELECT city, count(*) FROM customers GROUP BY city ORDER BY city"
    total = "SELECT count(*) FROM customers"
    with signed_in(world, world.analyst) as sock:
        sock.sendall(
            codec.parse("a", by_city)
            + codec.encode_bind("pa", "a", [], [], [])
            + codec.parse("b", total)
            + codec.encode_bind("pb", "b", [], [], [])
            + codec.execute("pb")
            + codec.execute("pa")
            + codec.SYNC
        )
        messages = read_until_ready(sock)
    kinds = b"".join(kind for kind, _ in messages)
    assert _error_code(messages) is None
    rows = [
        [None if v is None else v.decode() for v in codec.parse_data_row(body)]
        for kind, body in messages
        if kind == b"D"
    ]
    expected_total = world.expected(total)
    expected_by_city = world.expected(by_city)
    assert kinds.startswith(b"1212")
    assert len(rows) == len(expected_total) + len(expected_by_city)
    assert [int(rows[0][0])] == expected_total[0]
    assert [[city, int(n)] for city, n in rows[1:]] == expected_by_city


def test_a_refused_copy_is_in_the_audit_log(world):
    role = world.db.create_role("anonymized_trusted", prefix="audited")
    with (
        psycopg.connect(world.proxy_dsn(role), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        conn.cursor().copy("COPY customers TO STDOUT") as copy,
    ):
        list(copy)
    rows = world.db.admin.execute(
        "SELECT accepted, sql, reason FROM diffix.audit_log WHERE session_role = %s",
        (role,),
    ).fetchall()
    assert [(accepted, statement) for accepted, statement, _ in rows] == [
        (False, "COPY customers TO STDOUT")
    ]
    assert "COPY is not available" in rows[0][2]


def test_a_table_labeled_after_its_route_was_cached_is_anonymized_on_the_next_try(world):
    admin = world.db.admin
    admin.execute("CREATE TABLE visits (id int, page text)")
    admin.execute("INSERT INTO visits SELECT i, 'home' FROM generate_series(1, 300) i")
    admin.execute("GRANT SELECT ON visits TO PUBLIC")
    sql = "SELECT page, count(*) FROM visits GROUP BY page"
    try:
        with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
            assert conn.execute(sql).fetchall() == [("home", 300)]  # unlabeled: passed
            admin.execute("CALL diffix.mark_personal('visits', 'id')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)  # the cached route meets the server's privileges
            rows = conn.execute(sql).fetchall()
        assert normalized_rows(rows) == world.expected(sql)
    finally:
        admin.execute("DROP TABLE visits")


def _spent(world: ProxyWorld, role: str) -> float:
    row = world.db.execute(
        "SELECT epsilon_spent FROM diffix.privacy_budget() WHERE role = %s", (role,)
    )
    return float(row[0][0])


def test_a_dp_role_spends_its_budget_through_the_proxy_and_is_refused_when_it_is_gone(world):
    role = world.db.create_role("anonymized_dp", prefix="dp")
    world.db.admin.execute("CALL diffix.set_privacy_budget(%s, 1.0, 0)", (role,))
    with psycopg.connect(world.proxy_dsn(role), autocommit=True) as conn:
        conn.execute("SELECT diffix.set('dp_epsilon', '0.4')")
        # distinct queries: an identical one would be a free replay (docs/dp.md)
        for i, prepare in enumerate((False, True)):
            sql = f"SELECT count(*) AS c{i} FROM customers"
            (count,) = conn.execute(sql, prepare=prepare).fetchone()
            assert isinstance(count, int)
        assert _spent(world, role) == pytest.approx(0.8)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("SELECT count(*) AS c2 FROM customers")
        with psycopg.connect(world.db.dsn(role), autocommit=True) as direct:
            direct.execute("SELECT diffix.set('dp_epsilon', '0.4')")
            with pytest.raises(psycopg.Error) as refused_directly:
                direct.execute("SELECT diffix.query_json('SELECT count(*) AS c3 FROM customers')")
    assert refused.value.sqlstate == refused_directly.value.sqlstate
    assert refused.value.diag.message_primary == refused_directly.value.diag.message_primary
    assert _spent(world, role) == pytest.approx(0.8)


_BI_QUERY = (
    "SELECT city, count(*) AS n, diffix.dp_ci_low(count(*)) AS lo, "
    "diffix.dp_ci_high(count(*)) AS hi, diffix.dp_budget_remaining() AS budget "
    "FROM customers GROUP BY city ORDER BY n DESC LIMIT 2"
)


def test_a_bi_tools_dp_query_gets_ordered_limited_rows_with_typed_intervals(world):
    """ORDER BY and LIMIT apply to the released rows; the interval and budget columns come
    typed double precision in both protocols, each query paid once."""
    role = world.db.create_role("anonymized_dp", prefix="dp")
    world.db.admin.execute("CALL diffix.set_privacy_budget(%s, 5.0, 1e-3)", (role,))
    with psycopg.connect(world.proxy_dsn(role), autocommit=True) as conn:
        conn.execute("SELECT diffix.set('dp_epsilon', '0.5')")
        conn.execute("SELECT diffix.set('dp_delta', '1e-6')")
        # two distinct queries (an identical one would be a free replay)
        for spent, prepare, name in ((0.5, False, "n"), (1.0, True, "m")):
            sql = _BI_QUERY.replace(" AS n,", f" AS {name},").replace("BY n ", f"BY {name} ")
            cur = conn.execute(sql, prepare=prepare)
            rows = cur.fetchall()
            assert [c.name for c in cur.description] == ["city", name, "lo", "hi", "budget"]
            assert [c.type_code for c in cur.description] == [25, 20, 701, 701, 701]
            assert len(rows) == 2 and rows[0][1] >= rows[1][1]
            for city, n, low, high, budget in rows:
                assert city in ("Berlin", "Rome", "Oslo", "Lima")
                assert isinstance(low, float) and low <= n <= high
                assert budget == pytest.approx(5.0 - spent)
        (left,) = conn.execute("SELECT diffix.dp_budget_remaining()").fetchone()
        assert left == pytest.approx(4.0)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="only works in the select"):
            conn.execute("SELECT diffix.dp_ci_low(count(*)) FROM cities")
        # a filter and expressions over released values in an outer query
        rows = conn.execute(
            "SELECT lower(city), n > 100 FROM (SELECT city, count(*) AS n FROM customers "
            "GROUP BY city) AS t WHERE n > 100 ORDER BY 1"
        ).fetchall()
        assert rows == [("berlin", True), ("lima", True), ("oslo", True), ("rome", True)]
    assert _spent(world, role) == pytest.approx(1.5)


def test_dp_hints_through_the_proxy_name_the_session_settings(world):
    role = world.db.create_role("anonymized_dp", prefix="dp")
    world.db.admin.execute("CALL diffix.set_privacy_budget(%s, 5.0, 1e-3)", (role,))
    sql = "SELECT city, count(*) FROM customers GROUP BY city ORDER BY city"
    with psycopg.connect(world.proxy_dsn(role), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            conn.execute(sql)
        conn.execute("SELECT diffix.set('dp_epsilon', '5')")
        with pytest.raises(psycopg.errors.InvalidParameterValue) as too_much:
            conn.execute("SELECT count(*) FROM customers")
    assert refused.value.diag.message_hint == (
        "allow a delta, e.g. SELECT diffix.set('dp_delta', '1e-06'), or ask an administrator "
        "to declare the keys' domain: CALL diffix.set_dp_domain(table, column, ARRAY[...])"
    )
    assert too_much.value.diag.message_hint == (
        "ask for at most 1, e.g. SELECT diffix.set('dp_epsilon', '1'); administrators set "
        "dp_max_epsilon with diffix.configure"
    )
    assert _spent(world, role) == 0.0


def test_stashed_answers_are_only_for_the_role_that_asked(world):
    """A session that changes role after an answer was kept cannot read it as the other role."""
    other = world.db.create_role("anonymized_trusted", prefix="other")
    asker = world.db.create_role("anonymized_trusted", prefix="asker")
    world.db.admin.execute(f'GRANT "{other}" TO "{asker}"')
    with psycopg.connect(world.db.dsn(asker), autocommit=True) as conn:
        _route, fetch, token = conn.execute(
            "SELECT * FROM diffix.proxy_plan(%s)", (ANALYST_QUERIES[0],)
        ).fetchone()
        fetch = fetch.replace("$1", "%s")  # the token is the fetch statement's parameter
        conn.execute(f'SET ROLE "{other}"')
        assert conn.execute(fetch, (token,)).fetchall() == []
        conn.execute("RESET ROLE")
        assert conn.execute(fetch, (token,)).fetchall() == []  # and handed out once


def test_tls_to_the_client(world, tmp_path):
    import shutil
    import ssl
    import subprocess

    from pldiffix_proxy.listener import running_in_thread

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with running_in_thread(world.db.dsn(), tls=context) as front:
        dsn = world.proxy_dsn(world.analyst, port=front.port, sslmode="require")
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.info.pgconn.ssl_in_use
            rows = conn.execute(ANALYST_QUERIES[0]).fetchall()
    assert normalized_rows(rows) == world.expected(ANALYST_QUERIES[0])
    with pytest.raises(psycopg.OperationalError):  # no TLS offered by the module's front
        psycopg.connect(world.proxy_dsn(world.analyst, sslmode="require"))


def test_an_idle_client_gets_its_notifications(world):
    with (
        psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as listener,
        psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as sender,
    ):
        listener.execute("LISTEN pldiffix_test")
        sender.execute("NOTIFY pldiffix_test, 'hello'")
        received = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert received == ["hello"]


def test_a_server_side_disconnect_reaches_the_idle_client(world):
    role = world.db.create_role("anonymized_trusted", prefix="kicked")
    with psycopg.connect(world.proxy_dsn(role), autocommit=True) as conn:
        pid = conn.info.backend_pid
        world.db.admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError, match="terminat"):
            conn.execute("SELECT 1")
    assert _wait_for_backends(world, role, 0) == 0
    assert _healthy(world)


def test_prepared_statements_over_protected_tables_are_bounded_per_client(world, monkeypatch):
    from pldiffix_proxy import session

    monkeypatch.setattr(session, "MAX_LOCAL_STATEMENTS", 2)
    with signed_in(world, world.analyst) as sock:
        for name in ("s1", "s2", "s3"):
            sock.sendall(codec.parse(name, "SELECT count(*) FROM customers") + codec.SYNC)
            messages = read_until_ready(sock)
        assert _error_code(messages) == "53400"
        sock.sendall(codec.close("S", "s1") + codec.parse("s3", "SELECT count(*) FROM customers"))
        sock.sendall(codec.SYNC)
        messages = read_until_ready(sock)
        assert _error_code(messages) is None and b"1" in [kind for kind, _ in messages]


def test_a_simple_query_answer_shows_none_of_the_fronts_own_messages(world):
    """The front binds its kept fetch statement with extended messages; the client of a simple
    Query sees only RowDescription, DataRows, CommandComplete and ReadyForQuery, every time."""
    sql = "SELECT city, count(*) FROM customers GROUP BY city ORDER BY city"
    expected = world.expected(sql)
    with signed_in(world, world.analyst) as sock:
        for _ in range(3):  # parsed the first time, kept after
            sock.sendall(codec.query(sql))
            messages = read_until_ready(sock)
            kinds = b"".join(kind for kind, _ in messages)
            assert kinds == b"T" + b"D" * len(expected) + b"CZ"


@pytest.mark.parametrize(
    "disturbance",
    ["DEALLOCATE ALL", "DISCARD ALL", "close _pldiffix_2", "parse _pldiffix_2"],
)
def test_the_fronts_kept_statements_survive_what_the_client_does_to_them(world, disturbance):
    """DEALLOCATE ALL, DISCARD ALL, or the client's own Close or Parse of one of the front's
    statement names: the next answers are still right, in both protocols."""
    sql = "SELECT city, count(*) FROM customers GROUP BY city ORDER BY city"
    expected = world.expected(sql)
    with signed_in(world, world.analyst) as sock:
        extended = codec.parse("", sql) + codec.encode_bind("", "", [], [], [])
        extended += codec.execute("") + codec.SYNC
        for message in (codec.query(sql), extended):
            sock.sendall(message)
            assert _error_code(read_until_ready(sock)) is None
        if disturbance.startswith("close "):
            sock.sendall(codec.close("S", disturbance.split()[1]) + codec.SYNC)
        elif disturbance.startswith("parse "):
            sock.sendall(codec.parse(disturbance.split()[1], "SELECT 1") + codec.SYNC)
        else:
            sock.sendall(codec.query(disturbance))
        read_until_ready(sock)  # a Parse of a kept name fails: already exists
        for message in (codec.query(sql), extended, codec.query(sql)):
            sock.sendall(message)
            messages = read_until_ready(sock)
            assert _error_code(messages) is None
            rows = [
                [v.decode() for v in codec.parse_data_row(body)]
                for kind, body in messages
                if kind == b"D"
            ]
            assert [[city, int(n)] for city, n in rows] == expected
