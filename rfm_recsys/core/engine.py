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

Rows are grouped by their number of observations so that each group is one batched LAPACK call
(``numpy.linalg.solve`` over a stack of equal-sized systems); large single systems go to a
Cholesky factorisation. ``X^T X`` is accumulated from dense row chunks of bounded size, so memory
is ``O(|Omega| + d^2)`` plus a fixed chunk budget.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

# Dense scratch per batched step; large enough for BLAS-3 efficiency, small enough to be noise.
_CHUNK_BYTES = 64 * 2**20
# Systems at least this large go one by one to Cholesky (LAPACK potrf is multithreaded there);
# below it the per-call overhead dominates and a batched gufunc call wins.
_CHOLESKY_MIN_SIZE = 64


class EngineMemoryError(MemoryError):
    """The fit would need more memory than allowed; the message gives the figures and the fix."""


class FeatureUpdate(Protocol):
    """How the kernel ``K`` is updated from ``X^T X`` of the completed matrix."""

    @property
    def needs_eigh(self) -> bool:
        """Whether an update takes a ``d x d`` eigendecomposition (for the memory estimate)."""

    def reset(self) -> None:
        """Forget state from a previous fit (IRLS's smoothing parameter)."""

    def __call__(self, xtx: np.ndarray, n_rows: int, iteration: int) -> np.ndarray:
        """Return the next kernel (``d x d``, symmetric PSD) from ``X^T X``."""


def _normalise(K: np.ndarray, how: str | None) -> np.ndarray:
    # A constant factor on K is equivalent to dividing lam by it; fixing the mean diagonal at 1
    # keeps lam meaningful from one iteration to the next instead of drifting with ||X||.
    if how is None or how == "none":
        return K
    if how == "diag":
        s = float(np.mean(np.diag(K)))
        if not np.isfinite(s) or s <= 0:
            raise FloatingPointError(
                "the kernel collapsed to zero (all fitted rows are 0): lower `lam` or check that "
                "the targets are not all zero"
            )
        K /= s
        return K
    raise ValueError(f"normalize must be 'diag' or None, got {how!r}")


def _sym_power(S: np.ndarray, power: float, shift: float = 0.0) -> np.ndarray:
    """``(S + shift I)^power`` of a symmetric PSD matrix through ``eigh`` (negatives clipped)."""
    evals, evecs = scipy.linalg.eigh(S, check_finite=False, overwrite_a=False)
    evals = np.clip(evals, 0.0, None) + shift
    with np.errstate(divide="ignore"):
        scaled = evecs * (evals**power).astype(S.dtype)
    return scaled @ evecs.T


@dataclass
class AGOPPower:
    """lin-RFM's update ``K <- (X^T X / n)^power``, then rescaled to mean diagonal 1.

    ``power = 1`` is the SVD-free variant: the kernel is the AGOP itself, no eigendecomposition.
    Any other power takes ``scipy.linalg.eigh`` of the ``d x d`` AGOP. The reference code's
    ``alpha`` (kernel ``(G^alpha)^T G^alpha``) is ``power = 2 alpha``; as IRLS-p with weights
    ``K^-1``, ``power = 1 - p/2`` (``p = 2 - 2 power``: power 1 is IRLS-0, the log-det
    heuristic, with a fixed smoothing; power 1/2 is the nuclear norm).

    Args:
        power: exponent of the AGOP.
        normalize: ``"diag"`` rescales ``K`` to mean diagonal 1; ``None`` keeps the raw AGOP.
    """

    power: float = 1.0
    normalize: str | None = "diag"

    @property
    def needs_eigh(self) -> bool:
        return self.power != 1

    def reset(self) -> None:
        pass

    def __call__(self, xtx: np.ndarray, n_rows: int, iteration: int) -> np.ndarray:
        G = xtx / xtx.dtype.type(n_rows)
        K = G if self.power == 1 else _sym_power(G, self.power)
        return _normalise(K, self.normalize)


