"""The gate: every analyst answer passes here, whatever the entry point and mechanism.

`answer` runs inside `diffix._answer` (SECURITY DEFINER, owner diffix_engine, every parsing
setting pinned). It trusts nothing its caller passes but the statement, epsilon and delta: the
level comes from the catalog (`catalog.person_level`), the schemas are the caller's reduced to
those the invoking role may use, the audit row is written here and a DP charge is made before any
data is read (dp/engine.py). The registry below picks one mechanism (core/mechanism.py) from the
labels of the tables the statement reads, and the gate returns one of:

- {"own": sql}: a statement the caller runs with its own privileges (direct level, or no
  protected table read);
- {"query": sql, ...}: the statement with its protected parts replaced by their released rows,
  also run by the caller with its own privileges (Diffix, DP with its report, cell-key).

Errors raised while reading personal rows at the untrusted and DP levels reach the caller as one
fixed message: which row made an expression fail would be an exact answer about a person.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from pldiffix.cellkey import gate as cellkey_gate
from pldiffix.core import audit, catalog, mechanism, reads, results
from pldiffix.core.errors import UserError
from pldiffix.core.levels import AccessLevel
from pldiffix.core.statements import parse_single_select
from pldiffix.diffix import gate as diffix_gate
from pldiffix.dp import gate as dp_gate

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

    def reply_text(self) -> str:
        # encode_value keeps numerics exact (a DP report's keys may be Decimal)
        return results.encode_value(self.reply | {"mechanism": self.mechanism})


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

        named = [(read.schema, read.name) for read in reads.tables_read(tree)]
        raise readers.refusal(plpy, named, search_path)
    request = mechanism.Request(
        plpy,
        sql,
        tree,
        level,
        search_path,
        _Lookups(plpy, search_path),
        epsilon,
        delta,
        explicit_dp,
    )
    chosen = REGISTRY.pick(request)
    admission.mechanism = chosen.audit_name(request)
    guard = AccessLevel.ANONYMIZED_DP if request.dp else level
    release = _guarded(plpy, guard, lambda: chosen.answer(request))
    admission.mechanism = release.mechanism
    return Outcome(
        release.mechanism,
        release.reply(),
        rows=release.rows,
        epsilon=release.epsilon,
        delta=release.delta,
    )


# The mechanisms, in the order they are asked (core/mechanism.py): one line each.
REGISTRY = mechanism.Registry(
    (
        mechanism.DIRECT,
        cellkey_gate.MECHANISM,
        diffix_gate.FIRST_CONTACT,
        dp_gate.MECHANISM,
        diffix_gate.PUBLIC,
        diffix_gate.DIFFIX,
    )
)


class _Lookups:
    """The catalog over the caller's usable schemas and the labels of the tables a statement
    reads, looked up when a mechanism first asks."""

    def __init__(self, plpy: Any, search_path: list[str]) -> None:
        self._plpy = plpy
        self._search_path = search_path

    @functools.cached_property
    def catalog(self) -> catalog.LiveCatalog:
        role = catalog.invoking_role(self._plpy)
        schemas = catalog.usable_schemas(self._plpy, role, self._search_path)
        return catalog.LiveCatalog(self._plpy, schemas)

    def labels(self, tree: exp.Expression) -> dict[int, str]:
        live = self.catalog
        relids = []
        for read in reads.tables_read(tree):
            relation = reads.resolve(read, live)
            if relation is not None:
                relids.append(live.details[(relation.schema, relation.name)].oid)
        if not relids:
            return {}
        rows = catalog.query(
            self._plpy,
            "SELECT l.relid, l.label FROM diffix.table_labels l"
            " WHERE l.relid OPERATOR(pg_catalog.=) ANY ($1)",
            ("oid[]",),
            (relids,),
        )
        found = {row["relid"]: row["label"] for row in rows}
        return {relid: found[relid] for relid in relids if relid in found}


def _guarded(
    plpy: Any, level: AccessLevel, run: Callable[[], mechanism.Release]
) -> mechanism.Release:
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
