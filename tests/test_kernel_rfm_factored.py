"""The kernel step on a factored kernel: PSD kernels, exactness limits, bad settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from test_kernel_rfm import triples

from rfm_recsys.core.engine import AGOPPower, RowPlan
from rfm_recsys.core.fitting import fit_ratings
from rfm_recsys.core.kernel_rfm import KernelSettings, apply_kernel, refit_kernel
from rfm_recsys.core.kernels import DenseKernel, FactoredKernel, kernel_from_arrays


@pytest.fixture(scope="module")
def data():
    return triples()


def factored_fit(data, rank=8, dtype=np.float64, **kw):
    u, i, r, nu, ni = data
    kw = {"lam": 7.0, "n_iter": 2, "orient": "items", "rank": rank, "dtype": dtype, **kw}
    return fit_ratings(u, i, r, nu, ni, update=AGOPPower(1.0), **kw)


def assert_psd(K: np.ndarray) -> None:
    K = np.asarray(K, dtype=np.float64)
    np.testing.assert_allclose(K, K.T, rtol=0, atol=1e-10 * np.abs(K).max())
    ev = np.linalg.eigvalsh(0.5 * (K + K.T))
    assert ev[0] >= -1e-6 * ev[-1], (ev[0], ev[-1])


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "linear"])
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("implicit", [0.0, 2.0])
@pytest.mark.parametrize("choice", ["greedy", "uniform"])
def test_factored_kernels_are_symmetric_psd(data, kernel, bandwidth, implicit, choice):
    u, i, r, *_ = data
    fit = factored_fit(data)
    s = KernelSettings(
        kernel, bandwidth, "cosine", lam=3.0, n_updates=1, implicit_weight=implicit,
        landmarks=6, landmark_choice=choice,
    )  # fmt: skip
    refit, M = refit_kernel(fit, u, i, r, s)
    assert isinstance(refit.kernel, FactoredKernel) and isinstance(M, FactoredKernel)
    assert_psd(refit.kernel.dense())
    assert_psd(M.dense())
    # the exact diagonal: the dense kernel's n_j^2 is kept item by item
    if kernel != "linear":
        assert np.ndim(refit.kernel.eps) == 1 and np.all(refit.kernel.eps >= 0)
    np.testing.assert_allclose(np.mean(M.diag()), 1.0, rtol=1e-6)


def test_linear_kernel_with_rank_reproduces_plain_exactly(data):
    u, i, r, *_ = data
    fit = factored_fit(data, dtype=np.float32)
    refit, M = refit_kernel(fit, u, i, r, KernelSettings("linear", geometry="cosine", lam=7.0))
    assert refit.kernel is fit.kernel and M is fit.kernel
    np.testing.assert_array_equal(refit.A.data, fit.A.data)
    np.testing.assert_array_equal(refit.predict(u, i)[0], fit.predict(u, i)[0])
    assert apply_kernel(fit, u, i, r) is fit


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_nystrom_with_every_landmark_reproduces_the_dense_step(data, kernel):
    u, i, r, nu, ni = data
    fit = factored_fit(data)
    # every landmark, the whole co-rating geometry and full-rank updates: the factored step is
    # the dense one up to round-off
    s = KernelSettings(
        kernel, 1.0, "cosine", lam=3.0, n_updates=2, implicit_weight=2.0,
        landmarks=ni, geometry_rank=ni, update_rank=ni, landmark_choice="uniform",
    )  # fmt: skip
    dense_fit = replace(fit, kernel=DenseKernel(fit.kernel.dense()))
    ref, _ = refit_kernel(dense_fit, u, i, r, s)
    got, _ = refit_kernel(fit, u, i, r, s)
    assert isinstance(got.kernel, FactoredKernel)
    scale = np.abs(ref.K).max()
    np.testing.assert_allclose(got.kernel.dense(), ref.K, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(got.predict(u, i)[0], ref.predict(u, i)[0], atol=1e-6)


def test_default_landmarks_come_close_to_the_dense_step(data):
    u, i, r, *_ = data
    fit = factored_fit(data)
    s = KernelSettings("gaussian", 1.0, "cosine", lam=3.0, n_updates=2, implicit_weight=2.0)
    ref, _ = refit_kernel(replace(fit, kernel=DenseKernel(fit.kernel.dense())), u, i, r, s)
    got, _ = refit_kernel(fit, u, i, r, s)
    # exact diagonal, 2 x rank landmarks on 50 items: the kernels agree to a few percent
    err = np.linalg.norm(got.kernel.dense() - ref.K) / np.linalg.norm(ref.K)
    assert err < 0.1, err
    d = np.abs(got.predict(u, i)[0] - ref.predict(u, i)[0])
    assert d.mean() < 0.05, d.mean()


def test_factored_step_predicts_folds_in_and_round_trips(data):
    u, i, r, *_ = data
    fit = factored_fit(data, dtype=np.float32)
    s = KernelSettings("gaussian", 1.0, "cosine", lam=3.0, n_updates=1, implicit_weight=2.0)
    refit, _ = refit_kernel(fit, u, i, r, s)
    mask = u == 3
    scores, _ = refit.fold_in(i[mask], r[mask])
    b = refit.b_user[3]
    np.testing.assert_allclose(
        scores - (refit.mu + b), refit.score_users([3])[0] - (refit.mu + b), atol=1e-3
    )
    back = kernel_from_arrays(refit.kernel.to_arrays())
    np.testing.assert_array_equal(back.dense(), refit.kernel.dense())


def test_per_column_shift_matches_the_dense_kernel():
    rng = np.random.default_rng(0)
    d, r, n = 30, 5, 40
    U = np.linalg.qr(rng.standard_normal((d, r)))[0]
    K = FactoredKernel(U, rng.random(r) + 0.5, rng.random(d), r)
    Kd = K.dense()
    D = DenseKernel(Kd)
    A = sp.random(n, d, density=0.3, format="csr", random_state=1)
    A.sort_indices()
    plan = RowPlan.from_csr(A)
    np.testing.assert_allclose(K.solve_rows(plan, A.data, 0.7), D.solve_rows(plan, A.data, 0.7))
    cols, y = np.array([1, 4, 7]), np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(K.solve_row(cols, y, 0.7), D.solve_row(cols, y, 0.7))
    np.testing.assert_allclose(K.apply(cols, y), D.apply(cols, y), atol=1e-12)
    np.testing.assert_allclose(K.rows(cols), Kd[cols], atol=1e-12)
    np.testing.assert_allclose(K.diag(), np.diag(Kd))
    c, W = K.complete(A), A @ Kd
    np.testing.assert_allclose(c.pairs(np.array([0, 3]), np.array([2, 5])), W[[0, 3], [2, 5]])
    np.testing.assert_allclose(c.columns(cols), W[:, cols], atol=1e-12)
    np.testing.assert_allclose(c.times(np.eye(d)), W, atol=1e-12)
    np.testing.assert_allclose(c.row_norms(), np.linalg.norm(W, axis=1))
    other = FactoredKernel(np.linalg.qr(rng.standard_normal((d, r)))[0], np.ones(r), 0.3, r)
    ref = np.linalg.norm(other.dense() - Kd) / np.linalg.norm(Kd)
    assert K.distance(other) == pytest.approx(ref)
    with pytest.raises(ValueError, match="non-negative"):
        FactoredKernel(U, np.ones(r), -np.ones(d), r)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"geometry": "mahalanobis"}, "cosine"),
        ({"feature_update": "gradient"}, "completion"),
        ({"count_power": 0.5}, "count_power"),
        ({"landmarks": 0}, "landmarks"),
        ({"landmark_choice": "kmeans"}, "landmark_choice"),
        ({"diag_fix": "trace"}, "diag_fix"),
        ({"bandwidth": -1.0}, "bandwidth"),
    ],
)
def test_bad_factored_settings_are_named(data, change, pattern):
    u, i, r, *_ = data
    fit = factored_fit(data)
    s = replace(KernelSettings("gaussian", 1.0, "cosine", lam=3.0), **change)
    with pytest.raises(ValueError, match=pattern):
        refit_kernel(fit, u, i, r, s)


def test_linrfm_with_the_factored_step_saves_loads_and_folds_in(tmp_path):
    import pandas as pd

    from rfm_recsys.config import KERNEL_RFM_FACTORED
    from rfm_recsys.model import LinRFM

    u, i, r, *_ = triples(seed=2)
    df = pd.DataFrame({"user_id": u, "item_id": i, "rating": r})
    m = LinRFM(**{**KERNEL_RFM_FACTORED, "rank": 8}).fit(df)
    assert isinstance(m.fit_.kernel, FactoredKernel) and np.ndim(m.fit_.kernel.eps) == 1
    m.save(tmp_path / "model.npz")
    loaded = LinRFM.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(u[:50], i[:50]), m.predict(u[:50], i[:50]))
    given = df[df.user_id == 4][["item_id", "rating"]]
    pd.testing.assert_series_equal(loaded.fold_in(given), m.fold_in(given))
    scores = m.fold_in(given)
    assert np.all(np.isfinite(scores.to_numpy())) and len(scores) == len(m.item_ids_)


def test_randomized_paths_agree_with_the_exact_ones(data, monkeypatch):
    import rfm_recsys.core.kernel_rfm_factored as kf

    u, i, r, nu, ni = data
    fit = factored_fit(data)
    s = KernelSettings(
        "gaussian", 0.7, "cosine", lam=3.0, n_updates=2, implicit_weight=2.0,
        landmarks=ni, geometry_rank=ni, update_rank=ni,
    )  # fmt: skip
    # the geometry and the updates from Gram eigh's, or from randomized range finders: with as
    # many columns as items these span everything, so the kernels agree closely
    monkeypatch.setattr(kf, "_gram_is_cheaper", lambda size, d, rank: True)
    exact, _ = refit_kernel(fit, u, i, r, s)
    monkeypatch.setattr(kf, "_gram_is_cheaper", lambda size, d, rank: False)
    rand, _ = refit_kernel(fit, u, i, r, s)
    np.testing.assert_allclose(rand.predict(u, i)[0], exact.predict(u, i)[0], atol=1e-4)
