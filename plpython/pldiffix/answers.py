"""The gate: every analyst answer passes here, whatever the entry point and mechanism.

`answer` runs inside `diffix._answer` (SECURITY DEFINER, owner diffix_engine, every parsing
setting pinned). It trusts nothing its caller passes but the statement, epsilon and delta: the
level comes from the catalog (`catalog.person_level`), the schemas are the caller's reduced to
those the invoking role may use, the audit row is written here and a DP charge is made before any
data is read (dp/engine.py). It dispatches to one mechanism and returns one of:

- {"own": sql}: a statement the caller runs with its own privileges (direct level, or no
  protected table read);
- {"query": sql, ...}: the statement with its anonymizing parts replaced by their anonymized
  rows, also run by the caller with its own privileges (Diffix, DP);
- {"document": {..., "types": [...]}}: a finished answer (cell-key and Laplace tables).

Errors raised while reading personal rows at the untrusted and DP levels reach the caller as one
fixed message: which row made an expression fail would be an exact answer about a person.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from pldiffix.core import audit, catalog, results, sqltext
from pldiffix.core.errors import UserError
from pldiffix.core.levels import AccessLevel
from pldiffix.core.relations import RelationKind
from pldiffix.core.statements import parse_single_select
from pldiffix.diffix import first_contact

# Levels whose analysts are not trusted with errors raised by personal rows.
_UNTRUSTED_ERRORS = (AccessLevel.ANONYMIZED_UNTRUSTED, AccessLevel.ANONYMIZED_DP)


class ExecutionFailed(UserError):
    """A query failed while reading personal rows; its cause is not told (no error oracle)."""

    default_sqlstate = "22000"


@dataclass
class Outcome:
    """What the gate hands back, and what the audit log records of it."""

    mechanism: str
    reply: dict[str, Any]
    rows: int | None = None
    epsilon: float | None = None
    delta: float | None = None
    document: str | None = None  # a finished answer, kept as text so its numbers stay exact

    def reply_text(self) -> str:
        # encode_value keeps numerics exact (a DP report's keys may be Decimal)
        text = results.encode_value(self.reply | {"mechanism": self.mechanism})
        if self.document is None:
            return text
        return f'{text[:-1]}, "document": {self.document}}}'


@dataclass
class _Admission:
    """The audit row of one call: refused, failed or accepted, written before the reply."""

    plpy: Any
    level: AccessLevel
    sql: str | None
    mechanism: str = "diffix"
    extra: dict[str, Any] = field(default_factory=dict)

    def refused(self, error: BaseException) -> None:
        # administrators read the log: a failure keeps its cause there, not in the analyst's error
        cause = error.__cause__ if isinstance(error, ExecutionFailed) else None
        reason = audit.reason_of(error)
        if cause is not None:
            reason = f"{reason}: {audit.reason_of(cause)}"
        audit.record(
            self.plpy,
            level=self.level.value,
            mechanism=self.mechanism,
            sql=self.sql,
            accepted=False,
            reason=reason,
        )

    def accepted(self, outcome: Outcome) -> None:
        audit.record(
            self.plpy,
            level=self.level.value,
            mechanism=outcome.mechanism,
            sql=self.sql,
            accepted=True,
            rows=outcome.rows,
            epsilon=outcome.epsilon,
            delta=outcome.delta,
        )


def answer(
    plpy: Any,
    sql: str | None,
    epsilon: float | None,
    delta: float | None,
    search_path: list[str] | None,
    *,
    explicit_dp: bool,
) -> str:
    """The gate's reply as JSON text (see the module docstring)."""
    level = catalog.person_level(plpy)
    admission = _Admission(plpy, level, sql)
    try:
        outcome = _dispatch(plpy, admission, sql, epsilon, delta, search_path or [], explicit_dp)
    except Exception as error:
        admission.refused(error)
        raise
    admission.accepted(outcome)  # an answer never leaves unlogged: a failed write raises
    return outcome.reply_text()


