"""BayesianSVDppAlgo (myfm): Surprise contract, implicit sets from the training ratings only,
the day of the rating, agreement with myfm's own predictions, and accuracy against BayesianMF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from surprise import AlgoBase, PredictionImpossible, accuracy
from surprise.model_selection import train_test_split

from rfm_recsys.baselines import bayesian_svdpp
from rfm_recsys.baselines.bayesian_mf import BayesianMFAlgo
from rfm_recsys.baselines.bayesian_svdpp import (
    SECONDS_PER_DAY,
    BayesianSVDppAlgo,
    fit_bayesian_svdpp,
    implicit_block,
)
from rfm_recsys.datasets import to_surprise
from rfm_recsys.datasets.timestamps import TimedTestset, timestamps_of_testset
from rfm_recsys.params import InvalidParameterError
from rfm_recsys.surprise_algos import _trainset_arrays

# the module imports myfm only when fitting; the tests need it
myfm = pytest.importorskip("myfm", reason="myfm is not installed (pip install myfm)")

FAST = dict(rank=4, n_sweeps=40, n_kept_samples=30)


def synthetic_df(n_users=80, n_items=60, n_days=30, density=0.35, day_std=0.6, seed=0):
    """Low-rank ratings plus an offset per day of rating (what the day feature can learn)."""
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n_users, 3)) * 0.6
    Q = rng.standard_normal((n_items, 3)) * 0.6
    bu = rng.normal(0, 0.3, n_users)
    bi = rng.normal(0, 0.4, n_items)
    offset = rng.normal(0, day_std, n_days)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    day = rng.integers(0, n_days, u.size)
    r = 3.4 + bu[u] + bi[i] + (P[u] * Q[i]).sum(1) + offset[day] + 0.3 * rng.standard_normal(u.size)
    df = pd.DataFrame(
        {
            "user_id": u.astype(str),
            "item_id": i.astype(str),
            "rating": np.clip(np.round(r), 1, 5),
            # a day in 2001 and a random second of it
            "timestamp": (11_323 + day) * SECONDS_PER_DAY
            + rng.integers(0, SECONDS_PER_DAY, u.size),
        }
    )
    df.attrs["rating_scale"] = (1.0, 5.0)
    return df


@pytest.fixture(scope="module")
def split():
    return train_test_split(to_surprise(synthetic_df()), test_size=0.2, random_state=1)


@pytest.fixture(scope="module")
def fitted(split):
    return BayesianSVDppAlgo(random_state=0, **FAST).fit(split[0])


# ------------------------------------------------------------------------------- contract


def test_init_verbatim_and_fit_returns_self(split):
    algo = BayesianSVDppAlgo(rank=4, n_sweeps=30, n_kept_samples=20, use_time=False, random_state=3)
    assert isinstance(algo, AlgoBase)
    assert algo.get_params() == dict(
        rank=4,
        n_sweeps=30,
        n_kept_samples=20,
        init_std=0.1,
        use_time=False,
        flipped=True,
        random_state=3,
        verbose=False,
    )
    assert not hasattr(algo, "fit_")
    assert algo.fit(split[0]) is algo
    defaults = BayesianSVDppAlgo().get_params()
    assert (defaults["rank"], defaults["n_sweeps"], defaults["use_time"]) == (32, 200, True)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(rank=0), "rank must be an integer >= 1, got 0"),
        (dict(n_sweeps=2.5), "n_sweeps must be an integer >= 1, got 2.5"),
        (dict(n_kept_samples=0), "n_kept_samples must be one of None or an integer >= 1, got 0"),
        (dict(init_std=-1.0), r"init_std must be a finite real number > 0, got -1.0"),
        (dict(use_time="yes"), "use_time must be a boolean, got 'yes'"),
        (dict(flipped=None), "flipped must be a boolean, got None"),
        (dict(random_state=-1), r"random_state must be one of None or an integer in \[0, "),
    ],
)
def test_bad_parameters_are_refused_before_any_work(params, message):
    # checked first: the trainset is not even looked at
    with pytest.raises(InvalidParameterError, match=f"BayesianSVDppAlgo: {message}"):
        BayesianSVDppAlgo(**params).fit(None)


def test_more_kept_samples_than_sweeps_is_refused(split):
    with pytest.raises(ValueError, match="n_kept_samples"):
        BayesianSVDppAlgo(n_sweeps=10, n_kept_samples=20).fit(split[0])


def test_unknown_ids(split, fitted):
    trainset, _ = split
    fit = fitted.fit_
    with pytest.raises(PredictionImpossible):
        fitted.estimate("UKN__u", "UKN__i")
    assert fitted.predict("nobody", "nothing").details["was_impossible"]
    # one side unknown and no day: the known side's block alone
    assert fitted.estimate(2, "UKN__i") == pytest.approx(fit.mu + fit.b_user[2])
    assert fitted.estimate("UKN__u", 5) == pytest.approx(fit.mu + fit.b_item[5])


def test_testset_of_unknown_pairs(split, fitted):
    trainset, _ = split
    fit = fitted.fit_
    u, i = trainset.to_raw_uid(1), trainset.to_raw_iid(4)
    day = fit.days[3] * SECONDS_PER_DAY + 100.0
    triples = [("nobody", "nothing", 3.0), ("nobody", i, 4.0), (u, "nothing", 2.0)]
    preds = fitted.test(TimedTestset(triples, [day, day, day]))
    assert [p.details["was_impossible"] for p in preds] == [True, False, False]
    assert preds[0].est == pytest.approx(trainset.global_mean)
    # the known side's block and the day's, and their interaction
    d = 3
    item_side = fit.mu + fit.b_item[4] + fit.b_day[d] + float(fit.V_item[4] @ fit.V_day[d])
    user_side = fit.mu + fit.b_user[1] + fit.b_day[d] + float(fit.V_user[1] @ fit.V_day[d])
    assert preds[1].est == pytest.approx(np.clip(item_side, 1, 5), abs=1e-5)
    assert preds[2].est == pytest.approx(np.clip(user_side, 1, 5), abs=1e-5)
    # a day without training ratings, or no time at all: no day term
    never = (fit.days.max() + 10) * SECONDS_PER_DAY
    assert [p.est for p in fitted.test(TimedTestset(triples, [never] * 3))] == [
        p.est for p in fitted.test(triples)
    ]


def test_vectorised_test_matches_algobase_test(split, fitted):
    trainset, testset = split
    plain = list(testset)[:60] + [("nobody", "nothing", 3.0), ("nobody", "7", 4.0)]
    fast = fitted.test(plain)
    slow = AlgoBase.test(fitted, plain)
    for a, b in zip(fast, slow):
        assert (a.uid, a.iid, a.r_ui) == (b.uid, b.iid, b.r_ui)
        assert a.est == pytest.approx(b.est, abs=1e-9)
        assert a.details == b.details
    # with the test ratings' times the day terms are added: predict(..., timestamps) clipped
    timed = fitted.test(testset)
    u = np.array([trainset.to_inner_uid(x) for x, _, _ in testset])
    i = np.array([trainset.to_inner_iid(x) for _, x, _ in testset])
    est, _ = fitted.fit_.predict(u, i, timestamps_of_testset(testset))
    np.testing.assert_allclose([p.est for p in timed], np.clip(est, 1, 5), atol=1e-12)
    assert not np.allclose([p.est for p in timed], [p.est for p in fitted.test(list(testset))])


def test_seeded_fits_are_reproducible(split):
    trainset, testset = split
    a = BayesianSVDppAlgo(random_state=7, **FAST).fit(trainset)
    b = BayesianSVDppAlgo(random_state=7, **FAST).fit(trainset)
    c = BayesianSVDppAlgo(random_state=8, **FAST).fit(trainset)
    pa, pb, pc = ([p.est for p in x.test(testset)] for x in (a, b, c))
    assert pa == pb and pa != pc
    assert np.array_equal(a.fit_.V_user, b.fit_.V_user)


def test_score_users_match_predict_without_time(fitted, split):
    trainset, _ = split
    scores = fitted.fit_.score_users([0, 3])
    assert scores.shape == (2, trainset.n_items)
    items = np.arange(trainset.n_items)
    est, _ = fitted.fit_.predict(np.full(items.size, 3), items)
    np.testing.assert_allclose(scores[1], est, rtol=1e-5)


# ------------------------------------------------------------------------------- the model


def test_implicit_sets_come_from_the_training_ratings_only(split, monkeypatch):
    trainset, testset = split
    built = []

    def spy(rows, cols, n_rows, n_cols, implicit=True):
        block = implicit_block(rows, cols, n_rows, n_cols, implicit)
        built.append(block)
        return block

    monkeypatch.setattr(bayesian_svdpp, "implicit_block", spy)
    BayesianSVDppAlgo(rank=2, n_sweeps=2, random_state=0).fit(trainset)
    user_block, item_block = built
    nu, ni = trainset.n_users, trainset.n_items
    assert user_block.shape == (nu, nu + ni) and item_block.shape == (ni, ni + nu)
    # every training rating is in its user's and its item's implicit set, weighted 1/sqrt(n)
    u, i, _ = _trainset_arrays(trainset)
    ub, ib = user_block.toarray(), item_block.toarray()
    assert (ub[u, nu + i] > 0).all() and (ib[i, ni + u] > 0).all()
    counts = np.bincount(u, minlength=nu)
    np.testing.assert_allclose(ub[u, nu + i], 1 / np.sqrt(counts[u]))
    assert int((ub[:, nu:] > 0).sum()) == u.size
    # no test rating's item is in its user's implicit set, nor its user in the item's
    uid, iid = trainset._raw2inner_id_users, trainset._raw2inner_id_items
    known = [(uid[a], iid[b]) for a, b, _ in testset if a in uid and b in iid]
    assert len(known) > 100
    tu, ti = np.array(known).T
    assert (ub[tu, nu + ti] == 0).all() and (ib[ti, ni + tu] == 0).all()


def test_matches_myfm_predict(split):
    """The folded samples give myfm's own posterior mean, day and implicit sets included."""
    trainset, testset = split
    u, i, r = _trainset_arrays(trainset)
    nu, ni = trainset.n_users, trainset.n_items
    times = trainset.timestamps
    fit = fit_bayesian_svdpp(
        u, i, r, nu, ni, times, rank=3, n_sweeps=20, n_kept_samples=10, random_state=5
    )
    days, col = np.unique(np.floor(times / SECONDS_PER_DAY), return_inverse=True)
    X = sp.csr_matrix((np.ones(r.size), (np.arange(r.size), col)), shape=(r.size, days.size))
    ub, ib = implicit_block(u, i, nu, ni), implicit_block(i, u, ni, nu)
    fm = myfm.MyFMRegressor(rank=3, random_seed=5)
    fm.fit(
        X,
        r,
        X_rel=[myfm.RelationBlock(u, ub), myfm.RelationBlock(i, ib)],
        n_iter=20,
        n_kept_samples=10,
        grouping=np.repeat(np.arange(5), [days.size, nu, ni, ni, nu]).tolist(),
        callback=lambda *_: (False, None),
    )
    est, impossible = fit.predict(u, i, times)
    assert not impossible.any()
    ref = fm.predict(X, X_rel=[myfm.RelationBlock(u, ub), myfm.RelationBlock(i, ib)])
    np.testing.assert_allclose(est, ref, atol=1e-5)


