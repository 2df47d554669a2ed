"""What a BI tool sends first: every column of one personal table, perhaps with LIMIT.

DBeaver's "view data" sends `SELECT * FROM public.panel LIMIT 200`, pandas' read_sql_table
`SELECT panel.a, panel.b, ... FROM panel` (SQLAlchemy names every column). Read as written, these
select the AID columns, which the anonymizing subset refuses (every row would be suppressed).
`row_read` recognises such a statement and `rewritten` answers it honestly instead: the anonymized
implicit-grouping answer over the non-AID columns, with each AID column in its place as a typed
NULL, so the column list and types are the ones the tool expects. Pure: the caller resolves
table names to catalog relations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import ParseError

from pldiffix.core.errors import INSUFFICIENT_PRIVILEGE, UserError
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind
from pldiffix.core.sqltext import ident_name

# The only clauses a row read may carry: anything else is an analyst's own query, judged as such.
_ROW_READ_CLAUSES = frozenset({"expressions", "from_", "from", "limit", "offset"})
_SUBQUERY = "q"

Resolve = Callable[[str | None, str], RelationInfo | None]


@dataclass(frozen=True)
class RowRead:
    """A statement that reads every column of one personal table, in the order it lists them."""

    table: exp.Table
    relation: RelationInfo
    columns: tuple[ColumnInfo, ...]
    limit: exp.Limit | None
    offset: exp.Offset | None

    @property
    def left_out(self) -> tuple[str, ...]:
        return self.relation.aid_columns

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.relation.columns if not c.is_aid)


class RowReadRefused(UserError):
    """A row read at the DP level: no row-level answer is released under differential privacy."""

    default_sqlstate = INSUFFICIENT_PRIVILEGE

    def __init__(self, read: RowRead):
        relation = f"{read.relation.schema}.{read.relation.name}"
        super().__init__(
            f"rows of personal table {relation} are not available at the anonymized_dp level",
            hint=f"ask aggregate questions, e.g. SELECT {read.kept[0]}, count(*) FROM "
            f"{relation} GROUP BY 1; each answer is paid from your privacy budget",
        )


def row_read(tree: exp.Expression, resolve: Resolve) -> RowRead | None:
    """The row read `tree` is, or None (then it is validated as the analyst wrote it)."""
    if not isinstance(tree, exp.Select):
        return None
    if any(value for key, value in tree.args.items() if key not in _ROW_READ_CLAUSES):
        return None
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if isinstance(source, exp.From) else None
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return None
    if table.args.get("catalog") is not None:
        return None
    schema = ident_name(table.args["db"]) if table.args.get("db") is not None else None
    relation = resolve(schema, ident_name(table.this))
    if relation is None or relation.kind is not RelationKind.PERSONAL:
        return None
    if not relation.aid_columns or len(relation.aid_columns) == len(relation.columns):
        return None
    limit, offset = tree.args.get("limit"), tree.args.get("offset")
    if not all(_is_count(clause) for clause in (limit, offset) if clause is not None):
        return None
    columns = _listed_columns(tree.expressions, table, relation)
    if columns is None:
        return None
    return RowRead(table, relation, columns, limit, offset)


def _is_count(clause: exp.Expression) -> bool:
    """LIMIT or OFFSET of a plain number: anything else stays the analyst's own query."""
    value = clause.args.get("expression")
    return isinstance(value, exp.Literal) and not value.is_string and value.name.isdigit()


def rewritten(read: RowRead) -> exp.Select:
    """`SELECT <each column, AID columns as typed NULLs> FROM (SELECT <non-AID columns> FROM t)
    AS q [LIMIT n] [OFFSET m]`: the anonymizing part is exactly the analyst's question without
    the AID columns; the outer query only puts the columns back in the tool's order."""
    inner_table = read.table.copy()
    inner_table.set("alias", None)
    inner = exp.Select(
        expressions=[exp.Column(this=exp.to_identifier(name, quoted=True)) for name in read.kept]
    ).from_(inner_table)
    outputs: list[exp.Expression] = []
    for column in read.columns:
        name = exp.to_identifier(column.name, quoted=True)
        if column.is_aid:
            value = exp.Cast(this=exp.Null(), to=_data_type(column.type))
            outputs.append(exp.Alias(this=value, alias=name))
        else:
            outputs.append(exp.Column(this=name, table=exp.to_identifier(_SUBQUERY)))
    outer = exp.Select(expressions=outputs).from_(inner.subquery(_SUBQUERY))
    if read.limit is not None:
        outer.set("limit", read.limit.copy())
    if read.offset is not None:
        outer.set("offset", read.offset.copy())
    return outer


