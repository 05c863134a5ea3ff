"""Rating prediction on top of the engine: baseline, orientation, validation and prediction.

Both user-facing classes (the Surprise algorithm and the explicit-feedback model) hold one
:class:`RatingsFit`, built by :func:`fit_ratings` from integer-coded triples. The prediction rule,
with ``r`` the row side and ``c`` the feature side of the chosen orientation::

    r_hat(u, i) = mu + b_u + b_i + sum_{s in S_r} K[c, s] A[r, s]

where ``S_r`` are the observed feature columns of row ``r`` and ``A`` the row coefficients.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..config import LINRFM, PLAIN_LINRFM, ModelConfig
from .baseline import Baseline, bias_estimates, bias_scores, fit_baseline
from .engine import AGOPPower, FeatureUpdate, fit_engine, spd_solve
from .kernel_rfm import (
    KERNEL_PARAMS,
    CombinedFit,
    apply_kernel,
    fit_both_orientations,
    kernel_step_is_plain,
)
from .kernels import Completion, Kernel, resolve_rank, resolve_step_rank

_COMPLETION_LOCK = threading.Lock()

# Defaults of the functions below: the model classes' own (one declaration in config.py) with the
# kernel step off, as these functions fit plain lin-RFM (orient "auto" included).
_D = {**LINRFM.defaults(), **PLAIN_LINRFM}
_DTYPE = np.dtype(_D["dtype"])


def resolve_orientation(orient: str, n_users: int, n_items: int) -> bool:
    """Return ``users_are_rows``. ``"auto"`` puts the smaller side in the ``d x d`` kernel."""
    if orient == "auto":
        return n_items <= n_users
    if orient == "items":  # items are the features (kernel over items), users are rows
        return True
    if orient == "users":
        return False
    raise ValueError(
        f"orient must be 'auto', 'users' or 'items' (the feature side), got {orient!r}"
    )


@dataclass
class RatingsFit:
    """A fitted model in user/item terms. Indices are inner codes; -1 means unknown."""

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    users_are_rows: bool
    kernel: Kernel
    A: sp.csr_matrix
    lam: float
    reg_user: float
    history: list[dict] = field(default_factory=list)
    best_iteration: int = 0
    _completion: Completion | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def K(self) -> np.ndarray:
        """The kernel as a dense ``d x d`` array (built on demand for a factored kernel)."""
        return self.kernel.dense()

    @property
    def completion(self) -> Completion:
        """``W = A K`` of the fitted rows (for a factored kernel with ``Z = A U diag(s)`` kept)."""
        completion = self._completion
        if completion is None:
            # built once: concurrent predictions on one fitted model share it
            with _COMPLETION_LOCK:
                completion = self._completion
                if completion is None:
                    completion = self._completion = self.kernel.complete(self.A)
        return completion

    @property
    def n_users(self) -> int:
        return self.b_user.shape[0]

    @property
    def n_items(self) -> int:
        return self.b_item.shape[0]

    def _rc(self, users, items):
        return (users, items) if self.users_are_rows else (items, users)

    def predict(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimates and a mask of impossible pairs (both user and item unknown).

        Where only one side is known the estimate is the baseline part of that side, as
        Surprise's SVD does.
        """
        est, both, impossible = bias_estimates(self.mu, self.b_user, self.b_item, users, items)
        r, c = self._rc(np.asarray(users)[both], np.asarray(items)[both])
        est[both] += self.completion.pairs(r, c)
        return est, impossible

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings of every item for known users (``len(users) x n_items``)."""
        users = np.asarray(users, dtype=np.int64)
        if self.users_are_rows:
            kernel = self.completion.rows(users)
        else:
            kernel = self.completion.columns(users).T
        out = bias_scores(self.mu, self.b_user, self.b_item, users)
        out += kernel
        return out

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """Scores of every item for a new user with these (known item, rating) pairs, no refit.

        The user's bias is the ridge estimate with ``reg_user``. Users as rows: the new row is
        fitted like any other, ``a = (K[S,S] + lam I)^-1 y`` and scores ``K[:, S] a``. Users as
        features: a new column has no kernel row, so the user's residuals are regressed on the
        fitted item rows instead (kernel ridge in the dual with the item kernel ``W W^T``,
        ``W = A K``, rescaled to mean diagonal 1 on the rated items): scores ``W W_S^T alpha``.

        Returns:
            ``(scores over all items, user bias)``.
        """
        items = np.asarray(items, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        dev = ratings - self.mu - self.b_item[items]
        b_u = float(dev.sum() / (self.reg_user + dev.size)) if dev.size else 0.0
        y = dev - b_u
        base = self.mu + b_u + self.b_item
        if y.size == 0:
            return base, b_u
        if self.users_are_rows:
            a = self.kernel.solve_row(items, y, self.lam)
            kernel = self.kernel.apply(items, a)
        else:
            W_S = self.completion.rows(items)  # |S| x n_users
            G = W_S @ W_S.T
            scale = float(np.mean(np.diag(G))) or 1.0
            G.flat[:: items.size + 1] += self.lam * scale
            alpha = spd_solve(G, y)
            kernel = np.asarray(self.A @ self.kernel.matvec(W_S.T @ alpha))
        return base + kernel.astype(np.float64), b_u


def validation_mask(n_ratings: int, share: float, random_state=None) -> np.ndarray:
    """Which of ``n_ratings`` ratings (in their given order) are held out for validation.

    Exactly ``round(share * n)`` of them, at least one and never all, drawn with
    ``random_state``: a small share of a small set still holds out a rating (a per-rating coin
    flip could hold out none). Both backends call this, so they hold out the same ratings.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"validation_share must be in (0, 1), got {share}")
    if n_ratings < 2:
        raise ValueError(
            f"validation_share needs at least 2 ratings to hold one out, got {n_ratings}: "
            f"use validation_share=0"
        )
    k = min(max(1, round(share * n_ratings)), n_ratings - 1)
    held = np.zeros(n_ratings, dtype=bool)
    held[np.random.default_rng(random_state).choice(n_ratings, k, replace=False)] = True
    return held


