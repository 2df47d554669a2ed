"""PL/Python entry points. Each SQL function in the diffix schema calls one of these.

This is the only module besides catalog.py that talks to the database; the logic it calls is pure.
Errors the user can fix are raised with plpy.error so they carry a SQLSTATE, detail and hint.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pldiffix.core import audit, catalog, results, session, settings
from pldiffix.core.errors import reports_errors
from pldiffix.core.levels import AccessLevel, most_restricted
from pldiffix.core.statements import parse_single_select

# --- access levels -------------------------------------------------------------------------------


@reports_errors
def access_level(plpy: Any) -> str:
    return catalog.effective_level(plpy, catalog.current_role(plpy)).value


# --- settings ------------------------------------------------------------------------------------


@reports_errors
def show_settings(plpy: Any) -> list[tuple[str, str, str, str]]:
    role = catalog.current_role(plpy)
    is_admin = catalog.role_facts(plpy, role).is_admin
    stored = catalog.database_settings(plpy)
    overrides = session.overrides(catalog.session_role(plpy))
    values = catalog.effective_settings(plpy)
    rows = []
    for name, spec in settings.SPECS.items():
        if name in overrides:
            source = "session"
        elif name in stored or name == "salt":
            source = "database"
        else:
            source = "default"
        if spec.secret:
            shown = "(hidden)" if not is_admin else _stored_salt(plpy)
        elif name == "session_access_level":
            shown = catalog.effective_level(plpy, role).value
        else:
            shown = settings.format_value(values[name])
        rows.append((name, shown, source, spec.description))
    return rows


def _stored_salt(plpy: Any) -> str:
    rows = catalog.query(plpy, "SELECT diffix._salt() AS salt")
    return rows[0]["salt"] or ""


@reports_errors
def set_setting(plpy: Any, name: str, raw: str | None) -> str:
    """diffix.set(name, value): a session value, checked against who may change what."""
    spec = settings.spec_for(name)
    role = catalog.current_role(plpy)
    facts = catalog.role_facts(plpy, role)
    if not settings.may_change(spec, is_admin=facts.is_admin):
        raise PermissionError(
            f"only administrators can change {spec.name}; "
            "analysts may change compute_suppress_bin, text_label_for_suppress_bin "
            "and lower session_access_level"
        )
    value = settings.parse_value(spec, raw)
    if spec.name == "session_access_level":
        values = catalog.effective_settings(plpy)
        allowed = catalog.role_level(facts, values["default_access_level"])
        if value.rank < allowed.rank:
            raise PermissionError(
                f"cannot raise the session access level to {value.value}: "
                f"role {role} has access level {allowed.value}"
            )
    else:
        candidate = catalog.effective_settings(plpy) | {spec.name: value}
        settings.check_consistency(candidate)
    session.set_override(catalog.session_role(plpy), spec.name, value)
    return settings.format_value(value)


@reports_errors
def configure(plpy: Any, name: str, raw: str | None) -> None:
    """diffix.configure(name, value): the database-wide value. Runs as definer; admins only."""
    _require_admin(plpy, "change database-wide settings")
    spec = settings.spec_for(name)
    if spec.session_only:
        raise settings.SettingError(
            f"{spec.name} applies to one session only; use SELECT diffix.set('{spec.name}', ...)"
        )
    value = settings.parse_value(spec, raw)
    stored = catalog.query(plpy, "SELECT name, value FROM diffix.database_settings")
    candidate = settings.defaults()
    for row in stored:
        if row["name"] in settings.SPECS and row["name"] != "salt":
            candidate[row["name"]] = settings.parse_value(settings.SPECS[row["name"]], row["value"])
    candidate[spec.name] = value
    settings.check_consistency(candidate)
    catalog.query(
        plpy,
        "INSERT INTO diffix.database_settings (name, value) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        ("text", "text"),
        (spec.name, settings.format_value(value)),
    )


def _require_admin(plpy: Any, action: str) -> str:
    role = catalog.invoking_role(plpy)
    if not catalog.role_facts(plpy, role).is_admin:
        raise PermissionError(f"only superusers and members of diffix_admin can {action}")
    return role


# --- queries -------------------------------------------------------------------------------------


@reports_errors
def query_json(plpy: Any, sql: str | None) -> str:
    """diffix.query_json(sql): rows as a jsonb document, anonymized unless the role is direct."""
    return _answer(plpy, sql, with_types=False).document


def _answer(
    plpy: Any, sql: str | None, *, with_types: bool, level: AccessLevel | None = None
) -> results.Answer:
    """The answer, after its row in the audit log (core/audit.py); a refused or failed query
    is logged with its reason and its error raised unchanged."""
    if level is None:
        level = catalog.effective_level(plpy, catalog.current_role(plpy))
    route = _Route("direct" if level is AccessLevel.DIRECT else "diffix")
    try:
        answer = _unaudited_answer(plpy, sql, level, with_types, route)
    except Exception as error:
        _log_refusal(plpy, level, route.mechanism, sql, error)
        raise
    _log_answer(plpy, level, sql, answer)
    return answer


def _log_answer(plpy: Any, level: AccessLevel, sql: str | None, answer: results.Answer) -> None:
    audit.record(
        plpy,
        level=level.value,
        mechanism=answer.mechanism,
        sql=sql,
        accepted=True,
        rows=answer.rows,
        epsilon=answer.epsilon,
        delta=answer.delta,
    )


@dataclass
class _Route:
    """The mechanism a query is going to, so that its refusal is logged under it."""

    mechanism: str


def _log_refusal(
    plpy: Any, level: AccessLevel, mechanism: str, sql: str | None, error: Exception
) -> None:
    """The refusal's row; if the log cannot be written the refusal stands all the same."""
    with contextlib.suppress(plpy.SPIError):
        audit.record(
            plpy,
            level=level.value,
            mechanism=mechanism,
            sql=sql,
            accepted=False,
            reason=audit.reason_of(error),
        )


