"""Shared infrastructure: catalog access, access levels, settings, session, errors, results."""