def from_twin(read: RowRead, twin_schema: str, twin: str) -> exp.Select:
    """`SELECT <the columns, in the tool's order> FROM <the published synthetic twin>
    [LIMIT n] [OFFSET m]`: the twin has the source's column names and types, so the tool gets
    the rows it expects, all synthetic (docs/synthetic.md)."""
    outputs = [exp.Column(this=exp.to_identifier(c.name, quoted=True)) for c in read.columns]
    table = exp.Table(
        this=exp.to_identifier(twin, quoted=True), db=exp.to_identifier(twin_schema, quoted=True)
    )
    select = exp.Select(expressions=outputs).from_(table)
    if read.limit is not None:
        select.set("limit", read.limit.copy())
    if read.offset is not None:
        select.set("offset", read.offset.copy())
    return select


def twin_notice(read: RowRead, twin_schema: str, twin: str) -> str:
    relation = f"{read.relation.schema}.{read.relation.name}"
    return (
        f"pldiffix: the rows of personal table {relation} are answered from its published "
        f"synthetic twin {twin_schema}.{twin}: they are synthetic, drawn from a differentially "
        f"private model of the table, and describe no real person. Ask aggregate questions for "
        f"answers about the real data."
    )


def notice(read: RowRead) -> str:
    """What the answer left out and why, for the client's NOTICE."""
    relation = f"{read.relation.schema}.{read.relation.name}"
    aids = ", ".join(read.left_out)
    kept = ", ".join(read.kept)
    return (
        f"pldiffix: a read of every column of personal table {relation} is answered as "
        f"SELECT {kept} FROM {relation}, anonymized: one row per combination of values shared "
        f"by enough persons, repeated by its noisy count; rare combinations are merged into a "
        f"row of '*'. The AID column(s) {aids} come back as NULL: they identify persons, and "
        f"grouping by them would suppress every row. Ask aggregate questions "
        f"(SELECT {read.kept[0]}, count(*) FROM {relation} GROUP BY 1) for sharper answers."
    )


def _listed_columns(
    items: list[exp.Expression], table: exp.Table, relation: RelationInfo
) -> tuple[ColumnInfo, ...] | None:
    """The columns of `relation` in the select list's order, if it lists each exactly once
    (as `*`, `alias.*` or plain column names) and nothing else."""
    names = {ident_name(table.this)}
    schemas = {relation.schema}  # `schema.table.column`, as pandas writes with schema=
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and isinstance(alias.this, exp.Identifier):
        if alias.columns:
            return None
        names, schemas = {ident_name(alias.this)}, set()

    def qualifier_ok(column: exp.Column) -> bool:
        qualifier, schema = column.args.get("table"), column.args.get("db")
        if column.args.get("catalog") is not None:
            return False
        if schema is not None and not (
            isinstance(schema, exp.Identifier) and ident_name(schema) in schemas
        ):
            return False
        return qualifier is None or (
            isinstance(qualifier, exp.Identifier) and ident_name(qualifier) in names
        )

    if len(items) == 1:
        item = items[0]
        if isinstance(item, exp.Star) and not any(item.args.values()):
            return relation.columns
        if isinstance(item, exp.Column) and isinstance(item.this, exp.Star) and qualifier_ok(item):
            return relation.columns if not any(item.this.args.values()) else None
    listed: list[ColumnInfo] = []
    for item in items:
        if not isinstance(item, exp.Column) or not isinstance(item.this, exp.Identifier):
            return None
        if not qualifier_ok(item):
            return None
        column = relation.column(ident_name(item.this))
        if column is None or column in listed:
            return None
        listed.append(column)
    return tuple(listed) if len(listed) == len(relation.columns) else None


def _data_type(type_name: str) -> exp.DataType:
    try:
        return exp.DataType.build(type_name, dialect="postgres")
    except (ParseError, ValueError):
        return exp.DataType.build(type_name, dialect="postgres", udt=True)
