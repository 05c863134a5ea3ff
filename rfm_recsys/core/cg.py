"""Row fits by batched preconditioned conjugate gradients, compiled with numba.

The engine's row fits are ``n`` independent ridge systems, one per row ``i`` with observed
columns ``S_i`` (CSR order)::

    (K[S_i, S_i] + lam I) a_i = y_i

The direct solvers (:func:`~rfm_recsys.core.solve.solve_rows`, the factored kernel's Woodbury
buckets) factor every system from scratch on every refit. Here each system is solved by
conjugate gradients, all rows in one ``prange`` loop over both cores:

- a matrix-vector product costs ``O(c^2)`` for the dense kernel (``K[S,S] v``, the block gathered
  once per row) and ``O(c r)`` for the factored kernel ``K = U diag(s) U^T + diag(e)``
  (``U[S]^T v`` then ``U[S] t``), against ``O(c^3 / 3)`` and ``O(c r^2 + r^3 / 3)`` to factor;
- the previous refit's coefficients are a warm start (``a0``): between kernel updates the
  solutions move little, so a few steps reach the tolerance;
- the stopping rule is the relative residual ``||y - (K_SS + lam I) a|| <= tol ||y||``, checked
  before the first step too (a warm start already within it takes no step);
- the Jacobi preconditioner ``diag(K_SS) + lam`` costs nothing and evens out the per-item
  diagonal that the kernel step keeps (``diag(e)``).

Every row writes only its own slice of the outputs and runs its steps in a fixed order, so a
fit gives the same bits whatever the number of threads or their schedule. Sums are accumulated
in float64 whatever the dtype of the kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np
from numba import njit, prange

#: Most steps of one row's CG (the tolerance stops it long before on the systems measured:
#: 2-10 steps at 1e-2, up to 13 at 1e-4).
CG_MAX_STEPS = 100
#: Rows whose dense block ``K[S,S]`` has more entries than this are not gathered into a local
#: buffer (32 MiB of float64 per thread); their products read ``K`` in place.
GATHER_MAX = 1 << 22


@contextlib.contextmanager
def numba_threads(n: int | None) -> Iterator[None]:
    """Run numba's parallel loops on ``n`` threads inside the block (``None``: as they are)."""
    if not n:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


@njit(cache=True)
def _deal(sorted_cost, n_bins):
    # longest-processing-time first: each row to the least-loaded bin so far
    load = np.zeros(n_bins)
    owner = np.empty(sorted_cost.shape[0], dtype=np.int64)
    for k in range(sorted_cost.shape[0]):
        b = 0
        for q in range(1, n_bins):
            if load[q] < load[b]:
                b = q
        owner[k] = b
        load[b] += sorted_cost[k]
    return owner


