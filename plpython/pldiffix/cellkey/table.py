"""A cell-key table as the query path sees it: its columns and its configuration. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from pldiffix.cellkey import laplace
from pldiffix.cellkey.tbe_config import TbeConfig
from pldiffix.core import sqltext


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_name: str  # pg_type.typname, e.g. int4
    type_sql: str  # format_type without modifier, e.g. integer, character varying
    numeric: bool  # type category N
    collatable: bool

    @property
    def sql(self) -> str:
        return sqltext.identifier(self.name)


@dataclass
class CellKeyTable:
    relid: int
    sql_name: str  # schema-qualified and quoted, for statements
    canonical_name: str  # schema.table unquoted, for Laplace cell descriptions
    columns: dict[str, Column]
    method: str
    tbe_config: TbeConfig | None = None
    laplace_config: laplace.LaplaceConfig | None = None
    field_of: dict[str, str] = field(default_factory=dict)  # column name -> declared field
    record_key: Column | None = None  # TBE only
    tiebreaker: Column | None = None  # TBE only
    record_columns: list[Column] = field(default_factory=list)  # Laplace: hashed per record

    @property
    def hidden_columns(self) -> dict[str, str]:
        """Columns analysts may never name, with the reason."""
        hidden = {}
        if self.record_key is not None:
            hidden[self.record_key.name] = "the table's record key"
        if self.tiebreaker is not None:
            hidden[self.tiebreaker.name] = "the table's value tiebreaker"
        return hidden
