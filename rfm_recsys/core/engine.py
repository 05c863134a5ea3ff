"""The engine: lin-RFM's and IRLS's alternation on sparse observations, one loop for every backend.

Both algorithms complete an ``n x d`` matrix ``Y`` observed on a sparse set of entries by
alternating two steps (Radhakrishnan, Belkin & Drusvyatskiy, PNAS 2025; Mohan & Fazel 2012):

1. **Row fits.** Row ``i`` with observed columns ``S_i`` and targets ``y_i`` is a kernel ridge
   regression over the columns with the linear kernel ``K``::

       a_i = (K[S_i, S_i] + lam I)^-1 y_i          w_i = K[:, S_i] a_i

   ``a_i`` is stored in a sparse matrix ``A`` with the pattern of ``Y``; the completed rows
   ``W = A K`` are never stored for all rows at once.
2. **Feature update.** ``X^T X`` of the completed matrix (``X = W``, or ``W`` with the observed
   entries put back for exact completion) is handed to a
   :class:`~rfm_recsys.core.updates.FeatureUpdate`, which returns the next kernel. lin-RFM
   uses a power of the AGOP ``G = X^T X / n``; IRLS-p uses ``(X^T X + gamma I)^(1 - p/2)``
   with a decreasing ``gamma``.

Optionally a kernel step follows (kernel RFM, :mod:`.kernel_step`): after ``n_updates`` updates
the rows are fitted with a kernel built from the learned matrix (a radial kernel over its
geometry, with the co-rating signal) and the learned matrix is updated from that fit's AGOP.

The rows live in a :class:`~rfm_recsys.core.blocks.RowBlocks` (this process's
:class:`~rfm_recsys.core.blocks.LocalBlocks`, or the Dask backend's blocks on the workers), which
fit them and sum their shares of each update; the kernel (dense or factored,
:mod:`.dense_kernel`, :mod:`.factored_kernel`) asks the blocks for the shares it needs. This
module holds the loop: history, validation tracking, stopping, hooks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .blas import default_threads
from .blocks import LocalBlocks, RowBlocks
from .kernel import Kernel
from .kernel_forms import initial_kernel
from .memory import check_memory
from .rank_rule import RankRule
from .updates import AGOPPower, FeatureUpdate, IRLSUpdate

__all__ = [
    "AGOPPower",
    "EngineResult",
    "FeatureUpdate",
    "IRLSUpdate",
    "IterationState",
    "complete_dense",
    "fit_engine",
    "run_engine",
]


@dataclass
class IterationState:
    """What an ``on_iteration`` hook sees after the row fit of iteration ``iteration``.

    ``kernel`` is the kernel the rows were fitted with (``.K`` its dense ``d x d`` form, built
    on demand for a factored kernel), ``A`` their coefficients (so the completion is ``A K``),
    ``ridge`` the ridge of this iteration's row fits and ``record`` the history entry just
    appended (``record["seconds"]`` is the fit's compute time so far, hooks excluded). The
    arrays are the engine's own: read them, do not modify them.
    """

    iteration: int
    kernel: Kernel
    A: sp.csr_matrix
    ridge: float
    record: dict

    @property
    def K(self) -> np.ndarray:
        return _dense(self.kernel)


@dataclass
class EngineResult:
    """Fitted state: the kernel, the row coefficients, the ridge they were fitted with, the
    per-iteration history and the iteration they come from."""

    kernel: Kernel
    A: sp.csr_matrix
    history: list[dict]
    best_iteration: int
    ridge: float = 0.0

    @property
    def K(self) -> np.ndarray:
        """The kernel as a dense ``d x d`` array (built on demand for a factored kernel)."""
        return _dense(self.kernel)


def _dense(kernel) -> np.ndarray:
    return kernel if isinstance(kernel, np.ndarray) else kernel.dense()


def fit_engine(
    R: sp.csr_matrix,
    *,
    ridge: float,
    n_updates: int,
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
    ridge_schedule: Callable[[int], float] | None = None,
    on_iteration: Callable[[IterationState], bool | None] | None = None,
    rank: int | None = None,
    shift: float = 0.0,
    random_state: int | None = 0,
    step: Any = None,
    solve_tol: float | None = None,
) -> EngineResult:
    """Run ``n_updates`` feature updates on the rows of ``R``; the returned rows are fitted with
    the last (or best) kernel.

    Args:
        R: ``n x d`` CSR matrix of targets (explicit zeros are observations).
        ridge: ridge penalty of the row fits.
        n_updates: number of kernel updates (0 = one ridge fit with ``K0``).
        update: the :class:`~rfm_recsys.core.updates.FeatureUpdate`
            (:class:`~rfm_recsys.core.updates.AGOPPower` or
            :class:`~rfm_recsys.core.updates.IRLSUpdate`).
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
        ridge_schedule: ``ridge_schedule(k)`` is the ridge of the row fits of iteration ``k``
            (``k = 0`` is the fit with the initial kernel); ``None`` keeps ``ridge`` throughout.
        on_iteration: called with an :class:`IterationState` after every row fit; returning
            ``True`` stops the fit there (a time budget, an external criterion). Its own time
            is left out of ``record["seconds"]``.
        rank: ``None`` for the dense ``d x d`` kernel; an int for the factored kernel
            ``U diag(s) U^T`` of that rank
            (:class:`~rfm_recsys.core.factored_kernel.FactoredKernel`); a
            :class:`~rfm_recsys.core.rank_rule.RankRule` for a factored kernel whose rank the
            first update chooses from the data.
        shift: factored kernel only: share of the mean diagonal given to ``eps I`` in
            ``K = U diag(s) U^T + eps I`` after each update (0 keeps the span of the first
            update's ``U``).
        random_state: seed of the factored kernel's randomized range finder.
        step: a kernel step (:class:`~rfm_recsys.core.kernel_step.KernelStep`) run after the
            ``n_updates`` updates, or ``None``.
        solve_tol: ``None`` solves every row directly; a number solves them by conjugate
            gradients to that relative residual, each refit started from the previous one's
            coefficients (:mod:`rfm_recsys.core.cg`).

    Returns:
        :class:`EngineResult` with ``history`` records ``{"iteration", "stage", "train_rmse",
        "valid_rmse", "kernel_change", "seconds"}``.
    """
    R = sp.csr_matrix(R)
    if not R.has_sorted_indices:
        R = R.copy()  # sorting works in place: never reorder the caller's arrays
        R.sort_indices()
    if R.dtype != np.dtype(dtype):
        R = R.astype(dtype)
    blocks = LocalBlocks(R, validation, default_threads())
    return run_engine(
        blocks,
        ridge=ridge,
        n_updates=n_updates,
        update=update,
        tol=tol,
        reimpose_observed=reimpose_observed,
        patience=patience,
        K0=K0,
        max_memory=max_memory,
        callback=callback,
        progress=progress,
        ridge_schedule=ridge_schedule,
        on_iteration=on_iteration,
        rank=rank,
        shift=shift,
        random_state=random_state,
        step=step,
        solve_tol=solve_tol,
    )


def run_engine(
    blocks: RowBlocks,
    *,
    ridge: float,
    n_updates: int,
    update: FeatureUpdate,
    tol: float | None = None,
    reimpose_observed: bool = False,
    patience: int = 2,
    K0: np.ndarray | Kernel | None = None,
    max_memory: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
    progress: bool = False,
    ridge_schedule: Callable[[int], float] | None = None,
    on_iteration: Callable[[IterationState], bool | None] | None = None,
    rank: int | None = None,
    shift: float = 0.0,
    random_state: int | None = 0,
    step: Any = None,
    stop_at: int | None = None,
    solve_tol: float | None = None,
) -> EngineResult:
    """:func:`fit_engine` on rows held by any :class:`~rfm_recsys.core.blocks.RowBlocks`.

    The blocks carry their validation pairs (if any); ``stop_at`` ends the fit after the row fit
    of that iteration (the refit of an early-stopped run). With a ``step``, iterations
    ``0 .. n_updates - 1`` fit the rows with the learned kernel and iterations
    ``n_updates .. n_updates + step.n_updates`` with the step's kernel built from it.
    """
    n, d = blocks.n_rows, blocks.n_cols
    dtype = np.dtype(blocks.dtype)
    rank = getattr(K0, "rank", rank)  # a kernel given as K0 brings its own form
    # a rank the first update chooses is bounded by its rule's largest
    bound = rank.r_max if isinstance(rank, RankRule) else rank
    check_memory(n, d, blocks.nnz, dtype, update.needs_eigh, max_memory, bound)
    update = copy.deepcopy(update)  # its state (IRLS's smoothing) is this fit's own
    update.reset()
    learned = initial_kernel(d, dtype, rank, shift, K0, random_state)
    last = n_updates + (step.n_updates if step is not None else 0)
    if stop_at is not None:
        last = min(last, int(stop_at))
    tracker = _Validation(getattr(blocks, "validating", False), patience)
    history: list[dict] = []
    bar = _progress_bar(progress, last + 1)
    clock = _Clock()
    change = float("nan")
    coefs = None
    it = 0
    while True:
        in_step = step is not None and it >= n_updates
        if in_step and it == n_updates:
            step_run = step.start(blocks, learned)
            coefs = None  # a new kernel's scale and ridge: the linear fits are no warm start
        kernel = step_run.build(learned, it - n_updates) if in_step else learned
        ridge_it = step.ridge if in_step else _ridge(ridge, ridge_schedule, it)
        coefs = blocks.solve(kernel, ridge_it, coefs, solve_tol)
        rec = _record(it, "kernel" if in_step else "linear", blocks.stats(coefs, kernel), ridge_it)
        rec["kernel_change"] = change
        tracker.observe(rec, it, kernel, coefs, ridge_it)
        rec["seconds"] = clock.seconds()
        history.append(rec)
        _notify(callback, bar, it, rec)
        stop = on_iteration is not None and clock.excluded(
            on_iteration,
            IterationState(it, kernel, blocks.coefficients(coefs), ridge_it, rec),
        )
        settled = tol is not None and it > 0 and change < tol
        if stop or it >= last or tracker.exhausted or settled:
            break
        if in_step:
            new = step_run.next(blocks, coefs, kernel, it - n_updates)
        else:
            new = kernel.next(blocks, coefs, update, it, ridge_it, reimpose_observed)
        # the kernel's relative change: the stopping rule's test, and a figure of the history
        # (not free for a factored kernel: r x r products over d, so only when tol asks)
        change = learned.distance(new) if tol is not None else float("nan")
        learned = new
        it += 1
    if bar is not None:
        bar.close()
    best_iteration, kernel, coefs, ridge_it = tracker.best(it, kernel, coefs, ridge_it)
    return EngineResult(
        kernel=kernel,
        A=blocks.coefficients(coefs),
        history=history,
        best_iteration=best_iteration,
        ridge=float(ridge_it),
    )


def _record(it: int, stage: str, stats: dict, ridge: float) -> dict:
    # On observed entries w = K_SS a = y - lam a, so the training residual is lam * a.
    n_a = stats["n_a"]
    rmse = float(ridge * math.sqrt(stats["sum_a2"] / n_a)) if n_a else 0.0
    rec = {"iteration": it, "stage": stage, "train_rmse": rmse}
    if stats.get("n_valid"):
        rec["valid_rmse"] = float(math.sqrt(stats["sse"] / stats["n_valid"]))
    return rec


def _notify(callback, bar, it: int, rec: dict) -> None:
    if callback is not None:
        callback(it, rec)
    if bar is not None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k.endswith("rmse")})


def _ridge(ridge: float, schedule: Callable[[int], float] | None, it: int) -> float:
    value = float(ridge if schedule is None else schedule(it))
    if not value >= 0.0 or not math.isfinite(value):
        raise ValueError(f"ridge_schedule({it}) returned {value}: the ridge must be finite >= 0")
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

    def __init__(self, validating: bool, patience: int) -> None:
        self.validating = validating
        self.patience = patience
        self.best_rmse = math.inf
        self.best_state: tuple | None = None
        self.since_best = 0

    def observe(self, rec: dict, it: int, kernel, coefs, ridge: float) -> None:
        if not self.validating or "valid_rmse" not in rec:
            return
        if rec["valid_rmse"] < self.best_rmse - 1e-9:
            self.best_rmse = rec["valid_rmse"]
            self.best_state = (it, kernel, coefs, ridge)  # kernels are never modified in place
            self.since_best = 0
        else:
            self.since_best += 1

    @property
    def exhausted(self) -> bool:
        return self.validating and self.since_best >= self.patience

    def best(self, it: int, kernel, coefs, ridge: float) -> tuple:
        """``(iteration, kernel, coefs, ridge)`` to return: the best one seen, else the last."""
        return self.best_state if self.best_state is not None else (it, kernel, coefs, ridge)


def complete_dense(K, A: sp.csr_matrix) -> np.ndarray:
    """The whole completed matrix ``A K``, for small problems (tests and synthetic experiments).

    ``K`` is a ``d x d`` array or a kernel of either form.
    """
    return np.asarray(A @ _dense(K))
