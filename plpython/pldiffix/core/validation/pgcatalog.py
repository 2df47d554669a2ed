"""Which pg_catalog relations anonymized analysts may read.

Statistics views and tables reveal individual values (most common values, histograms, activity of
other sessions), so only an allow-list is readable; for a few relations only some columns.
"""

from __future__ import annotations

from collections.abc import Iterable

ALLOWED_RELATIONS = frozenset(
    {
        "pg_aggregate", "pg_am", "pg_attrdef", "pg_attribute", "pg_auth_members", "pg_authid",
        "pg_available_extension_versions", "pg_available_extensions", "pg_cast", "pg_collation",
        "pg_constraint", "pg_database", "pg_db_role_setting", "pg_default_acl", "pg_depend",
        "pg_description", "pg_event_trigger", "pg_extension", "pg_foreign_data_wrapper",
        "pg_foreign_server", "pg_foreign_table", "pg_index", "pg_inherits", "pg_language",
        "pg_largeobject_metadata", "pg_locks", "pg_namespace", "pg_opclass", "pg_operator",
        "pg_opfamily", "pg_policy", "pg_prepared_statements", "pg_prepared_xacts",
        "pg_publication", "pg_publication_rel", "pg_rewrite", "pg_roles", "pg_seclabel",
        "pg_seclabels", "pg_sequence", "pg_settings", "pg_shadow", "pg_shdepend",
        "pg_shdescription", "pg_shseclabel", "pg_stat_gssapi", "pg_subscription",
        "pg_subscription_rel", "pg_tablespace", "pg_trigger", "pg_ts_config", "pg_ts_dict",
        "pg_ts_parser", "pg_ts_template", "pg_type", "pg_user", "pg_tables", "pg_matviews",
        "pg_indexes", "pg_class", "pg_enum", "pg_proc",
    }
)  # fmt: skip

ALLOWED_COLUMNS = {
    "pg_statistic_ext": frozenset(
        {"tableoid", "oid", "stxrelid", "stxname", "stxnamespace", "stxstattarget", "stxkeys",
         "stxkind"}
    ),
    "pg_stat_activity": frozenset(
        {"datname", "pid", "usename", "application_name", "client_addr", "backend_start",
         "xact_start", "query_start", "state_change", "wait_event_type", "wait_event", "state",
         "query", "backend_type", "client_hostname", "client_port", "backend_xid",
         "backend_xmin"}
    ),
    "pg_stat_database": frozenset({"datname", "xact_commit", "xact_rollback"}),
}  # fmt: skip


def catalog_access_allowed(relation: str, columns: Iterable[str] | None) -> bool:
    """Whether reading `columns` (None: every column) of pg_catalog.`relation` is allowed."""
    if columns is not None and not list(columns):
        return True  # SELECT count(*) FROM pg_catalog.x reads no column
    if relation in ALLOWED_RELATIONS:
        return True
    allowed = ALLOWED_COLUMNS.get(relation)
    if allowed is None or columns is None:
        return False
    return set(columns) <= allowed
