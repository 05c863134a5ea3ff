"""The kernel step of kernel RFM on the factored kernel: no ``d x d`` matrix is ever formed.

The dense step (:mod:`rfm_recsys.core.kernel_rfm`) builds, from the learned matrix ``M`` and
the co-rating matrix ``B^T B`` (``B`` the 0/1 pattern of who rated what, rescaled to mean
diagonal ``w``), the geometry ``G = M + w B^T B / mean(diag B^T B)`` and over its angles the
radial kernel ``k_jk = n_j n_k f(cos_jk)`` with ``n_j = sqrt(G_jj)``,
``f(c) = exp((c - 1) / h^2)`` (Gaussian) or ``exp(-sqrt(2 - 2 c) / h)`` (Laplace). Here, with
``M = U diag(s) U^T + eps I`` a :class:`~rfm_recsys.core.kernels.FactoredKernel`:

1. Geometry: ``G ~ L L^T`` off the diagonal, ``L`` (``d x q``) the top-``q`` part of
   ``H H^T``, ``H = [U diag(sqrt s), sqrt(c) B^T]`` (``c = w / mean(diag B^T B)``): exact from
   an ``eigh`` of the ``(r + n) x (r + n)`` Gram ``H^T H`` while that is small (``n`` rows),
   else from a seeded randomized range finder (sparse products only either way). The norms
   ``n_j`` are exact (the diagonal of ``M`` plus ``c`` times the column counts of ``B``).
   Without the co-rating term ``L = U diag(sqrt(s))``, no approximation.
2. Kernel: Nystrom on the embeddings ``z_j = L_j / n_j`` with ``f(z_j . z_k)`` (equal to the
   dense kernel wherever ``G_jk = L_j . L_k``), scaled by ``n_j n_k``. Landmarks are drawn
   uniformly (seeded) or chosen by a partial pivoted Cholesky (greedy: the item of largest
   residual diagonal next; the factor it builds is the Nystrom factor of those landmarks).
   The factor ``F`` (``d x m``) gives ``K = U' diag(s') U'^T + diag(e)`` through a thin QR and
   an ``m x m`` ``eigh``; ``e`` is what the factor misses of the dense kernel's diagonal
   ``n_j^2``, item by item (``diag_fix="exact"``: the kernel's diagonal is the dense one's),
   its mean (``"mean"``) or 0 (``"none"``).
3. Rows are refitted with that :class:`~rfm_recsys.core.kernels.FactoredKernel` (Woodbury
   solves on ``diag(lam + e)^-1/2``-scaled systems), and each further update is the top-``r``
   part of its AGOP of the completion ``X = A K`` (:func:`agop_update`), a new ``M``, then
   steps 1-3 again, as in the dense path.

Every kernel built is ``F F^T`` plus a non-negative multiple of ``I``: symmetric PSD by
construction, whatever the radial function does to non-unit vectors. Prediction, fold-in and
save/load are those of the factored kernel, unchanged. What validation chose (landmarks,
choice, diagonal) and the figures are in ``evaluation/kernel_rfm_experiments.md``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blas import blas_threads
from .kernels import FactoredKernel, _orth, _spmm
from .memory import OVERSAMPLE
from .updates import AGOPPower

if TYPE_CHECKING:  # kernel_rfm imports this module: no import cycle at run time
    from .fitting import RatingsFit
    from .kernel_rfm import KernelSettings

LANDMARK_CHOICES = ("greedy", "uniform")
DIAG_FIXES = ("exact", "mean", "none")


def check_factored(settings: KernelSettings) -> None:
    """Clear errors for what the factored kernel step does not do, or bad Nystrom settings."""
    s = settings
    if s.geometry != "cosine":
        raise ValueError(
            f"the factored kernel step works over the cosine geometry, got geometry="
            f"{s.geometry!r}: use geometry='cosine', or the dense kernel (rank=None)"
        )
    if s.feature_update != "completion" or s.count_power != 0:
        raise ValueError(
            "the factored kernel step uses the AGOP of the completion and one ridge: use "
            "feature_update='completion' and count_power=0, or the dense kernel (rank=None)"
        )
    if s.landmarks is not None and (isinstance(s.landmarks, bool) or s.landmarks < 1):
        raise ValueError(f"landmarks must be None or a positive int, got {s.landmarks!r}")
    if s.landmark_choice not in LANDMARK_CHOICES:
        raise ValueError(
            f"landmark_choice must be one of {', '.join(LANDMARK_CHOICES)}, "
            f"got {s.landmark_choice!r}"
        )
    if s.diag_fix not in DIAG_FIXES:
        raise ValueError(f"diag_fix must be one of {', '.join(DIAG_FIXES)}, got {s.diag_fix!r}")


def co_rating_pattern(R: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``B`` (0/1 pattern of ``R``, float64) and its column counts ``diag(B^T B)``."""
    B = sp.csr_matrix((np.ones(R.nnz), R.indices, R.indptr), shape=R.shape)
    counts = np.bincount(R.indices, minlength=R.shape[1]).astype(np.float64)
    return B, counts


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
    products only) where that is the cheaper (:func:`_gram_is_cheaper`), else from a seeded
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
        return U @ (s[:, None] * (U.T @ V)) + c * _spmm(Bt, _spmm(B, V))

    q = min(rank + OVERSAMPLE, d)
    rng = np.random.default_rng(seed)
    Q = _orth(G(rng.standard_normal((d, q))))
    Q = _orth(G(Q))  # one power iteration
    core = Q.T @ G(Q)
    evals, V = scipy.linalg.eigh(0.5 * (core + core.T), check_finite=False)
    top = np.argsort(evals)[::-1][:rank]
    return (Q @ V[:, top]) * np.sqrt(np.clip(evals[top], 0.0, None))


