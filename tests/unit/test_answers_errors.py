"""The gate's error policy: at the untrusted and DP levels an error raised while reading data
reaches the analyst as one fixed message; refusals and the trusted level pass unchanged."""

from __future__ import annotations

import pytest

from pldiffix.answers import ExecutionFailed, _guarded
from pldiffix.core.levels import AccessLevel
from pldiffix.core.statements import QueryError


class _SPIError(Exception):
    pass


class _Plpy:
    SPIError = _SPIError


def _failing(error: Exception):
    def run():
        raise error

    return run


@pytest.mark.parametrize("level", [AccessLevel.ANONYMIZED_UNTRUSTED, AccessLevel.ANONYMIZED_DP])
@pytest.mark.parametrize(
    "error",
    [
        _SPIError('invalid input syntax for type integer: "Alice"'),
        ZeroDivisionError("division by zero"),
        OverflowError("math range error"),
        ValueError("could not convert 'Alice'"),
        KeyError("Alice"),
        RuntimeError("unexpected value 'Alice'"),
    ],
)
def test_data_errors_become_one_fixed_message(level, error):
    with pytest.raises(ExecutionFailed) as raised:
        _guarded(_Plpy, level, _failing(error))
    assert raised.value.report().message == "the query failed while reading the data"
    assert "Alice" not in str(raised.value.report())
    assert raised.value.sqlstate == "22000"


@pytest.mark.parametrize("level", [AccessLevel.ANONYMIZED_UNTRUSTED, AccessLevel.ANONYMIZED_DP])
@pytest.mark.parametrize(
    "error", [QueryError("only equality conditions ..."), PermissionError("no budget")]
)
def test_refusals_pass_unchanged(level, error):
    with pytest.raises(type(error)) as raised:
        _guarded(_Plpy, level, _failing(error))
    assert raised.value is error


def test_the_trusted_level_keeps_the_databases_error():
    error = _SPIError("division by zero")
    with pytest.raises(_SPIError) as raised:
        _guarded(_Plpy, AccessLevel.ANONYMIZED_TRUSTED, _failing(error))
    assert raised.value is error
