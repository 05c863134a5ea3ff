"""Row fits of the factored kernel ``K[S, S] = L L^T`` (+ a ridge), batched by row length.

Rows are padded into buckets of similar length and each bucket is one stacked solve: direct
``c x c`` systems up to ``c = r``, Woodbury's ``r x r`` ones beyond
(``a = (y - L (lam I + L^T L)^-1 L^T y) / lam``), so a row of any length costs at most an
``r x r`` system.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .memory import CHUNK_BYTES
from .solve import RowPlan, run_shared, spd_solve

# Stacks of systems up to this size go to one batched LAPACK call, larger ones to posv each.
_BATCHED_MAX = 12


def bucket_size(c: int) -> int:
    """Padded size of a row with ``c`` observations: at most 1/8 above ``c``."""
    if c <= 16:
        return c
    step = 1 << (c.bit_length() - 4)
    return -(-c // step) * step


def solve_one(L: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    c, r = L.shape
    if c <= r or lam <= 0:
        M = L @ L.T
        M.flat[:: c + 1] += lam
        return spd_solve(M, y)
    B = L.T @ L
    B.flat[:: r + 1] += lam
    return (y - L @ spd_solve(B, L.T @ y)) / lam


def solve_rows_factored(L_all, plan: RowPlan, y, lam: float, n_threads) -> np.ndarray:
    """Row fits with ``K[S,S] = L L^T``, rows padded into buckets of similar length.

    ``L_all`` holds the rows of ``L`` for every column plus a last row of zeros.

    Padding a row with zero rows of ``L`` and zero targets leaves its solution unchanged on the
    real entries (the padded block is ``lam I`` with right-hand side 0), so each bucket is one
    stacked ``numpy.linalg.solve``: direct ``c x c`` systems up to ``c = r``, Woodbury's
    ``r x r`` ones beyond.
    """
    dtype = L_all.dtype
    r = L_all.shape[1]
    a = np.zeros(y.shape[0], dtype=dtype)
    counts = np.diff(plan.indptr)
    nonempty = np.flatnonzero(counts)
    sizes = np.array([bucket_size(int(c)) for c in range(int(counts.max(initial=0)) + 1)])
    padded = sizes[counts[nonempty]]
    order = np.argsort(padded, kind="stable")
    rows_sorted, pad_sorted = nonempty[order], padded[order]
    bounds = np.flatnonzero(np.diff(pad_sorted)) + 1
    tasks = []
    for rows in np.split(rows_sorted, bounds):
        if rows.size == 0:
            continue
        cpad = int(sizes[counts[rows[0]]])
        m = cpad if (cpad <= r or lam <= 0) else r
        per_row = (cpad * r + m * m + 2 * cpad) * dtype.itemsize
        per_chunk = max(1, CHUNK_BYTES // per_row)
        for lo in range(0, rows.size, per_chunk):
            chunk = rows[lo : lo + per_chunk]
            tasks.append((float(chunk.size) * (cpad * r * m + m**3 / 3), cpad, chunk))

    def run(batch):
        for _, cpad, chunk in batch:
            start, cnt = plan.indptr[chunk], counts[chunk]
            offs = np.arange(cpad)[None, :]
            valid = offs < cnt[:, None]
            pos = np.where(valid, start[:, None] + offs, 0)
            cols = np.where(valid, plan.indices[pos], L_all.shape[0] - 1)
            L = L_all[cols]  # g x c x r, zero rows where padded
            yy = np.where(valid, y[pos], 0).astype(dtype)
            sol = _solve_stack(L, yy, lam)
            a[pos[valid]] = sol[valid]

    run_shared(tasks, run, n_threads)
    return a


def _solve_stack(L: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    g, c, r = L.shape
    Lt = L.transpose(0, 2, 1)
    if c <= r or lam <= 0:
        M = L @ Lt
        M[:, np.arange(c), np.arange(c)] += lam
        return _stack_solve(M, y)
    B = Lt @ L
    B[:, np.arange(r), np.arange(r)] += lam
    x = _stack_solve(B, np.einsum("gcr,gc->gr", L, y))
    return (y - np.einsum("gcr,gr->gc", L, x)) / y.dtype.type(lam)


def _stack_solve(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve a stack of symmetric positive definite systems ``M[k] x = b[k]``.

    Small systems go to one batched ``numpy.linalg.solve`` call; larger ones one by one to
    LAPACK's Cholesky solver ``posv``, which is several times faster than the batched LU
    (measured, one thread: 1,562 systems of size 128 in 0.24 s against 0.66 s; size 256: 0.77 s
    against 4.4 s).
    """
    g, m, _ = M.shape
    if m <= _BATCHED_MAX:
        try:
            return np.linalg.solve(M, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            return np.stack([spd_solve(Mi, bi) for Mi, bi in zip(M, b)]).astype(b.dtype)
    (posv,) = scipy.linalg.get_lapack_funcs(("posv",), (M,))
    out = np.empty_like(b)
    for k in range(g):
        # M[k] is symmetric, so its transpose is the same matrix in the Fortran order LAPACK
        # wants: no copy. A failed factorisation (lam = 0, semidefinite) falls back.
        _, x, info = posv(M[k].T, b[k], lower=1, overwrite_a=1, overwrite_b=0)
        out[k] = x if info == 0 else spd_solve(M[k].astype(np.float64), b[k].astype(np.float64))
    return out
