"""Cell-key tables: diffix.mark_tbe / mark_laplace, the SQL functions, the query path, the CLI."""

from __future__ import annotations

import io
import json
import random
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import tbe_helpers

from pldiffix.cellkey import laplace, tbe, tbe_config
from pldiffix_installer import cli, install

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tbe"
CONFIG = tbe_helpers.load_config_from_directory(EXAMPLES / "dataset.json")
UNSCOPED = tbe_config.parse_config(
    {k: v for k, v in CONFIG.to_parameters().items() if k != "primitive_scope_key_declarations"}
)
ADDITIVE = tbe_config.parse_config(
    CONFIG.to_parameters() | {"use_additive_scope_perturbation": True}
)
LAPLACE = {"scale": 2, "key": "test-key"}


def _records(count: int = 40) -> list[dict]:
    rng = random.Random(5)
    rows = []
    for i in range(count):
        rows.append(
            {
                "unit_id": i + 1,
                "bedrooms": rng.choice([0, 1, 2, 2, 3, 3, 4, None]),
                "dwelling": rng.choice(["001", "002", "003", "999"]),
                "pet": rng.choice(["dog", "cat", "cat", "fish", None]),
                "amount": Decimal(rng.randrange(-500, 15000)) / 100,
                "record_key": rng.randrange(CONFIG.big_n),
            }
        )
    return rows


RECORDS = _records()


def _create(db, name: str = "dwellings", records: list[dict] = RECORDS) -> None:
    db.admin.execute(
        f"CREATE TABLE {name} (unit_id int, bedrooms int, dwelling text, pet text, "
        "amount numeric(8, 2), record_key bigint)"
    )
    with db.admin.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {name} VALUES (%(unit_id)s, %(bedrooms)s, %(dwelling)s, %(pet)s, "
            "%(amount)s, %(record_key)s)",
            records,
        )
    db.admin.execute(f"GRANT SELECT ON {name} TO PUBLIC")


def _mark(db, config: tbe_config.TbeConfig = CONFIG, table: str = "dwellings") -> None:
    db.admin.execute(
        "CALL diffix.mark_tbe(%s, %s::jsonb)", (table, json.dumps(config.to_parameters()))
    )


@pytest.fixture
def dwellings(db):
    _create(db)
    _mark(db)
    return db


@pytest.fixture
def analyst(dwellings):
    return dwellings.as_role(dwellings.create_role("anonymized_untrusted"))


def query(conn, sql: str) -> list[list]:
    return conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]["rows"]


