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
        db.as_role(analyst).execute("SELECT diffix._mark_public('t'::regclass, true)")
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


# --- taking protection off a personal or cell-key table ---

PROTECTED = """
CREATE TABLE t (id int, city text, amount numeric);
GRANT SELECT ON t TO PUBLIC;
CALL diffix.mark_personal('t', 'id');
CALL diffix.mark_not_filterable('t', 'city');
CALL diffix.set_dp_max_contributions('t', 3);
CALL diffix.set_dp_bounds('t', 'amount', 0, 100);
"""


def _open_findings(db) -> list[tuple]:
    return db.execute(
        "SELECT object, finding, fix FROM diffix.check_security() "
        "WHERE fix LIKE '%acknowledge_finding%'"
    )


@pytest.mark.parametrize(
    ("call", "verb"),
    [("CALL diffix.mark_public('t')", "mark public"), ("CALL diffix.unmark_table('t')", "unmark")],
)
def test_taking_the_personal_label_off_needs_force(db, call, verb):
    db.admin.execute(PROTECTED)
    before = labels(db)
    dp = db.execute("SELECT * FROM diffix.show_dp_metadata()")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as refused:
        db.admin.execute(call)
    diag = refused.value.diag
    assert (
        diag.message_primary == f"public.t is a personal table: {verb} it only with force => true"
    )
    assert "AID column labels (id)" in diag.message_detail
    assert "not-filterable labels (city)" in diag.message_detail
    assert "DP contributions per person" in diag.message_detail
    assert "DP bounds/domains (amount bounds)" in diag.message_detail
    assert "force => true" in diag.message_hint
    assert labels(db) == before
    assert db.execute("SELECT * FROM diffix.show_dp_metadata()") == dp
    assert _open_findings(db) == []


