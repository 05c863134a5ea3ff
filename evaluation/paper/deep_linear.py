"""Deep linear networks: the paper's comparison baseline, in numpy.

* :class:`DLNCompletion` -- matrix completion with a deep linear network
  ``X = W_depth ... W_2 W_1`` trained by gradient descent on the observed entries from a small
  random initialisation (the implicit low-rank bias studied by Gunasekar et al. 2017 and
  Arora, Cohen, Hu & Luo 2019).
* :class:`DiagonalLinearNetwork` -- sparse regression with ``beta = u^depth - v^depth``
  (elementwise) trained by gradient descent from ``u = v = init_scale``: the implicit ``l1``
  bias at small initialisation (Woodworth et al. 2020).

Both have no explicit regulariser: what they recover is decided by the gradient-descent path from
a small initialisation. Step sizes therefore matter only for stability and speed, not for the
answer, as long as the discrete path stays close to gradient flow. Both estimators use by default
an *adaptive* scalar step ``step_scale / lambda_t``, where ``lambda_t`` is an upper bound on the
local curvature (largest Hessian eigenvalue) computed from the current factors; a scalar,
time-varying step is a reparametrisation of time along the gradient-flow path, so it keeps the
implicit bias while escaping the flat region near the origin in ``O(log(1 / init_scale))``
steps instead of ``O(init_scale^-(depth - 2))``. A step that increases the training loss is
undone and ``step_scale`` halved (a safety net; it rarely triggers). A fixed ``lr`` can be
passed instead.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from rfm_recsys.params import AnyOf, Check, Constraint, Interval, Options, ParamsMixin

from .regression import _weighted_min_norm, check_matrix, check_vector

__all__ = ["DLNCompletion", "DiagonalLinearNetwork"]

_POSITIVE = Interval(0, None, closed="neither")
# (0, 2): a step of 2 / lambda or more overshoots even on a quadratic
_STEP_SCALE = Interval(0, 2, closed="neither")
_SEED = AnyOf(
    Options(None),
    Interval(0, None, integer=True),
    Check(lambda v: isinstance(v, np.random.Generator), "a numpy.random.Generator"),
)
_FLOAT_DTYPE = Check(
    lambda v: np.dtype(v) in (np.dtype(np.float32), np.dtype(np.float64)), "float32 or float64"
)


def _spectral_norm(matvec, rmatvec, v: np.ndarray, n_power: int) -> tuple[float, np.ndarray]:
    """A few warm-started power iterations on ``A^T A``; returns (||A||_2 estimate, vector)."""
    nv = float(np.linalg.norm(v))
    if nv == 0.0 or not np.isfinite(nv):
        return 0.0, v
    v = v / nv
    s = 0.0
    for _ in range(n_power):
        u = matvec(v)
        w = rmatvec(u)
        nw = float(np.linalg.norm(w))
        if nw == 0.0:
            return 0.0, v
        s = math.sqrt(nw)  # ||A^T A v|| -> sigma_max^2 as v converges
        v = w / nw
    return s, v


def _no_descent(lr: float | None) -> FloatingPointError:
    """The error when backtracking cannot find a step that lowers the loss."""
    if lr is not None:
        return FloatingPointError(
            f"gradient descent cannot decrease the training loss with lr={lr!r} even after "
            "halving the step 40 times: lower lr, or pass lr=None for the adaptive step"
        )
    return FloatingPointError(
        "gradient descent cannot decrease the training loss even with a tiny step: check the "
        "data for extreme values"
    )


def _check_int_array(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer indices; got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _observed_scale(r, c, v, n: int, d: int, rng: np.random.Generator) -> float:
    """``||Y||_2`` estimated from the zero-filled observations rescaled by the observed share."""
    frac = r.shape[0] / (n * d)
    Y0 = sp.csr_matrix((v, (r, c)), shape=(n, d))
    s_obs, _ = _spectral_norm(lambda x: Y0 @ x, lambda x: Y0.T @ x, rng.standard_normal(d), 30)
    return s_obs / frac if s_obs > 0 else 1.0


def _residual_pattern(r, c, y, n: int, d: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The sparse residual pattern ``G = P_Omega(X - Y)`` and ``y`` in its data order.

    ``G``'s data is overwritten in place every step; a CSR matrix built from entries sorted by
    (row, column) keeps that order for ``.data``.
    """
    order = np.lexsort((c, r))
    r, c, y = r[order], c[order], y[order]
    G = sp.csr_matrix((np.zeros(r.shape[0], dtype=y.dtype), (r, c)), shape=(n, d))
    G.sort_indices()
    assert G.nnz == r.shape[0]
    return G, y


