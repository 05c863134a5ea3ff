"""The engine's loop with a ridge schedule, an error trajectory and a time budget."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from rfm_recsys.core import engine as _engine
from rfm_recsys.core.engine import RowPlan, gram_of_completion, solve_rows


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
    """:func:`rfm_recsys.core.engine.fit_engine`'s iteration, step for step, with two additions.

    1. An optional ridge schedule ``lam_{k+1} = max(lam_k / lam_decay, lam_min)`` (lin-RFM with
       power 1 and a decaying ridge is IRLS-0 with a decaying smoothing ``gamma_k = n lam_k c_k``,
       ``c_k`` the kernel normalisation, computed without any eigendecomposition).
    2. ``evaluate(K, A)`` after every ``eval_every``-th row fit, excluded from the timing (used to
       *report* the error trajectory and the time to reach an error; never to stop).

    Stops like ``fit_engine``: after ``n_iter`` kernel updates, or once the relative kernel change
    falls below ``tol``, or (extra) when the compute time exceeds ``time_budget`` seconds. With
    ``lam_decay=1`` and no budget the result equals ``fit_engine``'s (tested).
    """
    R = sp.csr_matrix(R)
    R.sort_indices()
    n, d = R.shape
    dtype = np.dtype(dtype)
    upd = copy.deepcopy(update)
    upd.reset()
    t0 = time.perf_counter()
    plan = RowPlan.from_csr(R)
    y = R.data.astype(dtype)
    targets = y if reimpose_observed else None
    K = np.eye(d, dtype=dtype)
    # fit_engine fixes the row-solve thread count once per fit; do the same when it can be asked
    default_threads = getattr(_engine, "_default_threads", None)
    n_threads = default_threads() if default_threads is not None else None
    compute = time.perf_counter() - t0
    secs: list[float] = []
    errors: list[tuple[int, float]] = []
    lams: list[float] = []
    change = float("nan")
    it = 0
    stop = "cap"
    while True:
        t0 = time.perf_counter()
        if it == 0:
            a = y / dtype.type(1.0 + lam)
        else:
            a = solve_rows(K, plan, y, lam, n_threads)
        A = sp.csr_matrix((a, R.indices, R.indptr), shape=(n, d))
        compute += time.perf_counter() - t0
        secs.append(compute)
        lams.append(lam)
        if evaluate is not None and (it % eval_every == 0 or it >= n_iter):
            errors.append((it, float(evaluate(K, A))))
        if it >= n_iter:
            stop = "cap"
            break
        if tol is not None and it > 0 and change < tol:
            stop = "tol"
            break
        if time_budget is not None and compute > time_budget:
            stop = "time"
            break
        t0 = time.perf_counter()
        xtx = gram_of_completion(None if it == 0 else K, A, targets, dtype)  # None: K = I
        K_new = upd(xtx, n, it)
        if not np.all(np.isfinite(K_new)):
            raise FloatingPointError(f"non-finite kernel at iteration {it + 1}")
        change = float(np.linalg.norm(K_new - K) / max(np.linalg.norm(K), 1e-300))
        K = K_new.astype(dtype, copy=False)
        lam = max(lam / lam_decay, lam_min)
        compute += time.perf_counter() - t0
        it += 1
    if evaluate is not None and (not errors or errors[-1][0] != it):
        errors.append((it, float(evaluate(K, A))))
    return TrackedRun(K, A, it, stop, secs, errors, lams)
