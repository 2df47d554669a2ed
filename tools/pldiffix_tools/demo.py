"""`make demo`: a banking data set in a throwaway cluster, seen by a direct user, an analyst and
a DP analyst who spends a privacy budget down to refusal."""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys

import psycopg
from psycopg.conninfo import make_conninfo

from pldiffix_installer import cellkey, install
from pldiffix_installer.paths import REPO_ROOT
from pldiffix_installer.tables import format_table
from pldiffix_tools.cluster import EmbeddedCluster
from pldiffix_tools.proxy_process import running_proxy

# The bank's tables, as README.md's examples assume them.
BANK_TABLES = """
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
"""

DATA = (
    BANK_TABLES
    + """
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
)

QUERIES = [
    ("Accounts per kind", "SELECT kind, count(*) FROM accounts GROUP BY kind ORDER BY kind"),
    ("Branches (public table)", "SELECT city, country FROM branches ORDER BY id"),
    (
        "Transactions per amount band (noisy counts and sums)",
        "SELECT diffix.floor_by(amount, 1000) AS band, count(*), sum(amount) "
        "FROM transactions GROUP BY 1 ORDER BY 1 LIMIT 4",
    ),
    (
        "Small groups: the analyst sees them pooled in the suppress bin (NULL label)",
        "SELECT birth_year, count(*) FROM accounts WHERE branch_id = 2 AND kind = 'savings' "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    ),
    (
        "Post-processing over anonymized counts, joined with a public table",
        "SELECT b.city, a.n FROM (SELECT branch_id, count(*) AS n FROM accounts GROUP BY 1) a "
        "JOIN branches b ON b.id = a.branch_id ORDER BY b.city",
    ),
    (
        "Asking for individual rows: each is its own bucket, so only the suppress bin remains",
        "SELECT owner, birth_year FROM accounts LIMIT 3",
    ),
]


# Dwellings for the cell-key (TBE) perturbation example: values fit examples/tbe/.
DWELLINGS = """
CREATE TABLE dwellings (unit_id int PRIMARY KEY, bedrooms int, dwelling text, pet text,
                        amount numeric(8, 2));
INSERT INTO dwellings
  SELECT i, CASE WHEN i % 17 = 0 THEN NULL ELSE (hashint4(i) & 2147483647) % 6 END,
         (ARRAY['001', '002', '003', '999'])[1 + (hashint4(i + 1) & 2147483647) % 4],
         (ARRAY['dog', 'cat', 'fish', NULL])[1 + (hashint4(i + 2) & 2147483647) % 4],
         ((hashint4(i + 3) & 2147483647) % 12000) / 100.0 - 5
  FROM generate_series(1, 300) i;
GRANT SELECT ON dwellings TO teller;
"""
TBE_QUERY = (
    "SELECT pet, count(*), sum(amount), avg(amount) FROM dwellings "
    "WHERE dwelling IN ('001', '999') GROUP BY pet ORDER BY pet"
)


def _tbe_demo(bank_dsn: str, teller: psycopg.Connection, analyst: psycopg.Connection) -> None:
    config_path = REPO_ROOT / "examples" / "tbe" / "dataset.json"
    with psycopg.connect(bank_dsn) as conn:
        conn.execute(DWELLINGS)
        big_n = cellkey.load_tbe_config(config_path).big_n
        cellkey.add_record_keys(conn, "dwellings", "record_key", big_n, out=io.StringIO())
    cellkey.configure_tbe(bank_dsn, "dwellings", config_path, out=io.StringIO())
    print("\n== Cell-key (TBE) perturbation: dwellings configured with examples/tbe/")
    print(f"   {TBE_QUERY}")
    print("-- teller (direct):")
    print(_show(teller, TBE_QUERY))
    print("-- analyst (anonymized_untrusted, perturbed):")
    print(_show(analyst, TBE_QUERY))
    sql = "SELECT record_key FROM dwellings GROUP BY 1"
    print(f"\n== The analyst asking for the record keys\n   {sql}")
    print(_show(analyst, sql))


# A DP analyst (docs/dp.md): accounts has one row per person (its primary key), declared bounds
# for birth_year and a declared domain for kind, so no delta is needed.
DP_SETUP = """
CREATE ROLE dp_analyst LOGIN;
CALL diffix.mark_role('dp_analyst', 'anonymized_dp');
CALL diffix.set_dp_bounds('accounts', 'birth_year', 1940, 2010);
CALL diffix.set_dp_domain('accounts', 'kind', ARRAY['checking', 'savings', 'business']);
CALL diffix.set_privacy_budget('dp_analyst', 1.0, 0);
"""
DP_QUERY = "SELECT kind, count(*), avg(birth_year) FROM accounts GROUP BY kind"
# each query's epsilon: the second is the first again (replayed for free), the last one is
# more than what is left of the budget of 1.0
DP_EPSILONS = (0.3, 0.3, 0.5, 0.4)


def _dp_demo(bank_dsn: str) -> None:
    with psycopg.connect(bank_dsn, autocommit=True) as conn:
        conn.execute(DP_SETUP)
        metadata = conn.execute("SELECT * FROM diffix.show_dp_metadata()").fetchall()
    print("\n== Differential privacy: dp_analyst (anonymized_dp) with a budget of epsilon 1.0")
    print(format_table(["objtype", "objname", "setting", "value"], metadata))
    print(f"   SELECT diffix.dp_query_json('{DP_QUERY}', epsilon) for epsilon in {DP_EPSILONS}")
    with psycopg.connect(make_conninfo(bank_dsn, user="dp_analyst"), autocommit=True) as conn:
        for attempt, epsilon in enumerate(DP_EPSILONS, 1):
            print(f"-- query {attempt}, epsilon {epsilon}:")
            try:
                doc = conn.execute(
                    "SELECT diffix.dp_query_json(%s, %s)", (DP_QUERY, epsilon)
                ).fetchone()[0]
            except psycopg.Error as error:
                print(f"  refused: {error.diag.message_primary}")
                if error.diag.message_hint:
                    print(f"  hint: {error.diag.message_hint}")
                break
            released = doc["dp"]["rows"]
            rows = [
                [key, *(f"{v['value']:.6g} {_interval(v['interval_95'])}" for v in values)]
                for key, *values in released
            ]
            print(format_table(["kind", "count (95%)", "avg(birth_year) (95%)"], rows))
            left = doc["dp"]["remaining"]
            replayed = (
                " (an identical query: the stored answer, free)"
                if doc["dp"].get("replayed")
                else ""
            )
            print(
                f"  spent epsilon {doc['dp']['epsilon']}{replayed}, remaining {left['epsilon']:.6g}"
            )


def _interval(bounds: list[float] | None) -> str:
    return "" if bounds is None else f"[{bounds[0]:.6g}, {bounds[1]:.6g}]"


# The seed's patients (shared/seeds/000), as docs/perturbation.md's examples assume them.
PATIENTS_TABLE = """
CREATE TABLE patients (id SERIAL PRIMARY KEY, full_name VARCHAR(100), birth_date DATE,
                       country VARCHAR(50), medical_condition VARCHAR(100),
                       medical_expense DECIMAL(10,2));
INSERT INTO patients (full_name, birth_date, country, medical_condition, medical_expense) VALUES
  ('Holly Hess', '1984-03-05', 'Honduras', 'Diabetes', 6357.33),
  ('Tina Quinn', '1955-08-24', 'Malta', 'Heart Condition', 1784.26),
  ('Eric Doyle', '1982-07-17', 'Namibia', 'Respiratory Issues', 5204.99),
  ('Lisa Ford', '2006-09-11', 'Suriname', 'Kidney Disease', 2389.86),
  ('Madison Martinez', '2001-07-10', 'Svalbard & Jan Mayen Islands', 'Heart Condition', 6792.99),
  ('Barbara Lawrence', '1969-02-27', 'Israel', 'Respiratory Issues', 1175.56),
  ('Nathan Thornton', '1951-07-17', 'Colombia', 'Diabetes', 7734.64),
  ('Tina Burns', '1958-05-29', 'Guadeloupe', 'Heart Condition', 1032.71),
  ('Margaret Skinner DVM', '1989-10-19', 'Brunei Darussalam', 'Heart Condition', 8953.92),
  ('Vanessa Weber', '1943-08-18', 'Jamaica', 'Kidney Disease', 6620.94);
"""

# Row-level perturbation behind a view (docs/perturbation.md).
PATIENTS = (
    PATIENTS_TABLE
    + """
GRANT SELECT ON patients TO teller;
CALL diffix.mark_perturbed('patients', 'id');
CALL diffix.perturb_column('patients', 'medical_expense', 'uniform', '{"a": 100, "min": 0}');
CALL diffix.perturb_column('patients', 'full_name', 'mask', '{"keep_first": 1}');
CALL diffix.perturb_column('patients', 'birth_date', 'generalize', '{"to": "year"}');
CALL diffix.set_quasi_identifiers('patients', 'birth_date', 'medical_condition');
CREATE ROLE researcher LOGIN;
CALL diffix.mark_role('researcher', 'perturbed');
"""
)


def _plain(conn: psycopg.Connection, sql: str) -> str:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return format_table([c.name for c in cur.description or []], cur.fetchall())
    except psycopg.Error as error:
        return f"  refused: {error.diag.message_primary}"


def _perturbation_demo(bank_dsn: str, teller: psycopg.Connection) -> None:
    with psycopg.connect(bank_dsn, autocommit=True) as conn:
        conn.execute(PATIENTS)
        report = _plain(conn, "SELECT * FROM diffix.perturbation_report('patients')")
    order = " ORDER BY country"
    print("\n== Row-level perturbation: the seed's patients table behind a perturbed view")
    print("-- teller (direct): SELECT * FROM patients")
    print(_plain(teller, "SELECT * FROM patients" + order))
    with psycopg.connect(make_conninfo(bank_dsn, user="researcher"), autocommit=True) as researcher:
        print("-- researcher (perturbed): SELECT * FROM diffix_perturbed.patients")
        print(_plain(researcher, "SELECT * FROM diffix_perturbed.patients" + order))
        print("-- researcher (perturbed): SELECT * FROM patients")
        print(_plain(researcher, "SELECT * FROM patients"))
    print("-- the administrator: SELECT * FROM diffix.perturbation_report('patients')")
    print(report)


PROXY_QUERIES = [
    "SELECT kind, count(*) FROM accounts GROUP BY kind ORDER BY kind",
    "SELECT id, kind FROM accounts",
    # what a BI tool sends first: answered from the published synthetic twin (_synthetic_demo)
    "SELECT * FROM accounts LIMIT 5",
]

# A DP synthetic twin of accounts, paid from the administrator's own budget (docs/synthetic.md);
# each its own transaction: the charge is made over the ledger's loopback connection
SYNTHESIS = (
    "CALL diffix.set_privacy_budget(current_user, 2.0, 1e-5)",
    "CALL diffix.synthesize('accounts', 1.0, 1e-6, 'accounts_twin')",
)


def _synthetic_demo(bank_dsn: str) -> None:
    print("\n== A DP synthetic twin of accounts (epsilon 1, delta 1e-6), published by the admin")
    print("   CALL diffix.synthesize('accounts', 1.0, 1e-6, 'accounts_twin')")
    with psycopg.connect(bank_dsn, autocommit=True) as conn:
        for statement in SYNTHESIS:
            conn.execute(statement)
        rows = conn.execute(
            "SELECT * FROM diffix_synthetic.accounts_twin ORDER BY id LIMIT 5"
        ).fetchall()
        print(format_table(["id", "branch_id", "owner", "birth_year", "kind"], rows))


def _proxy_demo(bank_dsn: str) -> None:
    """psql through `pldiffix proxy`: the analyst's plain SQL, answered as diffix.query_json."""
    psql = shutil.which("psql")
    with running_proxy(bank_dsn) as port:
        target = f"host=127.0.0.1 port={port} dbname=bank user=analyst"
        print(f"\n== Plain SQL through the proxy: pldiffix proxy --listen 127.0.0.1:{port}")
        for sql in PROXY_QUERIES:
            print(f'$ psql "{target}" -c "{sql}"')
            if psql is None:
                print("  (psql is not installed; skipped)")
                continue
            result = subprocess.run(
                [psql, "-X", "-c", sql, target],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            print((result.stdout + result.stderr).rstrip())


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
        admin.execute("DROP ROLE IF EXISTS dp_analyst")
        admin.execute("DROP ROLE IF EXISTS researcher")
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
        _tbe_demo(bank_dsn, teller, analyst)
        _dp_demo(bank_dsn)
        _perturbation_demo(bank_dsn, teller)
        _synthetic_demo(bank_dsn)
        _proxy_demo(bank_dsn)
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