def dec(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _label(field: str, value) -> str:
    return CONFIG.scope_keys.range_label(field, value)


def expected(
    config: tbe_config.TbeConfig,
    where: dict,
    group: list[str],
    sums: tuple[str, ...] = (),
    records: list[dict] = RECORDS,
) -> dict[tuple, tbe.CellOutput]:
    """Per group: the pure core's answer (tbe_helpers.summarize_records + tbe.perturb_cell)."""

    def label(field: str, record: dict):
        value = record[field]
        if field in ("bedrooms", "amount"):
            return _label(field.upper(), value)
        return value

    selected = [r for r in records if all(label(f, r) in vs for f, vs in where.items())]
    cells: dict[tuple, list[dict]] = {}
    for record in selected:
        cells.setdefault(tuple(label(f, record) for f in group), []).append(record)
    if not group and not cells:
        cells[()] = []
    out = {}
    for key, rows in cells.items():
        cell = tbe_helpers.summarize_records(rows, config, sums)
        sk = None
        if config.scoped and rows:
            # a restricted, ungrouped field's scope: the value names present in the cell; a
            # condition admitting every declared value is no restriction
            where_scope = {
                f.upper(): sorted({label(f, r) or "" for r in rows})
                for f, vs in where.items()
                if f not in group
                and config.scope_keys.canonical_condition(f.upper(), vs) is not None
            }
            scope = tbe_config.row_scope(
                where_scope, {f.upper(): v for f, v in zip(group, key, strict=True)}
            )
            sk = config.scope_keys.scope_key(scope)
        out[key] = tbe.perturb_cell(config, cell, scope_key=sk)
    return out


# --- queries -------------------------------------------------------------------------------------


def test_grouped_counts_sums_and_means_equal_the_pure_core(analyst):
    rows = query(
        analyst,
        "SELECT pet, count(*), sum(amount), avg(amount) FROM dwellings GROUP BY pet ORDER BY 1",
    )
    want = expected(CONFIG, {}, ["pet"], ("amount",))
    assert len(rows) == len(want)
    for pet, count, total, mean in rows:
        cell = want[(pet,)]
        assert count == cell.count
        assert dec(total) == cell.sums["amount"]
        assert Decimal(str(mean)) == pytest.approx(cell.means["amount"])


def test_ranges_and_where_scopes_equal_the_pure_core(analyst):
    rows = query(
        analyst,
        "SELECT diffix.tbe_range(bedrooms) AS b, count(*), sum(amount) FROM dwellings "
        "WHERE pet IN ('cat', 'dog') AND dwelling IN ('001', '999') GROUP BY 1",
    )
    want = expected(
        CONFIG, {"pet": ["cat", "dog"], "dwelling": ["001", "999"]}, ["bedrooms"], ("amount",)
    )
    assert {r[0]: r[1] for r in rows} == {k[0]: v.count for k, v in want.items()}
    assert {r[0]: dec(r[2]) for r in rows} == {k[0]: v.sums["amount"] for k, v in want.items()}


def test_the_same_cell_gets_the_same_answer_in_different_queries(analyst):
    alone = query(analyst, "SELECT count(*), sum(amount) FROM dwellings WHERE pet = 'cat'")
    grouped = query(analyst, "SELECT pet, count(*), sum(amount) FROM dwellings GROUP BY pet")
    narrowed = query(
        analyst,
        "SELECT count(*), pet, sum(amount) FROM dwellings WHERE pet IN ('cat', 'dog') "
        "GROUP BY pet ORDER BY count(*) DESC",
    )
    cat = [r[1:] for r in grouped if r[0] == "cat"]
    assert alone == cat
    assert [[r[0], r[2]] for r in narrowed if r[1] == "cat"] == cat
    assert alone == query(analyst, "SELECT count(*), sum(amount) FROM dwellings WHERE pet = 'cat'")


def test_grand_total_is_unchanged_by_scope_keys_but_not_in_the_additive_variant(db):
    _create(db, "scoped")
    _create(db, "unscoped")
    _create(db, "additive")
    _mark(db, CONFIG, "scoped")
    _mark(db, UNSCOPED, "unscoped")
    _mark(db, ADDITIVE, "additive")
    conn = db.as_role(db.create_role("anonymized_trusted"))
    totals = {
        t: query(conn, f"SELECT count(*), sum(amount) FROM {t}")[0]
        for t in ("scoped", "unscoped", "additive")
    }
    assert totals["scoped"] == totals["unscoped"]
    cell = tbe_helpers.summarize_records(RECORDS, CONFIG, ("amount",))
    assert totals["unscoped"][0] == tbe.perturb_cell(UNSCOPED, cell).count
    assert totals["additive"][0] == tbe.perturb_cell(ADDITIVE, cell, scope_key=1).count
    # a scope listing every declared value of a field is the grand total's scope
    everything = query(
        conn, "SELECT count(*) FROM scoped WHERE dwelling IN ('001', '002', '003', '999')"
    )
    assert everything[0][0] == totals["scoped"][0]


def test_numeric_fields_filter_by_declared_ranges(analyst):
    by_range = query(
        analyst,
        "SELECT count(*) FROM dwellings WHERE diffix.tbe_range(amount) IN ('<0', '0-19.99')",
    )
    want = expected(CONFIG, {"amount": ["<0", "0-19.99"]}, [])
    assert by_range == [[want[()].count]]
    two = query(analyst, "SELECT count(*) FROM dwellings WHERE bedrooms = 2")
    assert two == query(
        analyst, "SELECT count(*) FROM dwellings WHERE diffix.tbe_range(bedrooms) = '2'"
    )
    assert two == [[expected(CONFIG, {"bedrooms": ["2"]}, [])[()].count]]
    nulls = query(analyst, "SELECT count(*) FROM dwellings WHERE pet IS NULL")
    assert nulls == [[expected(CONFIG, {"pet": [None]}, [])[()].count]]


def test_empty_results_and_order_limit(analyst):
    present = {(r["pet"], r["dwelling"]) for r in RECORDS}
    pet, dwelling = next(
        (p, d)
        for p in ("dog", "cat", "fish")
        for d in ("001", "002", "003", "999")
        if (p, d) not in present
    )
    where = f"WHERE pet = '{pet}' AND dwelling = '{dwelling}'"
    assert query(analyst, f"SELECT count(*), sum(amount) FROM dwellings {where}") == [[0, None]]
    assert query(analyst, f"SELECT pet, count(*) FROM dwellings {where} GROUP BY pet") == []
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="'emu' is not a declared value"):
        query(analyst, "SELECT count(*) FROM dwellings WHERE pet = 'emu'")
    rows = query(
        analyst,
        "SELECT dwelling, count(*) AS n FROM dwellings GROUP BY 1 ORDER BY n DESC, 1 LIMIT 2",
    )
    full = query(analyst, "SELECT dwelling, count(*) AS n FROM dwellings GROUP BY 1")
    assert rows == sorted(full, key=lambda r: (-r[1], r[0]))[:2]


