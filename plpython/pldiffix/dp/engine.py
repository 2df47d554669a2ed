"""DP answers: validate, check, bound and aggregate in SQL, add noise, charge, answer.

`run` executes inside `diffix._dp_answer` (SECURITY DEFINER, owner diffix_engine). As the Diffix
engine it trusts nothing from its caller: it validates the SQL itself with the caller's search path
reduced to schemas the invoking role may use, applies the Diffix engine's security checks to
everything it executes, and runs only SQL generated from the validated model. The order is the
accounting's: everything that can refuse the query (subset, metadata, epsilon caps, the remaining
budget) comes before any data is read, and so does the charge: a refused query spends nothing, a
query that fails while reading data has paid (its failure could tell something about a person),
and no answer is ever returned unpaid. An identical query within the budget period gets its
stored answer again at no cost (replay.py), found before anything is charged or read. It runs
behind the gate (answers.py), which writes the audit row. It returns the post-processing query
(the analyst's statement with the DP subquery replaced by its released rows, run by the caller
with its own privileges: placement.py) and the DP report.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, Context, Decimal
from fractions import Fraction
from typing import Any

from sqlglot import exp

from pldiffix.core import catalog, ledger, partition_trees, reads, sqltext
from pldiffix.core.context import prepared
from pldiffix.core.errors import UserError
from pldiffix.core.exact_sampling import rational_epsilon
from pldiffix.core.relations import RelationKind
from pldiffix.core.security_checks import SecurityChecks
from pldiffix.core.statements import QueryError
from pldiffix.dp import joins, markers, partitions, planner, release, replay
from pldiffix.dp.placement import place, post_processing
from pldiffix.dp.query import BOUNDED_KINDS, DpQuery, parse

MECHANISM = "dp"


def run(
    plpy: Any,
    sql: str,
    epsilon: float | None,
    delta: float | None,
    search_path: Sequence[str],
    *,
    explicit: bool,
) -> dict[str, Any]:
    """`explicit`: called through diffix.dp_query_json (epsilon and delta are its arguments),
    else through query_json, query or the proxy (the session's dp_epsilon and dp_delta); the
    hints name what the caller can change."""
    role = catalog.invoking_role(plpy)
    values = catalog.effective_settings(plpy)
    hints = Hints(explicit)
    epsilon, delta = _checked_parameters(epsilon, delta, values, hints)
    noise = str(values["dp_noise"])
    schemas = catalog.usable_schemas(plpy, role, search_path)
    live = catalog.LiveCatalog(plpy, schemas)
    query = parse(
        sql, live, treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"])
    )
    _check_other_reads(query, live)
    SecurityChecks(plpy, role, live).check(
        query.shadow.relation_reads(), query.shadow.emitted_expressions()
    )
    relid = _relation_oid(plpy, query)
    metadata = load_metadata(plpy, query, relid)
    oids = joins.relation_oids(plpy, query) if query.joined else {"": relid}
    if query.joined:
        metadata = joins.joined_metadata(plpy, query, oids, metadata)
    _check_metadata(query, metadata)
    plan = planner.plan(query, metadata, secrets.randbits(62))
    budget = release.Budget(
        rational_epsilon(epsilon),
        delta,
        len(query.aggregates),
        not plan.declared_keys,
        noise=noise,
        # the threshold assumes the count's discrete Laplace noise
        selection_by_count=noise == release.LAPLACE and release.selection_count(plan) is not None,
    )
    if budget.partition_selection and query.groups and delta <= 0:
        raise UserError(
            "grouping by keys without a declared domain needs delta > 0 (partition selection)",
            hint=hints.partition_delta(),
        )
    if not query.groups:  # one global row, always released: no partition selection
        budget = release.Budget(budget.epsilon, delta, budget.aggregates, False, noise=noise)
    key = replay.replay_key(
        tree=query.tree,
        relation=(query.relation.schema, query.relation.name, relid),
        search_path=schemas,
        epsilon=epsilon,
        delta=delta,
        noise=noise,
        metadata=metadata,
        snapshot=[part for oid in oids.values() for part in replay.relation_snapshot(plpy, oid)],
    )
    # a query showing dp_budget_remaining() changes with every spend: it is never replayed
    replayable = all(output.marker != markers.BUDGET_MARKER for output in query.outputs)
    stored = replay.stored(plpy, key) if replayable else None
    if stored is not None:  # paid for in this period: the same answer again, free
        return replay.replayed(stored, _remaining_document(ledger.remaining(plpy)))
    placement = place(plpy, query, plan)
    cost = _cost(epsilon, budget)
    _check_budget(ledger.remaining(plpy), cost, role, hints, epsilon)
    # Paid before any personal row is read: a query that then fails has still spent its
    # epsilon, so an error that only some rows raise is no free answer.
    remaining = ledger.charge(
        plpy,
        epsilon=cost.epsilon,
        delta=cost.delta,
        rho=cost.rho if noise == release.GAUSSIAN else None,
        sql=sql,
        mechanism=MECHANISM,
    )

    callers_memory = _set_memory(plpy, BOUNDING_MEMORY)
    leaves = partition_trees.partitions_on(plpy, relid, query.aid)  # shards, per partition
    root = (query.relation.schema, query.relation.name)
    groups = list(plpy.execute(partitions.per_partition_sql(plpy, plan.sql, root, leaves)))
    histograms = {  # read lazily, one group at a time, once the released groups are known
        index: _histograms(
            plpy,
            partitions.per_partition_sql(
                plpy,
                plan.histogram_sql(query, metadata, index),
                root,
                leaves,
                "histogram",
                keys=("bin",),
                ordered=True,
            ),
            plan.group_count,
        )
        for index, aggregate in enumerate(plan.aggregates)
        if aggregate.aggregate.kind == "quantile"
    }
    if not query.groups and not groups:  # a global aggregate over no rows is still one row
        groups = [{"units": 0} | {s.name: 0 for a in plan.aggregates for s in a.statistics}]
    rows = release.release(plan, budget, groups, histograms, metadata)  # reads the histograms
    _set_memory(plpy, callers_memory)
    answer = {
        "query": post_processing(placement, query, rows, remaining),
        "dp": {
            "epsilon": epsilon,
            "delta": budget.delta_spent,
            "noise": noise,
            "rho": cost.rho,
            "replayed": False,
            "remaining": _remaining_document(remaining),
            "max_contributions": metadata.contributions,
            "max_groups_per_unit": metadata.max_partitions,
            "max_rows_per_group": metadata.rows_per_partition,
            "partition_selection": _selection_document(plan, budget, metadata),
            "aggregates": release.noise_report(plan, budget),
            "rows": [[*row.keys, *(value.document() for value in row.values)] for row in rows],
        },
    }
    if replayable:
        replay.store(plpy, key, answer)
    return answer


def _cost(epsilon: float, budget: release.Budget) -> ledger.Cost:
    """Under Laplace noise the answer is epsilon-DP (epsilon^2 / 2-zCDP); under Gaussian noise
    it is rho-zCDP only, rho = budget.rho, charged rounded up to 12 significant digits (so that
    its float8 reaches the ledger's numeric exactly, never below what the noise assumed)."""
    rho = _rounded_up(budget.rho)
    if budget.noise == release.GAUSSIAN:
        return ledger.Cost(None, rho, budget.delta_spent)
    return ledger.Cost(epsilon, max(rho, epsilon * epsilon / 2), budget.delta_spent)


def _rounded_up(value: Fraction) -> float:
    context = Context(prec=12, rounding=ROUND_CEILING)
    return float(context.divide(Decimal(value.numerator), Decimal(value.denominator)))


@dataclass(frozen=True)
class Hints:
    """What to change, written for the entry point the query came through: the arguments of
    diffix.dp_query_json (explicit), or the session settings that query_json, query and the
    proxy spend."""

    explicit: bool

    def epsilon(self, value: float) -> str:
        if self.explicit:
            return f"diffix.dp_query_json(sql, {value:g})"
        return f"SELECT diffix.set('dp_epsilon', '{value:g}')"

    def delta(self, value: float) -> str:
        if self.explicit:
            return f"diffix.dp_query_json(sql, epsilon, {value:g})"
        return f"SELECT diffix.set('dp_delta', '{value:g}')"

    def positive_epsilon(self) -> str:
        return f"e.g. {self.epsilon(0.5)}"

    def max_epsilon(self, maximum: float) -> str:
        return (
            f"ask for at most {maximum:g}, e.g. {self.epsilon(maximum)}; administrators set "
            "dp_max_epsilon with diffix.configure"
        )

    def max_delta(self, maximum: float) -> str:
        return (
            f"ask for at most {maximum:g}, e.g. {self.delta(maximum)}; administrators set "
            "dp_max_delta with diffix.configure"
        )

    def partition_delta(self) -> str:
        return (
            f"allow a delta, e.g. {self.delta(1e-6)}, or ask an administrator to declare the "
            "keys' domain: CALL diffix.set_dp_domain(table, column, ARRAY[...])"
        )

    def over_budget(self, remaining: ledger.Remaining, epsilon: float) -> str:
        """`epsilon`: what the refused query asked for."""
        more = (
            "ask an administrator for more budget; SELECT * FROM diffix.privacy_budget() shows it"
        )
        if epsilon <= remaining.epsilon:  # the delta is short
            what, left = "delta", _rounded_down(remaining.delta)
            change = self.delta(left)
        else:
            what, left = "epsilon", _rounded_down(remaining.epsilon)
            change = self.epsilon(left)
        if left <= 0:
            return f"no {what} is left in this period; {more}"
        return f"ask for at most {left:g}, e.g. {change}, or {more}"


def _rounded_down(value: float) -> float:
    """`value` rounded down to 6 significant digits, so that its %g text does not exceed it."""
    if value <= 0:
        return 0.0
    shortest = Decimal(repr(value))
    step = Decimal(1).scaleb(shortest.adjusted() - 5)
    return float(shortest.quantize(step, rounding=ROUND_DOWN))


def _checked_parameters(
    epsilon: float | None, delta: float | None, values: dict[str, Any], hints: Hints
) -> tuple[float, float]:
    if epsilon is None or not math.isfinite(epsilon) or epsilon <= 0:
        raise UserError(
            f"epsilon must be a positive number, not {epsilon}", hint=hints.positive_epsilon()
        )
    if epsilon > values["dp_max_epsilon"]:
        raise UserError(
            f"epsilon {epsilon:g} exceeds the per-query maximum dp_max_epsilon = "
            f"{values['dp_max_epsilon']:g}",
            hint=hints.max_epsilon(values["dp_max_epsilon"]),
        )
    delta = 0.0 if delta is None else delta
    if not math.isfinite(delta) or not 0 <= delta < 1:
        raise UserError(f"delta must be in [0, 1), not {delta}")
    if delta > values["dp_max_delta"]:
        raise UserError(
            f"delta {delta:g} exceeds the per-query maximum dp_max_delta = "
            f"{values['dp_max_delta']:g}",
            hint=hints.max_delta(values["dp_max_delta"]),
        )
    return float(epsilon), float(delta)


def _check_other_reads(query: DpQuery, live: catalog.LiveCatalog) -> None:
    """Outside the DP subquery no personal table may be read (refused before anything is spent,
    rather than failing for lack of privileges after the charge)."""
    for read in reads.tables_read(query.tree):
        if _inside(read.node, query.node):
            continue
        relation = reads.resolve(read, live)
        if relation is not None and relation.kind is RelationKind.PERSONAL:
            raise QueryError(
                f"{relation.schema}.{relation.name} is read outside the DP subquery",
                fragment=read.node.sql(dialect=sqltext.POSTGRES),
                hint="a DP query reads personal data in one aggregating SELECT only",
            )


def _inside(node: exp.Expression, ancestor: exp.Expression) -> bool:
    current: exp.Expression | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def _relation_oid(plpy: Any, query: DpQuery) -> int:
    return catalog.query(
        plpy,
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        ("name", "name"),
        (query.relation.schema, query.relation.name),
    )[0]["oid"]


def load_metadata(plpy: Any, query: DpQuery, relid: int) -> planner.TableMetadata:
    table = catalog.query(
        plpy,
        "SELECT t.max_contributions, t.max_groups_per_unit, t.max_rows_per_group, "
        # declared by an administrator (sql/dp/56_unique_units.sql: sharded tables)
        "EXISTS (SELECT FROM diffix.dp_unique_units u WHERE u.relid = $1) AS declared_unique "
        "FROM (SELECT $1::oid AS relid) r LEFT JOIN diffix.dp_tables t ON t.relid = r.relid",
        ("oid",),
        (relid,),
    )[0]
    columns = catalog.query(
        plpy,
        "SELECT a.attname, c.lower_bound, c.upper_bound, c.domain FROM diffix.dp_columns c "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.relid AND a.attnum = c.attnum "
        "WHERE c.relid = $1 AND NOT a.attisdropped",
        ("oid",),
        (relid,),
    )
    return planner.TableMetadata(
        max_contributions=int(table["max_contributions"] or 1),
        max_groups_per_unit=table["max_groups_per_unit"],
        max_rows_per_group=table["max_rows_per_group"],
        unique_aid=bool(table["declared_unique"])
        or catalog.has_unique_index(plpy, relid, query.aid),
        bounds={
            row["attname"]: planner.Bounds(float(row["lower_bound"]), float(row["upper_bound"]))
            for row in columns
            if row["lower_bound"] is not None
        },
        domains={row["attname"]: list(row["domain"]) for row in columns if row["domain"]},
    )


def _check_metadata(query: DpQuery, metadata: planner.TableMetadata) -> None:
    for aggregate in query.aggregates:
        relation = query.relation_of(aggregate.table)
        table = f"{relation.schema}.{relation.name}"
        if (
            aggregate.kind in BOUNDED_KINDS
            and aggregate.column is not None
            and metadata.bounds_of(aggregate.table, aggregate.column) is None
        ):
            raise QueryError(
                f"{aggregate.kind} of {aggregate.column} needs clamping bounds, and "
                f"{table}.{aggregate.column} has none",
                hint=f"an administrator declares them: CALL diffix.set_dp_bounds('{table}', "
                f"'{aggregate.column}', lower, upper)",
            )
    cells = planner.domain_cells(query, metadata)
    if (
        query.groups
        and cells > planner.MAX_DOMAIN_CELLS
        and all(
            g.kind == "column"
            and metadata.domain_of(query.table_of(g.column.alias), g.column.name) is not None
            for g in query.groups
        )
    ):
        raise QueryError(
            f"the declared domains of the grouping columns make {cells} groups, more than "
            f"{planner.MAX_DOMAIN_CELLS}",
            hint="group by fewer columns",
        )


def _check_budget(
    remaining: ledger.Remaining | None,
    cost: ledger.Cost,
    role: str,
    hints: Hints,
    epsilon: float,
) -> None:
    """Refuses before anything is read when the budget cannot pay (the charge decides, later)."""
    if remaining is None:
        raise ledger.BudgetError(
            f"role {role} has no privacy budget",
            ledger.NO_BUDGET,
            hint="an administrator grants one: "
            "CALL diffix.set_privacy_budget(role, epsilon, delta)",
        )
    amount = cost.in_unit(remaining.unit)
    if amount is None:
        raise ledger.BudgetError(
            f"Gaussian noise is accounted in zCDP (rho), and role {role} has an (epsilon, delta) "
            "budget",
            ledger.INVALID_PARAMETER,
            hint="SELECT diffix.set('dp_noise', 'laplace'), or an administrator sets a zCDP "
            "budget: CALL diffix.set_privacy_budget_zcdp(role, rho)",
        )
    if not ledger.covers(remaining, cost):
        name = "rho" if remaining.unit == ledger.RHO else "epsilon"
        left = remaining.rho if remaining.unit == ledger.RHO else remaining.epsilon
        raise ledger.BudgetError(
            f"the privacy budget of role {role} does not cover this query: it needs {name} "
            f"{amount:g} and delta {cost.delta:g}, {left:g} and {remaining.delta:g} remain",
            ledger.BUDGET_EXCEEDED,
            hint=hints.over_budget(remaining, epsilon)
            if remaining.unit != ledger.RHO
            else "ask with a smaller epsilon, or ask an administrator for more budget; "
            "SELECT * FROM diffix.privacy_budget() shows it",
        )


HISTOGRAM_FETCH = 10_000  # rows of a quantile's histogram fetched at a time


# The memory of the bounding SQL (docs/dp.md, "Speed"): its hash aggregates spill to disk beyond
# work_mem x hash_mem_multiplier and its tuple stores and sorts beyond work_mem, so these make a
# DP query's backend peak a fixed amount whatever the server's work_mem and the table's size.
# Set transaction-locally and set back once the statistics are read (an error instead aborts the
# caller's transaction or savepoint, which undoes them): the gate's own SET clauses restore only
# the settings they name.
BOUNDING_MEMORY = (("work_mem", "64MB"), ("hash_mem_multiplier", "1"))
_SET_SETTING = (
    "SELECT pg_catalog.current_setting($1) AS previous, pg_catalog.set_config($1, $2, true)"
)


def _set_memory(plpy: Any, settings: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Sets each (name, value) for the rest of the transaction; returns the previous values."""
    plan = prepared(plpy, _SET_SETTING, ("text", "text"))
    return tuple(
        (name, plpy.execute(plan, [name, value])[0]["previous"]) for name, value in settings
    )


def _histograms(
    plpy: Any, sql: str, group_count: int
) -> Iterator[tuple[tuple[Any, ...], dict[int, int]]]:
    """Each group's rows per grid point, one group at a time (the SQL orders the rows by group):
    a grid has up to 10^5 points, so holding every group's at once could take gigabytes."""
    cursor = plpy.cursor(sql)
    keys: tuple[Any, ...] | None = None
    counts: dict[int, int] = {}
    while batch := cursor.fetch(HISTOGRAM_FETCH):
        for row in batch:
            row_keys = tuple(row[f"g{i}"] for i in range(group_count))
            if keys is not None and row_keys != keys:
                yield keys, counts
                counts = {}
            keys = row_keys
            counts[int(row["bin"])] = int(row["n"])
    cursor.close()
    if keys is not None:
        yield keys, counts


def _selection_document(
    plan: planner.Plan, budget: release.Budget, metadata: planner.TableMetadata
) -> Any:
    selection = release.selection(plan, budget, metadata)
    if selection is None:
        return None
    index = release.selection_count(plan) if budget.selection_by_count else None
    return {
        "epsilon": float(budget.share),
        "delta": budget.delta,
        "threshold": selection.threshold,
        "noise_scale": float(selection.noise.scale),
        "count": None if index is None else plan.aggregates[index].aggregate.kind,
    }


def _remaining_document(remaining: ledger.Remaining | None) -> dict[str, Any] | None:
    if remaining is None:
        return None
    document: dict[str, Any] = {"epsilon": remaining.epsilon, "delta": remaining.delta}
    if remaining.unit == ledger.RHO:
        document["rho"] = remaining.rho
    return document
