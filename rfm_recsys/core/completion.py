"""The completed matrix ``W = A K`` of the dense kernel, used without storing it whole.

``X^T X`` for the feature update is accumulated from row chunks of bounded size; predictions of
single pairs sum over the row's observations. Memory stays ``O(|Omega| + d^2)`` plus a fixed
chunk budget.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .memory import CHUNK_BYTES


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
    per_chunk = max(1, CHUNK_BYTES // max(1, d * dtype.itemsize))
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
    budget = max(1, CHUNK_BYTES // 24)
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
