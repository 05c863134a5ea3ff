"""Test mixins run against every model class of the package.

:class:`RecommenderContract` (at the end) is implicit's ``RecommenderBase`` contract for the
top-N recommenders fitted on a users x items interaction matrix; the rest is for rating
predictors:

A concrete test class inherits :class:`ModelTestMixin` (and, for Surprise algorithms,
:class:`SurpriseAdapter`) and implements three hooks:

* ``make_model(**params)``: a new, unfitted model;
* ``fit(model, df)``: fit on a DataFrame with columns ``user_id, item_id, rating``, return the
  fitted model;
* ``predict(model, users, items)``: a float array of predictions for raw id pairs.

Optional hooks say what exact values to expect where a class documents them
(``item_baseline``, ``user_baseline``, ``global_mean``) and how to read and write
hyperparameters (``get_params``, ``set_params``, ``seed_params``).

The data (:func:`synthetic_ratings`) is a 60 x 80 rating matrix built here: rank-3 structure
plus user and item biases plus Gaussian noise, clipped to the 1-5 scale, half observed, with a
fifth of the observed ratings held out. Raw ids are offset (users 1000+, items 5000+) so that a
confusion of raw ids with inner codes cannot pass unnoticed.
"""

from __future__ import annotations

import functools
import inspect
import io
import os
import pickle
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rfm_recsys.fileformat import ModelFileError

RATING_SCALE = (1.0, 5.0)
UNKNOWN_USER = 10**9 + 7
UNKNOWN_ITEM = 10**9 + 9


@dataclass(frozen=True)
class Synthetic:
    """Train/test ratings and the noise-free matrix they were drawn from."""

    train: pd.DataFrame
    test: pd.DataFrame
    truth: np.ndarray  # n_users x n_items, before noise and clipping
    user_offset: int
    item_offset: int


@functools.lru_cache(maxsize=8)
def _synthetic(n_users, n_items, rank, density, noise, seed, test_share) -> Synthetic:
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_users, rank))
    V = rng.normal(size=(n_items, rank))
    b_u = rng.normal(0.0, 0.3, n_users)
    b_i = rng.normal(0.0, 0.4, n_items)
    truth = 3.0 + b_u[:, None] + b_i[None, :] + 0.8 * (U @ V.T) / np.sqrt(rank)
    mask = rng.random((n_users, n_items)) < density
    r, c = np.nonzero(mask)
    y = np.clip(truth[r, c] + rng.normal(0.0, noise, r.size), *RATING_SCALE)
    df = pd.DataFrame({"user_id": 1000 + r, "item_id": 5000 + c, "rating": y})
    held = rng.random(len(df)) < test_share
    train = df[~held].reset_index(drop=True)
    test = df[held].reset_index(drop=True)
    # every test pair has a known user and item, so the RMSE is about the model, not cold start
    test = test[test.user_id.isin(train.user_id) & test.item_id.isin(train.item_id)].reset_index(
        drop=True
    )
    return Synthetic(train, test, truth, 1000, 5000)


def synthetic_ratings(
    n_users: int = 60,
    n_items: int = 80,
    rank: int = 3,
    density: float = 0.5,
    noise: float = 0.3,
    seed: int = 0,
    test_share: float = 0.2,
) -> Synthetic:
    """Low rank + biases + noise ratings; copies, so a test may modify them."""
    s = _synthetic(n_users, n_items, rank, density, noise, seed, test_share)
    return Synthetic(s.train.copy(), s.test.copy(), s.truth.copy(), s.user_offset, s.item_offset)


def rmse(pred, truth) -> float:
    return float(
        np.sqrt(np.mean((np.asarray(pred, dtype=float) - np.asarray(truth, dtype=float)) ** 2))
    )


