"""Row-level perturbation behind views (docs/perturbation.md) on the seed's patients table and a
generated 10,000-row version: methods, consistency, the report, and attacks by perturbed roles."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import math
import statistics
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pldiffix.perturb import methods
from pldiffix.perturb.config import Column, Rule
from pldiffix_installer import cli, install, uninstall
from pldiffix_proxy.listener import running_in_thread

PATIENTS = """
CREATE TABLE patients (
  id SERIAL PRIMARY KEY,
  full_name VARCHAR(100),
  birth_date DATE,
  country VARCHAR(50),
  medical_condition VARCHAR(100),
  medical_expense DECIMAL(10,2)
);
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

# The seed's 10 rows repeated with variation to 10,000, deterministic.
LARGE = """
CREATE TABLE patients_large (
  id integer PRIMARY KEY,
  full_name varchar(100),
  birth_date date,
  country varchar(50),
  medical_condition varchar(100),
  medical_expense numeric(10,2),
  visits integer,
  weight float8
);
INSERT INTO patients_large
SELECT i, p.full_name || ' ' || i, p.birth_date + (i % 365), p.country, p.medical_condition,
       round((p.medical_expense * (0.5 + (i % 97) / 97.0))::numeric, 2),
       1 + (i * 7919) % 40, 50 + ((i * 104729) % 5000) / 100.0
FROM generate_series(1, 10000) i
JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS k, * FROM patients) p ON p.k = i % 10;
"""


def _configure(db: Any) -> None:
    db.admin.execute(
        """
        CALL diffix.mark_perturbed('patients', 'id');
        CALL diffix.perturb_column('patients', 'medical_expense', 'uniform',
                                   '{"a": 100, "min": 0}');
        CALL diffix.perturb_column('patients', 'full_name', 'mask', '{"keep_first": 1}');
        CALL diffix.perturb_column('patients', 'birth_date', 'generalize', '{"to": "year"}');
        CALL diffix.set_quasi_identifiers('patients', 'birth_date', 'country');
        """
    )
    db.admin.execute(
        """
        CALL diffix.mark_perturbed('patients_large', 'id');
        CALL diffix.perturb_column('patients_large', 'id', 'pseudonym', '{"length": 12}');
        CALL diffix.perturb_column('patients_large', 'medical_expense', 'gaussian',
                                   '{"sd_fraction": 0.1, "min": 0}');
        CALL diffix.perturb_column('patients_large', 'visits', 'multiplicative',
                                   '{"fraction": 0.2, "min": 1}');
        CALL diffix.perturb_column('patients_large', 'weight', 'uniform', '{"a": 2.5}');
        CALL diffix.perturb_column('patients_large', 'birth_date', 'date_shift', '{"days": 15}');
        CALL diffix.perturb_column('patients_large', 'full_name', 'drop');
        CALL diffix.perturb_column('patients_large', 'country', 'pseudonym', '{}');
        CALL diffix.set_quasi_identifiers('patients_large', 'medical_condition', 'visits');
        """
    )


@pytest.fixture(scope="module")
def pdb(module_db: Any) -> Any:
    module_db.admin.execute(PATIENTS)
    module_db.admin.execute(LARGE)
    _configure(module_db)
    return module_db


