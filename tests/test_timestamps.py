"""Rating timestamps through Surprise: the same folds, times aligned, and nothing without them."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, Dataset, Reader
from surprise.model_selection import KFold, PredefinedKFold, train_test_split

from rfm_recsys.datasets import RatingsFrameError, make_ratings, to_surprise
from rfm_recsys.datasets.timestamps import (
    TimedDatasetAutoFolds,
    TimedTestset,
    timestamps_of_testset,
    timestamps_of_trainset,
)


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return make_ratings(60, 40, 1_000, random_state=0)


def _plain(df: pd.DataFrame) -> Dataset:
    """What to_surprise returned before it kept timestamps: Surprise's own dataset."""
    frame = df[["user_id", "item_id", "rating"]].astype({"rating": np.float64})
    return Dataset.load_from_df(frame, Reader(rating_scale=df.attrs["rating_scale"]))


def _times_by_pair(df: pd.DataFrame) -> dict:
    return {(u, i): float(t) for u, i, t in zip(df.user_id, df.item_id, df.timestamp)}


def test_folds_unchanged_and_times_aligned(ratings):
    timed, plain = to_surprise(ratings), _plain(ratings)
    assert isinstance(timed, TimedDatasetAutoFolds)
    assert [r[:3] for r in timed.raw_ratings] == [r[:3] for r in plain.raw_ratings]
    times = _times_by_pair(ratings)
    for splitter in (KFold(5, random_state=0, shuffle=True), KFold(3, random_state=7)):
        for (tr, te), (tr0, te0) in zip(splitter.split(timed), splitter.split(plain)):
            assert list(tr.all_ratings()) == list(tr0.all_ratings())
            assert tr._raw2inner_id_users == tr0._raw2inner_id_users
            assert tr._raw2inner_id_items == tr0._raw2inner_id_items
            assert list(te) == list(te0) and isinstance(te, TimedTestset)
            # trainset times follow all_ratings(), testset times follow the triples
            t = timestamps_of_trainset(tr)
            assert t.shape == (tr.n_ratings,)
            assert all(
                times[(tr.to_raw_uid(u), tr.to_raw_iid(i))] == s
                for (u, i, _), s in zip(tr.all_ratings(), t)
            )
            assert list(timestamps_of_testset(te)) == [times[(u, i)] for u, i, _ in te]
            # the plain dataset's folds carry none
            assert timestamps_of_trainset(tr0) is None and timestamps_of_testset(te0) is None
    tr, te = train_test_split(timed, test_size=0.2, random_state=1)
    tr0, te0 = train_test_split(plain, test_size=0.2, random_state=1)
    assert list(te) == list(te0) and timestamps_of_trainset(tr).shape == (tr.n_ratings,)


def test_other_algorithms_unchanged(ratings):
    """Surprise's own algorithms give the same predictions on timed folds."""
    (tr, te), (tr0, te0) = (
        next(KFold(2, random_state=0).split(d)) for d in (to_surprise(ratings), _plain(ratings))
    )
    est = [p.est for p in SVD(random_state=0, n_epochs=3).fit(tr).test(te)]
    est0 = [p.est for p in SVD(random_state=0, n_epochs=3).fit(tr0).test(te0)]
    assert est == est0


def test_dataset_without_timestamps(ratings):
    data = to_surprise(ratings.drop(columns="timestamp"))
    assert all(r[3] is None for r in data.raw_ratings)
    tr, te = next(KFold(2, random_state=0).split(data))
    assert timestamps_of_trainset(tr) is None and timestamps_of_testset(te) is None
    assert timestamps_of_trainset(data.build_full_trainset()) is None
    assert isinstance(te, list) and len(te[0]) == 3


def test_testset_slices_pickles_and_length_guard(ratings):
    tr, te = next(KFold(2, random_state=0).split(to_surprise(ratings)))
    times = timestamps_of_testset(te)
    head = te[:10]
    assert isinstance(head, TimedTestset) and list(timestamps_of_testset(head)) == list(times[:10])
    assert te[3] == list(te)[3]
    again = pickle.loads(pickle.dumps((tr, te)))
    assert np.array_equal(timestamps_of_testset(again[1]), times)
    assert np.array_equal(timestamps_of_trainset(again[0]), timestamps_of_trainset(tr))
    te.append(te[0])  # changed after it was built: its timestamps are no longer trusted
    assert timestamps_of_testset(te) is None
    with pytest.raises(ValueError, match="2 timestamps for 1 ratings"):
        TimedTestset([("u", "i", 3.0)], [1.0, 2.0])


def test_missing_datetime_and_bad_timestamps(ratings):
    df = ratings.head(50).copy()
    stamps = pd.to_datetime(df["timestamp"], unit="s")
    with_dt = to_surprise(df.assign(timestamp=stamps))
    assert [float(r[3]) for r in with_dt.raw_ratings] == df["timestamp"].astype(float).tolist()
    holes = df.assign(timestamp=df["timestamp"].astype(float).where(df.index % 2 == 0))
    ts = to_surprise(holes).build_full_trainset()
    t = timestamps_of_trainset(ts)
    assert np.isnan(t).sum() == int((df.index % 2 == 1).sum())
    with pytest.raises(RatingsFrameError, match="timestamp column"):
        to_surprise(df.assign(timestamp="yesterday"))


def test_official_folds_carry_timestamps(ml100k_dir):
    from rfm_recsys.datasets import ml100k_official_folds

    data, files = ml100k_official_folds("u1", data_home=ml100k_dir.parent, download=False)
    tr, te = next(PredefinedKFold().split(data))
    plain = Dataset.load_from_folds(files, data.reader)
    tr0, te0 = next(PredefinedKFold().split(plain))
    assert list(te) == list(te0) and list(tr.all_ratings()) == list(tr0.all_ratings())
    t, tt = timestamps_of_trainset(tr), timestamps_of_testset(te)
    assert t.shape == (80_000,) and tt.shape == (20_000,)
    # ml-100k was collected from September 1997 to April 1998
    assert t.min() > 874_000_000 and max(t.max(), tt.max()) < 894_000_000
    with open(files[0][1]) as fh:
        first = fh.readline().split("\t")
    assert te[0][:2] == (first[0], first[1]) and tt[0] == float(first[3])