class ModelTestMixin:
    """Contract tests shared by every model class. Subclasses implement the hooks below."""

    #: held-out RMSE must be below this share of the RMSE of predicting the training mean
    rmse_ratio_bound = 0.85
    #: ``set_params`` with an unknown name must raise ValueError
    strict_set_params = True
    #: a hyperparameter and a new value for the get/set round trip
    param_change = ("ridge", 7.5)

    # -- hooks ---------------------------------------------------------------------------

    def make_model(self, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, model, df: pd.DataFrame):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, model, users, items) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_baseline(self, model, items) -> np.ndarray | None:
        """Documented prediction for an unknown user and these known items (None: undocumented)."""
        return None

    def user_baseline(self, model, users) -> np.ndarray | None:
        """Documented prediction for these known users and an unknown item (None: undocumented)."""
        return None

    def global_mean(self, model, train: pd.DataFrame) -> float | None:
        """Documented prediction when both ids are unknown: the training mean by default."""
        return float(train.rating.mean())

    def get_params(self, model) -> dict:
        return model.get_params()

    def set_params(self, model, **params):
        return model.set_params(**params)

    def seed_params(self, seed: int) -> dict:
        return {"random_state": seed}

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Synthetic:
        return synthetic_ratings()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data):
        # one fit per class, shared by the read-only tests (hooks are instance methods)
        hooks = cls()
        return hooks.fit(hooks.make_model(), data.train)

    # -- tests ---------------------------------------------------------------------------

    def test_fit_returns_the_model(self, data):
        model = self.make_model()
        assert self.fit(model, data.train) is model

    def test_predictions_finite_and_in_scale(self, fitted, data):
        p = self.predict(fitted, data.test.user_id.to_numpy(), data.test.item_id.to_numpy())
        assert p.shape == (len(data.test),)
        assert np.all(np.isfinite(p))
        assert p.min() >= RATING_SCALE[0] - 1e-9 and p.max() <= RATING_SCALE[1] + 1e-9

    def test_beats_global_mean_on_held_out(self, fitted, data):
        p = self.predict(fitted, data.test.user_id.to_numpy(), data.test.item_id.to_numpy())
        model_rmse = rmse(p, data.test.rating)
        mean_rmse = rmse(np.full(len(data.test), data.train.rating.mean()), data.test.rating)
        assert model_rmse < self.rmse_ratio_bound * mean_rmse, (model_rmse, mean_rmse)

    def test_batch_equals_one_by_one(self, fitted, data):
        u = data.test.user_id.to_numpy()[:7]
        i = data.test.item_id.to_numpy()[:7]
        batch = self.predict(fitted, u, i)
        single = np.array([self.predict(fitted, u[k : k + 1], i[k : k + 1])[0] for k in range(7)])
        np.testing.assert_allclose(batch, single, rtol=0, atol=1e-9)

    def test_unknown_user_gets_item_side(self, fitted, data):
        items = np.unique(data.train.item_id.to_numpy())[:10]
        p1 = self.predict(fitted, np.full(items.size, UNKNOWN_USER), items)
        p2 = self.predict(fitted, np.full(items.size, UNKNOWN_USER + 1), items)
        assert np.all(np.isfinite(p1))
        # nothing about an unknown user is known: two of them get the same predictions ...
        np.testing.assert_array_equal(p1, p2)
        # ... which still depend on the item (its bias)
        assert np.ptp(p1) > 0
        expected = self.item_baseline(fitted, items)
        if expected is not None:
            np.testing.assert_allclose(p1, expected, rtol=0, atol=1e-6)

    def test_unknown_item_gets_user_side(self, fitted, data):
        users = np.unique(data.train.user_id.to_numpy())[:10]
        p1 = self.predict(fitted, users, np.full(users.size, UNKNOWN_ITEM))
        p2 = self.predict(fitted, users, np.full(users.size, UNKNOWN_ITEM + 1))
        assert np.all(np.isfinite(p1))
        np.testing.assert_array_equal(p1, p2)
        assert np.ptp(p1) > 0
        expected = self.user_baseline(fitted, users)
        if expected is not None:
            np.testing.assert_allclose(p1, expected, rtol=0, atol=1e-6)

    def test_both_unknown_gets_global_mean(self, fitted, data):
        p = self.predict(
            fitted,
            np.array([UNKNOWN_USER, UNKNOWN_USER + 1]),
            np.array([UNKNOWN_ITEM, UNKNOWN_ITEM]),
        )
        assert np.all(np.isfinite(p))
        assert p[0] == p[1]
        expected = self.global_mean(fitted, data.train)
        if expected is not None:
            np.testing.assert_allclose(p, np.clip(expected, *RATING_SCALE), rtol=0, atol=1e-9)

    def test_pickle_round_trip(self, fitted, data):
        u = data.test.user_id.to_numpy()
        i = data.test.item_id.to_numpy()
        clone = pickle.loads(pickle.dumps(fitted))
        assert type(clone) is type(fitted)
        np.testing.assert_array_equal(self.predict(clone, u, i), self.predict(fitted, u, i))
        assert self.get_params(clone) == self.get_params(fitted)

    def test_get_set_params_round_trip(self):
        model = self.make_model()
        params = self.get_params(model)
        assert params, "no hyperparameters reported"
        # scikit-learn's clone: the constructor takes back exactly what get_params reports
        clone = type(model)(**params)
        assert self.get_params(clone) == params
        name, value = self.param_change
        assert name in params
        assert self.set_params(model, **{name: value}) is model
        assert self.get_params(model)[name] == value
        assert {k: v for k, v in self.get_params(model).items() if k != name} == {
            k: v for k, v in params.items() if k != name
        }
        if self.strict_set_params:
            with pytest.raises(ValueError, match="no_such_param"):
                self.set_params(model, no_such_param=1)

    def test_deterministic_with_seed(self, data):
        u = data.test.user_id.to_numpy()
        i = data.test.item_id.to_numpy()
        a = self.fit(self.make_model(**self.seed_params(0)), data.train)
        b = self.fit(self.make_model(**self.seed_params(0)), data.train)
        np.testing.assert_array_equal(self.predict(a, u, i), self.predict(b, u, i))


