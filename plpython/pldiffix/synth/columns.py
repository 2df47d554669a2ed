"""How each column of a personal table becomes cells of marginals, and cells become values again.

Nothing here comes from the data: numeric and date columns are cut by bins an administrator
declared in the options, or into equal-width bins over the DP bounds (diffix.set_dp_bounds);
categorical columns take their values from a declared domain (diffix.set_dp_domain or the
options), a boolean's two values or an enum's labels. Cell 0 of every column holds NULL and
every value outside the declared categories; values outside the bins are clamped into the first
or last bin. The AID column gets synthetic identifiers; other text columns nobody declared get
placeholders ('synthetic_<row>'), any other undeclared column NULL: no raw value reaches a twin.
"""

from __future__ import annotations

import datetime
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pldiffix.core import sqltext
from pldiffix.core.errors import UserError

DEFAULT_BINS = 10
MAX_BINS = 1000
MAX_MODELED_COLUMNS = 32
MAX_PAIR_CELLS = 200_000  # cells of all two-way marginals: each gets an exact noise draw

INTEGER_TYPES = ("smallint", "integer", "bigint")
FLOAT_TYPES = ("real", "double precision")
TEXT_TYPES = ("text", "character varying", "character")
_EPOCH_DAY = datetime.date(1970, 1, 1)
_EPOCH = datetime.datetime(1970, 1, 1)


@dataclass(frozen=True)
class ColumnFacts:
    """What the catalog says about a column: its name, format_type() and base type name
    (format_type without a typmod), and the labels of an enum."""

    name: str
    sql_type: str
    base_type: str
    enum_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """One column of the twin.

    kind: "binned" (numeric, date or timestamp cut at `edges`), "categorical" (`categories`),
    "identifier" (the AID: synthetic identifiers), "placeholder" (undeclared text) or "null".
    """

    name: str
    sql_type: str
    kind: str
    scale: str = ""  # binned: integer | numeric | float | date | timestamp | timestamptz
    edges: tuple[float, ...] = ()  # binned: numbers (days for dates, seconds for timestamps)
    categories: tuple[str, ...] = ()
    source: str = ""  # where the cells came from, for the report

    @property
    def modeled(self) -> bool:
        return self.kind in ("binned", "categorical")

    @property
    def cells(self) -> int:
        """Cell 0 (NULL, other) and one per bin or category."""
        if self.kind == "binned":
            return len(self.edges)
        if self.kind == "categorical":
            return len(self.categories) + 1
        return 0

    def cell_sql(self, column: str) -> str:
        """The cell of a row: an int4 in [0, cells), total (no value can make it fail)."""
        if self.kind == "categorical":
            values = ", ".join(sqltext.literal(v) for v in self.categories)
            return (
                "COALESCE(pg_catalog.array_position(CAST(ARRAY["
                f"{values}] AS pg_catalog.text[]), CAST({column} AS pg_catalog.text)), 0)"
            )
        if self.kind != "binned":
            raise ValueError(f"column {self.name} has no cells")
        compare = _COMPARE_TYPES[self.scale]
        edges = ", ".join(sqltext.literal(text) for text in self.edge_texts())
        bins = len(self.edges) - 1
        return (
            "COALESCE(LEAST(GREATEST(pg_catalog.width_bucket("
            f"CAST({column} AS {compare}), CAST(ARRAY[{edges}] AS {compare}[])), 1), {bins}), 0)"
        )

    def edge_texts(self) -> list[str]:
        return [_value_text(self.scale, edge) for edge in self.edges]

    def cell_labels(self) -> list[str]:
        """What each cell holds, for reports: cell 0 first, then the bins or categories."""
        if self.kind == "categorical":
            return ["NULL or other", *self.categories]
        if self.kind != "binned":
            return []
        edges = [
            f"{edge:g}" if self.scale in _COMPARE_NUMBERS else _value_text(self.scale, edge)
            for edge in self.edges
        ]
        last = len(edges) - 2
        return ["NULL"] + [
            f"[{low}, {high}{']' if i == last else ')'}"
            for i, (low, high) in enumerate(itertools.pairwise(edges))
        ]


_COMPARE_NUMBERS = ("integer", "numeric", "float")
_COMPARE_TYPES = {
    "integer": "pg_catalog.numeric",
    "numeric": "pg_catalog.numeric",
    "float": "pg_catalog.float8",
    "date": "pg_catalog.date",
    "timestamp": "pg_catalog.timestamp",
    "timestamptz": "pg_catalog.timestamptz",
}


class SynthesisError(UserError):
    """A synthesis that cannot run as asked; nothing was spent."""


