"""The kernel step (kernel RFM on ratings): nonlinear kernels over the geometry lin-RFM learns.

lin-RFM regresses each row on the feature columns ``e_j`` with the linear kernel
``k(e_j, e_k) = M_jk``, ``M`` the learned (AGOP) matrix. Kernel RFM (Radhakrishnan et al.,
Science 2024) keeps the learned geometry but swaps the linear kernel for a radial one. Here the
geometry is that of the unit-normalised feature columns, rescaled by their norms::

    cos_jk = M_jk / (n_j n_k),   n_j = sqrt(M_jj)
    gaussian:  k_jk = n_j n_k exp((cos_jk - 1) / h^2)
    laplace:   k_jk = n_j n_k exp(-sqrt(2 - 2 cos_jk) / h)

Both radial functions are positive definite functions of a Euclidean distance (Schoenberg), and
the rescaling is a product with the rank-one PSD ``n n^T``, so the ``d x d`` kernel matrix is
symmetric PSD whatever ``M`` is. ``"linear"`` returns ``M`` itself.

Before each kernel is built the co-rating matrix ``B^T B`` of the feature side (``B`` the 0/1
pattern of who rated what, rescaled to mean diagonal ``co_rating``) is added to ``M``: with the
kernel over items this is the signal SVD++ adds to SVD, here shaping the kernel the rows are
fitted with. The rows are fitted with the kernel matrix, and the next ``M`` is the AGOP of the
completion ``W = A k``, rescaled to mean diagonal 1, as lin-RFM's update.

:class:`KernelStep` is what the engine loop (:func:`~rfm_recsys.core.engine.run_engine`) runs
after lin-RFM's updates. With a dense learned kernel every matrix here is ``d x d``; with a
factored one (:class:`~rfm_recsys.core.factored_kernel.FactoredKernel`) the same step runs on
low-rank factors and Nystrom features (:mod:`.kernel_step_factored`), with no ``d x d`` matrix.
What validation kept, and the figures, are in ``evaluation/kernel_rfm_experiments.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .blas import blas_threads
from .dense_kernel import DenseKernel
from .factored_kernel import FactoredKernel
from .kernel import Kernel
from .kernel_step_factored import (
    CO_RATING_RANK,
    LANDMARKS,
    CoRatingFactor,
    agop_update,
    nystrom_kernel,
)
from .updates import AGOPPower

KERNELS = ("linear", "laplace", "gaussian")


def kernel_matrix(M: np.ndarray, kernel: str = "linear", bandwidth: float = 1.0) -> np.ndarray:
    """The ``d x d`` kernel matrix ``k(e_j, e_k)`` over the geometry of ``M`` (symmetric PSD).

    Args:
        M: the learned feature matrix (symmetric PSD, mean diagonal 1 as the engine keeps it).
        kernel: ``"linear"`` (returns ``M`` itself), ``"gaussian"`` or ``"laplace"``.
        bandwidth: ``h`` of the radial function.

    Returns:
        The kernel matrix in ``M``'s dtype (computed in it, in place, to bound memory).
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    if kernel == "linear":
        return M
    dtype = M.dtype if M.dtype.kind == "f" else np.dtype(np.float64)
    norms = np.sqrt(np.clip(np.diag(M).astype(np.float64), 0.0, None))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(dtype)
    # d x d temporaries are the memory peak for large d: work in place
    D2 = np.array(M, dtype=dtype)
    D2 *= inv[:, None]
    D2 *= inv[None, :]  # cosines
    D2 *= -2.0
    D2 += 2.0
    np.clip(D2, 0.0, 4.0, out=D2)  # squared distances of the unit columns
    np.fill_diagonal(D2, 0.0)
    if kernel == "gaussian":
        D2 *= D2.dtype.type(-0.5 / bandwidth**2)
    else:
        np.sqrt(D2, out=D2)
        D2 *= D2.dtype.type(-1.0 / bandwidth)
    Kn = np.exp(D2, out=D2)
    n = norms.astype(dtype)
    Kn *= n[:, None]
    Kn *= n[None, :]
    # exact symmetry for Cholesky and eigh downstream
    Kn += Kn.T
    Kn *= 0.5
    return Kn


def co_rating_matrix(C: np.ndarray, weight: float) -> np.ndarray:
    """The co-rating matrix ``C = B^T B`` (``B`` the 0/1 pattern) rescaled in place to mean
    diagonal ``weight``.

    Entry ``(j, k)`` counts the rows that rated both features ``j`` and ``k``: the implicit
    signal of which items a user rated (SVD++'s).
    """
    scale = float(np.mean(np.diag(C)))
    if scale > 0:
        C *= C.dtype.type(weight / scale)
    return C


def normalise(G: np.ndarray) -> np.ndarray:
    """``G`` rescaled in place to mean diagonal 1 (all-zero: the identity)."""
    s = float(np.mean(np.diag(G)))
    if s == 0.0 and not G.any():
        # every fitted row is zero (the residuals after the baseline are all zero, e.g. one
        # rating value throughout): the fit is the baseline whatever the kernel, so keep the
        # neutral geometry, as the AGOP update does, rather than fail
        return np.eye(G.shape[0], dtype=G.dtype)
    if not np.isfinite(s) or s <= 0:
        raise FloatingPointError("the feature matrix collapsed to zero: lower the ridge")
    G /= G.dtype.type(s)
    return G


