"""The kernel step of kernel RFM on the factored kernel: no ``d x d`` matrix is ever formed.

The dense step (:mod:`rfm_recsys.core.kernel_step`) builds, from the learned matrix ``M`` and
the co-rating matrix ``B^T B`` (``B`` the 0/1 pattern of who rated what, rescaled to mean
diagonal ``w``), the geometry ``G = M + w B^T B / mean(diag B^T B)`` and over its angles the
radial kernel ``k_jk = n_j n_k f(cos_jk)`` with ``n_j = sqrt(G_jj)``,
``f(c) = exp((c - 1) / h^2)`` (Gaussian) or ``exp(-sqrt(2 - 2 c) / h)`` (Laplace). Here, with
``M = U diag(s) U^T + eps I`` a :class:`~rfm_recsys.core.factored_kernel.FactoredKernel`:

1. Geometry: ``G ~ L L^T`` off the diagonal, ``L`` (``d x q``) the top-``q`` part of
   ``H H^T``, ``H = [U diag(sqrt s), sqrt(c) B^T]`` (``c = w / mean(diag B^T B)``): exact from
   an ``eigh`` of the ``(r + n) x (r + n)`` Gram ``H^T H`` while that is small (``n`` rows),
   else from a seeded randomized range finder (sparse products only either way). The norms
   ``n_j`` are exact (the diagonal of ``M`` plus ``c`` times the column counts of ``B``).
   Without the co-rating term ``L = U diag(sqrt(s))``, no approximation.
2. Kernel: Nystrom on the embeddings ``z_j = L_j / n_j`` with ``f(z_j . z_k)`` (equal to the
   dense kernel wherever ``G_jk = L_j . L_k``), scaled by ``n_j n_k``, with landmarks drawn
   uniformly (seeded). The factor ``F`` (``d x m``) gives ``K = U' diag(s') U'^T + diag(e)``
   through a thin QR and an ``m x m`` ``eigh``; ``e`` is what the factor misses of the dense
   kernel's diagonal ``n_j^2``, item by item, so the kernel's diagonal is the dense one's.
3. Rows are refitted with that :class:`~rfm_recsys.core.factored_kernel.FactoredKernel` (Woodbury
   solves on ``diag(lam + e)^-1/2``-scaled systems), and each further update is the top-``r``
   part of its AGOP of the completion ``X = A K`` (:func:`agop_update`), a new ``M``, then
   steps 1-3 again, as in the dense path.

Every kernel built is ``F F^T`` plus a non-negative multiple of ``I``: symmetric PSD by
construction, whatever the radial function does to non-unit vectors. Prediction, fold-in and
save/load are those of the factored kernel, unchanged. What validation chose (landmarks,
their choice, the diagonal) and the figures are in ``evaluation/kernel_rfm_experiments.md``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .factored_kernel import FactoredKernel
from .memory import OVERSAMPLE
from .randomized import orth, spmm
from .updates import AGOPPower


def _gram_is_cheaper(size: int, d: int, rank: int) -> bool:
    """Whether an ``eigh`` of a ``size x size`` Gram beats a range finder with ``rank`` columns.

    The ``eigh`` costs about ``size^3``, the range finder's QRs and products about
    ``d (rank + OVERSAMPLE)^2`` each; both give the same validation RMSE (section 9 of
    ``evaluation/kernel_rfm_experiments.md``). Never beyond ``GRAM_MAX``.
    """
    q = rank + OVERSAMPLE
    return size <= GRAM_MAX and size**3 <= d * q * q


def factored_geometry(
    M: FactoredKernel,
    B: sp.csr_matrix | None,
    counts: np.ndarray | None,
    weight: float,
    rank: int,
    seed,
) -> tuple[np.ndarray, np.ndarray]:
    """``(L, n)``: ``G ~ L L^T`` off the diagonal (``L`` ``d x q``, float64), exact norms ``n``.

    ``G - eps I = H H^T`` with ``H = [U diag(sqrt s), sqrt(c) B^T]`` (``c = weight /
    mean(counts)``): without the co-rating term ``L = U diag(sqrt s)``; with it, the top-``rank``
    eigenpairs of ``H H^T``, exact from the ``(r + n) x (r + n)`` Gram ``H^T H`` (sparse
    products only) where that is the cheaper (``_gram_is_cheaper``), else from a seeded
    randomized range finder.
    """
    U = M.U.astype(np.float64)
    s = np.clip(M.s.astype(np.float64), 0.0, None)
    Ls = U * np.sqrt(s)
    diag = np.einsum("ij,ij->i", Ls, Ls) + M.eps
    if not weight or B is None or not B.nnz:
        return Ls, np.sqrt(np.clip(diag, 0.0, None))
    c = weight / max(float(counts.mean()), 1e-300)
    norms = np.sqrt(np.clip(diag + c * counts, 0.0, None))
    n_rows, r = B.shape[0], U.shape[1]
    if _gram_is_cheaper(r + n_rows, M.d, rank):
        return _geometry_gram(Ls, B, c, rank), norms
    return _geometry_randomized(U, s, B, c, rank, seed), norms


def _geometry_gram(Ls: np.ndarray, B: sp.csr_matrix, c: float, rank: int) -> np.ndarray:
    """Top-``rank`` part of ``H H^T`` from ``H^T H``, ``H = [Ls, sqrt(c) B^T]``: exact."""
    BL = np.asarray(B @ Ls) * np.sqrt(c)  # n x r
    BB = (B @ B.T).toarray() * c  # n x n
    gram = np.block([[Ls.T @ Ls, BL.T], [BL, BB]])
    size = gram.shape[0]
    k = min(rank, size)
    # only the top k eigenpairs (LAPACK's evr)
    evals, V = scipy.linalg.eigh(
        0.5 * (gram + gram.T), subset_by_index=[size - k, size - 1], check_finite=False
    )
    top = np.argsort(evals)[::-1]
    top = top[evals[top] > 1e-12 * max(float(evals.max(initial=0.0)), 1e-300)]
    Vt = V[:, top]  # H V is the top part: (H V)(H V)^T = H P H^T with P the projector
    r = Ls.shape[1]
    return Ls @ Vt[:r] + np.sqrt(c) * np.asarray(B.T @ Vt[r:])


def _geometry_randomized(U, s, B, c: float, rank: int, seed) -> np.ndarray:
    """Top-``rank`` part of ``U diag(s) U^T + c B^T B`` by a randomized range finder."""
    d = U.shape[0]
    Bt = B.T.tocsr()

    def G(V):  # (U diag(s) U^T + c B^T B) V, sparse products only
        return U @ (s[:, None] * (U.T @ V)) + c * spmm(Bt, spmm(B, V))

    q = min(rank + OVERSAMPLE, d)
    rng = np.random.default_rng(seed)
    Q = orth(G(rng.standard_normal((d, q))))
    Q = orth(G(Q))  # one power iteration
    core = Q.T @ G(Q)
    evals, V = scipy.linalg.eigh(0.5 * (core + core.T), check_finite=False)
    top = np.argsort(evals)[::-1][:rank]
    return (Q @ V[:, top]) * np.sqrt(np.clip(evals[top], 0.0, None))


def radial(cos: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    """``f(cos)``: the Gaussian ``exp((cos - 1) / h^2)`` or the Laplace
    ``exp(-sqrt(2 - 2 cos) / h)`` of the cosines (a new array)."""
    if kernel == "gaussian":
        return np.exp((cos - 1.0) / bandwidth**2)
    return np.exp(-np.sqrt(np.clip(2.0 - 2.0 * cos, 0.0, None)) / bandwidth)


class _RadialColumns:
    """Columns ``K[:, idx] = n n_idx^T o f(Z Z_idx^T)`` of the radial kernel, on demand."""

    def __init__(self, L: np.ndarray, norms: np.ndarray, kernel: str, bandwidth: float) -> None:
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        self.Z = L * inv[:, None]
        self.n, self.kernel, self.h = norms, kernel, bandwidth

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        cos = self.Z @ self.Z[idx].T
        return radial(cos, self.kernel, self.h) * self.n[:, None] * self.n[idx][None, :]


def _uniform_factor(cols: _RadialColumns, m: int, seed) -> np.ndarray:
    """Nystrom with ``m`` landmarks drawn uniformly (seeded) among the nonzero items."""
    live = np.flatnonzero(cols.n > 0)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(live, min(m, live.size), replace=False))
    C = cols(idx)
    W = C[idx]
    evals, V = scipy.linalg.eigh(0.5 * (W + W.T), check_finite=False)
    keep = evals > 1e-10 * max(float(evals.max(initial=0.0)), 1e-300)
    return C @ (V[:, keep] / np.sqrt(evals[keep]))


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
    """The radial kernel of :mod:`rfm_recsys.core.kernel_step` as a factored one.

    ``kernel="linear"`` is the geometry itself (``L L^T`` plus the diagonal it misses as the
    shift); the radial kernels go through Nystrom with ``landmarks`` uniform landmarks. ``rank``
    is that of the kernels its feature updates produce.
    """
    d = L.shape[0]
    if kernel == "linear":
        F = L
    else:
        F = _uniform_factor(_RadialColumns(L, norms, kernel, bandwidth), min(landmarks, d), seed)
    # F F^T = Q (R R^T) Q^T: orthonormal U and its eigenvalues from a QR and an m x m eigh. (U
    # from an eigh of F^T F, without the QR, is faster but scored 0.003 worse on validation.)
    Q, Rf = scipy.linalg.qr(F, mode="economic", check_finite=False)
    evals, V = scipy.linalg.eigh(Rf @ Rf.T, check_finite=False)
    order = np.argsort(evals)[::-1]
    U = Q @ V[:, order]
    sv = np.clip(evals[order], 0.0, None)
    # the dense kernel's diagonal f(1) n_j^2, item by item: what the factor misses is the shift
    eps = np.clip(norms**2 - np.einsum("ij,ij->i", F, F), 0.0, None)
    return FactoredKernel(
        np.ascontiguousarray(U, dtype=dtype), sv.astype(dtype), eps, rank, 0.0, random_state
    )


def agop_update(
    K: FactoredKernel, blocks, coefs, update: AGOPPower, rank: int, iteration: int
) -> FactoredKernel:
    """The next geometry: the top-``rank`` part of the AGOP ``X^T X / n`` of ``X = A K``.

    Where that is the cheaper (``_gram_is_cheaper``), exact from an ``eigh`` of
    ``X X^T = A K^2 A^T`` (sparse products and ``n x r`` factors only); else
    :meth:`FactoredKernel.next <rfm_recsys.core.factored_kernel.FactoredKernel.next>`'s seeded
    randomized range finder on the blocks' shares.
    """
    n, d = blocks.n_rows, blocks.n_cols
    if not _gram_is_cheaper(n, d, rank):
        return K.next(blocks, coefs, update, iteration, 0.0, False)
    A = blocks.coefficients(coefs)
    U = K.U.astype(np.float64)
    s = K.s.astype(np.float64)
    e = np.broadcast_to(np.asarray(K.eps, dtype=np.float64), (d,))
    A64 = sp.csr_matrix(A, dtype=np.float64)
    P = np.asarray(A64 @ U)  # A U
    Q = np.asarray(A64 @ (e[:, None] * U))  # A diag(e) U
    Ae2 = A64.multiply(e[None, :] ** 2).tocsr()
    PS = P * s
    # A K^2 A^T with K = U diag(s) U^T + diag(e)
    XXt = PS @ PS.T + PS @ Q.T + Q @ PS.T + (Ae2 @ A64.T).toarray()
    k = min(rank, n, d)
    evals, V = scipy.linalg.eigh(
        0.5 * (XXt + XXt.T), subset_by_index=[n - k, n - 1], check_finite=False
    )
    order = np.argsort(evals)[::-1]
    order = order[evals[order] > 1e-12 * max(float(evals.max(initial=0.0)), 1e-300)]
    evals, V = evals[order], V[:, order]
    # right singular vectors of X: X^T V diag(evals)^-1/2 = K A^T V diag(evals)^-1/2
    Vd = K.matvec(np.asarray(A64.T @ V)) / np.sqrt(evals)
    spec = update.spectrum(evals, n, iteration, d)
    return FactoredKernel(
        np.ascontiguousarray(Vd, dtype=K.dtype),
        spec.astype(K.dtype),
        0.0,
        rank,
        0.0,
        K.random_state,
    )


# Largest Gram whose eigh replaces a randomized range finder (_gram_is_cheaper).
GRAM_MAX = 2048
# Landmarks and rank of the co-rating geometry per rank r of the learned kernel (4 r each: 512 at
# the default rank 128), chosen on validation shares of training folds of ml-100k and
# ml-latest-small: evaluation/kernel_rfm_experiments.md, section 9.
LANDMARKS_PER_RANK = 4
GEOMETRY_PER_RANK = 4