def scale_of(base_type: str) -> str | None:
    if base_type in INTEGER_TYPES:
        return "integer"
    if base_type == "numeric":
        return "numeric"
    if base_type in FLOAT_TYPES:
        return "float"
    if base_type == "date":
        return "date"
    if base_type == "timestamp without time zone":
        return "timestamp"
    if base_type == "timestamp with time zone":
        return "timestamptz"
    return None


def plan_columns(
    facts: Sequence[ColumnFacts],
    aid: str,
    bounds: Mapping[str, tuple[float, float]],
    domains: Mapping[str, Sequence[str]],
    options: Mapping[str, Any],
    selected: Sequence[str] | None,
) -> list[Column]:
    """The twin's columns, in the table's order. `selected` names the columns to model (None:
    every column that has declared cells); the others are identifiers, placeholders or NULL."""
    names = {f.name for f in facts}
    bins_option = _mapping(options, "bins")
    categories_option = _mapping(options, "categories")
    unknown = sorted((set(bins_option) | set(categories_option) | set(selected or ())) - names)
    if unknown:
        raise SynthesisError(f"no column named {', '.join(unknown)} in the table")
    if aid in (selected or ()) or aid in bins_option or aid in categories_option:
        raise SynthesisError(
            f"column {aid} is the AID: the twin gets synthetic identifiers for it",
            hint="leave the AID column out of the columns and options",
        )
    default_bins = _bin_count(options.get("default_bins", DEFAULT_BINS), "default_bins")
    planned = []
    for fact in facts:
        if fact.name == aid:
            planned.append(_identifier(fact))
            continue
        column = _declared(fact, bounds, domains, bins_option, categories_option, default_bins)
        wanted = selected is None or fact.name in selected
        if column is None or not wanted:
            if selected is not None and fact.name in selected:
                raise SynthesisError(
                    f"column {fact.name} has neither bins nor a domain to model it with",
                    hint="declare DP bounds (diffix.set_dp_bounds), a domain "
                    "(diffix.set_dp_domain), or bins in the options: "
                    '{"bins": {"column": [edge, edge, ...]}}',
                )
            kind = "placeholder" if fact.base_type in TEXT_TYPES else "null"
            planned.append(Column(fact.name, fact.sql_type, kind, source="not modeled"))
            continue
        planned.append(column)
    modeled = [column for column in planned if column.modeled]
    if len(modeled) > MAX_MODELED_COLUMNS:
        raise SynthesisError(
            f"at most {MAX_MODELED_COLUMNS} columns can be modeled",
            hint="name the columns to model in the columns argument",
        )
    pair_cells = sum(a.cells * b.cells for a, b in itertools.combinations(modeled, 2))
    if pair_cells > MAX_PAIR_CELLS:
        raise SynthesisError(
            f"the two-way marginals of the modeled columns have {pair_cells} cells, more than "
            f"{MAX_PAIR_CELLS}",
            hint="model fewer columns, or give them fewer bins or categories",
        )
    return planned


def _identifier(fact: ColumnFacts) -> Column:
    kind = "identifier" if fact.base_type in INTEGER_TYPES + TEXT_TYPES else "null"
    return Column(fact.name, fact.sql_type, kind, source="synthetic identifiers")


def _declared(
    fact: ColumnFacts,
    bounds: Mapping[str, tuple[float, float]],
    domains: Mapping[str, Sequence[str]],
    bins_option: Mapping[str, Any],
    categories_option: Mapping[str, Any],
    default_bins: int,
) -> Column | None:
    scale = scale_of(fact.base_type)
    if fact.name in bins_option:
        if scale is None:
            raise SynthesisError(
                f"column {fact.name} ({fact.sql_type}) cannot be binned",
                hint="bins apply to numeric, date and timestamp columns; give categories instead",
            )
        declared = bins_option[fact.name]
        if isinstance(declared, list):
            edges = _edges(fact.name, scale, declared)
            return Column(fact.name, fact.sql_type, "binned", scale, edges, source="declared bins")
        count = _bin_count(declared, f"bins of {fact.name}")
        if fact.name not in bounds:
            raise SynthesisError(
                f"{count} bins of column {fact.name} need its DP bounds",
                hint="CALL diffix.set_dp_bounds(table, column, lower, upper), or list the edges",
            )
        return _equal_width(fact, scale, bounds[fact.name], count)
    if fact.name in categories_option:
        return _categorical(fact, categories_option[fact.name], "declared categories")
    if fact.name in domains:
        return _categorical(fact, domains[fact.name], "DP domain")
    if scale is not None and fact.name in bounds:
        return _equal_width(fact, scale, bounds[fact.name], default_bins)
    if fact.base_type == "boolean":
        return Column(
            fact.name, fact.sql_type, "categorical", categories=("false", "true"), source="boolean"
        )
    if fact.enum_labels:
        return Column(
            fact.name,
            fact.sql_type,
            "categorical",
            categories=fact.enum_labels,
            source="enum labels",
        )
    return None