def _balanced_bins(indptr: np.ndarray, power: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows dealt to ``n_bins`` bins of near-equal cost ``sum c^power``: ``(order, bounds)``.

    Rows sorted by decreasing cost are dealt greedily to the least-loaded bin; bin ``b`` is
    ``order[bounds[b]:bounds[b + 1]]``. The parallel loop runs one bin per thread, so one thread
    does not get all the long rows (numba splits a ``prange`` into equal counts, not costs).
    The assignment depends only on the pattern and ``n_bins``, and each row's result does not
    depend on its bin, so the output is the same for any ``n_bins``.
    """
    counts = np.diff(indptr).astype(np.float64)
    cost = counts**power + 1.0
    rows = np.argsort(-cost, kind="stable")
    n_bins = max(1, int(n_bins))
    owner = _deal(cost[rows], n_bins)
    order = np.concatenate([rows[owner == b] for b in range(n_bins)]).astype(np.int64)
    bounds = np.zeros(n_bins + 1, dtype=np.int64)
    bounds[1:] = np.cumsum(np.bincount(owner, minlength=n_bins))
    return order, bounds


# ------------------------------------------------------------------------------ shared PCG


@njit(cache=True, nogil=True)
def _pcg_row(matvec_args, kind, idx, b, x, minv, lam, tol, max_iter):
    """Preconditioned CG on one row's system, ``x`` (the warm start) updated in place.

    Returns the number of steps taken. ``kind`` 0: dense block, 1: dense in place, 2: factored.
    """
    c = idx.shape[0]
    bnorm2 = 0.0
    for j in range(c):
        bnorm2 += b[j] * b[j]
    if bnorm2 == 0.0:
        for j in range(c):
            x[j] = 0.0
        return 0
    r = np.empty(c)
    Ap = np.empty(c)
    _apply(matvec_args, kind, idx, x, Ap, lam)
    rnorm2 = 0.0
    for j in range(c):
        r[j] = b[j] - Ap[j]
        rnorm2 += r[j] * r[j]
    stop2 = tol * tol * bnorm2
    z = np.empty(c)
    p = np.empty(c)
    rz = 0.0
    for j in range(c):
        z[j] = minv[j] * r[j]
        p[j] = z[j]
        rz += r[j] * z[j]
    k = 0
    while rnorm2 > stop2 and k < max_iter:
        _apply(matvec_args, kind, idx, p, Ap, lam)
        pAp = 0.0
        for j in range(c):
            pAp += p[j] * Ap[j]
        if not pAp > 0.0:
            break  # a semidefinite direction (lam = 0): keep the iterate so far
        alpha = rz / pAp
        rnorm2 = 0.0
        for j in range(c):
            x[j] += alpha * p[j]
            r[j] -= alpha * Ap[j]
            rnorm2 += r[j] * r[j]
        k += 1
        rz_new = 0.0
        for j in range(c):
            z[j] = minv[j] * r[j]
            rz_new += r[j] * z[j]
        beta = rz_new / rz
        rz = rz_new
        for j in range(c):
            p[j] = z[j] + beta * p[j]
    return k


# Reassociation lets LLVM vectorise the dot products (measured: several times faster than the
# strict left-to-right sums). The order is still fixed by the compiled code, so runs agree.
_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def _apply(args, kind, idx, v, out, lam):
    """``out = (K[S,S] + lam I) v`` for the three kernel layouts (see :func:`_pcg_row`)."""
    Ks, K, U, s, e, t = args
    c = idx.shape[0]
    if kind == 0:  # the row's block, gathered
        for j in range(c):
            acc = 0.0
            for k in range(c):
                acc += Ks[j, k] * v[k]
            out[j] = acc + lam * v[j]
    elif kind == 1:  # read K in place
        for j in range(c):
            row = idx[j]
            acc = 0.0
            for k in range(c):
                acc += K[row, idx[k]] * v[k]
            out[j] = acc + lam * v[j]
    elif kind == 3:  # as kind 2 with the row's U[S] gathered in float64 (Ks, c x r)
        r = Ks.shape[1]
        for q in range(r):
            t[q] = 0.0
        for j in range(c):
            vj = v[j]
            for q in range(r):
                t[q] += Ks[j, q] * vj
        for q in range(r):
            t[q] *= s[q]
        for j in range(c):
            acc = 0.0
            for q in range(r):
                acc += Ks[j, q] * t[q]
            out[j] = acc + (e[idx[j]] + lam) * v[j]
    else:  # U[S] diag(s) U[S]^T v + (e[S] + lam) v, t of length r as workspace
        r = U.shape[1]
        for q in range(r):
            t[q] = 0.0
        for j in range(c):
            row = idx[j]
            vj = v[j]
            for q in range(r):
                t[q] += U[row, q] * vj
        for q in range(r):
            t[q] *= s[q]
        for j in range(c):
            row = idx[j]
            acc = 0.0
            for q in range(r):
                acc += U[row, q] * t[q]
            out[j] = acc + (e[row] + lam) * v[j]


# ------------------------------------------------------------------------------- dense kernel


@njit(parallel=True, cache=True)
def _cg_dense(K, indptr, indices, y, lam, a0, tol, max_iter, order, bounds, jacobi, gather_max):
    n = indptr.shape[0] - 1
    a = np.zeros(y.shape[0], dtype=y.dtype)
    iters = np.zeros(n, dtype=np.int32)
    U0 = np.zeros((1, 1), dtype=K.dtype)
    s0 = np.zeros(1)
    e0 = np.zeros(1)
    for bin_ in prange(bounds.shape[0] - 1):
        t0 = np.zeros(1)
        for t in range(bounds[bin_], bounds[bin_ + 1]):
            i = order[t]
            st, en = indptr[i], indptr[i + 1]
            c = en - st
            if c == 0:
                continue
            idx = indices[st:en]
            gathered = c * c <= gather_max
            m = c if gathered else 0
            Ks = np.empty((m, m))
            for j in range(m):
                row = idx[j]
                for k in range(m):
                    Ks[j, k] = K[row, idx[k]]
            minv = np.empty(c)
            b = np.empty(c)
            x = np.empty(c)
            for j in range(c):
                dj = K[idx[j], idx[j]] + lam
                minv[j] = 1.0 / dj if (jacobi and dj > 0) else 1.0
                b[j] = y[st + j]
                x[j] = a0[st + j]
            kind = 0 if gathered else 1
            iters[i] = _pcg_row((Ks, K, U0, s0, e0, t0), kind, idx, b, x, minv, lam, tol, max_iter)
            for j in range(c):
                a[st + j] = x[j]
    return a, iters


def cg_solve_dense(
    K: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    y: np.ndarray,
    lam: float,
    a0: np.ndarray | None = None,
    tol: float = 1e-4,
    max_iter: int = 200,
    jacobi: bool = True,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All row fits ``(K[S_i,S_i] + lam I)^-1 y_i`` of a dense kernel by conjugate gradients.

    Args:
        K: ``d x d`` symmetric PSD kernel (float32 or float64).
        indptr, indices: the CSR pattern of the targets (``S_i = indices[indptr[i]:indptr[i+1]]``).
        y: targets in CSR data order.
        lam: ridge (``K[S,S] + lam I`` must be definite).
        a0: warm start in CSR data order (``None``: zeros).
        tol: stop a row once ``||residual|| <= tol ||y_i||``.
        max_iter: most steps per row.
        jacobi: precondition with ``diag(K[S,S]) + lam``.
        n_threads: threads of the parallel loop (``None``: numba's setting).

    Returns:
        ``(a, iterations)``: coefficients in CSR data order (``y``'s dtype) and the steps each
        row took (int32, one per row).
    """
    y = np.ascontiguousarray(y)
    a0 = np.zeros_like(y) if a0 is None else np.ascontiguousarray(a0, dtype=y.dtype)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    with numba_threads(n_threads):
        order, bounds = _balanced_bins(indptr, 2, numba.get_num_threads())
        return _cg_dense(
            np.ascontiguousarray(K), indptr, indices, y, float(lam), a0, float(tol),
            int(max_iter), order, bounds, bool(jacobi), GATHER_MAX,
        )  # fmt: skip


# ---------------------------------------------------------------------------- factored kernel


@njit(parallel=True, cache=True)
def _cg_factored(
    U, s, e, indptr, indices, y, lam, a0, tol, max_iter, order, bounds, jacobi, gather
):
    n = indptr.shape[0] - 1
    r_ = U.shape[1]
    a = np.zeros(y.shape[0], dtype=y.dtype)
    iters = np.zeros(n, dtype=np.int32)
    s64 = s.astype(np.float64)
    K0 = np.zeros((1, 1), dtype=U.dtype)
    Ks0 = np.zeros((1, 1))
    for bin_ in prange(bounds.shape[0] - 1):
        t = np.empty(r_)
        for tt in range(bounds[bin_], bounds[bin_ + 1]):
            i = order[tt]
            st, en = indptr[i], indptr[i + 1]
            c = en - st
            if c == 0:
                continue
            idx = indices[st:en]
            minv = np.empty(c)
            b = np.empty(c)
            x = np.empty(c)
            for j in range(c):
                row = idx[j]
                dj = e[row] + lam
                for q in range(r_):
                    dj += s64[q] * U[row, q] * U[row, q]
                minv[j] = 1.0 / dj if (jacobi and dj > 0) else 1.0
                b[j] = y[st + j]
                x[j] = a0[st + j]
            if gather:
                Us = np.empty((c, r_))
                for j in range(c):
                    for q in range(r_):
                        Us[j, q] = U[idx[j], q]
                args = (Us, K0, U, s64, e, t)
                iters[i] = _pcg_row(args, 3, idx, b, x, minv, lam, tol, max_iter)
            else:
                args = (Ks0, K0, U, s64, e, t)
                iters[i] = _pcg_row(args, 2, idx, b, x, minv, lam, tol, max_iter)
            for j in range(c):
                a[st + j] = x[j]
    return a, iters


def cg_solve_factored(
    U: np.ndarray,
    s: np.ndarray,
    e: float | np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    y: np.ndarray,
    lam: float,
    a0: np.ndarray | None = None,
    tol: float = 1e-4,
    max_iter: int = 200,
    jacobi: bool = True,
    n_threads: int | None = None,
    gather: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """All row fits of the factored kernel ``K = U diag(s) U^T + diag(e)`` by conjugate gradients.

    A step on a row with ``c`` observations costs ``O(c r)``: no ``r x r`` system is formed,
    so the cost grows linearly in the rank.

    Args:
        U: ``d x r`` factor (orthonormal or not; float32 or float64).
        s: the ``r`` weights of the low-rank part (pass a PSD kernel: ``s >= 0``).
        e: the shift, a number or ``d`` non-negative numbers.
        indptr, indices, y, lam, a0, tol, max_iter, jacobi, n_threads: as
            :func:`cg_solve_dense`.
        gather: copy each row's ``U[S]`` to a float64 buffer first (one conversion instead of
            one per step).

    Returns:
        ``(a, iterations)`` as :func:`cg_solve_dense`.
    """
    U = np.ascontiguousarray(U)
    d = U.shape[0]
    e = np.broadcast_to(np.asarray(e, dtype=np.float64), (d,)).copy()
    y = np.ascontiguousarray(y)
    a0 = np.zeros_like(y) if a0 is None else np.ascontiguousarray(a0, dtype=y.dtype)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    with numba_threads(n_threads):
        order, bounds = _balanced_bins(indptr, 1, numba.get_num_threads())
        return _cg_factored(
            U, np.ascontiguousarray(s), e, indptr, indices, y, float(lam), a0, float(tol),
            int(max_iter), order, bounds, bool(jacobi), bool(gather),
        )  # fmt: skip
