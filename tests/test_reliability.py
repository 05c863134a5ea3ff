"""Reliability of fitted models: clipping without a scale, interrupted fits, concurrent calls.

Data: the synthetic 60 x 80 low-rank ratings of model_mixin.synthetic_ratings (1-5 scale).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from model_mixin import synthetic_ratings
from surprise import Dataset, Reader

from rfm_recsys import ALSAlgo, IRLSAlgo, KernelRFM, KernelRFMAlgo, LinRFM, LinRFMAlgo
from rfm_recsys.fitting import fit as fitting


@pytest.fixture(scope="module")
def data():
    return synthetic_ratings()


def all_pairs(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    users, items = df.user_id.unique(), df.item_id.unique()
    u, i = np.meshgrid(np.append(users, -1), np.append(items, -1), indexing="ij")
    return u.ravel(), i.ravel()  # every known pair, plus unknown user / item / both


# ---------------------------------------------------------------------- clipping


def test_predictions_clipped_to_training_range_without_rating_scale(data):
    # plain lin-RFM: the kernel step smooths its predictions into the range on this data
    train = data.train
    lo, hi = float(train.rating.min()), float(train.rating.max())
    u, i = all_pairs(train)
    raw = LinRFM(clip=False).fit(train)
    clipped = LinRFM().fit(train)
    assert clipped.rating_range_ == (lo, hi)
    p_raw, p = raw.predict(u, i), clipped.predict(u, i)
    # unclipped plain lin-RFM does leave the range on this data, so the clipping is exercised
    assert (p_raw > hi).any() and (p_raw < lo).any()
    np.testing.assert_array_equal(p, np.clip(p_raw, lo, hi))
    fold = clipped.fold_in({train.item_id.iloc[0]: 5.0, train.item_id.iloc[1]: 1.0})
    assert fold.between(lo, hi).all()
    # a rating_scale still wins; clip=False turns all clipping off
    scaled = LinRFM(rating_scale=(0.0, 4.0)).fit(train.assign(rating=train.rating - 1.0))
    assert scaled.predict(u, i).min() >= 0.0 and scaled.predict(u, i).max() <= 4.0
    assert (LinRFM(rating_scale=(1, 5), clip=False).fit(train).predict(u, i) > 5).any()


def test_clipping_survives_save_load_and_sparse_fits(data):
    train = data.train
    m = LinRFM().fit(train)
    buf = io.BytesIO()
    m.save(buf)
    buf.seek(0)
    loaded = LinRFM.load(buf)
    assert loaded.rating_range_ == m.rating_range_ and loaded.clip is True
    u, i = all_pairs(train)
    np.testing.assert_array_equal(loaded.predict(u, i), m.predict(u, i))
    X = sp.csr_matrix(
        (train.rating, (train.user_id - data.user_offset, train.item_id - data.item_offset))
    )
    sm = LinRFM().fit(X)
    assert sm.rating_range_ == m.rating_range_
    rows, cols = np.meshgrid(np.arange(X.shape[0]), np.arange(X.shape[1]), indexing="ij")
    p = sm.predict(rows.ravel(), cols.ravel())
    assert p.min() >= m.rating_range_[0] and p.max() <= m.rating_range_[1]


# ---------------------------------------------------------------------- interrupted fits


def other_ratings(data) -> pd.DataFrame:
    # another data set: different users, shifted ratings, so a half-replaced state would show
    df = data.train
    return df[df.user_id % 2 == 0].assign(user_id=lambda d: d.user_id + 7, rating=5.0)


def trainset(df: pd.DataFrame):
    reader = Reader(rating_scale=(1, 5))
    return Dataset.load_from_df(df[["user_id", "item_id", "rating"]], reader).build_full_trainset()


def interrupt_engine(monkeypatch, exc: BaseException) -> None:
    """Make the engine raise ``exc`` from inside its iteration loop (after the first row fit)."""
    real = fitting.run_engine

    def interrupted(*args, **kwargs):
        def boom(iteration, record):
            raise exc

        kwargs["callback"] = boom
        return real(*args, **kwargs)

    monkeypatch.setattr(fitting, "run_engine", interrupted)


@pytest.mark.parametrize("cls", [LinRFM, KernelRFM], ids=lambda c: c.__name__)
@pytest.mark.parametrize("exc", [KeyboardInterrupt, MemoryError])
@pytest.mark.parametrize("validation_share", [0.0, 0.2])
@pytest.mark.parametrize("rank", [None, 5], ids=["dense", "factored"])
def test_interrupted_frame_model_fit_leaves_the_fitted_model_as_it_was(
    data, monkeypatch, cls, exc, validation_share, rank
):
    m = cls(validation_share=validation_share, random_state=0, rank=rank).fit(data.train)
    u, i = all_pairs(data.train)
    before = m.predict(u, i)
    recs = m.recommend(data.train.user_id.unique()[:5], N=7)
    state = dict(vars(m))
    # raised from the public callback, then from inside the engine itself
    with pytest.raises(exc):
        m.fit(other_ratings(data), callback=lambda it, rec: (_ for _ in ()).throw(exc()))
    interrupt_engine(monkeypatch, exc())
    with pytest.raises(exc):
        m.fit(other_ratings(data))
    assert {k: v for k, v in vars(m).items() if not k.startswith("_cache")} == {
        k: v for k, v in state.items() if not k.startswith("_cache")
    }
    np.testing.assert_array_equal(m.predict(u, i), before)
    for a, b in zip(m.recommend(data.train.user_id.unique()[:5], N=7), recs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "cls", [LinRFMAlgo, KernelRFMAlgo, IRLSAlgo, ALSAlgo], ids=lambda c: c.__name__
)
@pytest.mark.parametrize("exc", [KeyboardInterrupt, MemoryError])
def test_interrupted_surprise_fit_leaves_the_fitted_algorithm_as_it_was(
    data, monkeypatch, cls, exc
):
    algo = cls(random_state=0) if cls is ALSAlgo else cls()
    algo.fit(trainset(data.train))
    testset = list(data.test[["user_id", "item_id", "rating"]].itertuples(index=False))
    before = [p.est for p in algo.test(testset)]
    old_trainset, old_fit = algo.trainset, algo.fit_
    new = trainset(other_ratings(data))
    with pytest.raises(exc):
        if cls is ALSAlgo:  # its own loop: raise from its per-epoch callback
            algo.fit(new, callback=lambda epoch, fit: (_ for _ in ()).throw(exc()))
        else:
            interrupt_engine(monkeypatch, exc())
            algo.fit(new)
    assert algo.trainset is old_trainset and algo.fit_ is old_fit
    assert [p.est for p in algo.test(testset)] == before


# ---------------------------------------------------------------------- concurrent calls


def run_concurrently(tasks, n_threads: int = 8, rounds: int = 4):
    """Run every task ``rounds`` times from ``n_threads`` threads started together."""
    barrier = threading.Barrier(n_threads)

    def worker(k):
        barrier.wait()
        return [tasks[(k + j) % len(tasks)]() for j in range(rounds * len(tasks))]

    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(worker, range(8)))


def assert_same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [LinRFM, KernelRFM], ids=lambda c: c.__name__)
@pytest.mark.parametrize("rank", [None, 5], ids=["dense", "factored"])
def test_concurrent_predict_and_recommend_match_serial_calls(data, cls, rank):
    train = data.train.assign(user_id=lambda d: "u" + d.user_id.astype(str))  # string ids
    buf = io.BytesIO()
    cls(random_state=0, rank=rank).fit(train).save(buf)

    def fresh():  # a loaded model has every lazy cache still empty
        buf.seek(0)
        return cls.load(buf)

    users = train.user_id.unique()
    items = train.item_id.unique()
    test_users = "u" + data.test.user_id.astype(str)

    def tasks_for(m):
        return [
            lambda: m.predict(test_users, data.test.item_id),
            lambda: m.predict(users[:20], items[:20]),
            lambda: m.recommend(users[:6], N=5),
            lambda: m.recommend(users[7], N=10, filter_already_liked_items=False),
            lambda: m.similar_items(items[3], N=5),
            lambda: m.similar_users(users[2], N=5),
            lambda: m.fold_in({items[0]: 4.0, items[5]: 2.0}),
        ]

    serial = [task() for task in tasks_for(fresh())]
    shared = fresh()
    tasks = tasks_for(shared)
    for k, results in enumerate(run_concurrently(tasks)):
        for j, got in enumerate(results):
            assert_same(got, serial[(k + j) % len(tasks)])


@pytest.mark.parametrize("cls", [LinRFMAlgo, KernelRFMAlgo, ALSAlgo], ids=lambda c: c.__name__)
def test_concurrent_surprise_predictions_match_serial_calls(data, cls):
    algo = (cls(random_state=0) if cls is ALSAlgo else cls()).fit(trainset(data.train))
    testset = list(data.test[["user_id", "item_id", "rating"]].itertuples(index=False))
    serial = [p.est for p in algo.test(testset)]
    one = [algo.predict(u, i).est for u, i, _ in testset[:50]]
    tasks = [
        lambda: [p.est for p in algo.test(testset)],
        lambda: [algo.predict(u, i).est for u, i, _ in testset[:50]],
    ]
    for k, results in enumerate(run_concurrently(tasks)):
        for j, got in enumerate(results):
            assert got == (serial if (k + j) % 2 == 0 else one)
