"""The mechanism kit: the one shape every mechanism has, and the dispatcher that picks one.

A mechanism answers an analyst statement in the gate (answers.py): validate (refuse, before any
data is read, what it cannot answer) → plan (SQL generated from what it validated) → execute that
SQL with the engine's rights → release (noise, suppression, perturbation) → a `Release`: the
released rows as a rows relation placed in a post-processing query (the analyst's statement
with the part that read protected rows replaced by them, run by the caller with its own
privileges), with the report the mechanism gives (DP) and what the audit log records.

The gate registers mechanisms in order in a `Registry`; `pick` asks each whether it answers the
request, from the labels of the tables the statement reads (core/reads.py), the level and the
entry point, and the first that does answers. Adding a mechanism: its package (with its
`Mechanism`), its SQL folder, and one line in the gate's registry. Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.levels import AccessLevel


class Lookups(Protocol):
    """What the gate looks up for a request, once and only when a mechanism asks."""

    @property
    def catalog(self) -> Any:
        """The live catalog over the caller's schemas that the invoking role may use."""
        ...

    def labels(self, tree: exp.Expression) -> dict[int, str]:
        """The label of each labelled table `tree` reads (core/reads.py), by relation oid."""
        ...


@dataclass(frozen=True)
class Request:
    """One statement at the gate, as every mechanism sees it."""

    plpy: Any
    sql: str
    tree: exp.Expression
    level: AccessLevel
    search_path: Sequence[str]  # the caller's schemas
    lookups: Lookups
    epsilon: float | None = None
    delta: float | None = None
    explicit_dp: bool = False  # diffix.dp_query_json: epsilon and delta are its arguments

    @property
    def catalog(self) -> Any:
        return self.lookups.catalog

    @functools.cached_property
    def labels(self) -> dict[int, str]:
        return self.lookups.labels(self.tree)

    def reads(self, label: str) -> list[int]:
        """The oids of the tables read that carry `label`, in the order the statement names
        them."""
        return [relid for relid, found in self.labels.items() if found == label]

    @property
    def dp(self) -> bool:
        """Whether the answer must be differentially private (the level, or the entry point)."""
        return self.explicit_dp or self.level is AccessLevel.ANONYMIZED_DP


@dataclass(frozen=True)
class Release:
    """What a mechanism hands back. `query` is run by the caller with its own privileges: the
    statement itself when `own` (nothing protected is read: direct, public), else the
    post-processing query over the released rows."""

    mechanism: str  # the audit log's name of what answered (core/audit.py MECHANISMS)
    query: str
    own: bool = False
    rows: int | None = None  # rows released, when known
    report: dict[str, Any] | None = None  # DP's report, returned beside the rows
    epsilon: float | None = None  # what the answer spent
    delta: float | None = None

    def reply(self) -> dict[str, Any]:
        """The gate's reply: {"own": sql} or {"query": sql[, "dp": report]}."""
        if self.own:
            return {"own": self.query}
        return {"query": self.query} | ({"dp": self.report} if self.report is not None else {})


class Mechanism(Protocol):
    """One way of answering: Diffix, DP, cell-key, or running the statement as the caller."""

    def audit_name(self, request: Request) -> str:
        """What the audit log names a refusal of `request` (an answer names itself)."""
        ...

    def answers(self, request: Request) -> bool:
        """Whether this mechanism answers `request` (asked in the registry's order)."""
        ...

    def answer(self, request: Request) -> Release:
        """Validate, plan, execute in SQL, release. Refusals (UserError, PermissionError) come
        before any data is read."""
        ...


class Direct:
    """The direct level: the statement runs as the caller, unchanged."""

    def audit_name(self, request: Request) -> str:
        return "direct"

    def answers(self, request: Request) -> bool:
        return request.level is AccessLevel.DIRECT and not request.explicit_dp

    def answer(self, request: Request) -> Release:
        return Release("direct", sqltext.render(request.tree), own=True)


@dataclass(frozen=True)
class Registry:
    """The mechanisms, in the order they are asked."""

    mechanisms: tuple[Mechanism, ...]

    def pick(self, request: Request) -> Mechanism:
        for mechanism in self.mechanisms:
            if mechanism.answers(request):
                return mechanism
        raise PermissionError("no mechanism answers this query")


DIRECT = Direct()
