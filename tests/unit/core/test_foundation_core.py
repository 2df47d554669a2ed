"""Pure foundation modules: levels, settings, statement gate, result encoding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pldiffix.core import results, session, settings
from pldiffix.core.levels import AccessLevel, most_restricted
from pldiffix.core.statements import QueryError, parse_single_select


def test_levels_order_from_direct_to_untrusted():
    assert most_restricted(AccessLevel.DIRECT, AccessLevel.ANONYMIZED_UNTRUSTED) is (
        AccessLevel.ANONYMIZED_UNTRUSTED
    )
    assert most_restricted(AccessLevel.ANONYMIZED_TRUSTED, AccessLevel.DIRECT) is (
        AccessLevel.ANONYMIZED_TRUSTED
    )
    assert AccessLevel.parse(" Anonymized_Trusted ") is AccessLevel.ANONYMIZED_TRUSTED
    with pytest.raises(ValueError, match="expected one of: direct, anonymized_trusted"):
        AccessLevel.parse("admin")


def test_setting_defaults_match_pg_diffix():
    values = settings.defaults()
    assert values["noise_layer_sd"] == 1.0
    assert values["low_count_min_threshold"] == 3
    assert (values["outlier_count_min"], values["outlier_count_max"]) == (1, 2)
    assert (values["top_count_min"], values["top_count_max"]) == (3, 4)
    assert values["default_access_level"] is AccessLevel.DIRECT
    assert values["compute_suppress_bin"] is True and values["strict"] is True
    settings.check_consistency(values)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("strict", "OFF", False),
        ("strict", "yes", True),
        ("noise_layer_sd", "2.5", 2.5),
        ("top_count_max", " 7 ", 7),
        ("text_label_for_suppress_bin", " * ", " * "),
        ("pg_diffix.low_count_min_threshold", "4", 4),
    ],
)
def test_setting_values_parse_to_their_types(name, raw, expected):
    assert settings.parse_value(settings.spec_for(name), raw) == expected


def test_strict_rules_and_interval_order():
    values = settings.defaults() | {"top_count_min": 3, "top_count_max": 3}
    with pytest.raises(settings.SettingError, match="top_count_max must exceed top_count_min"):
        settings.check_consistency(values)
    settings.check_consistency(values | {"strict": False})
    with pytest.raises(settings.SettingError, match="must not exceed"):
        settings.check_consistency(values | {"strict": False, "top_count_min": 5})


def test_only_reporting_settings_and_the_dp_cost_are_open_to_everyone():
    open_to_all = {
        name for name, spec in settings.SPECS.items() if settings.may_change(spec, is_admin=False)
    }
    assert open_to_all == {
        "compute_suppress_bin",
        "text_label_for_suppress_bin",
        "session_access_level",
        "dp_epsilon",  # what a DP query spends, capped by the admins' dp_max_epsilon
        "dp_delta",
        "dp_noise",  # laplace or gaussian: the budget's unit decides what it costs
    }


def test_dp_noise_takes_one_of_its_choices_only():
    spec = settings.SPECS["dp_noise"]
    assert settings.parse_value(spec, " Gaussian ") == "gaussian"
    assert settings.parse_value(spec, spec.default) == "laplace"
    for bad in ("uniform", "", "laplace; gaussian"):
        with pytest.raises(settings.SettingError, match="laplace, gaussian"):
            settings.parse_value(spec, bad)


def test_session_values_belong_to_the_session_user_that_set_them():
    session.reset()
    session.set_override("alice", "compute_suppress_bin", False)
    assert session.overrides("alice") == {"compute_suppress_bin": False}
    assert session.overrides("mallory") == {}
    session.set_override("mallory", "text_label_for_suppress_bin", "?")
    assert session.overrides("alice") == {}
    session.reset()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select a from t where b = 1",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT 1 UNION SELECT 2",
        "(SELECT 1)",
        "SELECT 1;",
    ],
)
def test_single_selects_pass_the_gate(sql):
    parse_single_select(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("VACUUM t", "only SELECT"),
        ("EXPLAIN SELECT 1", "only SELECT"),
        ("WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM d", "data-modifying"),
        ("SELECT a INTO b FROM t", "SELECT INTO"),
        ("SELECT * FROM t FOR SHARE", "locking"),
        ("SELECT (", "could not parse"),
    ],
)
def test_everything_else_is_rejected_with_a_reason(sql, message):
    with pytest.raises(QueryError, match=message) as error:
        parse_single_select(sql)
    assert error.value.hint


def test_result_document_encoding():
    text = results.encode_document(
        ["n", "x", "d", "t", "arr", "j", "f"],
        [20, 1700, 1082, 1114, 1007, 3802, 701],
        [
            [
                1,
                Decimal("1.10"),
                "2020-01-02",
                "2020-01-02 03:04:05",
                [1, None],
                '{"a": [1]}',
                float("nan"),
            ]
        ],
    )
    assert text == (
        '{"columns":["n","x","d","t","arr","j","f"],"rows":[[1,1.10,"2020-01-02",'
        '"2020-01-02T03:04:05",[1,null],{"a": [1]},"NaN"]]}'
    )


def test_timezones_become_iso_8601_offsets():
    assert results.encode_value("2020-01-02 03:04:05+01", 1184) == '"2020-01-02T03:04:05+01:00"'
    assert results.encode_value("2020-01-02 03:04:05-03:30", 1184) == '"2020-01-02T03:04:05-03:30"'
    assert results.encode_value("infinity", 1114) == '"infinity"'


def test_row_json_decoding_keeps_repeated_keys_in_order():
    assert results.decode_row_json('{"a": 1, "a": 2.5, "b": {"c": [1]}}') == [
        1,
        Decimal("2.5"),
        {"c": [1]},
    ]
