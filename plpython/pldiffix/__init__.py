"""pldiffix: anonymization inside PostgreSQL (Diffix, cell-key perturbation, Laplace noise)."""

__version__ = "0.1.0"