def _rows(conn: psycopg.Connection, query: str, params: object = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


# --- an independent computation of the noise (the documented construction, in Python) -------


def _secret(db: Any) -> str:
    return db.execute("SELECT secret FROM diffix.microdata_key")[0][0]


def _uniform(secret: str, tag: str, row_key: object, slot: int) -> float:
    table_key = hashlib.sha256(f"{secret}/{tag}".encode()).digest()
    number, draw = divmod(slot, 5)
    suffix = f"/{number}" if number else ""
    digest = hashlib.sha256(table_key + f"{row_key}{suffix}".encode()).digest()
    return (int.from_bytes(digest[6 * draw : 6 * draw + 6], "big") + 0.5) / 2**48


def _round_to(value: float, digits: int) -> float:
    """The view's rounding of a float8 to 10^-digits (digits >= 0), as PostgreSQL computes it:
    round() is rint(), half to even, as Python's round()."""
    scale = 10.0**digits
    return round(value * scale) / scale if abs(value) < 2.0**52 / scale else value


def _pseudonym(secret: str, domain: str, value: object, length: int) -> str:
    key = hashlib.sha256(f"{secret}/pseudonym/{domain}".encode()).digest()
    return hashlib.sha256(key + str(value).encode()).hexdigest()[:length]


def _params(db: Any, table: str, column: str) -> dict:
    return db.execute(
        "SELECT c.params FROM diffix.microdata_columns c JOIN pg_attribute a"
        " ON a.attrelid = c.relid AND a.attnum = c.attnum"
        " WHERE c.relid = %s::regclass AND a.attname = %s",
        (table, column),
    )[0][0]


def _large_pairs(db: Any) -> list[tuple[tuple, tuple]]:
    """(original row, perturbed row) of patients_large, matched through the id's pseudonym."""
    secret = _secret(db)
    originals = db.execute(
        "SELECT id, birth_date, country, medical_condition, medical_expense, visits, weight"
        " FROM patients_large"
    )
    by_pseudonym = {_pseudonym(secret, "id", row[0], 12): row for row in originals}
    perturbed = db.execute(
        "SELECT id, birth_date, country, medical_condition, medical_expense, visits, weight"
        " FROM diffix_perturbed.patients_large"
    )
    assert len(perturbed) == len(originals) == 10_000
    return [(by_pseudonym[row[0]], row) for row in perturbed]


def test_the_ten_patients_stay_in_range_and_type(pdb: Any) -> None:
    originals = {r[3]: r for r in pdb.execute("SELECT * FROM patients")}
    view = _rows(pdb.admin, "SELECT * FROM diffix_perturbed.patients")
    columns = [
        c
        for (c,) in pdb.execute(
            "SELECT attname FROM pg_attribute"
            " WHERE attrelid = 'diffix_perturbed.patients'::regclass"
            " AND attnum > 0 ORDER BY attnum"
        )
    ]
    assert columns == ["full_name", "birth_date", "country", "medical_condition", "medical_expense"]
    assert len(view) == 10
    for name, birth, country, condition, expense in view:
        _, raw_name, raw_birth, _, raw_condition, raw_expense = originals[country]
        assert name == raw_name[0] + "*" * (len(raw_name) - 1)
        assert birth == datetime.date(raw_birth.year, 1, 1)
        assert condition == raw_condition
        assert isinstance(expense, Decimal) and expense.as_tuple().exponent == -2
        assert expense >= 0 and abs(expense - raw_expense) <= 100
        assert expense != raw_expense


def test_every_method_on_10000_rows_equals_the_documented_construction(pdb: Any) -> None:
    secret = _secret(pdb)
    tag = "public.patients_large"
    expense, visits, weight, shift = (
        _params(pdb, "patients_large", c)
        for c in ("medical_expense", "visits", "weight", "birth_date")
    )
    assert expense["sd"] == pytest.approx(
        0.1 * float(pdb.execute("SELECT stddev_samp(medical_expense) FROM patients_large")[0][0])
    )
    countries = {}
    for original, perturbed in _large_pairs(pdb):
        key, birth, country, condition, raw_expense, raw_visits, raw_weight = original
        _, p_birth, p_country, p_condition, p_expense, p_visits, p_weight = perturbed
        # gaussian, clamped at 0, numeric(10,2)
        u1, u2 = (_uniform(secret, tag, key, s) for s in expense["slots"])
        z = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
        expected = max(Decimal(0), raw_expense + Decimal(round(expense["sd"] * z * 100)) / 100)
        assert abs(p_expense - expected) <= Decimal("0.01")
        assert p_expense >= 0 and p_expense.as_tuple().exponent == -2
        # multiplicative +-20 %, at least 1, integer
        sym = 2 * _uniform(secret, tag, key, visits["slots"][0]) - 1
        assert isinstance(p_visits, int) and p_visits >= 1
        assert abs(p_visits - max(1.0, raw_visits * (1 + 0.2 * sym))) <= 0.5 + 1e-9
        # uniform +-2.5 on float8
        sym = 2 * _uniform(secret, tag, key, weight["slots"][0]) - 1
        assert p_weight == _round_to(raw_weight + 2.5 * sym, 1)  # sd 1.44: to tenths
        assert abs(p_weight - raw_weight) <= 2.5 + 0.05
        # date_shift +-15 days
        days = math.floor(_uniform(secret, tag, key, shift["slots"][0]) * 31) - 15
        assert p_birth == birth + datetime.timedelta(days=days)
        # pseudonym: keyed, consistent, the column's name as its default domain
        assert p_country == _pseudonym(secret, "country", country, 16)
        countries.setdefault(country, set()).add(p_country)
        assert p_condition == condition
    assert all(len(pseudonyms) == 1 for pseudonyms in countries.values())
    assert len({p for ps in countries.values() for p in ps}) == len(countries)


def test_noise_means_stay_within_their_standard_error(pdb: Any) -> None:
    pairs = _large_pairs(pdb)
    sd = _params(pdb, "patients_large", "medical_expense")["sd"]
    noise = [float(p[4] - o[4]) for o, p in pairs]
    assert abs(statistics.fmean(noise)) <= 3 * sd / math.sqrt(len(noise))
    assert statistics.stdev(noise) == pytest.approx(sd, rel=0.05)
    uniform_noise = [p[6] - o[6] for o, p in pairs]
    uniform_sd = 2.5 / math.sqrt(3)
    assert abs(statistics.fmean(uniform_noise)) <= 3 * uniform_sd / math.sqrt(len(pairs))
    assert statistics.stdev(uniform_noise) == pytest.approx(uniform_sd, rel=0.05)


def _report(db: Any, table: str) -> dict[tuple, tuple]:
    rows = db.execute("SELECT * FROM diffix.perturbation_report(%s)", (table,))
    return {(m, c, o): (before, after) for m, c, o, before, after, _explanation in rows}


def _linkage(originals: np.ndarray, perturbed: np.ndarray) -> float:
    """Nearest-neighbour linkage, brute force: distances from every perturbed record to every
    original one, columns scaled by the original population sd; ties count as linked. The
    squares are added column by column, in the order a sum over the columns adds them, without
    a (rows x originals x columns) temporary."""
    scale = originals.std(axis=0)
    a, b = originals / scale, perturbed / scale
    linked = 0
    for i in range(0, len(b), 250):
        chunk = b[i : i + 250]
        squares = (chunk[:, None, 0] - a[None, :, 0]) ** 2
        for column in range(1, a.shape[1]):
            squares += (chunk[:, None, column] - a[None, :, column]) ** 2
        d = np.sqrt(squares)
        own = d[np.arange(len(d)), np.arange(i, i + len(d))]
        linked += int((own <= d.min(axis=1) + 1e-12).sum())
    return linked / len(b)


def test_report_figures_equal_an_independent_computation(pdb: Any) -> None:
    report = _report(pdb, "patients_large")
    pairs = _large_pairs(pdb)
    assert report[("rows", None, None)] == (10_000, 10_000)
    numeric = {"medical_expense": 4, "visits": 5, "weight": 6}
    for name, index in numeric.items():
        for side, values in (
            (0, [float(o[index]) for o, _ in pairs]),
            (1, [float(p[index]) for _, p in pairs]),
        ):
            assert report[("mean", name, None)][side] == pytest.approx(statistics.fmean(values))
            assert report[("sd", name, None)][side] == pytest.approx(statistics.stdev(values))
            assert report[("min", name, None)][side] == pytest.approx(min(values))
            assert report[("max", name, None)][side] == pytest.approx(max(values))
    for a, b in (
        ("medical_expense", "visits"),
        ("medical_expense", "weight"),
        ("visits", "weight"),
    ):
        for side in (0, 1):
            xs = [float(pair[side][numeric[a]]) for pair in pairs]
            ys = [float(pair[side][numeric[b]]) for pair in pairs]
            assert report[("correlation", a, b)][side] == pytest.approx(
                statistics.correlation(xs, ys), abs=1e-9
            )
    columns = [4, 5, 6]
    originals = np.array([[float(o[i]) for i in columns] for o, _ in pairs])
    perturbed = np.array([[float(p[i]) for i in columns] for _, p in pairs])
    share = report[("linkage_share", "medical_expense, visits, weight", None)]
    assert share[0] is None
    assert share[1] == pytest.approx(_linkage(originals, perturbed), abs=1e-4)
    before = Counter((o[3], o[5]) for o, _ in pairs)
    after = Counter((p[3], p[5]) for _, p in pairs)
    assert report[("min_group_size", "medical_condition, visits", None)] == (
        min(before.values()),
        min(after.values()),
    )


def test_report_on_the_ten_patients(pdb: Any) -> None:
    report = _report(pdb, "patients")
    originals = sorted(pdb.execute("SELECT country, medical_expense, birth_date FROM patients"))
    view = sorted(
        pdb.execute("SELECT country, medical_expense, birth_date FROM diffix_perturbed.patients")
    )
    raw = [float(r[1]) for r in originals]
    noisy = [float(r[1]) for r in view]
    assert report[("mean", "medical_expense", None)] == pytest.approx(
        (statistics.fmean(raw), statistics.fmean(noisy))
    )
    linkage = _linkage(np.array([[x] for x in raw]), np.array([[x] for x in noisy]))
    assert report[("linkage_share", "medical_expense", None)] == (None, pytest.approx(linkage))
    # every country is unique: birth year and country single out each patient before and after
    assert report[("min_group_size", "birth_date, country", None)] == (1, 1)


def test_values_are_the_same_across_sessions_and_reinstalls_and_change_with_the_key(
    pdb: Any,
) -> None:
    reader = pdb.create_role("perturbed")
    query = "SELECT * FROM diffix_perturbed.patients_large ORDER BY id"
    first = _rows(pdb.admin, query)
    assert _rows(pdb.as_role(reader), query) == first
    assert _rows(pdb.connect(), query) == first
    install.install(pdb.dsn(), out=io.StringIO())
    assert _rows(pdb.connect(), query) == first
    old_key = _secret(pdb)
    pdb.admin.execute("CALL diffix.set_perturbation_key()")
    try:
        changed = _rows(pdb.connect(), query)
        assert len(changed) == len(first)
        assert set(changed).isdisjoint(first)  # every row re-drawn (id pseudonyms too)
    finally:
        pdb.admin.execute("CALL diffix.set_perturbation_key(%s)", (old_key,))
    assert _rows(pdb.connect(), query) == first


def _state(db: Any) -> list:
    return [
        db.execute("SELECT * FROM diffix.microdata_tables ORDER BY relid"),
        db.execute("SELECT * FROM diffix.microdata_columns ORDER BY relid, attnum"),
        db.execute(
            "SELECT viewname, definition FROM pg_views WHERE schemaname = 'diffix_perturbed'"
            " ORDER BY 1"
        ),
        db.execute(
            "SELECT relname, relacl::text FROM pg_class WHERE relname LIKE 'patients%' ORDER BY 1"
        ),
    ]


@pytest.mark.parametrize(
    ("statement", "sqlstate", "message"),
    [
        (
            "CALL diffix.perturb_column('patients', 'nope', 'uniform', '{\"a\": 1}')",
            "42703",
            "column 'nope' does not exist",
        ),
        (
            "CALL diffix.perturb_column('patients', 'country', 'uniform', '{\"a\": 1}')",
            "42804",
            "method uniform does not apply to column 'country' of type character varying(50)",
        ),
        (
            "CALL diffix.perturb_column('patients', 'medical_expense', 'gaussian', '{\"sd\": -3}')",
            "22023",
            "parameter 'sd' must not be negative",
        ),
        (
            "CALL diffix.perturb_column('patients', 'medical_expense', 'uniform', '{\"b\": 1}')",
            "22023",
            "method uniform does not take parameter(s) b",
        ),
        (
            "CALL diffix.perturb_column('patients', 'medical_expense', 'noise', '{}')",
            "22023",
            "unknown perturbation method 'noise'",
        ),
        (
            "CALL diffix.perturb_column('patients', 'birth_date', 'generalize',"
            ' \'{"to": "day"}\')',
            "22023",
            "parameter 'to' must be one of month, quarter, year",
        ),
        (
            "CALL diffix.perturb_column('patients', 'medical_expense', 'uniform',"
            ' \'{"a": 5, "min": 10, "max": 1}\')',
            "22023",
            "min 10 is greater than max 1",
        ),
        (
            "CALL diffix.perturb_column('patients', 'id', 'uniform', '{\"a\": 1}')",
            "22023",
            "column 'id' is the row key: it can only be dropped or pseudonymized",
        ),
        (
            "CALL diffix.mark_perturbed('patients', 'country_dup')",
            "42703",
            "column 'country_dup' does not exist",
        ),
        (
            "CALL diffix.mark_perturbed('patients', 'medical_condition')",
            "22023",
            "column 'medical_condition' cannot be the row key of public.patients: 0 NULL and "
            "6 repeated value(s)",
        ),
        (
            "CALL diffix.mark_perturbed('diffix_perturbed.patients', 'country')",
            "42809",
            "diffix_perturbed.patients is not a table or materialized view",
        ),
        (
            "CALL diffix.perturb_column('no_such_table', 'x', 'drop')",
            "42P01",
            'table "no_such_table" does not exist',
        ),
    ],
)
def test_bad_configuration_is_a_clear_error_and_changes_nothing(
    pdb: Any, statement: str, sqlstate: str, message: str
) -> None:
    before = _state(pdb)
    with pytest.raises(psycopg.Error) as raised:
        pdb.admin.execute(statement)
    assert raised.value.sqlstate == sqlstate
    assert raised.value.diag.message_primary.startswith(message), raised.value.diag.message_primary
    assert "plpy" not in raised.value.diag.message_primary
    assert _state(pdb) == before


# --- attacks by a role at the perturbed level ---------------------------------------------


@pytest.fixture(scope="module")
def attacker(pdb: Any) -> psycopg.Connection:
    role = pdb.create_role("perturbed")
    # a schema of its own, to create functions and views in
    pdb.admin.execute(sql.SQL("CREATE SCHEMA {0} AUTHORIZATION {0}").format(sql.Identifier(role)))
    return pdb.as_role(role)


def _refused(conn: psycopg.Connection, statement: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as raised:
        conn.execute(statement)
    return raised.value


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM patients",
        "SELECT id FROM patients_large",
        "SELECT * FROM diffix.microdata_key",
        "SELECT diffix._perturb_admin('rebuild', 'patients'::regclass, '{}')",
        "CALL diffix.mark_perturbed('patients', 'id')",
        "CALL diffix.perturb_column('patients', 'medical_expense', 'keep')",
        "CALL diffix.set_perturbation_key('0123456789abcdef0123456789abcdef')",
        "SELECT * FROM diffix.perturbation_report('patients')",
        "SELECT diffix._salt()",
        "SET ROLE diffix_perturb_owner",
        "SELECT id FROM diffix_perturbed.patients",
        "SELECT diffix.query_json('SELECT count(*) FROM patients')",
        "COPY patients TO STDOUT",
        "ALTER VIEW diffix_perturbed.patients OWNER TO CURRENT_USER",
        "CREATE OR REPLACE VIEW diffix_perturbed.patients AS SELECT * FROM patients",
    ],
)
def test_a_perturbed_role_cannot_read_the_base_table_the_key_or_the_row_key(
    attacker: psycopg.Connection, statement: str
) -> None:
    error = _refused(attacker, statement)
    assert error.sqlstate in ("42501", "42703"), (error.sqlstate, str(error))


