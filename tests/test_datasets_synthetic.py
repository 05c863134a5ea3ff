"""make_ratings: shapes, determinism, scale, skew, the planted model, and the ML-10M shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rfm_recsys.datasets import make_ratings, ml10m_shape, to_csr


def _gini(counts: np.ndarray) -> float:
    c = np.sort(counts.astype(np.float64))
    n = len(c)
    return float((2 * np.arange(1, n + 1) - n - 1) @ c / (n * c.sum()))


def test_shape_dtypes_and_distinct_pairs() -> None:
    df = make_ratings(300, 120, 5_000, rank=4, random_state=0)
    assert list(df.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert [str(t) for t in df.dtypes] == ["int32", "int32", "float32", "int64"]
    assert len(df) == 5_000
    assert not df.duplicated(["user_id", "item_id"]).any()
    # every user and item appears: the shape is exactly n_users x n_items
    assert df.user_id.nunique() == 300 and df.item_id.nunique() == 120
    assert df.user_id.min() == 1 and df.user_id.max() == 300
    assert df.item_id.min() == 1 and df.item_id.max() == 120
    # sorted like MovieLens' files: by user, then item
    assert (
        np.diff(df.user_id.to_numpy().astype(np.int64) * 1000 + df.item_id.to_numpy()) > 0
    ).all()
    # a minimum of ratings per user, as MovieLens keeps users with >= 20
    assert df.user_id.value_counts().min() >= 5
    assert df.attrs["rating_scale"] == (1.0, 5.0)


def test_determinism_with_a_seed() -> None:
    a = make_ratings(200, 80, 3_000, random_state=42)
    b = make_ratings(200, 80, 3_000, random_state=42)
    c = make_ratings(200, 80, 3_000, random_state=43)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    g = np.random.default_rng(7)
    d = make_ratings(50, 20, 300, random_state=g)
    assert len(d) == 300


@pytest.mark.parametrize(
    ("scale", "step"), [((1, 5), 1.0), ((0.5, 5), 0.5), ((1, 10), 1.0), ((-1, 1), 0.25)]
)
def test_ratings_on_the_scale_grid(scale: tuple[float, float], step: float) -> None:
    df = make_ratings(
        200, 100, 4_000, rating_scale=scale, rating_step=step, noise=1.0, random_state=1
    )
    r = df.rating.to_numpy(np.float64)
    assert r.min() >= scale[0] and r.max() <= scale[1]
    assert np.allclose((r - scale[0]) / step, np.round((r - scale[0]) / step))
    # both ends of the scale are reached with this much noise, and most of the grid is used
    assert r.min() == scale[0] and r.max() == scale[1]
    assert len(np.unique(r)) >= 0.6 * ((scale[1] - scale[0]) / step + 1)


def test_movielens_like_mean_and_spread() -> None:
    df = make_ratings(2_000, 500, 60_000, random_state=3)
    assert 3.3 < df.rating.mean() < 3.9  # MovieLens: ~3.5 on 1..5
    assert 0.8 < df.rating.std() < 1.3


def test_zipf_popularity_is_long_tailed_and_uniform_is_not() -> None:
    z = make_ratings(2_000, 1_000, 40_000, popularity="zipf", random_state=5)
    u = make_ratings(2_000, 1_000, 40_000, popularity="uniform", random_state=5)
    zi, ui = z.item_id.value_counts().to_numpy(), u.item_id.value_counts().to_numpy()
    top = len(zi) // 10
    # MovieLens-like: the top 10% of items draw a large share of the ratings
    assert np.sort(zi)[::-1][:top].sum() / zi.sum() > 0.35
    assert np.sort(ui)[::-1][:top].sum() / ui.sum() < 0.2
    assert _gini(zi) > 0.5 > 0.25 > _gini(ui)
    # user activity: a long right tail
    zu = z.user_id.value_counts()
    assert zu.max() > 5 * zu.median()
    assert _gini(zu.to_numpy()) > _gini(u.user_id.value_counts().to_numpy()) + 0.15
    # popularity is not tied to the id order
    assert (
        abs(np.corrcoef(z.item_id.value_counts().sort_index().to_numpy(), np.arange(1, 1001))[0, 1])
        < 0.2
    )


def test_dense_problems_and_the_full_grid() -> None:
    df = make_ratings(20, 10, 190, random_state=0)  # 95% of the grid
    assert len(df) == 190 and not df.duplicated(["user_id", "item_id"]).any()
    full = make_ratings(7, 5, 35, random_state=0)
    assert len(full) == 35 and full.groupby("user_id").size().eq(5).all()


def test_the_planted_model_explains_the_ratings() -> None:
    df, truth = make_ratings(
        400, 200, 20_000, rank=5, noise=0.1, random_state=9, return_factors=True
    )
    assert truth["user_factors"].shape == (400, 5) and truth["item_factors"].shape == (200, 5)
    u = df.user_id.to_numpy() - 1
    i = df.item_id.to_numpy() - 1
    pred = (
        truth["mu"]
        + truth["user_bias"][u]
        + truth["item_bias"][i]
        + np.einsum("ij,ij->i", truth["user_factors"][u], truth["item_factors"][i])
    )
    pred = np.clip(pred, 1, 5)
    rmse = float(np.sqrt(np.mean((pred - df.rating.to_numpy()) ** 2)))
    assert rmse < 0.4  # rounding to whole stars (~0.29) plus the small noise
    assert rmse < 0.5 * float(df.rating.std())


def test_timestamps_in_movielens_range() -> None:
    df = make_ratings(100, 50, 1_000, random_state=2)
    assert df.timestamp.min() >= 789_652_009 and df.timestamp.max() <= 1_697_068_800


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_users=10, n_items=10, n_ratings=5), "between"),
        (dict(n_users=10, n_items=10, n_ratings=101), "between"),
        (dict(n_users=10, n_items=10, n_ratings=50, popularity="pareto"), "popularity"),
        (dict(n_users=10, n_items=10, n_ratings=50, rating_scale=(5, 1)), "rating_scale"),
        (dict(n_users=10, n_items=10, n_ratings=50, rating_step=0), "rating_step"),
        (dict(n_users=10, n_items=10, n_ratings=50, rank=0), "rank"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_ratings(**kwargs)


def test_million_ratings_csr_ready() -> None:
    df = make_ratings(6_040, 3_706, 1_000_209, random_state=0)  # ML-1M's shape
    assert len(df) == 1_000_209 and df.user_id.nunique() == 6_040 and df.item_id.nunique() == 3_706
    mat, users, items = to_csr(df)
    assert mat.shape == (6_040, 3_706) and mat.nnz == 1_000_209


@pytest.mark.slow
def test_ml10m_shape() -> None:
    # its speed (under a minute; 4-6 s here) is a benchmark figure in the README, not a test
    df = make_ratings(**ml10m_shape(), rating_scale=(0.5, 5), rating_step=0.5, random_state=0)
    assert len(df) == 10_000_054
    assert df.user_id.nunique() == 69_878 and df.item_id.nunique() == 10_677
    counts = df.item_id.value_counts()
    assert counts.max() > 20 * counts.mean()  # ML-10M: 37x
