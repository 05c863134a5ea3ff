"""Eigenpairs of an item Gram matrix and lin-RFM's kernel updates as functions of its spectrum.

With a fully observed users x items matrix ``X`` (an unobserved pair is a 0), every row shares
one kernel ridge solve, ``W = X K (K + lam I)^-1``, and the AGOP ``W^T W / n`` is
``f(K) G f(K)`` with ``G = X^T X / n`` and ``f(K) = K (K + lam I)^-1``. Starting from ``K = I``,
every kernel is therefore a function of ``G`` with ``G``'s eigenvectors ``U``: the whole
recursion is an elementwise map on the eigenvalues ``s`` of ``G``,

    k <- (s * (k / (k + lam))^2)^power,  rescaled so that sum(k) / d = 1 (mean diagonal 1),

and the fitted rows are ``W = X U diag(k / (k + lam)) U^T``. The eigenvectors come from one
dense symmetric eigendecomposition of the smaller of the two Gram matrices (``X X^T`` when
there are fewer users than items), or, for large catalogues, the top ``rank`` eigenpairs from a
seeded randomized subspace iteration that touches ``X`` only through sparse products.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

__all__ = ["exact_eigenpairs", "gram_eigenpairs", "kernel_spectrum", "randomized_eigenpairs"]

# Eigenvalues below this share of the largest are numerically zero: dropping them changes no
# score (their shrinkage factor k / (k + lam) is zero to working precision).
_RELATIVE_FLOOR = 1e-6


def kernel_spectrum(
    s: np.ndarray,
    n_features: int,
    n_iter: int,
    lam: float,
    power: float,
    tail: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Eigenvalues of the kernel after ``n_iter`` lin-RFM updates starting from ``K = I``.

    Args:
        s: the leading eigenvalues of ``G = X^T X / n``.
        n_features: ``d``, the number of items (the mean diagonal is ``trace / d``).
        n_iter: number of kernel updates.
        lam: ridge of the row fits.
        power: exponent applied to the AGOP.
        tail: the eigenvalue given to the ``d - len(s)`` directions left out (their mean,
            ``(trace(G) - sum(s)) / (d - len(s))``; 0 when ``s`` holds every non-zero one).

    Returns:
        ``(k, k_tail)``: the kernel's eigenvalues on ``G``'s leading eigenvectors and on the
        rest (float64). With ``n_iter = 0`` the kernel is the identity.
    """
    s = np.maximum(np.asarray(s, dtype=np.float64), 0.0)
    rest = max(n_features - s.size, 0)
    tail = max(float(tail), 0.0) if rest else 0.0
    k, k_tail = np.ones_like(s), 1.0
    for _ in range(n_iter):
        f, f_tail = k / (k + lam), k_tail / (k_tail + lam)
        agop, agop_tail = s * f * f, tail * f_tail * f_tail
        scale = _mean_diag_scale(agop, agop_tail, rest, n_features)
        k, k_tail = (agop * scale) ** power, (agop_tail * scale) ** power
        scale = _mean_diag_scale(k, k_tail, rest, n_features)
        k, k_tail = k * scale, k_tail * scale
    return k, float(k_tail)


def _mean_diag_scale(k: np.ndarray, k_tail: float, rest: int, n_features: int) -> float:
    total = float(k.sum()) + rest * k_tail
    return n_features / total if total > 0 else 1.0


