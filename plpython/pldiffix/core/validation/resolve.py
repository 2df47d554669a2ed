"""Name resolution: relations through the catalog, column references through the scopes.

Every resolved column is recorded in `Analysis.resolved`; `*` in an anonymizing SELECT is expanded
to its columns, and once an anonymizing SELECT is accepted its columns are qualified so that the
rewriter can move them into other queries.
"""

from __future__ import annotations

from sqlglot import exp

from pldiffix.core import errors as sqlstate
from pldiffix.core import reads
from pldiffix.core.relations import RelationKind

from ..query_model import RelationRef
from .context import Analysis
from .errors import error_at
from .pgtypes import normalize_type
from .scope import Resolved, Scope, Source
from .syntax import ident_name

# Unlabeled relations there are public (they describe the schema, not people).
METADATA_SCHEMAS = frozenset({"pg_catalog", "information_schema"})

# SQL keywords that look like column references but are functions.
PSEUDO_COLUMNS = frozenset(
    {
        "current_user",
        "session_user",
        "user",
        "current_role",
        "current_catalog",
        "current_schema",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
    }
)


def resolve_relation(analysis: Analysis, table: exp.Table) -> Source:
    """The range variable of a table in FROM, looked up in the catalog (search path order)."""
    name = ident_name(table.this)
    schema = ident_name(table.args.get("db")) if table.args.get("db") else None
    if table.args.get("catalog"):
        raise error_at(
            table,
            "database-qualified table names are not supported",
            "Write schema.table or just table.",
        )
    info = reads.find(analysis.catalog, schema, name)
    if info is None:
        shown = f"{schema}.{name}" if schema else name
        raise error_at(
            table,
            f"relation {shown} does not exist",
            "Check the name; SELECT * FROM diffix.show_labels() lists the labeled tables.",
            sqlstate=sqlstate.UNDEFINED_TABLE,
        )
    kind = info.kind
    if kind is RelationKind.UNLABELED:
        if info.schema in METADATA_SCHEMAS or analysis.treat_unmarked_tables_as_public:
            kind = RelationKind.PUBLIC
        else:
            raise error_at(
                table,
                f"table {info.schema}.{info.name} has no anonymization label and cannot be "
                "accessed in anonymized access level",
                "Ask an administrator to mark it personal or public "
                "(diffix.mark_personal / diffix.mark_public).",
                sqlstate=sqlstate.INSUFFICIENT_PRIVILEGE,
            )
    analysis.relations.setdefault(
        (info.schema, info.name), RelationRef(info.schema, info.name, info.kind)
    )
    alias_node = table.args.get("alias")
    alias = ident_name(alias_node.this) if alias_node and alias_node.this else None
    columns = [(c.name, normalize_type(c.type)) for c in info.columns]
    columns = rename_columns(columns, alias_node, table)
    source = Source(
        alias=alias or info.name,
        kind="relation",
        columns=columns,
        node=table,
        relation=info,
        effective_kind=kind,
        aliased=alias is not None,
    )
    if info.schema == "pg_catalog":
        analysis.catalog_sources.append(source)
    return source


def rename_columns(
    columns: list[tuple[str, str | None]],
    alias_node: exp.TableAlias | None,
    where: exp.Expression,
) -> list[tuple[str, str | None]]:
    """Apply a column alias list `AS t(a, b)`."""
    if alias_node is None or not alias_node.args.get("columns"):
        return columns
    names = [ident_name(c.this if isinstance(c, exp.ColumnDef) else c) for c in alias_node.columns]
    if len(names) > len(columns) and columns:
        raise error_at(
            where,
            f"the alias list names {len(names)} columns but there are only {len(columns)}",
            "Remove the extra names from the column alias list.",
        )
    renamed = list(columns)
    for i, name in enumerate(names):
        if i < len(renamed):
            renamed[i] = (name, renamed[i][1])
        else:
            renamed.append((name, None))
    return renamed


