"""LinRFM specifics: both input faces, recommendation, fold-in, similarity, persistence, bad input.

The shared contract (fit/predict, unknown ids, pickle, params, seeds) is in test_models_common.py.
Data: the synthetic 60 x 80 low-rank ratings of model_mixin.synthetic_ratings.
"""

from __future__ import annotations

import inspect
import io
import math
import pickle
import warnings
import zipfile
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.evaluation import ranking_metrics_at_k
from model_mixin import RATING_SCALE, rmse, synthetic_ratings

from rfm_recsys import InvalidParameterError
from rfm_recsys.checks import RatingsError
from rfm_recsys.ids import Vocabulary
from rfm_recsys.model import LinRFM, NotFittedError, ScoringRecommenderBase, UnknownIdError

N_USERS, N_ITEMS = 60, 80


@pytest.fixture(scope="module")
def data():
    return synthetic_ratings()


def to_csr(df: pd.DataFrame, d) -> sp.csr_matrix:
    return sp.csr_matrix(
        (
            df.rating.to_numpy(),
            (df.user_id.to_numpy() - d.user_offset, df.item_id.to_numpy() - d.item_offset),
        ),
        shape=(N_USERS, N_ITEMS),
    )


# every test on a fitted model runs with the default kernel (dense on this 60 x 80 set) and with
# a factored one of rank 8
KERNELS = pytest.mark.parametrize("rank", ["auto", 8], ids=["dense", "factored"])


@pytest.fixture(scope="module", params=["auto", 8], ids=["dense", "factored"])
def df_model(data, request):
    return LinRFM(rank=request.param).fit(data.train)


@pytest.fixture(scope="module", params=["auto", 8], ids=["dense", "factored"])
def sp_model(data, request):
    return LinRFM(rank=request.param).fit(to_csr(data.train, data))


# ---------------------------------------------------------------------- the two input faces


def test_dataframe_and_sparse_fit_agree(data):
    # every user and item of the synthetic data is in the training part, so the sorted raw ids
    # map to the same codes as the matrix indices
    m_df = LinRFM(dtype="float64").fit(data.train)
    m_sp = LinRFM(dtype="float64").fit(to_csr(data.train, data))
    assert (m_df.n_users_, m_df.n_items_) == (m_sp.n_users_, m_sp.n_items_) == (N_USERS, N_ITEMS)
    assert m_df.fitted_on_ == "dataframe" and m_sp.fitted_on_ == "sparse"
    t = data.test
    p_df = m_df.predict(t.user_id.to_numpy(), t.item_id.to_numpy())
    p_sp = m_sp.predict(
        t.user_id.to_numpy() - data.user_offset, t.item_id.to_numpy() - data.item_offset
    )
    np.testing.assert_allclose(p_df, p_sp, rtol=0, atol=1e-9)
    # other sparse formats store the same entries
    coo = to_csr(data.train, data).tocoo()
    for X in (coo, sp.csr_array(coo), coo.tocsc()):
        p = (
            LinRFM(dtype="float64")
            .fit(X)
            .predict(t.user_id - data.user_offset, t.item_id - data.item_offset)
        )
        np.testing.assert_allclose(p, p_sp, rtol=0, atol=1e-9)


def test_sparse_explicit_zero_is_an_observation(data):
    X = to_csr(data.train, data)
    X.data[0] = 0.0  # stored: a rating of 0, not a missing entry
    m = LinRFM().fit(X)
    assert m.fit_.A.nnz == X.nnz


def test_history_and_callback(data):
    seen = []
    m = LinRFM(n_updates=4).fit(
        data.train, callback=lambda it, rec: seen.append((it, rec["train_rmse"]))
    )
    assert [h["iteration"] for h in m.history_] == [0, 1, 2, 3, 4]
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4]
    for h in m.history_:
        assert h["train_rmse"] > 0 and h["iteration_seconds"] >= 0
    assert math.isclose(sum(h["iteration_seconds"] for h in m.history_), m.history_[-1]["seconds"])
    mv = LinRFM(n_updates=4, validation_share=0.2, random_state=0).fit(data.train)
    assert all(np.isfinite(h["valid_rmse"]) for h in mv.history_)


