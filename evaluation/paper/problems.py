"""Noise-free low-rank matrix problems: ``Y = U V^T / sqrt(r)`` observed on a random pattern.

Gaussian ``U`` (n x r) and ``V`` (d x r), so entries have mean square 1; ``m`` entries observed
uniformly at random without replacement, ``m`` a multiple ("ratio") of the degrees of freedom
``r (n + d - r)``. Success means relative error on the missing entries below :data:`SUCCESS_TOL`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: Success: relative error on the missing entries below this.
SUCCESS_TOL = 1e-3


@dataclass
class LowRankProblem:
    """A noise-free rank-``r`` matrix ``Y = U V^T / sqrt(r)`` observed on ``R``'s pattern."""

    n: int
    d: int
    r: int
    seed: int
    U: np.ndarray
    V: np.ndarray
    R: sp.csr_matrix
    ratio: float

    @property
    def m(self) -> int:
        return int(self.R.nnz)

    @property
    def dof(self) -> int:
        return self.r * (self.n + self.d - self.r)

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.U[rows], self.V[cols]) / math.sqrt(self.r)

    def dense(self) -> np.ndarray:
        return self.U @ self.V.T / math.sqrt(self.r)

    def observed_mask(self) -> np.ndarray:
        mask = np.zeros((self.n, self.d), dtype=bool)
        coo = self.R.tocoo()
        mask[coo.row, coo.col] = True
        return mask

    def missing_sample(self, size: int, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``size`` distinct unobserved positions, uniformly at random (for big problems)."""
        rng = np.random.default_rng(seed)
        n_missing = self.n * self.d - self.m
        size = min(size, n_missing)
        obs = np.sort(self._keys())
        if self.n * self.d <= 20_000_000 or size > n_missing // 4:
            # enumerate the missing positions (rejection sampling would crawl near "all of them")
            free = np.ones(self.n * self.d, dtype=bool)
            free[obs] = False
            keys = np.flatnonzero(free)
            keys = keys if size == keys.size else rng.choice(keys, size=size, replace=False)
            return np.divmod(keys, self.d)
        got = np.empty(0, dtype=np.int64)
        while got.size < size:
            cand = rng.integers(0, self.n * self.d, size=2 * (size - got.size) + 16)
            pos = np.searchsorted(obs, cand)
            pos[pos == obs.size] = 0
            cand = cand[obs[pos] != cand]
            got = np.unique(np.concatenate([got, cand]))
        got = rng.permutation(got)[:size]
        return np.divmod(got, self.d)

    def _keys(self) -> np.ndarray:
        coo = self.R.tocoo()
        return coo.row.astype(np.int64) * self.d + coo.col


def make_lowrank(
    n: int, d: int, r: int, seed: int, *, ratio: float | None = None, frac: float | None = None
) -> LowRankProblem:
    """Random rank-``r`` problem with ``ratio * r (n + d - r)`` (or ``frac * n d``) observations."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n, r))
    V = rng.standard_normal((d, r))
    dof = r * (n + d - r)
    if ratio is not None:
        m = int(round(ratio * dof))
    elif frac is not None:
        m = int(round(frac * n * d))
    else:
        raise ValueError("give ratio or frac")
    m = max(1, min(m, n * d))
    idx = rng.choice(n * d, size=m, replace=False)
    rows, cols = np.divmod(idx, d)
    vals = np.einsum("ij,ij->i", U[rows], V[cols]) / math.sqrt(r)
    R = sp.csr_matrix((vals, (rows, cols)), shape=(n, d))
    R.sort_indices()
    return LowRankProblem(n, d, r, seed, U, V, R, m / dof)


def missing_error_dense(X: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> float:
    miss = ~mask
    return float(np.linalg.norm((X - Y)[miss]) / np.linalg.norm(Y[miss]))