@dataclass(frozen=True)
class KernelStep:
    """The kernel step's settings, and what the engine loop calls to run it.

    Attributes:
        kernel: ``"linear"``, ``"laplace"`` or ``"gaussian"``.
        bandwidth: ``h`` of the radial kernel (cosines of a mean-diagonal-1 ``M``).
        co_rating: weight of the co-rating matrix added to ``M`` (0: none).
        ridge: ridge of the row fits with the step's kernel.
        n_updates: updates of ``M`` from the step's fits (0 = one fit with lin-RFM's ``M``).
        landmarks: Nystrom landmarks of the factored step (None: ``LANDMARKS``, 512).
        geometry_rank: rank of the co-rating term's factor in the factored step (None:
            ``CO_RATING_RANK``, 512).
        update_rank: rank of each factored update (None: the learned kernel's rank).
    """

    kernel: str = "gaussian"
    bandwidth: float = 1.0
    co_rating: float = 0.0
    ridge: float = 10.0
    n_updates: int = 0
    landmarks: int | None = None
    geometry_rank: int | None = None
    update_rank: int | None = None

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if not (np.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise ValueError(f"bandwidth must be a positive number, got {self.bandwidth!r}")
        if self.landmarks is not None and (isinstance(self.landmarks, bool) or self.landmarks < 1):
            raise ValueError(f"landmarks must be None or a positive int, got {self.landmarks!r}")

    def start(self, blocks, learned: Kernel) -> StepRun:
        """One run of the step on ``blocks``, from lin-RFM's learned kernel: what stays fixed
        through it (the co-rating signal) is computed here, once."""
        if isinstance(learned, FactoredKernel):
            return _FactoredStep(self, blocks, learned)
        return _DenseStep(self, blocks, learned)


class StepRun(Protocol):
    """A kernel step under way (dense or factored)."""

    def build(self, learned: Kernel, t: int) -> Kernel:
        """The kernel the rows are fitted with at the step's iteration ``t``."""

    def next(self, blocks, coefs, kernel: Kernel, t: int) -> Kernel:
        """The next learned matrix: the AGOP of this fit's completion, mean diagonal 1."""


class _DenseStep:
    def __init__(self, step: KernelStep, blocks, learned: Kernel) -> None:
        self.step = step
        self.dtype = learned.dtype
        self.co_rating = None
        if step.co_rating:
            self.co_rating = co_rating_matrix(blocks.pattern_gram(self.dtype), step.co_rating)

    def build(self, learned: Kernel, t: int) -> Kernel:
        M = learned.dense()
        geometry = M if self.co_rating is None else (M + self.co_rating).astype(self.dtype)
        return DenseKernel(kernel_matrix(geometry, self.step.kernel, self.step.bandwidth))

    def next(self, blocks, coefs, kernel: Kernel, t: int) -> Kernel:
        G = blocks.gram(coefs, kernel, False)
        return DenseKernel(normalise(G).astype(self.dtype, copy=False))


class _FactoredStep:
    def __init__(self, step: KernelStep, blocks, learned: FactoredKernel) -> None:
        self.step = step
        self.dtype = learned.dtype
        self.landmarks = step.landmarks if step.landmarks is not None else LANDMARKS
        self.update_rank = step.update_rank if step.update_rank is not None else learned.rank
        self.seed = 0 if learned.random_state is None else int(learned.random_state)
        self.co_rating = None
        if step.co_rating:  # fixed by the training pattern: factored once for the whole step
            rank = step.geometry_rank if step.geometry_rank is not None else CO_RATING_RANK
            with blas_threads(1):  # thin products: see FactoredKernel.next_randomized
                self.co_rating = CoRatingFactor(blocks, step.co_rating, rank, (self.seed, 7919))
        self.update = AGOPPower(1.0, normalize="diag")

    def build(self, learned: Kernel, t: int) -> Kernel:
        step = self.step
        if step.kernel == "linear" and self.co_rating is None:
            return learned  # the learned kernel itself, as the dense form: lin-RFM exactly
        seed = (self.seed, 7919, t)  # apart from the engine's (seed, iteration)
        with blas_threads(1):
            if self.co_rating is None:
                U = learned.U.astype(np.float64)
                L = U * np.sqrt(np.clip(learned.s.astype(np.float64), 0.0, None))
                diag = np.einsum("ij,ij->i", L, L) + learned.eps
                norms = np.sqrt(np.clip(diag, 0.0, None))
            else:
                L, norms = self.co_rating.geometry(learned)
            return nystrom_kernel(
                L, norms, step.kernel, step.bandwidth, self.landmarks, self.update_rank, seed,
                self.dtype, self.seed,
            )  # fmt: skip

    def next(self, blocks, coefs, kernel: Kernel, t: int) -> Kernel:
        with blas_threads(1):
            return agop_update(kernel, blocks, coefs, self.update, self.update_rank, t)