def _unaudited_answer(
    plpy: Any, sql: str | None, level: AccessLevel, with_types: bool, route: _Route
) -> results.Answer:
    tree = parse_single_select(sql)
    assert sql is not None
    if level is AccessLevel.DIRECT:
        return _run_with_own_privileges(plpy, tree, with_types, "direct")
    if level is AccessLevel.ANONYMIZED_DP:
        route.mechanism = "dp"
        return _dp_routed(plpy, sql, tree, with_types)
    if level is AccessLevel.PERTURBED:
        raise PermissionError(
            "the perturbed access level reads the views in diffix_perturbed with plain SQL, "
            "not through diffix.query_json"
        )
    # TBE / Laplace tables have their own engine (cellkey/engine.py).
    from pldiffix.cellkey import engine as cellkey_engine

    route.mechanism = "cellkey"
    answer = cellkey_engine.dispatch(plpy, sql, tree, level)
    if answer is not None:
        return answer
    from pldiffix.core.relations import RelationKind
    from pldiffix.diffix.validation import validate

    route.mechanism = "diffix"

    schemas = catalog.current_schemas(plpy)
    values = catalog.effective_settings(plpy)
    validated = validate(
        sql,
        catalog.LiveCatalog(plpy, schemas),
        level,
        treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"]),
    )
    if not any(r.kind is RelationKind.PERSONAL for r in validated.relations):
        return _run_with_own_privileges(plpy, tree, with_types, "public")
    # The engine returns the statement with its anonymizing parts replaced by their anonymized
    # rows; everything else in it runs here, with the caller's own privileges.
    rows = catalog.query(
        plpy,
        "SELECT diffix._anonymized_query_json($1, $2, $3) ->> 'query' AS q",
        ("text", "text", "text[]"),
        (sql, level.value, schemas),
    )
    return _run_with_own_privileges(plpy, parse_single_select(rows[0]["q"]), with_types, "diffix")