@dataclass
class IRLSUpdate:
    """IRLS-p's update (Mohan & Fazel 2012): ``K <- (X^T X + gamma_k I)^(1 - p/2)``.

    ``K`` is the inverse of the IRLS weight ``(X^T X + gamma I)^(p/2 - 1)``. The smoothing
    follows IRLS's own schedule: ``gamma_0 = gamma0 * lambda_max(X_1^T X_1)`` (``gamma0`` about
    1e-2 of the squared spectral norm of the first iterate), then
    ``gamma_{k+1} = max(gamma_k / eta, gamma_min)``. Every iteration needs ``eigh`` of ``X^T X``,
    the cost lin-RFM with power 1 avoids. With ``fixed_gamma`` the schedule is off and ``gamma``
    is that absolute value (IRLS-0 at fixed ``gamma = n * lam`` is lin-RFM with power 1).

    Args:
        p: Schatten-p quasi-norm being minimised (0 = log-det, 1 = nuclear norm).
        gamma0: initial smoothing relative to ``lambda_max(X^T X)``.
        eta: divisor of ``gamma`` per iteration (1.1 easy problems, 1.03 hard ones).
        gamma_min: floor of ``gamma`` relative to ``lambda_max`` of the first iterate.
        fixed_gamma: absolute, constant ``gamma`` (disables the schedule).
        normalize: ``"diag"`` or ``None``, as for :class:`AGOPPower`.
    """

    p: float = 0.0
    gamma0: float = 1e-2
    eta: float = 1.1
    gamma_min: float = 1e-10
    fixed_gamma: float | None = None
    normalize: str | None = "diag"
    gamma_: float | None = field(default=None, init=False, repr=False)
    gamma_floor_: float = field(default=0.0, init=False, repr=False)

    needs_eigh = True

    def reset(self) -> None:
        self.gamma_ = None

    def __call__(self, xtx: np.ndarray, n_rows: int, iteration: int) -> np.ndarray:
        if self.fixed_gamma is not None:
            gamma = float(self.fixed_gamma)
        elif self.gamma_ is None:
            lmax = float(
                scipy.linalg.eigh(
                    xtx,
                    eigvals_only=True,
                    subset_by_index=[xtx.shape[0] - 1, xtx.shape[0] - 1],
                    check_finite=False,
                )[0]
            )
            lmax = max(lmax, np.finfo(np.float64).tiny)
            gamma = self.gamma0 * lmax
            self.gamma_floor_ = self.gamma_min * lmax
        else:
            gamma = max(self.gamma_ / self.eta, self.gamma_floor_)
        self.gamma_ = gamma
        K = _sym_power(xtx, 1.0 - self.p / 2.0, shift=gamma)
        return _normalise(K, self.normalize)


@dataclass
class RowPlan:
    """Rows grouped by their number of observations, with the gathers each group needs.

    Built once per fit. For group ``c`` (all rows with ``c`` observations), ``cols[c]`` is the
    ``g x c`` matrix of their column indices, ``pos[c]`` the positions of those entries in the
    CSR data array (rows' entries are contiguous in CSR, so these are offsets from ``indptr``).
    """

    n_rows: int
    n_cols: int
    indptr: np.ndarray
    indices: np.ndarray
    groups: list[tuple[int, np.ndarray, np.ndarray]]  # (c, rows, pos)

    @classmethod
    def from_csr(cls, R: sp.csr_matrix) -> RowPlan:
        counts = np.diff(R.indptr)
        order = np.argsort(counts, kind="stable")
        sorted_counts = counts[order]
        bounds = np.flatnonzero(np.diff(sorted_counts)) + 1
        groups = []
        for rows in np.split(order, bounds):
            c = int(counts[rows[0]])
            if c == 0:
                continue
            pos = R.indptr[rows][:, None] + np.arange(c)[None, :]
            groups.append((c, rows, pos))
        return cls(R.shape[0], R.shape[1], R.indptr, R.indices, groups)


