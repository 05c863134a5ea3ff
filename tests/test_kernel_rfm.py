"""Kernel RFM for ratings: kernel matrices, the predictor's AGOP, the refit on a lin-RFM fit."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import test_models_common as common

from rfm_recsys.config import KERNEL_RFM, KERNEL_RFM_FACTORED
from rfm_recsys.core.engine import AGOPPower
from rfm_recsys.core.fitting import fit_ratings
from rfm_recsys.core.kernel_rfm import (
    KernelSettings,
    kernel_matrix,
    predictor_agop,
    refit_kernel,
    squared_distances,
)


def random_psd(d, rank, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, rank))
    M = X @ X.T
    return (M / np.mean(np.diag(M))).astype(dtype)


def triples(n_users=70, n_items=50, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n_users, 3)) * 0.7
    Q = rng.standard_normal((n_items, 3)) * 0.7
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = 3.5 + (P[u] * Q[i]).sum(1) + 0.3 * rng.standard_normal(u.size)
    return u, i, np.clip(np.round(r), 1, 5), n_users, n_items


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("geometry", ["mahalanobis", "cosine"])
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matrices_are_symmetric_psd(kernel, geometry, bandwidth, dtype):
    for rank in (2, 40):  # rank-deficient and full-rank geometries
        M = random_psd(40, rank, seed=rank, dtype=dtype)
        Kn = kernel_matrix(M, kernel, bandwidth, geometry)
        assert Kn.dtype == dtype and Kn.shape == M.shape
        np.testing.assert_array_equal(Kn, Kn.T)
        ev = np.linalg.eigvalsh(Kn.astype(np.float64))
        assert ev[0] >= -1e-6 * ev[-1]


def test_linear_kernel_is_the_learned_matrix():
    M = random_psd(10, 3)
    assert kernel_matrix(M, "linear") is M


def test_radial_kernels_follow_the_mahalanobis_distances():
    M = random_psd(12, 4)
    D2 = squared_distances(M)
    j, k = 2, 7
    assert D2[j, k] == pytest.approx(M[j, j] + M[k, k] - 2 * M[j, k])
    g = kernel_matrix(M, "gaussian", 0.7)
    lap = kernel_matrix(M, "laplace", 0.7)
    assert g[j, k] == pytest.approx(np.exp(-D2[j, k] / (2 * 0.49)))
    assert lap[j, k] == pytest.approx(np.exp(-np.sqrt(D2[j, k]) / 0.7))
    np.testing.assert_allclose(np.diag(g), 1.0)
    # cosine geometry: exp(cos - 1) with h = 1, rescaled by the norms
    c = kernel_matrix(M, "gaussian", 1.0, "cosine")
    cos = M[j, k] / np.sqrt(M[j, j] * M[k, k])
    assert c[j, k] == pytest.approx(np.sqrt(M[j, j] * M[k, k]) * np.exp(cos - 1))


def _brute_agop(M, A, kernel, h, eps=1e-6):
    """sum over rows r and points e_j of grad f_r grad f_r^T by central differences.

    For the Laplace kernel the term of s = j has no gradient at e_j; as in RFM it is left out.
    """
    n, d = A.shape
    L = np.linalg.cholesky(M + 1e-12 * np.eye(d))  # ||x - z||_M^2 = ||L^T (x - z)||^2

    def f(r, x, skip):
        out = 0.0
        for s in range(d):
            if A[r, s] == 0 or s == skip:
                continue
            t = float(np.sum((L.T @ (x - np.eye(d)[s])) ** 2))
            out += A[r, s] * (
                np.exp(-t / (2 * h * h)) if kernel == "gaussian" else np.exp(-np.sqrt(t) / h)
            )
        return out

    G = np.zeros((d, d))
    for r in range(n):
        for j in range(d):
            x = np.eye(d)[j]
            skip = j if kernel == "laplace" else -1
            g = np.array(
                [
                    (f(r, x + eps * np.eye(d)[m], skip) - f(r, x - eps * np.eye(d)[m], skip))
                    / (2 * eps)
                    for m in range(d)
                ]
            )
            G += np.outer(g, g)
    return G / (n * d)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_predictor_agop_matches_finite_differences(kernel):
    d, n = 6, 5
    M = random_psd(d, d, seed=3) + 0.2 * np.eye(d)
    rng = np.random.default_rng(4)
    dense = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.6)
    A = sp.csr_matrix(dense)
    G = predictor_agop(M, A, kernel, 0.8)
    ref = _brute_agop(M, dense, kernel, 0.8)
    np.testing.assert_allclose(G, ref, rtol=1e-5, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("users_rows", [True, False])
def test_linear_refit_reproduces_lin_rfm_exactly(users_rows):
    u, i, r, nu, ni = triples()
    fit = fit_ratings(
        u,
        i,
        r,
        nu,
        ni,
        update=AGOPPower(1.0),
        lam=7.0,
        n_iter=2,
        orient="items" if users_rows else "users",
    )
    refit, M = refit_kernel(fit, u, i, r, KernelSettings("linear", lam=7.0))
    assert refit.K is fit.K and M is fit.K
    np.testing.assert_array_equal(refit.A.data, fit.A.data)
    np.testing.assert_array_equal(refit.A.indices, fit.A.indices)
    np.testing.assert_array_equal(refit.predict(u, i)[0], fit.predict(u, i)[0])


@pytest.mark.parametrize(
    "settings",
    [
        KernelSettings("gaussian", 1.0, "cosine", lam=3.0),
        KernelSettings("laplace", 2.0, "mahalanobis", lam=1.0, n_updates=1),
        KernelSettings(
            "gaussian", 1.5, "mahalanobis", lam=1.0, n_updates=1, feature_update="gradient"
        ),
        KernelSettings("gaussian", 1.0, "cosine", lam=3.0, count_power=0.5, implicit_weight=0.3),
    ],
)
def test_refit_predicts_and_folds_in(settings):
    u, i, r, nu, ni = triples()
    fit = fit_ratings(u, i, r, nu, ni, lam=7.0, n_iter=2, orient="items")
    refit, M = refit_kernel(fit, u, i, r, settings)
    est, impossible = refit.predict(u, i)
    assert np.all(np.isfinite(est)) and not impossible.any()
    ev = np.linalg.eigvalsh(refit.K.astype(np.float64))
    assert ev[0] >= -1e-6 * ev[-1]
    np.testing.assert_allclose(np.mean(np.diag(M)), 1.0, rtol=1e-5)
    # fold-in of a known user's own ratings reproduces its fitted scores (users are rows)
    if settings.count_power == 0:
        mask = u == 3
        scores, _ = refit.fold_in(i[mask], r[mask])
        b = refit.b_user[3]
        np.testing.assert_allclose(
            scores - (refit.mu + b), refit.score_users([3])[0] - (refit.mu + b), atol=1e-3
        )


def test_count_scaled_ridge_is_one_ridge_at_power_zero():
    from rfm_recsys.core.engine import RowPlan, solve_rows
    from rfm_recsys.core.kernel_rfm import solve_rows_scaled

    u, i, r, nu, ni = triples()
    R = sp.csr_matrix((r - r.mean(), (u, i)), shape=(nu, ni))
    plan = RowPlan.from_csr(R)
    K = random_psd(ni, 5)
    y = R.data
    a0 = solve_rows(K, plan, y, 2.0)
    np.testing.assert_allclose(solve_rows_scaled(K, plan, y, 2.0, 0.0), a0)
    counts = np.diff(R.indptr)
    a1 = solve_rows_scaled(K, plan, y, 2.0, 1.0)
    row = int(np.argmax(counts))
    S = R.indices[R.indptr[row] : R.indptr[row + 1]]
    lam = 2.0 * counts[row] / counts[counts > 0].mean()
    ref = np.linalg.solve(
        K[np.ix_(S, S)] + lam * np.eye(S.size), y[R.indptr[row] : R.indptr[row + 1]]
    )
    np.testing.assert_allclose(a1[R.indptr[row] : R.indptr[row + 1]], ref, rtol=1e-6)


def test_bad_settings_are_named():
    M = random_psd(5, 2)
    with pytest.raises(ValueError, match="kernel"):
        kernel_matrix(M, "rbf")
    with pytest.raises(ValueError, match="bandwidth"):
        kernel_matrix(M, "gaussian", 0.0)
    u, i, r, nu, ni = triples()
    fit = fit_ratings(u, i, r, nu, ni, n_iter=1)
    with pytest.raises(ValueError, match="gradient"):
        refit_kernel(
            fit,
            u,
            i,
            r,
            KernelSettings("gaussian", geometry="cosine", n_updates=1, feature_update="gradient"),
        )


def test_plain_settings_give_the_lin_rfm_fit():
    from rfm_recsys.core.kernel_rfm import apply_kernel

    u, i, r, nu, ni = triples()
    ref = fit_ratings(u, i, r, nu, ni, lam=7.0, n_iter=2)
    assert apply_kernel(ref, u, i, r) is ref
    assert apply_kernel(ref, u, i, r, kernel_lam=7.0) is ref


def test_both_orientations_average_the_kernel_parts():
    from rfm_recsys.core.kernel_rfm import CombinedFit, fit_both_orientations

    u, i, r, nu, ni = triples()
    kernel = dict(kernel="gaussian", implicit=1.0, kernel_updates=1, kernel_lam=3.0)
    both = fit_both_orientations(u, i, r, nu, ni, kernel, weight=0.7, lam=7.0, orient="auto")
    assert isinstance(both, CombinedFit)
    assert both.first.users_are_rows and not both.second.users_are_rows
    qu = np.array([0, 1, -1, 5, -1])
    qi = np.array([3, -1, 2, 4, -1])
    est, impossible = both.predict(qu, qi)
    e1, _ = both.first.predict(qu, qi)
    e2, _ = both.second.predict(qu, qi)
    np.testing.assert_allclose(est, 0.7 * e1 + 0.3 * e2)
    np.testing.assert_array_equal(impossible, [False, False, False, False, True])
    np.testing.assert_allclose(both.score_users([5])[0, 4], est[3], rtol=1e-6)
    scores, b_u = both.fold_in(i[u == 5], r[u == 5])
    assert scores.shape == (ni,) and np.isfinite(b_u)


# The shared model contract (tests/model_mixin.py) for the kernels the defaults do not use:
# prediction, unknown ids, save/load, fold-in and the Surprise contract hold for every kernel.
class TestLinRFMLaplace(common.TestLinRFM):
    def make_model(self, **params):
        return super().make_model(**{"kernel": "laplace", **params})


class TestLinRFMKernelStep(common.TestLinRFM):
    def make_model(self, **params):
        return super().make_model(**{**KERNEL_RFM, **params})


class TestLinRFMKernelStepFactored(common.TestLinRFM):
    # rank 8 on this 80-item set: "auto" would keep the dense kernel below 257 items
    def make_model(self, **params):
        return super().make_model(**{**KERNEL_RFM_FACTORED, "rank": 8, **params})

    def test_the_kernel_step_is_factored(self, data):
        model = self.fit(self.make_model(), data.train)
        kernel = model.fit_.kernel
        assert type(kernel).__name__ == "FactoredKernel" and np.ndim(kernel.eps) == 1


class TestLinRFMAlgoKernelStepFactored(common.TestLinRFMAlgo):
    default_params: ClassVar[dict] = {**KERNEL_RFM_FACTORED, "rank": 8}


class TestLinRFMAlgoBothFactored(common.TestLinRFMAlgo):
    default_params: ClassVar[dict] = {**KERNEL_RFM_FACTORED, "rank": 8, "orient": "both"}


class TestLinRFMAlgoLaplace(common.TestLinRFMAlgo):
    default_params: ClassVar[dict] = {**KERNEL_RFM, "kernel": "laplace"}


class TestLinRFMAlgoBoth(common.TestLinRFMAlgo):
    default_params: ClassVar[dict] = {**KERNEL_RFM, "orient": "both"}


def test_linrfm_refuses_both_orientations():
    from rfm_recsys.model import LinRFM
    from rfm_recsys.params import InvalidParameterError

    u, i, r, nu, ni = triples()
    X = sp.csr_matrix((r, (u, i)), shape=(nu, ni))
    with pytest.raises(InvalidParameterError, match="orient='both'"):
        LinRFM(orient="both").fit(X)


@pytest.mark.parametrize("kernel", ["linear", "gaussian", "laplace"])
def test_algo_kernel_step_matches_the_core(kernel):
    from surprise import Dataset, Reader

    from rfm_recsys.core.kernel_rfm import apply_kernel
    from rfm_recsys.surprise_algos import LinRFMAlgo, _trainset_arrays

    u, i, r, nu, ni = triples()
    df = pd.DataFrame({"u": u, "i": i, "r": r})
    ts = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = LinRFMAlgo(
        orient="items", kernel=kernel, bandwidth=1.5, implicit=1.0, kernel_updates=1, kernel_lam=3.0
    ).fit(ts)
    tu, ti, tr = _trainset_arrays(ts)
    base = fit_ratings(tu, ti, tr, ts.n_users, ts.n_items, orient="items", rank=None)
    ref = apply_kernel(
        base,
        tu,
        ti,
        tr,
        kernel=kernel,
        bandwidth=1.5,
        implicit=1.0,
        kernel_updates=1,
        kernel_lam=3.0,
    )
    np.testing.assert_allclose(algo.fit_.predict(tu, ti)[0], ref.predict(tu, ti)[0], rtol=1e-6)
