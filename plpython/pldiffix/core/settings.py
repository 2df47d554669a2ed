"""Setting definitions, parsing and the rules for who may change what.

Effective settings are layered: built-in defaults, then database-wide values stored by
`diffix.configure`, then per-session values set with `diffix.set`. Session values live in the
server's Python interpreter (see session.py), never in a GUC a user could SET.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pldiffix.core.errors import UserError
from pldiffix.core.levels import AccessLevel


class SettingError(UserError, ValueError):
    """A setting name or value was rejected; the message says why."""


@dataclass(frozen=True)
class SettingSpec:
    name: str
    kind: str  # "bool" | "int" | "float" | "text" | "level"
    default: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    strict_minimum: float | None = None
    any_user: bool = False  # any user may change it for their session
    secret: bool = False  # never shown to non-admins
    session_only: bool = False  # has no database-wide value
    choices: tuple[str, ...] = ()  # a text setting's allowed values, when limited


_MAX = 1000
SPECS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in [
        SettingSpec("salt", "text", "", "Secret value used for seeding noise layers.", secret=True),
        SettingSpec(
            "noise_layer_sd",
            "float",
            "1.0",
            "Standard deviation for each noise layer added to aggregates.",
            minimum=0,
            maximum=_MAX,
            strict_minimum=1.0,
        ),
        SettingSpec(
            "low_count_min_threshold",
            "int",
            "3",
            "Lower bound of the low count filter threshold.",
            minimum=1,
            maximum=_MAX,
            strict_minimum=2,
        ),
        SettingSpec(
            "low_count_mean_gap",
            "float",
            "2.0",
            "Standard deviations between the lower bound and the mean of the low count threshold.",
            minimum=0,
            maximum=_MAX,
            strict_minimum=2.0,
        ),
        SettingSpec(
            "low_count_layer_sd",
            "float",
            "1.0",
            "Standard deviation for each noise layer of the low count filter threshold.",
            minimum=0,
            maximum=_MAX,
            strict_minimum=1.0,
        ),
        SettingSpec(
            "outlier_count_min",
            "int",
            "1",
            "Minimum outlier count (inclusive).",
            minimum=0,
            maximum=_MAX,
            strict_minimum=1,
        ),
        SettingSpec(
            "outlier_count_max",
            "int",
            "2",
            "Maximum outlier count (inclusive).",
            minimum=0,
            maximum=_MAX,
            strict_minimum=2,
        ),
        SettingSpec(
            "top_count_min",
            "int",
            "3",
            "Minimum top contributors count (inclusive).",
            minimum=1,
            maximum=_MAX,
            strict_minimum=2,
        ),
        SettingSpec(
            "top_count_max",
            "int",
            "4",
            "Maximum top contributors count (inclusive).",
            minimum=1,
            maximum=_MAX,
            strict_minimum=3,
        ),
        SettingSpec(
            "compute_suppress_bin",
            "bool",
            "true",
            "Whether the suppress bin is computed and returned as the first row.",
            any_user=True,
        ),
        SettingSpec(
            "text_label_for_suppress_bin",
            "text",
            "*",
            "Value used for text-typed grouping labels in the suppress bin.",
            any_user=True,
        ),
        SettingSpec(
            "default_access_level",
            "level",
            "direct",
            "Access level for unlabeled roles.",
        ),
        SettingSpec(
            "session_access_level",
            "level",
            "",
            "Access level for the current session; can only be lowered.",
            any_user=True,
            session_only=True,
        ),
        SettingSpec(
            "treat_unmarked_tables_as_public",
            "bool",
            "false",
            "Whether unlabeled tables are readable and treated as public.",
        ),
        SettingSpec(
            "max_pass_mb",
            "int",
            "256",
            "Memory budget (MiB) of one anonymizing query: large tables are read in ranges of "
            "blocks, and rows beyond it spill to disk or are read in passes over AID partitions.",
            minimum=1,
            maximum=512,
        ),
        SettingSpec(
            "dp_epsilon",
            "float",
            "0.1",
            "Epsilon each diffix.query_json / diffix.query of an anonymized_dp role spends.",
            minimum=1e-6,
            maximum=100,
            any_user=True,
        ),
        SettingSpec(
            "dp_delta",
            "float",
            "0",
            "Delta each diffix.query_json / diffix.query of an anonymized_dp role may spend "
            "(partition selection of undeclared grouping keys).",
            minimum=0,
            maximum=0.5,
            any_user=True,
        ),
        SettingSpec(
            "dp_noise",
            "text",
            "laplace",
            "Noise of DP answers: laplace (epsilon-DP) or gaussian (zCDP; needs a zCDP budget).",
            any_user=True,
            choices=("laplace", "gaussian"),
        ),
        SettingSpec(
            "dp_max_epsilon",
            "float",
            "1.0",
            "The most epsilon one DP query may spend.",
            minimum=1e-6,
            maximum=100,
        ),
        SettingSpec(
            "dp_max_delta",
            "float",
            "1e-5",
            "The most delta one DP query may spend.",
            minimum=0,
            maximum=0.5,
        ),
        SettingSpec(
            "audit_sql_max_bytes",
            "int",
            "8192",
            "Bytes of each statement the audit log and the privacy ledger keep (with its full "
            "length and sha256); read from the database-wide value only.",
            minimum=0,
            maximum=1048576,
        ),
        SettingSpec(
            "strict",
            "bool",
            "true",
            "Whether anonymization parameters must stay at or above safe minimums.",
        ),
    ]
}

_TRUE = {"true", "on", "yes", "1", "t", "y"}
_FALSE = {"false", "off", "no", "0", "f", "n"}


def spec_for(name: str) -> SettingSpec:
    key = name.strip().lower().removeprefix("pg_diffix.").removeprefix("diffix.")
    spec = SPECS.get(key)
    if spec is None:
        raise SettingError(f"unknown setting {name!r}; see SELECT * FROM diffix.show_settings()")
    return spec


def parse_value(spec: SettingSpec, raw: str | None) -> Any:
    """Converts text to the setting's type and checks its hard bounds."""
    if raw is None:
        raise SettingError(f"{spec.name} cannot be NULL")
    text = raw.strip()
    if spec.kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingError(f"{spec.name} must be a boolean (true or false), not {raw!r}")
    if spec.kind == "level":
        try:
            return AccessLevel.parse(text)
        except ValueError as error:
            raise SettingError(f"{spec.name}: {error}") from None
    if spec.kind == "text":
        if spec.name == "salt" and not raw:
            raise SettingError("salt must not be empty")
        if spec.choices:
            if text.lower() not in spec.choices:
                raise SettingError(f"{spec.name} must be one of {', '.join(spec.choices)}")
            return text.lower()
        return raw
    try:
        number: float = int(text) if spec.kind == "int" else float(text)
    except ValueError:
        expected = "an integer" if spec.kind == "int" else "a number"
        raise SettingError(f"{spec.name} must be {expected}, not {raw!r}") from None
    if not math.isfinite(number):
        raise SettingError(f"{spec.name} must be finite, not {raw!r}")
    if spec.minimum is not None and number < spec.minimum:
        raise SettingError(f"{spec.name} must be at least {spec.minimum:g}, not {raw}")
    if spec.maximum is not None and number > spec.maximum:
        raise SettingError(f"{spec.name} must be at most {spec.maximum:g}, not {raw}")
    return number


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, AccessLevel):
        return value.value
    return str(value)