def _dp_routed(plpy: Any, sql: str, tree: Any, with_types: bool) -> results.Answer:
    """query_json / query of an anonymized_dp role: over personal tables a DP answer spending
    the session's dp_epsilon (and dp_delta), else the query as at the untrusted level."""
    from pldiffix.cellkey import engine as cellkey_engine
    from pldiffix.core.relations import RelationKind
    from pldiffix.diffix.validation import validate

    if cellkey_engine.perturbed_table_in(plpy, tree) is not None:
        raise PermissionError(
            "roles at the anonymized_dp level cannot read perturbed (cell-key) tables"
        )
    schemas = catalog.current_schemas(plpy)
    live = catalog.LiveCatalog(plpy, schemas)
    if _reads_personal_table(tree, live):
        values = catalog.effective_settings(plpy)
        return _dp_answer_document(
            plpy, sql, float(values["dp_epsilon"]), float(values["dp_delta"]), with_types
        )
    values = catalog.effective_settings(plpy)
    validated = validate(
        sql,
        live,
        AccessLevel.ANONYMIZED_UNTRUSTED,
        treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"]),
    )
    assert not any(r.kind is RelationKind.PERSONAL for r in validated.relations)
    return _run_with_own_privileges(plpy, tree, with_types, "public")


def _reads_personal_table(tree: Any, live: catalog.LiveCatalog) -> bool:
    from sqlglot import exp

    from pldiffix.core.relations import RelationKind

    for table in tree.find_all(exp.Table):
        for schema in [table.db] if table.db else live.search_path:
            relation = live.get_relation(schema, table.name)
            if relation is not None:
                if relation.kind is RelationKind.PERSONAL:
                    return True
                break
    return False


@reports_errors
def dp_query_json(plpy: Any, sql: str | None, epsilon: float | None, delta: float | None) -> str:
    """diffix.dp_query_json(sql, epsilon, delta): a DP answer, paid from the role's budget."""
    level = catalog.effective_level(plpy, catalog.current_role(plpy))
    try:
        parse_single_select(sql)
        assert sql is not None
        answer = _dp_answer_document(plpy, sql, epsilon, delta, with_types=False)
    except Exception as error:
        _log_refusal(plpy, level, "dp", sql, error)
        raise
    _log_answer(plpy, level, sql, answer)
    return answer.document


def _dp_answer_document(
    plpy: Any, sql: str, epsilon: float | None, delta: float | None, with_types: bool
) -> results.Answer:
    """The DP engine answers (and charges); its released rows are post-processed here, with the
    caller's own privileges, and the document carries the engine's DP report."""
    rows = catalog.query(
        plpy,
        "SELECT (d ->> 'query') AS q, (d -> 'dp')::text AS dp"
        " FROM diffix._dp_answer($1, $2, $3, $4) AS d",
        ("text", "float8", "float8", "text[]"),
        (sql, epsilon, delta, catalog.current_schemas(plpy)),
    )
    answer = _run_with_own_privileges(plpy, parse_single_select(rows[0]["q"]), with_types, "dp")
    report = json.loads(rows[0]["dp"])
    # The rows' document is an object; the report joins it as its last member, numbers intact.
    assert answer.document.endswith("}")
    document = f'{answer.document[:-1]}, "dp": {rows[0]["dp"]}}}'
    return results.Answer(
        document, answer.column_types, answer.rows, "dp", report["epsilon"], report["delta"]
    )


@reports_errors
def dp_answer(
    plpy: Any,
    sql: str | None,
    epsilon: float | None,
    delta: float | None,
    schemas: list[str] | None,
) -> str:
    """The DP engine's entry point (SECURITY DEFINER, owned by diffix_engine); see dp/engine.py."""
    parse_single_select(sql)
    assert sql is not None
    from pldiffix.dp import engine as dp_engine

    return json.dumps(dp_engine.run(plpy, sql, epsilon, delta, schemas or ["public"]))


