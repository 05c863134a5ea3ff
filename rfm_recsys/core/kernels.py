"""The two forms of the kernel ``K`` behind one interface: dense ``d x d`` and factored.

:class:`DenseKernel` stores ``K`` as a ``d x d`` array; its feature update accumulates
``X^T X`` over dense row chunks (cost ``n d^2``), and memory grows with ``d^2``.

:class:`FactoredKernel` stores ``K = U diag(s) U^T + eps I`` with ``U`` ``d x r`` orthonormal
(``eps`` a scalar, or a per-column diagonal ``diag(e)`` where a kernel keeps its exact diagonal,
as the factored kernel step does: the solves below then run on ``diag(lam + e)^-1/2``-scaled
systems):

- Row fits with ``L = U[S_i] diag(sqrt(s))`` and ``lam' = lam + eps``: a row with at most ``r``
  observations solves ``(L L^T + lam' I) a = y`` directly; a longer one uses Woodbury,
  ``a = (y - L (lam' I + L^T L)^-1 L^T y) / lam'``, an ``r x r`` system whatever its length.
- The feature update needs the top-``r`` eigenvectors of ``X^T X`` with ``X = A K`` (plus
  ``lam A`` when observed entries are re-imposed, since there ``y - K_SS a = lam a``). Without a
  shift ``X = Z U^T`` with ``Z = A U diag(s)`` (``n x r``), so ``X^T X = U (Z^T Z) U^T``: the
  update is ``eigh`` of an ``r x r`` matrix, the same cost for any power, and the span of ``U``
  stays put. With a shift (and on the first iteration, where ``K = I`` is ``U`` empty with
  ``eps = 1``) ``X`` is applied as an operator in a seeded randomized range finder (Halko,
  Martinsson & Tropp 2011) built on sparse products only; this is how the span can move.
- Predictions: ``W = A K = Z U^T + eps A``, so a pair costs ``O(r)`` and a row's scores one
  matrix-vector product.

Both forms give the engine and the rating models the same methods (:class:`Kernel`), and each
fitted pair ``(kernel, A)`` a :class:`Completion` for predictions, so no caller branches on
the form.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blas import blas_threads, default_threads
from .completion import gram_of_completion, predict_pairs
from .memory import CHUNK_BYTES, OVERSAMPLE
from .solve import RowPlan, run_shared, solve_rows, spd_solve

# Power iterations of the randomized range finder. Measured on a validation share of ml-100k
# (rank 128, defaults): validation RMSE 0.9255 with none, 0.92128 with one, 0.92126 with two,
# 0.92121 with four; each costs two more sparse products.
_POWER_ITERATIONS = 1
# Stacks of systems up to this size go to one batched LAPACK call, larger ones to posv each.
_BATCHED_MAX = 12


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
        self, plan: RowPlan, y: np.ndarray, lam: float, n_threads: int | None = None
    ) -> np.ndarray:
        """All row fits ``(K[S_i,S_i] + lam I)^-1 y_i`` in CSR data order."""

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

    def next(self, completion: Completion, update, n_rows: int, iteration: int,
             targets: np.ndarray | None, lam: float) -> Kernel:  # fmt: skip
        """The kernel after one feature update from this iteration's completion."""

    def distance(self, other: Kernel) -> float:
        """``||other - self||_F / ||self||_F``."""

    def dense(self) -> np.ndarray:
        """``K`` as a ``d x d`` array (small problems, tests)."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays that :func:`kernel_from_arrays` turns back into this kernel."""


# ------------------------------------------------------------------------------------- dense


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

    def solve_rows(self, plan, y, lam, n_threads=None) -> np.ndarray:
        if self.identity:  # every system is (1 + lam) I
            return y / y.dtype.type(1.0 + lam)
        return solve_rows(self.K, plan, y, lam, n_threads)

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

    def next(self, completion, update, n_rows, iteration, targets, lam) -> DenseKernel:
        K = None if self.identity else self.K
        xtx = gram_of_completion(K, completion.A, targets, self.K.dtype)
        K_new = update(xtx, n_rows, iteration)
        _check_finite(K_new, iteration)
        return DenseKernel(K_new.astype(self.K.dtype, copy=False))

    def distance(self, other) -> float:
        diff = np.linalg.norm(other.dense() - self.K)
        return float(diff / max(np.linalg.norm(self.K), 1e-300))

    def dense(self) -> np.ndarray:
        return self.K

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"K": self.K}  # the key files written before the factored form use