def _radial(cos: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
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
        return _radial(cos, self.kernel, self.h) * self.n[:, None] * self.n[idx][None, :]

    def diag(self) -> np.ndarray:
        cos = np.einsum("ij,ij->i", self.Z, self.Z)
        return _radial(cos, self.kernel, self.h) * self.n**2


def _greedy_factor(cols: _RadialColumns, m: int) -> np.ndarray:
    """Partial pivoted Cholesky: ``K ~ F F^T`` exact on the ``m`` pivot columns (Nystrom)."""
    res = cols.diag()
    d = res.shape[0]
    F = np.zeros((d, m))
    tol = 1e-10 * max(float(res.max(initial=0.0)), 1e-300)
    for i in range(m):
        j = int(np.argmax(res))
        if res[j] <= tol:
            return F[:, :i]
        col = cols(np.array([j]))[:, 0] - F[:, :i] @ F[j, :i]
        F[:, i] = col / np.sqrt(res[j])
        res -= F[:, i] ** 2
        res[j] = 0.0  # exact at the pivot; round-off must not pick it again
        np.clip(res, 0.0, None, out=res)
    return F


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
    settings: KernelSettings,
    landmarks: int,
    rank: int,
    seed,
    dtype,
    random_state: int = 0,
) -> FactoredKernel:
    """The radial kernel of :mod:`rfm_recsys.core.kernel_rfm` (cosine geometry) as a factored one.

    ``kernel="linear"`` is the geometry itself (``L L^T`` plus the diagonal it misses as the
    shift); the radial kernels go through Nystrom with ``landmarks`` columns. ``rank`` is that of
    the kernels its feature updates produce.
    """
    s = settings
    d = L.shape[0]
    if s.kernel == "linear":
        F = L
        target = norms**2
    else:
        cols = _RadialColumns(L, norms, s.kernel, s.bandwidth)
        m = min(landmarks, d)
        if s.landmark_choice == "greedy":
            F = _greedy_factor(cols, m)
        else:
            F = _uniform_factor(cols, m, seed)
        target = norms**2  # the dense kernel's diagonal: f(1) n_j^2
    # F F^T = Q (R R^T) Q^T: orthonormal U and its eigenvalues from a QR and an m x m eigh. (U
    # from an eigh of F^T F, without the QR, is faster but scored 0.003 worse on validation.)
    Q, Rf = scipy.linalg.qr(F, mode="economic", check_finite=False)
    evals, V = scipy.linalg.eigh(Rf @ Rf.T, check_finite=False)
    order = np.argsort(evals)[::-1]
    U = Q @ V[:, order]
    sv = np.clip(evals[order], 0.0, None)
    missing = np.clip(target - np.einsum("ij,ij->i", F, F), 0.0, None)
    if s.diag_fix == "exact":  # the dense kernel's diagonal, one shift per item
        eps = missing
    else:
        eps = float(missing.mean()) if s.diag_fix == "mean" else 0.0
    return FactoredKernel(
        np.ascontiguousarray(U, dtype=dtype), sv.astype(dtype), eps, rank, 0.0, random_state
    )


