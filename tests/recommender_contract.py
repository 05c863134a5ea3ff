"""implicit's ``RecommenderBase`` contract, run against every top-N recommender of the package.

Modelled on implicit's own ``RecommenderBaseTestMixin`` (its tests, not shipped in the wheel):
a concrete test class sets ``make_model(**params)`` and inherits the tests. The data is a
small users x items interaction matrix with block structure (users of one block interact with
items of that block), so a sensible model ranks in-block items first.
"""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

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
        with pytest.raises(ValueError, match="no 'meta'"):
            type(self.make_model()).load(tmp_path / "x.npz")

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