class DenseCompletion:
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


# ---------------------------------------------------------------------------------- factored


class FactoredKernel:
    """``K = U diag(s) U^T + eps I`` with orthonormal ``U`` (``d x r``), kept at rank ``rank``.

    Args:
        U: ``d x r`` orthonormal columns (``r`` may be 0: ``K = eps I``).
        s: the ``r`` eigenvalues of the low-rank part.
        eps: the shift: a number, or ``d`` non-negative numbers (``K = U diag(s) U^T + diag(eps)``).
        rank: rank of the kernels that updates produce.
        shift: share of the mean diagonal that updates give to ``eps I`` (0: none, the span of
            ``U`` is then fixed after the first update).
        random_state: seed of the randomized range finder.
    """

    def __init__(
        self,
        U: np.ndarray,
        s: np.ndarray,
        eps: float,
        rank: int,
        shift: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.U = U
        self.s = np.asarray(s, dtype=U.dtype)
        self.d = U.shape[0]
        if np.ndim(eps) == 0:
            self.eps = float(eps)
        else:
            self.eps = np.asarray(eps, dtype=np.float64)
            if self.eps.shape != (self.d,) or not np.all(self.eps >= 0):
                raise ValueError(
                    f"a per-column eps must be {self.d} non-negative numbers, got shape "
                    f"{self.eps.shape} (min {self.eps.min(initial=0.0)})"
                )
        self.rank = int(rank)
        self.shift = float(shift)
        self.random_state = random_state

    @classmethod
    def eye(cls, d: int, dtype, rank: int, shift: float = 0.0, random_state=0) -> FactoredKernel:
        if rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank}")
        empty = np.zeros((d, 0), dtype=dtype)
        return cls(empty, np.zeros(0, dtype), 1.0, rank, shift, random_state)

    @property
    def dtype(self) -> np.dtype:
        return self.U.dtype

    def _scaled(self) -> np.ndarray:
        return self.U * self.s  # U diag(s), d x r

    @property
    def has_eps(self) -> bool:
        return bool(np.any(self.eps))

    def eps_at(self, cols: np.ndarray):
        """The shift of columns ``cols`` (a number when it is one for all)."""
        return self.eps if np.ndim(self.eps) == 0 else self.eps[cols]

    def _eps_for(self, v: np.ndarray):
        # the shift broadcast against v (d or d x m)
        if np.ndim(self.eps) == 0:
            return self.eps
        return self.eps.reshape((-1,) + (1,) * (np.ndim(v) - 1))

    def _row_scales(self, lam: float) -> np.ndarray:
        # diag(lam + e)^-1/2: K[S,S] + lam I = D^1/2 (Lt Lt^T + I) D^1/2 with Lt = D^-1/2 L
        dvec = lam + self.eps
        floor = 1e-12 * max(float(dvec.max(initial=0.0)), 1e-300)
        return 1.0 / np.sqrt(np.maximum(dvec, floor))

    # -- row fits

    def solve_rows(self, plan, y, lam, n_threads=None) -> np.ndarray:
        per_column = np.ndim(self.eps) != 0
        if per_column:
            sc = self._row_scales(lam).astype(self.dtype)[plan.indices]
            y = y * sc
        lam_eff = 1.0 if per_column else lam + self.eps
        if self.U.shape[1] == 0:  # K = eps I
            a = y / y.dtype.type(lam_eff)
        else:
            # rows of L, plus a zero row d that padded entries point to
            L_all = np.zeros((self.d + 1, self.U.shape[1]), dtype=self.dtype)
            np.multiply(self.U, np.sqrt(np.clip(self.s, 0, None)), out=L_all[: self.d])
            if per_column:
                L_all[: self.d] *= self._row_scales(lam).astype(self.dtype)[:, None]
            a = _solve_rows_factored(L_all, plan, y, lam_eff, n_threads)
        return a * sc if per_column else a

    def solve_row(self, cols, y, lam) -> np.ndarray:
        L = (self.U[cols] * np.sqrt(np.clip(self.s, 0, None))).astype(np.float64)
        y = np.asarray(y, dtype=np.float64)
        if np.ndim(self.eps) == 0:
            return _solve_one(L, y, lam + self.eps)
        sc = self._row_scales(lam)[cols]
        return _solve_one(L * sc[:, None], y * sc, 1.0) * sc

    def apply(self, cols, a) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        out = self.U.astype(np.float64) @ (self.s * (self.U[cols].T.astype(np.float64) @ a))
        if self.has_eps:
            np.add.at(out, cols, self.eps_at(cols) * a)
        return out

    def matvec(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        U = self.U.astype(np.float64)
        s = self.s.astype(np.float64)
        return U @ (s.reshape((-1,) + (1,) * (v.ndim - 1)) * (U.T @ v)) + self._eps_for(v) * v

    def rows(self, idx) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        out = (self._scaled()[idx] @ self.U.T).astype(np.float64)
        if self.has_eps:
            out[np.arange(idx.size), idx] += self.eps_at(idx)
        return out

    def diag(self) -> np.ndarray:
        return np.einsum("ij,ij->i", self._scaled(), self.U, dtype=np.float64) + self.eps

    # -- completion and update

    def complete(self, A) -> FactoredCompletion:
        return FactoredCompletion(self, A)

    def next(self, completion, update, n_rows, iteration, targets, lam) -> FactoredKernel:
        check_spectral(update)
        A = completion.A
        c = self.update_shift(lam, targets is not None)
        if not np.any(c):
            return self.next_exact(factor_gram(completion.Z), update, n_rows, iteration)
        n_threads = default_threads()  # for the sparse products, before BLAS is limited
        At = A.T.tocsr()
        return self.next_randomized(
            lambda P: self.range_gram(A, At, P, c, n_threads), update, n_rows, iteration
        )

    # The update in pieces: what a set of rows contributes (``factor_gram`` of their ``Z``, or
    # ``range_gram`` of their coefficients) and what turns the sum over all rows into the next
    # kernel (``next_exact``, ``next_randomized``). ``next`` runs them on one matrix; the Dask
    # backend runs the first on each block and the second on the driver, so both fit the same
    # model.

    def update_shift(self, lam: float, reimposed: bool) -> float | np.ndarray:
        """``c`` in ``X = A (U diag(s) U^T + diag(c))``: ``eps`` (a number or one per column),
        plus ``lam`` if targets are re-imposed. ``c = 0`` allows the exact update
        (:meth:`next_exact`)."""
        return self.eps + (lam if reimposed else 0.0)

    def range_gram(
        self,
        A: sp.csr_matrix,
        At: sp.csr_matrix,
        P: np.ndarray,
        c: float | np.ndarray,
        n_threads: int = 1,
    ) -> np.ndarray:
        """``X^T X P`` (``d x q``, float64) for ``X = A (U diag(s) U^T + diag(c))``, ``At = A^T``
        (``c`` a number or one per column).

        Sparse products and thin factor products only; over row blocks of ``A`` the results add
        up to the whole matrix's. ``X P`` is formed row by row in the kernel's dtype (the same
        in any row blocking); the sum over rows, ``X^T (X P)``, is accumulated in float64, so
        that summing it in another order (row blocks on several machines) changes nothing
        visible: with float32 sums the Dask backend's models differed from the threads
        backend's by 5e-6 relative on ml-100k at rank 32, with float64 ones by 1e-15.
        """
        dtype = self.dtype
        U, Us = self.U, self._scaled()

        per_column = np.ndim(c) != 0
        c_dt = np.asarray(c, dtype=dtype)[:, None] if per_column else dtype.type(c)
        c64 = np.asarray(c, dtype=np.float64)[:, None] if per_column else float(c)

        def K_times(v):  # (U diag(s) U^T + diag(c)) v
            return Us @ (U.T @ v) + c_dt * v

        W = np.asarray(_spmm(A, K_times(P.astype(dtype, copy=False)), n_threads), dtype=dtype)
        Y = np.asarray(_spmm(At, W.astype(np.float64), n_threads))
        return Us.astype(np.float64) @ (U.T.astype(np.float64) @ Y) + c64 * Y

    def next_exact(self, ZtZ: np.ndarray, update, n_rows: int, iteration: int) -> FactoredKernel:
        """The next kernel from ``Z^T Z`` (``r x r``, summed over all rows; shift ``c = 0``).

        ``X = Z U^T``, so ``X^T X = U (Z^T Z) U^T``: its top eigenpairs come from ``eigh`` of
        the ``r x r`` matrix.
        """
        check_spectral(update)
        r = min(self.rank, n_rows, self.d)
        with blas_threads(1):
            evals, V = scipy.linalg.eigh(np.asarray(ZtZ, dtype=np.float64), check_finite=False)
            order = np.argsort(evals)[::-1][:r]
            V = self.U @ V[:, order].astype(self.dtype)
        return self._updated(V, evals[order], update, n_rows, iteration)

    def next_randomized(self, gram, update, n_rows: int, iteration: int) -> FactoredKernel:
        """The next kernel by a seeded randomized range finder on ``X^T X``.

        ``gram(P)`` returns ``X^T X P`` for a ``d x q`` block ``P`` (:meth:`range_gram` summed
        over all rows); it is called ``1 + _POWER_ITERATIONS`` times.
        """
        check_spectral(update)
        r = min(self.rank, n_rows, self.d)
        q = min(r + OVERSAMPLE, n_rows, self.d)
        seed = None if self.random_state is None else (self.random_state, iteration)
        # One BLAS thread: these are thin products and QRs, where OpenBLAS's threads gain
        # little and, on a busy machine, lose tens of times over spinning (measured: a
        # 6,040 x 138 QR took 8 s with two threads under load, 0.1 s with one).
        with blas_threads(1):
            V, evals = _top_eig_randomized(gram, self.d, q, r, self.dtype, seed)
        return self._updated(V, evals, update, n_rows, iteration)

    def _updated(self, V, evals, update, n_rows: int, iteration: int) -> FactoredKernel:
        k = update.spectrum(evals, n_rows, iteration, self.d)
        k = (1.0 - self.shift) * k
        _check_finite(k, iteration)
        return FactoredKernel(
            np.ascontiguousarray(V, dtype=self.dtype),
            k.astype(self.dtype),
            self.shift,
            self.rank,
            self.shift,
            self.random_state,
        )

    def distance(self, other) -> float:
        if not isinstance(other, FactoredKernel):
            return DenseKernel(self.dense()).distance(other)
        s0, s1 = self.s.astype(np.float64), other.s.astype(np.float64)
        C = other.U.T.astype(np.float64) @ self.U.astype(np.float64)  # r1 x r0
        d = self.d
        e0 = np.broadcast_to(np.asarray(self.eps, dtype=np.float64), (d,))
        e1 = np.broadcast_to(np.asarray(other.eps, dtype=np.float64), (d,))
        # <diag(e), U diag(s) U^T> = sum_j e_j (U diag(s) U^T)_jj
        lr0 = np.einsum("ij,ij->i", self.U.astype(np.float64) * s0, self.U.astype(np.float64))
        lr1 = np.einsum("ij,ij->i", other.U.astype(np.float64) * s1, other.U.astype(np.float64))
        n0 = s0 @ s0 + 2 * e0 @ lr0 + e0 @ e0
        n1 = s1 @ s1 + 2 * e1 @ lr1 + e1 @ e1
        cross = np.sum((s1[:, None] * C * s0[None, :]) * C) + e0 @ lr1 + e1 @ lr0 + e0 @ e1
        return float(math.sqrt(max(n0 + n1 - 2 * cross, 0.0)) / max(math.sqrt(n0), 1e-300))

    def dense(self) -> np.ndarray:
        K = self._scaled() @ self.U.T
        K.flat[:: self.d + 1] += self.eps
        return K

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "kernel_U": self.U,
            "kernel_s": self.s,
            "kernel_eps": np.array(self.eps),
            "kernel_rank": np.array(self.rank),
            "kernel_shift": np.array(self.shift),
        }