def _equal_width(fact: ColumnFacts, scale: str, bound: tuple[float, float], count: int) -> Column:
    lower, upper = bound
    width = (upper - lower) / count
    edges = (*(lower + i * width for i in range(count)), upper)
    return Column(fact.name, fact.sql_type, "binned", scale, edges, source="DP bounds")


def _categorical(fact: ColumnFacts, values: Any, source: str) -> Column:
    if (
        not isinstance(values, list | tuple)
        or not values
        or len(values) > 10000
        or not all(isinstance(v, str) for v in values)
        or len(set(values)) != len(values)
    ):
        raise SynthesisError(
            f"the categories of column {fact.name} must be 1 to 10000 distinct strings"
        )
    return Column(fact.name, fact.sql_type, "categorical", categories=tuple(values), source=source)


def _mapping(options: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = options.get(key, {})
    if not isinstance(value, dict):
        raise SynthesisError(f'option "{key}" must be an object keyed by column name')
    return value


def _bin_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BINS:
        raise SynthesisError(f"{what} must be a whole number of bins from 1 to {MAX_BINS}")
    return value


def _edges(name: str, scale: str, declared: list[Any]) -> tuple[float, ...]:
    try:
        edges = tuple(_edge_number(scale, value) for value in declared)
    except (TypeError, ValueError) as error:
        raise SynthesisError(f"the bins of column {name}: {error}") from None
    if not 2 <= len(edges) <= MAX_BINS + 1 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise SynthesisError(
            f"the bins of column {name} must be 2 to {MAX_BINS + 1} increasing edges"
        )
    return edges


def _edge_number(scale: str, value: Any) -> float:
    if scale == "date":
        if not isinstance(value, str):
            raise TypeError("date edges are ISO dates ('2024-01-31')")
        return float((datetime.date.fromisoformat(value) - _EPOCH_DAY).days)
    if scale in ("timestamp", "timestamptz"):
        if not isinstance(value, str):
            raise TypeError("timestamp edges are ISO timestamps ('2024-01-31 12:00')")
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
        return (moment - _EPOCH).total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError("numeric edges are finite numbers")
    return float(value)


def _value_text(scale: str, number: float) -> str:
    if scale == "date":
        return (_EPOCH_DAY + datetime.timedelta(days=int(number))).isoformat()
    if scale in ("timestamp", "timestamptz"):
        text = (_EPOCH + datetime.timedelta(seconds=number)).isoformat(sep=" ")
        return text + ("+00" if scale == "timestamptz" else "")
    return repr(float(number))


def values_in_cells(column: Column, cells: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Text values for sampled cells of a binned column: uniform inside each bin (whole numbers
    for integer columns and dates, whole seconds for timestamps); "" (NULL) for cell 0."""
    edges = np.asarray(column.edges)
    bins = len(edges) - 1
    index = np.clip(cells, 1, bins) - 1
    lower, upper = edges[index], edges[index + 1]
    if column.scale in ("integer", "date", "timestamp", "timestamptz"):
        # whole values v with lower <= v < upper; the last bin includes its upper edge
        first = np.ceil(lower)
        last = np.where(index == bins - 1, np.floor(upper), np.ceil(upper) - 1)
        last = np.maximum(last, first)
        drawn = first + np.floor(rng.random(cells.size) * (last - first + 1))
        texts = _whole_texts(column.scale, np.minimum(drawn, last).astype(np.int64))
    else:
        drawn = lower + rng.random(cells.size) * (upper - lower)
        texts = list(map(repr, drawn.tolist()))
    for position in np.flatnonzero(cells == 0).tolist():
        texts[position] = ""
    return texts


def _whole_texts(scale: str, drawn: np.ndarray) -> list[str]:
    if scale == "date":
        return np.datetime_as_string(drawn.astype("datetime64[D]")).tolist()
    if scale == "timestamp":
        return np.datetime_as_string(drawn.astype("datetime64[s]")).tolist()
    if scale == "timestamptz":
        return [t + "+00" for t in np.datetime_as_string(drawn.astype("datetime64[s]")).tolist()]
    return list(map(str, drawn.tolist()))