def defaults() -> dict[str, Any]:
    return {
        name: parse_value(spec, spec.default)
        for name, spec in SPECS.items()
        if not spec.session_only and name != "salt"
    } | {"salt": ""}


def check_consistency(values: dict[str, Any]) -> None:
    """Cross-setting rules: interval order always, safe minimums when strict is on."""
    for low, high in (
        ("outlier_count_min", "outlier_count_max"),
        ("top_count_min", "top_count_max"),
    ):
        if values[low] > values[high]:
            raise SettingError(
                f"{low} ({values[low]}) must not exceed {high} ({values[high]}); "
                f"change {high} first"
            )
    if not values["strict"]:
        return
    for spec in SPECS.values():
        if spec.strict_minimum is not None and values[spec.name] < spec.strict_minimum:
            raise SettingError(
                f"{spec.name} = {format_value(values[spec.name])} is below the safe minimum "
                f"{spec.strict_minimum:g} required while strict is on"
            )
    for low, high in (
        ("outlier_count_min", "outlier_count_max"),
        ("top_count_min", "top_count_max"),
    ):
        if values[high] - values[low] < 1:
            raise SettingError(f"{high} must exceed {low} by at least 1 while strict is on")


def may_change(spec: SettingSpec, *, is_admin: bool) -> bool:
    return is_admin or spec.any_user
