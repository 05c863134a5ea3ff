"""Fit a rating model: choose orientation, kernel form and backend, then run the one engine loop.

:func:`fit_ratings` is what every model class calls. It takes the ratings (integer-coded triples
in this process, or ratings already on a Dask cluster) and one :class:`FitSettings`, draws the
validation split when asked, and for each run fits the biases, builds the row blocks on the
chosen backend and runs :func:`~rfm_recsys.core.engine.run_engine` (lin-RFM's updates, then the
kernel step if the settings have one). ``orient="both"`` fits each orientation and averages
them (:class:`~rfm_recsys.fitting.state.CombinedFit`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.engine import run_engine
from .local import LocalRatings
from .plan import integer_seed, resolve_orientation, resolve_rank, validation_mask
from .settings import FitSettings
from .state import CombinedFit, RatingsFit

#: Weight of the kernel-over-items side when both orientations are averaged, chosen on
#: validation shares of ml-100k and ml-latest-small (evaluation/kernel_rfm_experiments.md).
BOTH_WEIGHT = 0.75


def fit_ratings(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    settings: FitSettings,
    callback: Callable[[int, dict], None] | None = None,
) -> RatingsFit | CombinedFit:
    """Fit biases and kernel on integer-coded triples (already checked) held in this process.

    With ``backend="dask"`` the triples are scattered to the cluster and fitted there
    (:mod:`rfm_recsys.distributed`); the result is the same kind of fit.
    """
    check_backend(settings)
    if settings.orient == "both":
        fits = [
            fit_ratings(
                users,
                items,
                ratings,
                n_users,
                n_items,
                dataclasses.replace(settings, orient=side),
                callback,
            )
            for side in ("items", "users")
        ]
        return CombinedFit(fits[0], fits[1], weight=BOTH_WEIGHT)
    users_are_rows = resolve_orientation(settings.orient, n_users, n_items)
    held = None
    if settings.validation_share:
        held = validation_mask(ratings.size, settings.validation_share, settings.random_state)
    if settings.backend == "dask":
        from ..distributed import scattered_ratings

        with scattered_ratings(
            users, items, ratings, n_users, n_items, users_are_rows, held
        ) as source:
            return fit_source(source, settings, users_are_rows, callback)
    source = LocalRatings(users, items, ratings, n_users, n_items, held)
    return fit_source(source, settings, users_are_rows, callback)


def fit_dask_frame(
    ddf,
    settings: FitSettings,
    columns: tuple,
    rating_scale: tuple[float, float] | None,
    duplicates: str,
    callback: Callable[[int, dict], None] | None = None,
) -> tuple[RatingsFit, Any, Any, tuple[float, float]]:
    """Fit on a ``dask.dataframe.DataFrame`` of ratings without bringing them to this process.

    Returns:
        ``(fit, user vocabulary, item vocabulary, (lowest, highest) rating)``.
    """
    from ..distributed import frame_source

    settings = dataclasses.replace(settings, backend="dask")
    check_backend(settings)

    def users_are_rows(n_users: int, n_items: int) -> bool:
        return resolve_orientation(settings.orient, n_users, n_items)

    with frame_source(
        ddf,
        columns,
        rating_scale=rating_scale,
        duplicates=duplicates,
        users_are_rows=users_are_rows,
        validation_share=settings.validation_share,
        random_state=settings.random_state,
    ) as (source, user_vocab, item_vocab):
        rows = users_are_rows(source.n_users, source.n_items)
        fit = fit_source(source, settings, rows, callback)
    return fit, user_vocab, item_vocab, source.rating_range


def check_backend(settings: FitSettings) -> None:
    """Refuse, before any cluster starts, what the Dask backend does not fit."""
    if settings.backend != "dask":
        return
    if settings.orient == "both":
        raise NotImplementedError(
            "backend='dask' fits one orientation: use orient='auto', 'items' or 'users', or "
            "backend='threads' for orient='both'"
        )


def fit_source(
    source: Any,
    settings: FitSettings,
    users_are_rows: bool,
    callback: Callable[[int, dict], None] | None = None,
) -> RatingsFit:
    """:func:`fit_ratings` on a data source of either backend (one orientation).

    The source holds the ratings and their validation mask and gives the biases and the row
    blocks of a run (``LocalRatings`` here, the Dask backend's ratings on the cluster). With a
    validation share the early-stopping run fits the training part, then the model is refitted
    on every rating up to the best iteration found; the history keeps the validation curve.
    """
    s = settings
    d = source.n_items if users_are_rows else source.n_users
    rank = resolve_rank(s.rank, d, s.dense_only, s.step is not None)
    if not s.validation_share:
        return _run(source, s, "all", users_are_rows, rank, callback)
    probe = _run(source, s, "train", users_are_rows, rank, callback, validating=True)
    fit = _run(source, s, "all", users_are_rows, rank, None, stop_at=probe.best_iteration)
    fit.history = probe.history
    return fit


def _run(
    source,
    s: FitSettings,
    mode: str,
    users_are_rows: bool,
    rank: int | None,
    callback,
    validating: bool = False,
    stop_at: int | None = None,
) -> RatingsFit:
    bl = source.biases(mode, s.bias_ridge, s.bias_ridge, s.n_bias_sweeps)
    blocks = source.blocks(mode, bl, users_are_rows, s.dtype, validating)
    res = run_engine(
        blocks,
        ridge=s.ridge,
        n_updates=s.n_updates,
        update=s.update,
        tol=s.tol,
        patience=s.patience,
        max_memory=s.max_memory,
        callback=callback,
        progress=s.progress,
        rank=rank,
        shift=s.shift,
        random_state=integer_seed(s.random_state) if rank is not None else 0,
        step=s.step,
        stop_at=stop_at,
        solve_tol=s.solve_tol,
    )
    return RatingsFit(
        mu=bl.mu,
        b_user=bl.b_row,
        b_item=bl.b_col,
        users_are_rows=users_are_rows,
        kernel=res.kernel,
        A=res.A,
        ridge=res.ridge,
        bias_ridge=float(s.bias_ridge),
        history=res.history,
        best_iteration=res.best_iteration,
    )


def validation_curve(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    n_items: int,
    settings: FitSettings,
) -> list[dict]:
    """Validation RMSE after every row fit of one run, for choosing ``n_updates`` and the rest.

    ``valid`` must come from the training data (a held-out share), never from a test fold.
    Pairs whose row has no training ratings are scored by the baseline and left out of the
    curve, as the engine only predicts residuals of rows it has seen. One orientation
    (``settings.orient`` is not ``"both"``); the whole curve is run (no early stopping).
    """
    users = np.concatenate([train[0], valid[0]])
    items = np.concatenate([train[1], valid[1]])
    ratings = np.concatenate([train[2], valid[2]])
    held = np.zeros(ratings.size, dtype=bool)
    held[len(train[2]) :] = True
    source = LocalRatings(users, items, ratings, n_users, n_items, held)
    users_are_rows = resolve_orientation(settings.orient, n_users, n_items)
    s = dataclasses.replace(settings, tol=None, progress=False, validation_share=0.0)
    total = s.n_updates + (s.step.n_updates if s.step is not None else 0)
    s = dataclasses.replace(s, patience=total + 1)
    d = n_items if users_are_rows else n_users
    rank = resolve_rank(s.rank, d, s.dense_only, s.step is not None)
    return _run(source, s, "train", users_are_rows, rank, None, validating=True).history
