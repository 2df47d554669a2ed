"""The error raised for queries outside of the accepted SQL subset."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokens import Token, TokenType

from pldiffix.core import sqltext
from pldiffix.core.errors import (
    FEATURE_NOT_SUPPORTED,
    UserError,
)


class ValidationError(UserError):
    """A rejected query: what is not allowed, where, and what to write instead.

    `fragment` is the offending expression as SQL, `position` the 0-based offset of its first
    token in the analyst's text (None when unknown), `hint` a suggestion.
    """

    def __init__(
        self,
        message: str,
        *,
        fragment: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        sqlstate: str = FEATURE_NOT_SUPPORTED,
    ) -> None:
        super().__init__(message, sqlstate, hint)
        self.fragment = fragment
        self.position = position
        self.node: exp.Expression | None = None  # the offending node, to locate it in the text

    def detail_text(self) -> str | None:
        return f"offending expression: {self.fragment}" if self.fragment else None

    def __str__(self) -> str:
        text = self.message
        if self.fragment:
            text += f"\n  offending expression: {self.fragment}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "message": self.message,
            "fragment": self.fragment,
            "hint": self.hint,
            "position": self.position,
            "sqlstate": self.sqlstate,
        }


def render(node: exp.Expression | None) -> str | None:
    """The SQL text of an expression, for error messages."""
    if node is None:
        return None
    try:
        return sqltext.render(node)
    except Exception:  # rendering must never hide the real error
        return str(node)


def position_of(node: exp.Expression | None) -> int | None:
    """Offset of the leftmost token of `node` in the original text, when sqlglot recorded it."""
    if node is None:
        return None
    best: int | None = None
    for sub in node.walk():
        meta = sub._meta  # avoid creating empty meta dicts
        if meta and "start" in meta:
            start = meta["start"]
            if best is None or start < best:
                best = start
    return best


def error_at(
    node: exp.Expression | None,
    message: str,
    hint: str | None = None,
    *,
    sqlstate: str = FEATURE_NOT_SUPPORTED,
) -> ValidationError:
    """A `ValidationError` pointing at `node`."""
    error = ValidationError(
        message, fragment=render(node), hint=hint, position=position_of(node), sqlstate=sqlstate
    )
    error.node = node
    return error


def error_rendered(
    node: exp.Expression,
    message: str,
    hint: str | None = None,
    *,
    sqlstate: str = FEATURE_NOT_SUPPORTED,
) -> ValidationError:
    """Like `error_at`, but always show the expression as sqlglot renders it (for clauses whose
    extent in the original text cannot be told from token positions)."""
    return ValidationError(
        message, fragment=render(node), hint=hint, position=position_of(node), sqlstate=sqlstate
    )


def error_for_statement(statement: exp.Expression) -> ValidationError:
    """The error for a statement that is not a single SELECT."""
    kind = statement.key.upper() if statement.key else "this statement"
    if isinstance(statement, exp.Command):
        kind = str(statement.this).upper()
    return ValidationError(
        f"only a single SELECT statement is allowed, not {kind}",
        fragment=render(statement)[:200] if render(statement) else None,
        hint="diffix.query_json accepts one SELECT query (possibly with WITH, UNION and "
        "subqueries); run other statements through other means.",
    )


def attach_source(error: ValidationError, sql: str) -> None:
    """Replace the rendered fragment by the analyst's own text of the offending expression."""
    if error.node is None:
        return
    try:
        span = _source_span(sql, error.node)
    except Exception:  # locating is best effort
        span = None
    if span is not None:
        start, end = span
        error.fragment = sql[start : end + 1]
        error.position = start


_CALL_LIKE = (exp.Func, exp.Dot, exp.Window, exp.Filter)


def _source_span(sql: str, node: exp.Expression) -> tuple[int, int] | None:
    tokens: list[Token] = Postgres().tokenize(sql)
    by_start = {t.start: i for i, t in enumerate(tokens)}
    by_end = {t.end: i for i, t in enumerate(tokens)}
    metas = [n._meta for n in node.walk() if n._meta and "start" in n._meta]
    if not metas:
        return None
    i = by_start.get(min(m["start"] for m in metas))
    j = by_end.get(max(m["end"] for m in metas))
    if i is None or j is None:
        return None

    chain: list[exp.Expression] = []
    current: exp.Expression | None = node
    while current is not None:
        chain.append(current)
        current = next(iter(current.iter_expressions()), None)
    for layer in reversed(chain):  # innermost first: extend to the function name / CAST / (
        own = layer._meta
        if own and own.get("start") == tokens[i].start:
            continue
        if isinstance(layer, exp.Paren) and i > 0 and tokens[i - 1].token_type == TokenType.L_PAREN:
            i -= 1
            continue
        if isinstance(layer, exp.Neg) and i > 0 and tokens[i - 1].text == "-":
            i -= 1
            continue
        if isinstance(layer, exp.Not) and i > 0 and tokens[i - 1].token_type == TokenType.NOT:
            i -= 1
            continue
        if isinstance(layer, exp.Case):  # CASE [WHEN] <first operand>
            if i > 0 and tokens[i - 1].token_type == TokenType.WHEN:
                i -= 1
            if i > 0 and tokens[i - 1].token_type == TokenType.CASE:
                i -= 1
            continue
        if not isinstance(layer, _CALL_LIKE):
            continue
        k = i - 1
        if isinstance(layer, exp.Extract):
            while k > 0 and tokens[k].token_type != TokenType.L_PAREN and i - k <= 3:
                k -= 1
        if k < 1 or tokens[k].token_type != TokenType.L_PAREN:
            continue
        name = tokens[k - 1]
        if not name.text or not (name.text[0].isalpha() or name.text[0] in '_"'):
            continue
        if isinstance(layer, exp.Cast) and name.text.upper() != "CAST":
            continue
        i = k - 1
        if i >= 2 and tokens[i - 1].token_type == TokenType.DOT:
            i -= 2

    depth = sum(map(_opens, tokens[i : j + 1]))  # unclosed ( and CASE
    while depth > 0 and j + 1 < len(tokens):
        j += 1
        depth += _opens(tokens[j])
    casts = 0
    current = node
    while isinstance(current, exp.Cast):
        casts += 1
        current = current.this
    while casts and j + 2 < len(tokens) and tokens[j + 1].token_type == TokenType.DCOLON:
        casts -= 1
        j += 2
        if j + 1 < len(tokens) and tokens[j + 1].token_type == TokenType.L_PAREN:
            while j + 1 < len(tokens) and tokens[j].token_type != TokenType.R_PAREN:
                j += 1
        while j + 2 < len(tokens) and tokens[j + 1].token_type == TokenType.L_BRACKET:
            j += 2
    return tokens[i].start, tokens[j].end


def _opens(token: Token) -> int:
    """+1 for a token that opens a bracketed construct ( ( or CASE), -1 for one that closes it."""
    if token.token_type in (TokenType.L_PAREN, TokenType.CASE):
        return 1
    if token.token_type in (TokenType.R_PAREN, TokenType.END):
        return -1
    return 0