def test_mixed_type_ids_are_refused_with_the_fix(data):
    # 1 and "1" would silently be two users: refused, naming the types and the cast
    df = data.train.assign(user_id=[u if u % 2 else f"s{u}" for u in data.train.user_id])
    with pytest.raises(RatingsError, match=r"mixes id types \(int, str\).*astype\(str\)"):
        LinRFM().fit(df)
    with pytest.raises(RatingsError, match="item id column 'item_id' mixes"):
        LinRFM().fit(
            data.train.assign(
                item_id=data.train.item_id.astype(object).where(
                    data.train.index % 3 > 0, data.train.item_id.astype(str)
                )
            )
        )
    # one type per column is fine, strings or ints; a list mixing str and int ids at predict
    # time must not turn the int id into a string
    m = LinRFM().fit(df.assign(user_id=df.user_id.astype(str)))
    p = m.predict(["s1000", 1001], [5000, 5000])
    assert p[1] == m.predict(424242, 5000)  # 1001 (int) is unknown: the ids are strings
    obj = data.train.assign(user_id=data.train.user_id.map(lambda u: (u,)))
    with pytest.raises(TypeError, match="astype\\(str\\)"):
        LinRFM().fit(obj).save(io.BytesIO())


def test_predict_forms_and_clipping(data):
    m = LinRFM().fit(data.train)
    ms = LinRFM(rating_scale=RATING_SCALE).fit(data.train)
    u, i = int(data.test.user_id[0]), int(data.test.item_id[0])
    assert isinstance(m.predict(u, i), float)
    # one user against several items broadcasts; sequences of different lengths are refused
    items = data.test.item_id.to_numpy()[:5]
    assert m.predict(u, items).shape == (5,)
    assert m.predict(items, u).shape == (5,)
    with pytest.raises(ValueError, match=r"one shape, or one of them be a single id"):
        m.predict([u, u], [i])
    with pytest.raises(ValueError, match=r"got shapes \(2,\) and \(3,\)"):
        m.predict([u, u], [i, i, i])
    # the scale clips and does nothing else
    t = data.test
    np.testing.assert_array_equal(
        ms.predict(t.user_id, t.item_id), np.clip(m.predict(t.user_id, t.item_id), *RATING_SCALE)
    )
    est, impossible = m.predict([u, -1], [-1, -1], return_impossible=True)
    assert impossible.tolist() == [False, True]
    assert est[1] == pytest.approx(data.train.rating.mean())


def test_unfitted_model_says_so():
    with pytest.raises(NotFittedError, match="call fit"):
        LinRFM().predict([1], [2])


def test_set_params_rejects_unknown_names():
    with pytest.raises(
        ValueError, match=r"invalid parameter 'lambda_'.*valid parameters are .*\bridge\b"
    ):
        LinRFM().set_params(lambda_=1)
    assert "ridge=3" in repr(LinRFM(ridge=3))


# ---------------------------------------------------------------------- recommendation


def test_recommend_excludes_seen_and_ranks_by_prediction(data, df_model):
    m = df_model
    user = int(data.train.user_id[0])
    seen = set(data.train.item_id[data.train.user_id == user])
    ids, scores = m.recommend(user, N=7)
    assert ids.shape == scores.shape == (7,)
    assert not seen & set(ids.tolist())
    assert np.all(np.diff(scores) <= 0)
    np.testing.assert_allclose(scores, m.predict(user, ids), rtol=0, atol=1e-4)
    # the best unseen items by predict, in order
    unseen = np.array(sorted(set(m.item_ids_) - seen))
    best = unseen[np.argsort(-m.predict(user, unseen), kind="stable")[:7]]
    assert ids.tolist() == best.tolist()
    ids_all, _ = m.recommend(user, N=N_ITEMS, filter_already_liked_items=False)
    assert sorted(ids_all.tolist()) == sorted(m.item_ids_.tolist())
    # implicit's spelling of the same call
    ids2, scores2 = m.recommend(user, N=7, filter_already_liked_items=True)
    np.testing.assert_array_equal(ids, ids2)