def test_forced_unmark_warns_and_leaves_a_finding_until_acknowledged(db):
    db.admin.execute(PROTECTED)
    admin = db.create_role()
    db.admin.execute(f'GRANT diffix_admin TO "{admin}"')
    conn = db.as_role(admin)
    warnings: list[tuple[str, str, str]] = []  # a Diagnostic is only valid inside the handler
    conn.add_notice_handler(
        lambda d: warnings.append((d.severity_nonlocalized, d.message_primary, d.message_detail))
    )
    conn.execute("CALL diffix.mark_public('t', force => true)")
    [(_, message, detail)] = [w for w in warnings if w[0] == "WARNING"]
    assert message == "personal table public.t is no longer protected"
    assert "AID column labels (id)" in detail
    assert "DP bounds/domains (amount bounds)" in detail
    assert labels(db) == [("table", "public.t", "public")]
    assert db.execute("SELECT count(*) FROM diffix.dp_columns") == [(0,)]

    [(table, finding, fix)] = _open_findings(db)
    assert table == "public.t"
    expected = f"personal table public.t was marked public by {admin} (session {admin}) at "
    assert finding.startswith(expected)
    assert "dropped: AID column labels (id)" in finding
    finding_id = int(fix.rsplit("(", 1)[1].rstrip(")"))

    analyst = db.create_role("anonymized_trusted")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only superusers"):
        db.as_role(analyst).execute("CALL diffix.acknowledge_finding(%s)", (finding_id,))
    assert len(_open_findings(db)) == 1
    conn.execute("CALL diffix.acknowledge_finding(%s)", (finding_id,))
    assert _open_findings(db) == []
    assert db.execute(
        "SELECT acknowledged_by FROM diffix.unlabeled_tables WHERE id = %s", (finding_id,)
    ) == [(admin,)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no open finding"):
        conn.execute("CALL diffix.acknowledge_finding(%s)", (finding_id,))


def test_public_and_unlabeled_tables_need_no_force(db):
    db.admin.execute("CREATE TABLE p (id int); CALL diffix.mark_public('p')")
    db.admin.execute("CALL diffix.mark_public('p'); CALL diffix.unmark_table('p')")
    assert labels(db) == [] and _open_findings(db) == []


def test_analysts_cannot_forge_or_clear_unlabel_records(db):
    analyst = db.create_role("anonymized_untrusted")
    conn = db.as_role(analyst)
    for attack in [
        "INSERT INTO diffix.unlabeled_tables (table_name, previous_label, dropped, changed_by, "
        "session_role) VALUES ('x', 'personal', '', 'x', 'x')",
        "UPDATE diffix.unlabeled_tables SET acknowledged_at = now()",
        "SELECT diffix._release_protection('pg_class'::regclass, true, NULL)",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)


# --- the label registry (sql/core/10_schema.sql) ---


def test_the_registry_lists_each_label_and_the_metadata_that_goes_with_it(db):
    assert db.execute("SELECT label, protected FROM diffix.registered_labels ORDER BY 1") == [
        ("cellkey", True),
        ("personal", True),
        ("public", False),
    ]
    assert db.execute(
        "SELECT metadata_table::text, label, relid_columns::text[] FROM diffix.label_metadata"
        " ORDER BY 1"
    ) == [
        ("dp_columns", "personal", ["relid"]),
        ("dp_tables", "personal", ["relid"]),
        ("dp_unique_units", "personal", ["relid"]),
        ("dp_unit_paths", "personal", ["relid", "target_relid"]),
        ("perturbation_configs", "cellkey", ["relid"]),
    ]


def _personal_metadata(db) -> list[tuple]:
    return db.execute(
        "SELECT 'tables', count(*) FROM diffix.dp_tables UNION ALL "
        "SELECT 'columns', count(*) FROM diffix.dp_columns UNION ALL "
        "SELECT 'unique', count(*) FROM diffix.dp_unique_units UNION ALL "
        "SELECT 'paths', count(*) FROM diffix.dp_unit_paths"
    )


@pytest.mark.parametrize("relabeled", ["customers", "orders"])
def test_relabeling_forgets_the_metadata_of_every_registered_table(db, relabeled):
    db.admin.execute(
        """
        CREATE TABLE customers (id int, amount numeric);
        CREATE TABLE orders (cid int, amount numeric);
        CALL diffix.mark_personal('customers', 'id');
        CALL diffix.mark_personal('orders', 'cid');
        CALL diffix.set_dp_max_contributions('customers', 2);
        CALL diffix.set_dp_bounds('customers', 'amount', 0, 100);
        CALL diffix.declare_dp_unique_units('customers');
        CALL diffix.set_dp_unit_path('orders', 'cid', 'customers', 'id');
        """
    )
    assert _personal_metadata(db) == [("tables", 1), ("columns", 1), ("unique", 1), ("paths", 1)]
    db.admin.execute("CALL diffix.mark_public(%s, force => true)", (relabeled,))
    # the path goes with either end; the other metadata with customers only
    kept = 1 if relabeled == "orders" else 0
    assert _personal_metadata(db) == [
        ("tables", kept),
        ("columns", kept),
        ("unique", kept),
        ("paths", 0),
    ]


def test_a_label_a_folder_registers_is_protected_and_its_metadata_forgotten(db):
    """What a new mechanism's folder does: register its label and its metadata table; the table
    is then protected like a personal one and relabeling it forgets its metadata."""
    db.admin.execute(
        """
        CALL diffix._register_label('kanon', protected => true);
        CREATE TABLE diffix.kanon_configs (relid oid PRIMARY KEY, k int);
        CALL diffix._register_label_metadata('kanon_configs', 'kanon', 'relid');
        CREATE TABLE people (id int);
        INSERT INTO diffix.table_labels VALUES ('people'::regclass, 'kanon');
        INSERT INTO diffix.kanon_configs VALUES ('people'::regclass, 5);
        """
    )
    analyst = db.create_role("anonymized_untrusted")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.admin.execute(f'GRANT SELECT ON people TO "{analyst}"')
    assert db.execute(
        "SELECT label FROM diffix.protected_tables WHERE relid = 'people'::regclass"
    ) == [("kanon",)]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="kanon table"):
        db.admin.execute("CALL diffix.mark_public('people')")
    db.admin.execute("CALL diffix.mark_public('people', force => true)")
    assert db.execute("SELECT count(*) FROM diffix.kanon_configs") == [(0,)]


def test_a_label_no_folder_registered_is_refused(db):
    db.admin.execute("CREATE TABLE t (id int)")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.admin.execute("INSERT INTO diffix.table_labels VALUES ('t'::regclass, 'kanon')")


@pytest.mark.parametrize(
    "attack",
    [
        "INSERT INTO diffix.registered_labels VALUES ('mine', false)",
        "UPDATE diffix.registered_labels SET protected = false",
        "DELETE FROM diffix.label_metadata",
        "INSERT INTO diffix.label_metadata VALUES ('table_labels', 'public', '{relid}')",
        "CALL diffix._register_label('personal', protected => false)",
        "CALL diffix._register_label_metadata('table_labels', 'public', 'relid')",
        "SELECT diffix._forget_on_relabel()",
    ],
)
def test_analysts_cannot_write_the_label_registry(db, attack):
    analyst = db.create_role("direct")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute(attack)
    assert db.execute("SELECT count(*) FROM diffix.registered_labels WHERE protected") == [(2,)]
    assert db.execute("SELECT count(*) FROM diffix.label_metadata") == [(5,)]
