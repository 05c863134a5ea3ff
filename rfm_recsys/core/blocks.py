"""Row blocks: where the engine's per-row work runs, and the protocol every backend implements.

The engine loop (:mod:`.engine`) never touches ratings itself. It asks a :class:`RowBlocks` for
the row fits with a kernel, their statistics (training residual, validation errors) and their
share of the feature update (``X^T X``, ``Z^T Z`` or ``X^T X P``, summed over all rows); the
blocks keep the coefficients where the rows lie and hand back an opaque handle. Kernels ask the
blocks for the shares they need (``kernel.next(blocks, coefs, ...)``), so one loop serves every
backend: :class:`LocalBlocks` (this process, rows shared among threads) here, and the Dask
backend's blocks of rows on the workers (:mod:`rfm_recsys.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from .completion import gram_of_completion
from .factored_kernel import factor_gram
from .kernel import Completion, Kernel
from .randomized import spmm
from .rank_rule import weighted_row_length
from .solve import RowPlan


class RowBlocks(Protocol):
    """The rows of one engine run (residual targets, validation pairs), wherever they lie.

    ``coefs`` handles come from :meth:`solve` and stay valid until the next one (the loop keeps
    the one of the best iteration as well).
    """

    n_rows: int
    n_cols: int
    nnz: int
    dtype: np.dtype
    #: the rows' length seen from a rating, ``sum c_i^2 / sum c_i`` (the rank rule reads it)
    row_length: float

    def solve(
        self, kernel: Kernel, ridge: float, warm: Any = None, tol: float | None = None
    ) -> Any:
        """Every row's fit ``(K[S,S] + ridge I)^-1 y``; returns a handle to the coefficients.

        ``tol`` (a relative residual) solves by conjugate gradients started from the
        coefficients of the handle ``warm`` (``None``: from zero); ``tol=None`` solves directly.
        """

    def stats(self, coefs: Any, kernel: Kernel) -> dict:
        """``{"sum_a2", "n_a", "sse", "n_valid"}`` summed over the blocks."""

    def gram(self, coefs: Any, kernel: Kernel, reimposed: bool) -> np.ndarray:
        """``X^T X`` of the completion ``X = A K`` (``d x d``), observed entries re-imposed
        if ``reimposed``."""

    def factor_gram(self, coefs: Any, kernel: Kernel) -> np.ndarray:
        """``Z^T Z`` (``r x r``, float64) with ``Z = A U diag(s)``: the exact factored update."""

    def range_gram(self, coefs: Any, kernel: Kernel, P: np.ndarray, c) -> np.ndarray:
        """``X^T X P`` (``d x q``, float64) for ``X = A (U diag(s) U^T + diag(c))``."""

    def coefficients(self, coefs: Any) -> sp.csr_matrix:
        """The whole ``n x d`` coefficient matrix ``A`` (gathered where it lies)."""

    # The co-rating signal of the kernel step: the 0/1 pattern B of who rated what (n x d).

    def column_counts(self) -> np.ndarray:
        """Ratings per feature column (``diag(B^T B)``, float64)."""

    def pattern_gram(self, dtype) -> np.ndarray:
        """``B^T B`` (``d x d``, in ``dtype``), summed over the blocks (the dense kernel step)."""

    def pattern_gram_times(self, P: np.ndarray) -> np.ndarray:
        """``B^T (B P)`` (``d x q``, float64), summed over the blocks."""

    def pattern(self, dtype) -> sp.csr_matrix:
        """The whole pattern ``B`` (``n x d``, in ``dtype``; gathered where it lies): only for
        few rows, where the co-rating factor is exact from ``B B^T``."""


@dataclass
class LocalCoefs:
    """Coefficients of every row in this process, with their completion built once."""

    a: np.ndarray
    A: sp.csr_matrix
    kernel: Kernel
    _completion: Completion | None = field(default=None, repr=False)
    _At: sp.csr_matrix | None = field(default=None, repr=False)

    def completion(self) -> Completion:
        if self._completion is None:
            self._completion = self.kernel.complete(self.A)
        return self._completion

    def transposed(self) -> sp.csr_matrix:
        if self._At is None:
            self._At = self.A.T.tocsr()
        return self._At


class LocalBlocks:
    """All rows in one CSR matrix of this process; the solves share them among threads.

    Args:
        R: ``n x d`` CSR matrix of targets (sorted indices; explicit zeros are observations).
        validation: ``(rows, cols, values)`` held out from ``R``, or ``None``.
        n_threads: threads of the row solves and sparse products.
    """

    def __init__(
        self,
        R: sp.csr_matrix,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        n_threads: int = 1,
    ) -> None:
        self.R = R
        self.n_rows, self.n_cols = R.shape
        self.nnz = R.nnz
        self.dtype = R.dtype
        self.plan = RowPlan.from_csr(R)
        self.row_length = weighted_row_length(R.indptr)
        self.y = R.data
        self.validation = validation
        self.validating = validation is not None
        self.n_threads = n_threads
        self._patterns: dict[np.dtype, sp.csr_matrix] = {}
        self._pattern_t: sp.csr_matrix | None = None

    def solve(
        self, kernel: Kernel, ridge: float, warm: LocalCoefs | None = None, tol: float | None = None
    ) -> LocalCoefs:
        a0 = None if warm is None else warm.a
        a = kernel.solve_rows(self.plan, self.y, ridge, self.n_threads, a0, tol)
        A = sp.csr_matrix((a, self.R.indices, self.R.indptr), shape=self.R.shape)
        return LocalCoefs(a, A, kernel)

    def stats(self, coefs: LocalCoefs, kernel: Kernel) -> dict:
        a64 = coefs.a.astype(np.float64)
        out = {"sum_a2": float(a64 @ a64), "n_a": int(a64.size), "sse": 0.0, "n_valid": 0}
        if self.validation is not None:
            vr, vc, vv = self.validation
            err = coefs.completion().pairs(vr, vc) - vv
            out["sse"], out["n_valid"] = float(err @ err), int(vr.size)
        return out

    def gram(self, coefs: LocalCoefs, kernel: Kernel, reimposed: bool) -> np.ndarray:
        K = None if getattr(kernel, "identity", False) else kernel.dense()
        targets = self.y if reimposed else None
        return gram_of_completion(K, coefs.A, targets, kernel.dtype)

    def factor_gram(self, coefs: LocalCoefs, kernel: Kernel) -> np.ndarray:
        return factor_gram(coefs.completion().Z)

    def range_gram(self, coefs: LocalCoefs, kernel: Kernel, P: np.ndarray, c) -> np.ndarray:
        return kernel.range_gram(coefs.A, coefs.transposed(), P, c, self.n_threads)

    def coefficients(self, coefs: LocalCoefs) -> sp.csr_matrix:
        return coefs.A

    def column_counts(self) -> np.ndarray:
        return np.bincount(self.R.indices, minlength=self.n_cols).astype(np.float64)

    def pattern_gram(self, dtype) -> np.ndarray:
        B = self.pattern(dtype)
        return (B.T @ B).toarray()

    def pattern_gram_times(self, P: np.ndarray) -> np.ndarray:
        if self._pattern_t is None:
            self._pattern_t = self.pattern(np.float64).T.tocsr()
        return spmm(self._pattern_t, spmm(self.pattern(np.float64), P, self.n_threads),
                    self.n_threads)  # fmt: skip

    def pattern(self, dtype) -> sp.csr_matrix:
        dtype = np.dtype(dtype)
        if dtype not in self._patterns:
            R = self.R
            ones = np.ones(R.nnz, dtype=dtype)
            self._patterns[dtype] = sp.csr_matrix((ones, R.indices, R.indptr), shape=R.shape)
        return self._patterns[dtype]
