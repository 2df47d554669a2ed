"""The gate's registry (answers.py, core/mechanism.py): which mechanism answers a statement,
from the level, the entry point and the labels of the tables it reads."""

from __future__ import annotations

import pytest
import sqlglot

from pldiffix.answers import REGISTRY
from pldiffix.cellkey import gate as cellkey_gate
from pldiffix.core import mechanism
from pldiffix.core.levels import AccessLevel
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.diffix import gate as diffix_gate
from pldiffix.dp import gate as dp_gate

PEOPLE = RelationInfo(
    "public",
    "people",
    RelationKind.PERSONAL,
    (ColumnInfo("id", "int4", is_aid=True), ColumnInfo("city", "text")),
)
CATALOG = StaticCatalog({("public", "people"): PEOPLE})
LABELS = {"people": (1, "personal"), "sales": (2, "cellkey"), "cities": (3, "public")}


class _Lookups:
    catalog = CATALOG

    def labels(self, tree):
        names = [table.name for table in tree.find_all(sqlglot.exp.Table)]
        return dict(LABELS[name] for name in names if name in LABELS)


def _pick(sql: str, level: AccessLevel, *, explicit_dp: bool = False) -> mechanism.Mechanism:
    tree = sqlglot.parse_one(sql, read="postgres")
    request = mechanism.Request(
        None, sql, tree, level, ["public"], _Lookups(), explicit_dp=explicit_dp
    )
    return REGISTRY.pick(request)


TRUSTED = AccessLevel.ANONYMIZED_TRUSTED
DP = AccessLevel.ANONYMIZED_DP
GROUPED = "SELECT city, count(*) FROM people GROUP BY city"


@pytest.mark.parametrize(
    ("sql", "level", "explicit_dp", "expected"),
    [
        (GROUPED, AccessLevel.DIRECT, False, mechanism.DIRECT),
        ("SELECT count(*) FROM sales", AccessLevel.DIRECT, False, mechanism.DIRECT),
        (GROUPED, AccessLevel.DIRECT, True, dp_gate.MECHANISM),
        ("SELECT count(*) FROM sales", TRUSTED, False, cellkey_gate.MECHANISM),
        ("SELECT count(*) FROM sales", DP, False, cellkey_gate.MECHANISM),  # which refuses
        ("SELECT * FROM people", TRUSTED, False, diffix_gate.FIRST_CONTACT),
        ("SELECT * FROM people", DP, False, diffix_gate.FIRST_CONTACT),
        ("SELECT city FROM people", TRUSTED, False, diffix_gate.DIFFIX),
        (GROUPED, TRUSTED, False, diffix_gate.DIFFIX),
        (GROUPED, AccessLevel.ANONYMIZED_UNTRUSTED, False, diffix_gate.DIFFIX),
        (GROUPED, DP, False, dp_gate.MECHANISM),
        (GROUPED, TRUSTED, True, dp_gate.MECHANISM),
        ("SELECT * FROM cities", DP, False, diffix_gate.PUBLIC),
        ("SELECT * FROM cities", DP, True, dp_gate.MECHANISM),  # which says: no personal table
        ("SELECT * FROM cities", TRUSTED, False, diffix_gate.DIFFIX),  # validated, then public
    ],
)
def test_the_first_mechanism_that_answers_is_picked(sql, level, explicit_dp, expected):
    assert _pick(sql, level, explicit_dp=explicit_dp) is expected


@pytest.mark.parametrize(
    ("chosen", "level", "explicit_dp", "name"),
    [
        (cellkey_gate.MECHANISM, DP, False, "cellkey"),
        (diffix_gate.FIRST_CONTACT, DP, False, "dp"),
        (diffix_gate.FIRST_CONTACT, TRUSTED, False, "diffix"),
        (diffix_gate.PUBLIC, DP, False, "diffix"),
        (dp_gate.MECHANISM, TRUSTED, True, "dp"),
    ],
)
def test_refusals_are_logged_under_the_mechanism_that_refused(chosen, level, explicit_dp, name):
    tree = sqlglot.parse_one(GROUPED, read="postgres")
    request = mechanism.Request(
        None, GROUPED, tree, level, ["public"], _Lookups(), explicit_dp=explicit_dp
    )
    assert chosen.audit_name(request) == name


def test_cell_key_tables_are_refused_to_dp_before_anything_is_read():
    tree = sqlglot.parse_one("SELECT count(*) FROM sales", read="postgres")
    for explicit_dp, message in ((False, "anonymized_dp level"), (True, "differentially private")):
        request = mechanism.Request(
            None, "", tree, DP, ["public"], _Lookups(), explicit_dp=explicit_dp
        )
        with pytest.raises(PermissionError, match=message):
            cellkey_gate.MECHANISM.answer(request)


def test_a_registry_that_no_mechanism_answers_refuses():
    tree = sqlglot.parse_one("SELECT 1", read="postgres")
    request = mechanism.Request(None, "SELECT 1", tree, TRUSTED, [], _Lookups())
    with pytest.raises(PermissionError):
        mechanism.Registry((mechanism.DIRECT,)).pick(request)