def test_the_key_is_in_no_catalog_a_perturbed_role_can_read(
    pdb: Any, attacker: psycopg.Connection
) -> None:
    secret = _secret(pdb)
    texts = [
        "SELECT string_agg(definition, ' ') FROM pg_views",
        "SELECT string_agg(prosrc, ' ') FROM pg_proc",
        "SELECT string_agg(coalesce(array_to_string(proconfig, ','), ''), ' ') FROM pg_proc",
        "SELECT string_agg(setting, ' ') FROM pg_settings",
        "SELECT string_agg(setting, ' ') FROM diffix.show_settings()",
        "SELECT string_agg(params::text, ' ') FROM diffix.microdata_columns",
        "SELECT string_agg(t::text, ' ') FROM diffix.microdata_tables t",
        "SELECT string_agg(l::text, ' ') FROM diffix.show_labels() l",
        "SELECT string_agg(s::text, ' ') FROM pg_stats s",
        "SELECT string_agg(d.description, ' ') FROM pg_description d",
    ]
    for query in texts:
        found = _rows(attacker, query)[0][0] or ""
        assert secret not in found, query
    plan = _rows(attacker, "EXPLAIN (VERBOSE, ANALYZE) SELECT * FROM diffix_perturbed.patients")
    assert secret not in " ".join(line for (line,) in plan)
    # what it does read: the perturbed view, and its definition (no secret in it)
    assert len(_rows(attacker, "SELECT * FROM diffix_perturbed.patients")) == 10
    definition = _rows(
        attacker, "SELECT definition FROM pg_views WHERE viewname = 'patients_large'"
    )[0][0]
    assert "diffix.microdata_key" in definition


