"""Row-wise top-N selection shared by every recommender face of the package."""

from __future__ import annotations

import numpy as np


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
