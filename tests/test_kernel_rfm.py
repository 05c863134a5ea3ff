"""Kernel RFM for ratings: kernel matrices, the kernel step in the engine loop, the models."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import test_models_common as common

from rfm_recsys import KernelRFM, KernelRFMAlgo, LinRFM
from rfm_recsys.core.kernel_step import KernelStep, kernel_matrix
from rfm_recsys.fitting import BOTH_WEIGHT, CombinedFit, FitSettings, fit_ratings


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
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matrices_are_symmetric_psd(kernel, bandwidth, dtype):
    for rank in (2, 40):  # rank-deficient and full-rank geometries
        M = random_psd(40, rank, seed=rank, dtype=dtype)
        Kn = kernel_matrix(M, kernel, bandwidth)
        assert Kn.dtype == dtype and Kn.shape == M.shape
        np.testing.assert_array_equal(Kn, Kn.T)
        ev = np.linalg.eigvalsh(Kn.astype(np.float64))
        assert ev[0] >= -1e-6 * ev[-1]


def test_linear_kernel_is_the_learned_matrix():
    M = random_psd(10, 3)
    assert kernel_matrix(M, "linear") is M


def test_radial_kernels_over_the_cosine_geometry():
    M = random_psd(12, 4)
    j, k = 2, 7
    cos = M[j, k] / np.sqrt(M[j, j] * M[k, k])
    norms = np.sqrt(M[j, j] * M[k, k])
    g = kernel_matrix(M, "gaussian", 0.7)
    lap = kernel_matrix(M, "laplace", 0.7)
    assert g[j, k] == pytest.approx(norms * np.exp((cos - 1) / 0.49))
    assert lap[j, k] == pytest.approx(norms * np.exp(-np.sqrt(2 - 2 * cos) / 0.7))
    np.testing.assert_allclose(np.diag(g), np.diag(M))  # the norms' squares: f(1) = 1


def settings(**kw) -> FitSettings:
    return FitSettings(**{"rank": None, "orient": "items", "ridge": 7.0, **kw})


@pytest.mark.parametrize("users_rows", [True, False])
@pytest.mark.parametrize("rank", [None, 8])
def test_linear_step_reproduces_lin_rfm_exactly(users_rows, rank):
    # the step's kernel is the learned matrix itself: its row fit is lin-RFM's last one
    u, i, r, nu, ni = triples()
    orient = "items" if users_rows else "users"
    plain = fit_ratings(u, i, r, nu, ni, settings(n_updates=2, orient=orient, rank=rank))
    step = KernelStep("linear", ridge=7.0, n_updates=0)
    stepped = fit_ratings(
        u, i, r, nu, ni, settings(n_updates=2, orient=orient, rank=rank, step=step)
    )
    np.testing.assert_array_equal(stepped.K, plain.K)
    np.testing.assert_array_equal(stepped.A.data, plain.A.data)
    np.testing.assert_array_equal(stepped.predict(u, i)[0], plain.predict(u, i)[0])
    assert [h["stage"] for h in stepped.history] == ["linear", "linear", "kernel"]


@pytest.mark.parametrize(
    "step",
    [
        KernelStep("gaussian", 1.0, ridge=3.0),
        KernelStep("laplace", 2.0, ridge=1.0, n_updates=1),
        KernelStep("gaussian", 1.0, ridge=3.0, co_rating=0.3, n_updates=2),
        KernelStep("linear", co_rating=1.0, ridge=3.0, n_updates=1),
    ],
)
def test_kernel_step_predicts_and_folds_in(step):
    u, i, r, nu, ni = triples()
    fit = fit_ratings(u, i, r, nu, ni, settings(n_updates=2, step=step))
    est, impossible = fit.predict(u, i)
    assert np.all(np.isfinite(est)) and not impossible.any()
    ev = np.linalg.eigvalsh(fit.K.astype(np.float64))
    assert ev[0] >= -1e-6 * ev[-1]
    assert fit.ridge == step.ridge
    # fold-in of a known user's own ratings reproduces its fitted scores (users are rows)
    mask = u == 3
    scores, _ = fit.fold_in(i[mask], r[mask])
    b = fit.b_user[3]
    np.testing.assert_allclose(
        scores - (fit.mu + b), fit.score_users([3])[0] - (fit.mu + b), atol=1e-3
    )


def test_bad_settings_are_named():
    M = random_psd(5, 2)
    with pytest.raises(ValueError, match="kernel"):
        kernel_matrix(M, "rbf")
    with pytest.raises(ValueError, match="bandwidth"):
        kernel_matrix(M, "gaussian", 0.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        KernelStep("rbf")
    with pytest.raises(ValueError, match="landmarks"):
        KernelStep(landmarks=0)


def test_both_orientations_average_the_kernel_parts():
    u, i, r, nu, ni = triples()
    step = KernelStep("gaussian", co_rating=1.0, n_updates=1, ridge=3.0)
    both = fit_ratings(u, i, r, nu, ni, settings(orient="both", step=step))
    assert isinstance(both, CombinedFit) and both.weight == BOTH_WEIGHT
    assert both.first.users_are_rows and not both.second.users_are_rows
    qu = np.array([0, 1, -1, 5, -1])
    qi = np.array([3, -1, 2, 4, -1])
    est, impossible = both.predict(qu, qi)
    e1, _ = both.first.predict(qu, qi)
    e2, _ = both.second.predict(qu, qi)
    np.testing.assert_allclose(est, BOTH_WEIGHT * e1 + (1 - BOTH_WEIGHT) * e2)
    np.testing.assert_array_equal(impossible, [False, False, False, False, True])
    np.testing.assert_allclose(both.score_users([5])[0, 4], est[3], rtol=1e-6)
    scores, b_u = both.fold_in(i[u == 5], r[u == 5])
    assert scores.shape == (ni,) and np.isfinite(b_u)


# The shared model contract (tests/model_mixin.py) for the kernel step's other forms:
# prediction, unknown ids, save/load, fold-in and the Surprise contract hold for every kernel.
class TestKernelRFMLaplace(common.TestKernelRFM):
    def make_model(self, **params):
        return super().make_model(**{"kernel": "laplace", **params})


class TestKernelRFMFactored(common.TestKernelRFM):
    # rank 8 on this 80-item set: "auto" would keep the dense kernel below 4,097 items
    def make_model(self, **params):
        return super().make_model(**{"rank": 8, **params})

    def test_the_kernel_step_is_factored(self, data):
        model = self.fit(self.make_model(), data.train)
        kernel = model.fit_.kernel
        assert type(kernel).__name__ == "FactoredKernel" and np.ndim(kernel.eps) == 1


class TestKernelRFMAlgoFactored(common.TestKernelRFMAlgo):
    default_params: ClassVar[dict] = {"rank": 8}


class TestKernelRFMAlgoBothFactored(common.TestKernelRFMAlgo):
    default_params: ClassVar[dict] = {"rank": 8, "orient": "both"}


class TestKernelRFMAlgoLaplace(common.TestKernelRFMAlgo):
    default_params: ClassVar[dict] = {"kernel": "laplace"}


class TestKernelRFMAlgoBoth(common.TestKernelRFMAlgo):
    default_params: ClassVar[dict] = {"orient": "both"}


@pytest.mark.parametrize("cls", [LinRFM, KernelRFM])
def test_frame_models_refuse_both_orientations(cls):
    from rfm_recsys.params import InvalidParameterError

    u, i, r, nu, ni = triples()
    X = sp.csr_matrix((r, (u, i)), shape=(nu, ni))
    # LinRFM has no 'both' among its choices; KernelRFM has, for KernelRFMAlgo's sake
    with pytest.raises(InvalidParameterError, match=r"orient.*'both'"):
        cls(orient="both").fit(X)


@pytest.mark.parametrize("kernel", ["linear", "gaussian", "laplace"])
def test_algo_kernel_step_matches_the_fitting_layer(kernel):
    from surprise import Dataset, Reader

    from rfm_recsys.surprise_algos import _trainset_arrays

    u, i, r, nu, ni = triples()
    df = pd.DataFrame({"u": u, "i": i, "r": r})
    ts = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = KernelRFMAlgo(
        kernel=kernel, bandwidth=1.5, co_rating=1.0, n_kernel_updates=1, kernel_ridge=3.0,
        solve_tol=None,
    ).fit(ts)  # fmt: skip
    tu, ti, tr = _trainset_arrays(ts)
    step = KernelStep(kernel, 1.5, co_rating=1.0, ridge=3.0, n_updates=1)
    ref = fit_ratings(tu, ti, tr, ts.n_users, ts.n_items, settings(ridge=10.0, step=step))
    np.testing.assert_array_equal(algo.fit_.predict(tu, ti)[0], ref.predict(tu, ti)[0])


def test_plain_step_settings_are_lin_rfm_exactly():
    # a linear step with no co-rating signal, no update and lin-RFM's ridge changes nothing:
    # the fit is plain lin-RFM, its rank rule included (400 items: factored for lin-RFM)
    from surprise import Dataset, Reader

    from rfm_recsys import LinRFMAlgo
    from rfm_recsys.datasets import make_ratings

    df = make_ratings(600, 400, 20_000, random_state=0)[["user_id", "item_id", "rating"]]
    ts = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    plain = dict(kernel="linear", co_rating=0.0, n_kernel_updates=0, kernel_ridge=None)
    stepped = KernelRFMAlgo(**plain, orient="auto").fit(ts)
    ref = LinRFMAlgo().fit(ts)
    assert type(stepped.fit_.kernel) is type(ref.fit_.kernel)
    assert {h["stage"] for h in stepped.history_} == {"linear"}
    testset = ts.build_testset()[:2000]
    assert [p.est for p in stepped.test(testset)] == [p.est for p in ref.test(testset)]
