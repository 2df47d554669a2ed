"""The statement validator: analyst SQL against the subset a SELECT over personal tables may use
(trusted and untrusted analysts), shared by Diffix and DP.

`validate(sql, catalog, access_level, aggregates)` parses one SELECT statement with sqlglot,
resolves every relation, column and function through the catalog, and either raises
`ValidationError` (what is not allowed, where, and what to write instead) or returns a
`ValidatedQuery` (core/query_model.py). Which aggregate calls are accepted is the mechanism's
(`aggregates`, see aggregates.py): Diffix's are in diffix/validation/aggregates.py.

The rules follow pg_diffix (Fir) with two deliberate differences: `diffix.round_by` is rejected
for untrusted analysts, as the analyst guide says, and `avg()` of numeric columns is accepted.
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pldiffix.core import errors as sqlstate
from pldiffix.core.relations import Catalog

from ..query_model import ValidatedQuery
from .analyzer import analyze
from .context import TRUSTED, UNTRUSTED, AggregateRules
from .errors import (
    ValidationError,
    attach_source,
    error_at,
    error_for_statement,
    error_rendered,
)
from .pgcatalog import catalog_access_allowed

__all__ = [
    "TRUSTED",
    "UNTRUSTED",
    "AggregateRules",
    "ValidationError",
    "parse_statement",
    "validate",
]

_FORBIDDEN_NODES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Command,
    exp.Create,
    exp.Drop,
)


def parse_statement(sql: str) -> exp.Query:
    """Parse exactly one SELECT statement (PostgreSQL dialect)."""
    logger = logging.getLogger("sqlglot")
    previous = logger.level
    logger.setLevel(logging.ERROR)  # sqlglot warns when it falls back to Command
    try:
        statements = [s for s in sqlglot.parse(sql, dialect="postgres") if s is not None]
    except ParseError as error:
        details = error.errors[0] if error.errors else {}
        raise ValidationError(
            f"syntax error: {details.get('description') or error}",
            fragment=(details.get("highlight") or None),
            hint="Check the SQL syntax near the indicated position.",
            sqlstate=sqlstate.SYNTAX_ERROR,
        ) from None
    except TokenError as error:
        raise ValidationError(
            f"syntax error: {error}",
            hint="Check quotes and parentheses.",
            sqlstate=sqlstate.SYNTAX_ERROR,
        ) from None
    finally:
        logger.setLevel(previous)
    if not statements:
        raise ValidationError("the query is empty", hint="Write a SELECT statement.")
    if len(statements) > 1:
        raise error_rendered(
            statements[1],
            f"only a single statement is allowed, got {len(statements)}",
            "Send one SELECT per call and remove the extra semicolon-separated statements.",
        )
    statement = statements[0]
    if not isinstance(statement, (exp.Select, exp.SetOperation, exp.Subquery)):
        raise error_for_statement(statement)
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise error_for_statement(node)
    return statement


def validate(
    sql: str,
    catalog: Catalog,
    access_level: object,
    aggregates: AggregateRules,
    *,
    treat_unmarked_tables_as_public: bool = False,
    total_expressions: bool = False,
) -> ValidatedQuery:
    """Validate analyst SQL for an anonymized access level.

    `access_level` is "anonymized_trusted" or "anonymized_untrusted" (or an enum whose value is).
    `total_expressions` holds a trusted query to the untrusted level's rules against expressions
    that can fail on some row (totality.py), as DP needs. Raises `ValidationError`.
    """
    level = str(getattr(access_level, "value", access_level))
    if level not in (TRUSTED, UNTRUSTED):
        raise ValueError(f"validation applies to anonymized access levels, not {level!r}")
    try:
        return _validate(
            sql, catalog, level, aggregates, treat_unmarked_tables_as_public, total_expressions
        )
    except ValidationError as error:
        attach_source(error, sql)
        raise


def _validate(
    sql: str,
    catalog: Catalog,
    level: str,
    aggregates: AggregateRules,
    treat_unmarked_tables_as_public: bool,
    total_expressions: bool,
) -> ValidatedQuery:
    statement = parse_statement(sql)
    ast = statement.copy()
    analysis = analyze(
        ast,
        catalog,
        level,
        aggregates,
        treat_unmarked_tables_as_public=treat_unmarked_tables_as_public,
        total_expressions=total_expressions,
    )
    for source in analysis.catalog_sources:
        assert source.relation is not None
        columns = None if source.uses_all_columns else sorted(source.used_columns)
        if not catalog_access_allowed(source.relation.name, columns):
            raise error_at(
                source.node,
                f"pg_catalog.{source.relation.name} cannot be read in anonymized access level"
                + (f" (columns: {', '.join(columns)})" if columns else ""),
                "Statistics views and tables can reveal individual values; query the schema "
                "through information_schema or the allowed pg_catalog tables instead.",
                sqlstate=sqlstate.INSUFFICIENT_PRIVILEGE,
            )
    return ValidatedQuery(
        ast=ast,
        anonymizing=analysis.anonymizing,
        relations=list(analysis.relations.values()),
        functions=list(analysis.functions.values()),
        access_level=level,
    )
