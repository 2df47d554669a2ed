"""The one place that writes names and values into SQL text (and reads names as PostgreSQL folds
them).

SQL that pldiffix generates runs inside definer functions, so its meaning must not depend on the
caller's session: a literal like 'a\\' is the one-character-plus-backslash string with
standard_conforming_strings on, and an unterminated quote with it off. Every string literal is
therefore written so that it reads the same under any setting of standard_conforming_strings and
backslash_quote: plain quotes when it holds no backslash, an E'' string with backslashes doubled
when it does (E'' strings ignore standard_conforming_strings; a doubled quote is never `\\'`).

`POSTGRES` is sqlglot's PostgreSQL dialect with every kind of string constant (plain, E'',
dollar-quoted, U&'') rendered through `literal`; pldiffix renders every tree with it.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.generators.postgres import PostgresGenerator


class UnsafeText(ValueError):
    """A name or value that cannot be written into SQL (it contains a NUL character)."""


def identifier(name: str) -> str:
    """A quoted identifier: "name" with embedded double quotes doubled."""
    if "\x00" in name:
        raise UnsafeText("identifiers cannot contain NUL characters")
    return '"' + name.replace('"', '""') + '"'


def ident_name(node: exp.Expression | str | None) -> str:
    """An identifier as PostgreSQL folds it: unquoted names in lower case."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.lower()
    if isinstance(node, exp.Identifier):
        return node.this if node.quoted else node.this.lower()
    if isinstance(node, exp.Star):
        return "*"
    return node.name.lower()


def qualified(schema: str, name: str) -> str:
    return f"{identifier(schema)}.{identifier(name)}"


def literal(value: str) -> str:
    """A string constant that PostgreSQL reads as `value` whatever the session's settings."""
    if "\x00" in value:
        raise UnsafeText("text values cannot contain NUL characters")
    quoted = value.replace("'", "''")
    if "\\" not in value:
        return f"'{quoted}'"
    return "E'" + quoted.replace("\\", "\\\\") + "'"


def typed_literal(value: str, type_name: str) -> str:
    """CAST('value' AS type): `type_name` must come from format_type() or a fixed list."""
    return f"CAST({literal(value)} AS {type_name})"


_UNICODE_ESCAPE = re.compile(r"\\(\\|[0-9A-Fa-f]{4}|\+[0-9A-Fa-f]{6})")


def _decoded_unicode(text: str) -> str:
    """The value of a U&'...' constant with the default escape character."""

    def code_point(match: re.Match[str]) -> str:
        digits = match.group(1)
        return "\\" if digits == "\\" else chr(int(digits.lstrip("+"), 16))

    return _UNICODE_ESCAPE.sub(code_point, text)


class _SafeStringsGenerator(PostgresGenerator):
    def literal_sql(self, expression: exp.Literal) -> str:
        if expression.is_string:
            return literal(expression.this or "")
        return super().literal_sql(expression)

    def bytestring_sql(self, expression: exp.ByteString) -> str:
        if expression.args.get("is_bytes"):
            return super().bytestring_sql(expression)
        return literal(expression.this or "")  # E'...': sqlglot keeps the decoded value

    def rawstring_sql(self, expression: exp.RawString) -> str:
        return literal(expression.this or "")  # $$...$$

    def unicodestring_sql(self, expression: exp.UnicodeString) -> str:
        if expression.args.get("escape"):
            raise UnsafeText("U&'...' strings with UESCAPE are not supported")
        return literal(_decoded_unicode(expression.this or ""))


class POSTGRES(Postgres):
    """sqlglot's PostgreSQL dialect, writing string constants through `literal`."""

    Generator = _SafeStringsGenerator


def render(expression: exp.Expression) -> str:
    """The SQL text of a tree, safe to run under any session setting."""
    return expression.sql(dialect=POSTGRES)
