"""Baselines we implement ourselves: explicit biased ALS and deep linear networks."""
