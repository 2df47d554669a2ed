"""diffix.synthesize and diffix.synthetic_report: the database side of a synthesis.

`synthesize` runs inside diffix._synthesize (SECURITY DEFINER, owner diffix_engine, settings
pinned), for administrators only. The order is the accounting's: everything that can refuse
(the caller, the table, the metadata, the options, the name, the budget) comes before the
charge, and the charge before any personal row is read. The charge is the admin's own budget
(diffix._charge_budget: the role the session acts as), mechanism 'synthetic', and the
publication is written to the audit log (diffix._audit_publication). Exact counts never leave
this function: only noisy counts reach the model, and only sampled rows the twin.

Longer than the ~600 lines modules aim for: every statement a synthesis runs (checks, charge,
measurements, the twin's writes, the report) stays in this one file, so that the order the
accounting depends on can be reviewed in one place; the pure parts are in the sibling modules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from pldiffix.core import audit, catalog, context, ledger, sqltext
from pldiffix.core.errors import reports_errors
from pldiffix.core.levels import AccessLevel
from pldiffix.synth import accounting, model, noise, queries, report
from pldiffix.synth.columns import (
    Column,
    ColumnFacts,
    SynthesisError,
    plan_columns,
    values_in_cells,
)

MECHANISM = "synthetic"
MAX_ROWS = 100_000_000
MAX_SAMPLE_ROWS = queries.CHUNK_ROWS  # one chunk, held in memory as jsonb
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclasses.dataclass(frozen=True)
class _Source:
    schema: str
    table: str
    aid: str
    contributions: int
    unique_aid: bool


@reports_errors
def synthesize(
    plpy: Any,
    relid: int,
    epsilon: float | None,
    delta: float | None,
    name: str | None,
    rows: int | None,
    selected: Sequence[str] | None,
    options_text: str | None,
) -> str:
    role = catalog.require_admin(plpy, "publish synthetic data")
    epsilon, delta = _checked_cost(epsilon, delta)
    name = _checked_name(name)
    if rows is not None and not 0 <= rows <= MAX_ROWS:
        raise SynthesisError(f"rows must be between 0 and {MAX_ROWS}, not {rows}")
    options = json.loads(options_text) if options_text else {}
    if not isinstance(options, dict):
        raise SynthesisError("options must be a jsonb object")
    source = _source(plpy, relid)
    _check_engine_reads(plpy, source, relid)
    bounds, domains = _dp_columns(plpy, relid)
    columns = plan_columns(_facts(plpy, relid), source.aid, bounds, domains, options, selected)
    modeled = [c for c in columns if c.modeled]
    budget = accounting.plan_budget(epsilon, delta, len(modeled), source.contributions)
    _check_name_free(plpy, name)
    earlier = _earlier(plpy, relid)
    _check_budget(ledger.remaining(plpy), epsilon, delta, role)
    description = (
        f"synthesize {source.schema}.{source.table} as {queries.SCHEMA}.{name} "
        f"(epsilon {epsilon:g}, delta {delta:g})"
    )
    # Paid before any personal row is read: a synthesis that then fails has still spent.
    remaining = ledger.charge(
        plpy, epsilon=epsilon, delta=delta, sql=description, mechanism=MECHANISM
    )
    if earlier:
        plpy.notice(
            f"{source.schema}.{source.table} was synthesized {earlier[0]} time(s) before "
            f"(epsilon {earlier[1]:g} in all): this publication spends epsilon {epsilon:g} "
            f"and delta {delta:g} again"
        )
    try:
        made, tree = _synthesize(plpy, source, columns, modeled, budget, rows, name)
        document = {
            "columns": [dataclasses.asdict(c) for c in columns],
            "tree": [[modeled[a].name, modeled[b].name] for a, b in tree],
            "budget": budget.document(),
        }
        _register(plpy, name, relid, source, budget, made, document, role)
    except Exception as error:
        audit.record_publication(
            plpy,
            sql=description,
            accepted=False,
            reason=audit.reason_of(error),
            epsilon=epsilon,
            delta=delta,
        )
        raise
    audit.record_publication(
        plpy, sql=description, accepted=True, rows=made, epsilon=epsilon, delta=delta
    )
    return (
        f"{queries.SCHEMA}.{name}: {made} synthetic rows of {source.schema}.{source.table}, "
        f"{len(modeled)} columns modeled, epsilon {epsilon:g} and delta {delta:g} spent "
        f"(rho {budget.rho_spent:.6g}); epsilon {remaining.epsilon:g} and delta "
        f"{remaining.delta:g} left"
    )


@reports_errors
def dp_sample(
    plpy: Any, relid: int, k: int | None, epsilon: float | None, delta: float | None
) -> list[str]:
    """diffix.dp_sample(table, k, epsilon [, delta]): k rows sampled from a tree model fitted
    to the table's noisy marginals, as jsonb texts, paid from the caller's own budget.

    The caller is the role the session acts as; its level comes from the catalog (the
    perturbed level reads perturbed views only), and it needs USAGE on the table's schema, as
    for any anonymized query. Every refusal comes before the charge, the charge before any
    personal row is read; every call gets an audit row, accepted or not (the gate's rule)."""
    level = catalog.person_level(plpy)
    description = f"dp_sample of relation {relid}"
    try:
        description, source, columns, modeled, budget, cost = _sample_plan(
            plpy, level, relid, k, epsilon, delta
        )
        assert k is not None
        ledger.charge(
            plpy,
            epsilon=cost.epsilon,
            delta=cost.delta,
            rho=budget.rho_spent,
            sql=description,
            mechanism=MECHANISM,
        )
        fitted, _, _ = _fit(plpy, source, modeled, budget)
        rng = np.random.default_rng(secrets.randbits(128))
        sql, types = queries.sample_sql(columns)
        plan = context.prepared(plpy, sql, tuple(types))
        arguments = _chunk_arguments(columns, modeled, fitted, 0, k, rng)
        rows = [row["row"] for row in plpy.execute(plan, arguments)]
    except Exception as error:
        audit.record(
            plpy,
            level=level.value,
            mechanism=MECHANISM,
            sql=description,
            accepted=False,
            reason=audit.reason_of(error),
        )
        raise
    audit.record(
        plpy,
        level=level.value,
        mechanism=MECHANISM,
        sql=description,
        accepted=True,
        rows=len(rows),
        epsilon=cost.epsilon,
        delta=cost.delta,
    )
    return rows


def _sample_plan(
    plpy: Any,
    level: AccessLevel,
    relid: int,
    k: int | None,
    epsilon: float | None,
    delta: float | None,
) -> tuple[str, _Source, list[Column], list[Column], accounting.BudgetPlan, ledger.Cost]:
    """Everything that can refuse a charged sample, nothing spent: the level, k, the cost
    against the per-query maxima, the table, the caller's privileges, the budget. The cost is
    (epsilon, delta) for an (epsilon, delta) budget; a zCDP budget pays the measurements' rho
    and no delta (delta only converts rho to epsilon)."""
    if level is AccessLevel.PERTURBED:
        raise PermissionError("roles at the perturbed level read perturbed views only")
    if k is None or not 1 <= k <= MAX_SAMPLE_ROWS:
        raise SynthesisError(
            f"k must be between 1 and {MAX_SAMPLE_ROWS}, not {k}",
            hint="for more rows, an administrator publishes a twin (diffix.synthesize)",
        )
    values = catalog.effective_settings(plpy)
    epsilon, delta = _checked_cost(epsilon, delta)
    if epsilon > values["dp_max_epsilon"]:
        raise SynthesisError(
            f"epsilon {epsilon:g} exceeds the per-query maximum dp_max_epsilon = "
            f"{values['dp_max_epsilon']:g}",
            hint="ask for less; administrators set dp_max_epsilon with diffix.configure",
        )
    if delta > values["dp_max_delta"]:
        raise SynthesisError(
            f"delta {delta:g} exceeds the per-query maximum dp_max_delta = "
            f"{values['dp_max_delta']:g}",
            hint="ask for less; administrators set dp_max_delta with diffix.configure",
        )
    role = catalog.invoking_role(plpy)
    _check_schema_usage(plpy, role, relid)  # before anything is said about the table
    source = _source(plpy, relid)
    description = (
        "SELECT * FROM diffix.dp_sample("
        f"{sqltext.literal(sqltext.qualified(source.schema, source.table))}, {k}, {epsilon:g}, "
        f"{delta:g})"
    )
    bounds, domains = _dp_columns(plpy, relid)
    columns = plan_columns(_facts(plpy, relid), source.aid, bounds, domains, {}, None)
    modeled = [c for c in columns if c.modeled]
    if not modeled:
        raise SynthesisError(
            f"{source.schema}.{source.table} has no column with declared cells to sample",
            hint="an administrator declares DP bounds (diffix.set_dp_bounds) or domains "
            "(diffix.set_dp_domain)",
        )
    _check_engine_reads(plpy, source, relid)
    budget = accounting.plan_budget(epsilon, delta, len(modeled), source.contributions)
    remaining = ledger.remaining(plpy)
    zcdp = remaining is not None and remaining.unit == ledger.RHO
    cost = ledger.Cost(epsilon, budget.rho_spent, 0.0 if zcdp else delta)
    if remaining is None:
        raise ledger.BudgetError(
            f"role {role} has no privacy budget",
            ledger.NO_BUDGET,
            hint="ask an administrator for one (diffix.set_privacy_budget)",
        )
    if not ledger.covers(remaining, cost):
        raise ledger.BudgetError(
            f"the privacy budget of role {role} does not cover this sample (epsilon "
            f"{epsilon:g}, delta {delta:g})",
            ledger.BUDGET_EXCEEDED,
            hint="ask for less, or ask an administrator for more budget; SELECT * FROM "
            "diffix.privacy_budget() shows it",
        )
    return description, source, columns, modeled, budget, cost


def _check_schema_usage(plpy: Any, role: str, relid: int) -> None:
    """The gate's rule for personal tables (diffix/engine.py): the caller needs USAGE on the
    table's schema; anonymized roles never hold SELECT on a personal table."""
    usage = catalog.query(
        plpy,
        "SELECT pg_catalog.has_schema_privilege($1, c.relnamespace, 'USAGE') AS ok "
        "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $2",
        ("name", "oid"),
        (role, relid),
    )
    if not usage or not usage[0]["ok"]:
        raise PermissionError(f"role {role} has no USAGE on the schema of this table")


def _check_engine_reads(plpy: Any, source: _Source, relid: int) -> None:
    """The engine reads the table itself: refused before the charge when it cannot."""
    ok = catalog.query(
        plpy,
        "SELECT pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE') "
        "AND pg_catalog.has_table_privilege(c.oid, 'SELECT') AS ok "
        "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        ("oid",),
        (relid,),
    )[0]["ok"]
    if not ok:
        raise SynthesisError(
            f"the engine cannot read {source.schema}.{source.table}",
            hint=f"GRANT USAGE ON SCHEMA {source.schema} TO diffix_engine",
        )


def _synthesize(
    plpy: Any,
    source: _Source,
    columns: list[Column],
    modeled: list[Column],
    budget: accounting.BudgetPlan,
    rows: int | None,
    name: str,
) -> tuple[int, list[model.Pair]]:
    fitted, tree, total = _fit(plpy, source, modeled, budget)
    count = rows if rows is not None else min(MAX_ROWS, round(total))
    _write(plpy, name, columns, modeled, fitted, count)
    return count, tree


def _fit(
    plpy: Any, source: _Source, modeled: list[Column], budget: accounting.BudgetPlan
) -> tuple[model.TreeModel | None, list[model.Pair], float]:
    """The tree model from noisy marginals of the source (None with no modeled column), its
    edges and the noisy row count. Reads the personal rows: the budget is already charged."""
    counts = _exact_counts(plpy, source, modeled, pairs=budget.selection_variance is not None)
    sizes = [c.cells for c in modeled]
    tree = _tree(sizes, counts, budget)
    variance = budget.measurement_variance
    if modeled:
        one_way = [noise.noisy(counts[(j,)], variance) for j in range(len(modeled))]
        edges = {pair: noise.noisy(counts[pair], variance) for pair in tree}
        del counts  # nothing exact past this point
        fitted = model.estimate(sizes, one_way, edges, float(variance))
        return fitted, tree, fitted.total
    total = float(max(0, int(noise.noisy(counts[()], variance).sum())))
    return None, tree, total


def _exact_counts(
    plpy: Any, source: _Source, modeled: list[Column], *, pairs: bool
) -> dict[tuple[int, ...], np.ndarray]:
    """Every one-way marginal and, if `pairs` or there are two columns, every two-way one,
    over the bounded rows of the units."""
    both = pairs or len(modeled) == 2
    sql = queries.marginals_sql(
        source.schema,
        source.table,
        source.aid,
        modeled,
        None if source.unique_aid else source.contributions,
        secrets.randbits(62),
        both,
    )
    return _counts(plpy, sql, modeled, both)


def _counts(
    plpy: Any, sql: str, modeled: list[Column], both: bool
) -> dict[tuple[int, ...], np.ndarray]:
    """The marginals of `queries.marginals_sql`'s rows as arrays keyed by column positions
    (the row count under () when nothing is modeled)."""
    if not modeled:
        return {(): np.array([int(plpy.execute(sql)[0]["n"])])}
    sizes = [c.cells for c in modeled]
    counts: dict[tuple[int, ...], np.ndarray] = {
        (j,): np.zeros(sizes[j], dtype=np.int64) for j in range(len(modeled))
    }
    if both:
        for a in range(len(modeled)):
            for b in range(a + 1, len(modeled)):
                counts[(a, b)] = np.zeros((sizes[a], sizes[b]), dtype=np.int64)
    names = queries.cell_names(modeled)
    for row in plpy.execute(sql):
        grouped = tuple(j for j, n in enumerate(names) if row[n] is not None)
        counts[grouped][tuple(row[names[j]] for j in grouped)] += int(row["n"])
    return counts


def _tree(
    sizes: list[int], counts: dict[tuple[int, ...], np.ndarray], budget: accounting.BudgetPlan
) -> list[model.Pair]:
    """The tree's edges: the only one with two columns, else the maximum spanning tree over the
    mutual information of every pair's two-way marginal measured with the selection noise."""
    if len(sizes) < 3 or budget.selection_variance is None:
        return [(0, 1)] if len(sizes) == 2 else []
    weights = {
        (a, b): model.mutual_information(noise.noisy(counts[(a, b)], budget.selection_variance))
        for a in range(len(sizes))
        for b in range(a + 1, len(sizes))
    }
    return model.spanning_tree(len(sizes), weights)


def _write(
    plpy: Any,
    name: str,
    columns: list[Column],
    modeled: list[Column],
    fitted: model.TreeModel | None,
    count: int,
) -> None:
    """Creates the twin and fills it chunk by chunk, each chunk sampled on its own (memory stays
    that of one chunk whatever the row count)."""
    rng = np.random.default_rng(secrets.randbits(128))
    plpy.execute(queries.create_sql(name, columns))
    sql, types = queries.insert_sql(name, columns)
    plan = context.prepared(plpy, sql, tuple(types))
    for start in range(0, count, queries.CHUNK_ROWS):
        size = min(queries.CHUNK_ROWS, count - start)
        plpy.execute(plan, _chunk_arguments(columns, modeled, fitted, start, size, rng))
    _publish(plpy, name)


def _chunk_arguments(
    columns: list[Column],
    modeled: list[Column],
    fitted: model.TreeModel | None,
    start: int,
    size: int,
    rng: np.random.Generator,
) -> list[Any]:
    """The parameters of `queries.rows_sql` for `size` rows sampled from the model, numbered
    from start + 1."""
    chunk = model.sample(fitted, size, rng) if fitted is not None else np.zeros((size, 0), np.int32)
    position = {c.name: j for j, c in enumerate(modeled)}
    arguments: list[Any] = [start + 1, size]
    for column in columns:
        if column.kind == "binned":
            values = values_in_cells(column, chunk[:, position[column.name]], rng)
            arguments.append("\n".join(values))
        elif column.kind == "categorical":
            arguments.append("\n".join(map(str, chunk[:, position[column.name]].tolist())))
            arguments.append(list(column.categories))
    return arguments


def _publish(plpy: Any, name: str) -> None:
    """Public label, and SELECT for the analysts' levels and administrators."""
    relid = catalog.query(
        plpy,
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
        "WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2",
        ("name", "name"),
        (queries.SCHEMA, name),
    )[0]["oid"]
    catalog.query(plpy, "SELECT diffix._mark_public($1, false)", ("oid",), (relid,))
    plpy.execute(
        f"GRANT SELECT ON {queries.qualified(queries.SCHEMA, name)} TO diffix_anonymized_trusted, "
        "diffix_anonymized_untrusted, diffix_anonymized_dp, diffix_admin"
    )


def _checked_cost(epsilon: float | None, delta: float | None) -> tuple[float, float]:
    if epsilon is None or not math.isfinite(epsilon) or epsilon <= 0:
        raise SynthesisError(f"epsilon must be a positive number, not {epsilon}")
    if delta is None or not math.isfinite(delta) or not 0 < delta < 1:
        raise SynthesisError(
            f"delta must be in (0, 1), not {delta}",
            hint="the measurements are zCDP, converted to (epsilon, delta) with delta > 0; "
            "e.g. 1e-6",
        )
    return float(epsilon), float(delta)


def _checked_name(name: str | None) -> str:
    if name is None or not _NAME.match(name):
        raise SynthesisError(
            f"the twin's name must be a lower-case identifier, not {name!r}",
            hint="letters, digits and underscores, at most 63, e.g. 'patients_2024'",
        )
    return name


def _source(plpy: Any, relid: int) -> _Source:
    rows = catalog.query(
        plpy,
        "SELECT n.nspname, c.relname, l.label, t.max_contributions, "
        "(SELECT pg_catalog.array_agg(a.attname ORDER BY a.attnum) "
        " FROM diffix.column_labels cl JOIN pg_catalog.pg_attribute a "
        " ON a.attrelid OPERATOR(pg_catalog.=) cl.relid AND a.attnum OPERATOR(pg_catalog.=) "
        " cl.attnum WHERE cl.relid OPERATOR(pg_catalog.=) c.oid AND cl.label "
        " OPERATOR(pg_catalog.=) 'aid') AS aids "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
        "LEFT JOIN diffix.table_labels l ON l.relid OPERATOR(pg_catalog.=) c.oid "
        "LEFT JOIN diffix.dp_tables t ON t.relid OPERATOR(pg_catalog.=) c.oid "
        "WHERE c.oid OPERATOR(pg_catalog.=) $1",
        ("oid",),
        (relid,),
    )
    if not rows or rows[0]["label"] != "personal":
        raise SynthesisError(
            "only personal tables are synthesized",
            hint="CALL diffix.mark_personal(table, aid_column) first",
        )
    row = rows[0]
    aids = list(row["aids"] or [])
    if len(aids) != 1:
        raise SynthesisError(
            f"{row['nspname']}.{row['relname']} has {len(aids)} AID columns; a synthesis "
            "bounds the contributions of one privacy unit",
        )
    unique = catalog.has_unique_index(plpy, relid, aids[0])
    contributions = 1 if unique else int(row["max_contributions"] or 1)
    return _Source(row["nspname"], row["relname"], aids[0], contributions, bool(unique))


def _facts(plpy: Any, relid: int) -> list[ColumnFacts]:
    """The columns, a domain replaced by the type it is based on: the twin never casts into a
    domain, whose CHECK constraints could call functions of any owner with the engine's rights."""
    rows = catalog.query(
        plpy,
        "WITH RECURSIVE base AS ("
        " SELECT a.attnum, a.attname, a.atttypid AS typid, a.atttypmod AS typmod, 0 AS depth"
        " FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) $1"
        " AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
        " UNION ALL"
        " SELECT b.attnum, b.attname, t.typbasetype, t.typtypmod, b.depth OPERATOR(pg_catalog.+) 1"
        " FROM base b JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) b.typid"
        " WHERE t.typtype OPERATOR(pg_catalog.=) 'd')"
        " SELECT DISTINCT ON (b.attnum) b.attname,"
        " pg_catalog.format_type(b.typid, b.typmod) AS sql_type,"
        " pg_catalog.format_type(b.typid, NULL) AS base_type,"
        " (SELECT pg_catalog.array_agg(e.enumlabel ORDER BY e.enumsortorder)"
        "  FROM pg_catalog.pg_enum e WHERE e.enumtypid OPERATOR(pg_catalog.=) b.typid) AS labels"
        " FROM base b ORDER BY b.attnum, b.depth DESC",
        ("oid",),
        (relid,),
    )
    return [
        ColumnFacts(r["attname"], r["sql_type"], r["base_type"], tuple(r["labels"] or ()))
        for r in rows
    ]


def _dp_columns(
    plpy: Any, relid: int
) -> tuple[dict[str, tuple[float, float]], dict[str, list[str]]]:
    rows = catalog.query(
        plpy,
        "SELECT a.attname, c.lower_bound, c.upper_bound, c.domain FROM diffix.dp_columns c "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.relid "
        "AND a.attnum OPERATOR(pg_catalog.=) c.attnum "
        "WHERE c.relid OPERATOR(pg_catalog.=) $1 AND NOT a.attisdropped",
        ("oid",),
        (relid,),
    )
    bounds = {
        r["attname"]: (float(r["lower_bound"]), float(r["upper_bound"]))
        for r in rows
        if r["lower_bound"] is not None
    }
    domains = {r["attname"]: list(r["domain"]) for r in rows if r["domain"]}
    return bounds, domains


def _check_name_free(plpy: Any, name: str) -> None:
    """A twin of the same name is replaced; any other table of that name refuses."""
    rows = catalog.query(
        plpy,
        "SELECT EXISTS (SELECT FROM diffix.synthetic_tables s "
        "WHERE s.name OPERATOR(pg_catalog.=) $1) AS registered, "
        "pg_catalog.to_regclass(pg_catalog.quote_ident($2) OPERATOR(pg_catalog.||) '.' "
        "OPERATOR(pg_catalog.||) pg_catalog.quote_ident($1)) IS NOT NULL AS present",
        ("name", "text"),
        (name, queries.SCHEMA),
    )[0]
    if rows["present"] and not rows["registered"]:
        raise SynthesisError(
            f"{queries.SCHEMA}.{name} exists and is not a synthetic twin",
            hint="choose another name",
        )
    if rows["present"]:
        plpy.execute(f"DROP TABLE {queries.qualified(queries.SCHEMA, name)}")
        catalog.query(
            plpy,
            "DELETE FROM diffix.synthetic_tables s WHERE s.name OPERATOR(pg_catalog.=) $1",
            ("name",),
            (name,),
        )


def _earlier(plpy: Any, relid: int) -> tuple[int, float] | None:
    row = catalog.query(
        plpy,
        "SELECT pg_catalog.count(*) AS n, pg_catalog.sum(s.epsilon) AS e "
        "FROM diffix.synthetic_publications s WHERE s.source_relid OPERATOR(pg_catalog.=) $1",
        ("oid",),
        (relid,),
    )[0]
    return (int(row["n"]), float(row["e"])) if row["n"] else None


def _check_budget(
    remaining: ledger.Remaining | None, epsilon: float, delta: float, role: str
) -> None:
    if remaining is None:
        raise ledger.BudgetError(
            f"role {role} has no privacy budget",
            ledger.NO_BUDGET,
            hint="a synthesis is paid from the publishing administrator's own budget: "
            f"CALL diffix.set_privacy_budget('{role}', epsilon, delta)",
        )
    if not ledger.affordable(remaining, epsilon, delta):
        raise ledger.BudgetError(
            f"the privacy budget of role {role} does not cover this synthesis: it needs epsilon "
            f"{epsilon:g} and delta {delta:g}, {remaining.epsilon:g} and {remaining.delta:g} "
            "remain",
            ledger.BUDGET_EXCEEDED,
            hint="ask for less, or set a larger budget with diffix.set_privacy_budget",
        )


def _register(
    plpy: Any,
    name: str,
    relid: int,
    source: _Source,
    budget: accounting.BudgetPlan,
    rows: int,
    document: dict[str, Any],
    role: str,
) -> None:
    catalog.query(
        plpy,
        "INSERT INTO diffix.synthetic_tables (name, source_relid, source_name, epsilon, delta, "
        "rho, rows, model, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, "
        "CAST($8 AS pg_catalog.jsonb), $9)",
        ("name", "oid", "text", "float8", "float8", "float8", "int8", "text", "name"),
        (
            name,
            relid,
            f"{source.schema}.{source.table}",
            budget.epsilon,
            budget.delta,
            budget.rho_spent,
            rows,
            json.dumps(document),
            role,
        ),
    )
    catalog.query(
        plpy,
        "INSERT INTO diffix.synthetic_publications (name, source_relid, epsilon, delta, "
        "published_by) VALUES ($1, $2, $3, $4, $5)",
        ("name", "oid", "float8", "float8", "name"),
        (name, relid, budget.epsilon, budget.delta, role),
    )


@reports_errors
def synthetic_report(plpy: Any, name: str | None) -> list[report.Row]:
    """diffix.synthetic_report(name): the twin against its source table, exactly, over the
    synthesis's own cells (administrators only)."""
    catalog.require_admin(plpy, "read synthetic data reports")
    found = catalog.query(
        plpy,
        "SELECT n.nspname, c.relname, CAST(s.model AS pg_catalog.text) AS model, s.rows "
        "FROM diffix.synthetic_tables s LEFT JOIN pg_catalog.pg_class c "
        "ON c.oid OPERATOR(pg_catalog.=) s.source_relid LEFT JOIN pg_catalog.pg_namespace n "
        "ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE s.name OPERATOR(pg_catalog.=) $1",
        ("name",),
        (name,),
    )
    if not found:
        raise SynthesisError(
            f"no synthetic twin named {name!r}",
            hint="SELECT name FROM diffix.synthetic_tables lists them",
        )
    row = found[0]
    if row["relname"] is None:
        raise SynthesisError(f"the source table of {queries.SCHEMA}.{name} no longer exists")
    modeled = [c for c in stored_columns(json.loads(row["model"])) if c.modeled]
    both = len(modeled) >= 2
    real = _counts(
        plpy,
        queries.marginals_sql(row["nspname"], row["relname"], None, modeled, None, 0, both),
        modeled,
        both,
    )
    synthetic = _counts(
        plpy,
        queries.marginals_sql(queries.SCHEMA, name, None, modeled, None, 0, both),
        modeled,
        both,
    )
    source = queries.qualified(row["nspname"], row["relname"])
    twin = queries.qualified(queries.SCHEMA, name)
    sizes = plpy.execute(
        f"SELECT (SELECT pg_catalog.count(*) FROM {source}) AS real, "
        f"(SELECT pg_catalog.count(*) FROM {twin}) AS synthetic"
    )[0]
    matches = 0
    if modeled:
        matches = int(
            plpy.execute(queries.matches_sql(row["nspname"], row["relname"], name, modeled))[0]["n"]
        )
    return report.rows(
        modeled, real, synthetic, int(sizes["real"]), int(sizes["synthetic"]), matches
    )


def stored_columns(document: dict[str, Any]) -> list[Column]:
    """The twin's column plans as `synthesize` registered them."""
    return [
        Column(**{k: tuple(v) if isinstance(v, list) else v for k, v in column.items()})
        for column in document["columns"]
    ]
