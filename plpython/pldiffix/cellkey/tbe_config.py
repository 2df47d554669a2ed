"""Cell-key ("TBE") configurations: parameters, p- and s-matrices, scope-key declarations and
numeric range labels, parsed and validated. Pure Python, standard library only.

The perturbation that reads a configuration is `cellkey/tbe.py`; definitions: docs/tbe.md.

Longer than the ~600 lines modules aim for: it is one input format (the seed's configuration
files and the project's inline form), whose parts refer to each other (matrices to the
parameters, scope keys and ranges to the field declarations) and are validated together.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pldiffix.core import sqltext
from pldiffix.core.errors import UserError

Number = int | float | Decimal
IntMatrix = tuple[tuple[int, ...], ...]
FloatMatrix = tuple[tuple[float, ...], ...]

TRANSFORM_NAME = "tbe_perturb"

# Parameters in the seed's format, plus the project's inline alternatives to the *_filename ones.
FILE_PARAMETERS = {
    "p_filename": "p_matrix",
    "s_filename": "s_matrix",
    "scope_p_filename": "scope_p_matrix",
    "primitive_scope_key_declarations_filename": "primitive_scope_key_declarations",
}
PARAMETER_NAMES = frozenset(
    {
        "record_key_name",
        "value_tiebreaker_name",
        "bigN",
        "smallN",
        "smallC",
        "m",
        "use_additive_scope_perturbation",
        "path",
        *FILE_PARAMETERS,
        *FILE_PARAMETERS.values(),
    }
)


class TbeConfigError(UserError, ValueError):
    """The TBE configuration (parameters, matrices or scope key declarations) is invalid."""

    message_prefix = "invalid configuration: "


class TbeInputError(UserError, ValueError):
    """A cell's input or a scope is inconsistent with the configuration."""


# --------------------------------------------------------------------------------------------
# Index functions and record keys
# --------------------------------------------------------------------------------------------


def row_index(key: int, big_n: int, small_n: int) -> int:
    """row(key) = floor(key * smallN / bigN), for key in [0, bigN)."""
    if not 0 <= key < big_n:
        raise TbeInputError(f"key {key} is outside [0, bigN={big_n})")
    return key * small_n // big_n


def col_index(n: int, small_c: int) -> int:
    """col(n) = min(n, smallC) - 1, defined for n >= 1."""
    if n < 1:
        raise TbeInputError(f"column index is defined only for counts >= 1, got {n}")
    return min(n, small_c) - 1


def validate_record_key(key: Any, big_n: int) -> int:
    """A single record key as an int, or a TbeInputError if it is not an integer in [0, bigN)."""
    value = as_int(key, "record key")
    if not 0 <= value < big_n:
        raise TbeInputError(f"record key {value} is outside [0, bigN={big_n})")
    return value


# --------------------------------------------------------------------------------------------
# Numeric range labels ("<0", "0-19.99", ">=100.01", "3")
# --------------------------------------------------------------------------------------------

_NUMBER = r"-?\d+(?:\.\d+)?"
_BOUND_RE = re.compile(rf"^\s*(<=|>=|<|>)\s*({_NUMBER})\s*$")
_INTERVAL_RE = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*$")
_POINT_RE = re.compile(rf"^\s*({_NUMBER})\s*$")


@dataclass(frozen=True)
class NumericRange:
    """One declared minimal range of a numeric field; a bound of None is unbounded."""

    label: str
    low: Decimal | None
    low_inclusive: bool
    high: Decimal | None
    high_inclusive: bool

    def contains(self, value: Number) -> bool:
        # Floats are compared with the float nearest to each bound, so that a float8 column holding
        # 39.99 matches "20-39.99" just as `col <= 39.99` does in PostgreSQL.
        def bound(b: Decimal) -> Number:
            return float(b) if isinstance(value, float) else b

        if self.low is not None:
            lo = bound(self.low)
            if value < lo or (value == lo and not self.low_inclusive):
                return False
        if self.high is not None:
            hi = bound(self.high)
            if value > hi or (value == hi and not self.high_inclusive):
                return False
        return True

    def sql_condition(self, expr: str) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{expr} {'>=' if self.low_inclusive else '>'} {self.low}")
        if self.high is not None:
            parts.append(f"{expr} {'<=' if self.high_inclusive else '<'} {self.high}")
        return " AND ".join(parts) if parts else "TRUE"


