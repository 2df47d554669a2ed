"""Access levels as roles, and settings: defaults, bounds, strict rules, who may change what."""

from __future__ import annotations

import psycopg
import pytest


def level(conn) -> str:
    return conn.execute("SELECT diffix.access_level()").fetchone()[0]


def test_unlabeled_roles_get_the_default_level(db):
    role = db.create_role()
    assert level(db.as_role(role)) == "direct"
    db.admin.execute("CALL diffix.configure('default_access_level', 'anonymized_untrusted')")
    assert level(db.as_role(role)) == "anonymized_untrusted"


@pytest.mark.parametrize("wanted", ["direct", "anonymized_trusted", "anonymized_untrusted"])
def test_mark_role_sets_the_level_and_unmark_clears_it(db, wanted):
    role = db.create_role(wanted)
    assert level(db.as_role(role)) == wanted
    db.admin.execute("CALL diffix.unmark_role(%s)", (role,))
    assert level(db.as_role(role)) == "direct"


def test_remarking_a_role_replaces_its_level(db):
    role = db.create_role("anonymized_untrusted")
    db.admin.execute("CALL diffix.mark_role(%s, 'anonymized_trusted')", (role,))
    assert level(db.as_role(role)) == "anonymized_trusted"
    assert db.execute("SELECT label FROM diffix.show_labels() WHERE objname = %s", (role,)) == [
        ("anonymized_trusted",)
    ]


def test_levels_are_inherited_through_group_roles_most_restricted_wins(db):
    group = db.create_role("anonymized_trusted", login=False)
    member = db.create_role()
    db.admin.execute(f'GRANT "{group}" TO "{member}"')
    assert level(db.as_role(member)) == "anonymized_trusted"
    labeled_direct = db.create_role("direct")
    db.admin.execute(f'GRANT "{member}" TO "{labeled_direct}"')
    assert level(db.as_role(labeled_direct)) == "anonymized_trusted"


def test_access_level_follows_set_role(db):
    analyst = db.create_role("anonymized_untrusted")
    assert level(db.admin) == "direct"
    db.admin.execute(f'SET ROLE "{analyst}"')
    assert level(db.admin) == "anonymized_untrusted"
    db.admin.execute("RESET ROLE")
    assert level(db.admin) == "direct"


def test_a_session_can_lower_but_never_raise_its_level(db):
    role = db.create_role("anonymized_trusted")
    conn = db.as_role(role)
    conn.execute("SELECT diffix.set('session_access_level', 'anonymized_untrusted')")
    assert level(conn) == "anonymized_untrusted"
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="cannot raise the session access level"
    ):
        conn.execute("SELECT diffix.set('session_access_level', 'direct')")
    assert level(db.as_role(role)) == "anonymized_trusted"  # other sessions are unaffected


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            "CALL diffix.mark_role('nosuch_role', 'direct')",
            psycopg.errors.UndefinedObject,
            'role "nosuch_role" does not exist',
        ),
        (
            "CALL diffix.mark_role(%(role)s, 'superuser')",
            psycopg.errors.InvalidParameterValue,
            'unknown access level "superuser"',
        ),
        (
            "CALL diffix.mark_role('diffix_engine', 'direct')",
            psycopg.errors.InvalidParameterValue,
            "is a system role",
        ),
        (
            "CALL diffix.unmark_role('nosuch_role')",
            psycopg.errors.UndefinedObject,
            "does not exist",
        ),
    ],
)
def test_bad_mark_role_calls_fail_clearly(db, call, error, message):
    role = db.create_role()
    with pytest.raises(error, match=message):
        db.admin.execute(call, {"role": role})
    assert level(db.as_role(role)) == "direct"


def test_non_admins_cannot_mark_roles_even_their_own(db):
    role = db.create_role("anonymized_untrusted")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(role).execute("CALL diffix.mark_role(%s, 'direct')", (role,))
    assert level(db.as_role(role)) == "anonymized_untrusted"


def settings_of(conn) -> dict[str, tuple[str, str]]:
    rows = conn.execute("SELECT name, setting, source FROM diffix.show_settings()").fetchall()
    return {name: (setting, source) for name, setting, source in rows}


