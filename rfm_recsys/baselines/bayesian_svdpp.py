"""Bayesian timeSVD++ flipped: a Gibbs-sampled factorisation machine (myfm) for Surprise.

The strongest classical rating predictor on MovieLens in Rendle, Zhang & Koren, "On the
difficulty of evaluating baselines" (2019): a Bayesian factorisation machine whose input for a
rating of item ``i`` by user ``u`` on day ``t`` holds

* the user's one-hot id and the user's implicit set ``N(u)``, the items ``u`` rated in the
  training ratings, each weighted ``1/sqrt(|N(u)|)`` (SVD++);
* the item's one-hot id and the item's implicit set ``N(i)``, the users who rated ``i`` in the
  training ratings, each weighted ``1/sqrt(|N(i)|)`` (the "flipped" half);
* where the ratings have timestamps, the one-hot day of the rating (calendar day in UTC; a day
  that has no training rating gets no day feature).

Each group of features (day, user id, user's implicit set, item id, item's implicit set) has its
own hierarchical prior. The user's and the item's features repeat across their ratings, so they
go to myfm as relation blocks (one row per user / item and an index per rating) and memory stays
linear in the number of ratings; only the day is a per-rating column.

The factorisation machine's prediction splits into the three blocks: with ``a_u``, ``a_i``,
``a_t`` the sums of the factors of the user's, the item's and the day's features, and ``c_u``,
``c_i``, ``c_t`` the linear terms plus the interactions inside each block::

    r_hat(u, i, t) = w0 + c_u + c_i + c_t + <a_u, a_i> + <a_u, a_t> + <a_i, a_t>

The kept Gibbs samples are folded into these per-user, per-item and per-day arrays as they are
drawn (the samples side by side, scaled by ``1/sqrt(S)``, as
:class:`~rfm_recsys.baselines.bayesian_mf.BayesianMFFit` holds them), so myfm keeps no samples
and the sample average of a prediction is a few dot products. A block that is unknown at
prediction time (a user or item without training ratings, a day without timestamp or without
training ratings) contributes nothing, which is myfm's prediction for an all-zero block.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from surprise import AlgoBase

from ..config import BAYESIAN_SVDPP, with_config
from ..datasets.timestamps import timestamps_of_testset, timestamps_of_trainset
from ..surprise_algos import _trainset_arrays, _VectorisedAlgo
from .bayesian_mf import BayesianMFFit, kept_samples, myfm_progress

#: Seconds per day: a timestamp's day is ``floor(seconds / SECONDS_PER_DAY)`` (UTC).
SECONDS_PER_DAY = 86_400
# Bytes of each gathered block of factor rows in predict (the rows are S * rank floats wide).
_BLOCK_BYTES = 8 << 20


@dataclass
class BayesianSVDppFit(BayesianMFFit):
    """The posterior-averaged Bayesian timeSVD++ flipped model in inner ids (-1: unknown).

    ``b_user``/``V_user`` (and the item's) are the folded user (item) block: the sample mean of
    the block's linear term and inner interactions, and the summed factors of every kept sample
    side by side (``n x (S * rank)``, float32, scaled by ``1/sqrt(S)``), as in
    :class:`BayesianMFFit`, whose ``score_users`` gives the estimates without a day.

    Attributes:
        days: the training days (``floor(seconds / 86400)``), sorted; empty without time.
        b_day, V_day: the day block (bias and factors of each of ``days``).
    """

    days: np.ndarray | None = None
    b_day: np.ndarray | None = None
    V_day: np.ndarray | None = None

    def day_index(self, timestamps: np.ndarray | None, n: int) -> np.ndarray:
        """Index into ``days`` of each timestamp (seconds), -1 for no or an unseen day."""
        out = np.full(n, -1, dtype=np.int64)
        if timestamps is None or self.days is None or self.days.size == 0:
            return out
        t = np.asarray(timestamps, dtype=np.float64)
        ok = np.isfinite(t)
        day = np.floor(t[ok] / SECONDS_PER_DAY).astype(np.int64)
        k = np.minimum(np.searchsorted(self.days, day), self.days.size - 1)
        out[ok] = np.where(self.days[k] == day, k, -1)
        return out

    def predict(
        self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Estimates and the mask of impossible pairs (user and item both unknown).

        Args:
            users, items: inner ids, -1 for unknown.
            timestamps: seconds since the epoch of each request (NaN: unknown), or None: no
                day terms.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        d = self.day_index(timestamps if self.V_day is not None else None, users.size)
        ku, ki, kd = users >= 0, items >= 0, d >= 0
        est = np.full(users.shape, self.mu, dtype=np.float64)
        est[ku] += self.b_user[users[ku]]
        est[ki] += self.b_item[items[ki]]
        if kd.any():
            est[kd] += self.b_day[d[kd]]
        # <a_u, a_i> + <a_u + a_i, a_t>, with the factors of an unknown block zero; blocks of
        # rows of a few MB (a row holds S * rank floats)
        rows = np.flatnonzero((ku & ki) | ((ku | ki) & kd))
        step = max(64, _BLOCK_BYTES // self.V_user.itemsize // max(self.V_user.shape[1], 1))
        for start in range(0, rows.size, step):
            k = rows[start : start + step]
            vu = self.V_user[np.maximum(users[k], 0)]
            vu[~ku[k]] = 0.0
            vi = self.V_item[np.maximum(items[k], 0)]
            vi[~ki[k]] = 0.0
            prod = vu * vi
            if kd[k].any():
                vd = self.V_day[np.maximum(d[k], 0)]
                vd[~kd[k]] = 0.0
                vu += vi
                vu *= vd
                prod += vu
            est[k] += prod.sum(axis=1, dtype=np.float64)
        return est, ~(ku | ki)


def implicit_block(
    rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int, implicit: bool = True
) -> sp.csr_matrix:
    """The relation block of one side: row ``r`` is ``[one-hot(r) | N(r) / sqrt(|N(r)|)]``.

    ``N(r)`` is the set of columns ``r`` has ratings with in ``(rows, cols)`` (a pair given twice
    counts once). Without ``implicit`` the block is the one-hot identity alone.
    """
    eye = sp.identity(n_rows, dtype=np.float64, format="csr")
    if not implicit:
        return eye
    seen = sp.csr_matrix(
        (np.ones(rows.size), (rows, cols)), shape=(n_rows, n_cols), dtype=np.float64
    )
    seen.sum_duplicates()
    seen.data[:] = 1.0
    counts = np.diff(seen.indptr)
    seen = sp.diags(1.0 / np.sqrt(np.maximum(counts, 1))) @ seen
    return sp.hstack([eye, seen], format="csr")


class _Folder:
    """Folds each kept Gibbs sample into the per-block arrays of :class:`BayesianSVDppFit`."""

    def __init__(self, blocks: list[sp.csr_matrix], offsets: list[int], rank: int, n_kept: int):
        self.blocks = blocks
        self.squares = [b.multiply(b).tocsr() for b in blocks]
        self.offsets = offsets  # first column of each block in myfm's feature vector
        self.rank, self.n_kept, self.seen = rank, n_kept, 0
        self.scale = 1.0 / math.sqrt(n_kept)
        self.w0 = 0.0
        self.bias = [np.zeros(b.shape[0]) for b in blocks]
        self.factors = [np.zeros((b.shape[0], n_kept * rank), dtype=np.float32) for b in blocks]

    def add(self, w0: float, w: np.ndarray, V: np.ndarray) -> None:
        s, k = self.seen, self.rank
        self.w0 += w0 / self.n_kept
        for b, b2, off, bias, fac in zip(
            self.blocks, self.squares, self.offsets, self.bias, self.factors
        ):
            v = V[off : off + b.shape[1]]
            a = np.asarray(b @ v)
            inner = 0.5 * ((a * a).sum(axis=1) - b2 @ (v * v).sum(axis=1))
            bias += (b @ w[off : off + b.shape[1]] + inner) / self.n_kept
            fac[:, s * k : (s + 1) * k] = a * self.scale
        self.seen += 1


def fit_bayesian_svdpp(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    timestamps: np.ndarray | None = None,
    *,
    rank: int = 32,
    n_sweeps: int = 200,
    n_kept_samples: int | None = None,
    init_std: float = 0.1,
    flipped: bool = True,
    random_state: int = 0,
    verbose: bool = False,
) -> BayesianSVDppFit:
    """Gibbs-sample Bayesian timeSVD++ flipped with myfm on integer-coded triples.

    The implicit sets are built from these ratings only (pass the training ratings).

    Args:
        users, items: inner ids of the ratings.
        ratings: the ratings.
        n_users, n_items: number of users and items.
        timestamps: seconds since the epoch of each rating (NaN: unknown), or None: no day
            feature.
        rank: dimension of the factors.
        n_sweeps: Gibbs sweeps in all (burn-in included).
        n_kept_samples: the last sweeps whose samples are averaged (None: all but the first
            tenth, :func:`~rfm_recsys.baselines.bayesian_mf.kept_samples`).
        init_std: standard deviation of the initial factors.
        flipped: include the item's implicit set (the users who rated it).
        random_state: myfm's seed (an int).
        verbose: show myfm's progress bar.
    """
    # optional dependency: imported where used so the package imports without it
    import myfm

    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n = users.size
    days = np.empty(0, dtype=np.int64)
    X_day = None
    if timestamps is not None:
        t = np.asarray(timestamps, dtype=np.float64)
        ok = np.isfinite(t)
        if ok.any():
            day = np.floor(t[ok] / SECONDS_PER_DAY).astype(np.int64)
            days, col = np.unique(day, return_inverse=True)
            X_day = sp.csr_matrix(
                (np.ones(col.size), (np.flatnonzero(ok), col)), shape=(n, days.size)
            )
    user_block = implicit_block(users, items, n_users, n_items)
    item_block = implicit_block(items, users, n_items, n_users, implicit=flipped)
    # groups: day; user id, user's implicit set; item id, item's implicit set
    sizes = ([days.size] if X_day is not None else []) + [n_users, n_items, n_items]
    if flipped:
        sizes.append(n_users)
    grouping = np.repeat(np.arange(len(sizes)), sizes).tolist()
    width_day = days.size if X_day is not None else 0
    # folded blocks: user, item and (the per-rating columns of X_day) day
    blocks = [user_block, item_block]
    offsets = [width_day, width_day + user_block.shape[1]]
    if width_day:
        blocks.append(sp.identity(width_day, dtype=np.float64, format="csr"))
        offsets.append(0)
    n_kept = kept_samples(n_sweeps, n_kept_samples)
    folder = _Folder(blocks, offsets, rank, n_kept)
    first_kept = n_sweeps - n_kept

    def fold(i: int, fm, hyper, history) -> tuple[bool, None]:
        if i >= first_kept:
            folder.add(float(fm.w0), np.asarray(fm.w), np.asarray(fm.V))
        return False, None

    fm = myfm.MyFMRegressor(rank=rank, init_stdev=init_std, random_seed=int(random_state))
    t0 = time.perf_counter()
    with myfm_progress(verbose):
        # the samples are folded as they are drawn: myfm keeps only the last one
        fm.fit(
            X_day,
            np.asarray(ratings, dtype=np.float64),
            X_rel=[myfm.RelationBlock(users, user_block), myfm.RelationBlock(items, item_block)],
            n_iter=n_sweeps,
            n_kept_samples=1,
            grouping=grouping,
            callback=fold,
        )
    seconds = time.perf_counter() - t0
    if folder.seen != n_kept:  # pragma: no cover - myfm calls back once per sweep
        raise RuntimeError(f"folded {folder.seen} Gibbs samples, expected {n_kept}")
    fm.predictor_ = None  # the last sample is folded in
    (b_user, b_item, *b_day), (V_user, V_item, *V_day) = folder.bias, folder.factors
    return BayesianSVDppFit(
        mu=folder.w0,
        b_user=b_user,
        b_item=b_item,
        V_user=V_user,
        V_item=V_item,
        history=[{"seconds": seconds, "n_samples": n_kept, "n_days": int(width_day)}],
        days=days,
        b_day=b_day[0] if b_day else None,
        V_day=V_day[0] if V_day else None,
    )


@with_config(BAYESIAN_SVDPP)
class BayesianSVDppAlgo(_VectorisedAlgo):
    """Bayesian timeSVD++ flipped ("Bayesian timeSVD++ flipped (myfm)" in the tables).

    myfm's Gibbs-sampled factorisation machine on the user's and item's one-hot ids, the user's
    implicit set (items rated in the training set, weighted ``1/sqrt(count)``), the item's
    implicit set (users who rated it in the training set: "flipped") and, where the data has
    timestamps, the one-hot day of the rating, each group with its own hierarchical prior
    (Rendle, Zhang & Koren 2019; the module docstring has the model). The implicit sets come from
    the trainset given to :meth:`fit` only, never from the ratings being predicted.

    Timestamps reach the model through :mod:`rfm_recsys.datasets.timestamps`: a trainset built by
    :func:`rfm_recsys.datasets.to_surprise` or :func:`~rfm_recsys.datasets.ml100k_official_folds`
    (and any Surprise splitter on them) carries the training ratings' times, and :meth:`test` on
    their testsets uses each test rating's day (the time of the request, as in timeSVD++). With
    Surprise's own datasets, ratings without timestamps, ``use_time=False``, or a single
    ``predict(uid, iid)`` (which has no time), the day terms are off. A day without training
    ratings gets no day term.

    If the user is unknown the estimate uses the item's features (and the day's) only, if the
    item is unknown the user's; if both are unknown ``PredictionImpossible`` is raised (Surprise
    then predicts the global mean). Estimates are clipped to the rating scale.

    Defaults follow Rendle et al.'s set-up: rank 32 and 200 sweeps (the last 180 averaged).
    Needs ``pip install myfm`` (the ``bayes`` extra).
    """

    def fit(self, trainset) -> BayesianSVDppAlgo:
        """Sample the posterior on a Surprise ``Trainset``; returns ``self``.

        Raises:
            InvalidParameterError: a hyperparameter outside its allowed range.
            ValueError: ``n_kept_samples`` larger than ``n_sweeps``.
        """
        self._validate_params()
        if self.n_kept_samples is not None and self.n_kept_samples > self.n_sweeps:
            raise ValueError(
                f"BayesianSVDppAlgo: n_kept_samples ({self.n_kept_samples}) must not exceed "
                f"n_sweeps ({self.n_sweeps}): lower n_kept_samples or raise n_sweeps"
            )
        u, i, r = _trainset_arrays(trainset)
        fit = fit_bayesian_svdpp(
            u,
            i,
            r,
            trainset.n_users,
            trainset.n_items,
            timestamps_of_trainset(trainset) if self.use_time else None,
            rank=self.rank,
            n_sweeps=self.n_sweeps,
            n_kept_samples=self.n_kept_samples,
            init_std=self.init_std,
            flipped=self.flipped,
            random_state=0 if self.random_state is None else self.random_state,
            verbose=self.verbose,
        )
        # the trainset and the fit are replaced together, only now: a fit that fails leaves a
        # previously fitted algorithm as it was
        AlgoBase.fit(self, trainset)
        self.fit_: BayesianSVDppFit = fit
        return self

    def _predict_testset(self, u: np.ndarray, i: np.ndarray, testset) -> tuple:
        # the day of each test rating, where the testset carries timestamps
        return self.fit_.predict(u, i, timestamps_of_testset(testset))

    @property
    def history_(self) -> list[dict]:
        """``{"seconds", "n_samples", "n_days"}`` of the last fit."""
        return self.fit_.history