def parse_range_label(label: str) -> NumericRange:
    """Parse a range name: "<x", "<=x", ">x", ">=x", "a-b" (both ends inclusive) or a point "x"."""
    if m := _BOUND_RE.match(label):
        op, num = m.group(1), Decimal(m.group(2))
        if op.startswith("<"):
            return NumericRange(label, None, False, num, op == "<=")
        return NumericRange(label, num, op == ">=", None, False)
    if m := _INTERVAL_RE.match(label):
        low, high = Decimal(m.group(1)), Decimal(m.group(2))
        if low > high:
            raise ValueError(f"range {label!r} is empty: {low} > {high}")
        return NumericRange(label, low, True, high, True)
    if m := _POINT_RE.match(label):
        num = Decimal(m.group(1))
        return NumericRange(label, num, True, num, True)
    raise ValueError(
        f"{label!r} is not a range name (expected <x, <=x, >x, >=x, a-b or a single number)"
    )


def _check_disjoint(field_name: str, ranges: Sequence[NumericRange]) -> None:
    def start(r: NumericRange) -> tuple[int, Decimal, int]:
        # Unbounded first; at equal bounds an inclusive start comes first.
        if r.low is None:
            return (0, Decimal(0), 0)
        return (1, r.low, 0 if r.low_inclusive else 1)

    ordered = sorted(ranges, key=start)
    reach: NumericRange | None = None  # the range reaching furthest up among those seen so far
    for r in ordered:
        if reach is not None:
            if reach.high is None:
                raise TbeConfigError(
                    f"{field_name}: ranges {reach.label!r} and {r.label!r} overlap"
                )
            if (
                r.low is None
                or r.low < reach.high
                or (r.low == reach.high and reach.high_inclusive and r.low_inclusive)
            ):
                raise TbeConfigError(
                    f"{field_name}: ranges {reach.label!r} and {r.label!r} overlap"
                )
        if (
            reach is None
            or r.high is None
            or (reach.high is not None and r.high > reach.high)
            or (r.high == reach.high and r.high_inclusive)
        ):
            reach = r


# --------------------------------------------------------------------------------------------
# Primitive scope key declarations
# --------------------------------------------------------------------------------------------

NULL_LABEL = ""  # the value name declaring the key of a field's NULL sentinel


def _field_id(name: str) -> str:
    # PostgreSQL folds unquoted identifiers to lower case, Protari's sample uses upper case.
    return name.casefold()