def _laplace_cell_keys(db, table: str, where: str, group: str) -> dict:
    """Per group value: the cell key the engine must use (keyed hashes of whole records)."""
    seed = laplace.record_seed(laplace.parse_config(LAPLACE))
    rows = db.admin.execute(
        f"SELECT {group}, pg_catalog.sum(pg_catalog.hash_record_extended("
        f"ROW(unit_id, bedrooms, dwelling, pet, amount, record_key), %s)) FROM {table} "
        f"WHERE {where} GROUP BY 1",
        (seed,),
    ).fetchall()
    return {value: laplace.cell_key_from_sum(total) for value, total in rows}


def test_laplace_answers_equal_the_pure_core(db):
    _create(db, "noisy")
    db.admin.execute("CALL diffix.mark_laplace('noisy', %s::jsonb)", (json.dumps(LAPLACE),))
    conn = db.as_role(db.create_role("anonymized_untrusted"))
    rows = query(
        conn,
        "SELECT pet, count(*), sum(amount) FROM noisy WHERE dwelling IN ('001', '002') "
        "GROUP BY pet",
    )
    config = laplace.parse_config(LAPLACE)
    keys = _laplace_cell_keys(db, "noisy", "dwelling IN ('001', '002')", "pet")
    assert len(rows) == len(keys) > 1
    for pet, count, total in rows:
        cell = [r for r in RECORDS if r["pet"] == pet and r["dwelling"] in ("001", "002")]
        want = laplace.perturb_cell(
            config,
            "public.noisy",
            keys[pet],
            len(cell),
            {"amount": sum(r["amount"] for r in cell)},
        )
        assert count == want.count
        assert float(total) == pytest.approx(float(want.sums["amount"]))
    again = query(conn, "SELECT count(*) FROM noisy WHERE pet = 'cat'")
    assert again == query(conn, "SELECT count(*) FROM noisy WHERE pet = 'cat'")


def test_direct_roles_see_raw_data(dwellings):
    direct = dwellings.create_role("direct")
    dwellings.admin.execute(f'GRANT SELECT ON dwellings TO "{direct}"')  # allowed: direct
    conn = dwellings.as_role(direct)
    [[count, total]] = query(conn, "SELECT count(*), sum(amount) FROM dwellings")
    assert (count, dec(total)) == (len(RECORDS), sum(r["amount"] for r in RECORDS))
    assert query(conn, "SELECT max(record_key) FROM dwellings") == [
        [max(r["record_key"] for r in RECORDS)]
    ]


# --- rejections ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT record_key FROM dwellings GROUP BY 1", "record key"),
        ("SELECT count(*) FROM dwellings WHERE record_key = 5", "record key"),
        ("SELECT sum(record_key) FROM dwellings", "record key"),
        ("SELECT sum(unit_id) FROM dwellings", "tiebreaker"),
        ("SELECT * FROM dwellings", "only grouping columns"),
        ("SELECT bedrooms, count(*) FROM dwellings GROUP BY 1", "declared ranges"),
        ("SELECT count(*) FROM dwellings WHERE amount = 5", "declared ranges"),
        ("SELECT count(*) FROM dwellings WHERE amount > 5", "only column = constant"),
        ("SELECT count(*) FROM dwellings WHERE pet = 'cat' OR pet = 'dog'", "only column"),
        ("SELECT count(*) FROM dwellings WHERE pet = 'cat' AND pet = 'dog'", "restricted twice"),
        ("SELECT count(pet) FROM dwellings", "only count(*)"),
        ("SELECT max(amount) FROM dwellings", "max is not supported"),
        ("SELECT pet, count(*) FROM dwellings", "GROUP BY"),
        ("SELECT d.pet FROM dwellings d JOIN dwellings e ON true GROUP BY 1", "joins"),
        ("SELECT count(*) FROM (SELECT * FROM dwellings) x", "exactly one table"),
        ("SELECT DISTINCT pet FROM dwellings", "DISTINCT"),
        (
            "SELECT count(*) FROM dwellings WHERE diffix.tbe_range(amount) = '0-20'",
            "not a declared",
        ),
        ("SELECT diffix.tbe_range(pet) FROM dwellings GROUP BY 1", "numeric fields"),
        ("SELECT count(*) FROM dwellings HAVING count(*) > 1", "HAVING"),
    ],
)
def test_unsupported_queries_are_rejected_with_clear_errors(analyst, sql, message):
    with pytest.raises(psycopg.errors.FeatureNotSupported) as error:
        query(analyst, sql)
    assert message in error.value.diag.message_primary
    assert error.value.diag.message_hint


