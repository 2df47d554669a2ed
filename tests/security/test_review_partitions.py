"""Partitioned personal tables (sql/core/44_partition_trees.sql): paths to a partition's rows
that the event triggers do not see must still be reported by check_security, and the gate must
not answer a partition named directly."""

from __future__ import annotations

import re

import psycopg
import pytest

DATA = """
CREATE TABLE tx (aid integer, kind text, amount float8) PARTITION BY RANGE (aid);
CREATE TABLE tx_p0 PARTITION OF tx FOR VALUES FROM (0) TO (100);
CREATE TABLE tx_p1 PARTITION OF tx FOR VALUES FROM (100) TO (MAXVALUE);
INSERT INTO tx SELECT i, (ARRAY['a', 'b'])[1 + i % 2], i FROM generate_series(1, 199) i;
CALL diffix.mark_personal('tx', 'aid');
"""


@pytest.fixture
def tree(db):
    db.admin.execute(DATA)
    return db


def _critical(db) -> list[tuple]:
    return db.execute(
        "SELECT object, finding FROM diffix.check_security() WHERE severity = 'critical' "
        "AND object LIKE '%tx%' ORDER BY 1, 2"
    )


def test_reassign_owned_to_an_analyst_is_reported(tree):
    """REASSIGN OWNED fires no event trigger: the ownership it hands over is a finding."""
    analyst = tree.create_role("anonymized_untrusted")
    owner = tree.create_role()
    tree.admin.execute(f'ALTER TABLE tx_p1 OWNER TO "{owner}"')
    tree.admin.execute(f'REASSIGN OWNED BY "{owner}" TO "{analyst}"')
    findings = _critical(tree)
    assert ("public.tx_p1", f"{analyst} can read it directly (ownership)") in findings


def test_owner_changes_and_grants_on_a_partition_are_refused(tree):
    analyst = tree.create_role("anonymized_dp")
    for command in (
        f'ALTER TABLE tx_p0 OWNER TO "{analyst}"',
        f'GRANT SELECT ON tx_p0 TO "{analyst}"',
        f'GRANT SELECT (amount) ON tx_p0 TO "{analyst}"',
        "GRANT SELECT ON tx_p0 TO PUBLIC",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            tree.admin.execute(command)
    assert _critical(tree) == []


@pytest.mark.parametrize("level", ["anonymized_untrusted", "anonymized_dp"])
@pytest.mark.parametrize(
    "query",
    [
        "SELECT kind, count(*) FROM tx_p0 GROUP BY kind",
        "SELECT kind, count(*) FROM public.tx_p1 GROUP BY kind",
        "WITH tx AS (SELECT 1) SELECT kind, count(*) FROM tx_p0 GROUP BY kind",
    ],
)
def test_a_partition_named_directly_is_not_answered_for_free(tree, level, query):
    analyst = tree.create_role(level)
    tree.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 1e-3)", (analyst,))
    conn = tree.as_role(analyst)
    call = (
        "SELECT diffix.dp_query_json(%s, 1, 1e-6)"
        if level == "anonymized_dp"
        else "SELECT diffix.query_json(%s)"
    )
    with pytest.raises(psycopg.Error) as refused:
        conn.execute(call, (query,))
    # refused from the catalog, before any row is read (never "failed while reading")
    assert re.search(
        r"no anonymization label|reads no personal table|permission denied",
        refused.value.diag.message_primary,
    )
    assert tree.execute(
        "SELECT count(*) FROM diffix.budget_ledger WHERE role_name = %s", (analyst,)
    ) == [(0,)]


@pytest.mark.parametrize("base", ["tx", "tx_p0"])
def test_a_view_over_personal_rows_opened_to_analysts_is_refused_or_reported(tree, base):
    """A view reads with its owner's privileges: granting it is granting the rows. A GRANT to an
    analyst is refused (tests/security/test_views_over_personal.py); one that reaches the analyst
    through role membership, which no event trigger sees, is reported by check_security."""
    analyst = tree.create_role("anonymized_untrusted")
    group = tree.create_role(login=False)
    tree.admin.execute(
        f"CREATE VIEW inner_view AS SELECT aid, amount FROM {base};"
        "CREATE VIEW open_view AS SELECT amount FROM inner_view;"
        "CREATE MATERIALIZED VIEW copied AS SELECT * FROM tx"
    )
    for grant in (
        "GRANT SELECT ON open_view TO PUBLIC",
        f'GRANT SELECT (amount) ON copied TO "{analyst}"',
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
            tree.admin.execute(grant)
    tree.admin.execute(
        f'GRANT SELECT ON open_view TO "{group}"; GRANT SELECT (amount) ON copied TO "{group}";'
        f'GRANT "{group}" TO "{analyst}"'
    )
    with tree.as_role(analyst) as conn:
        assert conn.execute("SELECT count(*) FROM open_view").fetchone()[0] > 0  # the path
    findings = tree.execute(
        "SELECT object, finding FROM diffix.check_security() WHERE severity = 'critical' "
        "AND finding LIKE '%through this view'"
    )
    objects = {obj for obj, _ in findings}
    assert objects == {"public.open_view", "public.copied"}, findings
    assert all(analyst in finding for obj, finding in findings if obj == "public.copied")
    tree.admin.execute(f'REVOKE "{group}" FROM "{analyst}"')
    assert not tree.execute(
        "SELECT 1 FROM diffix.check_security() WHERE finding LIKE '%through this view'"
    )
