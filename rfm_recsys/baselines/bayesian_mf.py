"""Bayesian matrix factorisation by Gibbs sampling (myfm), as a Surprise algorithm.

The model is a factorisation machine on one-hot user and item features, which for ratings is
biased matrix factorisation with hierarchical Gaussian priors (Rendle, Zhang & Koren, "On the
difficulty of evaluating baselines", 2019, who showed that a well-run Bayesian MF beats most
published models on MovieLens)::

    r_hat(u, i) = w0 + w_u + w_i + <v_u, v_i>

myfm's ``MyFMRegressor`` samples every parameter and the prior hyperparameters (users and items
form separate prior groups) by Gibbs sampling. The first ``n_sweeps - n_kept_samples`` sweeps are
burn-in; the prediction is the average of the predictions of the kept samples. After the fit the
kept samples are folded into three arrays (the mean of ``w0 + w``, and the factors of all
samples side by side, scaled by ``1/sqrt(S)``) so that the sample average of ``<v_u, v_i>`` is
one dot product per pair and the myfm objects are dropped.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import scipy.sparse as sp
from surprise import AlgoBase

from ..config import BAYESIAN_MF, with_config
from ..core.biases import bias_scores
from ..surprise_algos import _trainset_arrays, _VectorisedAlgo

# Pairs gathered per block in predict (rows of the n_pairs x (S * rank) products).
_PAIR_BLOCK = 8192


@dataclass
class BayesianMFFit:
    """The posterior-averaged model in inner ids; -1 means unknown.

    Attributes:
        mu: sample mean of the global bias ``w0``.
        b_user, b_item: sample means of the user and item biases.
        V_user, V_item: factors of every kept sample side by side (``n x (S * rank)``, float32),
            scaled by ``1 / sqrt(S)`` so that ``V_user[u] @ V_item[i]`` is the sample mean of
            ``<v_u, v_i>``.
        history: ``{"seconds", "n_samples"}`` of the fit.
    """

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    V_user: np.ndarray
    V_item: np.ndarray
    history: list[dict] = field(default_factory=list)

    def predict(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimates and the mask of impossible pairs (user and item both unknown).

        A pair with one side unknown gets that side's features left out, which is what myfm
        predicts for an all-zero one-hot block: ``w0`` plus the known side's bias.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ku, ki = users >= 0, items >= 0
        est = np.full(users.shape, self.mu, dtype=np.float64)
        est[ku] += self.b_user[users[ku]]
        est[ki] += self.b_item[items[ki]]
        both = np.flatnonzero(ku & ki)
        for start in range(0, both.size, _PAIR_BLOCK):
            k = both[start : start + _PAIR_BLOCK]
            prod = self.V_user[users[k]] * self.V_item[items[k]]
            est[k] += prod.sum(axis=1, dtype=np.float64)
        return est, ~(ku | ki)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings of every item for known users (``len(users) x n_items``)."""
        u = np.atleast_1d(np.asarray(users, dtype=np.int64))
        out = bias_scores(self.mu, self.b_user, self.b_item, u)
        out += self.V_user[u] @ self.V_item.T
        return out


