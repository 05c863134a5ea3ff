"""The kernel step on a factored kernel: PSD kernels, exactness limits, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_kernel_rfm import triples

from rfm_recsys import KernelRFM
from rfm_recsys.core.dense_kernel import DenseKernel
from rfm_recsys.core.engine import fit_engine
from rfm_recsys.core.factored_kernel import FactoredKernel
from rfm_recsys.core.kernel_forms import kernel_from_arrays
from rfm_recsys.core.kernel_step import KernelStep
from rfm_recsys.core.solve import RowPlan
from rfm_recsys.core.updates import AGOPPower
from rfm_recsys.fitting import FitSettings, fit_ratings


@pytest.fixture(scope="module")
def data():
    return triples()


def factored_fit(data, rank=8, dtype=np.float64):
    """lin-RFM on the triples, users as rows, with a factored kernel of ``rank``."""
    u, i, r, nu, ni = data
    settings = FitSettings(ridge=7.0, n_updates=2, orient="items", rank=rank, dtype=dtype)
    return fit_ratings(u, i, r, nu, ni, settings)


def step_from(data, fit, step: KernelStep, dense: bool = False):
    """The kernel step run from ``fit``'s learned kernel (as a dense one with ``dense``) on the
    same residuals: ``(fitted kernel, coefficients, predictions of the training pairs)``."""
    u, i, r, nu, ni = data
    resid = r - (fit.mu + fit.b_user[u] + fit.b_item[i])
    R = sp.csr_matrix((resid, (u, i)), shape=(nu, ni))
    K0 = DenseKernel(fit.kernel.dense()) if dense else fit.kernel
    res = fit_engine(
        R, ridge=7.0, n_updates=0, update=AGOPPower(1.0), K0=K0, step=step, dtype=fit.kernel.dtype
    )
    pred = res.kernel.complete(res.A).pairs(u, i) + fit.mu + fit.b_user[u] + fit.b_item[i]
    return res.kernel, res.A, pred


def assert_psd(K: np.ndarray) -> None:
    K = np.asarray(K, dtype=np.float64)
    np.testing.assert_allclose(K, K.T, rtol=0, atol=1e-10 * np.abs(K).max())
    ev = np.linalg.eigvalsh(0.5 * (K + K.T))
    assert ev[0] >= -1e-6 * ev[-1], (ev[0], ev[-1])


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "linear"])
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("co_rating", [0.0, 2.0])
def test_factored_kernels_are_symmetric_psd(data, kernel, bandwidth, co_rating):
    u, i, r, nu, ni = data
    fit = factored_fit(data)
    step = KernelStep(kernel, bandwidth, co_rating=co_rating, ridge=3.0, n_updates=1, landmarks=6)
    settings = FitSettings(
        ridge=7.0, n_updates=2, orient="items", rank=8, dtype=np.float64, step=step
    )
    stepped = fit_ratings(u, i, r, nu, ni, settings)
    kernel_used, _, _ = step_from(data, fit, step)
    for K in (stepped.kernel, kernel_used):
        assert isinstance(K, FactoredKernel)
        assert_psd(K.dense())
    # the exact diagonal: the dense kernel's n_j^2 is kept item by item
    if kernel != "linear" or co_rating:
        assert np.ndim(stepped.kernel.eps) == 1 and np.all(stepped.kernel.eps >= 0)


def test_linear_kernel_with_rank_reproduces_plain_exactly(data):
    u, i, r, nu, ni = data
    fit = factored_fit(data, dtype=np.float32)
    step = KernelStep("linear", ridge=7.0)
    settings = FitSettings(
        ridge=7.0, n_updates=2, orient="items", rank=8, dtype=np.float32, step=step
    )
    stepped = fit_ratings(u, i, r, nu, ni, settings)
    np.testing.assert_array_equal(stepped.A.data, fit.A.data)
    np.testing.assert_array_equal(stepped.kernel.U, fit.kernel.U)
    np.testing.assert_array_equal(stepped.predict(u, i)[0], fit.predict(u, i)[0])


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
def test_nystrom_with_every_landmark_reproduces_the_dense_step(data, kernel):
    u, i, r, nu, ni = data
    fit = factored_fit(data)
    # every landmark, the whole co-rating geometry and full-rank updates: the factored step is
    # the dense one up to round-off
    step = KernelStep(
        kernel, 1.0, co_rating=2.0, ridge=3.0, n_updates=2, landmarks=ni, geometry_rank=ni,
        update_rank=ni,
    )  # fmt: skip
    ref_K, _, ref_pred = step_from(data, fit, step, dense=True)
    got_K, _, got_pred = step_from(data, fit, step)
    assert isinstance(got_K, FactoredKernel) and isinstance(ref_K, DenseKernel)
    scale = np.abs(ref_K.K).max()
    np.testing.assert_allclose(got_K.dense(), ref_K.K, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(got_pred, ref_pred, atol=1e-6)


def test_default_landmarks_come_close_to_the_dense_step(data):
    fit = factored_fit(data)
    step = KernelStep("gaussian", 1.0, co_rating=2.0, ridge=3.0, n_updates=2)
    ref_K, _, ref_pred = step_from(data, fit, step, dense=True)
    got_K, _, got_pred = step_from(data, fit, step)
    # exact diagonal, 4 x rank landmarks on 50 items: the kernels agree to a few percent
    err = np.linalg.norm(got_K.dense() - ref_K.K) / np.linalg.norm(ref_K.K)
    assert err < 0.1, err
    d = np.abs(got_pred - ref_pred)
    assert d.mean() < 0.05, d.mean()


def test_factored_step_predicts_folds_in_and_round_trips(data):
    u, i, r, nu, ni = data
    step = KernelStep("gaussian", 1.0, co_rating=2.0, ridge=3.0, n_updates=1)
    settings = FitSettings(
        ridge=7.0, n_updates=2, orient="items", rank=8, dtype=np.float32, step=step
    )
    refit = fit_ratings(u, i, r, nu, ni, settings)
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


def test_kernel_rfm_with_the_factored_step_saves_loads_and_folds_in(tmp_path):
    import pandas as pd

    u, i, r, *_ = triples(seed=2)
    df = pd.DataFrame({"user_id": u, "item_id": i, "rating": r})
    m = KernelRFM(rank=8).fit(df)
    assert isinstance(m.fit_.kernel, FactoredKernel) and np.ndim(m.fit_.kernel.eps) == 1
    m.save(tmp_path / "model.npz")
    loaded = KernelRFM.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(u[:50], i[:50]), m.predict(u[:50], i[:50]))
    given = df[df.user_id == 4][["item_id", "rating"]]
    pd.testing.assert_series_equal(loaded.fold_in(given), m.fold_in(given))
    scores = m.fold_in(given)
    assert np.all(np.isfinite(scores.to_numpy())) and len(scores) == len(m.item_ids_)


def test_randomized_paths_agree_with_the_exact_ones(data, monkeypatch):
    import rfm_recsys.core.kernel_step_factored as kf

    u, i, r, nu, ni = data
    fit = factored_fit(data)
    step = KernelStep(
        "gaussian", 0.7, co_rating=2.0, ridge=3.0, n_updates=2, landmarks=ni, geometry_rank=ni,
        update_rank=ni,
    )  # fmt: skip
    # the geometry and the updates from Gram eigh's, or from randomized range finders: with as
    # many columns as items these span everything, so the kernels agree closely
    monkeypatch.setattr(kf, "_gram_is_cheaper", lambda size, d, rank: True)
    _, _, exact = step_from(data, fit, step)
    monkeypatch.setattr(kf, "_gram_is_cheaper", lambda size, d, rank: False)
    _, _, rand = step_from(data, fit, step)
    np.testing.assert_allclose(rand, exact, atol=1e-4)