def _descend(forward, factors, grads, base: float, step_scale: float, loss: float, lr):
    """One gradient step with backtracking: halve the step until the loss does not increase.

    Returns the step scale that worked, the number of halvings and the new
    ``(factors, U, residual, loss)``.
    """
    halvings = 0
    while True:
        step = step_scale * base
        trial = [W - step * gW for W, gW in zip(factors, grads)]
        U_t, res_t = forward(trial)
        loss_t = 0.5 * float(res_t @ res_t)
        if np.isfinite(loss_t) and loss_t <= loss * (1 + 1e-12) + 1e-300:
            return step_scale, halvings, (trial, U_t, res_t, loss_t)
        step_scale *= 0.5
        halvings += 1
        if step_scale < 1e-12:
            raise _no_descent(lr)


def _lipschitz_step(
    factors: list[np.ndarray], G: sp.csr_matrix, pw_vecs: list[np.ndarray], pw_g: np.ndarray
) -> tuple[float, np.ndarray]:
    """``1 / L`` for a local Lipschitz bound ``L`` of the gradient, from spectral norms.

    The norms come from two power iterations warm-started at the previous step's vectors
    (``pw_vecs`` is updated in place; the residual's vector is returned).
    """
    n_power = 2
    snorms = []
    for k, W in enumerate(factors):
        s_k, pw_vecs[k] = _spectral_norm(
            lambda x, W=W: W @ x, lambda x, W=W: W.T @ x, pw_vecs[k], n_power
        )
        snorms.append(max(s_k, 1e-300))
    g_norm, pw_g = _spectral_norm(lambda x: G @ x, lambda x: G.T @ x, pw_g, n_power)
    L = len(factors)
    P = math.prod(snorms)
    gn = sum((P / s) ** 2 for s in snorms)
    cross = 0.0
    if L > 1:
        cross = g_norm * max(
            sum(P / (snorms[k] * snorms[j]) for j in range(L) if j != k) for k in range(L)
        )
    lam = 1.1 * (gn + cross)  # 1.1: power iteration under-estimates norms
    return (1.0 / lam if lam > 0 else 1.0), pw_g