def test_analysts_cannot_read_the_table_or_its_keys_directly(analyst):
    for attack in [
        "SELECT record_key FROM dwellings",
        "SELECT count(*) FROM dwellings",
        "COPY dwellings TO STDOUT",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute(attack)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("SELECT * FROM diffix.perturbation_configs")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="p-matrix"):
        analyst.execute("SELECT diffix.tbe_perturb(3, 5, 'dwellings')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("SELECT * FROM diffix.show_perturbations()")


@pytest.mark.parametrize(
    "grant",
    [
        "GRANT SELECT ON dwellings TO PUBLIC",
        "GRANT SELECT (record_key) ON dwellings TO diffix_anonymized_untrusted",
        "GRANT SELECT ON dwellings TO diffix_anonymized_trusted",
    ],
)
def test_grants_exposing_a_cellkey_table_are_refused(dwellings, grant):
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=r"refused: cellkey table public\.dwellings"
    ):
        dwellings.admin.execute(grant)


def test_check_security_reports_exposures_of_cellkey_tables(dwellings):
    analyst = dwellings.create_role("anonymized_untrusted")
    group = dwellings.create_role(login=False)
    dwellings.admin.execute(f'GRANT SELECT ON dwellings TO "{group}"')
    dwellings.admin.execute(f'GRANT "{group}" TO "{analyst}"')
    findings = dwellings.execute("SELECT severity, object FROM diffix.check_security()")
    assert ("critical", "public.dwellings") in findings


# --- configuration -------------------------------------------------------------------------------


def _state(db) -> list:
    return [
        db.execute("SELECT relid::regclass::text, label FROM diffix.table_labels ORDER BY 1"),
        db.execute("SELECT relid::regclass::text, method FROM diffix.perturbation_configs"),
        db.execute("SELECT has_table_privilege('diffix_engine', 'dwellings', 'SELECT')"),
        db.execute("SELECT has_table_privilege('public', 'dwellings', 'SELECT')"),
    ]


def _params(**changes):
    params = CONFIG.to_parameters() | changes
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(
    ("procedure", "config", "message"),
    [
        ("mark_tbe", {"bigN": 5}, "missing parameter 'record_key_name'"),
        ("mark_tbe", _params(bigN=0), "bigN must be a positive integer"),
        ("mark_tbe", _params(smallN=3), "p_matrix: 8 rows, expected smallN=3"),
        ("mark_tbe", _params(typo=1), "unknown parameter(s): typo"),
        ("mark_tbe", _params(p_filename="pmatrix1"), "either p_filename or p_matrix"),
        ("mark_tbe", _params(record_key_name="nosuch"), "'nosuch' is not a column"),
        ("mark_tbe", _params(record_key_name="pet"), "must be an integer type"),
        ("mark_tbe", _params(value_tiebreaker_name="record_key"), "cannot also be"),
        ("mark_tbe", _params(bigN=1000, primitive_scope_key_declarations=None), "outside [0"),
        (
            "mark_tbe",
            _params(
                primitive_scope_key_declarations=[
                    r
                    for r in CONFIG.to_parameters()["primitive_scope_key_declarations"]
                    if r[0] != "PET"
                ]
                + [["PET", "dog", 0], ["PET", "", 1]]
            ),
            "no primitive scope key for 'cat', 'fish'",
        ),
        (
            "mark_tbe",
            _params(
                primitive_scope_key_declarations=[
                    r
                    for r in CONFIG.to_parameters()["primitive_scope_key_declarations"]
                    if r[0] != "AMOUNT"
                ]
                + [["AMOUNT", "0-19.99", 0], ["AMOUNT", "<0", 1]]
            ),
            "in no declared range",
        ),
        (
            "mark_tbe",
            _params(primitive_scope_key_declarations=[["COLOUR", "red", 1]]),
            "'COLOUR' is not a column",
        ),
        ("mark_laplace", {"scale": 0, "key": "k"}, "scale must be a finite number > 0"),
        ("mark_laplace", {"scale": 1}, "missing parameter 'key'"),
        ("mark_laplace", {"scale": 1, "key": "k", "x": 1}, "unknown parameter(s): x"),
    ],
)
def test_bad_configurations_are_rejected_and_change_nothing(db, procedure, config, message):
    _create(db)
    db.admin.execute("CALL diffix.mark_public('dwellings')")
    before = _state(db)
    with pytest.raises(psycopg.Error) as error:
        db.admin.execute(f"CALL diffix.{procedure}('dwellings', %s::jsonb)", (json.dumps(config),))
    assert message in error.value.diag.message_primary
    assert not error.value.diag.message_primary.startswith("plpy")
    assert _state(db) == before


