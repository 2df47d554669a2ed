"""Cell-key (TBE) perturbation and keyed Laplace noise over cell-key tables."""
