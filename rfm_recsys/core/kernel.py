"""What the engine and the rating models need from a kernel and its completion, whatever its form.

Two forms implement :class:`Kernel`: the dense ``d x d`` array
(:class:`~rfm_recsys.core.dense_kernel.DenseKernel`) and the factored
``U diag(s) U^T + eps I`` (:class:`~rfm_recsys.core.factored_kernel.FactoredKernel`); each fitted
pair ``(kernel, A)`` answers predictions through a :class:`Completion`, so no caller branches on
the form.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .solve import RowPlan


class Completion(Protocol):
    """The completed matrix ``W = A K`` of one fitted pair, queried without forming it."""

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``W[rows, cols]`` (float64)."""

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """``W[idx, :]``, ``len(idx) x d`` (float64)."""

    def column(self, j: int) -> np.ndarray:
        """``W[:, j]``, length ``n`` (float64)."""

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """``W[:, idx]``, ``n x len(idx)`` (float64)."""

    def times(self, X: np.ndarray) -> np.ndarray:
        """``W @ X`` for ``X`` of shape ``d x m`` (float64)."""

    def row_norms(self) -> np.ndarray:
        """``||W_r||`` of every row (float64)."""


class Kernel(Protocol):
    """What the engine and the rating models need from a kernel, whatever its form."""

    d: int
    rank: int | None  # None: dense

    @property
    def dtype(self) -> np.dtype: ...

    def solve_rows(
        self,
        plan: RowPlan,
        y: np.ndarray,
        lam: float,
        n_threads: int | None = None,
        a0: np.ndarray | None = None,
        tol: float | None = None,
    ) -> np.ndarray:
        """All row fits ``(K[S_i,S_i] + lam I)^-1 y_i`` in CSR data order.

        ``tol=None`` solves directly; a tolerance solves by conjugate gradients to that
        relative residual (:mod:`rfm_recsys.core.cg`), started from ``a0`` (CSR data order;
        ``None``: zeros).
        """

    def solve_row(self, cols: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
        """One new row's fit (fold-in), float64."""

    def apply(self, cols: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``K[:, cols] @ a`` (length ``d``, float64): a new row's completion."""

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``K @ v`` (float64; ``v`` may be ``d x m``)."""

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """``K[idx, :]`` (float64)."""

    def diag(self) -> np.ndarray:
        """The diagonal of ``K`` (float64)."""

    def complete(self, A: sp.csr_matrix) -> Completion:
        """The completion of rows fitted with this kernel."""

    def next(self, blocks, coefs, update, iteration: int, lam: float,
             reimposed: bool) -> Kernel:  # fmt: skip
        """The kernel after one feature update, from the shares the row blocks compute
        (:class:`~rfm_recsys.core.blocks.RowBlocks`) for the coefficients ``coefs``."""

    def distance(self, other: Kernel) -> float:
        """``||other - self||_F / ||self||_F``."""

    def dense(self) -> np.ndarray:
        """``K`` as a ``d x d`` array (small problems, tests)."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays that :func:`~rfm_recsys.core.kernel_forms.kernel_from_arrays` turns back into
        this kernel."""


def check_finite(x: np.ndarray, iteration: int) -> None:
    """Refuse a kernel (or spectrum) that overflowed, with the fix."""
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(
            f"the kernel became non-finite at iteration {iteration + 1}: raise the ridge or use "
            f"float64"
        )
