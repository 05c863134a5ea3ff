"""Surprise algorithms: lin-RFM and the IRLS-p baseline, on one shared engine.

Both follow Surprise's contract: hyperparameters are stored verbatim by ``__init__`` (no work
there), ``fit(trainset)`` calls ``AlgoBase.fit`` and returns ``self``, ``estimate(u, i)`` raises
``PredictionImpossible`` when neither the user nor the item is known. ``test`` is vectorised: it
returns exactly what ``AlgoBase.test`` would, without a Python call per rating.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
from surprise import AlgoBase, PredictionImpossible
from surprise.prediction_algorithms.predictions import Prediction

from .checks import check_shape, check_triples
from .core.engine import AGOPPower, FeatureUpdate, IRLSUpdate
from .core.fitting import RatingsFit, fit_with_params
from .params import ParamsMixin


class _VectorisedAlgo(ParamsMixin, AlgoBase):
    """Surprise algorithms whose ``fit_`` predicts a batch of inner ids at once.

    ``fit_.predict(users, items)`` takes inner ids (-1 for unknown) and returns the estimates
    and the mask of impossible pairs; ``estimate`` and a vectorised ``test`` follow from it.
    """

    def estimate(self, u, i) -> float:
        known_u = self.trainset.knows_user(u)
        known_i = self.trainset.knows_item(i)
        if not (known_u or known_i):
            raise PredictionImpossible("User and item are unknown.")
        est, _ = self.fit_.predict(
            np.array([u if known_u else -1]), np.array([i if known_i else -1])
        )
        return float(est[0])

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
        est, impossible = self.fit_.predict(u, i)
        if impossible.any():
            est[impossible] = self.default_prediction()
        lo, hi = ts.rating_scale
        est = np.clip(est, lo, hi).tolist()
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

    def _update(self) -> FeatureUpdate:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, trainset) -> _EngineAlgo:
        """Fit the baseline and the kernel on a Surprise ``Trainset``; returns ``self``."""
        AlgoBase.fit(self, trainset)
        u, i, r = _trainset_arrays(trainset)
        u, i, r = check_triples(u, i, r, duplicates=self.duplicates)
        check_shape(trainset.n_users, trainset.n_items)
        self.fit_: RatingsFit = fit_with_params(
            self, self._update(), u, i, r, trainset.n_users, trainset.n_items
        )
        return self

    @property
    def history_(self) -> list[dict]:
        """Per-iteration records of the last fit (train/validation RMSE, kernel change, time)."""
        return self.fit_.history


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


class LinRFMAlgo(_EngineAlgo):
    """Linear Recursive Feature Machine (lin-RFM) for rating prediction.

    The prediction is a regularised baseline plus a kernel ridge fit of each row over the
    observed feature columns, with the kernel learned by lin-RFM::

        r_hat(u, i) = mu + b_u + b_i + sum_{s in S_r} K[c, s] a_{r, s}

    where ``r`` is the row (user or item) and ``c`` the feature column (the other) of the pair,
    ``S_r`` the columns observed in row ``r``, ``a_r = (K[S_r, S_r] + lam I)^-1 y_r`` and ``y_r``
    the baseline residuals. ``K`` starts as the identity and is replaced ``n_iter`` times by
    ``(W^T W / n)^power`` rescaled to mean diagonal 1, with ``W = A K`` the fitted rows (the
    average gradient outer product, AGOP). If the user is unknown the estimate is
    ``mu + b_i``, if the item is unknown ``mu + b_u``; if both are unknown
    ``PredictionImpossible`` is raised (Surprise then predicts the global mean).

    Args:
        n_iter: kernel updates (the AGOP steps). The defaults (n_iter 2, lam 10, power 1,
            bias penalties 2) were chosen on validation shares of ml-100k and ml-latest-small
            training folds: `python -m evaluation.choose_defaults` (see the README).
        lam: ridge penalty of the row fits, relative to the kernel's unit mean diagonal.
        power: exponent of the AGOP; 1 is the SVD-free variant (no eigendecomposition), any
            other value takes ``eigh`` of a ``d x d`` matrix. Reference code's alpha = power / 2.
        orient: which side is the feature (kernel) side: ``"auto"`` (the smaller one),
            ``"users"`` or ``"items"``.
        reg_user, reg_item: ridge penalties of the user and item biases.
        baseline_epochs: alternating sweeps of the bias fit.
        dtype: ``"float32"`` or ``"float64"``.
        tol: stop early once the kernel's relative change falls below it.
        validation_share: share of the training ratings held out for early stopping on
            validation RMSE (then refit on all with the best iteration count). 0 disables it.
        patience: iterations without validation improvement before stopping.
        duplicates: what to do with repeated (user, item) pairs: ``"raise"``, ``"mean"``,
            ``"last"``.
        random_state: seed of the validation split.
        max_memory: refuse fits whose estimated peak memory exceeds this many bytes.
        verbose: show a progress bar.
    """

    def __init__(
        self,
        n_iter: int = 2,
        lam: float = 10.0,
        power: float = 1.0,
        orient: str = "auto",
        reg_user: float = 2.0,
        reg_item: float = 2.0,
        baseline_epochs: int = 10,
        dtype: str = "float32",
        tol: float | None = None,
        validation_share: float = 0.0,
        patience: int = 2,
        duplicates: str = "raise",
        random_state=None,
        max_memory: int | None = None,
        verbose: bool = False,
    ):
        AlgoBase.__init__(self)
        self.n_iter = n_iter
        self.lam = lam
        self.power = power
        self.orient = orient
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.baseline_epochs = baseline_epochs
        self.dtype = dtype
        self.tol = tol
        self.validation_share = validation_share
        self.patience = patience
        self.duplicates = duplicates
        self.random_state = random_state
        self.max_memory = max_memory
        self.verbose = verbose

    def _update(self) -> FeatureUpdate:
        return AGOPPower(power=self.power, normalize="diag")


class IRLSAlgo(_EngineAlgo):
    """IRLS-p matrix completion (Mohan & Fazel 2012) on ratings, the baseline of lin-RFM.

    Same baseline, rows and ridge data fit as :class:`LinRFMAlgo`; only the feature update
    differs: ``K = (X^T X + gamma_k I)^(1 - p/2)`` (the inverse IRLS weight) from a symmetric
    eigendecomposition each iteration, rescaled to mean diagonal 1, with IRLS's own smoothing
    schedule ``gamma_0 = gamma0 * lambda_max(X^T X)``, ``gamma_{k+1} = max(gamma_k / eta,
    gamma_min)``. The prediction rule is that of :class:`LinRFMAlgo`.

    Args:
        p: 0 (log-det), 0.5 or 1 (nuclear norm). Defaults (p = 0.5, lam = 10, 4 iterations)
            were chosen like LinRFMAlgo's: ``python -m evaluation.choose_defaults --irls``.
        gamma0, eta, gamma_min: the smoothing schedule.
        Others: as :class:`LinRFMAlgo`.
    """

    def __init__(
        self,
        p: float = 0.5,
        n_iter: int = 4,
        lam: float = 10.0,
        gamma0: float = 1e-2,
        eta: float = 1.1,
        gamma_min: float = 1e-10,
        orient: str = "auto",
        reg_user: float = 2.0,
        reg_item: float = 2.0,
        baseline_epochs: int = 10,
        dtype: str = "float32",
        tol: float | None = None,
        validation_share: float = 0.0,
        patience: int = 2,
        duplicates: str = "raise",
        random_state=None,
        max_memory: int | None = None,
        verbose: bool = False,
    ):
        AlgoBase.__init__(self)
        self.p = p
        self.n_iter = n_iter
        self.lam = lam
        self.gamma0 = gamma0
        self.eta = eta
        self.gamma_min = gamma_min
        self.orient = orient
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.baseline_epochs = baseline_epochs
        self.dtype = dtype
        self.tol = tol
        self.validation_share = validation_share
        self.patience = patience
        self.duplicates = duplicates
        self.random_state = random_state
        self.max_memory = max_memory
        self.verbose = verbose

    def _update(self) -> FeatureUpdate:
        return IRLSUpdate(p=self.p, gamma0=self.gamma0, eta=self.eta, gamma_min=self.gamma_min)