class FactoredCompletion:
    """``W = Z U^T + A diag(eps)`` with ``Z = A U diag(s)`` computed once (``n x r``)."""

    def __init__(self, kernel: FactoredKernel, A: sp.csr_matrix) -> None:
        self.kernel, self.A = kernel, A
        self.Z = np.asarray(_spmm(A, kernel._scaled()), dtype=kernel.dtype)

    def pairs(self, rows, cols) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        out = np.empty(rows.shape[0], dtype=np.float64)
        U = self.kernel.U
        step = max(1, CHUNK_BYTES // max(1, 2 * U.shape[1] * U.itemsize))
        for lo in range(0, rows.shape[0], step):
            r, c = rows[lo : lo + step], cols[lo : lo + step]
            out[lo : lo + step] = np.einsum("ij,ij->i", self.Z[r], U[c], dtype=np.float64)
        if self.kernel.has_eps and rows.size:
            eps = self.kernel.eps_at(cols)
            out += eps * np.asarray(self.A[rows, cols], dtype=np.float64).ravel()
        return out

    def rows(self, idx) -> np.ndarray:
        out = (self.Z[idx] @ self.kernel.U.T).astype(np.float64)
        if self.kernel.has_eps:
            out += self.A[idx].toarray() * self.kernel.eps  # a number, or one per column
        return out

    def column(self, j) -> np.ndarray:
        return self.columns(np.array([j]))[:, 0]

    def columns(self, idx) -> np.ndarray:
        out = (self.Z @ self.kernel.U[idx].T).astype(np.float64)
        if self.kernel.has_eps:
            out += self.A[:, idx].toarray() * self.kernel.eps_at(idx)
        return out

    def times(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        out = self.Z.astype(np.float64) @ (self.kernel.U.T.astype(np.float64) @ X)
        if self.kernel.has_eps:
            out += np.asarray(self.A @ (self.kernel._eps_for(X) * X))
        return out

    def row_norms(self) -> np.ndarray:
        # U is orthonormal: ||Z_r U^T||^2 = ||Z_r||^2; the shift adds the cross and A terms
        Z = self.Z.astype(np.float64)
        sq = np.einsum("ij,ij->i", Z, Z)
        if self.kernel.has_eps:
            U = self.kernel.U.astype(np.float64)
            AU = np.asarray(self.A @ (self.kernel._eps_for(U) * U))  # A diag(e) U
            Ae = self.A.multiply(np.reshape(self.kernel.eps, (1, -1))).tocsr()  # A diag(e)
            A2 = np.asarray(Ae.multiply(Ae).sum(axis=1)).ravel()
            sq += 2 * np.einsum("ij,ij->i", Z, AU) + A2
        return np.sqrt(np.maximum(sq, 0.0))


def kernel_from_arrays(arrays) -> Kernel:
    """The kernel saved by ``to_arrays`` (a mapping such as an ``np.load`` result)."""
    if "K" in arrays:
        return DenseKernel(np.asarray(arrays["K"]))
    eps = np.asarray(arrays["kernel_eps"], dtype=np.float64)
    return FactoredKernel(
        np.asarray(arrays["kernel_U"]),
        np.asarray(arrays["kernel_s"]),
        float(eps) if eps.ndim == 0 else eps,
        int(arrays["kernel_rank"]),
        float(arrays["kernel_shift"]),
    )


# rank="auto": a factored kernel of rank AUTO_RANK, or the dense kernel while d <= 2 AUTO_RANK
# (there the factored form saves nothing). Chosen by ``python -m evaluation.choose_rank`` on
# validation shares of training folds (defaults otherwise): rank 128 scored +0.0002 (ml-100k)
# and -0.0004 (ml-latest-small) validation RMSE against the dense kernel in half its time;
# rank 64 +0.0048 and +0.0006; rank 256 no better than 128. A shift of 0.1 changed the scores
# by -0.0002 and +0.0004 at rank 128 for 20-45% more time, so updates use none by default.
AUTO_RANK = 128
AUTO_DENSE_MAX_D = 2 * AUTO_RANK
# rank="auto" with the kernel step on (the default): the dense kernel (lin-RFM and the step) up
# to KERNEL_DENSE_MAX_D feature columns, rank AUTO_RANK beyond. Measured with the default step
# on folds 0 and 1 (evaluation/kernel_rfm_experiments.md, section 9; a shared 2-core machine):
# on ml-100k (1,682 items) the dense step took 3.5 s against the factored 7.9 s and scored
# 0.001-0.002 better validation RMSE; on ml-latest-small (9,724 items) the factored step took
# 12.7 s against the dense 58 s (2.2 GB) for 0.004 worse. The dense step's time and memory grow
# with d squared to cubed, so the switch lies between the two: 4096 columns (a 64 MB float32
# kernel).
KERNEL_DENSE_MAX_D = 4096


def resolve_step_rank(rank: int | str | None, d: int) -> int | str | None:
    """``rank`` for a fit followed by the kernel step: ``"auto"`` becomes dense up to
    ``KERNEL_DENSE_MAX_D`` (4096) feature columns and ``AUTO_RANK`` (128) beyond; ``None`` and
    an int are returned as given."""
    if isinstance(rank, str) and rank == "auto":
        return None if d <= KERNEL_DENSE_MAX_D else AUTO_RANK
    return rank


def resolve_rank(rank: int | str | None, d: int, update=None) -> int | None:
    """The kernel's form for ``d`` feature columns: ``None`` (dense) or a rank.

    ``None`` keeps the dense kernel, an int asks for a factored kernel of that rank, and
    ``"auto"`` is dense up to ``d = AUTO_DENSE_MAX_D`` (256) and rank ``AUTO_RANK`` (128)
    beyond; with an ``update`` that needs the dense kernel (IRLS-p), ``"auto"`` is dense.
    """
    if rank is None:
        return None
    if isinstance(rank, str):
        if rank != "auto":
            raise ValueError(f"rank must be None, a positive int or 'auto', got {rank!r}")
        if update is not None and not hasattr(update, "spectrum"):
            return None
        return None if d <= AUTO_DENSE_MAX_D else AUTO_RANK
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be None, a positive int or 'auto', got {rank!r}")
    return int(rank)


def initial_kernel(
    d: int, dtype, rank: int | None, shift: float = 0.0, K0=None, random_state=0
) -> Kernel:
    """``K = I`` in the requested form, or the caller's ``K0`` (an array or a kernel)."""
    if K0 is not None:
        return K0 if hasattr(K0, "solve_rows") else DenseKernel(np.array(K0, dtype=dtype))
    if rank is None:
        return DenseKernel.eye(d, dtype)
    return FactoredKernel.eye(d, dtype, rank, shift, random_state)


def _check_finite(x: np.ndarray, iteration: int) -> None:
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(
            f"the kernel became non-finite at iteration {iteration + 1}: raise `lam` or use float64"
        )


# ------------------------------------------------------------------ factored row solves


def _bucket_size(c: int) -> int:
    """Padded size of a row with ``c`` observations: at most 1/8 above ``c``."""
    if c <= 16:
        return c
    step = 1 << (c.bit_length() - 4)
    return -(-c // step) * step


def _solve_one(L: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    c, r = L.shape
    if c <= r or lam <= 0:
        M = L @ L.T
        M.flat[:: c + 1] += lam
        return spd_solve(M, y)
    B = L.T @ L
    B.flat[:: r + 1] += lam
    return (y - L @ spd_solve(B, L.T @ y)) / lam


def _solve_rows_factored(L_all, plan: RowPlan, y, lam: float, n_threads) -> np.ndarray:
    """Row fits with ``K[S,S] = L L^T``, rows padded into buckets of similar length.

    ``L_all`` holds the rows of ``L`` for every column plus a last row of zeros.

    Padding a row with zero rows of ``L`` and zero targets leaves its solution unchanged on the
    real entries (the padded block is ``lam I`` with right-hand side 0), so each bucket is one
    stacked ``numpy.linalg.solve``: direct ``c x c`` systems up to ``c = r``, Woodbury's
    ``r x r`` ones beyond.
    """
    dtype = L_all.dtype
    r = L_all.shape[1]
    a = np.zeros(y.shape[0], dtype=dtype)
    counts = np.diff(plan.indptr)
    nonempty = np.flatnonzero(counts)
    sizes = np.array([_bucket_size(int(c)) for c in range(int(counts.max(initial=0)) + 1)])
    padded = sizes[counts[nonempty]]
    order = np.argsort(padded, kind="stable")
    rows_sorted, pad_sorted = nonempty[order], padded[order]
    bounds = np.flatnonzero(np.diff(pad_sorted)) + 1
    tasks = []
    for rows in np.split(rows_sorted, bounds):
        if rows.size == 0:
            continue
        cpad = int(sizes[counts[rows[0]]])
        m = cpad if (cpad <= r or lam <= 0) else r
        per_row = (cpad * r + m * m + 2 * cpad) * dtype.itemsize
        per_chunk = max(1, CHUNK_BYTES // per_row)
        for lo in range(0, rows.size, per_chunk):
            chunk = rows[lo : lo + per_chunk]
            tasks.append((float(chunk.size) * (cpad * r * m + m**3 / 3), cpad, chunk))

    def run(batch):
        for _, cpad, chunk in batch:
            start, cnt = plan.indptr[chunk], counts[chunk]
            offs = np.arange(cpad)[None, :]
            valid = offs < cnt[:, None]
            pos = np.where(valid, start[:, None] + offs, 0)
            cols = np.where(valid, plan.indices[pos], L_all.shape[0] - 1)
            L = L_all[cols]  # g x c x r, zero rows where padded
            yy = np.where(valid, y[pos], 0).astype(dtype)
            sol = _solve_stack(L, yy, lam)
            a[pos[valid]] = sol[valid]

    run_shared(tasks, run, n_threads)
    return a


def _solve_stack(L: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    g, c, r = L.shape
    Lt = L.transpose(0, 2, 1)
    if c <= r or lam <= 0:
        M = L @ Lt
        M[:, np.arange(c), np.arange(c)] += lam
        return _stack_solve(M, y)
    B = Lt @ L
    B[:, np.arange(r), np.arange(r)] += lam
    x = _stack_solve(B, np.einsum("gcr,gc->gr", L, y))
    return (y - np.einsum("gcr,gr->gc", L, x)) / y.dtype.type(lam)


def _stack_solve(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve a stack of symmetric positive definite systems ``M[k] x = b[k]``.

    Small systems go to one batched ``numpy.linalg.solve`` call; larger ones one by one to
    LAPACK's Cholesky solver ``posv``, which is several times faster than the batched LU
    (measured, one thread: 1,562 systems of size 128 in 0.24 s against 0.66 s; size 256: 0.77 s
    against 4.4 s).
    """
    g, m, _ = M.shape
    if m <= _BATCHED_MAX:
        try:
            return np.linalg.solve(M, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            return np.stack([spd_solve(Mi, bi) for Mi, bi in zip(M, b)]).astype(b.dtype)
    (posv,) = scipy.linalg.get_lapack_funcs(("posv",), (M,))
    out = np.empty_like(b)
    for k in range(g):
        # M[k] is symmetric, so its transpose is the same matrix in the Fortran order LAPACK
        # wants: no copy. A failed factorisation (lam = 0, semidefinite) falls back.
        _, x, info = posv(M[k].T, b[k], lower=1, overwrite_a=1, overwrite_b=0)
        out[k] = x if info == 0 else spd_solve(M[k].astype(np.float64), b[k].astype(np.float64))
    return out


# --------------------------------------------------------------- factored feature updates


def check_spectral(update) -> None:
    """Refuse an update the factored kernel cannot apply (it sees the top eigenvalues only)."""
    if not hasattr(update, "spectrum"):
        raise ValueError(
            f"{type(update).__name__} needs the dense kernel (rank=None): its update is not "
            "a function of the top eigenvalues alone"
        )


def factor_gram(Z: np.ndarray) -> np.ndarray:
    """``Z^T Z`` in float64 (``r x r``): a set of rows' share of the exact factored update."""
    Z = np.asarray(Z)
    return Z.T.astype(np.float64) @ Z.astype(np.float64)


def _top_eig_randomized(gram, d: int, q: int, r: int, dtype, seed):
    """Top-``r`` eigenpairs of ``X^T X``, seen only through ``gram(P) = X^T X P``.

    A randomized range finder (Halko, Martinsson & Tropp 2011) with ``q - r`` extra columns
    and ``_POWER_ITERATIONS`` power iterations: ``P`` spans ``(X^T X)^k Omega``, and the
    Rayleigh-Ritz step on ``span(X P)`` needs only ``P`` and ``Y = X^T X P``
    (:func:`_rayleigh_ritz`), so every pass over the rows is one sum of ``d x q`` products.
    """
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((d, q)).astype(dtype)
    Y = gram(P)
    for _ in range(_POWER_ITERATIONS):
        P = _orth(np.array(Y, dtype=dtype))
        Y = gram(P)
    return _rayleigh_ritz(P, Y, r, dtype)


def _rayleigh_ritz(P: np.ndarray, Y: np.ndarray, r: int, dtype):
    """Top-``r`` eigenpairs of ``X^T Pi X``, ``Pi`` the projector on ``span(X P)``, from ``P``
    and ``Y = X^T X P``.

    With ``G = P^T Y = W diag(g) W^T``, ``X P W g^-1/2`` is an orthonormal basis of
    ``span(X P)``, so ``B = X^T X P W g^-1/2 = Y W g^-1/2`` has ``B B^T = X^T Pi X``: its left
    singular vectors and squared singular values are the answer. Directions of ``G`` below
    its rounding level are dropped (``q`` units of ``dtype``, relative: ``X P`` was formed in
    ``dtype``): they carry no signal and ``g^-1/2`` would amplify their noise.
    """
    Y64 = np.asarray(Y, dtype=np.float64)
    G = P.T.astype(np.float64) @ Y64
    g, W = scipy.linalg.eigh((G + G.T) / 2, check_finite=False)
    floor = max(g[-1], 0.0) * G.shape[0] * np.finfo(dtype).eps
    inv_sqrt = np.zeros_like(g)
    keep = g > floor
    inv_sqrt[keep] = 1.0 / np.sqrt(g[keep])
    Bt = Y64 @ (W * inv_sqrt)  # d x q; dropped directions are zero columns
    Qd, Rd = scipy.linalg.qr(Bt, mode="economic", check_finite=False)
    Ur, sig, _ = scipy.linalg.svd(Rd, check_finite=False)
    V = (Qd @ Ur[:, :r]).astype(dtype)
    return V, sig[:r] ** 2


def _spmm(A: sp.csr_matrix, X: np.ndarray, n_threads: int | None = None) -> np.ndarray:
    """``A @ X`` for a CSR ``A``, its rows shared among threads (scipy releases the GIL there).

    Each thread multiplies a block of rows given as views of ``A``'s arrays, so nothing of
    ``A`` is copied.
    """
    n = A.shape[0]
    n_threads = default_threads() if n_threads is None else n_threads
    if n_threads <= 1 or A.nnz < 1_000_000:
        return np.asarray(A @ X)
    out = np.empty((n, X.shape[1]), dtype=np.result_type(A.dtype, X.dtype))
    bounds = np.searchsorted(A.indptr, np.linspace(0, A.nnz, n_threads + 1)).clip(0, n)
    bounds[0], bounds[-1] = 0, n

    def run(k: int) -> None:
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if hi <= lo:
            return
        s, e = A.indptr[lo], A.indptr[hi]
        blk = sp.csr_matrix(
            (A.data[s:e], A.indices[s:e], A.indptr[lo : hi + 1] - s),
            shape=(hi - lo, A.shape[1]),
            copy=False,
        )
        out[lo:hi] = blk @ X

    with ThreadPoolExecutor(n_threads) as ex:
        list(ex.map(run, range(n_threads)))
    return out


def _orth(Y: np.ndarray) -> np.ndarray:
    return scipy.linalg.qr(Y, mode="economic", check_finite=False, overwrite_a=True)[0]
