"""Per-backend session state: values set with diffix.set().

PL/Python keeps one interpreter per backend, so module state lives exactly as long as the
session. Only functions in the diffix schema can reach it, which is the point: unlike a GUC,
an analyst cannot SET it directly. Values are bound to the session user that set them, so a
pooled connection handed to another login does not inherit them.
"""

from __future__ import annotations

from typing import Any

_overrides: dict[str, Any] = {}
_owner: str | None = None


def overrides(session_user: str) -> dict[str, Any]:
    if _owner != session_user:
        return {}
    return dict(_overrides)


def set_override(session_user: str, name: str, value: Any) -> None:
    global _owner
    if _owner != session_user:
        _overrides.clear()
        _owner = session_user
    _overrides[name] = value


def reset() -> None:
    _overrides.clear()
