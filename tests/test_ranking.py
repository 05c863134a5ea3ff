"""Top-N adapters and implicit's ranking metrics, checked against hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from surprise import SVD, BaselineOnly, SVDpp
from surprise.model_selection import train_test_split

from rfm_recsys.baselines.als import ALSAlgo
from rfm_recsys.datasets import make_ratings, to_surprise
from rfm_recsys.ranking import (
    SurpriseTopN,
    fit_implicit_als,
    ranking_matrices,
    ranking_metrics,
    score_all_items,
    top_n,
)
from rfm_recsys.surprise_algos import IRLSAlgo, KernelRFMAlgo, LinRFMAlgo


class _Trainset:
    def __init__(self, n_users, n_items):
        self.n_users, self.n_items = n_users, n_items


class _TableAlgo:
    """A stand-in rating predictor whose estimate is a fixed table (exercises the generic path)."""

    def __init__(self, S):
        self.S = np.asarray(S, dtype=float)
        self.trainset = _Trainset(*self.S.shape)

    def estimate(self, u, i):
        return self.S[u, i]

    def default_prediction(self):
        return 0.0


# Scores of 4 users x 6 items. With the training items filtered out, the top 3 are:
#   user 0: trained on item 0 -> [1, 2, 4]      relevant {1, 4}
#   user 1: trained on item 4 -> [3, 5, 2]      relevant {0}
#   user 2: trained on nothing -> [5, 0, 1]     relevant {0, 2, 3, 5}
#   user 3: no relevant test item -> skipped
SCORES = [
    [9, 8, 7, 1, 6, 0],
    [1, 0, 6, 8, 9, 7],
    [8, 7, 3, 2, 1, 9],
    [5, 4, 3, 2, 1, 0],
]
TRAIN = sp.csr_matrix(([5.0, 2.0, 4.0], ([0, 1, 3], [0, 4, 1])), shape=(4, 6), dtype=np.float32)
TEST = sp.csr_matrix(
    (np.ones(7, dtype=np.float32), ([0, 0, 1, 2, 2, 2, 2], [1, 4, 0, 0, 2, 3, 5])), shape=(4, 6)
)


def _hand_metrics():
    log2 = math.log2
    # user 0: hits at ranks 1 and 3, m = min(3, 2) = 2
    ap0 = (1 / 1 + 2 / 3) / 2
    ndcg0 = (1 / log2(2) + 1 / log2(4)) / (1 / log2(2) + 1 / log2(3))
    # user 1: no hit, m = 1
    ap1 = ndcg1 = 0.0
    # user 2: hits at ranks 1 and 2, m = min(3, 4) = 3
    ap2 = (1 / 1 + 2 / 2) / 3
    ndcg2 = (1 / log2(2) + 1 / log2(3)) / (1 / log2(2) + 1 / log2(3) + 1 / log2(4))
    return {
        "precision": (2 + 0 + 2) / (2 + 1 + 3),  # hits / sum_u min(K, |relevant_u|)
        "map": (ap0 + ap1 + ap2) / 3,
        "ndcg": (ndcg0 + ndcg1 + ndcg2) / 3,
    }


def test_implicit_metrics_match_hand_computed_values():
    model = SurpriseTopN(_TableAlgo(SCORES))
    ids, _ = model.recommend(np.arange(4), TRAIN, N=3)
    assert ids.tolist()[:3] == [[1, 2, 4], [3, 5, 2], [5, 0, 1]]
    got = ranking_metrics(model, TRAIN, TEST, K=3)
    want = _hand_metrics()
    assert got["precision"] == pytest.approx(want["precision"], abs=1e-12)  # 0.6667
    assert got["map"] == pytest.approx(want["map"], abs=1e-12)  # 0.5
    assert got["ndcg"] == pytest.approx(want["ndcg"], abs=1e-12)  # 0.5617
    assert want["map"] == pytest.approx(0.5) and want["ndcg"] == pytest.approx(0.56169, abs=1e-5)


def test_recommend_contract():
    model = SurpriseTopN(_TableAlgo(SCORES))
    ids, scores = model.recommend(0, TRAIN[0], N=3)
    assert ids.dtype == np.int32 and ids.ndim == 1 and ids.tolist() == [1, 2, 4]
    assert scores.tolist() == [8, 7, 6]
    # no filtering: the trained item comes back
    ids, _ = model.recommend(0, TRAIN[0], N=2, filter_already_liked_items=False)
    assert ids.tolist() == [0, 1]
    # fewer candidates than N: padded with -1 / -inf
    ids, scores = model.recommend(0, TRAIN[0], N=4, items=[0, 3, 5])
    assert ids.tolist() == [3, 5, -1, -1] and np.isneginf(scores[2:]).all()
    ids, _ = model.recommend(2, TRAIN[2], N=2, filter_items=[5])
    assert ids.tolist() == [0, 1]
    with pytest.raises(ValueError, match="1 row for every user"):
        model.recommend(np.arange(2), TRAIN, N=2)
    with pytest.raises(NotImplementedError):
        model.recommend(0, TRAIN[0], recalculate_user=True)
    with pytest.raises(TypeError, match="already fitted"):
        model.fit(TRAIN)


def test_top_n_ties_prefer_lower_ids():
    ids, sc = top_n(np.array([[1.0, 3.0, 3.0, -np.inf, 3.0]]), 4)
    assert ids.tolist() == [[1, 2, 4, 0]] and sc.tolist() == [[3, 3, 3, 1]]


@pytest.fixture(scope="module")
def fold():
    df = make_ratings(90, 60, 2500, random_state=1)
    tr, te = train_test_split(to_surprise(df), test_size=0.2, random_state=0)
    return tr, te


def test_ranking_matrices(fold):
    tr, te = fold
    train, test, info = ranking_matrices(tr, te, threshold=4.0)
    assert train.shape == test.shape == (tr.n_users, tr.n_items)
    assert train.indptr.dtype == train.indices.dtype == test.indices.dtype == np.int32
    assert train.nnz == tr.n_ratings
    for u, i, r in list(tr.all_ratings())[:50]:
        assert train[u, i] == pytest.approx(r)
    known = [
        (tr._raw2inner_id_users[u], tr._raw2inner_id_items[i])
        for u, i, r in te
        if r >= 4 and u in tr._raw2inner_id_users and i in tr._raw2inner_id_items
    ]
    assert test.nnz == len(known) and set(zip(*test.nonzero())) == set(known)
    assert np.all(test.data == 1)
    assert info["relevant_pairs"] == sum(1 for *_, r in te if r >= 4)
    assert info["relevant_pairs"] - info["relevant_unknown_dropped"] == test.nnz
    # train and test never share a pair
    assert train.multiply(test).nnz == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: SVD(n_epochs=3, random_state=0),
        lambda: SVD(n_epochs=3, biased=False, random_state=0),
        lambda: SVDpp(n_epochs=2, random_state=0),
        lambda: BaselineOnly(verbose=False),
        lambda: LinRFMAlgo(n_updates=2, orient="users"),
        lambda: LinRFMAlgo(n_updates=2, orient="items"),
        lambda: KernelRFMAlgo(n_kernel_updates=1),
        lambda: IRLSAlgo(n_updates=2),
        lambda: ALSAlgo(rank=4, n_sweeps=3, random_state=0),
    ],
)
def test_vectorised_scores_equal_estimate(make, fold):
    tr, _ = fold
    algo = make()
    algo.fit(tr)
    users = np.array([0, 3, 7])
    S = score_all_items(algo, users)
    ref = np.array([[algo.estimate(int(u), i) for i in range(tr.n_items)] for u in users])
    np.testing.assert_allclose(S, ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["lin-RFM", "kernel RFM"])
def test_frame_face_and_adapter_agree(fold, kind):
    from rfm_recsys import KernelRFM, LinRFM

    tr, te = fold
    train, test, _ = ranking_matrices(tr, te)
    kw = dict(n_updates=2, ridge=10.0, bias_ridge=5.0, dtype="float64")
    face_cls, algo_cls = (LinRFM, LinRFMAlgo) if kind == "lin-RFM" else (KernelRFM, KernelRFMAlgo)
    face = face_cls(**kw).fit(train)
    adapter = SurpriseTopN(algo_cls(**kw).fit(tr))
    a = ranking_metrics(face, train, test)
    b = ranking_metrics(adapter, train, test)
    for k in ("precision", "map", "ndcg"):
        assert a[k] == pytest.approx(b[k], abs=1e-9)


def test_implicit_als_fits_quietly_and_beats_chance(fold, monkeypatch):
    import implicit.utils

    tr, te = fold
    train, test, _ = ranking_matrices(tr, te)
    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", RuntimeWarning
        )  # no "OpenBLAS is configured to use N threads"
        model = fit_implicit_als(train, factors=8, iterations=5, random_state=0)
    m = ranking_metrics(model, train, test)
    assert set(m) == {"precision", "map", "ndcg", "auc"}
    assert all(0.0 <= v <= 1.0 for v in m.values())
    # a random ranking hits about K / n_candidates of the relevant items
    assert m["precision"] > 2 * 10 / tr.n_items