def test_mark_tbe_needs_an_admin_and_an_existing_table(dwellings):
    analyst = dwellings.as_role(dwellings.create_role("direct"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only superusers"):
        analyst.execute("CALL diffix.mark_laplace('dwellings', %s::jsonb)", (json.dumps(LAPLACE),))
    with pytest.raises(psycopg.errors.UndefinedTable):
        dwellings.admin.execute("CALL diffix.mark_laplace('nosuch', '{}')")


def test_marking_labels_and_unmarking_clears_the_configuration(dwellings):
    assert ("table", "public.dwellings", "cellkey") in dwellings.execute(
        "SELECT * FROM diffix.show_labels()"
    )
    [(name, method, summary, _)] = dwellings.execute("SELECT * FROM diffix.show_perturbations()")
    assert (name, method) == ("public.dwellings", "tbe")
    assert "bigN 1766976779" in summary and "scope keys on" in summary
    dwellings.admin.execute("CALL diffix.mark_personal('dwellings', 'unit_id')")
    assert dwellings.execute("SELECT count(*) FROM diffix.perturbation_configs") == [(0,)]
    _mark(dwellings)
    dwellings.admin.execute("CALL diffix.unmark_table('dwellings', force => true)")
    assert dwellings.execute("SELECT count(*) FROM diffix.perturbation_configs") == [(0,)]
    assert dwellings.execute(
        "SELECT has_table_privilege('diffix_engine', 'dwellings', 'SELECT')"
    ) == [(False,)]
    _mark(dwellings)
    dwellings.admin.execute("DROP TABLE dwellings")
    assert dwellings.execute("SELECT count(*) FROM diffix.perturbation_configs") == [(0,)]


def test_an_upgrade_relabels_tables_an_older_version_labeled_perturbed(dwellings):
    """Older versions labeled cell-key tables 'perturbed' (now the row-level level's name), with
    a CHECK constraint and a relabel trigger of their own, and named the definer that marks them
    _mark_perturbed; reinstalling relabels the tables 'cellkey', keeps their configuration (the
    cell-key engine still answers), renames the label in the history of unlabeled tables and drops
    the old definer and trigger."""
    dwellings.admin.execute(
        """
        ALTER TABLE diffix.table_labels DROP CONSTRAINT table_labels_label_fkey;
        DROP TRIGGER forget_on_relabel ON diffix.table_labels;
        CREATE OR REPLACE FUNCTION diffix._forget_perturbation() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
          IF NEW.label <> 'perturbed' THEN
            DELETE FROM diffix.perturbation_configs p WHERE p.relid = NEW.relid;
          END IF;
          RETURN NULL;
        END $$;
        CREATE TRIGGER forget_perturbation AFTER UPDATE OF label ON diffix.table_labels
          FOR EACH ROW EXECUTE FUNCTION diffix._forget_perturbation();
        UPDATE diffix.table_labels SET label = 'perturbed' WHERE relid = 'dwellings'::regclass;
        ALTER TABLE diffix.table_labels ADD CONSTRAINT table_labels_label_check
          CHECK (label IN ('personal', 'public', 'perturbed'));
        CREATE FUNCTION diffix._mark_perturbed(relid oid, method text, config jsonb)
        RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS 'SELECT method';
        CREATE PROCEDURE diffix._mark_perturbed_table(table_name text, method text, config jsonb)
        LANGUAGE sql AS 'SELECT 1';
        INSERT INTO diffix.unlabeled_tables
          (table_name, previous_label, new_label, dropped, changed_by, session_role)
        VALUES ('public.gone', 'perturbed', NULL, 'its cell-key configuration', 'x', 'x');
        """
    )
    assert ("table", "public.dwellings", "perturbed") in dwellings.execute(
        "SELECT * FROM diffix.show_labels()"
    )
    install.install(dwellings.dsn(), out=io.StringIO())
    labels = dwellings.execute("SELECT * FROM diffix.show_labels()")
    assert ("table", "public.dwellings", "cellkey") in labels
    assert not [row for row in labels if row[2] == "perturbed"]
    assert dwellings.execute("SELECT count(*) FROM diffix.perturbation_configs") == [(1,)]
    assert dwellings.execute(
        "SELECT to_regprocedure('diffix._mark_perturbed(oid, text, jsonb)'),"
        " to_regprocedure('diffix._mark_perturbed_table(text, text, jsonb)'),"
        " to_regprocedure('diffix._forget_perturbation()')"
    ) == [(None, None, None)]
    assert dwellings.execute(
        "SELECT previous_label FROM diffix.unlabeled_tables WHERE table_name = 'public.gone'"
    ) == [("cellkey",)]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        dwellings.admin.execute(
            "UPDATE diffix.table_labels SET label = 'perturbed' WHERE relid = 'dwellings'::regclass"
        )
    analyst = dwellings.as_role(dwellings.create_role("anonymized_untrusted"))
    rows = query(analyst, "SELECT pet, count(*) FROM dwellings GROUP BY pet")
    want = expected(CONFIG, {}, ["pet"])
    assert {pet: count for pet, count in rows} == {k[0]: v.count for k, v in want.items()}


# --- SQL functions -------------------------------------------------------------------------------


def test_cell_key_perturb_and_range_functions(dwellings):
    direct = dwellings.as_role(dwellings.create_role("direct"))
    keys = [r["record_key"] for r in RECORDS]
    ck = direct.execute(
        "SELECT diffix.tbe_cell_key(k, %s) FROM unnest(%s::bigint[]) k", (CONFIG.big_n, keys)
    ).fetchone()[0]
    assert ck == sum(keys) % CONFIG.big_n
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="outside"):
        direct.execute("SELECT diffix.tbe_cell_key(k, 10) FROM (VALUES (10::bigint)) v(k)")
    perturbed = direct.execute("SELECT diffix.tbe_perturb(5, %s, 'dwellings')", (ck,)).fetchone()
    assert perturbed[0] == tbe.perturbed_count(5, tbe.count_perturbation(CONFIG, ck, 5, 1))
    assert direct.execute(
        "SELECT diffix.tbe_range(3, 'BEDROOMS', 'dwellings'), "
        "diffix.tbe_range(39.99::float8, 'AMOUNT', 'dwellings')"
    ).fetchone() == ("3", "20-39.99")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="in no declared range"):
        direct.execute("SELECT diffix.tbe_range(100.005, 'AMOUNT', 'dwellings')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="only works inside"):
        direct.execute("SELECT diffix.tbe_range(3)")


@pytest.mark.parametrize(
    "call",
    [
        "SELECT diffix.tbe_perturb(5, 7, 'pg_class')",
        "SELECT diffix.tbe_range(3, 'BEDROOMS', 'pg_class')",
        "SELECT diffix.tbe_range(3.5::float8, 'NO_SUCH_FIELD', 'dwellings')",
        "SELECT diffix.tbe_range(100.005, 'AMOUNT', 'dwellings')",
    ],
)
def test_cell_key_function_errors_read_like_postgresql_errors(dwellings, call):
    direct = dwellings.as_role(dwellings.create_role("direct"))
    with pytest.raises(psycopg.Error) as error:
        direct.execute(call)
    diag = error.value.diag
    assert diag.sqlstate not in (None, "XX000", "38000")
    assert diag.message_primary
    assert not diag.message_primary.startswith(("plpy", "spiexceptions", ":"))


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_adds_record_keys_and_configures(db, tmp_path, capsys):
    records = [dict(r, record_key=None) for r in RECORDS]
    _create(db, "homes", records)
    db.admin.execute("ALTER TABLE homes DROP COLUMN record_key")
    dsn = db.dsn()
    assert cli.main(["tbe-keys", "--dsn", dsn, "--table", "homes", "--column", "rk"]) == 2
    assert "pass --big-n" in capsys.readouterr().err
    args = ["tbe-keys", "--dsn", dsn, "--table", "homes", "--column", "rk"]
    assert cli.main([*args, "--big-n", str(CONFIG.big_n)]) == 0
    assert "added record keys to 40 rows" in capsys.readouterr().out
    assert cli.main([*args, "--big-n", "7"]) == 2
    assert 'column "rk" already exists' in capsys.readouterr().err
    lo, hi, nulls, distinct = db.execute(
        "SELECT min(rk), max(rk), count(*) FILTER (WHERE rk IS NULL), count(DISTINCT rk) FROM homes"
    )[0]
    assert 0 <= lo <= hi < CONFIG.big_n and nulls == 0 and distinct == 40

    config = json.loads((EXAMPLES / "dataset.json").read_text())
    config["transform_definitions"]["tbe_perturb"]["parameters"]["record_key_name"] = "rk"
    path = tmp_path / "homes.json"
    path.write_text(json.dumps(config))
    configure = ["tbe-configure", "--dsn", dsn, "--table", "homes", "--config", str(path)]
    assert cli.main(configure) == 2
    assert "pmatrix1.csv does not exist" in capsys.readouterr().err  # CSVs are elsewhere
    assert cli.main([*configure, "--path", str(EXAMPLES)]) == 0
    assert "homes is configured for TBE" in capsys.readouterr().out
    assert db.execute("SELECT method FROM diffix.perturbation_configs") == [("tbe",)]

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["tbe-configure", "--dsn", dsn, "--table", "homes", "--config", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert cli.main([*configure[:4], "nosuch", *configure[5:], "--path", str(EXAMPLES)]) == 2
    assert 'table "nosuch" does not exist' in capsys.readouterr().err

    laplace_config = ["laplace-configure", "--dsn", dsn, "--table", "homes"]
    assert cli.main([*laplace_config, "--config", str(EXAMPLES / "laplace.json")]) == 0
    assert db.execute("SELECT method FROM diffix.perturbation_configs") == [("laplace",)]


# --- attacks: one set of records, many spellings -------------------------------------------------


@pytest.mark.parametrize("level", ["anonymized_trusted", "anonymized_untrusted"])
def test_laplace_noise_does_not_change_with_the_spelling_of_a_condition(db, level):
    """Padding an IN list with values that match nothing, redundant conditions, reordered or
    re-cast constants: the same records, so the same noise (no averaging it away)."""
    _create(db, "noisy")
    db.admin.execute("CALL diffix.mark_laplace('noisy', %s::jsonb)", (json.dumps(LAPLACE),))
    conn = db.as_role(db.create_role(level))
    cats = [r for r in RECORDS if r["pet"] == "cat" and r["bedrooms"] in (2, 3)]
    units = ", ".join(str(r["unit_id"]) for r in cats)
    spellings = [
        "pet = 'cat' AND bedrooms IN (2, 3)",
        "pet IN ('cat', 'iguana', 'zz17') AND bedrooms IN (3, 2)",
        "pet IN ('zz17', 'cat', 'cat') AND bedrooms IN (2, 3, 3, 1000, -1)",
        "'cat' = pet AND bedrooms IN ('02', '3')",
        "pet = 'cat' AND bedrooms IN (2, 3) AND dwelling IN ('001', '002', '003', '999')",
        f"pet = 'cat' AND bedrooms IN (2, 3) AND unit_id IN ({units})",
        f"unit_id IN ({units}, 100000, 100001)",
    ]
    answers = [
        query(conn, f"SELECT count(*), sum(amount), avg(amount) FROM noisy WHERE {w}")
        for w in spellings
    ]
    assert all(a == answers[0] for a in answers), answers
    grouped = query(
        conn,
        "SELECT pet, count(*), sum(amount), avg(amount) FROM noisy "
        "WHERE bedrooms IN (2, 3) GROUP BY pet",
    )
    assert [r[1:] for r in grouped if r[0] == "cat"] == answers[0]
    # ... and it is the noise of those records, not an unperturbed answer
    [key] = _laplace_cell_keys(db, "noisy", "pet = 'cat' AND bedrooms IN (2, 3)", "pet").values()
    want = laplace.perturb_cell(
        laplace.parse_config(LAPLACE),
        "public.noisy",
        key,
        len(cats),
        {"amount": sum(r["amount"] for r in cats)},
    )
    [[count, total, _]] = answers[0]
    assert count == want.count
    assert float(total) == pytest.approx(float(want.sums["amount"]))
    other = query(conn, "SELECT count(*), sum(amount) FROM noisy WHERE pet = 'dog'")
    assert other != [answers[0][0][:2]]


def test_laplace_record_keys_skip_columns_without_a_hash_function(db):
    """json has no hash function: its column is left out of the record keys, decided from the
    catalog, so no query fails on some rows only. A table with nothing to hash is refused."""
    db.admin.execute("CREATE TABLE notes (id int, kind text, body json, at timestamptz)")
    db.admin.execute(
        "INSERT INTO notes SELECT i, 'k' || i % 3, '{}', '2024-01-01'::timestamptz + i * "
        "interval '1 hour' FROM generate_series(1, 60) i"
    )
    db.admin.execute("CALL diffix.mark_laplace('notes', %s::jsonb)", (json.dumps(LAPLACE),))
    conn = db.as_role(db.create_role("anonymized_untrusted"))
    first = query(conn, "SELECT kind, count(*) FROM notes GROUP BY kind ORDER BY 1")
    assert [r[0] for r in first] == ["k0", "k1", "k2"]
    # session settings that change how values are written do not change the noise
    conn.execute("SET TimeZone = 'Pacific/Chatham'")
    conn.execute("SET DateStyle = 'SQL, DMY'")
    conn.execute("SET extra_float_digits = -15")
    assert query(conn, "SELECT kind, count(*) FROM notes GROUP BY kind ORDER BY 1") == first
    db.admin.execute("CREATE TABLE blobs (body json, tags json[])")
    with pytest.raises(psycopg.Error, match="no column that can identify its records"):
        db.admin.execute("CALL diffix.mark_laplace('blobs', %s::jsonb)", (json.dumps(LAPLACE),))


@pytest.mark.parametrize("level", ["anonymized_trusted", "anonymized_untrusted"])
def test_equivalent_tbe_scopes_give_one_answer(dwellings, level):
    """32 spellings of one scope (reordered and repeated values, a condition listing every
    declared value of a field, declared values without records in the cell) give one answer."""
    conn = dwellings.as_role(dwellings.create_role(level))
    present = {r["bedrooms"] for r in RECORDS}
    assert not present & {5, 6}  # declared bedrooms values without records
    every_dwelling = "dwelling IN ('001', '002', '003', '999')"
    every_amount = "diffix.tbe_range(amount) IN ('<0', '0-19.99', '20-39.99', '40-59.99', " + (
        "'60-79.99', '80-100.00', '>=100.01')"
    )
    answers = set()
    for variant in range(32):
        bedrooms = ["'2'", "'3'"] + ["'5'"] * (variant & 1) + ["'6'"] * (variant >> 1 & 1)
        pets = "('cat', 'dog')" if variant & 4 else "('dog', 'cat', 'dog')"
        where = [f"pet IN {pets}", f"diffix.tbe_range(bedrooms) IN ({', '.join(bedrooms)})"]
        where += [every_dwelling] * (variant >> 3 & 1) + [every_amount] * (variant >> 4 & 1)
        [row] = query(
            conn, "SELECT count(*), sum(amount) FROM dwellings WHERE " + " AND ".join(where)
        )
        answers.add(tuple(row))
    want = expected(CONFIG, {"pet": ["cat", "dog"], "bedrooms": ["2", "3"]}, [], ("amount",))[()]
    assert answers == {(want.count, float(want.sums["amount"]))}
    # the test has power: scope keys of the spelled-out value lists would give several answers
    cell = tbe_helpers.summarize_records(
        [r for r in RECORDS if r["pet"] in ("cat", "dog") and r["bedrooms"] in (2, 3)],
        CONFIG,
        ("amount",),
    )
    literal = {
        tbe.perturb_cell(
            CONFIG,
            cell,
            scope_key=CONFIG.scope_keys.scope_key(
                {"PET": ["cat", "dog"], "BEDROOMS": ["2", "3", *extra]}
            ),
        ).sums["amount"]
        for extra in ([], ["5"], ["6"], ["5", "6"])
    }
    assert len(literal) == 4


def test_mark_tbe_refuses_empty_strings_in_declared_fields(db):
    """'' would be read as the NULL sentinel: another spelling of NULL's scope."""
    _create(db, "blank", [RECORDS[0] | {"pet": ""}, *RECORDS[1:]])
    with pytest.raises(psycopg.Error, match="holds the empty string"):
        _mark(db, CONFIG, "blank")
    assert db.admin.execute("SELECT count(*) FROM diffix.perturbation_configs").fetchone() == (0,)


def test_tbe_conditions_on_values_that_are_not_declared_are_refused(analyst):
    """The empty value name declares NULL; the constant '' is the empty string, not NULL."""
    for condition, shown in [
        ("pet IN ('cat', '')", "''"),
        ("pet = ''", "''"),
        ("pet IN ('cat', 'iguana')", "'iguana'"),
        ("dwelling IS NULL", "NULL"),  # DWELLING declares no NULL sentinel
    ]:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as error:
            query(analyst, f"SELECT count(*) FROM dwellings WHERE {condition}")
        assert error.value.diag.message_primary.startswith(f"{shown} is not a declared value")
    assert query(analyst, "SELECT count(*) FROM dwellings WHERE pet IS NULL") == [
        [expected(CONFIG, {"pet": [None]}, [])[()].count]
    ]
