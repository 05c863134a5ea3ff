"""The paper's experiments on synthetic data: do its claims hold on our implementation?

Radhakrishnan, Belkin & Drusvyatskiy (PNAS 2025) claim that lin-RFM provably recovers low-rank
matrices (and sparse vectors), scales to matrices with millions of missing entries, is faster than
IRLS because the power-1 variant needs no SVD, and beats deep linear networks. Four subcommands
test this on noise-free synthetic data::

    python -m evaluation.paper recovery [--quick] [--out DIR]   # phase transition
    python -m evaluation.paper speed    [--quick] [--out DIR]   # time vs d, big run
    python -m evaluation.paper dln      [--quick] [--out DIR]   # deep linear networks
    python -m evaluation.paper sparse   [--quick] [--out DIR]   # sparse regression

Each writes ``results.csv``, one or more PNG figures and ``report.md`` into
``results/paper/<subcommand>/`` (``.../quick/`` with ``--quick``) or ``--out``.

Ground rules: the error on the missing entries is *test* data. It is measured
and reported, never used to stop, to pick a regulariser or to choose between runs. Engine
methods stop when the relative change of the kernel ``||K_new - K||_F / ||K||_F`` falls below
``tol`` or at an iteration cap; deep linear networks stop on the training residual or a cap.
All settings below were fixed before the runs; where the paper's settings fail we report it.

Matrix problems: ``Y = U V^T / sqrt(r)`` with Gaussian ``U`` (n x r) and ``V`` (d x r), so entries
have mean square 1; ``m`` entries observed uniformly at random without replacement, ``m`` a
multiple ("ratio") of the degrees of freedom ``r (n + d - r)``. Success means relative error on
the missing entries ``||X - Y||_miss / ||Y||_miss < 1e-3``.

Modules: :mod:`~evaluation.paper.problems` (the problems), :mod:`~evaluation.paper.tracked` (the
engine's loop with a ridge schedule and an error trajectory), :mod:`~evaluation.paper.methods`
and :mod:`~evaluation.paper.sweep` (the methods and the sweeps over them), one module per
experiment (:mod:`~evaluation.paper.recovery`, :mod:`~evaluation.paper.speed`,
:mod:`~evaluation.paper.dln`, :mod:`~evaluation.paper.sparse`) and :mod:`~evaluation.paper.cli`.
"""

from evaluation.paper.cli import build_parser, main
from evaluation.paper.problems import (
    SUCCESS_TOL,
    LowRankProblem,
    make_lowrank,
    missing_error_dense,
)
from evaluation.paper.tracked import TrackedRun, run_engine_tracked

__all__ = [
    "SUCCESS_TOL", "LowRankProblem", "TrackedRun", "build_parser", "main", "make_lowrank",
    "missing_error_dense", "run_engine_tracked",
]  # fmt: skip