def test_its_own_functions_see_only_perturbed_values(
    pdb: Any, attacker: psycopg.Connection
) -> None:
    role = _rows(attacker, "SELECT current_user")[0][0]
    attacker.execute(
        sql.SQL(
            "CREATE FUNCTION {}.leak(numeric) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS"
            " $$ BEGIN RAISE NOTICE 'leak %', $1; RETURN true; END $$"
        ).format(sql.Identifier(role))
    )
    seen: list[str] = []
    attacker.add_notice_handler(lambda diag: seen.append(diag.message_primary))
    attacker.execute(
        sql.SQL("SELECT * FROM diffix_perturbed.patients WHERE {}.leak(medical_expense)").format(
            sql.Identifier(role)
        )
    )
    shown = {
        f"leak {v}"
        for (v,) in _rows(attacker, "SELECT medical_expense FROM diffix_perturbed.patients")
    }
    raw = {f"leak {v}" for (v,) in pdb.execute("SELECT medical_expense FROM patients")}
    assert set(seen) == shown and shown.isdisjoint(raw)


def test_grants_of_the_base_table_to_perturbed_roles_never_take_effect(
    pdb: Any, attacker: psycopg.Connection
) -> None:
    role = _rows(attacker, "SELECT current_user")[0][0]
    error = _refused(
        pdb.admin, sql.SQL("GRANT SELECT ON patients TO {}").format(sql.Identifier(role))
    )
    assert error.sqlstate == "42501" and "perturbed table public.patients" in str(error)
    error = _refused(pdb.admin, "GRANT SELECT (country) ON patients TO diffix_perturbed")
    assert error.sqlstate == "42501"
    error = _refused(
        pdb.admin, sql.SQL("ALTER TABLE patients OWNER TO {}").format(sql.Identifier(role))
    )
    assert error.sqlstate == "42501" and "(ownership)" in str(error)
    pdb.admin.execute(
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role))
    )
    assert _refused(attacker, "SELECT * FROM patients").sqlstate == "42501"
    pdb.admin.execute(
        sql.SQL("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM {}").format(sql.Identifier(role))
    )
    assert not [
        f for f in pdb.execute("SELECT * FROM diffix.check_security()") if f[0] == "critical"
    ]


def test_check_security_reports_roles_that_borrow_the_owners_privileges(pdb: Any) -> None:
    borrower = pdb.create_role("perturbed")
    pdb.admin.execute(sql.SQL("GRANT diffix_perturb_owner TO {}").format(sql.Identifier(borrower)))
    try:
        findings = {
            (f[0], f[1], f[2]) for f in pdb.execute("SELECT * FROM diffix.check_security()")
        }
        assert (
            "critical",
            borrower,
            "member of diffix_perturb_owner: can read perturbed tables and the perturbation key",
        ) in findings
        assert ("critical", borrower, f"{borrower} (perturbed) can read the perturbation key") in (
            findings
        )
        assert any(f[1] == "public.patients" and borrower in f[2] for f in findings)
    finally:
        pdb.admin.execute(
            sql.SQL("REVOKE diffix_perturb_owner FROM {}").format(sql.Identifier(borrower))
        )


def test_show_labels_lists_perturbed_tables_columns_and_roles(pdb: Any) -> None:
    role = pdb.create_role("perturbed")
    labels = set(pdb.execute("SELECT * FROM diffix.show_labels()"))
    assert ("table", "public.patients", "perturbed rows (view diffix_perturbed.patients)") in labels
    assert ("column", "public.patients.id", "row key, drop") in labels
    assert ("column", "public.patients_large.id", "row key, perturb pseudonym") in labels
    assert ("column", "public.patients.medical_expense", "perturb uniform") in labels
    assert ("role", role, "perturbed") in labels


def test_a_table_can_be_personal_for_diffix_roles_and_perturbed_for_perturbed_roles(
    pdb: Any,
) -> None:
    pdb.admin.execute(
        """
        CREATE TABLE patients_both AS SELECT * FROM patients_large;
        ALTER TABLE patients_both ADD PRIMARY KEY (id);
        CALL diffix.mark_personal('patients_both', 'id');
        CALL diffix.mark_perturbed('patients_both', 'id');
        CALL diffix.perturb_column('patients_both', 'weight', 'uniform', '{"a": 1}');
        """
    )
    analyst = pdb.as_role(pdb.create_role("anonymized_trusted"))
    reader = pdb.as_role(pdb.create_role("perturbed"))
    answer = _rows(analyst, "SELECT diffix.query_json('SELECT count(*) FROM patients_both')")
    count = answer[0][0]["rows"][0][0]
    assert 9_900 <= count <= 10_100
    assert _refused(analyst, "SELECT * FROM diffix_perturbed.patients_both").sqlstate == "42501"
    assert _refused(analyst, "SELECT * FROM patients_both").sqlstate == "42501"
    assert len(_rows(reader, "SELECT weight FROM diffix_perturbed.patients_both")) == 10_000
    assert _refused(reader, "SELECT * FROM patients_both").sqlstate == "42501"
    error = _refused(reader, "SELECT diffix.query_json('SELECT count(*) FROM patients_both')")
    assert error.sqlstate == "42501" and "not through diffix.query_json" in str(error)
    assert ("table", "public.patients_both", "personal") in set(
        pdb.execute("SELECT * FROM diffix.show_labels()")
    )


# --- the CLI ---------------------------------------------------------------------------------


def test_perturb_export_writes_the_view_as_csv(
    pdb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = pdb.create_role("perturbed")
    target = tmp_path / "patients.csv"
    assert (
        cli.main(
            [
                "perturb-export",
                "--dsn",
                pdb.dsn(reader),
                "--table",
                "patients_large",
                "--csv",
                str(target),
            ]
        )
        == 0
    )
    with target.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        "id",
        "birth_date",
        "country",
        "medical_condition",
        "medical_expense",
        "visits",
        "weight",
    ]
    expected = pdb.execute(
        "SELECT id, birth_date::text, country, medical_condition, medical_expense::text,"
        " visits::text FROM diffix_perturbed.patients_large"
    )
    assert sorted(tuple(r[:6]) for r in rows[1:]) == sorted(expected)
    assert "wrote 10,000 rows of diffix_perturbed.patients_large" in capsys.readouterr().err
    assert not (tmp_path / "patients.csv.partial").exists()