@dataclass(frozen=True)
class ScopeKeyDeclarations:
    """Primitive scope keys: field -> value (or range) name -> key, each field summing to 1 mod N.

    Field names match case-insensitively; value names exactly. The empty value name is the NULL
    sentinel.
    """

    big_n: int
    fields: Mapping[str, Mapping[str, int]]
    _by_id: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _ranges: dict[str, tuple[NumericRange, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.big_n, bool) or not isinstance(self.big_n, int) or self.big_n <= 0:
            raise TbeConfigError(f"bigN must be a positive integer, got {self.big_n!r}")
        if not self.fields:
            raise TbeConfigError("primitive scope key declarations: no fields declared")
        frozen = {name: dict(values) for name, values in self.fields.items()}
        object.__setattr__(self, "fields", frozen)
        for name, values in frozen.items():
            if not isinstance(name, str) or not name:
                raise TbeConfigError(f"primitive scope key declarations: bad field name {name!r}")
            if "@" in name:
                raise TbeConfigError(
                    f"field {name!r}: longitudinal values (FIELD@2000) are not supported"
                )
            other = self._by_id.get(_field_id(name))
            if other is not None:
                raise TbeConfigError(
                    f"fields {other!r} and {name!r} differ only in case; declare each field once"
                )
            self._by_id[_field_id(name)] = name
            if not values:
                raise TbeConfigError(f"field {name!r}: no values declared")
            for label, key in values.items():
                if not isinstance(label, str):
                    raise TbeConfigError(f"field {name!r}: value name {label!r} is not a string")
                if isinstance(key, bool) or not isinstance(key, int):
                    raise TbeConfigError(
                        f"field {name!r}, value {label!r}: key {key!r} is not an integer"
                    )
                if not 0 <= key < self.big_n:
                    raise TbeConfigError(
                        f"field {name!r}, value {label!r}: key {key} is outside "
                        f"[0, bigN={self.big_n})"
                    )
            total = sum(values.values()) % self.big_n
            if total != 1 % self.big_n:
                raise TbeConfigError(
                    f"field {name!r}: primitive scope keys sum to {total} mod bigN={self.big_n}, "
                    f"expected 1"
                )

    # -- lookup ---------------------------------------------------------------------------

    def field_name(self, name: str) -> str:
        """The declared spelling of a field, or a TbeInputError if it is not declared."""
        if "@" in name:
            raise TbeInputError(
                f"field {name!r}: longitudinal values (FIELD@2000) are not supported"
            )
        try:
            return self._by_id[_field_id(name)]
        except KeyError:
            raise TbeInputError(f"field {name!r} has no primitive scope key declarations") from None

    def key(self, field_name: str, label: str | None) -> int:
        name = self.field_name(field_name)
        text = _label_text(name, label)
        try:
            return self.fields[name][text]
        except KeyError:
            shown = "NULL" if text == NULL_LABEL else repr(text)
            raise TbeInputError(
                f"field {name!r}: value {shown} has no primitive scope key"
            ) from None

    def field_scope_key(self, field_name: str, labels: Iterable[str | None]) -> int:
        """Sum of the primitive keys of the field's distinct values in scope, mod bigN."""
        distinct = {_label_text(field_name, label) for label in labels}
        if not distinct:
            raise TbeInputError(f"field {field_name!r}: empty scope (no values)")
        return sum(self.key(field_name, label) for label in distinct) % self.big_n

    def canonical_condition(
        self, field_name: str, labels: Iterable[str | None]
    ) -> tuple[str, ...] | None:
        """A WHERE condition's value set in canonical form: the declared value names it admits
        (NULL as the sentinel; undeclared names dropped: they match no record), distinct and
        sorted; None when it admits every declared value, which is no restriction at all."""
        name = self.field_name(field_name)
        declared = self.fields[name]
        admitted = {_label_text(name, label) for label in labels} & set(declared)
        if admitted == set(declared):
            return None
        return tuple(sorted(admitted))

    def scope_key(self, scope: Mapping[str, Iterable[str | None]]) -> int:
        """Product over the scope's fields of their field scope keys, mod bigN (1 if empty)."""
        result = 1 % self.big_n
        seen: dict[str, str] = {}
        for name, labels in scope.items():
            declared = self.field_name(name)
            if declared in seen:
                raise TbeInputError(f"field {declared!r} appears twice in the scope")
            seen[declared] = name
            result = result * self.field_scope_key(declared, labels) % self.big_n
        return result

    def check_complete(self, present: Mapping[str, Iterable[str | None]]) -> None:
        """Raise if a present field or value (None: NULL) has no declared key; lists all gaps."""
        problems: list[str] = []
        for name, labels in present.items():
            try:
                declared = self.field_name(name)
            except TbeInputError as exc:
                problems.append(str(exc))
                continue
            missing = sorted(
                {_label_text(declared, v) for v in labels} - set(self.fields[declared]),
            )
            if missing:
                shown = ", ".join("NULL" if v == NULL_LABEL else repr(v) for v in missing)
                problems.append(f"field {declared!r}: no primitive scope key for {shown}")
        if problems:
            raise TbeConfigError("incomplete scope key declarations: " + "; ".join(problems))

    # -- numeric ranges ---------------------------------------------------------------------

    def ranges(self, field_name: str) -> tuple[NumericRange, ...]:
        """The field's declared ranges (parsed and checked to be disjoint on first use)."""
        name = self.field_name(field_name)
        cached = self._ranges.get(name)
        if cached is None:
            parsed = []
            for label in self.fields[name]:
                if label == NULL_LABEL:
                    continue
                try:
                    parsed.append(parse_range_label(label))
                except ValueError as exc:
                    raise TbeConfigError(f"field {name!r}: {exc}") from None
            _check_disjoint(name, parsed)
            cached = self._ranges[name] = tuple(parsed)
        return cached

    def range_label(self, field_name: str, value: Number | None) -> str:
        """The declared range name containing a numeric value; NULL maps to the sentinel ""."""
        name = self.field_name(field_name)
        ranges = self.ranges(name)
        if value is None:
            if NULL_LABEL not in self.fields[name]:
                raise TbeInputError(f"field {name!r}: NULL has no declared key (value name '')")
            return NULL_LABEL
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise TbeInputError(f"field {name!r}: {value!r} is not a number")
        if value != value:  # NaN, float or Decimal
            raise TbeInputError(f"field {name!r}: NaN is in no declared range")
        for r in ranges:
            if r.contains(value):
                return r.label
        raise TbeInputError(f"field {name!r}: value {value} is in no declared range")

    def range_case_sql(self, field_name: str, expr: str) -> str:
        """A CASE expression computing range_label in SQL; values outside every range give NULL.

        `expr` is inserted verbatim (quote identifiers before passing them).
        """
        name = self.field_name(field_name)
        whens = []
        if NULL_LABEL in self.fields[name]:
            whens.append(f"WHEN {expr} IS NULL THEN ''")
        for r in self.ranges(name):
            whens.append(f"WHEN {r.sql_condition(expr)} THEN {sqltext.literal(r.label)}")
        return "CASE " + " ".join(whens) + " END"


def _label_text(field_name: str, label: str | None) -> str:
    if label is None:
        return NULL_LABEL
    if isinstance(label, str):
        return label
    raise TbeInputError(
        f"field {field_name!r}: value {label!r} is not a value name (a string); "
        "map numbers to their range name with range_label first"
    )


def parse_declarations(
    source: str | Sequence[Sequence[Any]], big_n: int, origin: str = "declarations"
) -> ScopeKeyDeclarations:
    """Declarations from CSV text (no header: field, value or range, key) or a list of rows."""
    rows: list[tuple[int, Sequence[Any]]]
    if isinstance(source, str):
        reader = csv.reader(io.StringIO(source))
        rows = [(reader.line_num, row) for row in reader]
    elif isinstance(source, Sequence):
        rows = [(i + 1, row) for i, row in enumerate(source)]
    else:
        raise TbeConfigError(f"{origin}: expected CSV text or a list of rows")
    fields: dict[str, dict[str, int]] = {}
    for line, row in rows:
        if isinstance(row, str) or not isinstance(row, Sequence):
            raise TbeConfigError(f"{origin} line {line}: expected a row [field, value, key]")
        if not row or all(str(cell).strip() == "" for cell in row):
            continue
        if len(row) != 3:
            raise TbeConfigError(
                f"{origin} line {line}: expected 3 columns (field, value, key), got {len(row)}"
            )
        name, label, raw_key = row
        if not isinstance(name, str) or not name.strip():
            raise TbeConfigError(f"{origin} line {line}: empty field name")
        if "@" in name:
            raise TbeConfigError(
                f"{origin} line {line}: field {name!r}: longitudinal values (FIELD@2000) "
                "are not supported"
            )
        if not isinstance(label, str):
            raise TbeConfigError(f"{origin} line {line}: value name {label!r} is not a string")
        try:
            key = as_int(raw_key, "key")
        except TbeInputError:
            raise TbeConfigError(
                f"{origin} line {line}: key {raw_key!r} for {name},{label} is not an integer"
            ) from None
        values = fields.setdefault(name, {})
        if label in values:
            raise TbeConfigError(f"{origin} line {line}: {name},{label} is declared twice")
        values[label] = key
    if not fields:
        raise TbeConfigError(f"{origin}: no declarations")
    try:
        return ScopeKeyDeclarations(big_n, fields)
    except TbeConfigError as exc:
        raise TbeConfigError(f"{origin}: {exc}") from None


def generate_field_keys(
    big_n: int,
    labels: Sequence[str],
    fixed: Mapping[str, int] | None = None,
    randbelow: Callable[[int], int] = secrets.randbelow,
) -> dict[str, int]:
    """Primitive keys for one field's values, summing to 1 mod big_n.

    Keys in `fixed` are kept; the others are drawn with `randbelow` except the last free one,
    which balances the sum. Use the default (secrets) for real declarations.
    """
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(labels)
    if unknown:
        raise ValueError(f"fixed keys for undeclared values: {sorted(unknown)}")
    if len(set(labels)) != len(labels):
        raise ValueError("duplicate value names")
    free = [label for label in labels if label not in fixed]
    keys = {label: fixed.get(label, 0) for label in labels}
    for label in free[:-1]:
        keys[label] = randbelow(big_n)
    if free:
        others = sum(v for k, v in keys.items() if k != free[-1])
        keys[free[-1]] = (1 - others) % big_n
    elif sum(keys.values()) % big_n != 1 % big_n:
        raise ValueError("all keys are fixed and they do not sum to 1 mod bigN")
    return keys


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TbeConfig:
    """A validated TBE configuration; matrices are indexed [row][column] from 0."""

    record_key_name: str
    value_tiebreaker_name: str
    big_n: int
    small_n: int
    small_c: int
    m: tuple[float, ...]
    p_matrix: IntMatrix
    s_matrix: FloatMatrix
    scope_keys: ScopeKeyDeclarations | None = None
    use_additive_scope_perturbation: bool = False
    scope_p_matrix: IntMatrix | None = None  # None: the p-matrix

    def __post_init__(self) -> None:
        for name in ("record_key_name", "value_tiebreaker_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise TbeConfigError(f"{name} must be a non-empty string, got {value!r}")
        for name, value in (
            ("bigN", self.big_n),
            ("smallN", self.small_n),
            ("smallC", self.small_c),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise TbeConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.m:
            raise TbeConfigError("m must list at least one weight")
        if len(self.m) > self.small_c:
            raise TbeConfigError(f"m has {len(self.m)} weights, more than smallC={self.small_c}")
        for i, w in enumerate(self.m):
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
                raise TbeConfigError(f"m[{i}] must be a finite number, got {w!r}")
        object.__setattr__(self, "m", tuple(float(w) for w in self.m))
        shape = (self.small_n, self.small_c)
        object.__setattr__(self, "p_matrix", _int_matrix(self.p_matrix, "p-matrix", *shape))
        object.__setattr__(self, "s_matrix", _float_matrix(self.s_matrix, "s-matrix", *shape))
        if self.scope_p_matrix is not None:
            scope_p = _int_matrix(self.scope_p_matrix, "scope p-matrix", *shape)
            object.__setattr__(self, "scope_p_matrix", scope_p)
        if self.scope_keys is not None and self.scope_keys.big_n != self.big_n:
            raise TbeConfigError(
                f"scope key declarations use bigN={self.scope_keys.big_n}, config bigN={self.big_n}"
            )
        if self.use_additive_scope_perturbation and self.scope_keys is None:
            raise TbeConfigError(
                "use_additive_scope_perturbation needs primitive scope key declarations"
            )
        if self.scope_p_matrix is not None and not self.use_additive_scope_perturbation:
            raise TbeConfigError(
                "a scope p-matrix is only used with use_additive_scope_perturbation = true"
            )

    @property
    def scoped(self) -> bool:
        """Whether scope-based perturbation is on (declarations configured)."""
        return self.scope_keys is not None

    @property
    def effective_scope_p_matrix(self) -> IntMatrix:
        return self.scope_p_matrix if self.scope_p_matrix is not None else self.p_matrix

    def row(self, key: int) -> int:
        return row_index(key, self.big_n, self.small_n)

    def col(self, n: int) -> int:
        return col_index(n, self.small_c)

    def to_parameters(self) -> dict[str, Any]:
        """The configuration as seed-style parameters with everything inline (JSON-ready)."""
        params: dict[str, Any] = {
            "record_key_name": self.record_key_name,
            "value_tiebreaker_name": self.value_tiebreaker_name,
            "bigN": self.big_n,
            "smallN": self.small_n,
            "smallC": self.small_c,
            "m": list(self.m),
            "p_matrix": [list(r) for r in self.p_matrix],
            "s_matrix": [list(r) for r in self.s_matrix],
            "use_additive_scope_perturbation": self.use_additive_scope_perturbation,
        }
        if self.scope_p_matrix is not None:
            params["scope_p_matrix"] = [list(r) for r in self.scope_p_matrix]
        if self.scope_keys is not None:
            params["primitive_scope_key_declarations"] = [
                [name, label, key]
                for name, values in self.scope_keys.fields.items()
                for label, key in values.items()
            ]
        return params


def _shape_check(rows: Sequence[Sequence[Any]], name: str, small_n: int, small_c: int) -> None:
    if len(rows) != small_n:
        raise TbeConfigError(f"{name}: {len(rows)} rows, expected smallN={small_n}")
    for i, r in enumerate(rows):
        if len(r) != small_c:
            raise TbeConfigError(
                f"{name}: row {i + 1} has {len(r)} columns, expected smallC={small_c}"
            )


def _int_matrix(rows: Any, name: str, small_n: int, small_c: int) -> IntMatrix:
    rows = _rows(rows, name)
    _shape_check(rows, name, small_n, small_c)
    return tuple(
        tuple(_int_cell(v, f"{name} row {i + 1}, column {j + 1}") for j, v in enumerate(r))
        for i, r in enumerate(rows)
    )


def _float_matrix(rows: Any, name: str, small_n: int, small_c: int) -> FloatMatrix:
    rows = _rows(rows, name)
    _shape_check(rows, name, small_n, small_c)
    return tuple(
        tuple(_float_cell(v, f"{name} row {i + 1}, column {j + 1}") for j, v in enumerate(r))
        for i, r in enumerate(rows)
    )


def _rows(value: Any, name: str) -> list[Sequence[Any]]:
    if isinstance(value, str):
        return parse_matrix_csv(value)
    if isinstance(value, Sequence) and all(
        isinstance(r, Sequence) and not isinstance(r, str) for r in value
    ):
        return list(value)
    raise TbeConfigError(f"{name}: expected CSV text or a list of rows")


def parse_matrix_csv(text: str) -> list[list[str]]:
    """Rows of a matrix CSV file (no header); blank lines are skipped."""
    return [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]


def _int_cell(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise TbeConfigError(f"{where}: {value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise TbeConfigError(f"{where}: {value!r} is not an integer") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise TbeConfigError(f"{where}: {value!r} is not an integer (p-values must be integers)")
    return int(number)


def _float_cell(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise TbeConfigError(f"{where}: {value!r} is not a number")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise TbeConfigError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise TbeConfigError(f"{where}: {value!r} is not a finite number")
    return number


def as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TbeInputError(f"{what} {value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
    elif isinstance(value, float):
        if value.is_integer() and abs(value) <= 2**53:
            return int(value)
    elif isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise TbeInputError(f"{what} {value!r} is not an integer")


def transform_parameters(obj: Mapping[str, Any], transform: str) -> Mapping[str, Any]:
    """Accept {"transform_definitions": {...}}, the transform_definitions object, the transform
    object ({"parameters": ...}) or the bare parameters."""
    if "transform_definitions" in obj:
        obj = obj["transform_definitions"]
        if not isinstance(obj, Mapping) or transform not in obj:
            raise TbeConfigError(f"transform_definitions has no {transform!r} entry")
    if transform in obj:
        obj = obj[transform]
    elif any(isinstance(k, str) and k.endswith("_perturb") for k in obj):
        raise TbeConfigError(f"transform_definitions has no {transform!r} entry")
    if isinstance(obj, Mapping) and "parameters" in obj:
        obj = obj["parameters"]
    if not isinstance(obj, Mapping):
        raise TbeConfigError(f"{transform}: parameters must be a JSON object")
    return obj


def _file_or_inline(
    params: Mapping[str, Any], file_param: str, files: Mapping[str, str]
) -> tuple[Any, str] | None:
    inline_param = FILE_PARAMETERS[file_param]
    if file_param in params and inline_param in params:
        raise TbeConfigError(f"give either {file_param} or {inline_param}, not both")
    if inline_param in params:
        return params[inline_param], inline_param
    if file_param not in params:
        return None
    name = params[file_param]
    if not isinstance(name, str) or not name:
        raise TbeConfigError(f"{file_param} must be a non-empty file name, got {name!r}")
    for candidate in (name, name + ".csv"):
        if candidate in files:
            return files[candidate], f"{file_param} {name!r}"
    raise TbeConfigError(f"{file_param} {name!r}: no file {name}.csv was supplied")


def parse_config(obj: Mapping[str, Any] | str, files: Mapping[str, str] | None = None) -> TbeConfig:
    """Validate a TBE configuration in the seed's JSON format.

    `obj` is the dataset configuration, its transform_definitions, the tbe_perturb transform or
    just its parameters (a dict or JSON text). Matrices and declarations come inline
    (p_matrix, s_matrix, scope_p_matrix, primitive_scope_key_declarations: CSV text or lists of
    rows) or from `files`, which maps the *_filename names (with or without .csv) to CSV text.
    """
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise TbeConfigError(f"configuration is not valid JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise TbeConfigError("configuration must be a JSON object")
    params = transform_parameters(obj, TRANSFORM_NAME)
    files = files or {}
    unknown = sorted(set(params) - PARAMETER_NAMES)
    if unknown:
        raise TbeConfigError(f"{TRANSFORM_NAME}: unknown parameter(s): {', '.join(unknown)}")
    for required in ("record_key_name", "value_tiebreaker_name", "bigN", "smallN", "smallC", "m"):
        if required not in params:
            raise TbeConfigError(f"{TRANSFORM_NAME}: missing parameter {required!r}")
    for name in ("bigN", "smallN", "smallC"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise TbeConfigError(f"{name} must be a positive integer, got {value!r}")
    m = params["m"]
    if isinstance(m, str) or not isinstance(m, Sequence):
        raise TbeConfigError(f"m must be a list of numbers, got {m!r}")
    additive = params.get("use_additive_scope_perturbation", False)
    if not isinstance(additive, bool):
        raise TbeConfigError(
            f"use_additive_scope_perturbation must be true or false, got {additive!r}"
        )
    if "path" in params and not isinstance(params["path"], str):
        raise TbeConfigError(f"path must be a string, got {params['path']!r}")

    p_source = _file_or_inline(params, "p_filename", files)
    s_source = _file_or_inline(params, "s_filename", files)
    if p_source is None:
        raise TbeConfigError(f"{TRANSFORM_NAME}: missing parameter 'p_filename' (or p_matrix)")
    if s_source is None:
        raise TbeConfigError(f"{TRANSFORM_NAME}: missing parameter 's_filename' (or s_matrix)")
    scope_p_source = _file_or_inline(params, "scope_p_filename", files)
    decl_source = _file_or_inline(params, "primitive_scope_key_declarations_filename", files)

    declarations = None
    if decl_source is not None:
        declarations = parse_declarations(decl_source[0], params["bigN"], decl_source[1])

    # Build with the sources' names in error messages.
    base = dict(
        record_key_name=params["record_key_name"],
        value_tiebreaker_name=params["value_tiebreaker_name"],
        big_n=params["bigN"],
        small_n=params["smallN"],
        small_c=params["smallC"],
        m=tuple(m),
        scope_keys=declarations,
        use_additive_scope_perturbation=additive,
    )
    shape = (params["smallN"], params["smallC"])
    p_matrix = _int_matrix(p_source[0], p_source[1], *shape)
    s_matrix = _float_matrix(s_source[0], s_source[1], *shape)
    scope_p = None
    if scope_p_source is not None:
        scope_p = _int_matrix(scope_p_source[0], scope_p_source[1], *shape)
    return TbeConfig(p_matrix=p_matrix, s_matrix=s_matrix, scope_p_matrix=scope_p, **base)


def row_scope(
    where: Mapping[str, Iterable[str | None]], group: Mapping[str, str | None]
) -> dict[str, list[str | None]]:
    """An output row's scope: the WHERE's IN/= lists, with each grouped field narrowed to the
    row's own value. Field names are matched case-insensitively."""
    scope: dict[str, list[str | None]] = {}
    names: dict[str, str] = {}
    for name, values in where.items():
        fid = _field_id(name)
        if fid in names:
            raise TbeInputError(f"field {name!r} appears twice in the WHERE scope")
        names[fid] = name
        scope[name] = list(dict.fromkeys(values))
    for name, value in group.items():
        fid = _field_id(name)
        existing = names.get(fid)
        if existing is not None:
            if value not in scope[existing]:
                raise TbeInputError(f"group value {value!r} of {name!r} is outside the WHERE scope")
            scope[existing] = [value]
        else:
            names[fid] = name
            scope[name] = [value]
    return scope
