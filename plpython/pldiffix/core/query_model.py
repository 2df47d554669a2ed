"""The validated query model of a SELECT over personal tables, shared by the mechanisms.

The statement validator (core/validation/) turns analyst SQL into a `ValidatedQuery`; Diffix's
rewriter and DP's planner turn it into SQL. Both sides only ever see resolved identifiers and
sqlglot expressions, never pieces of the analyst's text. Aggregate kinds are the mechanism's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from pldiffix.core.relations import RelationKind, RelationRead

# --------------------------------------------------------------------------------------------------
# Validated query model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelationRef:
    """A catalog relation used by the query."""

    schema: str
    name: str
    kind: RelationKind

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class FunctionRef:
    """A function the query calls. `builtin` marks functions sqlglot knows as SQL built-ins
    (their schema is assumed to be pg_catalog); others were resolved in the catalog."""

    schema: str
    name: str
    builtin: bool = False


@dataclass(frozen=True)
class RangeEntry:
    """A catalog relation in the FROM clause of an anonymizing query."""

    alias: str  # the range variable name: the alias, or the relation name when not aliased
    relation: RelationRef
    aid_columns: tuple[str, ...]  # empty for public relations


@dataclass(frozen=True)
class ColumnRef:
    """A resolved column of a `RangeEntry` of an anonymizing query."""

    alias: str  # range variable of the owning RangeEntry
    relation: RelationRef
    name: str
    type: str  # normalized PostgreSQL type name (int4, float8, text, timestamptz, ...)
    is_aid: bool = False

    def to_sql(self) -> exp.Column:
        """A fully qualified column expression (quoted identifiers)."""
        return exp.column(self.name, table=self.alias, quoted=True)


@dataclass(frozen=True)
class JoinCondition:
    """`left = right` in a JOIN ... ON / USING / NATURAL condition."""

    left: ColumnRef
    right: ColumnRef


JoinKind = Literal["inner", "left", "right", "full"]


@dataclass(frozen=True)
class Join:
    """A join of the FROM tree: `left <kind> JOIN right ON conditions`."""

    kind: JoinKind
    left: FromItem
    right: FromItem
    conditions: tuple[JoinCondition, ...]


FromItem = RangeEntry | Join

GeneralizationKind = Literal[
    "column",  # the column itself, possibly behind transparent casts
    "substring",
    "round",
    "ceil",
    "floor",
    "width_bucket",
    "date_trunc",
    "extract",  # extract(field FROM col) and date_part('field', col)
    "floor_by",
    "round_by",
    "ceil_by",
    "integer_cast",  # rounding cast from a real/numeric type to an integer type
]


@dataclass(frozen=True)
class Generalization:
    """A (possibly generalized) column used for grouping or filtering.

    `expression` is the complete expression with qualified columns, as the analyst wrote it
    (what seeds and post-processing match); `emitted` is what the engine runs: the same value,
    NULL where `expression` would fail on a row (validation/totality.py); `args` are the constant
    arguments of the generalizing function (sqlglot expressions), in the order of the SQL call
    without the column argument.
    """

    kind: GeneralizationKind
    column: ColumnRef
    args: tuple[exp.Expression, ...]
    expression: exp.Expression
    type: str | None  # result type when known
    emitted: exp.Expression


@dataclass(frozen=True)
class Filter:
    """A WHERE equality `subject = value`, value being a constant."""

    subject: Generalization
    value: exp.Expression


@dataclass(frozen=True)
class Aggregate:
    """An aggregate of an anonymizing query.

    `node` is the aggregate call inside `AnonymizingQuery.node`; the rewriter replaces it.
    `column` is the aggregated column (the counted AID for count_histogram), None for `*` forms.
    """

    kind: str  # the mechanism's name (Diffix: diffix/validation/aggregates.py, AggregateKind)
    column: ColumnRef | None
    node: exp.Expression
    bin_size: int | None = None  # count_histogram only (defaults to 1)


@dataclass(frozen=True)
class OutputColumn:
    """A SELECT list entry of an anonymizing query.

    `expression` is the qualified expression (post-processing over grouping expressions and
    aggregates); `group_index` is set when it is exactly the grouping expression at that index.
    """

    name: str
    expression: exp.Expression
    group_index: int | None


@dataclass
class AnonymizingQuery:
    """One SELECT that reads personal relations and therefore gets anonymized.

    `node` is the very `exp.Select` inside `ValidatedQuery.ast` (columns qualified, `*` expanded);
    the rewriter replaces it with the anonymizing SQL. Everything outside of it is post-processing.
    """

    node: exp.Select
    relations: tuple[RangeEntry, ...]
    from_tree: FromItem
    filters: tuple[Filter, ...]
    groups: tuple[Generalization, ...]
    #: No GROUP BY and no aggregates: rows are grouped by the non-constant SELECT (and ORDER BY)
    #: expressions and each bucket is repeated (anonymized) count(*) times.
    implicit_grouping: bool
    explicit_grouping: bool
    aggregates: tuple[Aggregate, ...]
    outputs: tuple[OutputColumn, ...]
    having: exp.Expression | None
    order_by: exp.Order | None
    limit: exp.Expression | None
    offset: exp.Expression | None

    @property
    def aid_columns(self) -> tuple[ColumnRef, ...]:
        """All AID columns in scope, in FROM order (the AID arguments of anonymizing aggregates)."""
        out: list[ColumnRef] = []
        for entry in self.relations:
            for name in entry.aid_columns:
                out.append(ColumnRef(entry.alias, entry.relation, name, "", True))
        return tuple(out)

    @property
    def low_count_filter(self) -> bool:
        """Whether buckets are low-count filtered (global aggregates are not)."""
        if self.explicit_grouping:
            return True
        return self.implicit_grouping and bool(self.groups)

    def relation_reads(self) -> list[RelationRead]:
        """The relations it reads, for the security checks (core/security_checks.py)."""
        return [
            RelationRead(e.relation.schema, e.relation.name, e.relation.kind, e.alias)
            for e in self.relations
        ]

    def emitted_expressions(self) -> list[exp.Expression]:
        """Every analyst-derived expression the engine executes for it, for the security checks."""
        out: list[exp.Expression] = [g.expression for g in self.groups]
        for f in self.filters:
            out.extend((f.subject.expression, f.value))
        for item in _join_conditions(self.from_tree):
            out.extend((item.left.to_sql(), item.right.to_sql()))
        out.extend(a.column.to_sql() for a in self.aggregates if a.column is not None)
        return out


def _join_conditions(item: FromItem) -> list[JoinCondition]:
    if isinstance(item, RangeEntry):
        return []
    return [*_join_conditions(item.left), *_join_conditions(item.right), *item.conditions]


@dataclass
class ValidatedQuery:
    """The result of validation.

    `ast` is a private copy of the statement with columns of anonymizing queries qualified;
    `anonymizing` lists the anonymizing SELECTs inside it, innermost-first in source order.
    A query without personal relations has no anonymizing parts and is unrestricted.
    """

    ast: exp.Query
    anonymizing: list[AnonymizingQuery]
    relations: list[RelationRef]
    functions: list[FunctionRef]
    access_level: str

    @property
    def is_anonymizing(self) -> bool:
        return bool(self.anonymizing)

    @property
    def non_personal_relations(self) -> list[RelationRef]:
        return [r for r in self.relations if r.kind is not RelationKind.PERSONAL]
