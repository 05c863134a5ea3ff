"""The dense kernel: ``K`` as a ``d x d`` array, and the completion ``W = A K`` it gives.

The feature update accumulates ``X^T X`` of the completion over dense row chunks (cost
``n d^2``), and memory grows with ``d^2``: the form of choice for small feature sides, and the
only one IRLS-p's update can use.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .completion import predict_pairs
from .kernel import check_finite
from .memory import CHUNK_BYTES
from .solve import solve_rows, spd_solve


class DenseKernel:
    """``K`` as a ``d x d`` array; ``identity=True`` marks the unfitted ``K = I``."""

    rank = None

    def __init__(self, K: np.ndarray, identity: bool = False) -> None:
        self.K = K
        self.d = K.shape[0]
        self.identity = identity

    @classmethod
    def eye(cls, d: int, dtype) -> DenseKernel:
        return cls(np.eye(d, dtype=dtype), identity=True)

    @property
    def dtype(self) -> np.dtype:
        return self.K.dtype

    def solve_rows(self, plan, y, lam, n_threads=None, a0=None, tol=None) -> np.ndarray:
        if self.identity:  # every system is (1 + lam) I
            return y / y.dtype.type(1.0 + lam)
        if tol is None:
            return solve_rows(self.K, plan, y, lam, n_threads)
        from .cg import CG_MAX_STEPS, cg_solve_dense  # numba: imported when first needed

        a, _ = cg_solve_dense(
            self.K, plan.indptr, plan.indices, y, lam, a0, tol, CG_MAX_STEPS, n_threads=n_threads
        )
        return a

    def solve_row(self, cols, y, lam) -> np.ndarray:
        Ks = self.K[np.ix_(cols, cols)].astype(np.float64)
        Ks.flat[:: cols.size + 1] += lam
        return spd_solve(Ks, np.asarray(y, dtype=np.float64))

    def apply(self, cols, a) -> np.ndarray:
        return self.K[:, cols].astype(np.float64) @ np.asarray(a, dtype=np.float64)

    def matvec(self, v) -> np.ndarray:
        return self.K.astype(np.float64) @ np.asarray(v, dtype=np.float64)

    def rows(self, idx) -> np.ndarray:
        return self.K[idx].astype(np.float64)

    def diag(self) -> np.ndarray:
        return np.diag(self.K).astype(np.float64)

    def complete(self, A) -> DenseCompletion:
        return DenseCompletion(self.K, A)

    def next(self, blocks, coefs, update, iteration: int, lam: float, reimposed: bool):
        """The kernel after ``update`` of ``X^T X`` (the blocks' summed ``gram``)."""
        xtx = blocks.gram(coefs, self, reimposed)
        K_new = update(xtx, blocks.n_rows, iteration)
        check_finite(K_new, iteration)
        return DenseKernel(K_new.astype(self.K.dtype, copy=False))

    def distance(self, other) -> float:
        diff = np.linalg.norm(other.dense() - self.K)
        return float(diff / max(np.linalg.norm(self.K), 1e-300))

    def dense(self) -> np.ndarray:
        return self.K

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"K": self.K}  # the key files written before the factored form use


class DenseCompletion:
    """``W = A K`` queried without forming it (rows and columns on demand)."""

    def __init__(self, K: np.ndarray, A: sp.csr_matrix) -> None:
        self.K, self.A = K, A

    def pairs(self, rows, cols) -> np.ndarray:
        return predict_pairs(self.K, self.A, rows, cols)

    def rows(self, idx) -> np.ndarray:
        return np.asarray(self.A[idx] @ self.K, dtype=np.float64)

    def column(self, j) -> np.ndarray:
        return np.asarray(self.A @ self.K[:, j], dtype=np.float64)

    def columns(self, idx) -> np.ndarray:
        return np.asarray(self.A @ self.K[:, idx], dtype=np.float64)

    def times(self, X) -> np.ndarray:
        return np.asarray(self.A @ (self.K.astype(np.float64) @ X), dtype=np.float64)

    def row_norms(self) -> np.ndarray:
        n, d = self.A.shape
        out = np.empty(n, dtype=np.float64)
        per = max(1, CHUNK_BYTES // (8 * max(1, d)))
        for start in range(0, n, per):
            X = np.asarray(self.A[start : start + per] @ self.K, dtype=np.float64)
            out[start : start + per] = np.sqrt(np.einsum("ij,ij->i", X, X))
        return out
