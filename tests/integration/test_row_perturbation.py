"""Row-level perturbation behind views (docs/perturbation.md) on the seed's patients table and a
generated 10,000-row version: methods, consistency, the report, and attacks by perturbed roles."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

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


def test_view_shows_perturbed_patients(pdb: Any) -> None:
    rows = pdb.execute("SELECT * FROM diffix_perturbed.patients ORDER BY country")
    print(rows)
    assert len(rows) == 10
