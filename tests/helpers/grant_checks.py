"""What security tests compare around a refused grant, and what check_security says."""

from __future__ import annotations


def acl_of(db, relation: str) -> list[tuple]:
    """The relation's table ACL and its columns' ACLs, in column order."""
    return db.execute(
        "SELECT c.relacl::text, (SELECT array_agg(a.attacl::text ORDER BY a.attnum) "
        "FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL) "
        "FROM pg_class c WHERE c.oid = %s::regclass",
        (relation,),
    )


def critical_findings(db) -> list[tuple]:
    return db.execute(
        "SELECT object, finding FROM diffix.check_security() WHERE severity = 'critical'"
    )
