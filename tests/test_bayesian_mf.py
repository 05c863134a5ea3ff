"""BayesianMFAlgo (myfm): Surprise contract, unknown ids, vectorised test, accuracy on a toy set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from surprise import AlgoBase, Dataset, PredictionImpossible, Reader, accuracy

from rfm_recsys.baselines.bayesian_mf import BayesianMFAlgo, fit_bayesian_mf
from rfm_recsys.params import InvalidParameterError
from rfm_recsys.surprise_algos import _trainset_arrays

# the module imports myfm only when fitting; the tests need it
myfm = pytest.importorskip("myfm", reason="myfm is not installed (pip install myfm)")


def synthetic_df(n_users=80, n_items=60, density=0.35, rank=3, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n_users, rank)) * 0.6
    Q = rng.standard_normal((n_items, rank)) * 0.6
    bu = rng.normal(0, 0.3, n_users)
    bi = rng.normal(0, 0.4, n_items)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = 3.4 + bu[u] + bi[i] + (P[u] * Q[i]).sum(1) + noise * rng.standard_normal(u.size)
    return pd.DataFrame(
        {"user": u.astype(str), "item": i.astype(str), "rating": np.clip(np.round(r), 1, 5)}
    )


@pytest.fixture(scope="module")
def split():
    df = synthetic_df()
    rng = np.random.default_rng(1)
    test = rng.random(len(df)) < 0.2
    data = Dataset.load_from_df(df[~test], Reader(rating_scale=(1, 5)))
    testset = list(df[test].itertuples(index=False, name=None))
    return data.build_full_trainset(), testset


FAST = dict(n_sweeps=40, n_kept_samples=30)


@pytest.fixture(scope="module")
def fitted(split):
    return BayesianMFAlgo(rank=3, random_state=0, **FAST).fit(split[0])


def test_init_verbatim_and_fit_returns_self(split):
    algo = BayesianMFAlgo(rank=4, n_sweeps=30, n_kept_samples=20, random_state=3)
    assert isinstance(algo, AlgoBase)
    assert algo.get_params() == dict(
        rank=4, n_sweeps=30, n_kept_samples=20, init_std=0.1, random_state=3, verbose=False
    )
    assert not hasattr(algo, "fit_")
    assert algo.fit(split[0]) is algo


def test_beats_baseline_and_vectorised_test_matches_predict(split, fitted):
    trainset, testset = split
    preds = fitted.test(testset)
    rmse = accuracy.rmse(preds, verbose=False)
    ratings = np.array([r for _, _, r in testset])
    assert rmse < 0.8 * ratings.std()
    # the vectorised test returns what AlgoBase.test (one predict per rating) would
    slow = AlgoBase.test(fitted, testset[:50])
    for a, b in zip(preds[:50], slow):
        assert a.uid == b.uid and a.iid == b.iid
        assert a.est == pytest.approx(b.est, abs=1e-9)
        assert a.details == b.details


def test_matches_myfm_predict(split):
    """The folded sample arrays give myfm's own posterior-mean predictions."""
    trainset, _ = split
    u, i, r = _trainset_arrays(trainset)
    nu, ni = trainset.n_users, trainset.n_items
    fit = fit_bayesian_mf(u, i, r, nu, ni, rank=3, n_sweeps=20, n_kept_samples=10, random_state=5)
    X = sp.csr_matrix(
        (np.ones(2 * r.size), (np.repeat(np.arange(r.size), 2), np.c_[u, nu + i].ravel())),
        shape=(r.size, nu + ni),
    )
    fm = myfm.MyFMRegressor(rank=3, random_seed=5)
    fm.fit(
        X,
        r,
        n_iter=20,
        n_kept_samples=10,
        grouping=[0] * nu + [1] * ni,
        callback=lambda *_: (False, None),
    )
    est, impossible = fit.predict(u, i)
    assert not impossible.any()
    np.testing.assert_allclose(est, fm.predict(X), atol=1e-4)


def test_seeded_fits_are_reproducible(split):
    a = BayesianMFAlgo(rank=3, random_state=7, **FAST).fit(split[0])
    b = BayesianMFAlgo(rank=3, random_state=7, **FAST).fit(split[0])
    pa = [p.est for p in a.test(split[1])]
    pb = [p.est for p in b.test(split[1])]
    assert pa == pb


def test_unknown_ids(split, fitted):
    trainset, _ = split
    known_u = trainset.to_raw_uid(0)
    known_i = trainset.to_raw_iid(0)
    with pytest.raises(PredictionImpossible):
        fitted.estimate("UKN__u", "UKN__i")
    # one side unknown: the known side's bias on top of w0
    iu = trainset.to_inner_uid(known_u)
    ii = trainset.to_inner_iid(known_i)
    assert fitted.estimate(iu, "UKN__i") == pytest.approx(fitted.fit_.mu + fitted.fit_.b_user[iu])
    assert fitted.estimate("UKN__u", ii) == pytest.approx(fitted.fit_.mu + fitted.fit_.b_item[ii])
    p = fitted.predict("nobody", "nothing")
    assert p.details["was_impossible"]
    both = fitted.test([("nobody", "nothing", 3.0), (known_u, "nothing", 3.0)])
    assert both[0].details["was_impossible"] and not both[1].details["was_impossible"]
    assert both[0].est == pytest.approx(trainset.global_mean)


@pytest.mark.parametrize(
    "params, name",
    [
        (dict(rank=0), "rank"),
        (dict(n_sweeps=2.5), "n_sweeps"),
        (dict(init_std=-1.0), "init_std"),
        (dict(random_state="x"), "random_state"),
    ],
)
def test_bad_parameters_are_named(split, params, name):
    with pytest.raises(InvalidParameterError, match=name):
        BayesianMFAlgo(**params).fit(split[0])


def test_more_kept_samples_than_sweeps_is_refused(split):
    with pytest.raises(ValueError, match="n_kept_samples"):
        BayesianMFAlgo(n_sweeps=10, n_kept_samples=20).fit(split[0])


def test_score_users_match_predict(split, fitted):
    trainset, _ = split
    scores = fitted.fit_.score_users([0, 3])
    assert scores.shape == (2, trainset.n_items)
    items = np.arange(trainset.n_items)
    est, _ = fitted.fit_.predict(np.full(items.size, 3), items)
    np.testing.assert_allclose(scores[1], est, rtol=1e-5)


def test_default_keeps_all_but_a_tenth_of_any_number_of_sweeps(split):
    from rfm_recsys.baselines.bayesian_mf import kept_samples

    assert kept_samples(200, None) == 180
    assert kept_samples(100, None) == 90
    assert kept_samples(5, 3) == 3
    # a --tune grid over n_sweeps alone must fit at every point (it once failed at 100)
    algo = BayesianMFAlgo(rank=2, n_sweeps=20, random_state=0).fit(split[0])
    assert algo.fit_.history[0]["n_samples"] == 18