def test_recommend_batch_shape_and_padding(data, sp_model):
    X = to_csr(data.train, data)
    users = np.arange(6)
    ids, scores = sp_model.recommend(users, X[users], N=10)
    assert ids.shape == scores.shape == (6, 10)
    assert ids.dtype == np.int32  # implicit.evaluation reads them as int[:, :]
    for k, u in enumerate(users):
        one_ids, one_scores = sp_model.recommend(int(u), X[u], N=10)
        np.testing.assert_array_equal(ids[k], one_ids)
        np.testing.assert_allclose(scores[k], one_scores)
        assert not set(X[u].indices) & set(ids[k].tolist())
    # more asked than there are unseen items: rows are padded with -1 / -inf, singles are trimmed
    n_unseen = N_ITEMS - np.diff(X.indptr)[users]
    ids, scores = sp_model.recommend(users, X[users], N=N_ITEMS)
    for k in range(len(users)):
        assert (ids[k] >= 0).sum() == n_unseen[k]
        assert np.all(ids[k, n_unseen[k] :] == -1) and np.all(np.isneginf(scores[k, n_unseen[k] :]))
    one_ids, _ = sp_model.recommend(0, X[0], N=N_ITEMS)
    assert one_ids.shape == (n_unseen[0],)
    # without user_items the training ratings are filtered
    np.testing.assert_array_equal(
        sp_model.recommend(users, N=5)[0], sp_model.recommend(users, X[users], N=5)[0]
    )
    # a batch of raw string ids pads with ""
    m = LinRFM().fit(data.train.assign(item_id=lambda d: "i" + d.item_id.astype(str)))
    ids, _ = m.recommend(np.array([1000, 1001]), N=N_ITEMS)
    assert ids.dtype.kind == "U" and (ids == "").any()


def test_recommend_items_and_filter_items(data, df_model):
    m = df_model
    user = int(data.train.user_id[0])
    pool = m.item_ids_[::5]
    ids, _ = m.recommend(user, N=100, items=pool, filter_already_liked_items=False)
    assert sorted(ids.tolist()) == sorted(pool.tolist())
    block = m.recommend(user, N=5)[0][:2]
    ids, _ = m.recommend(user, N=5, filter_items=block)
    assert not set(block.tolist()) & set(ids.tolist())
    with pytest.raises(ValueError, match="both items and filter_items"):
        m.recommend(user, items=pool, filter_items=block)
    with pytest.raises(UnknownIdError, match="item id"):
        m.recommend(user, items=[123456789])


def test_recommend_unknown_user_is_a_clear_error(df_model):
    with pytest.raises(UnknownIdError, match="recalculate_user=True") as exc:
        df_model.recommend(424242)
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, IndexError)


