"""Cell-key (TBE) perturbation and keyed Laplace noise over perturbed tables."""