def _dispatch(
    plpy: Any,
    admission: _Admission,
    sql: str | None,
    epsilon: float | None,
    delta: float | None,
    search_path: list[str],
    explicit_dp: bool,
) -> Outcome:
    level = admission.level
    if explicit_dp:
        admission.mechanism = "dp"
    tree = parse_single_select(sql)
    assert sql is not None
    if level is AccessLevel.PERTURBED:
        from pldiffix.perturb import readers

        raise readers.refusal(plpy, _named_tables(tree), search_path)
    if level is AccessLevel.DIRECT and not explicit_dp:
        admission.mechanism = "direct"
        return Outcome("direct", {"own": sqltext.render(tree)})
    role = catalog.invoking_role(plpy)
    schemas = catalog.usable_schemas(plpy, role, search_path)
    live = catalog.LiveCatalog(plpy, schemas)
    cellkey_relid = _cellkey_relid(plpy, tree, live)
    if cellkey_relid is not None:
        if level is AccessLevel.ANONYMIZED_DP or explicit_dp:
            raise PermissionError(
                "roles at the anonymized_dp level cannot read perturbed (cell-key) tables"
                if not explicit_dp
                else "differentially private queries cannot read perturbed (cell-key) tables"
            )
        admission.mechanism = "cellkey"
        return _guarded(plpy, level, lambda: _cellkey(plpy, tree, cellkey_relid))
    read = first_contact.row_read(tree, lambda schema, name: _relation(live, schema, name))
    if read is not None:
        twin = _published_twin(plpy, live, read)
        if twin is not None:  # synthetic rows, public: they run as the caller at every level
            plpy.notice(first_contact.twin_notice(read, *twin))
            admission.mechanism = "public"
            return Outcome("public", {"own": sqltext.render(first_contact.from_twin(read, *twin))})
        if level is AccessLevel.ANONYMIZED_DP or explicit_dp:
            admission.mechanism = "dp"
            raise first_contact.RowReadRefused(read)
        plpy.notice(first_contact.notice(read))
        tree = first_contact.rewritten(read)
        sql = sqltext.render(tree)
    if level is AccessLevel.ANONYMIZED_DP or explicit_dp:
        if explicit_dp or _reads_personal_table(tree, live):
            admission.mechanism = "dp"
            values = catalog.effective_settings(plpy)
            if not explicit_dp:
                epsilon, delta = float(values["dp_epsilon"]), float(values["dp_delta"])
            return _guarded(
                plpy,
                AccessLevel.ANONYMIZED_DP,
                lambda: _dp(plpy, sql, epsilon, delta, search_path, explicit_dp),
            )
        return _public(plpy, sql, tree, live, AccessLevel.ANONYMIZED_UNTRUSTED, admission)
    return _diffix(plpy, sql, tree, live, level, search_path, admission)


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


def _guarded(plpy: Any, level: AccessLevel, run: Callable[[], Outcome]) -> Outcome:
    """Runs a mechanism; at the untrusted and DP levels an error from the database while it
    reads data becomes ExecutionFailed (its text could depend on a person's values). Refusals
    (UserError, PermissionError) are decided before any data is read and pass unchanged."""
    if level not in _UNTRUSTED_ERRORS:
        return run()
    try:
        return run()
    except (UserError, PermissionError):
        raise
    except Exception as error:  # the database's or Python's text could name a value
        raise ExecutionFailed(
            "the query failed while reading the data",
            hint="the cause is not reported at this access level, since it could depend on "
            "a single person's values; check the query's constants and casts",
        ) from error


def _public(
    plpy: Any,
    sql: str,
    tree: exp.Expression,
    live: catalog.LiveCatalog,
    level: AccessLevel,
    admission: _Admission,
) -> Outcome:
    """A query that reads no personal table, validated at `level`, runs as the caller."""
    from pldiffix.diffix.validation import validate

    values = catalog.effective_settings(plpy)
    validated = validate(
        sql,
        live,
        level,
        treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"]),
    )
    if any(r.kind is RelationKind.PERSONAL for r in validated.relations):
        raise PermissionError("internal error: a personal table escaped the DP route")
    admission.mechanism = "public"
    return Outcome("public", {"own": sqltext.render(tree)})


