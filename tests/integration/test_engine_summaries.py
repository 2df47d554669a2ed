"""Buckets with many AIDs are summarized as they arrive (anonymization.bulk); their answers must
be those of the per-AID anonymization core, replayed here on the same rows in the test process.

Integer AIDs take the rows-per-bucket form (Python groups the rows per AID), text AIDs the
per-AID form (PostgreSQL groups them); both must give the core's answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from bucket_replay import (
    avg_col,
    count_col,
    count_distinct,
    count_star,
    run_query,
    sum_col,
)

from pldiffix.diffix.anonymization import AidKind, AnonymizationParams, SummandType

SALT = "summaries"
# 61 AIDs in each of 3 groups; AID 7 contributes far more than the others (flattening), some
# AIDs are NULL (unaccounted for), some amounts NULL, negative and zero (both sum legs).
ROWS = [
    {
        "uid": None if i % 37 == 0 else (7 if i % 10 == 0 else i % 61),
        "grp": "abc"[i % 3],
        "amount": None if i % 19 == 0 else (i * 7) % 23 - 5,
        "price": round((i * 13 % 97) * 0.75, 2),
    }
    for i in range(1200)
]
TEXT_ROWS = [{**r, "uid": None if r["uid"] is None else f"u{r['uid']}"} for r in ROWS]
FORMS = {"integer": (ROWS, [("uid", AidKind.INT4)]), "text": (TEXT_ROWS, [("uid", AidKind.TEXT)])}


@pytest.fixture(params=sorted(FORMS))
def form(request):
    return FORMS[request.param], request.param


@pytest.fixture
def shop(db, form):
    (rows, _), aid_type = form
    db.admin.execute(f"CREATE TABLE shop (uid {aid_type}, grp text, amount integer, price float8)")
    with db.admin.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO shop VALUES (%s, %s, %s, %s)",
            [(r["uid"], r["grp"], r["amount"], r["price"]) for r in rows],
        )
    db.admin.execute("CALL diffix.mark_personal('shop', 'uid')")
    db.admin.execute("CALL diffix.configure('salt', %s)", (SALT,))
    role = db.create_role("anonymized_trusted")
    return db.as_role(role)


def _rows(conn, sql: str) -> list[list]:
    return conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]["rows"]


def _same(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for value, reference in zip(got, expected, strict=True):
        if isinstance(reference, float):
            assert value == pytest.approx(reference, rel=1e-12)
        else:
            assert str(value) == str(reference)


def test_grouped_summaries_equal_the_per_aid_core(shop, form):
    (rows, aids), _ = form
    got = _rows(
        shop,
        "SELECT grp, count(*), count(amount), sum(amount), avg(price), sum(price) "
        "FROM shop GROUP BY grp ORDER BY grp",
    )
    expected = run_query(
        rows,
        aids,
        [
            count_star(aids),
            count_col(aids, "amount"),
            sum_col(aids, "amount", SummandType.INT4),
            avg_col(aids, "price", SummandType.FLOAT8),
            sum_col(aids, "price", SummandType.FLOAT8),
        ],
        params=AnonymizationParams(salt=SALT),
        labels=[lambda r: r["grp"]],
        materials=["shop.grp"],
    )
    assert [row[0] for row in got] == ["a", "b", "c"]
    for row, (labels, values) in zip(got, sorted(expected), strict=True):
        assert row[0] == labels[0]
        _same(row[1:], values)


def test_global_summaries_equal_the_per_aid_core(shop, form):
    (rows, aids), _ = form
    [got] = _rows(
        shop, "SELECT count(*), count(DISTINCT uid), sum(amount), diffix.count_noise(*) FROM shop"
    )
    [(_, expected)] = run_query(
        rows,
        aids,
        [
            count_star(aids),
            count_distinct(aids, "uid"),
            sum_col(aids, "amount", SummandType.INT4),
            count_star(aids, noise=True),
        ],
        params=AnonymizationParams(salt=SALT),
    )
    _same(got, expected)
