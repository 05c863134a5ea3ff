"""Surprise algorithms: lin-RFM, kernel RFM and the IRLS-p baseline, on one shared engine.

Both follow Surprise's contract: hyperparameters are stored verbatim by ``__init__`` (no work
there), ``fit(trainset)`` calls ``AlgoBase.fit`` and returns ``self``, ``estimate(u, i)`` raises
``PredictionImpossible`` when neither the user nor the item is known. ``test`` is vectorised: it
returns exactly what ``AlgoBase.test`` would, without a Python call per rating.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from itertools import chain
from typing import Self

import numpy as np
from surprise import AlgoBase, PredictionImpossible
from surprise.prediction_algorithms.predictions import Prediction

from .checks import check_shape, check_triples
from .config import IRLS, KERNEL_RFM, LINRFM, ModelConfig, with_config
from .fitting import FitSettings, RatingsFit, fit_ratings
from .params import ParamsMixin


class _VectorisedAlgo(ParamsMixin, AlgoBase):
    """Surprise algorithms whose ``fit_`` predicts a batch of inner ids at once.

    ``fit_.predict(users, items)`` takes inner ids (-1 for unknown) and returns the estimates
    and the mask of impossible pairs; ``estimate`` and a vectorised ``test`` follow from it.
    ``fit_.score_users(users)`` scores every item for known users: :meth:`score_all_items`.
    """

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings (unclipped) of every item for known inner user ids.

        Returns:
            A ``len(users) x n_items`` float64 array.
        """
        return np.asarray(self.fit_.score_users(np.asarray(users, dtype=np.int64)), np.float64)

    def estimate(self, u, i) -> float:
        known_u = self.trainset.knows_user(u)
        known_i = self.trainset.knows_item(i)
        if not (known_u or known_i):
            raise PredictionImpossible("User and item are unknown.")
        est, _ = self.fit_.predict(
            np.array([u if known_u else -1]), np.array([i if known_i else -1])
        )
        return float(est[0])

    def _predict_testset(self, u: np.ndarray, i: np.ndarray, testset) -> tuple:
        """Estimates and impossible mask of :meth:`test` for inner ids ``u``, ``i`` of
        ``testset``; a model that reads more of the testset (its timestamps) overrides it."""
        return self.fit_.predict(u, i)

    def test(self, testset, verbose: bool = False) -> list[Prediction]:
        """Predictions for every ``(uid, iid, r_ui)`` of ``testset``, computed in one batch."""
        if not testset:
            return []
        ts = self.trainset
        uids, iids, r_uis = zip(*testset)
        n = len(uids)
        users, items = ts._raw2inner_id_users.get, ts._raw2inner_id_items.get
        u = np.fromiter((users(x, -1) for x in uids), dtype=np.int64, count=n)
        i = np.fromiter((items(x, -1) for x in iids), dtype=np.int64, count=n)
        est, impossible = self._predict_testset(u, i, testset)
        if impossible.any():
            est[impossible] = self.default_prediction()
        lo, hi = ts.rating_scale
        est = np.clip(est, lo, hi).tolist()
        # Building a list of many small objects with the trainset's dicts alive triggers the
        # collector over and over (measured: 0.06-0.56 s for 20k ratings on ml-latest-small,
        # 0.05 s with it paused); nothing here makes cycles, so pause it for the build
        with _collector_paused():
            # each Prediction gets its own details dict, as AlgoBase.predict gives it
            preds = [
                Prediction(uid, iid, r, e, {"was_impossible": False})
                for uid, iid, r, e in zip(uids, iids, r_uis, est)
            ]
        for k in np.flatnonzero(impossible).tolist():
            preds[k].details.update(was_impossible=True, reason="User and item are unknown.")
        if verbose:
            for p in preds:
                print(p)
        return preds