def _diffix(
    plpy: Any,
    sql: str,
    tree: exp.Expression,
    live: catalog.LiveCatalog,
    level: AccessLevel,
    search_path: list[str],
    admission: _Admission,
) -> Outcome:
    from pldiffix.diffix import engine
    from pldiffix.diffix.validation import validate

    values = catalog.effective_settings(plpy)
    validated = validate(
        sql,
        live,
        level,
        treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"]),
    )
    if not any(r.kind is RelationKind.PERSONAL for r in validated.relations):
        admission.mechanism = "public"
        return Outcome("public", {"own": sqltext.render(tree)})
    engine_level = level if level is not AccessLevel.DIRECT else AccessLevel.ANONYMIZED_TRUSTED

    def run() -> Outcome:
        text, rows = engine.run(plpy, sql, engine_level, search_path)
        return Outcome("diffix", {"query": text}, rows=rows)

    return _guarded(plpy, level, run)


def _dp(
    plpy: Any,
    sql: str,
    epsilon: float | None,
    delta: float | None,
    search_path: list[str],
    explicit_dp: bool,
) -> Outcome:
    from pldiffix.dp import engine as dp_engine

    result = dp_engine.run(
        plpy, sql, epsilon, delta, search_path or ["public"], explicit=explicit_dp
    )
    report = result["dp"]
    return Outcome(
        "dp",
        {"query": result["query"], "dp": report},
        rows=len(report["rows"]),
        epsilon=report["epsilon"],
        delta=report["delta"],
    )


def _cellkey(plpy: Any, tree: exp.Expression, relid: int) -> Outcome:
    from pldiffix.cellkey import engine as cellkey_engine

    document, method = cellkey_engine.answer(plpy, tree, relid)
    mechanism = "laplace" if method == "laplace" else "cellkey"
    rows = len(json.loads(document)["rows"])
    return Outcome(mechanism, {}, rows=rows, document=document)


# --- which tables a statement reads --------------------------------------------------------------


def _named_tables(tree: exp.Expression) -> list[tuple[str | None, str]]:
    """(schema or None, name) of each table the statement names, CTE names left out."""
    from pldiffix.diffix.validation.syntax import ident_name

    ctes = {ident_name(cte.args["alias"].this) for cte in tree.find_all(exp.CTE)}
    names = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue
        name = ident_name(table.this)
        schema = ident_name(table.args["db"]) if table.args.get("db") is not None else None
        if schema is None and name in ctes:
            continue
        names.append((schema, name))
    return names


def _resolved(live: catalog.LiveCatalog, schema: str | None, name: str) -> Any:
    for candidate in [schema] if schema else live.search_path:
        relation = live.get_relation(candidate, name)
        if relation is not None:
            return candidate, relation
    return None


def _relation(live: catalog.LiveCatalog, schema: str | None, name: str) -> Any:
    found = _resolved(live, schema, name)
    return None if found is None else found[1]


def _reads_personal_table(tree: exp.Expression, live: catalog.LiveCatalog) -> bool:
    for schema, name in _named_tables(tree):
        found = _resolved(live, schema, name)
        if found is not None and found[1].kind is RelationKind.PERSONAL:
            return True
    return False


def _cellkey_relid(plpy: Any, tree: exp.Expression, live: catalog.LiveCatalog) -> int | None:
    for schema, name in _named_tables(tree):
        found = _resolved(live, schema, name)
        if found is None:
            continue
        details = live.details[(found[0], name)]
        rows = catalog.query(
            plpy,
            "SELECT 1 FROM diffix.table_labels l WHERE l.relid OPERATOR(pg_catalog.=) $1"
            " AND l.label OPERATOR(pg_catalog.=) 'cellkey'",
            ("oid",),
            (details.oid,),
        )
        if rows:
            return details.oid
    return None
