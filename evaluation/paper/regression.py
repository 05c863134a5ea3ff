"""Sparse linear regression with lin-RFM and its baselines (numpy/scipy only).

With ``n < d`` samples a linear model ``y = X beta`` has infinitely many interpolants; the
estimators here pick a sparse one. All follow the scikit-learn conventions (``fit(X, y)``,
``predict(X)``, ``coef_``, ``intercept_``, ``get_params``/``set_params``, ``score``) without
depending on scikit-learn.

* :class:`LinRFMRegressor` -- lin-RFM with a diagonal feature matrix (Radhakrishnan, Belkin &
  Drusvyatskiy, PNAS 2025). Equivalent to IRLS for an ``l_p`` quasi-norm with ``p = 2 - 2 power``.
* :class:`IRLSRegressor` -- IRLS-p with a decreasing smoothing parameter (Daubechies, DeVore,
  Fornasier & Guentuerk 2010; Mohan & Fazel 2012 for the schedule).
* :class:`BasisPursuitRegressor` -- ``min ||beta||_1 s.t. X beta = y`` as a linear programme
  (scipy HiGHS), the reference ``l1`` recovery baseline.
* :class:`LassoRegressor` -- ``l1``-penalised least squares by FISTA with adaptive restart.

The mapping between lin-RFM and IRLS (derived in :class:`LinRFMRegressor`): lin-RFM's feature
matrix ``M = diag(|beta|^(2 power))`` is the inverse of the IRLS weight ``|beta|^(p - 2)``, so
``p = 2 - 2 power``: ``power = 1`` is ``p = 0`` (the log / counting surrogate) and
``power = 1/2`` is ``p = 1`` (the ``l1`` norm).

Intercepts (``fit_intercept=True``) are handled for every estimator by centring ``X`` and ``y``
(exactly an unpenalised intercept for equality constraints and squared losses) and setting
``intercept_ = mean(y) - mean(X) @ coef_``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np
import scipy.linalg
import scipy.optimize

from rfm_recsys.params import Constraint, Interval, Options, ParamsMixin

__all__ = [
    "BasisPursuitRegressor",
    "IRLSRegressor",
    "LassoRegressor",
    "LinRFMRegressor",
    "lin_rfm_power_to_p",
    "p_to_lin_rfm_power",
]


def lin_rfm_power_to_p(power: float) -> float:
    """The ``l_p`` exponent that lin-RFM with a diagonal feature matrix and ``power`` minimises.

    ``M = |beta|^(2 power)`` is the inverse IRLS weight ``|beta|^(p - 2)``, hence
    ``p = 2 - 2 power``.
    """
    return 2.0 - 2.0 * float(power)


def p_to_lin_rfm_power(p: float) -> float:
    """Inverse of :func:`lin_rfm_power_to_p`: ``power = 1 - p / 2``."""
    return 1.0 - float(p) / 2.0


# --------------------------------------------------------------------------------------------
# Input validation (shared with evaluation.paper.deep_linear)
# --------------------------------------------------------------------------------------------


def _first_bad(a: np.ndarray) -> str:
    idx = np.argwhere(~np.isfinite(a))[0]
    return ", ".join(str(int(i)) for i in idx)


def check_matrix(X: Any, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite 2-D float64 array or raise an error naming the problem and fix."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a numeric array-like of shape (n_samples, n_features); converting it "
            f"to float failed ({exc}). Pass a numpy array of numbers."
        ) from None
    if arr.ndim != 2:
        hint = (
            f" Use {name}.reshape(-1, 1) for a single feature or {name}.reshape(1, -1) for a "
            "single sample."
            if arr.ndim == 1
            else ""
        )
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got {arr.ndim}-D with shape "
            f"{arr.shape}.{hint}"
        )
    if arr.shape[0] == 0:
        raise ValueError(
            f"{name} has 0 samples (shape {arr.shape}): fitting and predicting need at least one "
            "row. Check the data loading or filtering step that produced it."
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {arr.shape}): pass at least one column.")
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s) (first at row, column "
            f"{_first_bad(arr)}): drop those rows or impute the values before calling this method."
        )
    return arr


def check_vector(y: Any, n: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as a finite 1-D float64 array of length ``n`` (``(n, 1)`` is flattened)."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a numeric 1-D array-like; converting it to float failed ({exc})."
        ) from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one target per sample); got shape {arr.shape}. These "
            "estimators fit a single target: pass y[:, k] for target k."
        )
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"X has {n} rows but {name} has {arr.shape[0]} entries: pass exactly one target per "
            "row of X."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: fitting needs at least one target value.")
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s) (first at index {_first_bad(arr)}): "
            "drop those samples (and the matching rows of X) before calling fit."
        )
    return arr


# --------------------------------------------------------------------------------------------
# Shared estimator plumbing
# --------------------------------------------------------------------------------------------


class _LinearRegressorBase(ParamsMixin):
    """Common ``fit``/``predict``/``score`` plumbing; subclasses implement ``_fit_centred``."""

    fit_intercept: bool

    def fit(self, X: Any, y: Any) -> Self:
        """Fit the model.

        Args:
            X: Design matrix, shape ``(n_samples, n_features)``, finite.
            y: Targets, shape ``(n_samples,)``, finite.

        Returns:
            The fitted estimator (``self``).
        """
        self._validate_params()
        X = check_matrix(X, "X")
        y = check_vector(y, X.shape[0], "y")
        if self.fit_intercept:
            x_mean = X.mean(axis=0)
            y_mean = float(y.mean())
            Xc, yc = X - x_mean, y - y_mean
        else:
            x_mean = np.zeros(X.shape[1])
            y_mean = 0.0
            Xc, yc = X, y
        coef = self._fit_centred(Xc, yc)
        self.coef_ = coef
        self.intercept_ = float(y_mean - x_mean @ coef) if self.fit_intercept else 0.0
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_centred(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Predict ``X @ coef_ + intercept_``; returns shape ``(n_samples,)``."""
        if not hasattr(self, "coef_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted yet: call fit(X, y) before predict"
            )
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features but the model was fitted with "
                f"{self.n_features_in_}: pass the same columns as in fit"
            )
        return X @ self.coef_ + self.intercept_

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R^2 of the predictions (1 is perfect)."""
        X = check_matrix(X, "X")
        y = check_vector(y, X.shape[0], "y")
        resid = y - self.predict(X)
        denom = float(np.sum((y - y.mean()) ** 2))
        return 1.0 - float(resid @ resid) / denom if denom > 0 else float("nan")


def _weighted_min_norm(X: np.ndarray, y: np.ndarray, m: np.ndarray, reg: float) -> np.ndarray:
    """``beta = M X^T (X M X^T + reg I)^-1 y`` with ``M = diag(m)``, ``m >= 0``.

    This is kernel ridge regression with the linear kernel ``x^T M x``; as ``reg -> 0`` it is
    ``argmin sum_j beta_j^2 / m_j`` subject to ``X beta = y``. Uses the ``n x n`` dual when
    ``n <= d`` and the equivalent ``d x d`` primal ``S (S X^T X S + reg I)^-1 S X^T y``
    (``S = M^(1/2)``, push-through identity) otherwise. Singular systems (``reg = 0``) fall back
    to a least-squares solve.
    """
    n, d = X.shape
    if n <= d:
        K = (X * m) @ X.T
        if reg > 0:
            K[np.diag_indices_from(K)] += reg
        try:
            c, low = scipy.linalg.cho_factor(K, check_finite=False)
            alpha = scipy.linalg.cho_solve((c, low), y, check_finite=False)
        except np.linalg.LinAlgError:
            alpha = scipy.linalg.lstsq(K, y, check_finite=False, lapack_driver="gelsd")[0]
        return m * (X.T @ alpha)
    s = np.sqrt(m)
    Xs = X * s
    H = Xs.T @ Xs
    if reg > 0:
        H[np.diag_indices_from(H)] += reg
    rhs = Xs.T @ y
    try:
        c, low = scipy.linalg.cho_factor(H, check_finite=False)
        z = scipy.linalg.cho_solve((c, low), rhs, check_finite=False)
    except np.linalg.LinAlgError:
        z = scipy.linalg.lstsq(H, rhs, check_finite=False, lapack_driver="gelsd")[0]
    return s * z


def _rel_change(new: np.ndarray, old: np.ndarray) -> float:
    denom = max(float(np.linalg.norm(new)), np.finfo(float).tiny)
    return float(np.linalg.norm(new - old)) / denom


# --------------------------------------------------------------------------------------------
# lin-RFM
# --------------------------------------------------------------------------------------------


class LinRFMRegressor(_LinearRegressorBase):
    r"""lin-RFM for sparse linear regression (diagonal feature matrix).

    The feature matrix is ``M = diag(m)``, starting from the identity. Each iteration

    1. solves kernel ridge regression with the linear kernel ``k(x, x') = x^T M x``; in the
       dual (used when ``n <= d``)::

           alpha = (X M X^T + reg I)^-1 y,        beta = M X^T alpha

       (the predictor is ``f(x) = beta^T x``; as ``reg -> 0``, ``beta`` is the interpolant
       minimising ``sum_j beta_j^2 / m_j``);
    2. computes the AGOP of ``f``: its gradient is ``beta`` at every ``x``, so the AGOP is
       ``beta beta^T`` and its diagonal is ``beta^2``;
    3. updates ``m <- max((beta^2 / max_j beta_j^2)^power, epsilon)``.

    **Normalisation.** A constant factor on ``M`` only rescales ``reg``, so ``m`` is divided by
    its largest entry (``max_j m_j = 1``) at every iteration; ``reg`` is therefore the ridge
    relative to a kernel whose heaviest coordinate has weight 1 (for noise-free data keep it
    tiny, e.g. the default ``1e-8``).

    **Floor ``epsilon``.** Without it a coordinate with ``beta_j = 0`` gets ``m_j = 0`` and can
    never re-enter (it is then excluded from every later kernel). ``m_j >= epsilon`` keeps every
    coordinate available: a coordinate that the data need grows back geometrically, one that
    they do not stays at ``|beta_j| ~ epsilon |x_j^T alpha|``, i.e. it bounds the accuracy on the
    zero coordinates from below (``1e-12`` relative by default).

    **Relation to IRLS.** IRLS for ``min ||beta||_p^p s.t. X beta = y`` solves the weighted
    least-norm problem ``min sum_j w_j beta_j^2`` with ``w_j = |beta_j|^(p - 2)`` from the
    previous iterate, whose solution is ``W^-1 X^T (X W^-1 X^T)^-1 y``: step 1 with
    ``M = W^-1``. lin-RFM sets ``m_j = |beta_j|^(2 power)``, so ``2 power = 2 - p``, i.e.
    ``p = 2 - 2 power``: ``power = 1`` is IRLS-0 (``sum log|beta_j|``, the sparsest-solution
    surrogate, fast local convergence), ``power = 1/2`` is IRLS-1 (``l1``, basis pursuit in the
    limit). The floor ``epsilon`` plays the role of IRLS's smoothing parameter, but fixed.

    Args:
        power: Exponent ``s`` of the AGOP diagonal (``M = diag(beta^2)^s``), ``> 0``.
        reg: Ridge ``reg`` in the kernel system, ``>= 0`` (``0`` = exact interpolation, solved
            by least squares if the system is singular).
        n_iter: Maximum number of iterations (each is one kernel solve).
        tol: Stop when ``||beta_k - beta_{k-1}|| / ||beta_k|| < tol``.
        fit_intercept: Fit an unpenalised intercept by centring ``X`` and ``y``.
        epsilon: Floor on the normalised feature weights ``m_j``, in ``[0, 1)``.

    Attributes:
        coef_: Fitted coefficients, shape ``(n_features,)``.
        intercept_: Fitted intercept (``0.0`` if ``fit_intercept=False``).
        feature_weights_: Final diagonal ``m`` of the feature matrix (max 1).
        n_iter_: Number of iterations run.
        history_: Relative change of ``beta`` at each iteration.
        converged_: Whether the ``tol`` criterion was met before ``n_iter``.
    """

    def __init__(
        self,
        power: float = 1.0,
        reg: float = 1e-8,
        n_iter: int = 100,
        tol: float = 1e-8,
        fit_intercept: bool = False,
        epsilon: float = 1e-12,
    ) -> None:
        self.power = power
        self.reg = reg
        self.n_iter = n_iter
        self.tol = tol
        self.fit_intercept = fit_intercept
        self.epsilon = epsilon

    @property
    def p_equivalent(self) -> float:
        """The IRLS exponent this ``power`` corresponds to: ``p = 2 - 2 power``."""
        return lin_rfm_power_to_p(self.power)

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "power": Interval(0, None, closed="neither"),
        "reg": Interval(0, None),
        "n_iter": Interval(1, None, integer=True),
        "tol": Interval(0, None),
        "fit_intercept": Options(True, False),
        # the weights are normalised to a maximum of 1, so a floor of 1 would freeze them
        "epsilon": Interval(0, 1, closed="left"),
    }

    def _fit_centred(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = X.shape[1]
        m = np.ones(d)
        beta = _weighted_min_norm(X, y, m, self.reg)
        history: list[float] = []
        converged = False
        it = 1
        while it < self.n_iter:
            b2 = beta * beta
            top = float(b2.max())
            if top == 0.0:  # y is (numerically) zero: the zero vector is the answer
                converged = True
                break
            m = np.maximum((b2 / top) ** self.power, self.epsilon)
            new = _weighted_min_norm(X, y, m, self.reg)
            it += 1
            change = _rel_change(new, beta)
            history.append(change)
            beta = new
            if change < self.tol:
                converged = True
                break
        self.feature_weights_ = m
        self.n_iter_ = it
        self.history_ = history
        self.converged_ = converged
        return beta


# --------------------------------------------------------------------------------------------
# IRLS-p
# --------------------------------------------------------------------------------------------


class IRLSRegressor(_LinearRegressorBase):
    r"""IRLS-p for sparse recovery with a decreasing smoothing parameter.

    Approximately solves ``min ||beta||_p^p s.t. X beta = y`` (``0 <= p <= 1``; ``p = 0`` is
    the ``sum log`` surrogate) by iterating, from the least-norm interpolant ``beta_0``::

        w_j = (beta_j^2 + gamma_k)^(p/2 - 1)
        beta_{k+1} = argmin sum_j w_j beta_j^2  s.t.  X beta = y
                   = W^-1 X^T (X W^-1 X^T + reg I)^-1 y
        gamma_{k+1} = max(gamma_k / eta, gamma_min)

    as in Daubechies, DeVore, Fornasier & Guentuerk (2010) with the geometric smoothing schedule
    of Mohan & Fazel (2012). ``gamma`` starts large (the problem is then nearly the convex
    least-norm one) and shrinks towards ``gamma_min``; a slower decay (``eta`` closer to 1) is
    more robust on hard problems.

    ``gamma0`` and ``gamma_min`` are *relative* to ``s^2 = max_j beta_{0,j}^2`` (the smoothing
    has the units of ``beta^2``), which makes the estimator invariant to rescaling ``y``; the
    absolute final value is stored in ``gamma_``.

    Args:
        p: Exponent of the quasi-norm, in ``[0, 2)``.
        gamma0: Initial smoothing relative to ``s^2``.
        eta: Decay factor of the smoothing per iteration, ``> 1``.
        gamma_min: Floor of the smoothing relative to ``s^2``, ``> 0``.
        n_iter: Maximum number of iterations.
        tol: Stop when ``||beta_k - beta_{k-1}|| / ||beta_k|| < tol``.
        reg: Ridge added to the ``n x n`` system (``0`` = exact constraint; a tiny value helps
            when ``X`` is rank-deficient).
        fit_intercept: Fit an unpenalised intercept by centring.

    Attributes:
        coef_, intercept_, n_iter_, history_, converged_: As for :class:`LinRFMRegressor`.
        gamma_: Smoothing parameter at the last iteration (absolute).
    """

    def __init__(
        self,
        p: float = 1.0,
        gamma0: float = 1e-2,
        eta: float = 1.1,
        gamma_min: float = 1e-14,
        n_iter: int = 500,
        tol: float = 1e-10,
        reg: float = 0.0,
        fit_intercept: bool = False,
    ) -> None:
        self.p = p
        self.gamma0 = gamma0
        self.eta = eta
        self.gamma_min = gamma_min
        self.n_iter = n_iter
        self.tol = tol
        self.reg = reg
        self.fit_intercept = fit_intercept

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        # p = 2 is plain least norm (no reweighting); larger p would favour dense solutions
        "p": Interval(0, 2, closed="left"),
        "gamma0": Interval(0, None, closed="neither"),
        "eta": Interval(1, None),  # gamma_{k+1} = gamma_k / eta must not grow
        "gamma_min": Interval(0, None, closed="neither"),
        "n_iter": Interval(1, None, integer=True),
        "tol": Interval(0, None),
        "reg": Interval(0, None),
        "fit_intercept": Options(True, False),
    }

    def _fit_centred(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = X.shape[1]
        beta = _weighted_min_norm(X, y, np.ones(d), self.reg)
        scale = float(np.max(beta * beta))
        history: list[float] = []
        converged = False
        it = 1
        if scale == 0.0:
            self.gamma_ = 0.0
            self.n_iter_, self.history_, self.converged_ = it, history, True
            return beta
        gamma = self.gamma0 * scale
        gamma_min = self.gamma_min * scale
        expo = 1.0 - self.p / 2.0
        while it < self.n_iter:
            m = (beta * beta + gamma) ** expo  # inverse weights W^-1
            m /= m.max()  # a constant factor only rescales reg; keeps the system well scaled
            new = _weighted_min_norm(X, y, m, self.reg)
            it += 1
            change = _rel_change(new, beta)
            history.append(change)
            beta = new
            gamma = max(gamma / self.eta, gamma_min)
            if change < self.tol:
                converged = True
                break
        self.gamma_ = gamma
        self.n_iter_, self.history_, self.converged_ = it, history, converged
        return beta


# --------------------------------------------------------------------------------------------
# Basis pursuit
# --------------------------------------------------------------------------------------------


class BasisPursuitRegressor(_LinearRegressorBase):
    r"""Basis pursuit: ``min ||beta||_1 subject to X beta = y``, as a linear programme.

    Writes ``beta = u - v`` with ``u, v >= 0`` and solves
    ``min 1^T (u + v) s.t. [X, -X] [u; v] = y`` with scipy's HiGHS solver. The LP optimum is a
    vertex, so the solution has at most ``n`` non-zeros and satisfies the constraints to the
    solver's feasibility tolerance (``primal_feasibility_tolerance``, set from ``tol``).

    Args:
        tol: Primal/dual feasibility tolerance passed to HiGHS, in ``[1e-10, 1e-3]``.
        fit_intercept: Fit an unpenalised intercept by centring.
        method: ``scipy.optimize.linprog`` method (``"highs"``, ``"highs-ds"``, ``"highs-ipm"``).

    Attributes:
        coef_, intercept_: As usual.
        l1_norm_: ``||coef_||_1`` at the optimum.
    """

    def __init__(
        self, tol: float = 1e-10, fit_intercept: bool = False, method: str = "highs"
    ) -> None:
        self.tol = tol
        self.fit_intercept = fit_intercept
        self.method = method

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        # HiGHS ignores feasibility tolerances below 1e-10; above 1e-3 a "solution" need not
        # interpolate (and HiGHS may fail to certify it)
        "tol": Interval(1e-10, 1e-3),
        "fit_intercept": Options(True, False),
        "method": Options("highs", "highs-ds", "highs-ipm"),
    }

    def _fit_centred(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        n, d = X.shape
        c = np.ones(2 * d)
        A = np.hstack([X, -X])
        opts = {"primal_feasibility_tolerance": self.tol, "dual_feasibility_tolerance": self.tol}
        res = scipy.optimize.linprog(
            c, A_eq=A, b_eq=y, bounds=(0, None), method=self.method, options=opts
        )
        if res.status == 2:
            raise ValueError(
                "basis pursuit is infeasible: no beta satisfies X beta = y exactly (X has rank "
                f"< n or y is outside its range). Use LassoRegressor for noisy data. "
                f"({res.message})"
            )
        if res.status != 0:
            raise RuntimeError(f"HiGHS did not solve the basis-pursuit LP: {res.message}")
        beta = res.x[:d] - res.x[d:]
        self.l1_norm_ = float(np.abs(beta).sum())
        return beta


# --------------------------------------------------------------------------------------------
# Lasso
# --------------------------------------------------------------------------------------------


class LassoRegressor(_LinearRegressorBase):
    r"""Lasso by FISTA with adaptive restart.

    Minimises ``(1 / (2 n)) ||y - X beta||^2 + alpha ||beta||_1`` (scikit-learn's scaling) with
    the accelerated proximal gradient method (Beck & Teboulle 2009), step ``1 / L`` with
    ``L = ||X||_2^2 / n``, and momentum restarted whenever the objective increases
    (O'Donoghue & Candes 2015), which restores linear convergence once the support settles::

        z = beta_k + (t_{k-1} - 1) / t_k (beta_k - beta_{k-1})
        beta_{k+1} = soft(z - X^T (X z - y) / (n L), alpha / L)

    The estimate is biased towards zero by about ``alpha`` per coordinate (the price of the
    penalty); for noise-free recovery use a small ``alpha`` or :class:`BasisPursuitRegressor`.

    Args:
        alpha: ``l1`` penalty, ``>= 0``.
        max_iter: Maximum number of FISTA iterations.
        tol: Stop when ``||beta_k - beta_{k-1}|| / ||beta_k|| < tol``.
        fit_intercept: Fit an unpenalised intercept by centring.

    Attributes:
        coef_, intercept_, n_iter_, converged_: As usual.
    """

    def __init__(
        self,
        alpha: float = 1e-3,
        max_iter: int = 20000,
        tol: float = 1e-10,
        fit_intercept: bool = False,
    ) -> None:
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.fit_intercept = fit_intercept

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "alpha": Interval(0, None),
        "max_iter": Interval(1, None, integer=True),
        "tol": Interval(0, None),
        "fit_intercept": Options(True, False),
    }

    def _fit_centred(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        n, d = X.shape
        L = float(np.linalg.norm(X, 2)) ** 2 / n
        if L == 0.0:
            self.n_iter_, self.converged_ = 0, True
            return np.zeros(d)
        step = 1.0 / L
        thr = self.alpha * step
        XtX = X.T @ X / n if d <= 4 * n else None
        Xty = X.T @ y / n

        def grad(b: np.ndarray) -> np.ndarray:
            if XtX is not None:
                return XtX @ b - Xty
            return X.T @ (X @ b) / n - Xty

        def obj(b: np.ndarray) -> float:
            r = X @ b - y
            return 0.5 * float(r @ r) / n + self.alpha * float(np.abs(b).sum())

        beta = np.zeros(d)
        prev = beta.copy()
        t = 1.0
        f_prev = obj(beta)
        converged = False
        it = 0
        while it < self.max_iter:
            it += 1
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            z = beta + ((t - 1.0) / t_new) * (beta - prev)
            u = z - step * grad(z)
            new = np.sign(u) * np.maximum(np.abs(u) - thr, 0.0)
            f_new = obj(new)
            if f_new > f_prev:  # adaptive restart: drop the momentum, take a plain prox step
                t_new = 1.0
                u = beta - step * grad(beta)
                new = np.sign(u) * np.maximum(np.abs(u) - thr, 0.0)
                f_new = obj(new)
            prev, beta, t, f_prev = beta, new, t_new, f_new
            if _rel_change(beta, prev) < self.tol:
                converged = True
                break
        self.n_iter_, self.converged_ = it, converged
        return beta