def test_the_day_feature_pays_where_days_matter(split):
    """On ratings with a strong effect of the day, the day feature beats BayesianMF."""
    trainset, testset = split
    rmse = {}
    for name, algo in [
        ("bsvdpp", BayesianSVDppAlgo(random_state=0, **FAST)),
        ("no time", BayesianSVDppAlgo(use_time=False, random_state=0, **FAST)),
        ("bmf", BayesianMFAlgo(rank=4, n_sweeps=40, n_kept_samples=30, random_state=0)),
    ]:
        rmse[name] = accuracy.rmse(algo.fit(trainset).test(testset), verbose=False)
    assert rmse["bsvdpp"] < rmse["bmf"] - 0.05
    assert rmse["bsvdpp"] < rmse["no time"] - 0.05


def test_without_timestamps_the_time_terms_are_off(split):
    trainset, testset = split
    df = synthetic_df().drop(columns="timestamp")
    tr, te = train_test_split(to_surprise(df), test_size=0.2, random_state=1)
    algo = BayesianSVDppAlgo(random_state=0, **FAST).fit(tr)
    assert algo.fit_.V_day is None and algo.fit_.history[0]["n_days"] == 0
    off = BayesianSVDppAlgo(use_time=False, random_state=0, **FAST).fit(trainset)
    assert [p.est for p in algo.test(te)] == [p.est for p in off.test(testset)]


@pytest.mark.slow
def test_beats_bayesian_mf_on_ml100k_u1(ml100k_dir):
    """On real ratings the implicit sets and the day beat BayesianMF of the same rank, even
    with a third of its sweeps (u1 RMSE about 0.897 against 0.909)."""
    from surprise.model_selection import PredefinedKFold

    from rfm_recsys.datasets import ml100k_official_folds

    data, _ = ml100k_official_folds("u1", data_home=ml100k_dir.parent, download=False)
    trainset, testset = next(PredefinedKFold().split(data))
    ours = BayesianSVDppAlgo(rank=8, n_sweeps=30, n_kept_samples=20, random_state=0)
    bmf = BayesianMFAlgo(rank=8, n_sweeps=100, n_kept_samples=80, random_state=0)
    r_ours = accuracy.rmse(ours.fit(trainset).test(testset), verbose=False)
    r_bmf = accuracy.rmse(bmf.fit(trainset).test(testset), verbose=False)
    assert r_ours < r_bmf - 0.005 and r_ours < 0.905