def agop_update(
    K: FactoredKernel, A: sp.csr_matrix, update: AGOPPower, rank: int, iteration: int
) -> FactoredKernel:
    """The next geometry: the top-``rank`` part of the AGOP ``X^T X / n`` of ``X = A K``.

    Where that is the cheaper (:func:`_gram_is_cheaper`), exact from an ``eigh`` of
    ``X X^T = A K^2 A^T`` (sparse products and ``n x r`` factors only); else
    :meth:`FactoredKernel.next`'s seeded randomized range finder.
    """
    n, d = A.shape
    if not _gram_is_cheaper(n, d, rank):
        return K.next(K.complete(A), update, n, iteration, None, 0.0)
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


def refit_kernel_factored(
    fit: RatingsFit,
    R: sp.csr_matrix,
    settings: KernelSettings,
) -> tuple[RatingsFit, FactoredKernel]:
    """:func:`~rfm_recsys.core.kernel_rfm.refit_kernel` for a fit with a factored kernel.

    Args:
        fit: the fitted lin-RFM; ``fit.kernel`` is a :class:`FactoredKernel` (the geometry
            ``M``, rank ``r``).
        R: the baseline residuals in the fit's orientation (sorted CSR).
        settings: the kernel step's settings (cosine geometry, completion AGOP);
            ``landmarks=None`` is ``LANDMARKS_PER_RANK * r``, ``geometry_rank=None``
            ``GEOMETRY_PER_RANK * r``, ``update_rank=None`` ``r``.

    Returns:
        ``(fit with the factored kernel and the refitted A, final geometry M)``.
    """
    from .engine import RowPlan

    s = settings
    check_factored(s)
    M = fit.kernel
    dtype = M.dtype
    r = M.rank
    landmarks = s.landmarks if s.landmarks is not None else LANDMARKS_PER_RANK * r
    geo_rank = s.geometry_rank if s.geometry_rank is not None else GEOMETRY_PER_RANK * r
    up_rank = s.update_rank if s.update_rank is not None else r
    base_seed = 0 if M.random_state is None else int(M.random_state)
    plan = RowPlan.from_csr(R)
    y = R.data.astype(dtype)
    B, counts = co_rating_pattern(R) if s.implicit_weight else (None, None)
    update = AGOPPower(1.0, normalize="diag")
    for step in range(s.n_updates + 1):
        seed = (base_seed, 7919, step)  # apart from the engine's (seed, iteration)
        if s.kernel == "linear" and not s.implicit_weight:
            Kn = M  # the learned kernel itself, as the dense path: plain lin-RFM exactly
        else:
            with blas_threads(1):  # thin products: see FactoredKernel.next
                L, norms = factored_geometry(M, B, counts, s.implicit_weight, geo_rank, seed)
                Kn = nystrom_kernel(L, norms, s, landmarks, up_rank, seed, dtype, base_seed)
        a = Kn.solve_rows(plan, y, s.lam)
        A = sp.csr_matrix((a, R.indices, R.indptr), shape=R.shape)
        if step == s.n_updates:
            break
        with blas_threads(1):
            M = agop_update(Kn, A, update, up_rank, step)
    return replace(fit, kernel=Kn, A=A, lam=float(s.lam)), M


# Largest Gram whose eigh replaces a randomized range finder (_gram_is_cheaper).
GRAM_MAX = 2048
# Landmarks and rank of the co-rating geometry per rank r of the learned kernel (4 r each: 512 at
# the default rank 128), chosen on validation shares of training folds of ml-100k and
# ml-latest-small: evaluation/kernel_rfm_experiments.md, section 9.
LANDMARKS_PER_RANK = 4
GEOMETRY_PER_RANK = 4
