"""How a value column is summed: its summand type (what the interface of agg_funcs.py and sum.py
both name)."""

from __future__ import annotations

import enum

from pldiffix.core.validation.pgtypes import normalize_type


class SummandType(enum.Enum):
    INT2 = "int2"
    INT4 = "int4"
    INT8 = "int8"
    NUMERIC = "numeric"
    FLOAT4 = "float4"
    FLOAT8 = "float8"

    @property
    def is_integer(self) -> bool:
        return self in (SummandType.INT2, SummandType.INT4, SummandType.INT8)

    @property
    def result_type(self) -> str:
        """SQL type of ``sum`` over this type."""
        return {
            SummandType.INT2: "int8",
            SummandType.INT4: "int8",
            SummandType.INT8: "numeric",
            SummandType.NUMERIC: "numeric",
            SummandType.FLOAT4: "float4",
            SummandType.FLOAT8: "float8",
        }[self]


def summand_type(type_name: str) -> SummandType:
    name = normalize_type(type_name)
    return SummandType(name) if name in {s.value for s in SummandType} else SummandType.FLOAT8
