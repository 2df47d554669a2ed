"""The FROM rule for partition trees: a partitioned personal table is read through its root;
its partitions, other trees, and partitioned tables that are not personal are refused."""

from __future__ import annotations

import pytest

from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.diffix.validation import ValidationError, validate

COLUMNS = (ColumnInfo("aid", "integer", is_aid=True), ColumnInfo("kind", "text"))
PLAIN = (ColumnInfo("aid", "integer"), ColumnInfo("kind", "text"))


def _catalog() -> StaticCatalog:
    relations = {
        ("public", "tx"): RelationInfo(
            "public", "tx", RelationKind.PERSONAL, COLUMNS, inheritance=True, partitioned=True
        ),
        ("public", "tx_p0"): RelationInfo(
            "public", "tx_p0", RelationKind.UNLABELED, PLAIN, inheritance=True
        ),
        ("public", "kinds"): RelationInfo(
            "public", "kinds", RelationKind.PUBLIC, PLAIN, inheritance=True, partitioned=True
        ),
        ("public", "legacy"): RelationInfo(
            "public", "legacy", RelationKind.PERSONAL, COLUMNS, inheritance=True
        ),
    }
    return StaticCatalog(relations, {}, ("public",))


def test_a_partitioned_personal_table_is_anonymized_through_its_root() -> None:
    validated = validate(
        "SELECT kind, count(*) FROM tx GROUP BY kind", _catalog(), "anonymized_trusted"
    )
    assert validated.ast is not None


@pytest.mark.parametrize(
    "sql",
    [
        # classic inheritance stays refused
        "SELECT kind, count(*) FROM legacy GROUP BY kind",
        # a partitioned public table joined to a personal one
        "SELECT t.kind, count(*) FROM tx t JOIN kinds k ON k.kind = t.kind GROUP BY 1",
    ],
)
def test_other_trees_are_refused(sql: str) -> None:
    with pytest.raises(ValidationError, match="inheritance or partition tree"):
        validate(sql, _catalog(), "anonymized_trusted")


def test_a_partition_read_with_a_personal_table_is_refused() -> None:
    with pytest.raises(ValidationError, match="tx_p0 has no anonymization label"):
        validate(
            "SELECT t.kind, count(*) FROM tx t JOIN tx_p0 p ON p.kind = t.kind GROUP BY 1",
            _catalog(),
            "anonymized_trusted",
        )
