"""A rank for the factored kernel that follows the data: the shrinkage rule.

lin-RFM's first kernel is the AGOP of the first iterate ``A0 = Y / (1 + lam)`` (``K = I``), and
without a shift every later kernel lives in its top-``r`` subspace, so that subspace decides
what the factored form can fit. A direction ``k`` of the kernel (eigenvalue share
``p_k = sigma_k^2 / ||A0||_F^2`` of the first iterate's energy) enters a row fit with ``c``
observations through ``K[S,S] + lam I``, where it has eigenvalue about ``lambda_k c / d`` with
``lambda_k = d p_k`` (mean diagonal 1). The ridge keeps the share

    f_k = x_k / (x_k + lam),    x_k = p_k c_w,

of it, ``c_w = sum_i c_i^2 / sum_i c_i`` being the row length that a rating sees (the
rating-weighted mean: RMSE weighs rows by their ratings). Directions with ``f_k`` below a few
percent hardly change any prediction. The rule keeps ``#{k : f_k >= tau}`` directions, rounded
up to a power of two (the ranks measured), at least ``r_min``:

    r = max(r_min, 2^ceil(log2 #{k : p_k >= tau lam / ((1 - tau) c_w)}))

It grows with the data the way the needed rank did on learning curves of ml-latest-small and
ml-100k (``python -m evaluation.choose_rank``), and it is bounded: at most
``(1 - tau) c_w / (tau lam)`` shares can exceed the threshold, since they sum to 1.

:meth:`RankRule.choose` computes it inside a fit from the Ritz values of the range finder that
the factored kernel runs anyway at its first update, doubling the block while every computed
direction passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Share of a direction a typical row fit must keep for the direction to count.
SHRINKAGE_TAU = 0.05
#: Smallest rank the rule returns.
RANK_MIN = 64


def weighted_row_length(indptr: np.ndarray) -> float:
    """``c_w = sum c_i^2 / sum c_i``: the mean row length seen from a rating."""
    c = np.diff(indptr).astype(np.float64)
    total = c.sum()
    return float((c * c).sum() / total) if total else 0.0


def shrinkage_threshold(c_w: float, lam: float, tau: float = SHRINKAGE_TAU) -> float:
    """The energy share ``p`` above which a direction keeps at least ``tau`` in a row fit."""
    return tau * lam / ((1.0 - tau) * max(c_w, 1e-300))


def rank_from_spectrum(
    evals: np.ndarray,
    total_energy: float,
    c_w: float,
    lam: float,
    tau: float = SHRINKAGE_TAU,
    r_min: int = RANK_MIN,
) -> tuple[int, int]:
    """``(rank, count)``: the rule's rank from eigenvalues of ``A0^T A0`` and its trace.

    ``count`` is the number of directions at or above the threshold among ``evals``.
    """
    p = np.asarray(evals, dtype=np.float64) / max(float(total_energy), 1e-300)
    count = int(np.count_nonzero(p >= shrinkage_threshold(c_w, lam, tau)))
    rank = max(int(r_min), 1 << max(0, math.ceil(math.log2(max(count, 1)))))
    return rank, count


@dataclass(frozen=True)
class RankRule:
    """The shrinkage rule, as the factored kernel applies it at its first update.

    Attributes:
        tau: share of a direction a typical row fit must keep for it to count.
        r_min: smallest rank.
        r_start: first block of the range finder; doubled while every computed direction
            passes the threshold.
        r_max: largest rank (a memory and time bound; the fit's memory estimate uses it).
        passes, oversample: of the range finder (the first subspace decides what every later
            update can fit: two passes with 32 extra columns matched the exact top subspace on
            validation, one pass lost up to 0.004 RMSE at rank 128).
    """

    tau: float = SHRINKAGE_TAU
    r_min: int = RANK_MIN
    r_start: int = 128
    r_max: int = 1024
    passes: int = 2
    oversample: int = 32

    def choose(
        self, subspace: Callable[[int], tuple[np.ndarray, np.ndarray]], d: int, total_energy: float,
        c_w: float, lam: float,
    ) -> tuple[int, np.ndarray, np.ndarray]:  # fmt: skip
        """``(rank, V, evals)``: the rule's rank and the top eigenpairs of ``X^T X`` at it.

        ``subspace(r)`` gives the top-``r`` eigenpairs (``V``, descending ``evals``) of the
        first iterate's ``X^T X``, ``total_energy`` its trace, ``c_w`` the rows' weighted
        length (:func:`weighted_row_length`) and ``lam`` the ridge of the row fits.
        """
        r = min(self.r_start, d, self.r_max)
        while True:
            V, evals = subspace(r)
            rank, count = rank_from_spectrum(evals, total_energy, c_w, lam, self.tau, self.r_min)
            if count < r or r >= min(self.r_max, d):
                break
            r = min(2 * r, self.r_max, d)
        rank = min(rank, V.shape[1])
        return rank, V[:, :rank], evals[:rank]
