"""The kernel step of kernel RFM on the factored kernel: no ``d x d`` matrix is ever formed.

The dense step (:mod:`rfm_recsys.core.kernel_step`) builds, from the learned matrix ``M`` and
the co-rating matrix ``B^T B`` (``B`` the 0/1 pattern of who rated what, rescaled to mean
diagonal ``w``), the geometry ``G = M + w B^T B / mean(diag B^T B)`` and over its angles the
radial kernel ``k_jk = n_j n_k f(cos_jk)`` with ``n_j = sqrt(G_jj)``,
``f(c) = exp((c - 1) / h^2)`` (Gaussian) or ``exp(-sqrt(2 - 2 c) / h)`` (Laplace). Here, with
``M = U diag(s) U^T + eps I`` a :class:`~rfm_recsys.core.factored_kernel.FactoredKernel`:

1. Geometry: ``G ~ L L^T`` off the diagonal with ``L = [U diag(sqrt s), C]``, ``C`` the
   top-``q`` factor of the co-rating term (:class:`CoRatingFactor`). The training pattern fixes
   ``B^T B``, so ``C`` is computed once per fit (exact from ``B B^T`` while the rows are few,
   else by a seeded randomized range finder; sparse products only); only ``M`` moves between
   updates. The norms ``n_j`` are exact (the diagonal of ``M`` plus the co-rating weight times
   the column counts of ``B``). Without the co-rating term ``L = U diag(sqrt(s))``, no
   approximation.
2. Kernel: Nystrom on the embeddings ``z_j = L_j / n_j`` with ``f(z_j . z_k)`` (equal to the
   dense kernel wherever ``G_jk = L_j . L_k``), scaled by ``n_j n_k``, with landmarks drawn
   uniformly (seeded). The factor ``F`` (``d x m``) is used as it is, ``K = F F^T + diag(e)``
   (a :class:`~rfm_recsys.core.factored_kernel.FactoredKernel` with ``orthonormal=False``): the
   conjugate-gradient row fits need no orthonormal basis, so the QR and ``m x m`` ``eigh`` that
   would make one are skipped. ``e`` is what the factor misses of the dense kernel's diagonal
   ``n_j^2``, item by item, so the kernel's diagonal is the dense one's.
3. Rows are refitted with that kernel, and each further update is the top-``r`` part of its
   AGOP of the completion ``X = A K`` (:func:`agop_update`), a new ``M``, then steps 1-3 again,
   as in the dense path.

Every kernel built is ``F F^T`` plus a non-negative diagonal: symmetric PSD by construction,
whatever the radial function does to non-unit vectors. Prediction, fold-in and save/load are
those of the factored kernel. What validation chose (landmarks, their choice, the diagonal) and
the figures are in ``evaluation/kernel_rfm_experiments.md``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .factored_kernel import FactoredKernel
from .memory import OVERSAMPLE
from .randomized import orth
from .updates import AGOPPower

# Largest Gram whose eigh replaces a randomized range finder (_gram_is_cheaper).
GRAM_MAX = 2048
# Landmarks of the Nystrom kernel and rank of the co-rating factor, chosen on validation shares
# of training folds of ml-100k and ml-latest-small (evaluation/kernel_rfm_experiments.md,
# section 9; 512 each at the rank 128 of that study): 512 landmarks stayed on the
# time-accuracy front, 256 lost 0.005-0.007; more gained up to 0.002 on ml-100k and less on
# ml-latest-small for their time.
LANDMARKS = 512
CO_RATING_RANK = 512
# Extra columns and power passes of the co-rating factor's range finder.
_CO_OVERSAMPLE = 32


def _gram_is_cheaper(size: int, d: int, rank: int) -> bool:
    """Whether an ``eigh`` of a ``size x size`` Gram beats a range finder with ``rank`` columns.

    The ``eigh`` costs about ``size^3``, the range finder's QRs and products about
    ``d (rank + OVERSAMPLE)^2`` each; both give the same validation RMSE (section 9 of
    ``evaluation/kernel_rfm_experiments.md``). Never beyond ``GRAM_MAX``.
    """
    q = rank + OVERSAMPLE
    return size <= GRAM_MAX and size**3 <= d * q * q


class CoRatingFactor:
    """``c B^T B ~ C C^T`` (``C`` ``d x q``): the co-rating term of the step's geometry, once.

    ``B`` is the 0/1 pattern of who rated what (``n x d``) of the row blocks, and
    ``c = weight / mean(counts)`` (``counts`` the column counts, the diagonal of ``B^T B``).
    The top-``rank`` eigenpairs are exact from ``B B^T`` (``n x n``) while that is the cheaper
    (``_gram_is_cheaper``), else from a seeded randomized range finder with one power pass
    on the blocks' summed ``B^T B P`` (sparse products where the rows lie).
    """

    def __init__(self, blocks, weight: float, rank: int, seed) -> None:
        n, d = blocks.n_rows, blocks.n_cols
        self.counts = blocks.column_counts()
        self.c = weight / max(float(self.counts.mean()), 1e-300) if weight else 0.0
        k = min(rank, n, d)
        if not self.c or k == 0:
            self.factor = np.zeros((d, 0))
            return
        if _gram_is_cheaper(n, d, rank):  # few rows: gather the pattern, exact from B B^T
            B = blocks.pattern(np.float64)
            evals, V = scipy.linalg.eigh(
                (B @ B.T).toarray(), subset_by_index=[n - k, n - 1], check_finite=False
            )
            keep = evals > 1e-12 * max(float(evals.max(initial=0.0)), 1e-300)
            evals, V = evals[keep], V[:, keep]
            W = np.asarray(B.T @ V) / np.sqrt(evals)  # right singular vectors of B
        else:  # B^T B P summed where the rows lie
            gram = blocks.pattern_gram_times
            q = min(k + _CO_OVERSAMPLE, d)
            P = orth(gram(np.random.default_rng(seed).standard_normal((d, q))))
            P = orth(gram(P))  # one power pass
            core = P.T @ gram(P)
            evals, Wc = scipy.linalg.eigh(0.5 * (core + core.T), check_finite=False)
            order = np.argsort(evals)[::-1][:k]
            evals, W = np.clip(evals[order], 0.0, None), P @ Wc[:, order]
        self.factor = W * np.sqrt(self.c * evals)

    def geometry(self, M: FactoredKernel) -> tuple[np.ndarray, np.ndarray]:
        """``(L, norms)`` of ``M + c B^T B``: ``L L^T`` its low-rank part (float64), ``norms``
        exact."""
        U = M.U.astype(np.float64)
        Ls = U * np.sqrt(np.clip(M.s.astype(np.float64), 0.0, None))
        eps = np.broadcast_to(np.asarray(M.eps, dtype=np.float64), (M.d,))
        diag = np.einsum("ij,ij->i", Ls, Ls) + eps + self.c * self.counts
        return np.hstack([Ls, self.factor]), np.sqrt(np.clip(diag, 0.0, None))


def radial(cos: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    """``f(cos)``: the Gaussian ``exp((cos - 1) / h^2)`` or the Laplace
    ``exp(-sqrt(2 - 2 cos) / h)`` of the cosines (in place, returned)."""
    if kernel == "gaussian":
        cos -= cos.dtype.type(1.0)
        cos *= cos.dtype.type(1.0 / bandwidth**2)
        return np.exp(cos, out=cos)
    np.clip(2.0 - 2.0 * cos, 0.0, None, out=cos)
    np.sqrt(cos, out=cos)
    cos *= cos.dtype.type(-1.0 / bandwidth)
    return np.exp(cos, out=cos)


def nystrom_kernel(
    L: np.ndarray,
    norms: np.ndarray,
    kernel: str,
    bandwidth: float,
    landmarks: int,
    rank: int,
    seed,
    dtype,
    random_state: int = 0,
) -> FactoredKernel:
    """The radial kernel of :mod:`rfm_recsys.core.kernel_step` as ``F F^T + diag(e)``.

    ``kernel="linear"`` is the geometry itself (``F = L``); the radial kernels go through
    Nystrom with ``landmarks`` landmarks drawn uniformly (seeded) among the nonzero items:
    ``F = K[:, idx] W^-1/2`` over the kept eigenpairs of the landmarks' block ``W``, the
    ``d x m`` products in ``dtype``. ``rank`` is that of the kernels its feature updates
    produce.
    """
    dtype = np.dtype(dtype)
    d = L.shape[0]
    if kernel == "linear":
        F = np.asarray(L, dtype=dtype)
    else:
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        Z = np.asarray(L * inv[:, None], dtype=dtype)  # unit embeddings
        live = np.flatnonzero(norms > 0)
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(live, min(landmarks, d, live.size), replace=False))
        C = radial(Z @ Z[idx].T, kernel, bandwidth)  # d x m
        C *= norms.astype(dtype)[:, None]
        C *= norms[idx].astype(dtype)[None, :]
        W = C[idx].astype(np.float64)
        evals, V = scipy.linalg.eigh(0.5 * (W + W.T), check_finite=False)
        keep = evals > 1e-10 * max(float(evals.max(initial=0.0)), 1e-300)
        F = C @ (V[:, keep] / np.sqrt(evals[keep])).astype(dtype)
    # the dense kernel's diagonal f(1) n_j^2, item by item: what the factor misses is the shift
    e = np.clip(norms**2 - np.einsum("ij,ij->i", F, F, dtype=np.float64), 0.0, None)
    ones = np.ones(F.shape[1], dtype=dtype)
    return FactoredKernel(
        np.ascontiguousarray(F), ones, e, rank, 0.0, random_state, orthonormal=False
    )


def agop_update(
    K: FactoredKernel, blocks, coefs, update: AGOPPower, rank: int, iteration: int
) -> FactoredKernel:
    """The next geometry: the top-``rank`` part of the AGOP ``X^T X / n`` of ``X = A K``.

    Where that is the cheaper (``_gram_is_cheaper``), exact from an ``eigh`` of
    ``X X^T = A K^2 A^T`` (sparse products and ``n x r`` factors only; ``K``'s factor need not
    be orthonormal); else
    :meth:`FactoredKernel.next <rfm_recsys.core.factored_kernel.FactoredKernel.next>`'s seeded
    randomized range finder on the blocks' shares.
    """
    n, d = blocks.n_rows, blocks.n_cols
    if not _gram_is_cheaper(n, d, rank):
        return K.next(blocks, coefs, update, iteration, 0.0, False)
    A = blocks.coefficients(coefs)
    # the d-sized products in the kernel's dtype (float32: half the time, the same validation
    # RMSE), the n x n matrix and its eigh in float64
    U = K.U
    s = K.s.astype(np.float64)
    e = np.broadcast_to(np.asarray(K.eps, dtype=np.float64), (d,))
    Af = sp.csr_matrix(A, dtype=U.dtype)
    A64 = sp.csr_matrix(A, dtype=np.float64)
    PS = np.asarray(Af @ U).astype(np.float64) * s  # A U diag(s)
    Q = np.asarray(Af @ (e[:, None].astype(U.dtype) * U)).astype(np.float64)  # A diag(e) U
    Ae2 = A64.multiply(e[None, :] ** 2).tocsr()
    G = PS if K.orthonormal else PS @ (U.T @ U).astype(np.float64)
    # A K^2 A^T with K = U diag(s) U^T + diag(e)
    XXt = G @ PS.T + PS @ Q.T + Q @ PS.T + (Ae2 @ A64.T).toarray()
    k = min(rank, n, d)
    evals, V = scipy.linalg.eigh(
        0.5 * (XXt + XXt.T), subset_by_index=[n - k, n - 1], check_finite=False
    )
    order = np.argsort(evals)[::-1]
    order = order[evals[order] > 1e-12 * max(float(evals.max(initial=0.0)), 1e-300)]
    evals, V = evals[order], V[:, order]
    # right singular vectors of X: X^T V diag(evals)^-1/2 = K A^T V diag(evals)^-1/2
    AtV = np.asarray(Af.T @ V.astype(U.dtype))
    KAtV = U @ (K.s[:, None] * (U.T @ AtV)) + e[:, None].astype(U.dtype) * AtV
    Vd = KAtV.astype(np.float64) / np.sqrt(evals)
    spec = update.spectrum(evals, n, iteration, d)
    return FactoredKernel(
        np.ascontiguousarray(Vd, dtype=K.dtype),
        spec.astype(K.dtype),
        0.0,
        rank,
        0.0,
        K.random_state,
    )
