"""Table and column labels: the admin API, its errors, and how labels follow their tables."""

from __future__ import annotations

import psycopg
import pytest


def labels(db):
    return db.execute(
        "SELECT objtype, objname, label FROM diffix.show_labels() WHERE objtype <> 'role'"
    )


def test_mark_personal_labels_table_and_aid_columns(db):
    db.admin.execute(
        "CREATE TABLE tx (id int, sender bigint, receiver text, amount numeric);"
        "CALL diffix.mark_personal('tx', 'sender', 'receiver')"
    )
    assert labels(db) == [
        ("table", "public.tx", "personal"),
        ("column", "public.tx.receiver", "aid"),
        ("column", "public.tx.sender", "aid"),
    ]


def test_remarking_personal_replaces_aid_columns(db):
    db.admin.execute(
        "CREATE TABLE t (a int, b int); CALL diffix.mark_personal('t', 'a');"
        "CALL diffix.mark_personal('t', 'b')"
    )
    assert labels(db) == [("table", "public.t", "personal"), ("column", "public.t.b", "aid")]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            "CALL diffix.mark_personal('nosuch', 'id')",
            psycopg.errors.UndefinedTable,
            'table "nosuch" does not exist',
        ),
        (
            "CALL diffix.mark_personal('t', 'nosuch')",
            psycopg.errors.UndefinedColumn,
            'column "nosuch" does not exist in table public.t',
        ),
        (
            "CALL diffix.mark_personal('t', 'born')",
            psycopg.errors.DatatypeMismatch,
            'column "born" has type date, which cannot be an AID',
        ),
        (
            "CALL diffix.mark_personal('t', 'id', 'id')",
            psycopg.errors.InvalidParameterValue,
            'column "id" is listed twice',
        ),
        (
            "CALL diffix.mark_personal('t')",
            psycopg.errors.InvalidParameterValue,
            "at least one AID column",
        ),
        (
            "CALL diffix.mark_personal('v', 'id')",
            psycopg.errors.WrongObjectType,
            "cannot be marked personal",
        ),
        (
            "CALL diffix.mark_personal('pg_catalog.pg_class', 'oid')",
            psycopg.errors.InvalidParameterValue,
            "is a system table",
        ),
        (
            "CALL diffix.mark_personal('child', 'id')",
            psycopg.errors.FeatureNotSupported,
            "inheritance",
        ),
        ("CALL diffix.unmark_table('t')", psycopg.errors.InvalidParameterValue, "has no label"),
        (
            "CALL diffix.mark_not_filterable('t', 'name')",
            psycopg.errors.InvalidParameterValue,
            "is not marked personal",
        ),
        ("CALL diffix.mark_public(NULL)", psycopg.errors.InvalidParameterValue, "must not be NULL"),
    ],
)
def test_bad_label_calls_fail_clearly_and_change_nothing(db, call, error, message):
    db.admin.execute(
        "CREATE TABLE t (id int, name text, born date); CREATE VIEW v AS SELECT * FROM t;"
        "CREATE TABLE parent (id int); CREATE TABLE child () INHERITS (parent)"
    )
    with pytest.raises(error, match=message):
        db.admin.execute(call)
    assert labels(db) == []


def test_not_filterable_columns_can_be_marked_and_cleared(db):
    db.admin.execute(
        "CREATE TABLE t (id int, city text); CALL diffix.mark_personal('t', 'id');"
        "CALL diffix.mark_not_filterable('t', 'city')"
    )
    assert ("column", "public.t.city", "not_filterable") in labels(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is an AID column"):
        db.admin.execute("CALL diffix.mark_not_filterable('t', 'id')")
    db.admin.execute("CALL diffix.mark_filterable('t', 'city')")
    assert ("column", "public.t.city", "not_filterable") not in labels(db)


def test_mark_public_then_unmark(db):
    db.admin.execute("CREATE TABLE t (id int); CALL diffix.mark_public('t')")
    assert labels(db) == [("table", "public.t", "public")]
    db.admin.execute("CALL diffix.unmark_table('t')")
    assert labels(db) == []


def test_labels_survive_renames_because_they_are_keyed_by_oid(db):
    db.admin.execute(
        "CREATE SCHEMA s; CREATE TABLE s.t (id int); CALL diffix.mark_personal('s.t', 'id');"
        "ALTER TABLE s.t RENAME TO renamed; ALTER TABLE s.renamed RENAME COLUMN id TO person"
    )
    assert labels(db) == [("table", "s.renamed", "personal"), ("column", "s.renamed.person", "aid")]


def test_dropping_tables_and_columns_removes_their_labels(db):
    db.admin.execute(
        "CREATE TABLE t (id int, city text); CALL diffix.mark_personal('t', 'id');"
        "CALL diffix.mark_not_filterable('t', 'city'); ALTER TABLE t DROP COLUMN city"
    )
    assert labels(db) == [("table", "public.t", "personal"), ("column", "public.t.id", "aid")]
    db.admin.execute("DROP TABLE t")
    assert labels(db) == []
    assert db.execute("SELECT count(*) FROM diffix.column_labels") == [(0,)]


def test_only_admins_can_label(db):
    db.admin.execute("CREATE TABLE t (id int)")
    analyst = db.create_role("anonymized_trusted")
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="only superusers and members of diffix_admin"
    ):
        db.as_role(analyst).execute("CALL diffix.mark_personal('t', 'id')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute("SELECT diffix._mark_public('t'::regclass)")
    assert labels(db) == []


def test_members_of_diffix_admin_can_label_tables_they_do_not_own(db):
    db.admin.execute("CREATE TABLE t (id int); GRANT SELECT ON t TO PUBLIC")
    admin = db.create_role()
    db.admin.execute(f'GRANT diffix_admin TO "{admin}"')
    db.as_role(admin).execute("CALL diffix.mark_personal('t', 'id')")
    assert labels(db)[0] == ("table", "public.t", "personal")
    assert db.execute("SELECT has_table_privilege('public', 't', 'SELECT')") == [(False,)]


def test_analysts_cannot_write_the_label_tables(db):
    analyst = db.create_role("anonymized_untrusted")
    db.admin.execute("CREATE TABLE t (id int)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute(
            "INSERT INTO diffix.table_labels VALUES ('t'::regclass, 'public')"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute("DELETE FROM diffix.python_modules")
