"""Benchmarks and experiments around the library, run from the repository root.

- ``python -m evaluation.movielens``: lin-RFM and kernel RFM against Bayesian MF, IRLS-p, ALS
  and Surprise on MovieLens (or a generated set of a release's shape).
- ``python -m evaluation.paper {recovery,speed,dln,sparse}``: the paper's claims on synthetic data.
- ``python -m evaluation.choose_defaults``: the models' defaults, chosen on validation shares
  (``choose_rank``, ``choose_topn_defaults`` and ``explore_kernel_rfm`` likewise).
- ``python -m evaluation.benchmark_engine``, ``python -m evaluation.parse_speed``: speed figures.
- :mod:`evaluation.common`: the report helpers they share.
"""