# diffix.query runs in two steps inside one PL/pgSQL call (sql/core/60_query.sql): prepare_rows
# answers the query, keeps its rows here and returns the column definition list; stashed_rows
# hands those rows out. PL/pgSQL can then re-raise errors without PL/Python's prefix.
_stash: dict[str, Any] = {}


@reports_errors
def prepare_rows(plpy: Any, sql: str | None) -> str:
    """The column definition list of the query's result; its rows wait for stashed_rows."""
    _names, types = _stash_answer(plpy, sql)
    return ", ".join(f"c{i} {typ}" for i, typ in enumerate(types, 1))


def _stash_answer(plpy: Any, sql: str | None) -> tuple[list[str], list[str]]:
    """Answers the query, keeps its rows for stashed_rows, returns its column names and types."""
    _stash.clear()
    names, types, rows = _answer_rows(plpy, sql)
    _stash.update(role=catalog.current_role(plpy), rows=rows)
    return names, types


def _answer_rows(
    plpy: Any, sql: str | None, level: AccessLevel | None = None
) -> tuple[list[str], list[str], list[list[Any]]]:
    answer = _answer(plpy, sql, with_types=True, level=level)
    document = json.loads(answer.document, parse_float=Decimal)
    rows = [[_as_sql_input(value) for value in row] for row in document["rows"]]
    return list(document["columns"]), list(answer.column_types), rows


@reports_errors
def stashed_rows(plpy: Any) -> list[list[Any]]:
    """The rows prepare_rows kept, once, and only for the role that asked for them."""
    role, rows = _stash.pop("role", None), _stash.pop("rows", [])
    if role != catalog.current_role(plpy):
        return []
    return rows


# The proxy's answers wait under a token until their fetch statement runs: a client may bind
# several portals before it executes the first. The oldest are dropped beyond the limit.
_proxy_answers: OrderedDict[int, tuple[str, list[list[Any]]]] = OrderedDict()
_PROXY_ANSWERS_KEPT = 64
_proxy_tokens = itertools.count(1)


@reports_errors
def proxy_rows(plpy: Any, token: int | None) -> list[list[Any]]:
    """The rows proxy_plan kept under `token`, once, and only for the role that asked."""
    role, rows = _proxy_answers.pop(token, (None, []))
    if role != catalog.current_role(plpy):
        return []
    return rows


def _as_sql_input(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):
        return [_as_sql_input(item) for item in value]
    return value


def _run_with_own_privileges(
    plpy: Any, tree: Any, with_types: bool, mechanism: str
) -> results.Answer:
    """Runs one parsed SELECT as the caller and encodes its rows.

    The statement executed is generated from the parsed tree, never pasted from the text. Rows
    are rendered by row_to_json, which keeps repeated column names and writes dates and
    timestamps in ISO 8601 whatever the session's DateStyle (which still governs casts to text
    inside the query).
    """
    statement = tree.sql(dialect="postgres")  # generated once, wrapped twice
    shape = plpy.execute(_wrapped(statement, _COLUMN_NAMES))
    names = shape.colnames() or []
    types = (
        catalog.type_names(plpy, shape.coltypes(), shape.coltypmods())
        if with_types and names
        else []
    )
    result = plpy.execute(_wrapped(statement, _ROWS_AS_JSON))
    rows = [results.decode_row_json(row["row"]) for row in result]
    document = results.encode_document(names, [0] * len(names), rows)
    return results.Answer(document, types, len(rows), mechanism)


_COLUMN_NAMES = "SELECT * FROM ({}) AS q LIMIT 0"
_ROWS_AS_JSON = "SELECT CAST(pg_catalog.row_to_json(q) AS TEXT) AS row FROM ({}) AS q"


def _wrapped(statement: str, template: str) -> str:
    """One of the fixed templates above with `statement` (generated from a parsed tree, one
    SELECT) as its subquery `q`."""
    return template.format(statement)