class _EngineAlgo(_VectorisedAlgo):
    """Shared fitting and vectorised prediction for algorithms built on the engine."""

    config: ModelConfig  # set by with_config on each algorithm

    def fit(self, trainset) -> Self:
        """Fit the baseline and the kernel on a Surprise ``Trainset``; returns ``self``.

        Raises:
            InvalidParameterError: a hyperparameter outside its allowed range.
        """
        self._validate_params()
        u, i, r = _trainset_arrays(trainset)
        u, i, r = check_triples(u, i, r, duplicates=self.duplicates)
        check_shape(trainset.n_users, trainset.n_items)
        settings = FitSettings.from_params(self.get_params())
        fit = fit_ratings(u, i, r, trainset.n_users, trainset.n_items, settings)
        # The trainset (its id maps) and the fit are replaced together, only now: a fit that
        # fails or is interrupted leaves a previously fitted algorithm as it was.
        AlgoBase.fit(self, trainset)
        self.fit_: RatingsFit = fit
        return self

    @property
    def history_(self) -> list[dict]:
        """Per-iteration records of the last fit (train/validation RMSE, kernel change, time)."""
        return self.fit_.history


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off inside the block, and back as it was after (even on error)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _trainset_arrays(trainset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, rating) arrays of a Trainset without a Python loop per rating."""
    ur = trainset.ur
    lens = np.fromiter((len(v) for v in ur.values()), dtype=np.int64, count=len(ur))
    users = np.repeat(np.fromiter(ur.keys(), dtype=np.int64, count=len(ur)), lens)
    flat = np.fromiter(
        chain.from_iterable(chain.from_iterable(ur.values())),
        dtype=np.float64,
        count=2 * int(lens.sum()),
    )
    return users, flat[0::2].astype(np.int64), flat[1::2]


@with_config(LINRFM)
class LinRFMAlgo(_EngineAlgo):
    """Linear Recursive Feature Machine (lin-RFM) for rating prediction.

    The paper's algorithm (Radhakrishnan, Belkin & Drusvyatskiy, PNAS 2025) on the residuals of
    regularised biases: each row is fitted by kernel ridge regression over its observed feature
    columns with the linear kernel ``K``, and ``K`` is learned::

        r_hat(u, i) = mu + b_u + b_i + sum_{s in S_r} K[c, s] a_{r, s}
        a_r = (K[S_r, S_r] + ridge I)^-1 y_r       K <- (W^T W / n)^power / mean diag

    where ``r`` is the row (user or item) and ``c`` the feature column (the other) of the pair,
    ``S_r`` the columns observed in row ``r``, ``y_r`` the baseline residuals and ``W = A K``
    the fitted rows (their average gradient outer product, AGOP). ``K`` starts as the identity
    and is replaced ``n_updates`` times; with ``power=1`` no eigendecomposition is needed. If
    the user is unknown the estimate is ``mu + b_i``, if the item is unknown ``mu + b_u``; if
    both are unknown ``PredictionImpossible`` is raised (Surprise then predicts the global mean).

    Defaults chosen on validation shares of ml-100k and ml-latest-small training folds
    (``python -m evaluation.choose_defaults``).
    """


@with_config(KERNEL_RFM)
class KernelRFMAlgo(_EngineAlgo):
    """Kernel RFM for rating prediction: lin-RFM's updates, then the kernel step.

    After ``n_updates`` of lin-RFM (:class:`LinRFMAlgo`), the rows are refitted with a radial
    kernel over the learned geometry plus the co-rating signal (which items the same users
    rated, the signal SVD++ adds to SVD), and the geometry is updated ``n_kernel_updates`` times
    from those fits' AGOP (kernel RFM: Radhakrishnan et al., Science 2024;
    :mod:`rfm_recsys.core.kernel_step`). Prediction, unknown ids and ``PredictionImpossible``
    as :class:`LinRFMAlgo`'s, with the step's kernel matrix in place of ``K``.
    ``orient="both"`` fits both orientations and averages them.

    The defaults (settings F* of ``evaluation/kernel_rfm_experiments.md``) were chosen on
    validation shares of ml-100k and ml-latest-small training folds; ``backend="dask"`` fits the
    same model on a Dask cluster (one orientation).
    """


@with_config(IRLS)
class IRLSAlgo(_EngineAlgo):
    """IRLS-p matrix completion (Mohan & Fazel 2012) on ratings, the baseline of lin-RFM.

    Same biases, rows and ridge data fit as :class:`LinRFMAlgo`; only the feature update
    differs: ``K = (X^T X + gamma_k I)^(1 - p/2)`` (the inverse IRLS weight) from a symmetric
    eigendecomposition each update, rescaled to mean diagonal 1, with IRLS's own smoothing
    schedule ``gamma_0 = gamma0 * lambda_max(X^T X)``, ``gamma_{k+1} = max(gamma_k / eta,
    gamma_min)``. The prediction rule is that of :class:`LinRFMAlgo`. The defaults were chosen
    like LinRFMAlgo's (``python -m evaluation.choose_defaults --irls``).
    """
