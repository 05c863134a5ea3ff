"""The engine's fit with a ridge schedule, an error trajectory and a time budget.

:func:`run_engine_tracked` calls :func:`rfm_recsys.core.engine.fit_engine` with its ridge
schedule and its per-iteration hook; the hook records the error (outside the timing) and stops
the fit when the compute time exceeds a budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from rfm_recsys.core.engine import IterationState, fit_engine


@dataclass
class TrackedRun:
    """Outcome of :func:`run_engine_tracked`."""

    K: np.ndarray
    A: sp.csr_matrix
    iterations: int
    stop: str  # "tol", "cap" or "time"
    compute_seconds: list[float]  # cumulative, excluding evaluation, after each row fit
    errors: list[tuple[int, float]]  # (iteration, evaluation) pairs
    lams: list[float]


def ridge_schedule(lam: float, lam_decay: float, lam_min: float) -> Callable[[int], float]:
    """``lam_k = max(lam / lam_decay^k, lam_min)`` (``lam`` throughout for ``lam_decay = 1``)."""
    if lam_decay == 1.0:
        return lambda k: lam
    return lambda k: max(lam / lam_decay**k, lam_min)


def run_engine_tracked(
    R: sp.csr_matrix,
    *,
    lam: float,
    update: Any,
    n_iter: int,
    tol: float | None = None,
    lam_decay: float = 1.0,
    lam_min: float = 0.0,
    dtype: Any = np.float64,
    reimpose_observed: bool = True,
    evaluate: Callable[[np.ndarray, sp.csr_matrix], float] | None = None,
    eval_every: int = 1,
    time_budget: float | None = None,
) -> TrackedRun:
    """:func:`~rfm_recsys.core.engine.fit_engine` with a ridge schedule, tracking and a budget.

    1. The ridge follows ``lam_k = max(lam / lam_decay^k, lam_min)`` (lin-RFM with power 1 and a
       decaying ridge is IRLS-0 with a decaying smoothing ``gamma_k = n lam_k c_k``, ``c_k`` the
       kernel normalisation, computed without any eigendecomposition).
    2. ``evaluate(K, A)`` after every ``eval_every``-th row fit (and the last), excluded from the
       timing: it *reports* the error trajectory and the time to reach an error, never stops.

    Stops like ``fit_engine``: after ``n_iter`` kernel updates, or once the relative kernel change
    falls below ``tol``, or (extra) when the compute time exceeds ``time_budget`` seconds. With
    ``lam_decay=1`` and no budget the result equals ``fit_engine``'s (tested).
    """
    errors: list[tuple[int, float]] = []
    lams: list[float] = []
    over_budget = [False]

    def hook(state: IterationState) -> bool:
        lams.append(state.ridge)
        it = state.iteration
        if evaluate is not None and (it % eval_every == 0 or it >= n_iter):
            errors.append((it, float(evaluate(state.K, state.A))))
        over_budget[0] = time_budget is not None and state.record["seconds"] > time_budget
        return over_budget[0] and it < n_iter

    res = fit_engine(
        R,
        ridge=lam,
        n_updates=n_iter,
        update=update,
        tol=tol,
        dtype=dtype,
        reimpose_observed=reimpose_observed,
        ridge_schedule=ridge_schedule(lam, lam_decay, lam_min),
        on_iteration=hook,
    )
    it = int(res.history[-1]["iteration"])
    stop = "cap" if it >= n_iter else ("time" if over_budget[0] else "tol")
    if evaluate is not None and (not errors or errors[-1][0] != it):
        errors.append((it, float(evaluate(res.K, res.A))))
    seconds = [float(h["seconds"]) for h in res.history]
    return TrackedRun(res.K, res.A, it, stop, seconds, errors, lams)