class DLNCompletion(ParamsMixin):
    r"""Matrix completion with a deep linear network trained by gradient descent.

    The completed ``n x d`` matrix is the product ``X = W_L ... W_2 W_1`` (``L = depth``) with
    ``W_1`` of shape ``(h, d)``, ``W_L`` of shape ``(n, h)`` and the others ``(h, h)``
    (``h = width``). Gradient descent minimises the unregularised loss on the observed set
    ``Omega``::

        f(W) = 0.5 * sum_{(i, j) in Omega} (X_ij - Y_ij)^2
        grad_{W_k} f = (W_L ... W_{k+1})^T  G  (W_{k-1} ... W_1)^T,   G = P_Omega(X - Y)

    from a small random initialisation; the low-rank solution is selected by the implicit bias of
    that path (for depth >= 2, stronger with depth).

    **Scaling.** The targets are divided by ``s = ||P_Omega(Y)||_2 / (|Omega| / (n d))`` (the
    usual estimate of ``||Y||_2`` from the zero-filled, rescaled observations), so the normalised
    target has spectral norm about 1; predictions are multiplied back. Each factor starts with
    i.i.d. ``N(0, init_scale^2 / max(rows, cols))`` entries, i.e. spectral norm about
    ``init_scale`` to ``2 init_scale``; the initial product is of order ``init_scale^L`` relative
    to ``Y``.

    **Step size.** With ``lr=None`` the step is ``step_scale / lambda_t`` with the curvature
    bound (``s_k = ||W_k||_2`` by warm-started power iteration, ``P = prod_k s_k``)::

        lambda_t = sum_k (P / s_k)^2 + ||G||_2 * max_k sum_{j != k} P / (s_k s_j)

    (Gauss-Newton term plus the residual term of the Hessian). Near a solution this is about
    ``L * sigma_max(Y)^(2 - 2/L)``, the classical stable step; near the origin it lets the
    factors grow by a constant factor per step. A step that raises the loss is undone and
    ``step_scale`` halved. With a float ``lr`` that fixed step (on the normalised problem) is
    used, with the same safety net.

    **Stopping.** After ``n_iter`` steps or when the relative training residual
    ``||P_Omega(X - Y)||_F / ||P_Omega(Y)||_F`` falls below ``tol`` (training data only).

    Args:
        depth: Number of factors ``L >= 1`` (1 is plain gradient descent on ``X``, no low-rank
            bias; 2 and 3 are the usual choices).
        width: Inner width ``h``; ``None`` uses ``min(n, d)`` (full width, so the
            parametrisation does not restrict the rank; ``d`` for a square matrix).
        init_scale: Scale of the initial factors relative to the normalised target.
        lr: Fixed step size, or ``None`` for the adaptive step.
        step_scale: Fraction of ``1 / lambda_t`` used by the adaptive step, in ``(0, 2)``.
        n_iter: Maximum number of gradient steps.
        tol: Relative training residual at which to stop.
        log_every: Record the training loss every this many steps (and at the last one).
        random_state: Seed or ``numpy.random.Generator`` for the initialisation.
        dtype: Floating dtype of the factors (``float64`` or ``float32``).

    Attributes:
        factors_: List ``[W_1, ..., W_L]`` on the normalised scale.
        scale_: The target scale ``s`` (predictions are ``s * X``).
        shape_: ``(n, d)``.
        n_iter_: Steps taken.
        history_: List of dicts ``{"iteration", "loss", "rel_residual", "step"}`` with ``loss``
            the training loss ``0.5 * sum (X_ij - Y_ij)^2`` in the original units.
        converged_: Whether ``tol`` was reached.
        fit_time_: Wall-clock seconds spent in :meth:`fit`.
    """

    def __init__(
        self,
        depth: int = 2,
        width: int | None = None,
        init_scale: float = 1e-3,
        lr: float | None = None,
        step_scale: float = 0.5,
        n_iter: int = 20000,
        tol: float = 1e-6,
        log_every: int = 10,
        random_state: int | np.random.Generator | None = None,
        dtype: Any = np.float64,
    ) -> None:
        self.depth = depth
        self.width = width
        self.init_scale = init_scale
        self.lr = lr
        self.step_scale = step_scale
        self.n_iter = n_iter
        self.tol = tol
        self.log_every = log_every
        self.random_state = random_state
        self.dtype = dtype

    # ---------------------------------------------------------------- input handling
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "depth": Interval(1, None, integer=True),
        "width": AnyOf(Options(None), Interval(1, None, integer=True)),
        "init_scale": _POSITIVE,
        "lr": AnyOf(Options(None), _POSITIVE),
        "step_scale": _STEP_SCALE,
        "n_iter": Interval(1, None, integer=True),
        "tol": Interval(0, None),
        "log_every": Interval(1, None, integer=True),
        "random_state": _SEED,
        "dtype": _FLOAT_DTYPE,
    }

    @staticmethod
    def _observations(
        rows: Any, cols: Any, values: Any, shape: tuple[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        if sp.issparse(rows):
            if cols is not None or values is not None:
                raise ValueError(
                    "pass either a scipy sparse matrix alone or rows, cols, values (and shape), "
                    "not both"
                )
            coo = sp.coo_matrix(rows)
            coo.sum_duplicates()
            r, c, v = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
            shape = coo.shape if shape is None else tuple(shape)
            if tuple(shape) != coo.shape:
                raise ValueError(f"shape {shape} does not match the sparse matrix's {coo.shape}")
        else:
            if cols is None or values is None:
                raise ValueError(
                    "fit needs either a scipy sparse matrix of observed entries or the three "
                    "arrays rows, cols, values (plus shape)"
                )
            r = _check_int_array(rows, "rows")
            c = _check_int_array(cols, "cols")
            v = check_vector(values, None, "values")
            if not (r.shape[0] == c.shape[0] == v.shape[0]):
                raise ValueError(
                    f"rows, cols and values must have the same length; got {r.shape[0]}, "
                    f"{c.shape[0]}, {v.shape[0]}"
                )
            if shape is None:
                if r.size == 0:
                    raise ValueError("no observed entries: pass at least one (row, col, value)")
                shape = (int(r.max()) + 1, int(c.max()) + 1)
        n, d = int(shape[0]), int(shape[1])
        if n <= 0 or d <= 0:
            raise ValueError(f"shape must be positive; got {shape}")
        if r.size == 0:
            raise ValueError(
                "no observed entries: the matrix has nothing to fit. Pass at least one entry."
            )
        if not np.all(np.isfinite(v)):
            raise ValueError("values contain NaN or infinite entries: drop them before fit")
        if r.min() < 0 or r.max() >= n or c.min() < 0 or c.max() >= d:
            raise ValueError(
                f"row/column indices out of range for shape {(n, d)} (rows in "
                f"[{r.min()}, {r.max()}], cols in [{c.min()}, {c.max()}]): pass shape= large "
                "enough or fix the indices"
            )
        key = r * d + c
        if np.unique(key).size != key.size:
            raise ValueError(
                "duplicate (row, col) pairs among the observations: keep one value per entry "
                "(e.g. average the duplicates) before fit"
            )
        return r, c, v.astype(np.float64), (n, d)

    # ---------------------------------------------------------------- model pieces
    def _row_embedding(self, factors: list[np.ndarray]) -> np.ndarray:
        """``U = W_L ... W_2`` (``n x h``); for depth 1 this is the identity (``n x n``)."""
        if len(factors) == 1:
            return np.eye(factors[0].shape[0], dtype=factors[0].dtype)
        U = factors[-1]
        for W in reversed(factors[1:-1]):
            U = U @ W
        return U

    @staticmethod
    def _entries(U: np.ndarray, V: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``(U V)[rows, cols]`` for arbitrary pairs without forming ``U V`` (chunked gather)."""
        out = np.empty(rows.shape[0], dtype=U.dtype)
        Vt = np.ascontiguousarray(V.T)
        step = max(1, (32 * 2**20) // max(1, 16 * U.shape[1]))
        for s in range(0, rows.shape[0], step):
            e = min(rows.shape[0], s + step)
            out[s:e] = np.einsum("ij,ij->i", U[rows[s:e]], Vt[cols[s:e]])
        return out

    @staticmethod
    def _entries_csr(
        U: np.ndarray, V: np.ndarray, indptr: np.ndarray, indices: np.ndarray
    ) -> np.ndarray:
        """``(U V)`` at a CSR pattern, in CSR data order, from dense row blocks of ``U V``.

        A dense block product is BLAS-3 and, measured, several times faster than gathering rows
        of ``U`` and columns of ``V`` per entry even at a few percent observed; blocks keep the
        scratch under about 64 MB.
        """
        n, d = U.shape[0], V.shape[1]
        out = np.empty(indices.shape[0], dtype=U.dtype)
        rows_per = max(1, (64 * 2**20) // max(1, 8 * d))
        for s in range(0, n, rows_per):
            e = min(n, s + rows_per)
            lo, hi = indptr[s], indptr[e]
            if hi == lo:
                continue
            block = U[s:e] @ V
            local = np.repeat(np.arange(e - s), np.diff(indptr[s : e + 1]))
            out[lo:hi] = block[local, indices[lo:hi]]
        return out

    @staticmethod
    def _gradients(factors: list[np.ndarray], U: np.ndarray, G: sp.csr_matrix) -> list[np.ndarray]:
        """Gradients of ``0.5 ||P_Omega(W_L ... W_1) - Y||^2`` with respect to every factor.

        ``dV = U^T G`` (h x d) for the first factor and ``dU = G V^T`` (n x h) pushed through
        the others by the chain rule, with prefix products instead of repeated multiplications.
        """
        L = len(factors)
        grads: list[np.ndarray] = [None] * L  # type: ignore[list-item]
        grads[0] = (G.T @ U).T if L > 1 else G.toarray()
        if L == 1:
            return grads
        dU = G @ factors[0].T
        # prefix products: left[k] = W_L ... W_{k+1}, right[k] = W_{k-1} ... W_2
        right: list[np.ndarray | None] = [None] * L
        acc = None
        for k in range(1, L):
            right[k] = acc
            acc = factors[k] if acc is None else factors[k] @ acc
        left = None
        for k in range(L - 1, 0, -1):
            g = dU if left is None else left.T @ dU
            grads[k] = g if right[k] is None else g @ right[k].T
            left = factors[k] if left is None else left @ factors[k]
        return grads

    # ---------------------------------------------------------------- fit
    def fit(
        self,
        rows: Any,
        cols: Any = None,
        values: Any = None,
        shape: tuple[int, int] | None = None,
    ) -> Self:
        """Fit on observed entries.

        Args:
            rows: Row indices of the observed entries, or a scipy sparse matrix whose stored
                entries are the observations (explicit zeros count as observed zeros).
            cols: Column indices (omit with a sparse matrix).
            values: Observed values (omit with a sparse matrix).
            shape: ``(n, d)``; defaults to the sparse matrix's shape or ``(max row + 1,
                max col + 1)``.

        Returns:
            ``self``.
        """
        t0 = time.perf_counter()
        self._validate_params()
        r, c, v, (n, d) = self._observations(rows, cols, values, shape)
        dtype = np.dtype(self.dtype)
        L = int(self.depth)
        h = int(self.width) if self.width is not None else min(n, d)

        rng = np.random.default_rng(self.random_state)
        scale = _observed_scale(r, c, v, n, d, rng)
        y = (v / scale).astype(dtype)
        y_norm = float(np.linalg.norm(y)) or 1.0

        dims = [d] + [h] * (L - 1) + [n]  # W_k has shape (dims[k+1], dims[k])
        factors = [
            (
                rng.standard_normal((dims[k + 1], dims[k]))
                * (self.init_scale / math.sqrt(max(dims[k], dims[k + 1])))
            ).astype(dtype)
            for k in range(L)
        ]
        G, y = _residual_pattern(r, c, y, n, d)

        pw_vecs = [rng.standard_normal(W.shape[1]).astype(dtype) for W in factors]
        pw_g = rng.standard_normal(d).astype(dtype)

        def forward(fs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            U = self._row_embedding(fs)
            res = self._entries_csr(U, fs[0], G.indptr, G.indices) - y
            return U, res

        U, res = forward(factors)
        loss = 0.5 * float(res @ res)
        step_scale = float(self.step_scale)
        history: list[dict[str, float]] = []
        converged = False
        it = 0
        step = float("nan")

        def log(i: int) -> None:
            history.append(
                {
                    "iteration": i,
                    "loss": loss * scale**2,
                    "rel_residual": math.sqrt(2 * loss) / y_norm,
                    "step": step,
                }
            )

        log(0)
        n_backtrack = 0
        while it < self.n_iter:
            if math.sqrt(2 * loss) / y_norm < self.tol:
                converged = True
                break
            G.data[:] = res
            grads = self._gradients(factors, U, G)
            if self.lr is None:
                base, pw_g = _lipschitz_step(factors, G, pw_vecs, pw_g)
            else:
                base = float(self.lr) / float(self.step_scale)
            step_scale, halvings, (factors, U, res, loss) = _descend(
                forward, factors, grads, base, step_scale, loss, self.lr
            )
            step = step_scale * base
            n_backtrack += halvings
            it += 1
            if it % self.log_every == 0:
                log(it)
        else:
            converged = math.sqrt(2 * loss) / y_norm < self.tol
        if not history or history[-1]["iteration"] != it:
            log(it)

        self.factors_, self._U, self.scale_, self.shape_, self.width_ = factors, U, scale, (n, d), h
        self.n_iter_, self.history_, self.converged_ = it, history, converged
        self.n_backtracks_ = n_backtrack
        self.fit_time_ = time.perf_counter() - t0
        return self

    # ---------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "factors_"):
            raise RuntimeError("this DLNCompletion is not fitted yet: call fit(...) first")

    def predict(self, rows: Any, cols: Any) -> np.ndarray:
        """Predicted entries ``X[rows, cols]`` in the original units, shape ``(len(rows),)``."""
        self._check_fitted()
        r = _check_int_array(rows, "rows")
        c = _check_int_array(cols, "cols")
        if r.shape != c.shape:
            raise ValueError(
                f"rows and cols must have the same length; got {r.shape[0]} and {c.shape[0]}"
            )
        n, d = self.shape_
        if r.size and (r.min() < 0 or r.max() >= n or c.min() < 0 or c.max() >= d):
            raise ValueError(f"row/column indices out of range for the fitted shape {(n, d)}")
        return self._entries(self._U, self.factors_[0], r, c).astype(np.float64) * self.scale_

    def completed(self) -> np.ndarray:
        """The full completed ``n x d`` matrix (dense; for small problems)."""
        self._check_fitted()
        return (self._U @ self.factors_[0]).astype(np.float64) * self.scale_


class DiagonalLinearNetwork(ParamsMixin):
    r"""Sparse regression with a diagonal linear network ``beta = u^L - v^L``.

    Gradient descent on ``f(u, v) = (1 / (2 n)) ||X (u^L - v^L) - y||^2`` (powers
    elementwise, ``L = depth``) from ``u = v = init_scale`` (so ``beta = 0``)::

        g = X^T (X beta - y) / n
        u <- u - lr_t * L u^(L-1) * g,      v <- v + lr_t * L v^(L-1) * g

    For small ``init_scale`` gradient flow converges to (nearly) the minimum-``l1``-norm
    interpolant (Woodworth et al. 2020, depth 2; deeper networks interpolate between ``l1``
    and a sparser bias). The ``u^L - v^L`` form lets ``beta`` take either sign while
    ``u, v >= 0``.

    **Scaling.** ``init_scale`` is relative to ``b = max_j |beta_mn_j|`` with ``beta_mn`` the
    least-norm interpolant: ``u`` and ``v`` start at ``init_scale * b^(1/L)``, which makes the
    estimator invariant to rescaling ``y``.

    **Step size.** With ``lr=None``, ``lr_t = step_scale / lambda_t`` with the curvature bound
    (``H = X^T X / n``, ``a_j = u_j^(L-1)``, ``c_j = v_j^(L-1)``)::

        lambda_t = L^2 ||H||_2 max_j (a_j^2 + c_j^2) + L (L - 1) max_j (u_j^(L-2) + v_j^(L-2)) |g_j|

    A step that raises the loss is undone and ``step_scale`` halved.

    Args:
        depth: ``L >= 2``.
        init_scale: Initial ``u = v`` relative to the problem scale (smaller = closer to the
            ``l1`` solution, slower).
        lr: Fixed step or ``None`` for the adaptive step.
        step_scale: Fraction of ``1 / lambda_t``, in ``(0, 2)``.
        n_iter: Maximum number of steps.
        tol: Stop when the relative training residual ``||X beta - y|| / ||y||`` < ``tol``.
        fit_intercept: Fit an unpenalised intercept by centring.

    Attributes:
        coef_, intercept_: As usual.
        n_iter_: Steps taken.
        history_: Relative training residual every 100 steps (and at the end).
        converged_: Whether ``tol`` was reached.
    """

    def __init__(
        self,
        depth: int = 2,
        init_scale: float = 1e-3,
        lr: float | None = None,
        step_scale: float = 0.5,
        n_iter: int = 100000,
        tol: float = 1e-9,
        fit_intercept: bool = False,
    ) -> None:
        self.depth = depth
        self.init_scale = init_scale
        self.lr = lr
        self.step_scale = step_scale
        self.n_iter = n_iter
        self.tol = tol
        self.fit_intercept = fit_intercept

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "depth": Interval(2, None, integer=True),  # depth 1 is plain least squares
        "init_scale": _POSITIVE,
        "lr": AnyOf(Options(None), _POSITIVE),
        "step_scale": _STEP_SCALE,
        "n_iter": Interval(1, None, integer=True),
        "tol": Interval(0, None),
        "fit_intercept": Options(True, False),
    }

    def fit(self, X: Any, y: Any) -> Self:
        """Fit the model (see the class docstring); returns ``self``."""
        self._validate_params()
        X = check_matrix(X, "X")
        y = check_vector(y, X.shape[0], "y")
        if self.fit_intercept:
            x_mean, y_mean = X.mean(axis=0), float(y.mean())
            Xc, yc = X - x_mean, y - y_mean
        else:
            x_mean, y_mean = np.zeros(X.shape[1]), 0.0
            Xc, yc = X, y
        beta = self._fit_centred(Xc, yc)
        self.coef_ = beta
        self.intercept_ = float(y_mean - x_mean @ beta) if self.fit_intercept else 0.0
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_centred(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        n, d = X.shape
        L = int(self.depth)
        y_norm = float(np.linalg.norm(y))
        if y_norm == 0.0:
            self.n_iter_, self.history_, self.converged_ = 0, [], True
            return np.zeros(d)
        b = float(np.max(np.abs(_weighted_min_norm(X, y, np.ones(d), 0.0))))
        b = b if b > 0 else 1.0
        ys = y / b  # solve for beta / b
        H_norm = float(np.linalg.norm(X, 2)) ** 2 / n
        u = np.full(d, float(self.init_scale))
        v = u.copy()

        def residual(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            return X @ (u**L - v**L) - ys

        res = residual(u, v)
        loss = 0.5 * float(res @ res) / n
        ys_norm = y_norm / b
        step_scale = float(self.step_scale)
        history: list[float] = []
        converged = False
        it = 0
        while it < self.n_iter:
            rel = math.sqrt(2 * n * loss) / ys_norm
            if it % 100 == 0:
                history.append(rel)
            if rel < self.tol:
                converged = True
                break
            g = X.T @ res / n
            du = L * u ** (L - 1) * g
            dv = -L * v ** (L - 1) * g
            if self.lr is None:
                a2 = u ** (2 * L - 2) + v ** (2 * L - 2)
                lam = L * L * H_norm * float(a2.max())
                if L > 1:
                    lam += L * (L - 1) * float(np.max((u ** (L - 2) + v ** (L - 2)) * np.abs(g)))
                base = 1.0 / lam
            else:
                base = float(self.lr) / float(self.step_scale)
            while True:
                step = step_scale * base
                u_t, v_t = u - step * du, v - step * dv
                res_t = residual(u_t, v_t)
                loss_t = 0.5 * float(res_t @ res_t) / n
                if np.isfinite(loss_t) and loss_t <= loss * (1 + 1e-12) + 1e-300:
                    break
                step_scale *= 0.5
                if step_scale < 1e-12:
                    raise _no_descent(self.lr)
            u, v, res, loss = u_t, v_t, res_t, loss_t
            it += 1
        history.append(math.sqrt(2 * n * loss) / ys_norm)
        self.n_iter_, self.history_, self.converged_ = it, history, converged
        return (u**L - v**L) * b

    def predict(self, X: Any) -> np.ndarray:
        """Predict ``X @ coef_ + intercept_``."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("this DiagonalLinearNetwork is not fitted yet: call fit(X, y) first")
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features but the model was fitted with {self.n_features_in_}"
            )
        return X @ self.coef_ + self.intercept_
