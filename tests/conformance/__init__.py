"""pg_diffix's regression suite as pldiffix conformance data (see README.md in this folder).

Modules: ``schema`` (database setup), ``cases`` (the cases and the skipped statements),
``compare`` (how an answer from ``diffix.query_json`` is matched against a case).
"""
