"""What the wire-protocol front (proxy/) does with one client statement.

A statement is forwarded to the server untouched unless it reads a protected (personal or
cell-key) table: then it is answered through the engine, or, when it only asks for the result's
shape (`LIMIT 0`, `WHERE 1 <> 1`, as BI tools do), answered with an empty typed result. Pure: the
caller says which tables are protected.
"""

from __future__ import annotations

import enum
import functools
import operator
import re
from collections.abc import Callable, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from pldiffix.core import reads, sqltext
from pldiffix.core.errors import FEATURE_NOT_SUPPORTED, INSUFFICIENT_PRIVILEGE, UserError

_QUERY_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery)


class Route(enum.Enum):
    PASS = "pass"
    ENGINE = "engine"
    PROBE = "probe"


class RoutingError(UserError):
    """A statement the front refuses before it reaches the server."""

    default_sqlstate = FEATURE_NOT_SUPPORTED


# Texts up to this long are parsed once per backend: a prepared statement is routed at Parse and
# again at each Bind, and tools send the same text again. The trees are only read (never
# changed) and only route: the gate parses what it answers itself.
_CACHED_TEXT_LENGTH = 20_000


def parse_statements(sql: str) -> tuple[exp.Expression, ...] | None:
    """The statements of `sql`, or None when sqlglot cannot read them (the server will judge)."""
    if len(sql) > _CACHED_TEXT_LENGTH:
        return _parse(sql)
    return _parse_kept(sql)


def _parse(sql: str) -> tuple[exp.Expression, ...] | None:
    try:
        return tuple(s for s in sqlglot.parse(sql, read="postgres") if s is not None)
    except (ParseError, TokenError, ValueError):
        return None


_parse_kept = functools.lru_cache(maxsize=256)(_parse)


# --- the tokens-only route ---------------------------------------------------------------------
#
# Most statements the front routes are one SELECT over a protected table. For those the route is
# read from sqlglot's tokens (a tenth of a parse), and the gate parses the text once, for itself.
# The tokens decide only `engine`, and only where the full route surely says so: a single
# statement that starts with SELECT, holds no WITH (a CTE could shadow a table), and nothing
# that could make it a type probe; `pass`, `probe` and every refusal still come from the parse.

_POSTGRES = sqlglot.Dialect.get_or_raise("postgres")
# An unquoted name as PostgreSQL writes one (as to_regclass reads it).
_PLAIN_NAME = re.compile(r"[^\W\d$][\w$]*")
# Tokens that may follow a table's name in FROM or JOIN.
_AFTER_TABLE = frozenset(
    {
        TokenType.COMMA,
        TokenType.R_PAREN,
        TokenType.ALIAS,
        TokenType.VAR,
        TokenType.IDENTIFIER,
        TokenType.WHERE,
        TokenType.GROUP_BY,
        TokenType.ORDER_BY,
        TokenType.HAVING,
        TokenType.LIMIT,
        TokenType.OFFSET,
        TokenType.WINDOW,
        TokenType.UNION,
        TokenType.EXCEPT,
        TokenType.INTERSECT,
        TokenType.JOIN,
        TokenType.INNER,
        TokenType.LEFT,
        TokenType.RIGHT,
        TokenType.FULL,
        TokenType.CROSS,
        TokenType.NATURAL,
        TokenType.ON,
        TokenType.USING,
    }
)
_OPENING = {TokenType.R_PAREN: TokenType.L_PAREN, TokenType.R_BRACKET: TokenType.L_BRACKET}


def tables_surely_read(sql: str) -> list[str] | None:
    """The tables `sql` surely reads, from its tokens alone, as names for to_regclass; None
    when the tokens leave any doubt that the full route could be other than `engine` should one
    of them be protected (the caller then parses).

    A name counts when it follows FROM or JOIN at the top level or directly inside a
    parenthesized SELECT (not `IS DISTINCT FROM`, nor the FROM of extract, substring or trim,
    which sit in a function's parentheses), is one or two plain or quoted names, and is
    followed by what may follow a table (not `(`: a function)."""
    try:
        tokens = _POSTGRES.tokenize(sql)
    except (TokenError, ValueError):
        return None
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens or tokens[0].token_type != TokenType.SELECT or _may_not_be_engine(tokens):
        return None
    names = []
    opened: list[tuple[TokenType, bool]] = []  # each open bracket, and whether a query starts in it
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind in (TokenType.L_PAREN, TokenType.L_BRACKET):
            starts_query = i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.SELECT
            opened.append((kind, kind == TokenType.L_PAREN and starts_query))
        elif kind in _OPENING:
            if not opened or opened.pop()[0] != _OPENING[kind]:
                return None
        elif (
            kind in (TokenType.FROM, TokenType.JOIN)
            and (not opened or opened[-1][1])
            and tokens[i - 1].token_type != TokenType.DISTINCT
        ):
            name = _table_name(tokens, i + 1)
            if name is not None:
                names.append(name)
    return names if names and not opened else None