def test_perturb_export_and_report_fail_clearly(
    pdb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = pdb.create_role("perturbed")
    target = tmp_path / "x.csv"
    pdb.admin.execute("CREATE TABLE IF NOT EXISTS plain_table (x int)")
    code = cli.main(
        ["perturb-export", "--dsn", pdb.dsn(), "--table", "plain_table", "--csv", str(target)]
    )
    assert code == 2 and "table plain_table is not perturbed" in capsys.readouterr().err
    assert not target.exists()
    code = cli.main(["perturb-report", "--dsn", pdb.dsn(reader), "--table", "patients"])
    assert code == 2
    assert "only superusers and members of diffix_admin can read perturbation reports" in (
        capsys.readouterr().err
    )


def test_perturb_report_prints_the_figures(pdb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["perturb-report", "--dsn", pdb.dsn(), "--table", "patients"]) == 0
    out = capsys.readouterr().out
    assert "Perturbation report for patients:" in out
    for metric in ("mean", "sd", "linkage_share", "min_group_size"):
        assert f"  {metric} " in out


# --- odd names, privilege borrowing, rollback ----------------------------------------------


def test_odd_identifiers_are_quoted_everywhere(pdb: Any) -> None:
    pdb.admin.execute(
        """
        CREATE SCHEMA "Odd Schema";
        CREATE TABLE "Odd Schema".";DROP TABLE patients;--" (
          "key; --" int PRIMARY KEY, "amount""x" numeric(8, 2), "o'name" text);
        INSERT INTO "Odd Schema".";DROP TABLE patients;--"
          SELECT i, i * 1.5, 'n' || i FROM generate_series(1, 50) i;
        """
    )
    table = '"Odd Schema".";DROP TABLE patients;--"'
    pdb.admin.execute("CALL diffix.mark_perturbed(%s, 'key; --')", (table,))
    pdb.admin.execute(
        "CALL diffix.perturb_column(%s, 'amount\"x', 'uniform', '{\"a\": 1}')", (table,)
    )
    pdb.admin.execute(
        "CALL diffix.perturb_column(%s, 'o''name', 'mask', '{\"char\": \"''\"}')", (table,)
    )
    rows = pdb.execute('SELECT * FROM diffix_perturbed.";DROP TABLE patients;--"')
    assert len(rows) == 50 and all(name.startswith("n") and "'" in name for _, name in rows)
    assert pdb.execute("SELECT count(*) FROM patients")[0][0] == 10
    report = _report(pdb, table)
    assert report[("rows", None, None)] == (50, 50)


def test_only_administrators_configure_perturbation(pdb: Any) -> None:
    owner = pdb.create_role("direct")
    pdb.admin.execute(
        sql.SQL(
            "CREATE TABLE owned_by_direct (id int PRIMARY KEY, v int);"
            " ALTER TABLE owned_by_direct OWNER TO {}"
        ).format(sql.Identifier(owner))
    )
    conn = pdb.as_role(owner)
    for statement in (
        "CALL diffix.mark_perturbed('owned_by_direct', 'id')",
        "CALL diffix.perturb_column('patients', 'medical_expense', 'drop')",
        "CALL diffix.unmark_perturbed('patients')",
        "CALL diffix.set_quasi_identifiers('patients', 'country')",
        "CALL diffix.rebuild_perturbed_view('patients')",
    ):
        error = _refused(conn, statement)
        assert error.sqlstate == "42501", statement
        assert "only superusers and members of diffix_admin" in str(error)
    assert _refused(conn, "CALL diffix.set_perturbation_key()").sqlstate == "42501"


def test_a_rolled_back_configuration_leaves_no_trace(pdb: Any) -> None:
    before = _state(pdb)
    with pdb.connect() as conn:
        conn.autocommit = False
        conn.execute(
            "CALL diffix.perturb_column('patients', 'medical_expense', 'round', '{\"step\": 1000}')"
        )
        conn.execute("CALL diffix.unmark_perturbed('patients_large')")
        conn.rollback()
    assert _state(pdb) == before


def test_a_reader_cannot_redirect_the_view_through_its_search_path(
    pdb: Any, attacker: psycopg.Connection
) -> None:
    role = _rows(attacker, "SELECT current_user")[0][0]
    schema = sql.Identifier(role)
    attacker.execute(
        sql.SQL(
            "CREATE FUNCTION {0}.sha256(bytea) RETURNS bytea LANGUAGE sql"
            " AS $$ SELECT '\\x00'::bytea $$;"
            "CREATE FUNCTION {0}.get_byte(bytea, int) RETURNS int LANGUAGE sql AS $$ SELECT 0 $$;"
            "CREATE TABLE {0}.microdata_key (secret text)"
        ).format(schema)
    )
    query = "SELECT * FROM diffix_perturbed.patients ORDER BY country"
    expected = _rows(pdb.admin, query)
    attacker.execute(sql.SQL("SET search_path = {}, pg_catalog, diffix").format(schema))
    try:
        assert _rows(attacker, query) == expected
    finally:
        attacker.execute("RESET search_path")


def test_uninstall_and_reinstall_with_the_saved_key_gives_the_same_values(empty_db: Any) -> None:
    # its own installation: an uninstall in a cloned database would drop what clones share
    db = empty_db
    install.install(db.dsn(), out=io.StringIO())
    db.admin.execute(PATIENTS)
    configure = """
        CALL diffix.mark_perturbed('patients', 'id');
        CALL diffix.perturb_column('patients', 'medical_expense', 'gaussian', '{"sd": 50}');
        CALL diffix.perturb_column('patients', 'birth_date', 'date_shift', '{"days": 10}');
    """
    db.admin.execute(configure)
    query = "SELECT * FROM diffix_perturbed.patients ORDER BY country"
    before = _rows(db.admin, query)
    saved = _secret(db)
    uninstall.uninstall(db.dsn(), out=io.StringIO())
    assert db.execute("SELECT to_regnamespace('diffix_perturbed')") == [(None,)]
    assert db.execute(
        "SELECT count(*) FROM information_schema.table_privileges"
        " WHERE table_name = 'patients' AND grantee LIKE 'diffix%'"
    ) == [(0,)]
    install.install(db.dsn(), out=io.StringIO())
    db.admin.execute(configure)
    assert _rows(db.connect(), query) != before  # a new install draws a new key
    db.admin.execute("CALL diffix.set_perturbation_key(%s)", (saved,))
    assert _rows(db.connect(), query) == before


def test_every_type_keeps_its_type_and_range(pdb: Any) -> None:
    pdb.admin.execute(
        """
        CREATE TABLE kinds (k bigint PRIMARY KEY, seen timestamp, seen_tz timestamptz,
                            free numeric, fine numeric, small float4, big int8, code char(6),
                            price numeric(9, 3), n int2);
        INSERT INTO kinds SELECT i, TIMESTAMP '2024-02-15 10:30' + i * INTERVAL '7 hours',
          TIMESTAMPTZ '2024-02-15 10:30+00' + i * INTERVAL '7 hours', i * 1.25,
          i * 0.123456789, i / 3.0, i * 1000003, 'AB' || lpad(i::text, 4, '0'), i * 2.5, i % 300
        FROM generate_series(1, 400) i;
        CALL diffix.mark_perturbed('kinds', 'k');
        CALL diffix.perturb_column('kinds', 'seen', 'date_shift', '{"days": 3}');
        CALL diffix.perturb_column('kinds', 'seen_tz', 'generalize', '{"to": "quarter"}');
        CALL diffix.perturb_column('kinds', 'free', 'uniform', '{"a": 0.5, "min": 0}');
        CALL diffix.perturb_column('kinds', 'fine', 'gaussian', '{"sd": 0.01}');
        CALL diffix.perturb_column('kinds', 'small', 'multiplicative', '{"fraction": 0.1}');
        CALL diffix.perturb_column('kinds', 'big', 'round', '{"step": 1000}');
        CALL diffix.perturb_column('kinds', 'code', 'mask', '{"keep_first": 2, "keep_last": 1}');
        CALL diffix.perturb_column('kinds', 'price', 'round', '{"step": 0.5}');
        CALL diffix.perturb_column('kinds', 'n', 'uniform', '{"a": 3, "min": 0, "max": 299}');
        """
    )
    types = dict(
        pdb.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'diffix_perturbed.kinds'::regclass AND attnum > 0"
        )
    )
    assert types == {
        "seen": "timestamp without time zone",
        "seen_tz": "timestamp with time zone",
        "free": "numeric",
        "fine": "numeric",
        "small": "real",
        "big": "bigint",
        "code": "character(6)",
        "price": "numeric(9,3)",
        "n": "smallint",
    }
    originals = {
        r[0]: r
        for r in pdb.execute(
            "SELECT k, seen, seen_tz, free, fine, small, big, code, price, n FROM kinds"
        )
    }
    # the original row for each perturbed row: the view keeps rows in the table's order
    view = pdb.execute(
        "SELECT seen, seen_tz, free, fine, small, big, code, price, n FROM diffix_perturbed.kinds"
    )
    base = pdb.execute("SELECT k FROM kinds")
    for (key,), row in zip(base, view, strict=True):
        _, seen, seen_tz, free, fine, small, big, code, price, n = originals[key]
        p_seen, p_tz, p_free, p_fine, p_small, p_big, p_code, p_price, p_n = row
        assert abs(p_seen - seen) <= datetime.timedelta(days=3)
        assert (p_seen - seen) % datetime.timedelta(days=1) == datetime.timedelta(0)
        assert p_tz.month in (1, 4, 7, 10) and p_tz.day == 1 and p_tz <= seen_tz
        assert p_free >= 0 and abs(p_free - free) <= Decimal("0.5")
        assert p_free.as_tuple().exponent == -2  # the data's scale (1.25 steps)
        # sd 0.01: to thousandths, coarser than the data's 9 decimals
        assert p_fine.as_tuple().exponent == -3 and abs(p_fine - fine) < Decimal("0.1")
        # 10% at most, plus half the rounding step: a power of ten at most a tenth of the
        # noise's sd, which the perturbed value sets (10% / sqrt(3) of it)
        assert abs(p_small - small) <= 0.1 * small + 0.01 * abs(p_small) + 1e-5
        assert p_big % 1000 == 0 and abs(p_big - big) <= 500
        assert p_code == code[:2] + "***" + code[-1]
        assert p_price % Decimal("0.5") == 0 and abs(p_price - price) <= Decimal("0.25")
        assert 0 <= p_n <= 299 and abs(p_n - n) <= 3


