"""`make demo`: a banking data set in a throwaway cluster, seen by a direct user and an analyst."""

from __future__ import annotations

import argparse
import io
import sys

import psycopg
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_installer.cluster import EmbeddedCluster
from pldiffix_installer.tables import format_table

DATA = """
CREATE TABLE branches (id int PRIMARY KEY, city text, country text);
INSERT INTO branches VALUES (1, 'Berlin', 'DE'), (2, 'Rome', 'IT'), (3, 'Oslo', 'NO'),
                            (4, 'Lisbon', 'PT');

CREATE TABLE accounts (id int PRIMARY KEY, branch_id int, owner text, birth_year int, kind text);
INSERT INTO accounts
  SELECT i, 1 + (hashint4(i) & 2147483647) % 4,
         (ARRAY['Ada','Bo','Cy','Di','Ed','Flo','Gus','Hal'])[1 + i % 8] || ' ' || i,
         1950 + (hashint4(i + 1) & 2147483647) % 55,
         (ARRAY['checking','savings','business'])[1 + (hashint4(i + 2) & 2147483647) % 3]
  FROM generate_series(1, 2000) i;

CREATE TABLE transactions (id int, sender int, receiver int, amount numeric(12, 2), day date);
INSERT INTO transactions
  SELECT j, 1 + (hashint4(j) & 2147483647) % 2000, 1 + (hashint4(j + 5) & 2147483647) % 2000,
         ((hashint4(j + 9) & 2147483647) % 500000) / 100.0,
         DATE '2024-01-01' + (hashint4(j + 11) & 2147483647) % 366
  FROM generate_series(1, 20000) j;

GRANT SELECT ON branches, accounts, transactions TO PUBLIC;
CALL diffix.mark_personal('accounts', 'id');
CALL diffix.mark_personal('transactions', 'sender', 'receiver');
CALL diffix.mark_not_filterable('accounts', 'owner');
CALL diffix.mark_public('branches');

CREATE ROLE teller LOGIN;
CREATE ROLE analyst LOGIN;
CALL diffix.mark_role('teller', 'direct');
CALL diffix.mark_role('analyst', 'anonymized_untrusted');
GRANT SELECT ON accounts, transactions TO teller;
"""

QUERIES = [
    ("Accounts per kind", "SELECT kind, count(*) FROM accounts GROUP BY kind ORDER BY kind"),
    ("Branches (public table)", "SELECT city, country FROM branches ORDER BY id"),
    (
        "Transactions per month",
        "SELECT date_trunc('month', day)::date AS month, count(*) "
        "FROM transactions GROUP BY 1 ORDER BY 1 LIMIT 4",
    ),
]


def _show(conn: psycopg.Connection, sql: str) -> str:
    try:
        doc = conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]
    except psycopg.Error as error:
        hint = f"\n  hint: {error.diag.message_hint}" if error.diag.message_hint else ""
        conn.rollback()
        return f"  refused: {error.diag.message_primary}{hint}"
    return format_table(doc["columns"], doc["rows"])


def run(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS bank")
        admin.execute("DROP ROLE IF EXISTS teller")
        admin.execute("DROP ROLE IF EXISTS analyst")
        admin.execute("CREATE DATABASE bank")
    bank_dsn = make_conninfo(dsn, dbname="bank")
    print("== Installing pldiffix into database 'bank'")
    install.install(bank_dsn, out=io.StringIO())
    with psycopg.connect(bank_dsn, autocommit=True) as conn:
        conn.execute(DATA)
        rows = conn.execute("SELECT * FROM diffix.show_labels()").fetchall()
        print("\n== Labels (SELECT * FROM diffix.show_labels())")
        print(format_table(["objtype", "objname", "label"], rows))
    teller = psycopg.connect(make_conninfo(bank_dsn, user="teller"), autocommit=True)
    analyst = psycopg.connect(make_conninfo(bank_dsn, user="analyst"), autocommit=True)
    with teller, analyst:
        for role, conn in (("teller", teller), ("analyst", analyst)):
            level = conn.execute("SELECT diffix.access_level()").fetchone()[0]
            print(f"\n{role} has access level {level}")
        print("\n== The analyst reading a personal table directly")
        try:
            analyst.execute("SELECT owner FROM accounts LIMIT 1")
        except psycopg.errors.InsufficientPrivilege as error:
            print(f"  refused: {error.diag.message_primary}")
        for title, sql in QUERIES:
            print(f"\n== {title}\n   {sql}")
            print("-- teller (direct):")
            print(_show(teller, sql))
            print("-- analyst (anonymized_untrusted):")
            print(_show(analyst, sql))
        print("\n== Security findings (SELECT * FROM diffix.check_security())")
        with psycopg.connect(bank_dsn) as conn:
            rows = conn.execute(
                "SELECT severity, object, finding FROM diffix.check_security()"
            ).fetchall()
        print(format_table(["severity", "object", "finding"], rows) if rows else "  none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pldiffix demo on a banking data set")
    parser.add_argument(
        "--dsn", help="a superuser DSN of an existing server (default: a throwaway cluster)"
    )
    args = parser.parse_args(argv)
    if args.dsn:
        run(args.dsn)
        return 0
    print("== Starting a throwaway PostgreSQL cluster")
    with EmbeddedCluster() as cluster:
        run(cluster.dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
