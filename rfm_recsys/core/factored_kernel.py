"""The factored kernel ``K = U diag(s) U^T + eps I`` and the completion it gives.

``U`` is ``d x r`` orthonormal, ``eps`` a scalar or a per-column diagonal ``diag(e)`` (where a
kernel keeps its exact diagonal, as the factored kernel step does; the solves then run on
``diag(lam + e)^-1/2``-scaled systems):

- Row fits with ``L = U[S_i] diag(sqrt(s))`` and ``lam' = lam + eps``
  (:mod:`.factored_solve`): a row with at most ``r`` observations solves
  ``(L L^T + lam' I) a = y`` directly; a longer one uses Woodbury, an ``r x r`` system whatever
  its length.
- The feature update needs the top-``r`` eigenvectors of ``X^T X`` with ``X = A K`` (plus
  ``lam A`` when observed entries are re-imposed, since there ``y - K_SS a = lam a``). Without a
  shift ``X = Z U^T`` with ``Z = A U diag(s)`` (``n x r``), so ``X^T X = U (Z^T Z) U^T``: the
  update is ``eigh`` of an ``r x r`` matrix, the same cost for any power, and the span of ``U``
  stays put. With a shift (and on the first iteration, where ``K = I`` is ``U`` empty with
  ``eps = 1``) ``X`` is applied as an operator in a seeded randomized range finder
  (:mod:`.randomized`) built on sparse products only; this is how the span can move.
- Predictions: ``W = A K = Z U^T + eps A``, so a pair costs ``O(r)`` and a row's scores one
  matrix-vector product.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blas import blas_threads
from .dense_kernel import DenseKernel
from .factored_solve import solve_one, solve_rows_factored
from .kernel import check_finite
from .memory import CHUNK_BYTES, OVERSAMPLE
from .randomized import spmm, top_eig_randomized
from .rank_rule import RankRule

# Factored kernels of at least this rank are solved by conjugate gradients when a tolerance is
# given (FactoredKernel._cg_pays).
CG_MIN_RANK = 128
# With at most this many rows, and where its n^3 costs less than the range finder's d q^2, the
# first update's subspace is exact, from an eigh of X X^T.
EXACT_ROWS = 2048
# The first subspace's range finder: two power passes and 32 extra columns. On learning curves
# of ml-latest-small and ml-100k (validation shares), going from 0 to 1 pass was worth as much
# as doubling the rank, and two passes with 32 extra columns matched the exact subspace within
# 0.0002 RMSE at the ranks the data needed; later updates keep the span and need no more.
FIRST_PASSES = 2
FIRST_OVERSAMPLE = 32


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


class FactoredKernel:
    """``K = U diag(s) U^T + eps I`` with ``U`` ``d x r``, kept at rank ``rank``.

    ``U`` is orthonormal for the kernels lin-RFM learns; the kernel step's Nystrom kernels
    ``F F^T + diag(e)`` keep their factor ``F`` as it is (``orthonormal=False``, ``s`` ones):
    their row fits, predictions and fold-in are the same, and they are never updated in
    place of a learned kernel (:meth:`next_exact` and :meth:`distance` need an orthonormal
    ``U``).

    Args:
        U: ``d x r`` columns (``r`` may be 0: ``K = eps I``).
        s: the ``r`` eigenvalues of the low-rank part.
        eps: the shift: a number, or ``d`` non-negative numbers (``K = U diag(s) U^T + diag(eps)``).
        rank: rank of the kernels that updates produce.
        shift: share of the mean diagonal that updates give to ``eps I`` (0: none, the span of
            ``U`` is then fixed after the first update).
        random_state: seed of the randomized range finder.
        orthonormal: whether ``U``'s columns are orthonormal.
    """

    def __init__(
        self,
        U: np.ndarray,
        s: np.ndarray,
        eps: float,
        rank: int,
        shift: float = 0.0,
        random_state: int = 0,
        orthonormal: bool = True,
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
        self.orthonormal = bool(orthonormal)
        self.rule: RankRule | None = None  # set on K = I when the first update picks the rank

    @classmethod
    def eye(
        cls, d: int, dtype, rank: int | RankRule, shift: float = 0.0, random_state=0
    ) -> FactoredKernel:
        """``K = I`` (``U`` empty, ``eps = 1``). With a
        :class:`~rfm_recsys.core.rank_rule.RankRule` for ``rank`` the first update chooses the
        rank from the first iterate's spectrum."""
        rule = rank if isinstance(rank, RankRule) else None
        if rule is not None:
            rank = rule.r_max
        if rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank}")
        empty = np.zeros((d, 0), dtype=dtype)
        kernel = cls(empty, np.zeros(0, dtype), 1.0, rank, shift, random_state)
        kernel.rule = rule
        return kernel

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

    def solve_rows(self, plan, y, lam, n_threads=None, a0=None, tol=None) -> np.ndarray:
        if self.U.shape[1] and tol is not None and self._cg_pays():
            from .cg import CG_MAX_STEPS, cg_solve_factored  # numba: imported when first needed

            a, _ = cg_solve_factored(
                self.U, np.clip(self.s, 0, None), self.eps, plan.indptr, plan.indices, y, lam,
                a0, tol, CG_MAX_STEPS, n_threads=n_threads,
            )  # fmt: skip
            return a
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
            a = solve_rows_factored(L_all, plan, y, lam_eff, n_threads)
        return a * sc if per_column else a

    def _cg_pays(self) -> bool:
        # A CG step costs 2 c r per row in a compiled loop, a direct solve min(c^2 r, c r^2) in
        # BLAS, which runs several times more flops per second: measured, CG wins from rank 128
        # on and always on the kernel step's Nystrom kernels; below it ties (rank 64) or loses.
        return self.U.shape[1] >= CG_MIN_RANK or not self.orthonormal

    def solve_row(self, cols, y, lam) -> np.ndarray:
        L = (self.U[cols] * np.sqrt(np.clip(self.s, 0, None))).astype(np.float64)
        y = np.asarray(y, dtype=np.float64)
        if np.ndim(self.eps) == 0:
            return solve_one(L, y, lam + self.eps)
        sc = self._row_scales(lam)[cols]
        return solve_one(L * sc[:, None], y * sc, 1.0) * sc

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

    def next(self, blocks, coefs, update, iteration: int, lam: float, reimposed: bool):
        """The kernel after one feature update, from the blocks' shares.

        Without a shift the exact update from the summed ``Z^T Z`` (:meth:`next_exact`); with
        one (and on the first update, where ``K = I`` is ``eps = 1``) the randomized range
        finder on the summed ``X^T X P`` (:meth:`next_randomized`).
        """
        check_spectral(update)
        c = self.update_shift(lam, reimposed)
        if not np.any(c):
            return self.next_exact(
                blocks.factor_gram(coefs, self), update, blocks.n_rows, iteration
            )

        def gram(P):
            return blocks.range_gram(coefs, self, P, c)

        if self.rule is not None:  # the first update, from K = I: X = c A
            scale = float(np.mean(c))
            energy = scale**2 * blocks.stats(coefs, self)["sum_a2"]
            n, q = blocks.n_rows, self.rule.r_start + self.rule.oversample
            if n <= EXACT_ROWS and n**3 <= self.d * q * q:  # the exact spectrum is the cheaper
                gram = _exact_top(blocks.coefficients(coefs), scale, self.rule.r_max, self.dtype)
            return self.next_by_rule(gram, update, blocks.n_rows, iteration, energy, blocks, lam)
        return self.next_randomized(gram, update, blocks.n_rows, iteration)

    # The update in pieces: what a set of rows contributes (``factor_gram`` of their ``Z``, or
    # ``range_gram`` of their coefficients), computed by each block where its rows lie, and what
    # turns the sum over all rows into the next kernel (``next_exact``, ``next_randomized``).

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

        W = np.asarray(spmm(A, K_times(P.astype(dtype, copy=False)), n_threads), dtype=dtype)
        Y = np.asarray(spmm(At, W.astype(np.float64), n_threads))
        return Us.astype(np.float64) @ (U.T.astype(np.float64) @ Y) + c64 * Y

    def next_exact(self, ZtZ: np.ndarray, update, n_rows: int, iteration: int) -> FactoredKernel:
        """The next kernel from ``Z^T Z`` (``r x r``, summed over all rows; shift ``c = 0``).

        ``X = Z U^T``, so ``X^T X = U (Z^T Z) U^T``: its top eigenpairs come from ``eigh`` of
        the ``r x r`` matrix.
        """
        check_spectral(update)
        self._require_orthonormal("an exact update")
        r = min(self.rank, n_rows, self.d)
        with blas_threads(1):
            evals, V = scipy.linalg.eigh(np.asarray(ZtZ, dtype=np.float64), check_finite=False)
            order = np.argsort(evals)[::-1][:r]
            V = self.U @ V[:, order].astype(self.dtype)
        return self._updated(V, evals[order], update, n_rows, iteration, self.rank)

    def next_randomized(self, gram, update, n_rows: int, iteration: int) -> FactoredKernel:
        """The next kernel by a seeded randomized range finder on ``X^T X``.

        ``gram(P)`` returns ``X^T X P`` for a ``d x q`` block ``P`` (:meth:`range_gram` summed
        over all rows). From ``K = I`` (the first subspace, which decides what every later
        update can fit) with ``FIRST_PASSES`` passes and ``FIRST_OVERSAMPLE`` extra columns,
        else with one pass and ``OVERSAMPLE`` extra columns.
        """
        check_spectral(update)
        r = min(self.rank, n_rows, self.d)
        first = self.U.shape[1] == 0
        V, evals = self._subspace(gram, r, n_rows, iteration, first)
        return self._updated(V, evals, update, n_rows, iteration, r)

    def next_by_rule(
        self, gram, update, n_rows: int, iteration: int, energy: float, blocks, lam: float
    ) -> FactoredKernel:
        """The first update with the rank of ``rule``
        (:class:`~rfm_recsys.core.rank_rule.RankRule`), chosen from the first iterate's
        spectrum: ``energy`` its trace, ``blocks.row_length`` the rows' weighted length, ``lam``
        the ridge of the row fits."""
        check_spectral(update)
        rule = self.rule
        limit = min(n_rows, self.d)

        def subspace(r: int):
            if isinstance(gram, _ExactTop):
                return gram.top(min(r, limit))
            return self._subspace(gram, min(r, limit), n_rows, iteration, True, rule)

        rank, V, evals = rule.choose(subspace, limit, energy, blocks.row_length, lam)
        return self._updated(V, evals, update, n_rows, iteration, rank)

    def _subspace(self, gram, r: int, n_rows: int, iteration: int, first: bool, rule=None):
        passes, extra = (FIRST_PASSES, FIRST_OVERSAMPLE) if first else (1, OVERSAMPLE)
        if rule is not None:
            passes, extra = rule.passes, rule.oversample
        q = min(r + extra, n_rows, self.d)
        seed = None if self.random_state is None else (self.random_state, iteration, r)
        # One BLAS thread: these are thin products and QRs, where OpenBLAS's threads gain
        # little and, on a busy machine, lose tens of times over spinning (measured: a
        # 6,040 x 138 QR took 8 s with two threads under load, 0.1 s with one).
        with blas_threads(1):
            return top_eig_randomized(gram, self.d, q, r, self.dtype, seed, passes)

    def _updated(self, V, evals, update, n_rows: int, iteration: int, rank: int) -> FactoredKernel:
        k = update.spectrum(evals, n_rows, iteration, self.d)
        k = (1.0 - self.shift) * k
        check_finite(k, iteration)
        return FactoredKernel(
            np.ascontiguousarray(V, dtype=self.dtype),
            k.astype(self.dtype),
            self.shift,
            rank,
            self.shift,
            self.random_state,
        )

    def _require_orthonormal(self, what: str) -> None:
        if not self.orthonormal:
            raise ValueError(f"{what} needs an orthonormal U; this kernel keeps a Nystrom factor")

    def distance(self, other) -> float:
        if not isinstance(other, FactoredKernel):
            return DenseKernel(self.dense()).distance(other)
        self._require_orthonormal("the distance of factored kernels")
        other._require_orthonormal("the distance of factored kernels")
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
            "kernel_orthonormal": np.array(self.orthonormal),
        }