def test_a_missing_view_is_reported_until_it_is_rebuilt(pdb: Any) -> None:
    pdb.admin.execute("CREATE TABLE gone (id int PRIMARY KEY, v int)")
    pdb.admin.execute("CALL diffix.mark_perturbed('gone', 'id')")
    pdb.admin.execute("DROP VIEW diffix_perturbed.gone")
    finding = (
        "warning",
        "public.gone",
        "its perturbed view diffix_perturbed.gone is missing",
        "CALL diffix.rebuild_perturbed_view('public.gone')",
    )
    assert finding in pdb.execute("SELECT * FROM diffix.check_security()")
    pdb.admin.execute("CALL diffix.rebuild_perturbed_view('public.gone')")
    assert finding not in pdb.execute("SELECT * FROM diffix.check_security()")
    pdb.admin.execute("DROP TABLE gone CASCADE")
    assert pdb.execute("SELECT count(*) FROM diffix.microdata_tables WHERE view_name = 'gone'") == [
        (0,)
    ]


# --- the low-order bits of a perturbed float tell nothing (rounding, docs/perturbation.md) --


def _uniform_output(x: float, a: float, k: int, digits: int | None) -> float:
    """The view's uniform construction for draw k (u = (k + 0.5) / 2^48), rounded or not."""
    u = (k + 0.5) / 2**48
    value = x + a * (2.0 * u - 1.0)
    return value if digits is None else _round_to(value, digits)


def _candidates(y: float, a: float, digits: int | None) -> set[int]:
    """The integers x that some draw maps to exactly y: what an attacker who knows the
    construction, but not the key, learns from y. The output grows with k, so a binary search
    finds the smallest k reaching y."""
    found = set()
    for x in range(math.floor(y - a) - 3, math.ceil(y + a) + 4):
        low, high = 0, 2**48 - 1
        while low < high:
            middle = (low + high) // 2
            if _uniform_output(x, a, middle, digits) < y:
                low = middle + 1
            else:
                high = middle
        if _uniform_output(x, a, low, digits) == y:
            found.add(x)
    return found


WHOLE = Column("n", "float8", "double precision")