@reports_errors
def anonymized_query_json(
    plpy: Any, sql: str | None, requested_level: str | None, schemas: list[str] | None = None
) -> str:
    """The engine's entry point (SECURITY DEFINER, owned by diffix_engine).

    It never returns raw data: the level is the most restricted of what the session's role
    has, what the caller asked for, and anonymized_trusted. It returns {"query": sql}: the
    statement with every anonymizing part replaced by its anonymized rows (see engine.py).
    """
    parse_single_select(sql)
    assert sql is not None
    level = most_restricted(
        catalog.effective_level(plpy, catalog.invoking_role(plpy)),
        AccessLevel.parse(requested_level or AccessLevel.ANONYMIZED_TRUSTED.value),
        AccessLevel.ANONYMIZED_TRUSTED,
    )
    if level is AccessLevel.ANONYMIZED_DP:
        raise PermissionError(
            "roles at the anonymized_dp level get differentially private answers only; "
            "use diffix.dp_query_json(sql, epsilon)"
        )
    from pldiffix.diffix import engine

    return json.dumps({"query": engine.run(plpy, sql, level, schemas)})


# --- the wire-protocol front (proxy/) ------------------------------------------------------------


@reports_errors
def proxy_plan(
    plpy: Any,
    sql: str | None,
    answer: bool,
    params: list[str | None] | None,
    param_types: list[int] | None,
    column_types: list[int] | None,
    column_typmods: list[int] | None,
) -> list[tuple[str, str | None]]:
    """diffix.proxy_plan: the route of a client statement (core/routing.py) and, when asked to
    answer one routed to the engine, the statement that returns its anonymized rows."""
    from pldiffix.core import routing

    level = catalog.effective_level(plpy, catalog.current_role(plpy))
    statements = routing.parse_statements(sql or "")
    if level in (AccessLevel.DIRECT, AccessLevel.PERTURBED) or not statements:
        return [(routing.Route.PASS.value, None)]
    try:
        chosen = routing.route(statements, lambda name: _is_protected(plpy, name))
    except routing.RoutingError as error:
        mechanism = "dp" if level is AccessLevel.ANONYMIZED_DP else "diffix"
        _log_refusal(plpy, level, mechanism, sql, error)
        raise
    if chosen is not routing.Route.ENGINE or not answer:
        return [(chosen.value, None)]
    copied = routing.copied_query(statements[0])  # COPY (query) TO STDOUT: answer the query
    query = statements[0] if copied is None else copied
    statement = sql if copied is None else copied.sql(dialect="postgres")
    if params:
        oids = list(param_types or [0] * len(params))
        names = catalog.type_names(plpy, oids, [-1] * len(oids))
        known = [name if oid else None for name, oid in zip(names, oids, strict=True)]
        statement = routing.inline_parameters(query, params, known).sql(dialect="postgres")
    names, types, rows = _answer_rows(plpy, statement, level)
    token = next(_proxy_tokens)
    _proxy_answers[token] = (catalog.current_role(plpy), rows)
    while len(_proxy_answers) > _PROXY_ANSWERS_KEPT:
        _proxy_answers.popitem(last=False)
    client_types = None
    if column_types:
        client_types = catalog.type_names(plpy, column_types, column_typmods or [])
        if len(client_types) != len(types):
            client_types = None
    fetch = routing.fetch_statement(token, names, types, client_types)
    return [(chosen.value, fetch if copied is None else routing.copy_out(sql or "", fetch))]


def _is_protected(plpy: Any, name: str) -> bool:
    try:
        rows = catalog.query(
            plpy,
            "SELECT 1 FROM diffix.table_labels"
            " WHERE relid = pg_catalog.to_regclass($1) AND label IN ('personal', 'perturbed')",
            ("text",),
            (name,),
        )
    except plpy.SPIError:
        return False  # not a name the server can resolve: it will say so itself
    return bool(rows)