class SurpriseAdapter:
    """The hooks for a Surprise ``AlgoBase`` subclass (set ``algo_class``).

    ``fit`` goes through ``Dataset.load_from_df(...).build_full_trainset()`` and ``predict``
    through ``algo.test``, as a Surprise user would. Surprise algorithms have no
    ``get_params``/``set_params``; the scikit-learn convention they do follow (hyperparameters
    stored verbatim under their ``__init__`` names) is read through the signature, unless the
    class grows real methods.
    """

    algo_class: type = None  # type: ignore[assignment]
    default_params: ClassVar[dict] = {}

    def make_model(self, **params):
        return self.algo_class(**{**self.default_params, **params})

    def fit(self, model, df):
        from surprise import Dataset, Reader

        ds = Dataset.load_from_df(
            df[["user_id", "item_id", "rating"]], Reader(rating_scale=RATING_SCALE)
        )
        return model.fit(ds.build_full_trainset())

    def predict(self, model, users, items):
        preds = model.test(
            [(u, i, 0.0) for u, i in zip(np.asarray(users).tolist(), np.asarray(items).tolist())]
        )
        return np.array([p.est for p in preds], dtype=float)

    def get_params(self, model) -> dict:
        return model.get_params()

    def set_params(self, model, **params):
        return model.set_params(**params)

    def seed_params(self, seed: int) -> dict:
        return (
            {"random_state": seed}
            if "random_state" in inspect.signature(self.algo_class).parameters
            else {}
        )

    def global_mean(self, model, train):
        # Surprise predicts default_prediction() (the trainset's mean) when estimate is impossible
        return float(model.trainset.global_mean)


class EngineBaselines:
    """``item_baseline``/``user_baseline`` of models holding a ``RatingsFit`` in ``fit_``."""

    def _fit(self, model):
        return model.fit_

    def _inner_items(self, model, items) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inner_users(self, model, users) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_baseline(self, model, items):
        f = self._fit(model)
        return np.clip(f.mu + f.b_item[self._inner_items(model, items)], *RATING_SCALE)

    def user_baseline(self, model, users):
        f = self._fit(model)
        return np.clip(f.mu + f.b_user[self._inner_users(model, users)], *RATING_SCALE)


# ---------------------------------------------------------------------- top-N recommenders
#
# implicit's RecommenderBase contract, modelled on implicit's own RecommenderBaseTestMixin (its
# tests, not shipped in the wheel): a concrete test class sets ``make_model(**params)``. The data
# is a small users x items interaction matrix with block structure (users of one block interact
# with items of that block), so a sensible model ranks in-block items first.

N_USERS, N_ITEMS, BLOCKS = 60, 40, 4


def block_interactions(seed: int = 0, density: float = 0.5) -> sp.csr_matrix:
    """Users in block b interact with about half of block b's items, with counts 1..5."""
    rng = np.random.default_rng(seed)
    ub = np.arange(N_USERS) % BLOCKS
    ib = np.arange(N_ITEMS) % BLOCKS
    mask = (ub[:, None] == ib[None, :]) & (rng.random((N_USERS, N_ITEMS)) < density)
    values = rng.integers(1, 6, size=mask.shape).astype(np.float32)
    X = sp.csr_matrix(np.where(mask, values, 0.0).astype(np.float32))
    X.eliminate_zeros()
    return X


