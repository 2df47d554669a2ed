"""Row-level perturbation of microdata behind views (docs/perturbation.md)."""