@pytest.mark.parametrize(("a", "digits"), [(10.0, 1), (12.5, 1)])
def test_an_output_is_consistent_with_every_original_the_noise_allows(
    pdb: Any, a: float, digits: int
) -> None:
    """Integer originals in a float8 column, uniform noise: every integer within a of an output
    could have produced it. Unrounded, the low-order bits of v + noise leave a few."""
    table = f"whole_{int(a * 10)}"
    pdb.admin.execute(
        f"""
        CREATE TABLE {table} (id int PRIMARY KEY, n float8);
        INSERT INTO {table} SELECT i, 70 + (i * 7919) % 45 FROM generate_series(1, 120) i;
        CALL diffix.mark_perturbed('{table}', 'id');
        CALL diffix.perturb_column('{table}', 'n', 'uniform', '{{"a": {a}}}');
        """
    )
    assert methods.rounding(WHOLE, Rule("uniform", {"a": a})).digits == digits
    secret, tag = _secret(pdb), f"public.{table}"
    slot = _params(pdb, table, "n")["slots"][0]
    originals = dict(pdb.execute(f"SELECT id, n FROM {table} ORDER BY id"))
    shown = [y for (y,) in pdb.execute(f"SELECT n FROM diffix_perturbed.{table}")]
    raw_counts = []
    for (key, x), y in zip(originals.items(), shown, strict=True):
        assert y == _round_to(x + a * (2.0 * _uniform(secret, tag, key, slot) - 1.0), digits)
        candidates = _candidates(y, a, digits)
        within = set(range(math.floor(y - a) - 3, math.ceil(y + a) + 4))
        assert x in candidates
        assert {c for c in within if abs(y - c) <= a} <= candidates
        assert candidates <= {c for c in within if abs(y - c) <= a + 0.05 + 1e-9}
        if len(raw_counts) < 30:
            raw = x + a * (2.0 * _uniform(secret, tag, key, slot) - 1.0)
            raw_counts.append(len(_candidates(raw, a, None)))
    # what the unrounded float8 gave away: fewer than half of the 2a + 1 candidates remain
    assert statistics.fmean(raw_counts) < (2 * a + 1) / 2, raw_counts


def test_no_stored_value_makes_the_view_fail(pdb: Any) -> None:
    """Values at the edges of their types (an error on some rows would tell a reader a yes/no
    about them): every row reads, NaN and infinities pass, results fit the column type."""
    pdb.admin.execute(
        """
        CREATE TABLE edges (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, money numeric(5, 2),
                            free numeric, f8 float8, f4 float4, m8 float8, m4 float4, d date,
                            ts timestamptz);
        INSERT INTO edges VALUES
          (1, 32767, 2147483647, 9223372036854775807, 999.99, 1e400, 1.7976931348623157e308,
           3.4028235e38, 1.7976931348623157e308, 3.4028235e38),
          (2, -32768, -2147483648, -9223372036854775808, -999.99, -1e-400,
           -1.7976931348623157e308, -3.4028235e38, 4.9e-324, 1.4e-45),
          (3, 0, 0, 0, 0, 'NaN', 'NaN', 'NaN', 'NaN', 'NaN'),
          (4, 1, 1, 1, 0.01, 'Infinity', 'Infinity', '-Infinity', '-Infinity', 'Infinity'),
          (5, 0, 0, 0, 0, 1e-400, 4.9e-324, 1.4e-45, -4.9e-324, -1.4e-45);
        UPDATE edges SET d = (ARRAY['5874897-12-31', '4714-11-24 BC', 'infinity', '-infinity',
                                    '2024-02-29'])[id]::date,
                         ts = (ARRAY['294276-12-31 23:59:59+00', '4713-11-24 00:00:00+00 BC',
                                     'infinity', '-infinity', '2024-02-29 12:00+00'])[id]
                              ::timestamptz;
        CALL diffix.mark_perturbed('edges', 'id');
        CALL diffix.perturb_column('edges', 'd', 'date_shift', '{"days": 36500}');
        CALL diffix.perturb_column('edges', 'ts', 'date_shift', '{"days": 36500}');
        CALL diffix.perturb_column('edges', 'i2', 'uniform', '{"a": 1000}');
        CALL diffix.perturb_column('edges', 'i4', 'gaussian', '{"sd": 1e6, "digits": -3}');
        CALL diffix.perturb_column('edges', 'i8', 'multiplicative', '{"fraction": 0.5}');
        CALL diffix.perturb_column('edges', 'money', 'uniform', '{"a": 50, "digits": 0}');
        CALL diffix.perturb_column('edges', 'free', 'multiplicative', '{"fraction": 0.1}');
        CALL diffix.perturb_column('edges', 'f8', 'uniform', '{"a": 1e290}');
        CALL diffix.perturb_column('edges', 'f4', 'gaussian', '{"sd": 1e-250}');
        CALL diffix.perturb_column('edges', 'm8', 'multiplicative', '{"fraction": 0.999}');
        CALL diffix.perturb_column('edges', 'm4', 'round', '{"step": 1e-250}');
        """
    )
    # the view keeps the table's row order (and drops the row key)
    ids = [key for (key,) in pdb.execute("SELECT id FROM edges")]
    shown = pdb.execute(
        "SELECT i2, i4, i8, money, free, f8, f4, m8, m4, d::text, ts::text"
        " FROM diffix_perturbed.edges"
    )
    rows = dict(zip(ids, shown, strict=True))
    for i2, i4, i8, money, _, _, f4, _, m4, _, _ in rows.values():
        assert -32768 <= i2 <= 32767 and isinstance(i8, int)
        assert i4 % 1000 == 0 or i4 in (-2147483648, 2147483647)  # rounded, or at a bound
        assert abs(money) <= Decimal("999.99")
        assert money == money.to_integral_value() or abs(money) == Decimal("999.99")
        assert math.isnan(f4) or math.isinf(f4) or abs(f4) <= 3.4028235e38
        assert math.isnan(m4) or math.isinf(m4) or abs(m4) <= 3.4028235e38
    assert [
        value.is_nan() if isinstance(value, Decimal) else math.isnan(value)
        for value in rows[3][4:9]
    ] == [True] * 5
    assert rows[4][4] == Decimal("Infinity") and rows[4][5] == math.inf
    assert rows[4][6] == -math.inf and rows[4][7] == -math.inf
    assert [rows[3][9:], rows[4][9:]] == [("infinity",) * 2, ("-infinity",) * 2]
    shifted = datetime.date.fromisoformat(rows[5][9])
    assert abs(shifted - datetime.date(2024, 2, 29)) <= datetime.timedelta(days=36500)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        pdb.admin.execute("CALL diffix.perturb_column('edges', 'f8', 'uniform', '{\"a\": 1e300}')")


def test_an_upgrade_rebuilds_the_views_in_place(pdb: Any) -> None:
    """An install rebuilds every perturbed view with the installed expressions, keeping views
    built on it."""
    pdb.admin.execute(
        """
        CREATE TABLE kept (id int PRIMARY KEY, n float8);
        INSERT INTO kept SELECT i, i FROM generate_series(1, 50) i;
        CALL diffix.mark_perturbed('kept', 'id');
        CALL diffix.perturb_column('kept', 'n', 'uniform', '{"a": 10}');
        """
    )
    rounded = pdb.execute("SELECT n FROM diffix_perturbed.kept")
    pdb.admin.execute(
        """
        CREATE OR REPLACE VIEW diffix_perturbed.kept AS SELECT t.n + 0.123456789 AS n
          FROM public.kept t;
        CREATE VIEW public.on_top AS SELECT n FROM diffix_perturbed.kept;
        """
    )
    install.install(pdb.dsn(), out=io.StringIO())
    assert pdb.execute("SELECT n FROM diffix_perturbed.kept") == rounded
    assert pdb.execute("SELECT n FROM public.on_top") == rounded