def resolve_column(
    analysis: Analysis,
    column: exp.Column,
    scope: Scope | None,
    output_aliases: frozenset[str] = frozenset(),
) -> Resolved | None:
    """Bind a column reference to the innermost scope that has it (None: an output alias or a
    keyword such as current_user)."""
    if id(column) in analysis.resolved:
        return analysis.resolved[id(column)]
    if column.args.get("catalog"):
        raise error_at(
            column,
            "database-qualified column references are not supported",
            "Write table.column or just column.",
        )
    name = ident_name(column.this)
    table = ident_name(column.args.get("table")) if column.args.get("table") else None
    schema = ident_name(column.args.get("db")) if column.args.get("db") else None
    level = 0
    current = scope
    while current is not None:
        if table is not None:
            source = current.find_source(table, schema)
            if source is not None:
                if name == "*":
                    source.uses_all_columns = True
                    resolved = Resolved(source, "*", None, level, whole_row=True)
                    analysis.resolved[id(column)] = resolved
                    return resolved
                if not source.has_column(name):
                    raise error_at(
                        column,
                        f"column {table}.{name} does not exist",
                        _columns_hint(source),
                        sqlstate=sqlstate.UNDEFINED_COLUMN,
                    )
                return _bind(analysis, column, source, name, level)
        else:
            candidates = current.candidates(name)
            if len(candidates) > 1:
                raise error_at(
                    column,
                    f'column reference "{name}" is ambiguous',
                    "Qualify it with a table name or alias: "
                    + " or ".join(f"{s.alias}.{name}" for s in candidates)
                    + ".",
                    sqlstate=sqlstate.AMBIGUOUS_COLUMN,
                )
            if candidates:
                return _bind(analysis, column, candidates[0], name, level)
        current = current.parent
        level += 1
    if table is None:
        if name in output_aliases or name in PSEUDO_COLUMNS:
            return None
        # a whole-row reference: SELECT t FROM t
        level = 0
        current = scope
        while current is not None:
            source = current.find_source(name, None)
            if source is not None:
                source.uses_all_columns = True
                resolved = Resolved(source, name, None, level, whole_row=True)
                analysis.resolved[id(column)] = resolved
                return resolved
            current = current.parent
            level += 1
        raise error_at(
            column,
            f'column "{name}" does not exist',
            _columns_hint_scope(scope),
            sqlstate=sqlstate.UNDEFINED_COLUMN,
        )
    raise error_at(
        column,
        f'missing FROM-clause entry for table "{table}"',
        "Reference tables by the alias given in FROM.",
        sqlstate=sqlstate.UNDEFINED_TABLE,
    )


def _bind(
    analysis: Analysis, column: exp.Column, source: Source, name: str, level: int
) -> Resolved:
    """Record that `column` refers to `name` of `source`, `level` query levels up."""
    system = source.system_column(name) and not any(c == name for c, _ in source.columns)
    resolved = Resolved(source, name, source.column_type(name), level, system=system)
    source.used_columns.add(name)
    analysis.resolved[id(column)] = resolved
    return resolved


def expand_stars(analysis: Analysis, select: exp.Select, scope: Scope) -> None:
    """Replace `*` and `t.*` in the select list by the (resolved) columns they stand for."""
    items: list[exp.Expression] = []
    changed = False
    for item in select.expressions:
        if isinstance(item, exp.Star) or (
            isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
        ):
            changed = True
            table = None if isinstance(item, exp.Star) else ident_name(item.args.get("table"))
            for source, name in _star_sources(scope, table, item):
                column = exp.column(name, table=source.alias, quoted=True)
                _bind(analysis, column, source, name, 0)
                items.append(column)
        else:
            items.append(item)
    if changed:
        select.set("expressions", items)


def qualify(analysis: Analysis, column: exp.Column) -> None:
    """Rewrite a resolved column of this query level as "alias"."name"."""
    resolved = analysis.resolved.get(id(column))
    if resolved is None or resolved.whole_row or resolved.levels_up:
        return
    column.set("this", exp.to_identifier(resolved.name, quoted=True))
    column.set("table", exp.to_identifier(resolved.source.alias, quoted=True))
    column.set("db", None)
    column.set("catalog", None)


def star_source(scope: Scope, table: str, where: exp.Expression) -> Source:
    """The FROM item `table.*` takes its columns from."""
    source = scope.find_source(table, None)
    if source is None:
        raise error_at(
            where,
            f'missing FROM-clause entry for table "{table}"',
            "Reference tables by the alias given in FROM.",
            sqlstate=sqlstate.UNDEFINED_TABLE,
        )
    return source


def _star_sources(
    scope: Scope, table: str | None, where: exp.Expression
) -> list[tuple[Source, str]]:
    if table is not None:
        source = star_source(scope, table, where)
        return [(source, name) for name, _ in source.columns]
    out: list[tuple[Source, str]] = [(source, name) for name, source in scope.merged.items()]
    for source in scope.sources:
        out.extend((source, name) for name, _ in source.columns if name not in scope.merged)
    return out


def star_columns(scope: Scope) -> list[tuple[str, str | None]]:
    """The output columns of `*` over a scope (merged USING columns first)."""
    names = [name for name in scope.merged]
    for source in scope.sources:
        names.extend(name for name, _ in source.columns if name not in scope.merged)
    return [(n, None) for n in names]


def _columns_hint(source: Source) -> str:
    names = [c for c, _ in source.columns]
    if not names:
        return "Check the column name."
    return f"Columns of {source.alias}: {', '.join(names)}."


def _columns_hint_scope(scope: Scope | None) -> str:
    if scope is None or not scope.sources:
        return "There is no FROM clause to take columns from."
    parts = [f"{s.alias}({', '.join(c for c, _ in s.columns)})" for s in scope.sources if s.columns]
    return "Available columns: " + "; ".join(parts) + "." if parts else "Check the column name."
