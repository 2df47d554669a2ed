"""What a role of the perturbed level is told when it asks diffix.query_json: the views to read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pldiffix.core import catalog
from pldiffix.core.errors import INSUFFICIENT_PRIVILEGE, UserError

_VIEWS = (
    "SELECT n.nspname::pg_catalog.text AS s, c.relname::pg_catalog.text AS r,"
    " pg_catalog.format('%I.%I', m.view_schema, m.view_name) AS v"
    " FROM diffix.microdata_tables m"
    " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.relid"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " ORDER BY 3"
)


class QueryJsonRefused(UserError):
    """diffix.query_json called by a role of the perturbed level."""

    default_sqlstate = INSUFFICIENT_PRIVILEGE


def views_named(
    rows: Sequence[tuple[str, str, str]],
    named: Sequence[tuple[str | None, str]],
    search_path: Sequence[str],
) -> list[str]:
    """The perturbed views of the tables a statement names (schema or None, name), given the
    (schema, table, view) rows of the perturbation catalog. Pure."""
    views = []
    for schema, table, view in rows:
        for wanted_schema, wanted in named:
            in_scope = schema == wanted_schema if wanted_schema else schema in search_path
            if table == wanted and in_scope and view not in views:
                views.append(view)
    return views


def refusal(
    plpy: Any, named: Sequence[tuple[str | None, str]], search_path: Sequence[str]
) -> QueryJsonRefused:
    rows = [(r["s"], r["r"], r["v"]) for r in catalog.query(plpy, _VIEWS)]
    views = views_named(rows, named, search_path)
    if views:
        hint = f"read the perturbed rows with plain SQL: SELECT ... FROM {', '.join(views)}"
    else:
        hint = "read the views in diffix_perturbed with plain SQL (\\dv diffix_perturbed.*)"
    return QueryJsonRefused(
        "the perturbed access level reads the views in diffix_perturbed with plain SQL, "
        "not through diffix.query_json",
        hint=hint,
    )