def test_recalculate_user_reproduces_a_training_user(data):
    # users as rows: folding in a training row refits it exactly as in training (up to the bias,
    # which the baseline's alternating sweeps estimate almost identically)
    X = to_csr(data.train, data)
    # plain lin-RFM: with a radial kernel the bias gap also moves the kernel part unevenly
    m = LinRFM(orient="items", dtype="float64", solve_tol=None).fit(X)
    users = np.arange(5)
    a_ids, a_sc = m.recommend(users, X[users], N=N_ITEMS, filter_already_liked_items=False)
    b_ids, b_sc = m.recommend(
        users, X[users], N=N_ITEMS, filter_already_liked_items=False, recalculate_user=True
    )
    a = np.take_along_axis(a_sc, np.argsort(a_ids, axis=1), axis=1)
    b = np.take_along_axis(b_sc, np.argsort(b_ids, axis=1), axis=1)
    # the only difference is the user bias: the fold-in's one-step ridge estimate against the
    # training fit's alternating sweeps (it shifts the residuals, so the kernel part a little too)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)
    bias_gap = np.abs((a - b).mean(axis=1))
    assert np.all(np.abs(a - b).max(axis=1) <= 2 * bias_gap + 1e-9)
    # new user ids are fine with recalculate_user
    ids, _ = m.recommend(np.array([10_000]), X[[0]], N=3, recalculate_user=True)
    assert ids.shape == (1, 3)
    with pytest.raises(ValueError, match="needs user_items"):
        m.recommend(0, recalculate_user=True)
    with pytest.raises(ValueError, match="1 row for every user"):
        m.recommend(users, X[:2])


def test_ranking_metrics_at_k_runs_unchanged(data, sp_model):
    X = to_csr(data.train, data)
    T = to_csr(data.test, data)
    relevant = T.copy()
    relevant.data = (relevant.data >= 3.5).astype(np.float32)
    relevant.eliminate_zeros()
    res = ranking_metrics_at_k(sp_model, X, relevant, K=10, show_progress=False)
    assert set(res) >= {"precision", "map", "ndcg", "auc"}
    assert all(0.0 <= v <= 1.0 for v in res.values())
    # a random ranking of the unseen items finds K * |relevant| / |unseen| per user
    n_rel = np.diff(relevant.indptr)
    n_unseen = N_ITEMS - np.diff(X.indptr)
    has = n_rel > 0
    random_precision = (10 * n_rel[has] / n_unseen[has]).sum() / np.minimum(10, n_rel[has]).sum()
    # measured: precision 0.49 against 0.21 for random, AUC 0.70
    assert res["precision"] > 1.8 * random_precision
    assert res["auc"] > 0.6


# ---------------------------------------------------------------------- fold-in