class RecommenderContract:
    """Tests every implicit-style recommender of the package must pass."""

    def make_model(self, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def X(cls) -> sp.csr_matrix:
        return block_interactions()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, X):
        return cls().make_model().fit(X)

    def test_fit_returns_self(self, X):
        model = self.make_model()
        assert model.fit(X) is model

    def test_recommend_shapes_and_types(self, fitted, X):
        ids, scores = fitted.recommend(0, X[0], N=5)
        assert ids.shape == (5,) and scores.shape == (5,)
        assert np.issubdtype(ids.dtype, np.integer)
        assert np.all(np.diff(scores) <= 0)
        users = np.arange(10)
        ids, scores = fitted.recommend(users, X[users], N=5)
        assert ids.shape == (10, 5) and scores.shape == (10, 5)

    def test_batch_equals_one_by_one(self, fitted, X):
        users = np.array([3, 0, 17, 42])
        ids, scores = fitted.recommend(users, X[users], N=6)
        for row, u in enumerate(users):
            i1, s1 = fitted.recommend(int(u), X[int(u)], N=6)
            np.testing.assert_array_equal(ids[row], i1)
            np.testing.assert_allclose(scores[row], s1, rtol=1e-5, atol=1e-6)

    def test_recommends_in_block_items(self, fitted, X):
        users = np.arange(N_USERS)
        ids, _ = fitted.recommend(users, X[users], N=3)
        share = np.mean((ids % BLOCKS) == (users % BLOCKS)[:, None])
        assert share > 0.9, share

    def test_already_liked_never_returned(self, fitted, X):
        users = np.arange(N_USERS)
        ids, _ = fitted.recommend(users, X[users], N=N_ITEMS)
        for u in users:
            liked = set(X[u].indices.tolist())
            got = set(ids[u][ids[u] >= 0].tolist())
            assert not liked & got
            assert len(got) == N_ITEMS - len(liked)  # every other item, padded with -1

    def test_filter_items_never_returned(self, fitted, X):
        blocked = np.array([0, 4, 8, 12, 1])
        users = np.arange(N_USERS)
        ids, _ = fitted.recommend(users, X[users], N=N_ITEMS, filter_items=blocked)
        assert not np.isin(ids, blocked).any()
        ids, _ = fitted.recommend(
            users, X[users], N=N_ITEMS, filter_items=blocked, filter_already_liked_items=False
        )
        assert not np.isin(ids, blocked).any()
        assert (ids >= 0).sum(axis=1).min() == N_ITEMS - blocked.size

    def test_without_filter_liked_items_rank_high(self, fitted, X):
        ids, _ = fitted.recommend(0, X[0], N=N_ITEMS, filter_already_liked_items=False)
        assert sorted(ids.tolist()) == list(range(N_ITEMS))

    def test_items_subset(self, fitted, X):
        subset = np.array([5, 1, 9, 2, 30])
        ids, scores = fitted.recommend(
            1, X[1], N=10, items=subset, filter_already_liked_items=False
        )
        assert ids.size == subset.size and set(ids.tolist()) == set(subset.tolist())
        full_ids, full_scores = fitted.recommend(
            1, X[1], N=N_ITEMS, filter_already_liked_items=False
        )
        lookup = dict(zip(full_ids.tolist(), full_scores.tolist()))
        np.testing.assert_allclose(scores, [lookup[i] for i in ids], rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="items and filter_items"):
            fitted.recommend(1, X[1], items=subset, filter_items=[3])
        with pytest.raises(IndexError):
            fitted.recommend(1, X[1], items=[N_ITEMS + 3])

    def test_recalculate_user_equals_stored_rows(self, fitted, X):
        users = np.arange(8)
        a = fitted.recommend(users, X[users], N=5)
        b = fitted.recommend(users, X[users], N=5, recalculate_user=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)
        # a new user (id beyond the model) is scored from her interactions alone
        new = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 4])), shape=(1, N_ITEMS))
        ids, _ = fitted.recommend(N_USERS + 5, new, N=3, recalculate_user=True)
        assert np.all(ids % BLOCKS == 0)

    def test_bad_user_items(self, fitted, X):
        with pytest.raises(ValueError, match="CSR"):
            fitted.recommend(0, X[0].toarray())
        with pytest.raises(ValueError, match="1 row for every user"):
            fitted.recommend([0, 1], X[0])
        with pytest.raises(IndexError):
            fitted.recommend(N_USERS + 1, X[0])

    def test_recommend_all(self, fitted, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ids = fitted.recommend_all(X, N=4)
        expected, _ = fitted.recommend(np.arange(N_USERS), X, N=4)
        np.testing.assert_array_equal(ids, expected)

    def test_similar_items(self, fitted):
        ids, scores = fitted.similar_items(0, N=5)
        assert ids[0] == 0 and scores[0] == pytest.approx(1.0, abs=1e-5)
        assert np.all(ids % BLOCKS == 0)
        batch_ids, _ = fitted.similar_items(np.array([0, 1]), N=5)
        np.testing.assert_array_equal(batch_ids[0], ids)
        ids, _ = fitted.similar_items(0, N=5, filter_items=[4, 8])
        assert not np.isin(ids, [4, 8]).any()
        ids, _ = fitted.similar_items(0, N=5, items=[1, 4, 8])
        assert set(ids.tolist()) == {1, 4, 8}

    def test_similar_users(self, fitted):
        ids, scores = fitted.similar_users(2, N=5)
        assert ids[0] == 2 and scores[0] == pytest.approx(1.0, abs=1e-5)
        assert np.all(ids % BLOCKS == 2)
        ids, _ = fitted.similar_users(2, N=5, filter_users=[6, 10])
        assert not np.isin(ids, [6, 10]).any()

    def test_ranking_metrics_run_unchanged(self, fitted, X):
        from implicit.evaluation import ranking_metrics_at_k

        rng = np.random.default_rng(1)
        ub = np.arange(N_USERS) % BLOCKS
        test = sp.csr_matrix(
            ((ub[:, None] == np.arange(N_ITEMS)[None, :] % BLOCKS) & (X.toarray() == 0))
            & (rng.random((N_USERS, N_ITEMS)) < 0.5),
            dtype=np.float32,
        )
        m = ranking_metrics_at_k(fitted, X, test, K=5, show_progress=False)
        assert m["precision"] > 0.6  # random ranking: about 0.1

    def test_save_load_round_trip(self, fitted, X, tmp_path):
        path = tmp_path / "model"
        fitted.save(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temp file left
        clone = type(fitted).load(path)
        assert clone.get_params() == fitted.get_params()
        users = np.arange(N_USERS)
        a = fitted.recommend(users, X[users], N=7)
        b = clone.recommend(users, X[users], N=7)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        buf = io.BytesIO()
        fitted.save(buf)
        buf.seek(0)
        clone = type(fitted).load(buf)
        np.testing.assert_array_equal(clone.similar_items(3)[0], fitted.similar_items(3)[0])

    def test_save_load_unfitted(self, tmp_path):
        model = self.make_model()
        model.save(tmp_path / "m.npz")
        assert type(model).load(tmp_path / "m.npz").get_params() == model.get_params()

    def test_load_rejects_other_files(self, tmp_path):
        np.savez(tmp_path / "x.npz", a=np.arange(3))
        with pytest.raises(ModelFileError, match="x.npz"):
            type(self.make_model()).load(tmp_path / "x.npz")

    def test_load_rejects_damaged_files(self, fitted, tmp_path):
        path = tmp_path / "model.npz"
        fitted.save(path)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
        with pytest.raises(ModelFileError, match="model.npz"):
            type(fitted).load(path)
        path.write_bytes(bytes(raw[: len(raw) // 3]))
        with pytest.raises(ModelFileError, match="model.npz"):
            type(fitted).load(path)

    def test_failed_save_keeps_the_previous_file(self, fitted, tmp_path, monkeypatch):
        path = tmp_path / "model.npz"
        fitted.save(path)
        before = path.read_bytes()

        def fail(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", fail)
        with pytest.raises(OSError, match="disk full"):
            fitted.save(path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]

    def test_pickle_round_trip(self, fitted, X):
        clone = pickle.loads(pickle.dumps(fitted))
        np.testing.assert_array_equal(clone.recommend(0, X[0])[0], fitted.recommend(0, X[0])[0])

    def test_not_fitted(self, X):
        with pytest.raises(ValueError, match="not fitted"):
            self.make_model().recommend(0, X[0])

    def test_bad_fit_input(self):
        with pytest.raises(TypeError, match="scipy sparse"):
            self.make_model().fit(np.ones((3, 3)))
        with pytest.raises(ValueError, match="negative"):
            self.make_model().fit(sp.csr_matrix(np.array([[1.0, -1.0], [1.0, 0.0]])))
        with pytest.raises(ValueError, match="NaN"):
            self.make_model().fit(sp.csr_matrix(np.array([[1.0, np.nan], [1.0, 0.0]])))

    def test_failed_fit_keeps_fitted_state(self, X):
        model = self.make_model().fit(X)
        before = model.recommend(0, X[0])[0]
        with pytest.raises(TypeError):
            model.fit(np.ones((3, 3)))
        np.testing.assert_array_equal(model.recommend(0, X[0])[0], before)
