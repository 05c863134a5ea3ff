"""lin-RFM and baselines for sparse linear regression: recovery, API, errors."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.paper.regression import (
    BasisPursuitRegressor,
    IRLSRegressor,
    LassoRegressor,
    LinRFMRegressor,
    lin_rfm_power_to_p,
    p_to_lin_rfm_power,
)
from rfm_recsys.params import InvalidParameterError


def sparse_problem(seed: int = 0, n: int = 25, d: int = 50, k: int = 3):
    """Noise-free ``y = X beta`` with Gaussian ``X`` and a ``k``-sparse Gaussian ``beta``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta = np.zeros(d)
    support = rng.choice(d, k, replace=False)
    beta[support] = rng.standard_normal(k)
    return X, X @ beta, beta


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lin_rfm_power1_recovers_3_sparse_vector(seed):
    # d = 50, n = 25, 3-sparse, noise-free. Measured: relative error 0.6e-9 to 2.6e-9 after
    # 6 iterations (the floor is the ridge reg = 1e-8; power 1 is IRLS-0, fast local convergence).
    X, y, beta = sparse_problem(seed)
    est = LinRFMRegressor().fit(X, y)
    assert rel_err(est.coef_, beta) < 1e-6
    assert est.converged_ and est.n_iter_ <= 20
    support = np.flatnonzero(beta)
    assert np.all(est.feature_weights_[np.setdiff1d(np.arange(50), support)] < 1e-10)


def test_lin_rfm_power_half_is_l1_and_recovers():
    # power 1/2 <-> p = 1. Measured: 1.0e-8 in 27 iterations (floor epsilon = 1e-12 on m).
    X, y, beta = sparse_problem(0)
    est = LinRFMRegressor(power=0.5, n_iter=2000).fit(X, y)
    assert est.p_equivalent == pytest.approx(1.0)
    assert rel_err(est.coef_, beta) < 1e-6


def test_power_p_mapping():
    assert lin_rfm_power_to_p(1.0) == 0.0
    assert lin_rfm_power_to_p(0.5) == 1.0
    assert p_to_lin_rfm_power(1.0) == 0.5
    for s in (0.25, 0.5, 0.9, 1.0):
        assert p_to_lin_rfm_power(lin_rfm_power_to_p(s)) == pytest.approx(s)