@KERNELS
@pytest.mark.parametrize("orient", ["users", "items"])
def test_fold_in_scores_held_out_items_better_than_baselines(data, orient, rank):
    full = pd.concat([data.train, data.test], ignore_index=True)
    rng = np.random.default_rng(1)
    new_users = rng.choice(full.user_id.unique(), 10, replace=False)
    m = LinRFM(orient=orient, rank=rank).fit(full[~full.user_id.isin(new_users)])
    assert m.fit_.users_are_rows == (orient == "items")
    f = m.fit_
    fold, item_base, bias_only, truth = [], [], [], []
    for u in new_users:
        r = full[full.user_id == u].sample(frac=1.0, random_state=0)
        given, held = r.iloc[: len(r) // 2], r.iloc[len(r) // 2 :]
        scores = m.fold_in(given[["item_id", "rating"]])
        fold.append(scores.loc[held.item_id].to_numpy())
        base = f.mu + f.b_item[m._item_codes(held.item_id)]
        dev = given.rating.to_numpy() - f.mu - f.b_item[m._item_codes(given.item_id)]
        item_base.append(base)  # what predict gives an unknown user
        bias_only.append(
            base + dev.sum() / (f.bias_ridge + dev.size)
        )  # the fold-in without the kernel
        truth.append(held.rating.to_numpy())
    y = np.concatenate(truth)
    e_fold = rmse(np.concatenate(fold), y)
    e_item = rmse(np.concatenate(item_base), y)
    e_bias = rmse(np.concatenate(bias_only), y)
    # measured: 0.66 (users) / 0.66 (items) against 0.75 with the bias alone and 0.78 for mu + b_i
    assert e_fold < 0.93 * e_bias < 0.93 * e_item, (e_fold, e_bias, e_item)


def test_fold_in_inputs_and_unknown_items(data, df_model):
    m = df_model
    r = data.train[data.train.user_id == 1000]
    as_df = m.fold_in(r[["item_id", "rating"]])
    as_series = m.fold_in(pd.Series(r.rating.to_numpy(), index=r.item_id.to_numpy()))
    as_dict = m.fold_in(dict(zip(r.item_id, r.rating)))
    assert list(as_df.index) == list(m.item_ids_)
    pd.testing.assert_series_equal(as_df, as_series)
    pd.testing.assert_series_equal(as_df, as_dict)
    with pytest.warns(UserWarning, match="1 of the new user's .* unknown"):
        with_unknown = m.fold_in({**dict(zip(r.item_id, r.rating)), 999_999: 4.0})
    pd.testing.assert_series_equal(with_unknown, as_df)
    # no ratings, or none of a known item: an error that says what predict gives instead
    with pytest.raises(RatingsError, match="no ratings"):
        m.fold_in({})
    with pytest.raises(UnknownIdError, match="none of the new user's 2 rated item"):
        m.fold_in({999_998: 4.0, 999_999: 3.0})
    # out of scale: refused against rating_scale, or without one the training range
    lo, hi = m.rating_range_
    with pytest.raises(RatingsError, match=r"outside the training ratings' range"):
        m.fold_in({5000: 10 * hi})
    with pytest.raises(RatingsError, match=r"outside rating_scale"):
        LinRFM(rating_scale=RATING_SCALE).fit(data.train).fold_in({5000: 50.0})
    with pytest.raises(RatingsError, match="NaN"):
        m.fold_in({5000: float("nan")})
    with pytest.raises(RatingsError, match="one new user"):
        m.fold_in(data.train.head(100))
    ids, _ = m.recommend_new_user(r[["item_id", "rating"]], N=5)
    assert len(ids) == 5 and not set(ids.tolist()) & set(r.item_id)


# ---------------------------------------------------------------------- similarity


@KERNELS
@pytest.mark.parametrize("orient", ["users", "items"])
def test_similar_items_and_users(data, orient, rank):
    m = LinRFM(orient=orient, dtype="float64", rank=rank).fit(to_csr(data.train, data))
    f = m.fit_
    W = np.asarray(f.A @ f.K)  # completed rows
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    d = np.sqrt(np.diag(f.K))
    feature_cos = f.K / d[:, None] / d[None, :]
    row_cos = Wn @ Wn.T
    item_cos, user_cos = (feature_cos, row_cos) if f.users_are_rows else (row_cos, feature_cos)
    for method, cos, n in (
        (m.similar_items, item_cos, N_ITEMS),
        (m.similar_users, user_cos, N_USERS),
    ):
        ids, scores = method(3, N=6)
        assert ids.shape == scores.shape == (6,)
        assert ids[0] == 3 and scores[0] == 1.0
        assert np.all(np.diff(scores[1:]) <= 1e-12) and np.all(np.abs(scores) <= 1.0)
        np.testing.assert_allclose(scores[1:], cos[3, ids[1:]], rtol=0, atol=1e-8)
        assert ids[1:].tolist() == [j for j in np.argsort(-cos[3], kind="stable") if j != 3][:5]
        ids2, scores2 = method(np.array([3, 7]), N=4)
        assert ids2.shape == scores2.shape == (2, 4)
        assert ids2[:, 0].tolist() == [3, 7]
        assert len(method(3, N=n + 5)[0]) == n
    nearest = int(m.similar_items(3, N=2)[0][1])
    ids, _ = m.similar_items(3, N=10, filter_items=[nearest])
    assert nearest not in ids.tolist() and ids[0] == 3
    ids, _ = m.similar_users(3, N=10, users=[3, 5, 9])
    assert sorted(ids.tolist()) == [3, 5, 9] and ids[0] == 3


# ---------------------------------------------------------------------- persistence


@KERNELS
def test_save_load_round_trip_without_pickle(data, tmp_path, rank):
    df = data.train.assign(user_id=lambda d: "u" + d.user_id.astype(str))  # string ids
    m = LinRFM(
        rating_scale=RATING_SCALE, validation_share=0.2, random_state=3, ridge=15.0, rank=rank
    ).fit(df)
    m.save(tmp_path / "model")  # ".npz" is appended, as implicit does
    path = tmp_path / "model.npz"
    assert path.is_file()
    with np.load(path, allow_pickle=False) as z:  # every entry loads without pickle
        arrays = {k: z[k] for k in z.files}
    assert all(a.dtype != object for a in arrays.values())
    assert arrays["user_ids"].dtype.kind == "U"
    with zipfile.ZipFile(path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())
    loaded = LinRFM.load(str(tmp_path / "model"))
    assert loaded.get_params() == m.get_params()
    users = "u" + data.test.user_id.astype(str)
    np.testing.assert_array_equal(
        loaded.predict(users, data.test.item_id), m.predict(users, data.test.item_id)
    )
    for a, b in zip(
        loaded.recommend(users[:3].to_numpy(), N=5), m.recommend(users[:3].to_numpy(), N=5)
    ):
        np.testing.assert_array_equal(a, b)
    assert len(loaded.history_) == len(m.history_)
    for ha, hb in zip(loaded.history_, m.history_):
        assert ha.keys() == hb.keys()
        for k in ha:
            assert ha[k] == hb[k] or (math.isnan(ha[k]) and math.isnan(hb[k]))
    assert loaded.fit_.K.dtype == m.fit_.K.dtype
    assert type(loaded.fit_.kernel) is type(m.fit_.kernel)
    np.testing.assert_array_equal(loaded.fit_.K, m.fit_.K)
    # a sparse fit and an unfitted model round-trip too; file objects work
    sp_m = LinRFM().fit(to_csr(data.train, data))
    sp_m.save(tmp_path / "sparse.npz")
    sp_loaded = LinRFM.load(tmp_path / "sparse.npz")
    X = to_csr(data.train, data)
    np.testing.assert_array_equal(
        sp_loaded.recommend(np.arange(4), X[:4])[0], sp_m.recommend(np.arange(4), X[:4])[0]
    )
    with open(tmp_path / "bare.npz", "wb") as fh:
        LinRFM(n_updates=7).save(fh)
    with open(tmp_path / "bare.npz", "rb") as fh:
        bare = LinRFM.load(fh)
    assert bare.n_updates == 7 and "fit_" not in vars(bare)


def test_pickle_keeps_nothing_stale(data, df_model):
    df_model.recommend(1000)  # fills the caches
    clone = pickle.loads(pickle.dumps(df_model))
    assert not [k for k in vars(clone) if k.startswith("_cache")]
    np.testing.assert_array_equal(clone.recommend(1000)[0], df_model.recommend(1000)[0])


# ---------------------------------------------------------------------- bad input


def _frame(data, n=200):
    return data.train.head(n).copy()


BAD_FRAMES = {
    "nan": (
        lambda d: d.assign(rating=d.rating.where(d.index != 3)),
        RatingsError,
        r"NaN or infinite.*dropna",
    ),
    "inf": (
        lambda d: d.assign(rating=d.rating.where(d.index != 3, np.inf)),
        RatingsError,
        r"NaN or infinite",
    ),
    "out_of_scale": (
        lambda d: d.assign(rating=d.rating.where(d.index != 3, 7.0)),
        RatingsError,
        r"outside rating_scale.*declare the scale",
    ),
    "duplicates": (
        lambda d: pd.concat([d, d.head(2)]),
        RatingsError,
        r"rated more than once.*duplicates='mean'",
    ),
    "empty": (lambda d: d.head(0), RatingsError, r"empty"),
    "single_user": (
        lambda d: d[d.user_id == d.user_id.iloc[0]],
        RatingsError,
        r"1 user\(s\).*at least 2 users",
    ),
    "single_item": (
        lambda d: d[d.item_id == d.item_id.iloc[0]],
        RatingsError,
        r"1 item\(s\).*at least",
    ),
    "missing_column": (
        lambda d: d.rename(columns={"rating": "stars"}),
        RatingsError,
        r"\['rating'\] not found.*'stars'.*rating_col=",
    ),
    "non_numeric": (
        lambda d: d.assign(rating=d.rating.astype(str).where(d.index != 3, "five")),
        RatingsError,
        r"must hold numbers.*'five'.*pd.to_numeric",
    ),
    "missing_id": (
        lambda d: d.assign(user_id=d.user_id.astype(float).where(d.index != 3)),
        RatingsError,
        r"missing user id.*dropna",
    ),
    "dense_array": (lambda d: np.ones((5, 5)), TypeError, r"scipy.sparse.csr_matrix"),
    "list": (lambda d: [(1, 2, 3.0)], TypeError, r"DataFrame.*sparse"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_input_is_a_clear_error_and_keeps_the_fitted_model(data, case):
    make, exc, pattern = BAD_FRAMES[case]
    model = LinRFM(rating_scale=RATING_SCALE).fit(data.train)
    before = model.predict(data.test.user_id, data.test.item_id)
    state = dict(vars(model))
    with pytest.raises(exc, match=pattern):
        model.fit(make(_frame(data)))
    # nothing half-fitted: the previous fit is untouched
    assert {k: v for k, v in vars(model).items() if not k.startswith("_cache")} == {
        k: v for k, v in state.items() if not k.startswith("_cache")
    }
    np.testing.assert_array_equal(model.predict(data.test.user_id, data.test.item_id), before)


@pytest.mark.parametrize(
    "X, pattern",
    [
        (sp.csr_matrix((3, 4)), r"stores no entries"),
        (sp.csr_matrix(np.array([[1.0, np.nan], [2.0, 3.0]])), r"NaN"),
        (sp.csr_matrix(np.array([[1.0, 2.0, 3.0]])), r"1 user\(s\)"),
        (
            sp.coo_matrix(
                (np.array([1.0, 2.0, 3.0]), (np.array([0, 0, 1]), np.array([1, 1, 0]))),
                shape=(2, 2),
            ),
            r"rated more than once",
        ),
        (sp.csr_matrix(np.array([[1, 0], [0, 1]], dtype=bool)), r"dtype bool"),
    ],
)
def test_bad_sparse_input(X, pattern):
    with pytest.raises(RatingsError, match=pattern):
        LinRFM().fit(X)


@pytest.mark.parametrize("how", ["mean", "last"])
def test_duplicates_resolved(data, how):
    base = data.train.copy()
    dup = base.head(5).assign(rating=lambda d: np.clip(d.rating + 1.0, 1, 5))
    messy = pd.concat([base, dup], ignore_index=True)
    if how == "mean":
        clean = messy.groupby(["user_id", "item_id"], as_index=False, sort=False).rating.mean()
    else:
        clean = messy.drop_duplicates(["user_id", "item_id"], keep="last")
    t = data.test
    got = LinRFM(duplicates=how).fit(messy).predict(t.user_id, t.item_id)
    want = LinRFM().fit(clean).predict(t.user_id, t.item_id)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    with pytest.raises(RatingsError, match="duplicates='last'"):
        LinRFM().fit(messy)


def test_bad_parameters_are_clear(data):
    with pytest.raises(ValueError, match="orient"):
        LinRFM(orient="rows").fit(data.train)
    with pytest.raises(ValueError, match="duplicates must be"):
        LinRFM(duplicates="first").fit(data.train)
    with pytest.raises(ValueError, match="rating_scale"):
        LinRFM(rating_scale=5).fit(data.train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinRFM(rating_scale=(1, 5)).fit(data.train)  # ints are fine


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"ridge": -1}, r"LinRFM: ridge must be a finite real number >= 0, got -1"),
        ({"n_updates": "3"}, r"LinRFM: n_updates must be an integer >= 0, got '3' \(str\)"),
        ({"power": 0.0}, r"power must be a finite real number in \(0, 4\], got 0.0"),
        ({"bias_ridge": float("nan")}, r"bias_ridge must be .*>= 0, got nan"),
        ({"patience": 0}, r"patience must be an integer >= 1, got 0"),
        ({"rating_scale": (5, 1)}, r"rating_scale must be None or a pair \(low, high\)"),
    ],
)
def test_bad_hyperparameters_raise_invalid_parameter_error(data, params, pattern):
    model = LinRFM(**params)
    with pytest.raises(InvalidParameterError, match=pattern):
        model.fit(data.train)
    assert not hasattr(model, "fit_")