def _round_relative(value: float, relative: float) -> float:
    """The view's per-row rounding of multiplicative floats, as PostgreSQL computes it."""
    if not (abs(value) >= 1e-290 and abs(value) <= 1e300):
        return value
    exponent = math.floor(math.log10(abs(value) * relative))
    if exponent >= 0:
        return round(value / 10.0**exponent) * 10.0**exponent
    return round(value * 10.0**-exponent) / 10.0**-exponent


def test_multiplicative_floats_are_rounded_relative_to_the_output(pdb: Any) -> None:
    pdb.admin.execute(
        """
        CREATE TABLE spread (id int PRIMARY KEY, w float8);
        INSERT INTO spread SELECT i, (i * 1.37) ^ 3 / 1000 FROM generate_series(1, 300) i;
        CALL diffix.mark_perturbed('spread', 'id');
        CALL diffix.perturb_column('spread', 'w', 'multiplicative', '{"fraction": 0.2}');
        """
    )
    secret, slot = _secret(pdb), _params(pdb, "spread", "w")["slots"][0]
    relative = methods.rounding(WHOLE, Rule("multiplicative", {"fraction": 0.2})).relative
    assert relative == 0.2 / math.sqrt(3) / 10
    originals = pdb.execute("SELECT id, w FROM spread")
    shown = [w for (w,) in pdb.execute("SELECT w FROM diffix_perturbed.spread")]
    for (key, x), y in zip(originals, shown, strict=True):
        sym = 2.0 * _uniform(secret, "public.spread", key, slot) - 1.0
        assert y == _round_relative(x + x * 0.2 * sym, relative)
        # moved by at most half the resolution, itself at most |v| * relative
        assert abs(y - (x + x * 0.2 * sym)) <= abs(y) * relative * 0.5 * 1.25


# --- what a new administrator and a perturbed role are told -------------------------------


def test_marking_a_table_prints_no_internal_notice(pdb: Any) -> None:
    pdb.admin.execute(
        "CREATE TABLE quiet AS SELECT i AS id, i * 2 AS v FROM generate_series(1, 50) i"
    )
    notices: list[str] = []

    def handler(diagnostic: psycopg.errors.Diagnostic) -> None:
        notices.append(diagnostic.message_primary or "")

    pdb.admin.add_notice_handler(handler)
    try:
        pdb.admin.execute("CALL diffix.mark_perturbed('quiet', 'id')")
        pdb.admin.execute("CALL diffix.mark_perturbed('quiet', 'id')")  # marked again
        pdb.admin.execute("DROP VIEW diffix_perturbed.quiet")
        pdb.admin.execute("CALL diffix.mark_perturbed('quiet', 'v')")  # its view gone meanwhile
        pdb.admin.execute("CALL diffix.unmark_perturbed('quiet')")
    finally:
        pdb.admin.remove_notice_handler(handler)
    assert [n for n in notices if "skipping" in n or "does not exist" in n] == [], notices


def test_query_json_refusal_names_the_view(pdb: Any) -> None:
    reader = pdb.as_role(pdb.create_role("perturbed"))
    error = _refused(reader, "SELECT diffix.query_json('SELECT count(*) FROM patients')")
    assert error.sqlstate == "42501"
    assert "diffix_perturbed.patients" in (error.diag.message_hint or "")
    other = _refused(reader, "SELECT diffix.query_json('SELECT 1')")
    assert "diffix_perturbed" in (other.diag.message_hint or "")


def test_through_the_proxy_a_denied_table_points_to_its_view(pdb: Any) -> None:
    perturbed = pdb.create_role("perturbed")
    analyst = pdb.create_role("anonymized_trusted")
    with running_in_thread(pdb.dsn(), startup_timeout=2.0, max_message=1 << 20) as front:

        def denied(role: str, statement: str, **options: Any) -> psycopg.Error:
            dsn = make_conninfo(pdb.dsn(role), host="127.0.0.1", port=front.port)
            with psycopg.connect(dsn, autocommit=True) as conn:
                return _refused_with(conn, statement, **options)

        for prepare in (False, True):
            error = denied(perturbed, "SELECT count(*) FROM patients", prepare=prepare)
            assert error.sqlstate == "42501"
            assert "diffix_perturbed.patients" in (error.diag.message_hint or ""), prepare
        unrelated = denied(perturbed, "SELECT * FROM diffix.microdata_key")
        assert unrelated.diag.message_hint is None
        assert denied(analyst, "SELECT count(*) FROM patients_large").diag.message_hint is None
    direct = _refused(pdb.as_role(perturbed), "SELECT count(*) FROM patients")
    assert direct.diag.message_hint is None  # the server's own error, without the proxy


def _refused_with(conn: psycopg.Connection, statement: str, **options: Any) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as raised:
        conn.execute(statement, **options)
    return raised.value


def test_the_report_explains_each_figure(pdb: Any) -> None:
    rows = pdb.execute(
        "SELECT metric, perturbed, explanation FROM diffix.perturbation_report('patients')"
    )
    explained = {metric: text for metric, _after, text in rows}
    assert set(explained) >= {"rows", "mean", "sd", "min", "max", "linkage_share", "min_group_size"}
    assert all(text for _metric, _after, text in rows)
    # every country is unique in the ten patients: the smallest group is 1, which is bad
    assert "1 means some row is unique" in explained["min_group_size"]
    assert "too small" in explained["min_group_size"]
    assert "nearest-neighbour" in explained["linkage_share"]


def test_an_upgrade_replaces_the_report_without_its_explanation(pdb: Any) -> None:
    """A previous version's report returned five columns; installing over it changes its type."""
    pdb.admin.execute(
        """
        DROP FUNCTION diffix.perturbation_report(text);
        DROP FUNCTION diffix._perturbation_report(oid);
        CREATE FUNCTION diffix._perturbation_report(relid oid)
        RETURNS TABLE (metric text, column_name text, other_column text, original float8,
                       perturbed float8) LANGUAGE sql AS 'SELECT NULL, NULL, NULL, 1.0, 1.0';
        CREATE FUNCTION diffix.perturbation_report(table_name text)
        RETURNS TABLE (metric text, column_name text, other_column text, original float8,
                       perturbed float8) LANGUAGE sql AS 'SELECT NULL, NULL, NULL, 1.0, 1.0';
        """
    )
    install.install(pdb.dsn(), out=io.StringIO())
    rows = pdb.execute("SELECT explanation FROM diffix.perturbation_report('patients')")
    assert rows and all(text for (text,) in rows)
