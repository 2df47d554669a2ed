"""PL/Python entry points. Each SQL function in the diffix schema calls one of these.

This is the only module besides catalog.py that talks to the database; the logic it calls is pure.
Errors the user can fix are raised with plpy.error so they carry a SQLSTATE, detail and hint.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pldiffix.core import audit, catalog, results, session, settings, sqltext
from pldiffix.core.errors import reports_errors
from pldiffix.core.levels import AccessLevel
from pldiffix.core.statements import parse_single_select

if TYPE_CHECKING:
    from sqlglot import exp

    from pldiffix.core import proxy_routing

# --- access levels -------------------------------------------------------------------------------


@reports_errors
def access_level(plpy: Any) -> str:
    return catalog.person_level(plpy).value


# --- settings ------------------------------------------------------------------------------------


@reports_errors
def show_settings(plpy: Any) -> list[tuple[str, str, str, str]]:
    role = catalog.invoking_role(plpy)
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
            shown = catalog.person_level(plpy).value
        else:
            shown = settings.format_value(values[name])
        rows.append((name, shown, source, spec.description))
    return rows


def _stored_salt(plpy: Any) -> str:
    rows = catalog.query(plpy, "SELECT diffix._salt() AS salt")
    return rows[0]["salt"] or ""


@reports_errors
def set_setting(plpy: Any, name: str, raw: str | None) -> str:
    """diffix.set(name, value): a session value, checked against who may change what.

    Runs as definer (diffix._set, owner diffix_engine): who is an administrator is decided here,
    against the catalog, never by invoker-rights code whose SQL the caller's session can bend;
    the engine trusts these values only because nothing else writes them.
    """
    spec = settings.spec_for(name)
    role = catalog.invoking_role(plpy)
    facts = catalog.role_facts(plpy, role)
    login_is_admin = catalog.role_facts(plpy, catalog.session_role(plpy)).is_admin
    if not settings.may_change(spec, is_admin=facts.is_admin and login_is_admin):
        raise PermissionError(
            f"only administrators can change {spec.name}; "
            "analysts may change compute_suppress_bin, text_label_for_suppress_bin, "
            "dp_epsilon, dp_delta and lower session_access_level"
        )
    value = settings.parse_value(spec, raw)
    if spec.name == "session_access_level":
        allowed = catalog.person_level(plpy)
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
    catalog.require_admin(plpy, "change database-wide settings")
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


# --- queries ------------------------------------------------------------------------------------


@reports_errors
def query_json(plpy: Any, sql: str | None) -> str:
    """diffix.query_json(sql): rows as a jsonb document, anonymized unless the role is direct."""
    return _answer(plpy, sql, with_types=False).document


@reports_errors
def dp_query_json(plpy: Any, sql: str | None, epsilon: float | None, delta: float | None) -> str:
    """diffix.dp_query_json(sql, epsilon, delta): a DP answer, paid from the role's budget."""
    return _answer(plpy, sql, with_types=False, dp=(epsilon, delta)).document


@reports_errors
def gate(
    plpy: Any,
    sql: str | None,
    epsilon: float | None,
    delta: float | None,
    schemas: list[str] | None,
    explicit_dp: bool | None,
) -> str:
    """diffix._answer: the gate every answer passes (SECURITY DEFINER, answers.py)."""
    from pldiffix import answers

    return answers.answer(plpy, sql, epsilon, delta, schemas, explicit_dp=bool(explicit_dp))


_GATE = (
    "SELECT d OPERATOR(pg_catalog.->>) 'mechanism' AS mechanism,"
    " d OPERATOR(pg_catalog.->>) 'own' AS own, d OPERATOR(pg_catalog.->>) 'query' AS query,"
    " CAST(d OPERATOR(pg_catalog.->) 'dp' AS pg_catalog.text) AS dp"
    " FROM diffix._answer($1, $2, $3, $4, $5) AS d"
)


def _answer(
    plpy: Any, sql: str | None, *, with_types: bool, dp: tuple[Any, Any] | None = None
) -> results.Answer:
    """The gate's reply made into an answer: what it hands back to run runs here, with the
    caller's own privileges (whatever the caller's session does to it stays the caller's)."""
    epsilon, delta = dp if dp is not None else (None, None)
    reply = catalog.query(
        plpy,
        _GATE,
        ("text", "float8", "float8", "text[]", "bool"),
        (sql, epsilon, delta, catalog.current_schemas(plpy), dp is not None),
    )[0]
    mechanism = reply["mechanism"]
    statement = reply["own"] if reply["own"] is not None else reply["query"]
    answer = _run_with_own_privileges(plpy, parse_single_select(statement), with_types, mechanism)
    if reply["dp"] is None:
        return answer
    report = json.loads(reply["dp"])
    # The rows' document is an object; the report joins it as its last member, numbers intact.
    assert answer.document.endswith("}")
    document = f'{answer.document[:-1]}, "dp": {reply["dp"]}}}'
    return results.Answer(
        document, answer.column_types, answer.rows, "dp", report["epsilon"], report["delta"]
    )


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


