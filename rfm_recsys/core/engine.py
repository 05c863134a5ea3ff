"""Numerical core shared by lin-RFM and IRLS on sparse observations.

Both algorithms complete an ``n x d`` matrix ``Y`` observed on a sparse set of entries by
alternating two steps (Radhakrishnan, Belkin & Drusvyatskiy, PNAS 2025; Mohan & Fazel 2012):

1. **Row fits.** Row ``i`` with observed columns ``S_i`` and targets ``y_i`` is a kernel ridge
   regression over the columns with the linear kernel ``K``::

       a_i = (K[S_i, S_i] + lam I)^-1 y_i          w_i = K[:, S_i] a_i

   ``a_i`` is stored in a sparse matrix ``A`` with the pattern of ``Y``; the completed rows
   ``W = A K`` are never stored for all rows at once.
2. **Feature update.** ``X^T X`` of the completed matrix (``X = W``, or ``W`` with the observed
   entries put back for exact completion) is handed to a :class:`FeatureUpdate`, which returns
   the next kernel. lin-RFM uses a power of the AGOP ``G = X^T X / n``; IRLS-p uses
   ``(X^T X + gamma I)^(1 - p/2)`` with a decreasing ``gamma``. Everything else is shared.

The kernel is dense (``d x d``) or factored (``U diag(s) U^T``, ``U`` ``d x r``); both forms answer
the loop's questions (row fits, the update, predictions) through one interface in
:mod:`.kernels`. The other pieces live in their own modules: the dense row solves in
:mod:`.solve`, the dense completion ``A K`` (its ``X^T X`` in bounded row chunks, pair
predictions) in :mod:`.completion`, the updates in :mod:`.updates`, the memory estimate and
refusal in :mod:`.memory`, the BLAS thread limits in :mod:`.blas`. This module holds the loop
and re-exports their public names.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .blas import default_threads
from .completion import gram_of_completion, predict_pairs
from .kernels import DenseKernel, FactoredKernel, Kernel, initial_kernel
from .memory import EngineMemoryError, available_memory, check_memory, estimate_memory
from .solve import RowPlan, solve_rows, spd_solve
from .updates import AGOPPower, FeatureUpdate, IRLSUpdate

# Names other modules import from here; the definitions live in the modules above.
__all__ = [
    "AGOPPower",
    "DenseKernel",
    "EngineMemoryError",
    "EngineResult",
    "FactoredKernel",
    "FeatureUpdate",
    "IRLSUpdate",
    "IterationState",
    "Kernel",
    "RowPlan",
    "available_memory",
    "check_memory",
    "complete_dense",
    "estimate_memory",
    "fit_engine",
    "gram_of_completion",
    "predict_pairs",
    "solve_rows",
    "spd_solve",
]


@dataclass
class IterationState:
    """What an ``on_iteration`` hook sees after the row fit of iteration ``iteration``.

    ``kernel`` is the kernel the rows were fitted with (``.K`` its dense ``d x d`` form, built
    on demand for a factored kernel), ``A`` their coefficients (so the completion is ``A K``),
    ``lam`` the ridge of this iteration's row fits and ``record`` the history entry just
    appended (``record["seconds"]`` is the fit's compute time so far, hooks excluded). The
    arrays are the engine's own: read them, do not modify them.
    """

    iteration: int
    kernel: Kernel
    A: sp.csr_matrix
    lam: float
    record: dict

    @property
    def K(self) -> np.ndarray:
        return _dense(self.kernel)


@dataclass
class EngineResult:
    """Fitted state: the kernel, the row coefficients and the per-iteration history."""

    kernel: Kernel
    A: sp.csr_matrix
    history: list[dict]
    best_iteration: int

    @property
    def K(self) -> np.ndarray:
        """The kernel as a dense ``d x d`` array (built on demand for a factored kernel)."""
        return _dense(self.kernel)


def _dense(kernel) -> np.ndarray:
    return kernel if isinstance(kernel, np.ndarray) else kernel.dense()


def fit_engine(
    R: sp.csr_matrix,
    *,
    lam: float,
    n_iter: int,
    update: FeatureUpdate,
    tol: float | None = None,
    dtype=np.float32,
    reimpose_observed: bool = False,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    patience: int = 2,
    K0: np.ndarray | Kernel | None = None,
    max_memory: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
    progress: bool = False,
    lam_schedule: Callable[[int], float] | None = None,
    on_iteration: Callable[[IterationState], bool | None] | None = None,
    rank: int | None = None,
    shift: float = 0.0,
    random_state: int | None = 0,
) -> EngineResult:
    """Run ``n_iter`` feature updates; the returned rows are fitted with the last (or best) kernel.

    Args:
        R: ``n x d`` CSR matrix of targets (explicit zeros are observations).
        lam: ridge penalty of the row fits.
        n_iter: number of kernel updates (0 = one ridge fit with ``K0``).
        update: the :class:`FeatureUpdate` (:class:`AGOPPower` or :class:`IRLSUpdate`).
        tol: stop once ``||K_new - K||_F / ||K||_F < tol``.
        dtype: ``np.float32`` or ``np.float64`` for the kernel and the solves.
        reimpose_observed: replace the observed entries of the completion by their targets
            before the update (noise-free completion, as in the paper); never for ratings.
        validation: ``(rows, cols, values)`` held out from ``R``; tracks validation RMSE, stops
            after ``patience`` iterations without improvement and restores the best kernel.
        patience: see ``validation``.
        K0: initial kernel (identity by default).
        max_memory: bytes allowed; the estimate is checked before anything is allocated.
        callback: called as ``callback(iteration, record)`` after each row fit.
        progress: show a tqdm bar.
        lam_schedule: ``lam_schedule(k)`` is the ridge of the row fits of iteration ``k``
            (``k = 0`` is the fit with the initial kernel); ``None`` keeps ``lam`` throughout.
        on_iteration: called with an :class:`IterationState` after every row fit; returning
            ``True`` stops the fit there (a time budget, an external criterion). Its own time
            is left out of ``record["seconds"]``.
        rank: ``None`` for the dense ``d x d`` kernel; an int for the factored kernel
            ``U diag(s) U^T`` of that rank (:class:`~rfm_recsys.core.kernels.FactoredKernel`).
        shift: factored kernel only: share of the mean diagonal given to ``eps I`` in
            ``K = U diag(s) U^T + eps I`` after each update (0 keeps the span of the first
            update's ``U``).
        random_state: seed of the factored kernel's randomized range finder.

    Returns:
        :class:`EngineResult` with ``history`` records ``{"iteration", "train_rmse",
        "valid_rmse", "kernel_change", "seconds"}``.
    """
    R = _sorted_csr(R)
    n, d = R.shape
    rank = getattr(K0, "rank", rank)  # a kernel given as K0 brings its own form
    check_memory(n, d, R.nnz, dtype, update.needs_eigh, max_memory, rank)
    dtype = np.dtype(dtype)
    update = copy.deepcopy(update)  # its state (IRLS's smoothing) is this fit's own
    update.reset()
    plan = RowPlan.from_csr(R)
    y = R.data.astype(dtype)
    targets = y if reimpose_observed else None
    kernel = initial_kernel(d, dtype, rank, shift, K0, random_state)
    tracker = _Validation(validation, patience)
    history: list[dict] = []
    bar = _progress_bar(progress, n_iter + 1)
    clock = _Clock()
    change = float("nan")
    it = 0
    n_threads = default_threads()
    while True:
        lam_it = _ridge(lam, lam_schedule, it)
        a = kernel.solve_rows(plan, y, lam_it, n_threads)
        A = sp.csr_matrix((a, R.indices, R.indptr), shape=(n, d))
        completion = kernel.complete(A)
        rec = {"iteration": it, "train_rmse": _train_rmse(a, lam_it), "kernel_change": change}
        tracker.observe(rec, it, kernel, A, completion)
        rec["seconds"] = clock.seconds()
        history.append(rec)
        _notify(callback, bar, it, rec)
        stop = on_iteration is not None and clock.excluded(
            on_iteration, IterationState(it, kernel, A, lam_it, rec)
        )
        settled = tol is not None and it > 0 and change < tol
        if stop or it >= n_iter or tracker.exhausted or settled:
            break
        new = kernel.next(completion, update, n, it, targets, lam_it)
        change, kernel = kernel.distance(new), new
        it += 1
    if bar is not None:
        bar.close()
    best_iteration, kernel, A = tracker.best(it, kernel, A)
    return EngineResult(kernel=kernel, A=A, history=history, best_iteration=best_iteration)


def _notify(callback, bar, it: int, rec: dict) -> None:
    if callback is not None:
        callback(it, rec)
    if bar is not None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k.endswith("rmse")})


def _train_rmse(a: np.ndarray, lam: float) -> float:
    # On observed entries w = K_SS a = y - lam a, so the training residual is lam * a.
    return float(lam * np.sqrt(np.mean(a.astype(np.float64) ** 2))) if a.size else 0.0


def _sorted_csr(R) -> sp.csr_matrix:
    R = sp.csr_matrix(R)
    if not R.has_sorted_indices:
        R = R.copy()  # sorting works in place: never reorder the caller's arrays
        R.sort_indices()
    return R


def _ridge(lam: float, schedule: Callable[[int], float] | None, it: int) -> float:
    value = float(lam if schedule is None else schedule(it))
    if not value >= 0.0 or not math.isfinite(value):
        raise ValueError(f"lam_schedule({it}) returned {value}: the ridge must be finite >= 0")
    return value


def _progress_bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="lin-RFM", leave=False)


class _Clock:
    """Compute time since the fit began, leaving out the time spent in callers' hooks."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.hooks = 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.hooks

    def excluded(self, hook: Callable, *args) -> bool:
        t = time.perf_counter()
        try:
            return bool(hook(*args))
        finally:
            self.hooks += time.perf_counter() - t


class _Validation:
    """Validation RMSE per iteration, patience, and the best (kernel, rows) seen so far."""

    def __init__(self, validation, patience: int) -> None:
        self.validation = validation
        self.patience = patience
        self.best_rmse = math.inf
        self.best_state: tuple | None = None
        self.since_best = 0

    def observe(self, rec: dict, it: int, kernel, A: sp.csr_matrix, completion) -> None:
        if self.validation is None:
            return
        vr, vc, vv = self.validation
        pred = completion.pairs(vr, vc)
        rec["valid_rmse"] = float(np.sqrt(np.mean((pred - vv) ** 2)))
        if rec["valid_rmse"] < self.best_rmse - 1e-9:
            self.best_rmse = rec["valid_rmse"]
            self.best_state = (it, kernel, A)  # kernels are never modified in place
            self.since_best = 0
        else:
            self.since_best += 1

    @property
    def exhausted(self) -> bool:
        return self.validation is not None and self.since_best >= self.patience

    def best(self, it: int, kernel, A: sp.csr_matrix) -> tuple:
        """``(iteration, kernel, A)`` to return: the best one seen, else the last."""
        return self.best_state if self.best_state is not None else (it, kernel, A)


def complete_dense(K, A: sp.csr_matrix) -> np.ndarray:
    """The whole completed matrix ``A K``, for small problems (tests and synthetic experiments).

    ``K`` is a ``d x d`` array or a kernel of either form.
    """
    return np.asarray(A @ _dense(K))