def test_first_iteration_is_min_norm_interpolant():
    # n_iter = 1: M = I, reg = 0 -> the least-norm solution pinv(X) y.
    X, y, _ = sparse_problem(3)
    est = LinRFMRegressor(n_iter=1, reg=0.0).fit(X, y)
    np.testing.assert_allclose(est.coef_, np.linalg.pinv(X) @ y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_irls_recovers(p):
    # Measured (seed 0): p = 1: 1.2e-7 (zeros sit at ~sqrt(gamma_min) = 1e-7), p = 0: 9.2e-10.
    X, y, beta = sparse_problem(0)
    est = IRLSRegressor(p=p).fit(X, y)
    assert rel_err(est.coef_, beta) < 1e-6
    assert est.converged_


def test_basis_pursuit_recovers_exactly():
    # HiGHS returns a vertex: measured 5.5e-16.
    X, y, beta = sparse_problem(0)
    est = BasisPursuitRegressor().fit(X, y)
    assert rel_err(est.coef_, beta) < 1e-9
    assert est.l1_norm_ == pytest.approx(np.abs(beta).sum(), rel=1e-9)


def test_lasso_small_alpha_close_and_shrinks():
    # Measured: alpha = 1e-4 -> 2.2e-4 (bias of order alpha), alpha = 0.1 -> visibly shrunk.
    X, y, beta = sparse_problem(0)
    est = LassoRegressor(alpha=1e-4).fit(X, y)
    assert rel_err(est.coef_, beta) < 1e-3
    big = LassoRegressor(alpha=0.1).fit(X, y)
    assert np.abs(big.coef_).sum() < np.abs(beta).sum()
    assert rel_err(big.coef_, beta) > 1e-2


def test_all_estimators_scale_invariant_support():
    X, y, beta = sparse_problem(4)
    for est in (LinRFMRegressor(), IRLSRegressor(p=0.0), BasisPursuitRegressor()):
        a = est.fit(X, y).coef_.copy()
        b = est.fit(X, 1000.0 * y).coef_
        np.testing.assert_allclose(b, 1000.0 * a, rtol=1e-5, atol=1e-6)


def test_fit_intercept():
    X, y, beta = sparse_problem(5)
    est = LinRFMRegressor(fit_intercept=True).fit(X, y + 3.0)
    assert est.intercept_ == pytest.approx(3.0, abs=1e-5)
    assert rel_err(est.coef_, beta) < 1e-5


def test_predict_shape_and_score():
    X, y, beta = sparse_problem(0)
    rng = np.random.default_rng(9)
    X_new = rng.standard_normal((7, 50))
    for est in (LinRFMRegressor(), IRLSRegressor(), BasisPursuitRegressor(), LassoRegressor()):
        est.fit(X, y)
        pred = est.predict(X_new)
        assert pred.shape == (7,)
        np.testing.assert_allclose(pred, X_new @ beta, rtol=1e-2, atol=1e-2)
        assert est.score(X_new, X_new @ beta) > 0.999


def test_get_set_params_and_repr():
    est = LinRFMRegressor(power=0.5, reg=1e-6)
    params = est.get_params()
    assert params == {
        "power": 0.5,
        "reg": 1e-6,
        "n_iter": 100,
        "tol": 1e-8,
        "fit_intercept": False,
        "epsilon": 1e-12,
    }
    assert est.set_params(power=1.0, n_iter=7) is est
    assert est.power == 1.0 and est.n_iter == 7
    clone = LinRFMRegressor(**est.get_params())
    assert clone.get_params() == est.get_params()
    assert "LinRFMRegressor(power=1.0" in repr(est)
    with pytest.raises(ValueError, match="invalid parameter 'alpha'.*valid parameters are power"):
        est.set_params(alpha=1.0)
    assert set(IRLSRegressor().get_params()) == {
        "p",
        "gamma0",
        "eta",
        "gamma_min",
        "n_iter",
        "tol",
        "reg",
        "fit_intercept",
    }
    assert set(LassoRegressor().get_params()) == {"alpha", "max_iter", "tol", "fit_intercept"}
    assert set(BasisPursuitRegressor().get_params()) == {"tol", "fit_intercept", "method"}


def test_deterministic():
    X, y, _ = sparse_problem(1)
    for cls in (LinRFMRegressor, IRLSRegressor, LassoRegressor, BasisPursuitRegressor):
        a = cls().fit(X, y).coef_
        b = cls().fit(X.copy(), y.copy()).coef_
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "cls", [LinRFMRegressor, IRLSRegressor, BasisPursuitRegressor, LassoRegressor]
)
def test_bad_input_errors(cls):
    X, y, _ = sparse_problem(0)
    est = cls()
    Xn = X.copy()
    Xn[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite.*row, column 3, 4.*impute"):
        est.fit(Xn, y)
    yn = y.copy()
    yn[2] = np.inf
    with pytest.raises(ValueError, match=r"y contains 1 NaN or infinite.*index 2.*drop"):
        est.fit(X, yn)
    with pytest.raises(ValueError, match="X has 25 rows but y has 24 entries"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="X has 0 samples"):
        est.fit(np.empty((0, 50)), np.empty(0))
    with pytest.raises(ValueError, match=r"X must be 2-D.*reshape"):
        est.fit(X[0], y[:1])
    with pytest.raises(ValueError, match="y must be 1-D"):
        est.fit(X, np.c_[y, y])
    with pytest.raises(RuntimeError, match="not fitted yet"):
        cls().predict(X)
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 49 features but the model was fitted with 50"):
        est.predict(X[:, :49])


def test_bad_hyperparameters():
    X, y, _ = sparse_problem(0)
    with pytest.raises(InvalidParameterError, match="power must be a finite real number > 0"):
        LinRFMRegressor(power=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="n_iter must be an integer"):
        LinRFMRegressor(n_iter=2.5).fit(X, y)
    with pytest.raises(ValueError, match=r"p must be a finite real number in \[0, 2\)"):
        IRLSRegressor(p=2.0).fit(X, y)
    with pytest.raises(ValueError, match="eta must be a finite real number >= 1"):
        IRLSRegressor(eta=0.5).fit(X, y)
    with pytest.raises(
        InvalidParameterError, match="LassoRegressor: max_iter must be an integer >= 1, got 0"
    ):
        LassoRegressor(max_iter=0).fit(X, y)
    with pytest.raises(TypeError, match="method must be one of 'highs'.*got 'simplex'"):
        BasisPursuitRegressor(method="simplex").fit(X, y)


def test_basis_pursuit_infeasible_message():
    # Two identical rows with different targets: no interpolant exists.
    X = np.ones((2, 3))
    with pytest.raises(ValueError, match="basis pursuit is infeasible.*LassoRegressor"):
        BasisPursuitRegressor().fit(X, np.array([1.0, 2.0]))


def test_zero_targets_give_zero_coef():
    X, _, _ = sparse_problem(0)
    for est in (LinRFMRegressor(), IRLSRegressor(), BasisPursuitRegressor(), LassoRegressor()):
        assert np.all(est.fit(X, np.zeros(25)).coef_ == 0.0)
