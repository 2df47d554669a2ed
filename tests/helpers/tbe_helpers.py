"""Test-side references for the cell-key core: a configuration read from a directory of files,
the per-cell input SQL computes, and the weighted count the seed defines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pldiffix.cellkey.tbe import CellInput, SumInput, round_half_away_from_zero
from pldiffix.cellkey.tbe_config import (
    FILE_PARAMETERS,
    TRANSFORM_NAME,
    Number,
    TbeConfig,
    TbeConfigError,
    TbeInputError,
    parse_config,
    transform_parameters,
    validate_record_key,
)


def load_config_from_directory(config_path: str | Path) -> TbeConfig:
    """Read a dataset JSON file and the CSV files it names (in its `path`, relative to the JSON
    file's directory, or that directory itself). The installer has its own reader."""
    config_path = Path(config_path)
    obj = json.loads(config_path.read_text(encoding="utf-8"))
    params = transform_parameters(obj, TRANSFORM_NAME)
    directory = config_path.parent / params.get("path", ".")
    files: dict[str, str] = {}
    for param in FILE_PARAMETERS:
        name = params.get(param)
        if isinstance(name, str) and name:
            filename = name if name.endswith(".csv") else name + ".csv"
            path = directory / filename
            if not path.is_file():
                raise TbeConfigError(f"{param} {name!r}: {path} does not exist")
            files[name] = path.read_text(encoding="utf-8")
    return parse_config(obj, files)


def perturb_weighted_count(weighted_count: Number, n: int, p: int) -> int:
    """Weighted count with p scaled by the cell's mean weight, rounded, floored at 0.

    max(0, round(w * (n + p) / n)): the same relative perturbation as the unweighted count.
    """
    if n < 1:
        raise TbeInputError(f"a weighted count needs n >= 1 records, got {n}")
    w = Decimal(weighted_count) if not isinstance(weighted_count, Decimal) else weighted_count
    return max(0, round_half_away_from_zero(w * (n + p) / n))


def summarize_records(
    records: Iterable[Mapping[str, Any]], config: TbeConfig, sum_columns: Sequence[str] = ()
) -> CellInput:
    """Reference for what the SQL side computes for one cell's records (tests, debugging)."""
    rows = list(records)
    keys = [validate_record_key(r[config.record_key_name], config.big_n) for r in rows]
    sums: dict[str, SumInput] = {}
    for column in sum_columns:
        present = [r for r in rows if r[column] is not None]
        if not present:
            sums[column] = SumInput(None, ())
            continue
        tb = config.value_tiebreaker_name
        present.sort(key=lambda r: (-abs(r[column]), r[tb] is None, r[tb], r[column]))
        total = sum(r[column] for r in present)
        sums[column] = SumInput(total, tuple(r[column] for r in present[: len(config.m)]))
    return CellInput(
        n=len(rows),
        key_sum=sum(keys),
        sums=sums,
        key_min=min(keys, default=None),
        key_max=max(keys, default=None),
    )
