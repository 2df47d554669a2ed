"""Differential privacy: contribution bounding in SQL, discrete noise, partition selection."""