def test_signature_is_the_config():
    sig = inspect.signature(LinRFM)
    assert list(sig.parameters) == LinRFM.config.names()
    assert LinRFM().get_params() == LinRFM.config.defaults()
    assert LinRFM(ridge=5).ridge == 5 and type(LinRFM(ridge=5).ridge) is int  # stored verbatim


def test_failure_inside_the_engine_keeps_the_fitted_model(data):
    from rfm_recsys import EngineMemoryError

    model = LinRFM().fit(data.train)
    before = model.predict(data.test.user_id, data.test.item_id)
    fit_before = model.fit_
    model.set_params(max_memory=1)
    with pytest.raises(EngineMemoryError, match="raise max_memory"):
        model.fit(data.train)
    assert model.fit_ is fit_before
    np.testing.assert_array_equal(model.predict(data.test.user_id, data.test.item_id), before)


class _ItemCosine(ScoringRecommenderBase):
    """A minimal implicit-feedback model on the shared base: item-item cosine on a CSR matrix."""

    _parameter_constraints: ClassVar[dict] = {}

    def fit(self, user_items, show_progress=False, callback=None):
        X = sp.csr_matrix(user_items, dtype=np.float64)
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0))).ravel()
        self._X, self._norms = X, np.maximum(norms, 1e-12)
        self.user_vocab_, self.item_vocab_ = (
            Vocabulary.range(X.shape[0]),
            Vocabulary.range(X.shape[1]),
        )
        return self

    def _item_sim(self) -> np.ndarray:
        G = (self._X.T @ self._X).toarray()
        return G / self._norms[:, None] / self._norms[None, :]

    def _score_users(self, codes):
        return np.asarray(self._X[codes] @ self._item_sim())

    def _seen_items(self):
        return self._X

    def _similarity(self, side, codes):
        assert side == "item"
        return self._item_sim()[codes]

    def save(self, file):  # pragma: no cover - not part of this test
        raise NotImplementedError


def test_base_serves_an_implicit_feedback_model():
    rng = np.random.default_rng(0)
    X = sp.random(30, 12, density=0.3, random_state=rng, format="csr")
    X.data[:] = 1.0
    model = _ItemCosine().fit(X)
    ids, scores = model.recommend(np.arange(5), X[:5], N=4)
    assert ids.shape == (5, 4) and ids.dtype == np.int32
    S = np.asarray(X[:5] @ model._item_sim())
    for k in range(5):
        assert not set(X[k].indices) & set(ids[k][ids[k] >= 0].tolist())
        np.testing.assert_allclose(scores[k][ids[k] >= 0], S[k, ids[k][ids[k] >= 0]])
    sim_ids, sim = model.similar_items(3, N=3)
    assert sim_ids[0] == 3 and sim[0] == 1.0
    with pytest.raises(NotImplementedError, match="recalculate_user"):
        model.recommend(0, X[0], recalculate_user=True)
    ranked = ranking_metrics_at_k(model, X, X, K=3, show_progress=False)
    assert set(ranked) >= {"precision", "map", "ndcg", "auc"}
