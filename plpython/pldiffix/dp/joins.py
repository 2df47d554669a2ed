"""Joins on the privacy unit (docs/dp.md, "Joins on the privacy unit"): which joined personal
tables share a unit, and the DP metadata of the joined tables.

dp/query.py accepts inner joins where the personal tables' AID columns are equal by the join's
own conditions; whether those AIDs identify the same kind of unit (a customer's id in both
tables, not a customer's in one and a doctor's in the other) is what administrators declare with
`CALL diffix.set_dp_unit_path(table, aid, target_table, target_aid)`. Each personal table's unit
is the table its paths lead to (itself without a path); joined personal tables must share it.

Why a join cannot break the bounds: every joined row has one unit (its personal rows' AIDs are
equal), and adding or removing a unit adds or removes only the joined rows of that unit (public
tables are the same in neighbouring databases). A join may multiply a unit's rows without limit
(a unit's n transactions times its m addresses, or a public table with repeated keys), but the
contribution bounding runs on the joined rows, per unit, after the join: whatever the join made
of a unit, it keeps at most L0 groups and Linf rows' worth in each (or k rows in all), so the
sensitivities are those of one table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pldiffix.core import catalog
from pldiffix.core.relations import RelationInfo
from pldiffix.core.statements import QueryError
from pldiffix.dp import planner
from pldiffix.dp.query import DpQuery

MAX_PATH = 100  # unit paths followed at most (set_dp_unit_path refuses cycles)


def unit_of(paths: dict[int, int], relid: int) -> int:
    """The table a personal table's unit paths lead to (itself without a path)."""
    seen = {relid}
    while relid in paths and len(seen) <= MAX_PATH:
        relid = paths[relid]
        if relid in seen:
            break
        seen.add(relid)
    return relid


def check_units(query: DpQuery, oids: dict[str, int], paths: dict[int, int]) -> None:
    """Every joined personal table reaches the primary table's unit by declared paths.
    `oids`: per table ("" the primary, else its alias) its oid; `paths`: relid -> target."""
    unit = unit_of(paths, oids[""])
    for alias in query.personal_aliases:
        if unit_of(paths, oids[alias]) != unit:
            relation = query.joined[alias]
            primary = f"{query.relation.schema}.{query.relation.name}"
            raise QueryError(
                f"{relation.schema}.{relation.name} and {primary} have no declared path to the "
                "same privacy unit",
                hint="an administrator declares that their AID columns identify the same "
                f"person: CALL diffix.set_dp_unit_path('{relation.schema}.{relation.name}', "
                f"'{relation.aid_columns[0]}', '{primary}', '{query.aid}')",
            )


def relation_oids(plpy: Any, query: DpQuery) -> dict[str, int]:
    """The oid of every table of the query: "" for the primary one, else its alias."""
    tables: dict[str, RelationInfo] = {"": query.relation, **query.joined}
    return {table: _oid(plpy, relation) for table, relation in tables.items()}


def _oid(plpy: Any, relation: RelationInfo) -> int:
    return catalog.query(
        plpy,
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE n.nspname OPERATOR(pg_catalog.=) "
        "$1 AND c.relname OPERATOR(pg_catalog.=) $2",
        ("pg_catalog.name", "pg_catalog.name"),
        (relation.schema, relation.name),
    )[0]["oid"]


def unit_paths(plpy: Any) -> dict[int, int]:
    """The declared paths whose two columns are still their tables' AID columns: a path says
    what one column identifies, and re-marking a table with another AID (a merchant's instead
    of a customer's) must not carry the declaration over to the new column."""
    rows = catalog.query(
        plpy,
        "SELECT p.relid, p.target_relid FROM diffix.dp_unit_paths p "
        "WHERE EXISTS (SELECT FROM diffix.column_labels s WHERE s.relid OPERATOR(pg_catalog.=) "
        "p.relid AND s.attnum OPERATOR(pg_catalog.=) p.attnum AND s.label "
        "OPERATOR(pg_catalog.=) 'aid') "
        "AND EXISTS (SELECT FROM diffix.column_labels t WHERE t.relid OPERATOR(pg_catalog.=) "
        "p.target_relid AND t.attnum OPERATOR(pg_catalog.=) p.target_attnum AND t.label "
        "OPERATOR(pg_catalog.=) 'aid')",
    )
    return {int(row["relid"]): int(row["target_relid"]) for row in rows}


def column_metadata(plpy: Any, relid: int) -> planner.TableMetadata:
    """The bounds and domains declared on a joined table's columns."""
    rows = catalog.query(
        plpy,
        "SELECT a.attname, c.lower_bound, c.upper_bound, c.domain FROM diffix.dp_columns c "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.relid "
        "AND a.attnum OPERATOR(pg_catalog.=) c.attnum "
        "WHERE c.relid OPERATOR(pg_catalog.=) $1 AND NOT a.attisdropped",
        ("pg_catalog.oid",),
        (relid,),
    )
    return planner.TableMetadata(
        bounds={
            row["attname"]: planner.Bounds(float(row["lower_bound"]), float(row["upper_bound"]))
            for row in rows
            if row["lower_bound"] is not None
        },
        domains={row["attname"]: list(row["domain"]) for row in rows if row["domain"]},
    )


def joined_metadata(
    plpy: Any, query: DpQuery, oids: dict[str, int], metadata: planner.TableMetadata
) -> planner.TableMetadata:
    """The primary table's metadata with its contribution bounds applied to the joined rows:
    never the one-row-per-unit shortcut (a join can repeat a unit's row), and the bounds and
    domains of the other tables' columns. Refuses personal tables of another unit."""
    check_units(query, oids, unit_paths(plpy))
    joined = {alias: column_metadata(plpy, oids[alias]) for alias in query.joined}
    return dataclasses.replace(metadata, unique_aid=False, joined=joined)