def solve_rows(
    K: np.ndarray, plan: RowPlan, y: np.ndarray, lam: float, n_threads: int | None = None
) -> np.ndarray:
    """All row fits ``a_i = (K[S_i,S_i] + lam I)^-1 y_i``, batched by row size.

    Rows with fewer than ``_CHOLESKY_MIN_SIZE`` observations go in stacks of equal size to one
    batched ``numpy.linalg.solve`` call each; larger systems go one by one to a Cholesky
    factorisation. The work is shared by ``n_threads`` Python threads (LAPACK releases the GIL)
    with single-threaded BLAS inside: on small and mid-sized systems, OpenBLAS's own threads
    cost more in synchronisation than they gain, and under CPU contention far more.

    Args:
        K: ``d x d`` kernel.
        plan: the :class:`RowPlan` of the observation pattern.
        y: targets in CSR data order.
        lam: ridge penalty (may be 0 for exact interpolation if ``K[S,S]`` is definite).
        n_threads: worker threads; default: the BLAS thread count in force (so 1 inside
            joblib/loky workers, which limit it), at most the number of usable cores.

    Returns:
        ``a`` in CSR data order (``A = csr_matrix((a, indices, indptr))``).
    """
    dtype = K.dtype
    a = np.zeros(y.shape[0], dtype=dtype)
    tasks = []  # (cost, kind, c, rows-slice positions)
    for c, rows, pos in plan.groups:
        if c >= _CHOLESKY_MIN_SIZE:
            tasks.extend((float(c) ** 3, "single", c, pos[k : k + 1]) for k in range(rows.shape[0]))
        else:
            per_chunk = max(1, _CHUNK_BYTES // (c * c * dtype.itemsize))
            for start in range(0, rows.shape[0], per_chunk):
                p = pos[start : start + per_chunk]
                tasks.append((float(c) ** 3 * p.shape[0], "batch", c, p))

    def run(batch):
        for _, kind, c, p in batch:
            cols = plan.indices[p]
            if kind == "single":
                idx = cols[0]
                # two contiguous takes are ~3x faster than one 2-d fancy index (np.ix_)
                Ks = K.take(idx, axis=0).take(idx, axis=1)
                Ks.flat[:: c + 1] += lam
                a[p[0]] = spd_solve(Ks, y[p[0]])
                continue
            Ks = K[cols[:, :, None], cols[:, None, :]]
            Ks[:, np.arange(c), np.arange(c)] += lam
            rhs = y[p][:, :, None]
            try:
                sol = np.linalg.solve(Ks, rhs)[:, :, 0]
            except np.linalg.LinAlgError:
                sol = np.stack([spd_solve(M, r[:, 0]) for M, r in zip(Ks, rhs)])
            a[p] = sol

    if n_threads is None:
        n_threads = _default_threads()
    with _controller().limit(limits=1, user_api="blas"):
        if n_threads <= 1 or len(tasks) < 2:
            run(tasks)
        else:
            # largest first onto the least-loaded worker: positions are disjoint, so no locks
            shares: list[list] = [[] for _ in range(n_threads)]
            load = [0.0] * n_threads
            for t in sorted(tasks, key=lambda t: -t[0]):
                w = load.index(min(load))
                shares[w].append(t)
                load[w] += t[0]
            with ThreadPoolExecutor(n_threads) as ex:
                list(ex.map(run, shares))
    return a


_CONTROLLER: ThreadpoolController | None = None


def _controller() -> ThreadpoolController:
    # Built once: a new controller (or threadpool_limits) rescans the loaded libraries, which
    # costs milliseconds per call and dominated small fits.
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    blas = [lib.num_threads for lib in _controller().lib_controllers if lib.user_api == "blas"]
    return max(1, min(cores, min(blas) if blas else cores))


def spd_solve(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``M^-1 b`` for a symmetric positive (semi)definite ``M``: Cholesky, else least squares."""
    try:
        # not overwrite_a: a failed factorisation must leave M intact for the fallback
        cf = scipy.linalg.cho_factor(M, lower=True, check_finite=False)
        return scipy.linalg.cho_solve(cf, b, check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        # Semidefinite (lam = 0 on a rank-deficient kernel): the minimum-norm solution.
        return scipy.linalg.lstsq(M, b, check_finite=False)[0]


def gram_of_completion(
    K: np.ndarray | None,
    A: sp.csr_matrix,
    targets: np.ndarray | None = None,
    dtype=None,
) -> np.ndarray:
    """``X^T X`` of the completed matrix ``X = A K`` without forming all of ``X`` at once.

    ``X`` is built in row chunks of bounded size (a sparse-times-dense product each) and
    accumulated as ``X_c^T X_c`` (a ``syrk``-shaped BLAS product). With ``targets`` (the observed
    values, in CSR data order) the observed entries of ``X`` are replaced by them first: exact
    completion, as in the paper's experiments. ``K=None`` stands for the identity (the first
    iteration), where ``X = A`` needs no product at all.
    """
    n, d = A.shape
    dtype = np.dtype(dtype if dtype is not None else (K.dtype if K is not None else A.dtype))
    acc = np.zeros((d, d), dtype=dtype)
    per_chunk = max(1, _CHUNK_BYTES // max(1, d * dtype.itemsize))
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        blk = A[start:stop]
        X = blk.toarray() if K is None else np.asarray(blk @ K, dtype=dtype)
        if targets is not None:
            sl = slice(A.indptr[start], A.indptr[stop])
            r_local = np.repeat(np.arange(stop - start), np.diff(A.indptr[start : stop + 1]))
            X[r_local, A.indices[sl]] = targets[sl]
        acc += X.T @ X
    # Round-off breaks symmetry slightly; eigh and Cholesky downstream expect exact symmetry.
    acc += acc.T
    acc *= 0.5
    return acc


def predict_pairs(
    K: np.ndarray,
    A: sp.csr_matrix,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Completed entries ``W[rows, cols] = sum_{s in S_row} K[col, s] A[row, s]``, vectorised.

    Work is the total number of observations of the requested rows; pairs are processed in
    chunks so the expanded products stay within a fixed memory budget.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.zeros(rows.shape[0], dtype=np.float64)
    if rows.size == 0:
        return out
    counts = np.diff(A.indptr)[rows]
    budget = max(1, _CHUNK_BYTES // 24)
    cum = np.cumsum(counts)
    start = 0
    while start < rows.shape[0]:
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + budget, side="right"))
        stop = max(stop, start + 1)
        r, c, cnt = rows[start:stop], cols[start:stop], counts[start:stop]
        total = int(cnt.sum())
        if total:
            pair = np.repeat(np.arange(stop - start), cnt)
            offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            ent = A.indptr[r][pair] + offs
            prod = K[c[pair], A.indices[ent]].astype(np.float64) * A.data[ent]
            out[start:stop] = np.bincount(pair, weights=prod, minlength=stop - start)
        start = stop
    return out


def estimate_memory(
    n_rows: int, n_cols: int, nnz: int, dtype=np.float32, needs_eigh: bool = False
) -> int:
    """Bytes a fit needs at its peak: kernel-sized matrices, per-entry arrays and chunk scratch.

    ``d x d``: the kernel, ``A^T A``, the product and the next kernel (plus ``eigh``'s
    eigenvectors and workspace when the update needs it). Per observed entry: the CSR pattern,
    targets, ``a`` and the row plan's positions. Plus the dense scratch of row chunks and
    batched systems.
    """
    it = np.dtype(dtype).itemsize
    d = n_cols
    n_square = 4 + (3 if needs_eigh else 0)
    per_entry = 4 + 8 + 3 * it + 8 + 8  # indices, plan pos, data/targets/a, baseline copies
    return int(n_square * d * d * it + nnz * per_entry + 4 * _CHUNK_BYTES + 16 * n_rows)


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (bytes), or a conservative 4 GiB where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def check_memory(
    n_rows: int, n_cols: int, nnz: int, dtype, needs_eigh: bool, max_memory: int | None
) -> int:
    """Refuse, with the figures, a fit that would not fit in memory. Returns the estimate."""
    need = estimate_memory(n_rows, n_cols, nnz, dtype, needs_eigh)
    limit = available_memory() if max_memory is None else int(max_memory)
    if need > limit:
        gib = 2**30
        raise EngineMemoryError(
            f"this fit needs about {need / gib:.2f} GiB ({n_rows:,} rows x {n_cols:,} feature "
            f"columns, {nnz:,} ratings, {np.dtype(dtype).name}) but "
            f"{'max_memory allows' if max_memory is not None else 'the machine has'} "
            f"{limit / gib:.2f} GiB. The d x d kernel dominates (d = {n_cols:,}): use "
            f"orient='auto' so the smaller side is d, dtype=np.float32, or subsample the "
            f"columns; or raise max_memory if the machine really has more."
        )
    return need


@dataclass
class IterationState:
    """What an ``on_iteration`` hook sees after the row fit of iteration ``iteration``.

    ``K`` is the kernel the rows were fitted with, ``A`` their coefficients (so the completion
    is ``A K``), ``lam`` the ridge of this iteration's row fits and ``record`` the history entry
    just appended (``record["seconds"]`` is the fit's compute time so far, hooks excluded). The
    arrays are the engine's own: read them, do not modify them.
    """

    iteration: int
    K: np.ndarray
    A: sp.csr_matrix
    lam: float
    record: dict


@dataclass
class EngineResult:
    """Fitted state: the kernel, the row coefficients and the per-iteration history."""

    K: np.ndarray
    A: sp.csr_matrix
    history: list[dict]
    best_iteration: int


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
    K0: np.ndarray | None = None,
    max_memory: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
    progress: bool = False,
    lam_schedule: Callable[[int], float] | None = None,
    on_iteration: Callable[[IterationState], bool | None] | None = None,
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

    Returns:
        :class:`EngineResult` with ``history`` records ``{"iteration", "train_rmse",
        "valid_rmse", "kernel_change", "seconds"}``.
    """
    R = sp.csr_matrix(R)
    if not R.has_sorted_indices:
        R = R.copy()  # sorting works in place: never reorder the caller's arrays
        R.sort_indices()
    n, d = R.shape
    check_memory(n, d, R.nnz, dtype, update.needs_eigh, max_memory)
    dtype = np.dtype(dtype)
    update = copy.deepcopy(update)
    update.reset()
    plan = RowPlan.from_csr(R)
    y = R.data.astype(dtype)
    targets = y if reimpose_observed else None
    K = np.eye(d, dtype=dtype) if K0 is None else np.array(K0, dtype=dtype)
    history: list[dict] = []
    best = (math.inf, -1, None, None)
    since_best = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter + 1, desc="lin-RFM", leave=False)
    t0 = time.perf_counter()
    hook_seconds = 0.0
    change = float("nan")
    it = 0
    identity_start = K0 is None
    n_threads = _default_threads()
    while True:
        lam_it = float(lam if lam_schedule is None else lam_schedule(it))
        if not lam_it >= 0.0 or not math.isfinite(lam_it):
            raise ValueError(f"lam_schedule({it}) returned {lam_it}: the ridge must be finite >= 0")
        if it == 0 and identity_start:
            # K = I: every system is (1 + lam) I, no solve needed.
            a = y / dtype.type(1.0 + lam_it)
        else:
            a = solve_rows(K, plan, y, lam_it, n_threads)
        A = sp.csr_matrix((a, R.indices, R.indptr), shape=(n, d))
        # On observed entries w = K_SS a = y - lam a, so the training residual is lam * a.
        train_rmse = float(lam_it * np.sqrt(np.mean(a.astype(np.float64) ** 2))) if a.size else 0.0
        rec = {"iteration": it, "train_rmse": train_rmse, "kernel_change": change}
        if validation is not None:
            vr, vc, vv = validation
            pred = predict_pairs(K, A, vr, vc)
            rec["valid_rmse"] = float(np.sqrt(np.mean((pred - vv) ** 2)))
            if rec["valid_rmse"] < best[0] - 1e-9:
                best = (rec["valid_rmse"], it, K.copy(), A)
                since_best = 0
            else:
                since_best += 1
        rec["seconds"] = time.perf_counter() - t0 - hook_seconds
        history.append(rec)
        if callback is not None:
            callback(it, rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k.endswith("rmse")})
        stop_requested = False
        if on_iteration is not None:
            t_hook = time.perf_counter()
            stop_requested = bool(on_iteration(IterationState(it, K, A, lam_it, rec)))
            hook_seconds += time.perf_counter() - t_hook
        if stop_requested or it >= n_iter or (validation is not None and since_best >= patience):
            break
        if tol is not None and it > 0 and change < tol:
            break
        xtx = gram_of_completion(None if (it == 0 and identity_start) else K, A, targets, dtype)
        K_new = update(xtx, n, it)
        if not np.all(np.isfinite(K_new)):
            raise FloatingPointError(
                f"the kernel became non-finite at iteration {it + 1}: raise `lam` or use float64"
            )
        change = float(np.linalg.norm(K_new - K) / max(np.linalg.norm(K), 1e-300))
        K = K_new.astype(dtype, copy=False)
        it += 1
    if bar is not None:
        bar.close()
    best_iteration = it
    if validation is not None and best[1] >= 0:
        _, best_iteration, K, A = best
    return EngineResult(K=K, A=A, history=history, best_iteration=best_iteration)


def complete_dense(K: np.ndarray, A: sp.csr_matrix) -> np.ndarray:
    """The whole completed matrix ``A K``, for small problems (tests and synthetic experiments)."""
    return np.asarray(A @ K)
