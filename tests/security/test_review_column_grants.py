"""Public tables joined into anonymizing queries are read by the engine: an analyst holding
SELECT on some of their columns only must not read the others through a join, whether the
columns are written qualified or not, in the select list, GROUP BY, WHERE or the join itself."""

from __future__ import annotations

import psycopg
import pytest

DATA = """
CREATE TABLE customers (id integer PRIMARY KEY, kind integer);
INSERT INTO customers SELECT i, 1 + i % 3 FROM generate_series(1, 300) i;
CREATE TABLE transactions (cid integer, kind integer, amount numeric);
INSERT INTO transactions SELECT 1 + i % 300, 1 + i % 3, i % 50 FROM generate_series(1, 900) i;
CREATE TABLE kinds (kind integer, label text, hidden text, hk integer);
INSERT INTO kinds VALUES (1, 'food', 'h1', 3), (2, 'rent', 'h2', 1), (3, 'fun', 'h3', 2);
CALL diffix.mark_personal('customers', 'id');
CALL diffix.mark_personal('transactions', 'cid');
CALL diffix.mark_public('kinds');
CALL diffix.set_dp_domain('transactions', 'kind', ARRAY[1, 2, 3]);
"""

HIDDEN = [
    "SELECT hidden, count(*) FROM {t} JOIN kinds k ON x.kind = k.kind GROUP BY hidden",
    "SELECT k.hidden, count(*) FROM {t} JOIN kinds k ON x.kind = k.kind GROUP BY k.hidden",
    "SELECT label, count(*) FROM {t} JOIN kinds k ON x.kind = k.kind "
    "WHERE hidden = 'h1' GROUP BY label",
    "SELECT label, count(*) FROM {t} JOIN kinds k ON x.kind = k.hk GROUP BY label",
    "SELECT label, count(*) FROM {t} JOIN kinds k ON x.kind = hk GROUP BY label",
    "SELECT label, count(*) FROM {t} JOIN kinds k ON hk = x.kind GROUP BY label",
    "SELECT label, count(*) FROM {t} JOIN kinds k ON x.kind = k.kind AND x.kind = hk "
    "GROUP BY label",
    "SELECT label, count(*) FROM {t} JOIN kinds k USING (kind) WHERE hidden = 'h2' GROUP BY label",
]


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(DATA)
    return module_db


def _analyst(db, level: str) -> str:
    role = db.create_role(level)
    db.admin.execute(f'GRANT SELECT (kind, label) ON kinds TO "{role}"')
    if level == "anonymized_dp":
        db.admin.execute("CALL diffix.set_privacy_budget(%s, 100, 1e-3)", (role,))
    return role


@pytest.mark.parametrize("query", HIDDEN)
@pytest.mark.parametrize("level", ["anonymized_untrusted", "anonymized_trusted"])
def test_diffix_joins_read_granted_columns_only(shop, level, query):
    role = _analyst(shop, level)
    sql = query.format(t="customers x")
    with pytest.raises(psycopg.Error, match="permission denied"):
        shop.as_role(role).execute("SELECT diffix.query_json(%s)", (sql,))


@pytest.mark.parametrize("query", HIDDEN)
def test_dp_joins_read_granted_columns_only(shop, query):
    role = _analyst(shop, "anonymized_dp")
    sql = query.format(t="transactions x")
    with pytest.raises(psycopg.Error, match="permission denied"):
        shop.as_role(role).execute("SELECT diffix.dp_query_json(%s, 1, 1e-6)", (sql,))
    spent = shop.execute("SELECT count(*) FROM diffix.budget_ledger WHERE role_name = %s", (role,))
    assert spent == [(0,)]


@pytest.mark.parametrize("level", ["anonymized_untrusted", "anonymized_dp"])
def test_granted_columns_join(shop, level):
    """The guard: the same joins over the granted columns are answered."""
    role = _analyst(shop, level)
    conn = shop.as_role(role)
    if level == "anonymized_dp":
        sql = "SELECT x.kind, count(*) FROM transactions x JOIN kinds k ON x.kind = k.kind "
        sql += "WHERE label = 'food' GROUP BY x.kind"
        answer = conn.execute("SELECT diffix.dp_query_json(%s, 1, 0)", (sql,)).fetchone()[0]
        assert sorted(row[0] for row in answer["rows"]) == [1, 2, 3]  # the declared domain
        return
    else:
        sql = "SELECT label, count(*) FROM customers x JOIN kinds k ON x.kind = k.kind "
        sql += "GROUP BY label"
        answer = conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]
    assert sorted(row[0] for row in answer["rows"]) == ["food", "fun", "rent"]