class FactoredCompletion:
    """``W = Z U^T + A diag(eps)`` with ``Z = A U diag(s)`` computed once (``n x r``)."""

    def __init__(self, kernel: FactoredKernel, A: sp.csr_matrix) -> None:
        self.kernel, self.A = kernel, A
        self.Z = np.asarray(spmm(A, kernel._scaled()), dtype=kernel.dtype)

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
        # ||Z_r U^T||^2 = Z_r (U^T U) Z_r^T, which is ||Z_r||^2 for an orthonormal U; the shift
        # adds the cross and A terms
        Z = self.Z.astype(np.float64)
        if self.kernel.orthonormal:
            sq = np.einsum("ij,ij->i", Z, Z)
        else:
            U64 = self.kernel.U.astype(np.float64)
            sq = np.einsum("ij,ij->i", Z @ (U64.T @ U64), Z)
        if self.kernel.has_eps:
            U = self.kernel.U.astype(np.float64)
            AU = np.asarray(self.A @ (self.kernel._eps_for(U) * U))  # A diag(e) U
            Ae = self.A.multiply(np.reshape(self.kernel.eps, (1, -1))).tocsr()  # A diag(e)
            A2 = np.asarray(Ae.multiply(Ae).sum(axis=1)).ravel()
            sq += 2 * np.einsum("ij,ij->i", Z, AU) + A2
        return np.sqrt(np.maximum(sq, 0.0))


class _ExactTop:
    """The top eigenpairs of ``X^T X`` for ``X = scale A`` with few rows, from ``eigh(X X^T)``."""

    def __init__(self, V: np.ndarray, evals: np.ndarray) -> None:
        self.V, self.evals = V, evals

    def top(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        return self.V[:, :r], self.evals[:r]


def _exact_top(A: sp.csr_matrix, scale: float, r_max: int, dtype) -> _ExactTop:
    n, d = A.shape
    k = min(r_max, n, d)
    A64 = sp.csr_matrix(A, dtype=np.float64) * scale
    with blas_threads(1):
        evals, W = scipy.linalg.eigh(
            (A64 @ A64.T).toarray(), subset_by_index=[n - k, n - 1], check_finite=False
        )
    order = np.argsort(evals)[::-1]
    order = order[evals[order] > 1e-12 * max(float(evals.max(initial=0.0)), 1e-300)]
    evals, W = evals[order], W[:, order]
    V = np.asarray(A64.T @ W) / np.sqrt(evals)  # right singular vectors of X
    return _ExactTop(np.ascontiguousarray(V, dtype=dtype), evals)