def fit_bayesian_mf(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    rank: int = 10,
    n_sweeps: int = 200,
    n_kept_samples: int | None = None,
    init_std: float = 0.1,
    random_state: int = 0,
    verbose: bool = False,
) -> BayesianMFFit:
    """Gibbs-sample Bayesian MF with myfm on integer-coded triples and average the kept samples.

    Args:
        users, items: inner ids of the ratings.
        ratings: the ratings.
        n_users, n_items: number of users and items (one-hot widths).
        rank: dimension of the factors.
        n_sweeps: Gibbs sweeps in all (burn-in included).
        n_kept_samples: the last sweeps whose samples are averaged (None: all but the first
            tenth, :func:`kept_samples`).
        init_std: standard deviation of the initial factors.
        random_state: myfm's seed (an int).
        verbose: show myfm's progress bar.
    """
    # optional dependency: imported where used so the package imports without it
    import myfm

    n = ratings.shape[0]
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([users, n_users + items], axis=1).ravel()
    X = sp.csr_matrix((np.ones(2 * n), (rows, cols)), shape=(n, n_users + n_items))
    fm = myfm.MyFMRegressor(rank=rank, init_stdev=init_std, random_seed=int(random_state))
    t0 = time.perf_counter()
    with myfm_progress(verbose):
        fm.fit(
            X,
            np.asarray(ratings, dtype=np.float64),
            n_iter=n_sweeps,
            n_kept_samples=kept_samples(n_sweeps, n_kept_samples),
            grouping=[0] * n_users + [1] * n_items,
            callback=None if verbose else (lambda *_: (False, None)),
        )
    seconds = time.perf_counter() - t0
    samples = fm.predictor_.samples
    S = len(samples)
    w0 = float(np.mean([s.w0 for s in samples]))
    w = np.mean([np.asarray(s.w) for s in samples], axis=0)
    # (S, p, k) -> (p, S * k): the sample mean of <v_u, v_i> becomes one dot product
    V = np.stack([np.asarray(s.V, dtype=np.float32) for s in samples], axis=1)
    V = V.reshape(V.shape[0], -1) / np.float32(np.sqrt(S))
    return BayesianMFFit(
        mu=w0,
        b_user=w[:n_users],
        b_item=w[n_users:],
        V_user=np.ascontiguousarray(V[:n_users]),
        V_item=np.ascontiguousarray(V[n_users:]),
        history=[{"seconds": seconds, "n_samples": S}],
    )


@contextlib.contextmanager
def myfm_progress(verbose: bool) -> Iterator[None]:
    """Within it myfm's fits draw their tqdm progress bar (stderr) only if ``verbose``.

    myfm always draws the bar and has no switch for it, so it is disabled by patching.
    """
    import myfm.base

    bar = myfm.base.tqdm if verbose else functools.partial(myfm.base.tqdm, disable=True)
    with mock.patch.object(myfm.base, "tqdm", bar):
        yield


def kept_samples(n_sweeps: int, n_kept_samples: int | None) -> int:
    """The samples averaged: ``n_kept_samples``, or all sweeps but a tenth of burn-in if None.

    None keeps 90% whatever ``n_sweeps`` is, so a grid over ``n_sweeps`` needs no matching
    ``n_kept_samples`` (a fixed count larger than a small ``n_sweeps`` is an error).
    """
    if n_kept_samples is None:
        return max(1, n_sweeps - n_sweeps // 10)
    return int(n_kept_samples)


@with_config(BAYESIAN_MF)
class BayesianMFAlgo(_VectorisedAlgo):
    """Bayesian MF ("BayesianMF (myfm)" in the tables): myfm's Gibbs-sampled factorisation.

    ``r_hat(u, i) = w0 + w_u + w_i + <v_u, v_i>`` averaged over the kept Gibbs samples, with
    separate hierarchical priors for users and items (myfm's ``grouping``). If the user is
    unknown the estimate is ``w0 + w_i`` (myfm's prediction with an empty user block), if the
    item is unknown ``w0 + w_u``; if both are unknown ``PredictionImpossible`` is raised
    (Surprise then predicts the global mean). Estimates are clipped to the rating scale.

    The sampling settings (200 sweeps, the last 180 kept by default) follow myfm's MovieLens
    examples and the comparison of Rendle et al. (2019), who keep a few hundred samples; rank 10
    and 32 are the two sizes the benchmark reports. Needs ``pip install myfm`` (the ``bayes``
    extra).
    """

    def fit(self, trainset) -> BayesianMFAlgo:
        """Sample the posterior on a Surprise ``Trainset``; returns ``self``."""
        self._validate_params()
        if self.n_kept_samples is not None and self.n_kept_samples > self.n_sweeps:
            raise ValueError(
                f"BayesianMFAlgo: n_kept_samples ({self.n_kept_samples}) must not exceed n_sweeps "
                f"({self.n_sweeps}): lower n_kept_samples or raise n_sweeps"
            )
        AlgoBase.fit(self, trainset)
        u, i, r = _trainset_arrays(trainset)
        self.fit_ = fit_bayesian_mf(
            u,
            i,
            r,
            trainset.n_users,
            trainset.n_items,
            rank=self.rank,
            n_sweeps=self.n_sweeps,
            n_kept_samples=self.n_kept_samples,
            init_std=self.init_std,
            random_state=0 if self.random_state is None else self.random_state,
            verbose=self.verbose,
        )
        return self
