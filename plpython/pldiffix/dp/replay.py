"""Free replays: an identical DP query within a budget period gets the stored answer, unpaid.

Returning an answer that was already paid for is post-processing of a released value: it costs
no privacy. Drawing fresh noise for it would (averaging reruns cancels the noise), so a query
the role already asked, over the same data, in the same period, gets the first answer again
(never fresh noise) and nothing is charged. Anything else pays.

"Identical" is the sha256 of: sqlglot's normalized rendering of the statement (whitespace,
comments and the case of keywords and unquoted identifiers do not count; aliases, constants and
the order of clauses do), the table it reads (schema, name, oid) and the schemas names were
resolved in, epsilon, delta, the noise (laplace or gaussian), the table's DP metadata (bounds,
contributions, domains), and its snapshot: per relation of the table (itself and every
inheritance child or partition) its storage file (relfilenode: TRUNCATE, VACUUM FULL, CLUSTER
and table rewrites change it) and its cumulative counts of inserted, updated and deleted rows
from PostgreSQL's statistics (pg_stat_get_tuples_*). Those counts are what every role may read
in pg_stat_user_tables, so whether a query replays tells nothing beyond them. A session reports
its counts when its transaction ends (at most about once a second, or when it goes idle), so a
rerun within that moment after a change may still get the answer from before it; with
track_counts off only the storage file counts.

Stored answers live in diffix.dp_replays (sql/dp/66_replays.sql), per role and period, written
over the ledger's loopback connection like the charge (a ROLLBACK does not undo either).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pldiffix.core import context, results, sqltext


def normalized_sql(tree: exp.Expression) -> str:
    """The statement as sqlglot renders it: unquoted identifiers in lower case, no comments."""
    return tree.sql(dialect=sqltext.POSTGRES, normalize=True, comments=False)


def replay_key(
    *,
    tree: exp.Expression,
    relation: tuple[str, str, int],
    search_path: Sequence[str],
    epsilon: float,
    delta: float,
    noise: str,
    metadata: Any,
    snapshot: Sequence[Sequence[int]],
) -> str:
    """The key under which an answer is stored and replayed (see the module's docstring)."""
    document = {
        "sql": normalized_sql(tree),
        "relation": list(relation),
        "search_path": list(search_path),
        "epsilon": repr(float(epsilon)),
        "delta": repr(float(delta)),
        "noise": noise,
        "metadata": dataclasses.asdict(metadata),
        "snapshot": [list(part) for part in snapshot],
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def relation_snapshot(plpy: Any, relid: int) -> list[list[int]]:
    """Per relation of the table (itself and its inheritance children, in oid order): oid,
    relfilenode, and the statistics' inserted, updated and deleted row counts."""
    rows = plpy.execute(
        context.prepared(
            plpy,
            "WITH RECURSIVE tree(relid) AS (SELECT $1::pg_catalog.oid UNION "
            "SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t "
            "ON i.inhparent OPERATOR(pg_catalog.=) t.relid) "
            "SELECT c.oid::pg_catalog.int8 AS relid, c.relfilenode::pg_catalog.int8 AS file, "
            "pg_catalog.pg_stat_get_tuples_inserted(c.oid) AS inserted, "
            "pg_catalog.pg_stat_get_tuples_updated(c.oid) AS updated, "
            "pg_catalog.pg_stat_get_tuples_deleted(c.oid) AS deleted "
            "FROM tree t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid "
            "ORDER BY c.oid",
            ("oid",),
        ),
        [relid],
    )
    return [
        [int(row["relid"]), int(row["file"]), row["inserted"], row["updated"], row["deleted"]]
        for row in rows
    ]


def stored(plpy: Any, key: str) -> dict[str, Any] | None:
    """The answer stored under `key` for the session's role in its current period, if any."""
    rows = plpy.execute(
        context.prepared(plpy, "SELECT diffix._dp_replay($1) AS answer", ("text",)), [key]
    )
    answer = rows[0]["answer"] if rows else None
    return None if answer is None else json.loads(answer, parse_float=Decimal)


def store(plpy: Any, key: str, answer: dict[str, Any]) -> None:
    """Stores the first answer of `key` for the session's role, committed before returning."""
    plpy.execute(
        context.prepared(plpy, "SELECT diffix._dp_replay_store($1, $2)", ("text", "text")),
        [key, results.encode_value(answer)],
    )


def replayed(answer: dict[str, Any], remaining: dict[str, Any] | None) -> dict[str, Any]:
    """A stored answer as returned again: nothing spent, what is left now."""
    report = answer["dp"] | {"epsilon": 0.0, "delta": 0.0, "replayed": True}
    report["remaining"] = remaining
    return answer | {"dp": report}