def gram_eigenpairs(
    X: sp.csr_matrix,
    rank: int | None,
    *,
    exact: bool,
    n_power_iter: int = 1,
    oversample: int = 32,
    random_state=None,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``G = X^T X / n``, largest first: exact, or the top ``rank`` randomized.

    Returns:
        ``(s, U)``: eigenvalues (float64, descending, numerically zero ones dropped) and
        orthonormal eigenvectors as columns of a ``d x r`` float32 array.
    """
    if exact:
        s, U = exact_eigenpairs(X)
        if rank is not None and rank < s.size:
            s, U = s[:rank], np.ascontiguousarray(U[:, :rank])
        return s, U
    return randomized_eigenpairs(
        X,
        int(rank),
        n_power_iter=n_power_iter,
        oversample=oversample,
        random_state=random_state,
        num_threads=num_threads,
    )


def exact_eigenpairs(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """All non-zero eigenpairs of ``X^T X / n`` from the smaller Gram matrix (float64 ``eigh``).

    With fewer users than items, ``X X^T / n = V diag(s) V^T`` and ``U = X^T V diag(n s)^-1/2``
    are ``G``'s eigenpairs: an ``n x n`` factorisation instead of ``d x d``.
    """
    n, d = X.shape
    if n <= d:
        s, V = _eigh(_dense_gram(X) / n)
        V = np.ascontiguousarray(V, dtype=np.float32)
        U = np.asarray(X.T.tocsr() @ V) / np.sqrt(n * s).astype(np.float32)
    else:
        s, U = _eigh(_dense_gram(X.T.tocsr()) / n)
    return s, np.ascontiguousarray(U, dtype=np.float32)


# Up to this many entries a users x items matrix is densified for its Gram matrix: one BLAS
# product beats the sparse one on small data (ml-100k: 1.6M entries).
_DENSE_GRAM_ENTRIES = 2**24


def _dense_gram(X: sp.csr_matrix) -> np.ndarray:
    """``X X^T`` as a dense array (float32 BLAS on small data, else the sparse product)."""
    if X.shape[0] * X.shape[1] <= _DENSE_GRAM_ENTRIES:
        D = X.toarray()
        return D @ D.T
    X64 = X.astype(np.float64)
    return (X64 @ X64.T).toarray()


def _eigh(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero eigenpairs, largest first: float32 LAPACK ``syevd`` (twice as fast as float64;
    the eigenvalues dropped or perturbed at 1e-7 of the largest get no weight in any score)."""
    s, V = sla.eigh(M.astype(np.float32), driver="evd", check_finite=False, overwrite_a=True)
    return _descending_nonzero(s.astype(np.float64), V)


def _descending_nonzero(s: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(s)[::-1]
    s, V = s[order], V[:, order]
    keep = s > _RELATIVE_FLOOR * max(float(s[0]) if s.size else 0.0, np.finfo(float).tiny)
    return s[keep], V[:, keep]


def randomized_eigenpairs(
    X: sp.csr_matrix,
    rank: int,
    *,
    n_power_iter: int = 1,
    oversample: int = 32,
    random_state=None,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` eigenpairs of ``X^T X / n`` by randomized subspace iteration (Halko et al.).

    ``X`` is only multiplied by dense ``d x l`` and ``n x l`` blocks (``l = rank + oversample``),
    split over ``num_threads`` threads (scipy's sparse products release the GIL). The last step
    takes the small SVD of ``Z = X Q`` through the ``l x l`` matrix ``Z^T Z``, so the Ritz
    values cost half a Gram product. Memory: ``X`` and its transpose plus ``(n + 2 d) l``
    float32 numbers.
    """
    n, d = X.shape
    width = min(d, n, rank + oversample)
    rng = np.random.default_rng(random_state)
    X = sp.csr_matrix(X, dtype=np.float32)
    XT = X.T.tocsr()
    threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        Q = rng.standard_normal((d, width), dtype=np.float32)
        for step in range(n_power_iter + 1):
            Y = _threaded_product(XT, _threaded_product(X, Q, pool, threads), pool, threads)
            if step < n_power_iter:
                # as scikit-learn's range finder: an LU factor keeps the block well scaled
                # between products at a fraction of a QR's cost; the last step orthonormalises
                Q = sla.lu(Y, permute_l=True, check_finite=False, overwrite_a=True)[0]
            else:
                Q = _orthonormal(Y)
        Z = _threaded_product(X, Q, pool, threads)
    ZtZ = Z.T.astype(np.float64) @ Z.astype(np.float64)
    del Z
    s, V = np.linalg.eigh(ZtZ / n)
    s, V = _descending_nonzero(s, V)
    s, V = s[:rank], V[:, :rank]
    U = Q @ V.astype(np.float32)
    return s, np.ascontiguousarray(U, dtype=np.float32)


def _orthonormal(Y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of ``Y``'s columns: Cholesky-QR applied twice (float64 Gram).

    Two BLAS-3 passes instead of Householder QR, which is several times slower on tall blocks
    (and far slower when other processes share the cores); Householder QR only when the Gram
    matrix is too ill-conditioned for Cholesky.
    """
    Q = Y.astype(np.float64)
    try:
        for _ in range(2):
            R = np.linalg.cholesky(Q.T @ Q).T
            Q = sla.solve_triangular(R, Q.T, trans="T", lower=False, check_finite=False).T
    except np.linalg.LinAlgError:
        Q = sla.qr(Y.astype(np.float64), mode="economic", check_finite=False)[0]
    return np.ascontiguousarray(Q, dtype=np.float32)


def _threaded_product(A: sp.csr_matrix, B: np.ndarray, pool, threads: int) -> np.ndarray:
    """``A @ B`` for CSR ``A`` and dense ``B``, row blocks of ``A`` on separate threads."""
    m = A.shape[0]
    if threads <= 1 or m < 2 * threads:
        return np.asarray(A @ B)
    out = np.empty((m, B.shape[1]), dtype=np.result_type(A.dtype, B.dtype))
    # blocks of about equal non-zeros, not equal rows: item rows of X^T are very uneven
    cuts = np.searchsorted(A.indptr, np.linspace(0, A.nnz, threads + 1)[1:-1])
    bounds = [0, *np.unique(np.clip(cuts, 1, m - 1)).tolist(), m]

    def work(lo: int, hi: int) -> None:
        out[lo:hi] = A[lo:hi] @ B

    list(pool.map(lambda b: work(*b), zip(bounds[:-1], bounds[1:])))
    return out
