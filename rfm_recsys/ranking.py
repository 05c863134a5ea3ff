"""Top-N evaluation with implicit's own metrics for rating predictors of any library.

``implicit.evaluation.ranking_metrics_at_k(model, train, test, K)`` takes any
:class:`~implicit.recommender_base.RecommenderBase`: for each batch of users with at least one
test item it calls ``model.recommend(userids, train[userids], N=K)`` (so items the user has in
``train`` are filtered out) and scores the returned ids against the user's test items. This
module supplies the pieces the project's top-N table needs:

* :func:`ranking_matrices` turns a Surprise fold into the two matrices, indexed by the
  trainset's inner ids: ``train`` holds every training rating (the items each user has already
  rated, which are never candidates), ``test`` holds a 1 for each *relevant* test pair
  (test rating ``>= threshold``, 4 stars by default) whose user and item are known in training.
* :class:`SurpriseTopN` is a thin ``RecommenderBase`` over any fitted Surprise-style algorithm:
  it scores every item for a batch of users with the algorithm's own prediction rule (its
  ``score_all_items`` method, vectorised for Surprise's SVD, SVD++ and BaselineOnly, one
  ``estimate`` call per pair otherwise) and ranks by predicted rating.
* :func:`fit_implicit_als` fits implicit's ``AlternatingLeastSquares`` (implicit feedback:
  every training rating is a positive interaction of confidence ``alpha``).
* :func:`ranking_metrics` calls implicit's ``ranking_metrics_at_k`` and returns its dict.

Metric definitions (implicit 0.7's, with ``R_u`` the user's relevant test items, ``rec_u`` the
top ``K`` recommendations, ``m_u = min(K, |R_u|)`` and users without relevant test items
skipped):

* ``precision``: ``sum_u |rec_u & R_u| / sum_u m_u`` (hits over the best achievable hits, i.e.
  precision@K that does not punish users with fewer than ``K`` relevant items);
* ``map``: mean over users of ``(1 / m_u) sum_{j <= K, rec_u[j] in R_u} hits_j / j``;
* ``ndcg``: mean over users of ``DCG / IDCG`` with binary gains, ``DCG = sum 1 / log2(j + 1)``
  over hit positions ``j`` (1-based) and ``IDCG`` the DCG of ``m_u`` hits at the top;
* ``auc``: implicit's AUC limited to the top ``K``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.recommender_base import RecommenderBase

from .core.blas import blas_threads
from .topn import Candidates, block_seen, score_chunk_rows, top_n

__all__ = [
    "SurpriseTopN",
    "fit_implicit_als",
    "ranking_matrices",
    "ranking_metrics",
    "score_all_items",
    "top_n",
]


def ranking_matrices(
    trainset, testset, threshold: float = 4.0
) -> tuple[sp.csr_matrix, sp.csr_matrix, dict]:
    """The ``train`` and ``test`` matrices of implicit's ranking metrics for one fold.

    Args:
        trainset: the fold's Surprise ``Trainset`` (defines the inner user and item ids).
        testset: the fold's test ratings ``[(raw_uid, raw_iid, r), ...]``.
        threshold: a test rating ``>= threshold`` is relevant.

    Returns:
        ``(train, test, info)``: ``n_users x n_items`` CSR matrices with int32 indices, ``train``
        holding the training ratings (float32), ``test`` a 1 per relevant test pair; ``info``
        counts the test pairs, the relevant ones, those dropped because the user or the item
        is unknown in training (no model can rank them), and the users evaluated.
    """
    from .surprise_algos import _trainset_arrays

    n_u, n_i = trainset.n_users, trainset.n_items
    u, i, r = _trainset_arrays(trainset)
    train = sp.csr_matrix((r.astype(np.float32), (u, i)), shape=(n_u, n_i), dtype=np.float32)
    ru = trainset._raw2inner_id_users
    ri = trainset._raw2inner_id_items
    tu, ti, tr = [], [], []
    relevant = unknown = 0
    for uid, iid, rating in testset:
        if rating < threshold:
            continue
        relevant += 1
        iu = ru.get(uid)
        ii = ri.get(iid)
        if iu is None or ii is None:
            unknown += 1
            continue
        tu.append(iu)
        ti.append(ii)
        tr.append(1.0)
    test = sp.csr_matrix(
        (
            np.asarray(tr, dtype=np.float32),
            (np.asarray(tu, dtype=np.int64), np.asarray(ti, dtype=np.int64)),
        ),
        shape=(n_u, n_i),
        dtype=np.float32,
    )
    test.sum_duplicates()
    test.data[:] = 1.0
    for m in (train, test):
        m.indices = m.indices.astype(np.int32)
        m.indptr = m.indptr.astype(np.int32)
    info = {
        "test_pairs": len(testset),
        "relevant_pairs": relevant,
        "relevant_unknown_dropped": unknown,
        "users_evaluated": int(np.count_nonzero(np.diff(test.indptr))),
    }
    return train, test, info


def score_all_items(algo, users: np.ndarray) -> np.ndarray:
    """Predicted ratings of every item for a batch of known users (inner ids).

    Uses the algorithm's own prediction rule:

    * an algorithm with a ``score_all_items(users)`` method (the package's
      :class:`~rfm_recsys.surprise_algos.LinRFMAlgo`, ``IRLSAlgo`` and
      :class:`~rfm_recsys.baselines.als.ALSAlgo`) scores itself;
    * Surprise's ``SVD``, ``SVDpp`` and ``BaselineOnly`` are scored from their fitted factors
      and biases (``_SURPRISE_SCORERS``);
    * anything else: ``algo.estimate(u, i)`` per pair (slow; ``PredictionImpossible`` gives
      the default prediction).

    Scores are not clipped to the rating scale: clipping only creates ties at the top.

    Returns:
        A ``len(users) x n_items`` float64 array.
    """
    users = np.asarray(users, dtype=np.int64)
    own = getattr(algo, "score_all_items", None)
    if callable(own):
        return np.asarray(own(users), dtype=np.float64)
    for cls, scorer in _SURPRISE_SCORERS:
        if type(algo) is cls:
            return scorer(algo, users)
    return _score_by_estimate(algo, users)


def _svd_scores(algo, users: np.ndarray) -> np.ndarray:
    dots = algo.pu[users] @ algo.qi.T
    if not algo.biased:
        return dots
    return algo.trainset.global_mean + algo.bu[users][:, None] + algo.bi[None, :] + dots


def _svdpp_scores(algo, users: np.ndarray) -> np.ndarray:
    ts = algo.trainset
    rows = []
    for u in users:
        js = np.fromiter((j for j, _ in ts.ur[int(u)]), dtype=np.int64)
        implicit = algo.yj[js].sum(axis=0) / np.sqrt(max(js.size, 1))
        rows.append(algo.pu[u] + implicit)
    P = np.asarray(rows)
    return ts.global_mean + algo.bu[users][:, None] + algo.bi[None, :] + P @ algo.qi.T


def _baseline_only_scores(algo, users: np.ndarray) -> np.ndarray:
    return algo.trainset.global_mean + algo.bu[users][:, None] + algo.bi[None, :]


def _score_by_estimate(algo, users: np.ndarray) -> np.ndarray:
    from surprise import PredictionImpossible

    n_items = algo.trainset.n_items
    out = np.empty((users.size, n_items), dtype=np.float64)
    default = algo.default_prediction()
    for a, u in enumerate(users):
        for i in range(n_items):
            try:
                est = algo.estimate(int(u), i)
            except PredictionImpossible:
                est = default
            out[a, i] = est[0] if isinstance(est, tuple) else est
    return out


def _surprise_scorers() -> tuple:
    # Surprise's own algorithms cannot be given a method: score them from their fitted attributes.
    from surprise import SVD, BaselineOnly, SVDpp

    return ((SVD, _svd_scores), (SVDpp, _svdpp_scores), (BaselineOnly, _baseline_only_scores))


_SURPRISE_SCORERS = _surprise_scorers()


class SurpriseTopN(RecommenderBase):
    """implicit's ``RecommenderBase`` face of a fitted Surprise-style rating predictor.

    Items are ranked by predicted rating (:func:`score_all_items`); user and item ids are the
    wrapped algorithm's trainset inner ids, which is how :func:`ranking_matrices` indexes its
    matrices. Only ``recommend`` is supported: the model is fitted by the wrapped algorithm on
    a Surprise ``Trainset``, not by ``fit`` on a matrix.

    Args:
        algo: a fitted Surprise ``AlgoBase`` (it must have ``trainset``).
        name: label for reports (default: the algorithm's class name).
    """

    def __init__(self, algo, name: str | None = None):
        if getattr(algo, "trainset", None) is None:
            raise ValueError("SurpriseTopN needs a fitted algorithm: call algo.fit(trainset) first")
        self.algo = algo
        self.name = name or type(algo).__name__

    @property
    def n_items(self) -> int:
        return self.algo.trainset.n_items

    @property
    def n_users(self) -> int:
        return self.algo.trainset.n_users

    def fit(self, user_items, show_progress=True, callback=None):
        raise TypeError(
            "SurpriseTopN wraps an algorithm already fitted on a Surprise Trainset; fit that "
            "algorithm (algo.fit(trainset)) and wrap it again"
        )

    def recommend(
        self,
        userid,
        user_items,
        N=10,
        filter_already_liked_items=True,
        filter_items=None,
        recalculate_user=False,
        items=None,
    ):
        """Top ``N`` items by predicted rating for one user or a batch (implicit's contract).

        Args:
            userid: an inner user id or an array of them.
            user_items: CSR with one row per user in ``userid``: the items to filter out when
                ``filter_already_liked_items`` (any stored entry counts, whatever its value).
            N: number of items returned.
            filter_already_liked_items: drop the items stored in ``user_items``.
            filter_items: item ids never to recommend.
            recalculate_user: not supported (the wrapped algorithm has no fold-in).
            items: rank only these item ids (cannot be combined with ``filter_items``).

        Returns:
            ``(ids, scores)``: int32 and float32, ``N`` columns (padded with -1 / -inf when
            there are fewer candidates), one row per user; 1-d for a scalar ``userid``.
        """
        if recalculate_user:
            raise NotImplementedError("recalculate_user is not supported by SurpriseTopN")
        scalar = np.isscalar(userid)
        users = np.atleast_1d(np.asarray(userid, dtype=np.int64))
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(
                f"user ids must lie in [0, {self.n_users}), got {users.min()}..{users.max()}"
            )
        if filter_already_liked_items:
            if not sp.issparse(user_items):
                raise ValueError("user_items needs to be a CSR sparse matrix")
            user_items = sp.csr_matrix(user_items)
            if user_items.shape[0] != users.size:
                raise ValueError("user_items must contain 1 row for every user in userids")
        if items is not None and filter_items is not None and len(filter_items):
            raise ValueError("Can't set both items and filter_items in recommend call")
        subset = None
        if items is not None:
            subset = np.unique(np.asarray(items, dtype=np.int64))
            if subset.size and (subset.min() < 0 or subset.max() >= self.n_items):
                raise IndexError("Some itemids in the items parameter are not in the model")
        N = int(N)
        cand = Candidates(subset=subset)
        if subset is None and filter_items is not None and len(filter_items):
            cand = Candidates(blocked=np.asarray(filter_items, dtype=np.int64))
        ids_all = np.full((users.size, N), -1, dtype=np.int32)
        sc_all = np.full((users.size, N), -np.inf, dtype=np.float32)
        per = score_chunk_rows(self.n_items)
        for s in range(0, users.size, per):
            ub = users[s : s + per]
            S = score_all_items(self.algo, ub)
            if filter_already_liked_items:
                block_seen(S, user_items[s : s + per])
            ids, sc = top_n(cand.apply(S), N, np.int32, np.float32)
            ids_all[s : s + per] = cand.to_codes(ids)
            sc_all[s : s + per] = sc
        if scalar:
            return ids_all[0], sc_all[0]
        return ids_all, sc_all

    def similar_users(self, userid, N=10, filter_users=None, users=None):
        raise NotImplementedError(
            "SurpriseTopN only recommends; similar_users is not defined for a rating predictor"
        )

    def similar_items(
        self, itemid, N=10, recalculate_item=False, item_users=None, filter_items=None, items=None
    ):
        raise NotImplementedError(
            "SurpriseTopN only recommends; similar_items is not defined for a rating predictor"
        )

    def save(self, file):
        raise NotImplementedError(
            "SurpriseTopN is an evaluation adapter; save the wrapped algorithm instead"
        )


def fit_implicit_als(
    train: sp.csr_matrix,
    factors: int = 100,
    regularization: float = 0.01,
    alpha: float = 1.0,
    iterations: int = 15,
    random_state: int | None = None,
    num_threads: int = 1,
    values: str = "binary",
):
    """implicit's ``AlternatingLeastSquares`` (CPU) on the binarised training matrix.

    With ``values="ratings"`` the stored ratings are kept, so implicit's confidence of a pair is
    ``1 + alpha * rating`` instead of ``1 + alpha``.

    Every training rating, whatever its value, is one positive interaction; implicit turns it
    into confidence ``1 + alpha``. The defaults are implicit's. BLAS is held at one thread
    during the fit (implicit's own advice: its solver is already parallel over
    ``num_threads``).

    Returns:
        The fitted ``implicit.cpu.als.AlternatingLeastSquares``.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    if values not in ("binary", "ratings"):
        raise ValueError(f"values must be 'binary' or 'ratings', got {values!r}")
    X = sp.csr_matrix(train, dtype=np.float32, copy=True)
    if values == "binary":
        X.data[:] = 1.0
    with blas_threads(1):
        # constructed inside the limit too: its constructor warns about a multithreaded BLAS
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
        )
        model.fit(X, show_progress=False)
    return model


def ranking_metrics(
    model, train: sp.csr_matrix, test: sp.csr_matrix, K: int = 10
) -> dict[str, float]:
    """implicit's ``ranking_metrics_at_k`` (single thread, no progress bar).

    Returns:
        ``{"precision", "map", "ndcg", "auc"}`` at ``K`` as implicit defines them (see the
        module docstring); NaN everywhere when no user has a relevant test item.
    """
    from implicit.evaluation import ranking_metrics_at_k

    if test.nnz == 0:
        return {
            "precision": float("nan"),
            "map": float("nan"),
            "ndcg": float("nan"),
            "auc": float("nan"),
        }
    out = ranking_metrics_at_k(
        model, sp.csr_matrix(train), sp.csr_matrix(test), K=K, show_progress=False, num_threads=1
    )
    return {k: float(v) for k, v in out.items()}
