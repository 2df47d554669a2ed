"""Diffix as mechanisms of the gate (core/mechanism.py): first contact with a personal table,
statements that read no protected table (checked by the Diffix validator), and Diffix answers."""

from __future__ import annotations

import dataclasses
from typing import Any

from pldiffix.core import catalog, reads, sqltext
from pldiffix.core.levels import AccessLevel
from pldiffix.core.mechanism import Release, Request
from pldiffix.core.relations import RelationKind
from pldiffix.diffix import first_contact

LABEL = "personal"


class Diffix:
    """Answers statements over personal tables at the trusted and untrusted levels."""

    def audit_name(self, request: Request) -> str:
        return "diffix"

    def answers(self, request: Request) -> bool:
        return not request.dp

    def answer(self, request: Request) -> Release:
        from pldiffix.diffix import engine

        if not _validated_reads_personal(request, request.level):
            return Release("public", sqltext.render(request.tree), own=True)
        level = request.level
        engine_level = level if level is not AccessLevel.DIRECT else AccessLevel.ANONYMIZED_TRUSTED
        text, rows = engine.run(request.plpy, request.sql, engine_level, request.search_path)
        return Release("diffix", text, rows=rows)


class Public:
    """At the DP level, statements that read no personal table: checked at the untrusted
    level's rules, then run as the caller."""

    def audit_name(self, request: Request) -> str:
        return "diffix"

    def answers(self, request: Request) -> bool:
        return request.dp and not request.explicit_dp and not request.reads(LABEL)

    def answer(self, request: Request) -> Release:
        if _validated_reads_personal(request, AccessLevel.ANONYMIZED_UNTRUSTED):
            raise PermissionError("internal error: a personal table escaped the DP route")
        return Release("public", sqltext.render(request.tree), own=True)


class FirstContact:
    """`SELECT columns FROM personal_table` (first_contact.py): the newest synthetic twin's
    rows when one is published; at the DP level a refusal; else a notice and the Diffix answer
    of its rewritten form."""

    def audit_name(self, request: Request) -> str:
        return "dp" if request.dp else "diffix"

    def answers(self, request: Request) -> bool:
        return bool(request.reads(LABEL)) and _row_read(request) is not None

    def answer(self, request: Request) -> Release:
        read = _row_read(request)
        assert read is not None
        twin = _published_twin(request.plpy, request.catalog, read)
        if twin is not None:  # synthetic rows, public: they run as the caller at every level
            request.plpy.notice(first_contact.twin_notice(read, *twin))
            return Release("public", sqltext.render(first_contact.from_twin(read, *twin)), own=True)
        if request.dp:
            raise first_contact.RowReadRefused(read)
        request.plpy.notice(first_contact.notice(read))
        tree = first_contact.rewritten(read)
        rewritten = dataclasses.replace(request, tree=tree, sql=sqltext.render(tree))
        return DIFFIX.answer(rewritten)


def _row_read(request: Request) -> first_contact.RowRead | None:
    return first_contact.row_read(
        request.tree, lambda schema, name: reads.find(request.catalog, schema, name)
    )


def _validated_reads_personal(request: Request, level: AccessLevel) -> bool:
    from pldiffix.diffix.validation import validate

    values = catalog.effective_settings(request.plpy)
    validated = validate(
        request.sql,
        request.catalog,
        level,
        treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"]),
    )
    return any(r.kind is RelationKind.PERSONAL for r in validated.relations)


def _published_twin(
    plpy: Any, live: catalog.LiveCatalog, read: first_contact.RowRead
) -> tuple[str, str] | None:
    """(schema, name) of the newest synthetic twin of the table a row read names, if any."""
    details = live.details.get((read.relation.schema, read.relation.name))
    if details is None:
        return None
    rows = catalog.query(
        plpy,
        "SELECT s.name FROM diffix.synthetic_tables s"
        " WHERE s.source_relid OPERATOR(pg_catalog.=) $1"
        " AND pg_catalog.to_regclass(pg_catalog.quote_ident('diffix_synthetic')"
        " OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(s.name))"
        " IS NOT NULL ORDER BY s.created_at DESC LIMIT 1",
        ("oid",),
        (details.oid,),
    )
    return ("diffix_synthetic", rows[0]["name"]) if rows else None


DIFFIX = Diffix()
PUBLIC = Public()
FIRST_CONTACT = FirstContact()
