"""The explicit-feedback models' shared base: fit, predict and fold-in on ratings.

One class serves two audiences:

* **Ratings in a DataFrame** (``user_id, item_id, rating``, raw ids of any hashable type):
  ``fit(df)``, ``predict(users, items)`` on raw ids, ``recommend(user, N=10)``,
  ``fold_in(ratings_of_new_user)``, ``save``/``load``.
* **implicit's** :class:`~implicit.recommender_base.RecommenderBase` contract on a users x items
  CSR matrix of ratings (ids are row/column indices): ``fit(user_items)``,
  ``recommend(userid, user_items, N, ...)`` for one id or a batch, ``similar_items``,
  ``similar_users``, ``save``/``load``; so ``implicit.evaluation.ranking_metrics_at_k`` runs on it
  unchanged.

:class:`RatingModel` holds all of it for :class:`~rfm_recsys.LinRFM` and
:class:`~rfm_recsys.KernelRFM`, which differ only in their hyperparameters. Ranking and
similarity search are :class:`~rfm_recsys.model.base.ScoringRecommenderBase`'s; the numerical
work is the fitting layer's (:func:`rfm_recsys.fitting.fit_ratings`,
:class:`~rfm_recsys.fitting.RatingsFit`); input parsing is :mod:`rfm_recsys.model.inputs` and
the file format :mod:`rfm_recsys.model.persistence`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..checks import RatingsError, check_shape, check_triples
from ..config import ModelConfig
from ..fitting import FitSettings, RatingsFit, fit_dask_frame, fit_ratings
from ..ids import Vocabulary, broadcast_ids
from ..params import InvalidParameterError
from ..topn import top_n
from .base import NotFittedError, ScoringRecommenderBase, UnknownIdError
from .inputs import new_user_ratings, ratings_triples, row_entries
from .persistence import load_model, save_model

__all__ = ["NotFittedError", "RatingModel", "UnknownIdError"]


class RatingModel(ScoringRecommenderBase):
    """An engine-based rating model on pandas/scipy data with an ``implicit`` face.

    Subclasses are declared with :func:`~rfm_recsys.config.with_config` (their hyperparameters)
    and name their file format (``_format``). Unknown ids at ``predict``: an unknown user gets
    the item side of the baseline ``mu + b_i``, an unknown item ``mu + b_u``, and a pair with
    both unknown the global mean ``mu`` (as Surprise does); ``predict(...,
    return_impossible=True)`` also returns the mask of those last pairs. Predictions are clipped
    to ``rating_scale``, or without one to the range of the training ratings (``rating_range_``),
    as Surprise clips to its trainset's scale; ``clip=False`` turns clipping off. Ranking scores
    (``recommend``) are never clipped.

    Input: ``fit`` takes a pandas DataFrame with the columns ``user_col``, ``item_col``,
    ``rating_col`` (raw ids of any hashable type, one type per column), or a scipy sparse users
    x items matrix whose *stored* entries are the ratings (explicit zeros included; ids are the
    row and column indices). Bad input (NaN or infinite ratings, ratings outside
    ``rating_scale``, duplicate pairs unless ``duplicates`` resolves them, empty data, fewer than
    two users or items, missing columns, non-numeric ratings, missing or mixed-type ids) raises
    an error naming the problem and the fix; a failed ``fit`` leaves a previously fitted model
    exactly as it was.

    Attributes:
        fit_: after ``fit``, the :class:`~rfm_recsys.fitting.RatingsFit` (biases, kernel,
            rows ``A``).
        history_: after ``fit``, one dict per row fit: ``iteration``, ``stage`` (``"linear"``
            or ``"kernel"``), ``train_rmse``, ``valid_rmse`` (with a validation share; the
            history is then that of the early-stopping run), ``kernel_change``, ``seconds``
            (cumulative) and ``iteration_seconds``.
        user_ids_: after ``fit``, the raw id of each inner user code (``arange`` for a sparse
            fit).
        item_ids_: after ``fit``, the raw id of each inner item code (``arange`` for a sparse
            fit).
        n_users_: after ``fit``, the size of the user id space.
        n_items_: after ``fit``, the size of the item id space.
        user_vocab_: after ``fit``, the users' :class:`~rfm_recsys.ids.Vocabulary`.
        item_vocab_: after ``fit``, the items' :class:`~rfm_recsys.ids.Vocabulary`.
        fitted_on_: after ``fit``, ``"dataframe"`` or ``"sparse"``.
        rating_range_: after ``fit``, ``(min, max)`` of the training ratings (the clipping range
            without ``rating_scale``).
    """

    config: ClassVar[ModelConfig]
    #: the file format name written by :meth:`save`
    _format: ClassVar[str]

    _fitted_attr = "fit_"

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        ratings,
        show_progress: bool = False,
        callback: Callable[[int, dict], None] | None = None,
    ) -> Self:
        """Fit the biases and the kernel; returns ``self``.

        Args:
            ratings: a pandas DataFrame with ``user_col``, ``item_col``, ``rating_col``, or a
                scipy sparse users x items matrix whose stored entries are ratings, or a
                ``dask.dataframe.DataFrame`` with those columns (always fitted with the dask
                backend; the ratings never come to this process).
            show_progress: show a progress bar (as does ``verbose=True``).
            callback: called as ``callback(iteration, record)`` with each history record (the
                engine's convention, not implicit's ``(iteration, elapsed, loss)``).

        Raises:
            InvalidParameterError: a hyperparameter outside its allowed range.
            RatingsError: bad ratings (the message names the problem and the fix).
            TypeError: ``ratings`` is neither a DataFrame nor a scipy sparse matrix.
        """
        self._validate_params()
        if self.orient == "both":
            raise InvalidParameterError(
                f"{type(self).__name__}: orient='both' averages two fits, which only "
                f"KernelRFMAlgo (rating prediction) supports; {type(self).__name__} ranks, finds "
                f"similar items and saves one kernel: use orient='items', 'users' or 'auto'"
            )
        settings = FitSettings.from_params(self.get_params())
        if show_progress:
            settings = FitSettings.from_params(self.get_params(), progress=True)
        if _is_dask_frame(ratings):
            columns = (self.user_col, self.item_col, self.rating_col)
            fit, user_vocab, item_vocab, rating_range = fit_dask_frame(
                ratings, settings, columns, self._scale(), self.duplicates, callback
            )
            self._set_fitted(fit, user_vocab, item_vocab, "dataframe", rating_range)
            return self
        users, items, values, user_vocab, item_vocab, source = ratings_triples(
            ratings, self.user_col, self.item_col, self.rating_col
        )
        users, items, values = check_triples(
            users, items, values, rating_scale=self._scale(), duplicates=self.duplicates
        )
        check_shape(int(np.unique(users).size), int(np.unique(items).size))
        fit = fit_ratings(
            users, items, values, len(user_vocab), len(item_vocab), settings, callback
        )
        # Everything above worked on locals: only now is the fitted state replaced, so a failed
        # fit leaves a previously fitted model untouched.
        rating_range = (float(values.min()), float(values.max()))
        self._set_fitted(fit, user_vocab, item_vocab, source, rating_range)
        return self

    def _set_fitted(
        self,
        fit: RatingsFit,
        user_vocab: Vocabulary,
        item_vocab: Vocabulary,
        source: str,
        rating_range: tuple[float, float],
    ) -> None:
        self._clear_caches()
        self.rating_range_ = rating_range
        self.fit_ = fit
        self.user_vocab_ = user_vocab
        self.item_vocab_ = item_vocab
        self.fitted_on_ = source
        self.history_ = _with_iteration_seconds(fit.history)

    def _scale(self) -> tuple[float, float] | None:
        """``rating_scale`` as floats (its constraint is checked by ``fit``)."""
        if self.rating_scale is None:
            return None
        lo, hi = (float(x) for x in self.rating_scale)
        return lo, hi

    def _fold_in_scale(self) -> tuple:
        """What a new user's ratings must lie in, and its name for messages: ``rating_scale``,
        else the range of the training ratings (as ``fit`` refuses ratings outside the scale)."""
        scale = self._scale()
        if scale is not None:
            return scale, None
        lo, hi = self.rating_range_
        return (lo, hi), f"the training ratings' range [{lo:g}, {hi:g}]"

    def _clip(self, est: np.ndarray) -> np.ndarray:
        if not self.clip:
            return est
        lo, hi = self._scale() or self.rating_range_
        return np.clip(est, lo, hi, out=est)

    # ------------------------------------------------------------------ prediction

    def predict(
        self, users, items, *, return_impossible: bool = False
    ) -> np.ndarray | float | tuple:
        """Predicted ratings of ``(user, item)`` pairs given by raw ids (broadcast together).

        Unknown user: ``mu + b_i``; unknown item: ``mu + b_u``; both unknown: ``mu`` (the
        training mean). Clipped to ``rating_scale`` (else the training range) unless
        ``clip=False``.

        Args:
            users: raw user ids: a sequence or array of the shape of ``items``, or a scalar
                (repeated against ``items``).
            items: raw item ids: a sequence or array of the shape of ``users``, or a scalar
                (repeated against ``users``).
            return_impossible: also return the boolean mask of pairs with both ids unknown.

        Returns:
            An array of the pairs' shape (a float for two scalars); with ``return_impossible``,
            the pair ``(estimates, mask)``.

        Raises:
            ValueError: ``users`` and ``items`` are sequences of different shapes.
        """
        self._check_fitted()
        scalar = np.ndim(users) == 0 and np.ndim(items) == 0
        u, i = broadcast_ids(users, items)
        shape = u.shape
        est, impossible = self.fit_.predict(self._user_codes(u), self._item_codes(i))
        est = self._clip(est).reshape(shape)
        impossible = impossible.reshape(shape)
        if scalar:
            est, impossible = float(est.ravel()[0]), bool(impossible.ravel()[0])
        return (est, impossible) if return_impossible else est

    # ------------------------------------------------------------------ ranking hooks

    def _score_users(self, codes: np.ndarray) -> np.ndarray:
        return self.fit_.score_users(codes)

    def _seen_items(self) -> sp.csr_matrix:
        """Users x items pattern of the training ratings (from the pattern of ``A``)."""
        A = self.fit_.A
        P = sp.csr_matrix(A if self.fit_.users_are_rows else A.T, copy=True)
        P.data = np.ones_like(P.data)
        return P

    def _score_new_users(self, rows: sp.csr_matrix, start: int, stop: int) -> np.ndarray:
        # one small solve per user: fold-ins do not batch (each has its own item set)
        scale, name = self._fold_in_scale()
        return np.stack(
            [
                self._fold_in_codes(*row_entries(rows, r, scale, self.duplicates, name))
                for r in range(start, stop)
            ]
        )

    def _similarity(self, side: str, codes: np.ndarray) -> np.ndarray:
        """Cosine in the learned geometry.

        When the side is the kernel (feature) side, the similarity of ``a, b`` is
        ``K[a, b] / sqrt(K[a, a] K[b, b])``; when it is the row side, the cosine of the
        completed rows ``W = A K`` (``W (W_x)^T`` from the query rows, without forming ``W``).
        """
        f = self.fit_
        tiny = np.finfo(np.float64).tiny
        if (side == "item") == f.users_are_rows:
            diag = np.sqrt(np.maximum(f.kernel.diag(), tiny))
            S = f.kernel.rows(codes) / diag[codes][:, None] / diag[None, :]
        else:
            norms = self._cached("row_norms", f.completion.row_norms)
            W_x = f.completion.rows(codes)  # the query rows of W, len(codes) x d
            S = (
                f.completion.times(W_x.T).T
                / np.maximum(norms[codes], tiny)[:, None]
                / np.maximum(norms, tiny)[None, :]
            )
        return np.clip(S, -1.0, 1.0, out=S)

    # ------------------------------------------------------------------ fold-in

    def recommend_new_user(
        self,
        ratings,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items=None,
        items=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items for a user not in the training data, from her ratings (fold-in).

        Args:
            ratings: as :meth:`fold_in`.
            N, filter_already_liked_items, filter_items, items: as :meth:`recommend`.

        Returns:
            ``(item_ids, scores)``, 1-d.
        """
        self._check_fitted()
        codes, values = self._new_user_ratings(ratings)
        S = self._fold_in_codes(codes, values)[None, :]
        if filter_already_liked_items:
            S[0, codes] = -np.inf
        cand, N = self._candidates(filter_items, items, int(N))
        pos, sc = top_n(cand.apply(S), N)
        return self._finish(cand.to_codes(pos), sc, self.item_ids_, batch=False)

    def fold_in(self, ratings_of_new_user) -> pd.Series:
        """Predicted ratings of every known item for a new user, with the fitted kernel (no refit).

        The user's bias is the ridge estimate with ``bias_ridge``; the rest is her row fitted
        like any training row (users as rows) or her residuals regressed on the fitted item rows
        (users as features); see :meth:`rfm_recsys.fitting.RatingsFit.fold_in`.

        Args:
            ratings_of_new_user: a DataFrame with ``item_col`` and ``rating_col`` (a
                ``user_col``, if present, must hold one user), a Series indexed by item id, or a
                dict item id -> rating. Items unknown to the model are ignored with a warning
                naming them.

        Returns:
            A Series of predicted ratings indexed by ``item_ids_`` (clipped as
            :meth:`predict`'s).

        Raises:
            RatingsError: no ratings, or ratings outside ``rating_scale`` (without one: outside
                the range of the training ratings), NaN, or repeated items.
            UnknownIdError: none of the rated items is known to the model (for a user without
                any known rating, ``predict`` with an unknown user id gives the item baseline).
        """
        self._check_fitted()
        codes, values = self._new_user_ratings(ratings_of_new_user)
        scores = self._clip(self._fold_in_codes(codes, values))
        return pd.Series(scores, index=self.item_vocab_.index, name="score")

    def _fold_in_codes(self, codes: np.ndarray, values: np.ndarray) -> np.ndarray:
        scores, _ = self.fit_.fold_in(codes, values)
        return np.asarray(scores, dtype=np.float64)

    def _new_user_ratings(self, ratings) -> tuple[np.ndarray, np.ndarray]:
        raw_items, values = new_user_ratings(ratings, self.user_col, self.item_col, self.rating_col)
        if values.size == 0:
            raise RatingsError(
                "the new user has no ratings: fold-in needs at least one rating of a known item "
                "(for a user without ratings, predict with an unknown user id: the item baseline)"
            )
        codes = self._item_codes(raw_items)
        unknown = codes < 0
        if unknown.all():
            raise UnknownIdError(
                f"none of the new user's {codes.size} rated item(s) is known to the model (e.g. "
                f"{raw_items[:5].tolist()}): fold-in needs ratings of items seen in training"
            )
        if unknown.any():
            warnings.warn(
                f"{int(unknown.sum())} of the new user's {codes.size} rated item(s) are unknown "
                f"to the model and were ignored (e.g. {raw_items[unknown][:5].tolist()})",
                UserWarning,
                stacklevel=3,
            )
        scale, name = self._fold_in_scale()
        _, codes, values = check_triples(
            np.zeros(int((~unknown).sum()), dtype=np.int64),
            codes[~unknown],
            values[~unknown],
            rating_scale=scale,
            duplicates=self.duplicates,
            scale_name=name,
        )
        return codes, values

    # ------------------------------------------------------------------ persistence

    def save(self, file) -> None:
        """Save to a ``.npz`` file (arrays + JSON metadata, checksummed): no pickle, no code.

        A path is written atomically: to a temporary file beside it, then renamed into place, so
        a failed or interrupted save leaves the previous file at that path as it was.

        Args:
            file: a path (``".npz"`` is appended if missing, as implicit does) or a binary
                file object.

        Raises:
            TypeError: raw ids that are neither integers, floats nor strings (map them first).
        """
        save_model(self, file)

    @classmethod
    def load(cls, fileobj_or_path) -> Self:
        """Load a model written by :meth:`save`, verifying its checksums; runs no code.

        Raises:
            ModelFileError: a damaged, truncated, foreign or too-new file (a ``ValueError``;
                the message names the file and the problem).
        """
        return load_model(cls, fileobj_or_path)


def _is_dask_frame(x) -> bool:
    # by module name, so that dask is imported only when the user passes its objects
    return type(x).__module__.startswith(("dask.dataframe", "dask_expr")) and hasattr(
        x, "npartitions"
    )


def _with_iteration_seconds(history: list[dict]) -> list[dict]:
    out, prev = [], 0.0
    for rec in history:
        rec = dict(rec)
        sec = rec.get("seconds")
        if sec is not None:
            rec["iteration_seconds"] = float(sec) - prev
            prev = float(sec)
        out.append(rec)
    return out
