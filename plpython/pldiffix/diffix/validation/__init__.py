"""Validation of a Diffix query: core/validation/'s statement validator with Diffix's aggregates
(aggregates.py)."""

from __future__ import annotations

from pldiffix.core.query_model import ValidatedQuery
from pldiffix.core.relations import Catalog
from pldiffix.core.validation import ValidationError
from pldiffix.core.validation import validate as validate_statement

from .aggregates import DiffixAggregates

__all__ = ["ValidationError", "validate"]

_AGGREGATES = DiffixAggregates()


def validate(
    sql: str,
    catalog: Catalog,
    access_level: object,
    *,
    treat_unmarked_tables_as_public: bool = False,
) -> ValidatedQuery:
    """Validate analyst SQL for an anonymized access level (raises `ValidationError`)."""
    return validate_statement(
        sql,
        catalog,
        access_level,
        _AGGREGATES,
        treat_unmarked_tables_as_public=treat_unmarked_tables_as_public,
    )