def fit_ratings(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    update: FeatureUpdate | None = None,
    lam: float = _D["lam"],
    n_iter: int = _D["n_iter"],
    orient: str = _D["orient"],
    reg_user: float = _D["reg_user"],
    reg_item: float = _D["reg_item"],
    baseline_epochs: int = _D["baseline_epochs"],
    dtype=_DTYPE,
    tol: float | None = _D["tol"],
    validation_share: float = _D["validation_share"],
    patience: int = _D["patience"],
    random_state=_D["random_state"],
    max_memory: int | None = _D["max_memory"],
    progress: bool = False,
    callback=None,
    rank: int | str | None = _D["rank"],
    shift: float = 0.0,
) -> RatingsFit:
    """Fit baseline and kernel on integer-coded triples (already validated).

    ``rank``: ``None`` for the dense kernel, an int for a factored kernel of that rank,
    ``"auto"`` for :func:`~rfm_recsys.core.kernels.resolve_rank`'s choice; ``shift`` as in
    :func:`~rfm_recsys.core.engine.fit_engine`. ``random_state`` also seeds the factored
    kernel's range finder.

    With ``validation_share > 0``, that share of the ratings (drawn with ``random_state``) is held
    out, the engine runs with early stopping on it, and the model is then refitted on all the
    ratings for the best number of iterations found; the history keeps the validation curve.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    # what every engine run of this fit shares
    run = dict(
        update=update if update is not None else AGOPPower(1.0),
        lam=lam,
        orient=orient,
        reg_user=reg_user,
        reg_item=reg_item,
        baseline_epochs=baseline_epochs,
        dtype=dtype,
        tol=tol,
        max_memory=max_memory,
        progress=progress,
        rank=rank,
        shift=shift,
        random_state=random_state,
    )
    if not validation_share:
        return _fit_once(
            users, items, ratings, n_users, n_items, n_iter=n_iter, callback=callback, **run
        )
    held = validation_mask(ratings.size, validation_share, random_state)
    probe = _fit_once(
        users[~held],
        items[~held],
        ratings[~held],
        n_users,
        n_items,
        n_iter=n_iter,
        validation=(users[held], items[held], ratings[held]),
        patience=patience,
        callback=callback,
        **run,
    )
    fit = _fit_once(users, items, ratings, n_users, n_items, n_iter=probe.best_iteration, **run)
    fit.history = probe.history
    return fit


def fit_with_config(
    config: ModelConfig,
    values: Mapping[str, Any],
    users,
    items,
    ratings,
    n_users: int,
    n_items: int,
    progress: bool = False,
    callback=None,
) -> RatingsFit | CombinedFit:
    """:func:`fit_ratings` with an estimator's stored hyperparameters, mapped by its config.

    Shared by the Surprise algorithms and :class:`~rfm_recsys.model.LinRFM`; the values must
    have passed the config's constraints (``_validate_params``). Families with the kernel step's
    parameters (``kernel``, ``implicit``...) get it after the AGOP updates
    (:func:`~rfm_recsys.core.kernel_rfm.apply_kernel`); ``orient="both"`` fits both
    orientations and returns their :class:`~rfm_recsys.core.kernel_rfm.CombinedFit`. The kernel
    step takes the fit's form: dense for a dense kernel, factored
    (:mod:`~rfm_recsys.core.kernel_rfm_factored`, no ``d x d`` matrix) for ``rank`` an int or
    ``"auto"`` beyond 4,096 feature columns (with the step on; plain lin-RFM's ``"auto"`` is
    dense up to 256). ``backend="dask"`` runs plain lin-RFM on a Dask cluster
    (:func:`rfm_recsys.distributed.fit_arrays_dask`), without the kernel step.
    """
    if values.get("backend", "threads") == "dask":
        from ..distributed import fit_arrays_dask

        return fit_arrays_dask(
            config, values, users, items, ratings, n_users, n_items, progress, callback
        )
    kwargs = config.fit_kwargs(values)
    kwargs["progress"] = bool(progress or kwargs.get("progress", False))
    kernel = {k: values[k] for k in KERNEL_PARAMS if k in values}
    if kwargs.get("orient") == "both":
        return fit_both_orientations(
            users, items, ratings, n_users, n_items, kernel, callback=callback, **kwargs
        )
    if kernel and not kernel_step_is_plain(**kernel) and "rank" in kwargs:
        # the kernel step's own rule for rank="auto" (dense up to 4096 feature columns)
        d = n_items if resolve_orientation(kwargs["orient"], n_users, n_items) else n_users
        kwargs["rank"] = resolve_step_rank(kwargs["rank"], d)
    fit = fit_ratings(users, items, ratings, n_users, n_items, callback=callback, **kwargs)
    return apply_kernel(fit, users, items, ratings, **kernel) if kernel else fit


def _fit_once(
    users,
    items,
    ratings,
    n_users,
    n_items,
    *,
    update,
    lam,
    n_iter,
    orient,
    reg_user,
    reg_item,
    baseline_epochs,
    dtype,
    tol,
    max_memory,
    progress,
    validation=None,
    patience=2,
    callback=None,
    rank=None,
    shift=0.0,
    random_state=None,
) -> RatingsFit:
    users_are_rows = resolve_orientation(orient, n_users, n_items)
    bl: Baseline = fit_baseline(
        users, items, ratings, n_users, n_items, reg_user, reg_item, baseline_epochs
    )
    resid = ratings - bl.predict(users, items)
    rows, cols = (users, items) if users_are_rows else (items, users)
    shape = (n_users, n_items) if users_are_rows else (n_items, n_users)
    R = sp.csr_matrix((resid.astype(dtype), (rows, cols)), shape=shape)
    engine_val = None
    if validation is not None:
        vu, vi, vr = validation
        known = (vu >= 0) & (vi >= 0)
        vrows, vcols = (vu, vi) if users_are_rows else (vi, vu)
        # the engine predicts residuals; validation pairs whose row has no ratings stay baseline
        has_obs = np.diff(R.indptr)[vrows] > 0
        keep = known & has_obs
        engine_val = (vrows[keep], vcols[keep], (vr - bl.predict(vu, vi))[keep])
    res = fit_engine(
        R,
        lam=lam,
        n_iter=n_iter,
        update=update,
        tol=tol,
        dtype=dtype,
        validation=engine_val,
        patience=patience,
        max_memory=max_memory,
        progress=progress,
        callback=callback,
        rank=(r := resolve_rank(rank, R.shape[1], update)),
        shift=shift,
        random_state=_seed(random_state) if r is not None else 0,
    )
    return RatingsFit(
        mu=bl.mu,
        b_user=bl.b_row,
        b_item=bl.b_col,
        users_are_rows=users_are_rows,
        kernel=res.kernel,
        A=res.A,
        lam=float(lam),
        reg_user=float(reg_user),
        history=res.history,
        best_iteration=res.best_iteration,
    )


def validation_curve(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    n_items: int,
    *,
    update: FeatureUpdate | None = None,
    lam: float = _D["lam"],
    n_iter: int = _D["n_iter"],
    orient: str = _D["orient"],
    reg_user: float = _D["reg_user"],
    reg_item: float = _D["reg_item"],
    baseline_epochs: int = _D["baseline_epochs"],
    dtype=_DTYPE,
    max_memory: int | None = None,
    rank: int | str | None = _D["rank"],
    shift: float = 0.0,
) -> list[dict]:
    """Validation RMSE after every kernel update, for choosing ``n_iter`` and the rest.

    ``valid`` must come from the training data (a held-out share), never from a test fold.
    Pairs whose row has no training ratings are scored by the baseline and left out of the
    curve, as the engine only predicts residuals of rows it has seen.
    """
    fit = _fit_once(
        *train,
        n_users,
        n_items,
        update=update if update is not None else AGOPPower(1.0),
        lam=lam,
        n_iter=n_iter,
        orient=orient,
        reg_user=reg_user,
        reg_item=reg_item,
        baseline_epochs=baseline_epochs,
        dtype=dtype,
        tol=None,
        max_memory=max_memory,
        progress=False,
        validation=valid,
        patience=n_iter + 1,
        rank=rank,
        shift=shift,
    )
    return fit.history


def _seed(random_state) -> int:
    # the range finder wants a reproducible integer seed; a Generator or None maps to one
    if random_state is None:
        return 0
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    return int(np.random.default_rng(random_state).integers(2**31))