def test_show_settings_lists_every_setting_with_pg_diffix_defaults(db):
    shown = settings_of(db.admin)
    assert set(shown) == {
        "salt",
        "noise_layer_sd",
        "low_count_min_threshold",
        "low_count_mean_gap",
        "low_count_layer_sd",
        "outlier_count_min",
        "outlier_count_max",
        "top_count_min",
        "top_count_max",
        "compute_suppress_bin",
        "text_label_for_suppress_bin",
        "default_access_level",
        "session_access_level",
        "treat_unmarked_tables_as_public",
        "max_pass_mb",
        "dp_epsilon",
        "dp_delta",
        "dp_noise",
        "dp_max_epsilon",
        "dp_max_delta",
        "audit_sql_max_bytes",
        "strict",
    }
    assert shown["dp_max_epsilon"] == ("1.0", "default")
    assert shown["low_count_min_threshold"] == ("3", "default")
    assert shown["max_pass_mb"] == ("256", "default")
    assert shown["top_count_max"] == ("4", "default")
    assert shown["compute_suppress_bin"] == ("true", "default")
    assert len(shown["salt"][0]) == 64  # admins see the random salt generated at install


def test_the_salt_is_never_visible_to_non_admins(bank):
    analyst = bank.create_role("anonymized_untrusted")
    conn = bank.as_role(analyst)
    assert settings_of(conn)["salt"][0] == "(hidden)"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM diffix.database_settings")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="can read the salt"):
        conn.execute("SELECT diffix._salt()")
    assert "salt" not in dict(conn.execute("SELECT * FROM diffix._database_settings()").fetchall())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("noise_layer_sd", "-1", "must be at least 0"),
        ("noise_layer_sd", "abc", "must be a number"),
        ("noise_layer_sd", "NaN", "must be finite"),
        ("noise_layer_sd", "0.5", "below the safe minimum 1"),
        ("low_count_min_threshold", "1", "below the safe minimum 2"),
        ("low_count_min_threshold", "2.5", "must be an integer"),
        ("low_count_mean_gap", "1", "below the safe minimum 2"),
        ("outlier_count_min", "3", "must not exceed outlier_count_max"),
        ("top_count_max", "1001", "must be at most 1000"),
        ("strict", "maybe", "must be a boolean"),
        ("default_access_level", "root", "unknown access level"),
        ("session_access_level", "direct", "applies to one session only"),
        ("salt", "", "salt must not be empty"),
        ("no_such_setting", "1", "unknown setting"),
    ],
)
def test_invalid_setting_values_are_rejected_and_change_nothing(db, name, value, message):
    before = settings_of(db.admin)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        db.admin.execute("CALL diffix.configure(%s, %s)", (name, value))
    assert settings_of(db.admin) == before


def test_strict_off_allows_weak_values_and_strict_on_checks_them_again(db):
    db.admin.execute("CALL diffix.configure('strict', 'false')")
    db.admin.execute("CALL diffix.configure('noise_layer_sd', '0')")
    assert settings_of(db.admin)["noise_layer_sd"] == ("0.0", "database")
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match=r"noise_layer_sd = 0\.0 is below"
    ):
        db.admin.execute("CALL diffix.configure('strict', 'true')")


def test_analysts_may_change_only_reporting_settings_for_their_session(db):
    analyst = db.create_role("anonymized_trusted")
    conn = db.as_role(analyst)
    assert conn.execute("SELECT diffix.set('compute_suppress_bin', 'off')").fetchone() == ("false",)
    conn.execute("SELECT diffix.set('text_label_for_suppress_bin', '(hidden)')")
    assert settings_of(conn)["text_label_for_suppress_bin"] == ("(hidden)", "session")
    for name, value in [
        ("noise_layer_sd", "5"),
        ("salt", "known"),
        ("strict", "false"),
        ("low_count_min_threshold", "10"),
        ("treat_unmarked_tables_as_public", "on"),
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only administrators"):
            conn.execute("SELECT diffix.set(%s, %s)", (name, value))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="change database-wide settings"):
        conn.execute("CALL diffix.configure('compute_suppress_bin', 'false')")
    # session values stay in their session
    assert settings_of(db.as_role(analyst))["compute_suppress_bin"] == ("true", "default")


def test_admins_can_change_anonymization_settings_for_their_session(db):
    db.admin.execute("SELECT diffix.set('low_count_min_threshold', '4')")
    assert settings_of(db.admin)["low_count_min_threshold"] == ("4", "session")
    assert settings_of(db.connect())["low_count_min_threshold"] == ("3", "default")


def test_no_guc_influences_anonymization_settings(db):
    analyst = db.create_role("anonymized_untrusted")
    conn = db.as_role(analyst)
    conn.execute("SET pg_diffix.noise_layer_sd = '0'")
    conn.execute("SET diffix.low_count_min_threshold = '0'")
    shown = settings_of(conn)
    assert shown["noise_layer_sd"] == ("1.0", "default")
    assert shown["low_count_min_threshold"] == ("3", "default")
