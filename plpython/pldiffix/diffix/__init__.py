"""Diffix: validation, rewriting, in-SQL execution and per-bucket anonymization."""
