"""Batched row fits ``a_i = (K[S_i, S_i] + lam I)^-1 y_i`` of the dense kernel.

Rows are grouped by their number of observations so that each group is one batched LAPACK call
(``numpy.linalg.solve`` over a stack of equal-sized systems); large single systems go to a
Cholesky factorisation. The groups are shared among Python threads (LAPACK releases the GIL)
with single-threaded BLAS inside.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blas import blas_threads, default_threads
from .memory import CHUNK_BYTES

# Systems at least this large go one by one to Cholesky (LAPACK potrf is multithreaded there);
# below it the per-call overhead dominates and a batched gufunc call wins.
_CHOLESKY_MIN_SIZE = 64


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
            per_chunk = max(1, CHUNK_BYTES // (c * c * dtype.itemsize))
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

    run_shared(tasks, run, n_threads)
    return a


def run_shared(tasks: list, run, n_threads: int | None) -> None:
    """Run tasks ``(cost, ...)`` on threads, largest first onto the least-loaded worker.

    ``run`` gets a list of tasks; the tasks must write disjoint outputs (no locks are taken).
    BLAS is single-threaded inside: the parallelism is across tasks.
    """
    if n_threads is None:
        n_threads = default_threads()
    with blas_threads(1):
        if n_threads <= 1 or len(tasks) < 2:
            run(tasks)
            return
        shares: list[list] = [[] for _ in range(n_threads)]
        load = [0.0] * n_threads
        for t in sorted(tasks, key=lambda t: -t[0]):
            w = load.index(min(load))
            shares[w].append(t)
            load[w] += t[0]
        with ThreadPoolExecutor(n_threads) as ex:
            list(ex.map(run, shares))


def spd_solve(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``M^-1 b`` for a symmetric positive (semi)definite ``M``: Cholesky, else least squares."""
    try:
        # not overwrite_a: a failed factorisation must leave M intact for the fallback
        cf = scipy.linalg.cho_factor(M, lower=True, check_finite=False)
        return scipy.linalg.cho_solve(cf, b, check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        # Semidefinite (lam = 0 on a rank-deficient kernel): the minimum-norm solution.
        return scipy.linalg.lstsq(M, b, check_finite=False)[0]
