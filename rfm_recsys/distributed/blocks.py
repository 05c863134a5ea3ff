"""What runs on the Dask workers: rating parts, row blocks and their per-iteration work.

A :class:`RatingPart` holds every rating of a set of rows (users or items, whichever side is the
row side of the fit) as integer-coded triples, with the mask of ratings held out for validation.
For one engine run a part becomes a :class:`Block`: the CSR matrix of its rows' baseline
residuals (rows renumbered locally, columns global), the row plan of the batched solves and the
validation pairs of its rows. Every function here is pure (its result depends only on its
arguments), so Dask can recompute a lost result from its inputs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..checks import RatingsError, check_triples
from ..core.completion import gram_of_completion, predict_pairs
from ..core.dense_kernel import DenseKernel
from ..core.factored_kernel import FactoredKernel, factor_gram
from ..core.solve import RowPlan


@dataclass
class RatingPart:
    """Coded ratings of a set of whole rows; ``held`` marks the validation share."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    held: np.ndarray

    @property
    def size(self) -> int:
        return int(self.ratings.size)


@dataclass
class Block:
    """One part's rows ready for the engine: residuals, row plan, validation pairs.

    ``row_ids`` are the global row codes of the local rows ``0..len(row_ids)-1``; ``R`` is their
    ``len(row_ids) x d`` CSR matrix of residuals (sorted indices); ``valid`` holds the local rows,
    global columns and residual targets of the held-out pairs of these rows.
    """

    row_ids: np.ndarray
    R: sp.csr_matrix
    plan: RowPlan
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None