def _may_not_be_engine(tokens: Sequence[Token]) -> bool:
    """True when the full route could differ from `engine`: several statements, a WITH, or
    what could make a type probe (FALSE, a comparison of two constants, a LIMIT that is not a
    positive integer). Checked anywhere in the text, which errs on the side of parsing."""
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind in (TokenType.SEMICOLON, TokenType.WITH, TokenType.FALSE):
            return True
        if kind == TokenType.LIMIT and not _positive_integer(tokens, i + 1):
            return True
        if (
            kind in _PROBE_COMPARISONS
            and 0 < i < len(tokens) - 1
            and tokens[i - 1].token_type in _CONSTANTS
            and tokens[i + 1].token_type in _CONSTANTS
        ):
            return True
    return False


def _positive_integer(tokens: Sequence[Token], i: int) -> bool:
    if i >= len(tokens) or tokens[i].token_type != TokenType.NUMBER:
        return False
    text = tokens[i].text
    return text.isascii() and text.isdigit() and int(text) > 0


def _table_name(tokens: Sequence[Token], start: int) -> str | None:
    """The name of one or two parts from tokens[start], if a table's name surely ends there."""
    parts = []
    i = start
    while i < len(tokens) and len(parts) < 3:
        token = tokens[i]
        if token.token_type == TokenType.VAR and _PLAIN_NAME.fullmatch(token.text):
            parts.append(token.text)
        elif token.token_type == TokenType.IDENTIFIER and "\x00" not in token.text:
            parts.append(sqltext.identifier(token.text))
        else:
            return None
        i += 1
        if i < len(tokens) and tokens[i].token_type == TokenType.DOT:
            i += 1
            continue
        break
    else:
        return None
    if len(parts) > 2 or (i < len(tokens) and tokens[i].token_type not in _AFTER_TABLE):
        return None
    return ".".join(parts)


def route(statements: Sequence[exp.Expression], is_protected: Callable[[str], bool]) -> Route:
    """The route of a client's statement text (one or several statements)."""
    for statement in statements:
        _refuse_wrapped_protected_query(statement, is_protected)
    protected = [s for s in statements if _reads_protected(s, is_protected)]
    if not protected:
        return Route.PASS
    if len(statements) == 1 and copied_query(statements[0]) is not None:
        return Route.ENGINE  # COPY (query) TO STDOUT: the server copies out the engine's rows
    if any(isinstance(s, exp.Copy) for s in protected):
        raise RoutingError(
            "COPY is not available for personal or cell-key tables",
            sqlstate=INSUFFICIENT_PRIVILEGE,
            hint="query them with SELECT, or COPY (SELECT ...) TO STDOUT; answers are "
            "anonymized per bucket",
        )
    if len(statements) != 1:
        raise RoutingError(
            "a query that reads personal or cell-key tables must be sent alone",
            hint="send each statement in its own query",
        )
    tree = statements[0]
    if not isinstance(tree, _QUERY_ROOTS):
        return Route.PASS  # EXPLAIN, INSERT ... SELECT, CREATE TABLE AS: the server's privileges
    return Route.PROBE if is_probe(tree) else Route.ENGINE


def _reads_protected(statement: exp.Expression, is_protected: Callable[[str], bool]) -> bool:
    return any(is_protected(read.text) for read in reads.tables_read(statement))


def copied_query(tree: exp.Expression) -> exp.Expression | None:
    """The query of `COPY (query) TO STDOUT`, or None for any other statement."""
    if not isinstance(tree, exp.Copy) or tree.args.get("kind") is not False:
        return None
    files = tree.args.get("files") or []
    target = files[0] if len(files) == 1 else None
    if not (isinstance(target, exp.Identifier) and not target.quoted):
        return None
    if target.name.upper() != "STDOUT" or not isinstance(tree.this, exp.Subquery):
        return None
    query = tree.this.this
    return query if isinstance(query, _QUERY_ROOTS) else None


def copy_out(sql: str, fetch: str) -> str:
    """The client's `COPY (query) TO STDOUT [options]` with `fetch` in place of its query: the
    server copies out the engine's rows in the format the client's options ask for. Those
    options are the client's own text, run as the client's role."""
    tokens = sqlglot.Dialect.get_or_raise("postgres").tokenize(sql)
    depth = 0
    opened = None
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            if opened is None:
                opened = token
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
            if opened is not None and depth == 0:
                return f"{sql[: opened.start]}({fetch}){sql[token.end + 1 :]}"
    raise RoutingError("COPY (query) TO STDOUT has no query in parentheses", sqlstate="42601")


# `PREPARE name [(types)] AS statement` and `EXPLAIN [(options) | ANALYZE | VERBOSE] statement`,
# which sqlglot leaves unparsed: the statement they wrap.
_PREPARED = re.compile(
    r'\s*(?:"(?:[^"]|"")*"|[^\s(]+)\s*(?:\((?:[^()]|\([^()]*\))*\))?\s*AS\s+(.*)',
    re.IGNORECASE | re.DOTALL,
)
_EXPLAINED = re.compile(
    r"\s*(?:\((?:[^()]|\([^()]*\))*\)\s*)?(?:(?:ANALYZE|ANALYSE|VERBOSE)\s+)*(.*)",
    re.IGNORECASE | re.DOTALL,
)


