"""Row-wise top-N selection and candidate filtering shared by every recommender of the package."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_n(
    scores: np.ndarray, N: int, id_dtype=np.int64, score_dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top ``N`` of ``scores`` (``-inf`` marks non-candidates).

    ``argpartition`` then a sort of the ``N`` survivors only: ``O(m + N log N)`` per row.

    Returns:
        ``(positions, scores)``, both ``rows x N``, best first; ties keep the lower position
        first; missing places (fewer than ``N`` candidates) are position -1, score -inf.
    """
    scores = np.atleast_2d(scores)
    b, m = scores.shape
    ids = np.full((b, N), -1, dtype=id_dtype)
    out = np.full((b, N), -np.inf, dtype=score_dtype)
    k = min(N, m)
    if k == 0 or b == 0:
        return ids, out
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (b, m))
    ps = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -ps), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_s = np.take_along_axis(ps, order, axis=1)
    valid = top_s > -np.inf
    ids[:, :k] = np.where(valid, top, -1)
    out[:, :k] = np.where(valid, top_s, -np.inf)
    return ids, out


class Candidates:
    """The items (or users) that may be ranked: all, all but ``blocked``, or only ``subset``.

    Positions in a score block are codes; :meth:`apply` masks or selects the candidate columns
    of a block and :meth:`to_codes` maps top-N positions back to codes (-1 stays -1).
    """

    def __init__(self, subset: np.ndarray | None = None, blocked: np.ndarray | None = None):
        self.subset = subset
        self.blocked = blocked

    def apply(self, S: np.ndarray) -> np.ndarray:
        if self.blocked is not None and self.blocked.size:
            S[:, self.blocked] = -np.inf
        if self.subset is not None:
            return S[:, self.subset]
        return S

    def to_codes(self, pos: np.ndarray) -> np.ndarray:
        if self.subset is None:
            return pos
        return np.where(pos >= 0, self.subset[np.maximum(pos, 0)], -1)


def block_seen(S: np.ndarray, seen) -> np.ndarray:
    """Set ``S[r, c] = -inf`` for every stored entry ``(r, c)`` of the sparse matrix ``seen``.

    ``seen`` has one row per row of ``S`` (any stored value counts, zeros included).
    """
    seen = sp.csr_matrix(seen)
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    S[rows, seen.indices] = -np.inf
    return S


def score_chunk_rows(n_cols: int, chunk_bytes: int = 32 * 2**20) -> int:
    """Rows per dense float64 score block of ``n_cols`` columns so a block stays near the bound."""
    return max(1, chunk_bytes // (8 * max(1, n_cols)))
