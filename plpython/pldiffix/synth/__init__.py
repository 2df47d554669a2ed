"""DP synthetic data: a tree model of noisy marginals, measured in SQL, sampled in numpy."""