def select(part: RatingPart, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ratings an engine run fits: all of them (``"all"``) or the non-held (``"train"``)."""
    u, i, r = aligned(part.users), aligned(part.items), aligned(part.ratings)
    if mode == "all":
        return u, i, r
    keep = ~part.held
    return u[keep], i[keep], r[keep]


# ---------------------------------------------------------------------- parts


def part_from_frame(
    df: pd.DataFrame,
    user_ids: pd.Index,
    item_ids: pd.Index,
    columns: tuple,
    rating_scale: tuple[float, float] | None,
    duplicates: str,
    share: float,
    seed: np.random.SeedSequence,
) -> RatingPart:
    """Code one partition of a ratings frame whose rows were shuffled together by row id.

    All ratings of a row are in this partition, so duplicates are resolved here exactly as
    :func:`~rfm_recsys.checks.check_triples` does on the whole data. Ratings are sorted by
    (user, item) first, so the validation draw does not depend on the shuffle's order.
    """
    user_col, item_col, rating_col = columns
    users = user_ids.get_indexer(df[user_col])
    items = item_ids.get_indexer(df[item_col])
    for codes, name, what in ((users, user_col, "user"), (items, item_col, "item")):
        if (codes < 0).any():
            raise RatingsError(
                f"{int((codes < 0).sum()):,} rows have a missing {what} id in column {name!r}; "
                f"drop them first, e.g. ddf.dropna(subset=[{name!r}])"
            )
    values = df[rating_col].to_numpy(dtype=np.float64, na_value=np.nan)
    if values.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return RatingPart(empty, empty, np.empty(0), np.zeros(0, dtype=bool))
    users, items, values = check_triples(users, items, values, rating_scale, duplicates)
    order = np.lexsort((items, users))
    users, items, values = users[order], items[order], values[order]
    held = _held_mask(values.size, share, seed)
    return RatingPart(users, items, values, held)


def _held_mask(n: int, share: float, seed: np.random.SeedSequence) -> np.ndarray:
    if not share:
        return np.zeros(n, dtype=bool)
    return np.random.default_rng(seed).random(n) < share


def part_sizes(part: RatingPart) -> tuple[int, int, float, float]:
    """``(ratings, held ratings, lowest rating, highest rating)`` of a part."""
    if not part.size:
        return 0, 0, np.inf, -np.inf
    return part.size, int(part.held.sum()), float(part.ratings.min()), float(part.ratings.max())


# ---------------------------------------------------------------------- baseline reductions


def baseline_sums(
    part: RatingPart, mode: str, n_users: int, n_items: int
) -> tuple[float, int, np.ndarray, np.ndarray]:
    """Sum and count of the ratings, and the rating counts per user and per item."""
    u, i, r = select(part, mode)
    return (
        float(r.sum()),
        int(r.size),
        np.bincount(u, minlength=n_users).astype(np.float64),
        np.bincount(i, minlength=n_items).astype(np.float64),
    )


def bias_half_step(
    part: RatingPart, mode: str, mu: float, b_other: np.ndarray, users_side: bool, size: int
) -> np.ndarray:
    """Partial ``sum (y - mu - b_other)`` per user (``users_side``) or per item."""
    u, i, r = select(part, mode)
    own, other = (u, i) if users_side else (i, u)
    return np.bincount(own, weights=(r - mu) - aligned(b_other)[other], minlength=size)


# ---------------------------------------------------------------------- blocks


def build_block(
    part: RatingPart,
    mode: str,
    mu: float,
    b_user: np.ndarray,
    b_item: np.ndarray,
    users_are_rows: bool,
    n_cols: int,
    dtype: np.dtype,
    with_validation: bool,
) -> Block:
    """The engine's view of a part: residual rows, row plan and validation pairs."""
    u, i, r = select(part, mode)
    b_user, b_item = aligned(b_user), aligned(b_item)
    resid = r - (mu + b_user[u] + b_item[i])
    rows, cols = (u, i) if users_are_rows else (i, u)
    row_ids, local = np.unique(rows, return_inverse=True)
    R = sp.csr_matrix(
        (resid.astype(dtype), (local, cols)), shape=(row_ids.size, n_cols), dtype=dtype
    )
    R.sort_indices()
    valid = None
    if with_validation:
        vu, vi, vr = part.users[part.held], part.items[part.held], part.ratings[part.held]
        vrows, vcols = (vu, vi) if users_are_rows else (vi, vu)
        pos = np.searchsorted(row_ids, vrows)
        # pairs whose row has no training ratings stay with the baseline, as in the threads fit
        keep = (pos < row_ids.size) & (row_ids[np.minimum(pos, row_ids.size - 1)] == vrows)
        target = vr - (mu + b_user[vu] + b_item[vi])
        valid = (pos[keep], vcols[keep], target[keep])
    return Block(row_ids, R, RowPlan.from_csr(R), valid)


def aligned(x: np.ndarray | None) -> np.ndarray | None:
    """``x`` in aligned, C-ordered memory (copied only if needed).

    Arrays received from another process can sit at an unaligned offset of the message buffer;
    gathers and BLAS calls on them run several times slower (measured: 9.9 s instead of 2.6 s
    for one block's row solves).
    """
    return None if x is None else np.require(x, requirements=("A", "C"))


_MALLOC_TUNED = False


def reuse_temporaries() -> None:
    """Let glibc reuse the heap for the solves' temporaries in a Dask worker process.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off
    glibc's dynamic mmap threshold: every temporary over 128 KiB (the gathered ``K[S, S]``, the
    row chunks) became a fresh ``mmap``, and every free at the top of the heap gave the pages
    back, so the next temporary page-faulted them in again. The row solves of a block ran about
    1.5-2.5x slower than in the driver. Here the mmap threshold is set to 32 MiB (what the
    dynamic rule grows to) and the trim threshold to 64 MiB: freed memory beyond that still goes
    back to the system. Once per process, Linux/glibc only, and only when the nanny's setting is
    in force (``MALLOC_TRIM_THRESHOLD_`` set, ``MALLOC_MMAP_THRESHOLD_`` not).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if (
        not sys.platform.startswith("linux")
        or "MALLOC_TRIM_THRESHOLD_" not in os.environ
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
    ):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # -3: M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 2**20)  # -1: M_TRIM_THRESHOLD


def _here(K):
    """The broadcast kernel with its arrays aligned in this process (see :func:`aligned`).

    ``K`` is ``None`` (the identity), a dense ``d x d`` array or a
    :class:`~rfm_recsys.core.factored_kernel.FactoredKernel`.
    """
    if isinstance(K, FactoredKernel):
        return FactoredKernel(
            aligned(K.U), aligned(K.s), K.eps, K.rank, K.shift, K.random_state, K.orthonormal
        )
    return aligned(K)


def solve_block(
    block: Block, K, lam: float, dtype: np.dtype, a0: np.ndarray | None = None, tol=None
) -> np.ndarray:
    """Row coefficients ``a`` of the block (CSR data order); ``K=None`` is the identity.

    Either kernel form solves with its own method, the threads backend's code path: directly,
    or with a tolerance by conjugate gradients started from ``a0`` (the block's previous
    coefficients).
    """
    reuse_temporaries()
    y = block.R.data
    if K is None:
        return y / np.dtype(dtype).type(1.0 + lam)
    kernel = _here(K) if isinstance(K, FactoredKernel) else DenseKernel(aligned(K))
    return kernel.solve_rows(block.plan, y, lam, 1, aligned(a0), tol)


def _coefficients(block: Block, a: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((aligned(a), block.R.indices, block.R.indptr), shape=block.R.shape)


def block_stats(block: Block, a: np.ndarray, K) -> dict:
    """What the driver's history needs: ``sum a^2`` and, with validation, the squared errors."""
    a64 = a.astype(np.float64)
    out = {"sum_a2": float(a64 @ a64), "n_a": int(a.size), "sse": 0.0, "n_valid": 0}
    if block.valid is not None and block.valid[0].size:
        vr, vc, vv = block.valid
        A = _coefficients(block, a)
        if K is None:
            # identity kernel: W = A, read the entries (0 where the pair was not fitted)
            pred = np.asarray(A[vr, vc], dtype=np.float64).ravel()
        elif isinstance(K, FactoredKernel):
            pred = _here(K).complete(A).pairs(vr, vc)
        else:
            pred = predict_pairs(aligned(K), A, vr, vc)
        err = pred - vv
        out["sse"] = float(err @ err)
        out["n_valid"] = int(vr.size)
    return out


def block_gram(block: Block, a: np.ndarray, K: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """This block's ``X^T X`` with ``X = A K`` (``d x d``), summed over blocks by the driver."""
    reuse_temporaries()
    return gram_of_completion(aligned(K), _coefficients(block, a), None, dtype)


def block_factor_gram(block: Block, a: np.ndarray, K: FactoredKernel) -> np.ndarray:
    """This block's ``Z^T Z`` (``r x r``, float64) for the factored kernel's exact update."""
    reuse_temporaries()
    return factor_gram(_here(K).complete(_coefficients(block, a)).Z)


def block_range_gram(
    block: Block, a: np.ndarray, K: FactoredKernel, P: np.ndarray, c: float
) -> np.ndarray:
    """This block's ``X^T X P`` (``d x q``) for the factored kernel's randomized update."""
    reuse_temporaries()
    A = _coefficients(block, a)
    return _here(K).range_gram(A, A.T.tocsr(), aligned(P), c, n_threads=1)


# ---------------------------------------------------------------------- the co-rating signal


def _pattern(block: Block, dtype) -> sp.csr_matrix:
    R = block.R
    return sp.csr_matrix((np.ones(R.nnz, dtype=dtype), R.indices, R.indptr), shape=R.shape)


def block_column_counts(block: Block) -> np.ndarray:
    """This block's ratings per feature column (float64), summed over blocks by the driver."""
    return np.bincount(block.R.indices, minlength=block.R.shape[1]).astype(np.float64)


def block_pattern_gram(block: Block, dtype: np.dtype) -> np.ndarray:
    """This block's ``B^T B`` (``d x d``, the co-rating counts of its rows)."""
    reuse_temporaries()
    B = _pattern(block, dtype)
    return (B.T @ B).toarray()


def block_pattern_times(block: Block, P: np.ndarray) -> np.ndarray:
    """This block's ``B^T (B P)`` (``d x q``, float64)."""
    reuse_temporaries()
    B = _pattern(block, np.float64)
    return np.asarray(B.T @ np.asarray(B @ aligned(P)))


def block_pattern(block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(global row ids, entries per row, column indices, ones)``: the block's 0/1 pattern in
    :func:`assemble_rows`' form."""
    R = block.R
    return block.row_ids, np.diff(R.indptr), R.indices, np.ones(R.nnz)


def sum_arrays(*arrays: np.ndarray) -> np.ndarray:
    """Sum of partial Gram matrices (a node of the reduction tree).

    Accumulated in float64, returned in the inputs' dtype so that what travels up the tree (and
    to the driver) is no larger than one partial.
    """
    out = np.array(arrays[0], dtype=np.float64)
    for x in arrays[1:]:
        out += x
    return out.astype(arrays[0].dtype, copy=False)


def block_coefficients(
    block: Block, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(global row ids, entries per row, column indices, a)`` for the driver's final ``A``."""
    return block.row_ids, np.diff(block.R.indptr), block.R.indices, a


def assemble_rows(pieces: list, n_rows: int, n_cols: int, dtype: np.dtype) -> sp.csr_matrix:
    """The ``n_rows x n_cols`` CSR matrix ``A`` from the blocks' :func:`block_coefficients`."""
    counts = np.zeros(n_rows, dtype=np.int64)
    for row_ids, cnt, _, _ in pieces:
        counts[row_ids] = cnt
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, n_cols) < 2**31 else np.int64
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=dtype)
    for row_ids, cnt, idx, a in pieces:
        if not cnt.size:
            continue
        start = np.repeat(indptr[row_ids], cnt)
        offset = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        dest = start + offset
        indices[dest] = idx
        data[dest] = a
    return sp.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(n_rows, n_cols))
