"""Explicit biased ALS (weighted-lambda) and the IRLS-p baseline: recovery, contract, schedule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from surprise import AlgoBase, Dataset, Reader

from rfm_recsys.baselines.als import ALSAlgo, _side_plan, _solve_side, fit_biased_als, predict_als
from rfm_recsys.core.biases import fit_baseline
from rfm_recsys.fitting import FitSettings
from rfm_recsys.surprise_algos import IRLSAlgo, LinRFMAlgo


def low_rank_ratings(n_users=80, n_items=60, rank=2, frac=0.5, seed=0):
    """Noise-free ``3 + b_u + b_i + P Q^T`` observed on a random half of the entries."""
    rng = np.random.default_rng(seed)
    M = (
        rng.standard_normal((n_users, rank)) @ rng.standard_normal((rank, n_items))
        + 3.0
        + 0.5 * rng.standard_normal(n_users)[:, None]
        + 0.5 * rng.standard_normal(n_items)[None, :]
    )
    mask = rng.random((n_users, n_items)) < frac
    # every user and item observed at least once
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    return M, mask


def surprise_data(M, mask):
    u, i = np.nonzero(mask)
    df = pd.DataFrame({"u": u, "i": i, "r": M[u, i]})
    # a wide scale: no clipping of a real-valued matrix
    trainset = Dataset.load_from_df(df, Reader(rating_scale=(-50, 50))).build_full_trainset()
    uu, ii = np.nonzero(~mask)
    return trainset, [(int(a), int(b), float(M[a, b])) for a, b in zip(uu, ii)]


def rel_err(est, truth):
    return np.linalg.norm(est - truth) / np.linalg.norm(truth - truth.mean())


def test_fit_biased_als_recovers_noise_free_low_rank():
    M, mask = low_rank_ratings(n_users=120, n_items=90, rank=3, seed=1)
    u, i = np.nonzero(mask)
    mu, b_u, b_i, P, Q = fit_biased_als(
        u, i, M[u, i], 120, 90, rank=3, ridge=1e-9, bias_ridge=1e-9, n_sweeps=100, random_state=0
    )
    assert P.shape == (120, 3) and Q.shape == (90, 3) and b_u.shape == (120,) and b_i.shape == (90,)
    uu, ii = np.nonzero(~mask)
    est, impossible = predict_als(mu, b_u, b_i, P, Q, uu, ii)
    assert not impossible.any()
    assert rel_err(est, M[uu, ii]) < 1e-4


def test_als_algo_recovers_noise_free_low_rank_through_surprise():
    M, mask = low_rank_ratings()
    trainset, testset = surprise_data(M, mask)
    algo = ALSAlgo(rank=2, ridge=0.0, bias_ridge=0.0, n_sweeps=150, random_state=0)
    preds = algo.fit(trainset).test(testset)
    est = np.array([p.est for p in preds])
    assert rel_err(est, np.array([p.r_ui for p in preds])) < 1e-4


def test_irls_recovers_noise_free_low_rank():
    # IRLS-0 with its own smoothing schedule, tiny ridge, no re-imposed entries (the ratings
    # setting): the completion of the missing half converges to the true low-rank matrix.
    M, mask = low_rank_ratings()
    trainset, testset = surprise_data(M, mask)
    algo = IRLSAlgo(
        p=0.0, ridge=1e-6, n_updates=100, dtype="float64", bias_ridge=0.0, solve_tol=None
    )
    preds = algo.fit(trainset).test(testset)
    est = np.array([p.est for p in preds])
    assert rel_err(est, np.array([p.r_ui for p in preds])) < 1e-3
    # ... and it is the iterations that do it: the first ridge fit (K = I) predicts the baseline
    zero = IRLSAlgo(ridge=1e-6, n_updates=0, dtype="float64", bias_ridge=0.0).fit(trainset)
    est0 = np.array([p.est for p in zero.test(testset)])
    assert rel_err(est0, np.array([p.r_ui for p in preds])) > 0.3


def test_irls_schedule_is_its_own():
    # One IRLS step from K = I: K_1 = (X^T X + gamma_0 I)^(1 - p/2) with gamma_0 = gamma0 *
    # lambda_max(X^T X), rescaled to mean diagonal 1; lin-RFM's first kernel is the AGOP
    # X^T X / n instead. Rebuild both by hand from the first iterate X = Y / (1 + lam).
    M, mask = low_rank_ratings(n_users=50, n_items=30, seed=3)
    trainset, _ = surprise_data(M, mask)
    lam, gamma0, p = 0.5, 0.3, 0.5
    kw = dict(
        ridge=lam, n_updates=1, dtype="float64", orient="items", bias_ridge=15.0, n_bias_sweeps=10
    )
    irls = IRLSAlgo(p=p, gamma0=gamma0, **kw).fit(trainset)
    rfm = LinRFMAlgo(**kw).fit(trainset)

    from rfm_recsys.surprise_algos import _trainset_arrays

    u, i, r = _trainset_arrays(trainset)
    bl = fit_baseline(u, i, r, trainset.n_users, trainset.n_items, 15.0, 15.0, 10)
    X = np.zeros((trainset.n_users, trainset.n_items))
    X[u, i] = (r - bl.predict(u, i)) / (1.0 + lam)
    xtx = X.T @ X
    lmax = np.linalg.eigvalsh(xtx)[-1]
    w, V = np.linalg.eigh(xtx + gamma0 * lmax * np.eye(xtx.shape[0]))
    K_irls = (V * w ** (1 - p / 2)) @ V.T
    K_irls /= np.mean(np.diag(K_irls))
    K_rfm = xtx / trainset.n_users
    K_rfm /= np.mean(np.diag(K_rfm))
    np.testing.assert_allclose(irls.fit_.K, K_irls, atol=1e-10)
    np.testing.assert_allclose(rfm.fit_.K, K_rfm, atol=1e-10)
    assert np.abs(irls.fit_.K - rfm.fit_.K).max() > 0.05
    # the smoothing then shrinks by eta per iteration, down to its floor
    up = FitSettings.from_params(
        IRLSAlgo(p=p, gamma0=gamma0, eta=1.5, gamma_min=1e-3).get_params()
    ).update
    gammas = []
    for t in range(30):
        up(xtx, X.shape[0], t)
        gammas.append(up.gamma_)
    assert gammas[0] == pytest.approx(gamma0 * lmax)
    assert gammas[1] == pytest.approx(gamma0 * lmax / 1.5)
    assert gammas[-1] == pytest.approx(1e-3 * lmax)


def test_half_step_is_the_weighted_lambda_ridge_solution():
    rng = np.random.default_rng(5)
    n_u, n_i, k = 40, 25, 4
    mask = rng.random((n_u, n_i)) < 0.3
    mask[7] = False  # a user without ratings keeps zeros
    u, i = np.nonzero(mask)
    y = rng.standard_normal(u.size)
    Q = rng.standard_normal((n_i, k))
    reg, reg_bias = 0.3, 2.0
    plan, perm = _side_plan(u, i, n_u, n_i)
    P, b = _solve_side(plan, perm, Q, y, reg, reg_bias, np.float64)
    for user in range(n_u):
        sel = u == user
        if not sel.any():
            assert np.all(P[user] == 0) and b[user] == 0
            continue
        X = np.hstack([Q[i[sel]], np.ones((sel.sum(), 1))])
        D = np.diag([reg * sel.sum()] * k + [reg_bias])
        sol = scipy.linalg.solve(X.T @ X + D, X.T @ y[sel])
        np.testing.assert_allclose(P[user], sol[:k], atol=1e-10)
        assert b[user] == pytest.approx(sol[k], abs=1e-10)


def test_surprise_contract_and_vectorised_test():
    M, mask = low_rank_ratings(seed=4)
    M = np.clip(np.round(M), 1, 5)
    u, i = np.nonzero(mask)
    df = pd.DataFrame({"u": u, "i": i, "r": M[u, i]})
    trainset = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = ALSAlgo(rank=3, ridge=0.1, bias_ridge=2.0, n_sweeps=4, random_state=7)
    assert isinstance(algo, AlgoBase)
    assert (algo.rank, algo.ridge, algo.bias_ridge, algo.n_sweeps, algo.random_state) == (
        3,
        0.1,
        2.0,
        4,
        7,
    )
    assert not hasattr(algo, "fit_")  # no work in __init__
    assert algo.fit(trainset) is algo
    assert len(algo.history_) == 4
    uu, ii = np.nonzero(~mask)
    testset = [(int(a), int(b), float(M[a, b])) for a, b in zip(uu[:300], ii[:300])]
    testset += [(10_000, 3, 4.0), (2, 10_000, 4.0), (10_000, 10_000, 4.0)]
    fast = algo.test(testset)
    slow = AlgoBase.test(algo, testset)
    assert [(p.uid, p.iid, p.r_ui) for p in fast] == [(p.uid, p.iid, p.r_ui) for p in slow]
    np.testing.assert_allclose([p.est for p in fast], [p.est for p in slow], atol=1e-12)
    assert [p.details for p in fast] == [p.details for p in slow]
    assert all(1 <= p.est <= 5 for p in fast)
    f = algo.fit_
    ts = algo.trainset
    # unknown user: mu + b_i; unknown item: mu + b_u; both unknown: impossible, global mean
    assert fast[-3].est == pytest.approx(np.clip(f.mu + f.b_item[ts.to_inner_iid(3)], 1, 5))
    assert fast[-2].est == pytest.approx(np.clip(f.mu + f.b_user[ts.to_inner_uid(2)], 1, 5))
    assert fast[-1].details["was_impossible"] and fast[-1].est == pytest.approx(ts.global_mean)
    # Surprise SVD's attribute names
    assert algo.pu.shape == (ts.n_users, 3) and algo.qi.shape == (ts.n_items, 3)


def test_same_seed_same_model_and_float32_close():
    M, mask = low_rank_ratings(seed=6)
    u, i = np.nonzero(mask)
    a = fit_biased_als(u, i, M[u, i], 80, 60, rank=4, ridge=0.05, n_sweeps=5, random_state=3)
    b = fit_biased_als(u, i, M[u, i], 80, 60, rank=4, ridge=0.05, n_sweeps=5, random_state=3)
    c = fit_biased_als(
        u, i, M[u, i], 80, 60, rank=4, ridge=0.05, n_sweeps=5, random_state=3, dtype=np.float32
    )
    for x, y, z in zip(a[1:], b[1:], c[1:]):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, atol=2e-3)
    assert c[3].dtype == np.float32


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="more than once"):
        fit_biased_als(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([3.0, 4.0, 5.0]), 2, 2)
    with pytest.raises(ValueError, match="codes must lie"):
        fit_biased_als(np.array([0, 5]), np.array([1, 0]), np.array([3.0, 4.0]), 2, 2)
    with pytest.raises(ValueError, match="rank"):
        fit_biased_als(np.array([0, 1]), np.array([1, 0]), np.array([3.0, 4.0]), 2, 2, rank=0)