def _answer_rows(plpy: Any, sql: str | None) -> tuple[list[str], list[str], list[list[Any]]]:
    answer = _answer(plpy, sql, with_types=True)
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
    statement = sqltext.render(tree)  # generated once, wrapped twice
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
# q.* is the whole row even when the statement has an output column named q
_ROWS_AS_JSON = "SELECT CAST(pg_catalog.row_to_json(q.*) AS TEXT) AS row FROM ({}) AS q"


def _wrapped(statement: str, template: str) -> str:
    """One of the fixed templates above with `statement` (generated from a parsed tree, one
    SELECT) as its subquery `q`."""
    return template.format(statement)


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
) -> list[tuple[str, str | None, int | None]]:
    """diffix.proxy_plan: the route of a client statement (core/proxy_routing.py) and, when asked to
    answer one routed to the engine, the statement that returns its anonymized rows and the
    token they wait under (its parameter $1; inlined in a COPY, which takes no parameters).
    The fetch statement's text depends only on the result's shape, so the front can keep it
    prepared."""
    from pldiffix.core import proxy_routing

    level = catalog.person_level(plpy)
    if level in (AccessLevel.DIRECT, AccessLevel.PERTURBED):
        return [(proxy_routing.Route.PASS.value, None, None)]
    sql = sql or ""
    surely_read = proxy_routing.tables_surely_read(sql)
    if surely_read is not None and any(_is_protected(plpy, name) for name in surely_read):
        chosen, statements = proxy_routing.Route.ENGINE, None  # the gate parses it, once
    else:
        statements = proxy_routing.parse_statements(sql)
        if not statements:
            return [(proxy_routing.Route.PASS.value, None, None)]
        chosen = _full_route(plpy, level, sql, statements)
    if chosen is not proxy_routing.Route.ENGINE or not answer:
        return [(chosen.value, None, None)]
    # COPY (query) TO STDOUT: answer the query
    copied = proxy_routing.copied_query(statements[0]) if statements else None
    statement = sql if copied is None else sqltext.render(copied)
    param_oids = list(param_types or [0] * len(params)) if params else []
    client_oids = list(column_types or [])
    named = []  # the parameters' and the described columns' type names, in one lookup
    if param_oids or client_oids:
        typmods = [-1] * len(param_oids) + list(column_typmods or [-1] * len(client_oids))
        named = catalog.type_names(plpy, param_oids + client_oids, typmods)
    if params:
        known = [
            n if oid else None for n, oid in zip(named[: len(param_oids)], param_oids, strict=True)
        ]
        query = copied if copied is not None else _parsed_select(sql)
        statement = sqltext.render(proxy_routing.inline_parameters(query, params, known))
    names, types, rows = _answer_rows(plpy, statement)
    token = next(_proxy_tokens)
    _proxy_answers[token] = (catalog.current_role(plpy), rows)
    while len(_proxy_answers) > _PROXY_ANSWERS_KEPT:
        _proxy_answers.popitem(last=False)
    client_types = named[len(param_oids) :] if client_oids else None
    if client_types is not None and len(client_types) != len(types):
        client_types = None
    if copied is not None:
        fetch = proxy_routing.fetch_statement(names, types, client_types, token=token)
        return [(chosen.value, proxy_routing.copy_out(sql, fetch), None)]
    return [(chosen.value, proxy_routing.fetch_statement(names, types, client_types), token)]


def _full_route(
    plpy: Any, level: AccessLevel, sql: str, statements: Sequence[exp.Expression]
) -> proxy_routing.Route:
    """The route from the parsed statements; a refusal is logged in the audit log."""
    from pldiffix.core import proxy_routing

    try:
        return proxy_routing.route(statements, lambda name: _is_protected(plpy, name))
    except proxy_routing.RoutingError as error:
        mechanism = "dp" if level is AccessLevel.ANONYMIZED_DP else "diffix"
        catalog.query(
            plpy,
            "SELECT diffix._audit_refusal($1, $2, $3)",
            ("text", "text", "text"),
            (sql, mechanism, audit.reason_of(error)),
        )
        raise


def _parsed_select(sql: str) -> exp.Expression:
    """The one SELECT of `sql`, parsed (kept per text), to inline bound parameters into; the
    gate's own error when it is not one (a text routed by its tokens alone, unparsed)."""
    from pldiffix.core import proxy_routing

    statements = proxy_routing.parse_statements(sql)
    return statements[0] if statements and len(statements) == 1 else parse_single_select(sql)


def _is_protected(plpy: Any, name: str) -> bool:
    try:
        rows = catalog.query(
            plpy,
            "SELECT 1 FROM diffix.protected_tables l"
            " WHERE l.relid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
            ("text",),
            (name,),
        )
    except plpy.SPIError:
        return False  # not a name the server can resolve: it will say so itself
    return bool(rows)


@reports_errors
def audit_refusal(plpy: Any, sql: str | None, mechanism: str | None, reason: str | None) -> None:
    """diffix._audit_refusal (definer): logs a statement the proxy's router refused. The level
    is the catalog's, the row a refusal: a caller can only add refusals about itself."""
    audit.record(
        plpy,
        level=catalog.person_level(plpy).value,
        mechanism=mechanism if mechanism in ("dp", "diffix") else "diffix",
        sql=sql,
        accepted=False,
        reason=reason,
    )