def _refuse_wrapped_protected_query(
    statement: exp.Expression, is_protected: Callable[[str], bool]
) -> None:
    """PREPARE and EXPLAIN of a statement over protected tables: a clear refusal rather than
    the server's permission error (the front answers only statements it can route)."""
    if not isinstance(statement, exp.Command) or not isinstance(statement.expression, exp.Literal):
        return
    command = str(statement.this).upper()
    pattern = {"PREPARE": _PREPARED, "EXPLAIN": _EXPLAINED}.get(command)
    match = pattern.fullmatch(statement.expression.this) if pattern else None
    wrapped = parse_statements(match[1]) if match else None
    if not wrapped or not any(_reads_protected(s, is_protected) for s in wrapped):
        return
    if command == "PREPARE":
        raise RoutingError(
            "PREPARE of a statement over personal or cell-key tables is not available "
            "through pldiffix proxy",
            hint="use your driver's prepared statements (the extended protocol), which the "
            "proxy answers, or send the query itself",
        )
    raise RoutingError(
        "EXPLAIN of a query over personal or cell-key tables is not available",
        hint="a plan describes the protected rows; send the query itself to get its "
        "anonymized answer",
    )


def is_probe(tree: exp.Expression) -> bool:
    """True for a SELECT that asks only for its columns: LIMIT 0, or a WHERE that is false."""
    if not isinstance(tree, exp.Select):
        return False
    limit = tree.args.get("limit")
    if isinstance(limit, exp.Limit) and _is_zero(limit.expression):
        return True
    where = tree.args.get("where")
    return isinstance(where, exp.Where) and _constant_false(where.this)


def _is_zero(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and node.this in ("0", 0)


_COMPARISONS: dict[type, Callable[[object, object], bool]] = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
}


# The tokens that parse to the comparisons above, and those that may parse to a constant: a
# text with such a comparison of two constants may be a type probe (tables_surely_read).
_PROBE_COMPARISONS = frozenset(
    token
    for token, node in {
        **_POSTGRES.parser_class.EQUALITY,
        **_POSTGRES.parser_class.COMPARISON,
    }.items()
    if node in _COMPARISONS
)
_CONSTANTS = frozenset({TokenType.NUMBER, *(t for t in TokenType if t.name.endswith("STRING"))})


def _constant_false(node: exp.Expression) -> bool:
    node = node.unnest() if isinstance(node, exp.Paren) else node
    if isinstance(node, exp.Boolean):
        return node.this is False
    if isinstance(node, exp.And):
        return _constant_false(node.left) or _constant_false(node.right)
    compare = _COMPARISONS.get(type(node))
    if compare is None:
        return False
    left, right = node.left, node.right
    if not (isinstance(left, exp.Literal) and isinstance(right, exp.Literal)):
        return False
    if left.is_string != right.is_string:
        return False
    if left.is_string:
        return not compare(left.this, right.this)
    try:
        return not compare(float(left.this), float(right.this))
    except ValueError:
        return False


def inline_parameters(
    tree: exp.Expression, values: Sequence[str | None], types: Sequence[str | None]
) -> exp.Expression:
    """`tree` with each $n replaced by its bound value as a typed literal (diffix.query takes
    no parameters). `types` are format_type() names, None where the server left it unknown."""

    def replace(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Parameter):
            return node
        position = _parameter_number(node)
        if position is None or not 1 <= position <= len(values):
            raise RoutingError(
                f"there is no value bound for parameter {node.sql(dialect='postgres')}",
                sqlstate="08P01",
            )
        value, type_name = values[position - 1], types[position - 1]
        literal = exp.Null() if value is None else exp.Literal.string(value)
        if not type_name:
            return literal
        return exp.Cast(this=literal, to=exp.DataType.build(type_name, dialect="postgres"))

    return tree.copy().transform(replace)


def _parameter_number(node: exp.Parameter) -> int | None:
    inner = node.this
    text = inner.this if isinstance(inner, exp.Literal) else None
    return int(text) if isinstance(text, str) and text.isdigit() else None


def fetch_statement(
    names: Sequence[str],
    engine_types: Sequence[str],
    client_types: Sequence[str] | None,
    *,
    token: int | None = None,
) -> str:
    """The statement that hands out the rows kept under a token, under the query's own column
    names (repeats allowed) and, when the client was told them, its Describe types. The token is
    its parameter $1 (bigint), or `token` inlined (COPY takes no parameters).

    Every name is quoted and every type comes from format_type(): nothing of the client's text
    is pasted into it.
    """
    columns = ", ".join(f"c{i} {typ}" for i, typ in enumerate(engine_types, 1))
    outputs = []
    for i, name in enumerate(names, 1):
        value = f"t.c{i}"
        if client_types is not None and client_types[i - 1] != engine_types[i - 1]:
            value = f"CAST({value} AS {client_types[i - 1]})"
        outputs.append(f"{value} AS {sqltext.identifier(name)}")
    argument = "$1" if token is None else str(int(token))
    source = f"diffix._proxy_rows({argument})"
    return f"SELECT {', '.join(outputs)} FROM {source} AS t({columns})"
