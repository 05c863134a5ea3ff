"""The explicit-feedback model :class:`LinRFM`: a pandas/scipy face and an ``implicit`` face.

One class serves two audiences:

* **Ratings in a DataFrame** (``user_id, item_id, rating``, raw ids of any hashable type):
  ``fit(df)``, ``predict(users, items)`` on raw ids, ``recommend(user, n=10)``,
  ``fold_in(ratings_of_new_user)``, ``save``/``load``.
* **implicit's** :class:`~implicit.recommender_base.RecommenderBase` contract on a users x items
  CSR matrix of ratings (ids are row/column indices): ``fit(user_items)``,
  ``recommend(userid, user_items, N, ...)`` for one id or a batch, ``similar_items``,
  ``similar_users``, ``save``/``load``; so ``implicit.evaluation.ranking_metrics_at_k`` runs on it
  unchanged.

The numerical work is done by :func:`rfm_recsys.core.fitting.fit_ratings` and
:class:`~rfm_recsys.core.fitting.RatingsFit`; this module maps ids, validates input, ranks and
serialises.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.recommender_base import RecommenderBase

from ..checks import RatingsError, check_shape, check_triples
from ..core.engine import AGOPPower
from ..core.fitting import RatingsFit, fit_with_params
from ..core.kernels import DenseKernel
from ..params import ParamsMixin
from ..topn import top_n

__all__ = ["LinRFM", "NotFittedError", "UnknownIdError"]

# Dense score blocks (batch of users x all items) are computed in chunks of about this size.
_SCORE_CHUNK_BYTES = 32 * 2**20
_FORMAT = "rfm_recsys.LinRFM"
_FORMAT_VERSION = 1


class NotFittedError(ValueError, AttributeError):
    """The model is used before ``fit``; like scikit-learn's, it is a ValueError and an AttributeError."""


class UnknownIdError(KeyError, IndexError):
    """An id asked for is not in the training data.

    A KeyError for pandas-style callers and an IndexError for implicit-style ones (implicit's
    models raise IndexError for ids out of range).
    """

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class LinRFM(ParamsMixin, RecommenderBase):
    """Linear Recursive Feature Machine (lin-RFM) for explicit ratings.

    The prediction is a regularised baseline plus a kernel ridge fit of each row over the
    observed feature columns, with the kernel learned by lin-RFM::

        r_hat(u, i) = mu + b_u + b_i + sum_{s in S_r} K[c, s] a_{r, s}

    where ``r`` is the row (user or item) and ``c`` the feature column (the other) of the pair,
    ``S_r`` the columns observed in row ``r``, ``a_r = (K[S_r, S_r] + lam I)^-1 y_r`` and ``y_r``
    the baseline residuals. ``K`` starts as the identity and is replaced ``n_iter`` times by
    ``(W^T W / n)^power`` rescaled to mean diagonal 1, with ``W = A K`` the fitted rows (the
    average gradient outer product, AGOP).

    Unknown ids at ``predict``: an unknown user gets the item side of the baseline
    ``mu + b_i``, an unknown item ``mu + b_u``, and a pair with both unknown the global mean
    ``mu`` (as Surprise does); ``predict(..., return_impossible=True)`` also returns the mask of
    those last pairs. With ``rating_scale`` set, predictions are clipped to it.

    Input: ``fit`` takes a pandas DataFrame with the columns ``user_col``, ``item_col``,
    ``rating_col`` (raw ids of any hashable type), or a scipy sparse users x items matrix whose
    *stored* entries are the ratings (explicit zeros included; ids are the row and column
    indices). Bad input (NaN or infinite ratings, ratings outside ``rating_scale``, duplicate
    pairs unless ``duplicates`` resolves them, empty data, fewer than two users or items,
    missing columns, non-numeric ratings or missing ids) raises an error naming the problem and
    the fix; a failed ``fit`` leaves a previously fitted model exactly as it was.

    Args:
        n_iter, lam, power, orient, reg_user, reg_item, baseline_epochs, dtype, tol,
        validation_share, patience, duplicates, random_state, max_memory, verbose: as in
            :class:`~rfm_recsys.surprise_algos.LinRFMAlgo`, with the same defaults (chosen on validation
            shares of ml-100k and ml-latest-small training folds:
            ``python -m evaluation.choose_defaults``).
        user_col, item_col, rating_col: column names of a DataFrame given to ``fit``.
        rating_scale: ``(low, high)``; when given, ratings outside it are an error and
            predictions are clipped to it.

    Attributes (after ``fit``):
        fit_: the :class:`~rfm_recsys.core.fitting.RatingsFit` (biases, kernel ``K``, rows ``A``).
        history_: one dict per iteration: ``iteration``, ``train_rmse``, ``valid_rmse`` (with a
            validation share; the history is then that of the early-stopping run),
            ``kernel_change``, ``seconds`` (cumulative) and ``iteration_seconds``.
        user_ids_, item_ids_: raw id of each inner code (``arange`` for a sparse fit).
        n_users_, n_items_: sizes of the id spaces.
        fitted_on_: ``"dataframe"`` or ``"sparse"``.
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
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str = "rating",
        rating_scale: tuple[float, float] | None = None,
    ):
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
        self.user_col = user_col
        self.item_col = item_col
        self.rating_col = rating_col
        self.rating_scale = rating_scale

    def __getstate__(self) -> dict:
        # Caches (pandas indexes, seen-items matrix, row norms) are rebuilt on demand.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache")}

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        ratings,
        show_progress: bool = False,
        callback: Callable[[int, dict], None] | None = None,
    ) -> LinRFM:
        """Fit the baseline and the kernel; returns ``self``.

        Args:
            ratings: a pandas DataFrame with ``user_col``, ``item_col``, ``rating_col``, or a
                scipy sparse users x items matrix whose stored entries are ratings.
            show_progress: show a progress bar (as does ``verbose=True``).
            callback: called as ``callback(iteration, record)`` with each history record (the
                engine's convention, not implicit's ``(iteration, elapsed, loss)``).

        Raises:
            RatingsError: bad ratings (the message names the problem and the fix).
            TypeError: ``ratings`` is neither a DataFrame nor a scipy sparse matrix.
        """
        users, items, values, user_ids, item_ids, source = self._triples(ratings)
        scale = self._checked_scale()
        users, items, values = check_triples(
            users, items, values, rating_scale=scale, duplicates=self.duplicates
        )
        check_shape(int(np.unique(users).size), int(np.unique(items).size))
        fit = fit_with_params(
            self,
            AGOPPower(power=self.power, normalize="diag"),
            users,
            items,
            values,
            len(user_ids),
            len(item_ids),
            progress=show_progress,
            callback=callback,
        )
        # Everything above worked on locals: only now is the fitted state replaced, so a failed
        # fit leaves a previously fitted model untouched.
        self._set_fitted(fit, user_ids, item_ids, source)
        return self

    def _set_fitted(
        self, fit: RatingsFit, user_ids: np.ndarray, item_ids: np.ndarray, source: str
    ) -> None:
        for k in [k for k in self.__dict__ if k.startswith("_cache")]:
            del self.__dict__[k]
        self.fit_ = fit
        self.user_ids_ = user_ids
        self.item_ids_ = item_ids
        self.n_users_ = len(user_ids)
        self.n_items_ = len(item_ids)
        self.fitted_on_ = source
        self.history_ = _with_iteration_seconds(fit.history)

    def _checked_scale(self) -> tuple[float, float] | None:
        if self.rating_scale is None:
            return None
        try:
            lo, hi = (float(x) for x in self.rating_scale)
        except (TypeError, ValueError):
            raise ValueError(
                f"rating_scale must be a pair (low, high) of numbers, e.g. (1, 5); got {self.rating_scale!r}"
            ) from None
        if not lo < hi:
            raise ValueError(
                f"rating_scale must be (low, high) with low < high, got {self.rating_scale!r}"
            )
        return lo, hi

    def _triples(self, ratings):
        """(users, items, ratings, user_ids, item_ids, source) from a DataFrame or a sparse matrix."""
        if isinstance(ratings, pd.DataFrame):
            return self._triples_from_frame(ratings)
        if sp.issparse(ratings):
            return _triples_from_sparse(ratings)
        kind = type(ratings).__name__
        hint = ""
        if isinstance(ratings, np.ndarray) and ratings.ndim == 2:
            hint = (
                " For a dense users x items array use scipy.sparse.csr_matrix(array) (zeros become "
                "missing ratings)."
            )
        raise TypeError(
            f"fit expects a pandas DataFrame with columns {self.user_col!r}, {self.item_col!r}, "
            f"{self.rating_col!r} or a scipy sparse users x items matrix of ratings, got {kind}.{hint}"
        )

    def _triples_from_frame(self, df: pd.DataFrame):
        cols = (self.user_col, self.item_col, self.rating_col)
        if len(set(cols)) < 3:
            raise ValueError(
                f"user_col, item_col and rating_col must be three different columns, got {cols}"
            )
        if len(df) == 0:
            raise RatingsError(
                "no ratings to fit: the DataFrame is empty; pass at least one rating per user and item"
            )
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise RatingsError(
                f"column(s) {missing} not found in the ratings; the DataFrame has columns "
                f"{list(df.columns)}. Name them with LinRFM(user_col=..., item_col=..., rating_col=...) "
                f"(now user_col={self.user_col!r}, item_col={self.item_col!r}, rating_col={self.rating_col!r})"
            )
        values = _numeric_ratings(df[self.rating_col], self.rating_col)
        users, user_ids = _factorize(df[self.user_col], "user", self.user_col)
        items, item_ids = _factorize(df[self.item_col], "item", self.item_col)
        return users, items, values, user_ids, item_ids, "dataframe"

    # ------------------------------------------------------------------ fitted-state helpers

    def _check_fitted(self) -> None:
        if "fit_" not in self.__dict__:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(ratings) first"
            )

    def _cached(self, name: str, build: Callable[[], Any]) -> Any:
        key = "_cache_" + name
        if key not in self.__dict__:
            self.__dict__[key] = build()
        return self.__dict__[key]

    def _user_index(self) -> pd.Index:
        return self._cached("user_index", lambda: pd.Index(self.user_ids_))

    def _item_index(self) -> pd.Index:
        return self._cached("item_index", lambda: pd.Index(self.item_ids_))

    def _user_codes(self, users) -> np.ndarray:
        return _codes(self._user_index(), users)

    def _item_codes(self, items) -> np.ndarray:
        return _codes(self._item_index(), items)

    def _known_codes(self, ids, side: str) -> np.ndarray:
        codes = self._user_codes(ids) if side == "user" else self._item_codes(ids)
        if (codes < 0).any():
            bad = np.asarray(ids, dtype=object).ravel()[codes < 0]
            fix = (
                "pass her ratings with recalculate_user=True and user_items, or use "
                "recommend_new_user(ratings) / fold_in(ratings)"
                if side == "user"
                else "only ids seen in training can be used here"
            )
            raise UnknownIdError(
                f"{int((codes < 0).sum())} {side} id(s) not in the training data (e.g. "
                f"{bad[:5].tolist()}): {fix}"
            )
        return codes

    def _seen(self) -> sp.csr_matrix:
        """Users x items pattern of the training ratings (from the pattern of ``A``)."""

        def build():
            A = self.fit_.A
            P = A if self.fit_.users_are_rows else A.T
            P = sp.csr_matrix(P, copy=True)
            P.data = np.ones_like(P.data)
            return P

        return self._cached("seen", build)

    def _clip(self, est: np.ndarray) -> np.ndarray:
        scale = self._checked_scale()
        if scale is not None:
            np.clip(est, scale[0], scale[1], out=est)
        return est

    # ------------------------------------------------------------------ prediction

    def predict(
        self, users, items, *, return_impossible: bool = False
    ) -> np.ndarray | float | tuple:
        """Predicted ratings of ``(user, item)`` pairs given by raw ids (broadcast together).

        Unknown user: ``mu + b_i``; unknown item: ``mu + b_u``; both unknown: ``mu`` (the
        training mean). Clipped to ``rating_scale`` when it is set.

        Args:
            users, items: raw ids (sequences or arrays of one shape, or scalars; broadcast).
            return_impossible: also return the boolean mask of pairs with both ids unknown.

        Returns:
            An array of the broadcast shape (a float for two scalars); with
            ``return_impossible``, the pair ``(estimates, mask)``.
        """
        self._check_fitted()
        scalar = np.ndim(users) == 0 and np.ndim(items) == 0
        u, i = np.broadcast_arrays(_as_id_array(users), _as_id_array(items))
        shape = u.shape
        uc = self._user_codes(u.ravel())
        ic = self._item_codes(i.ravel())
        est, impossible = self.fit_.predict(uc, ic)
        est = self._clip(est).reshape(shape)
        impossible = impossible.reshape(shape)
        if scalar:
            est, impossible = float(est.ravel()[0]), bool(impossible.ravel()[0])
        return (est, impossible) if return_impossible else est

    def _score_block(self, codes: np.ndarray) -> np.ndarray:
        """Unclipped predicted ratings of every item for known users (``len(codes) x n_items``)."""
        f = self.fit_
        if f.users_are_rows:
            kern = np.asarray(f.A[codes] @ f.K)
        else:
            kern = np.asarray(f.A @ f.K[:, codes]).T
        out = kern.astype(np.float64)
        out += f.mu
        out += f.b_user[codes][:, None]
        out += f.b_item[None, :]
        return out

    def _fold_in_codes(self, codes: np.ndarray, values: np.ndarray) -> np.ndarray:
        scores, _ = self.fit_.fold_in(codes, values)
        return np.asarray(scores, dtype=np.float64)

    # ------------------------------------------------------------------ recommendation

    def recommend(
        self,
        userid,
        user_items=None,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items=None,
        recalculate_user: bool = False,
        items=None,
        *,
        n: int | None = None,
        exclude_seen: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items by predicted rating for one user or a batch of users.

        Ids are raw ids for a model fitted on a DataFrame and row/column indices for one fitted
        on a sparse matrix (there raw id == index), so both faces use one method. Scores are the
        predicted ratings, unclipped so that items predicted beyond the top of the scale keep
        their order.

        Args:
            userid: one user id or an array of them.
            user_items: optional CSR matrix with one row per requested user and one column per
                item (in the order of ``item_ids_``); its stored entries are that user's
                ratings. It gives the items filtered as already rated and, with
                ``recalculate_user=True``, the ratings folded in. Without it the training
                ratings are filtered.
            N: number of items per user (``n`` is an alias).
            filter_already_liked_items: leave out items the user rated (``exclude_seen`` is an
                alias).
            filter_items: item ids never to recommend (unknown ids are ignored).
            recalculate_user: score from ``user_items`` by fold-in with the fitted kernel (no
                refit); the user ids may then be new.
            items: rank only these item ids (cannot be combined with ``filter_items``).

        Returns:
            ``(item_ids, scores)``: 1-d arrays of at most ``N`` entries for a single user, 2-d
            arrays with ``N`` columns for a batch, padded with id -1 (``""`` for string ids,
            NaN for float ids) and score ``-inf`` where fewer than ``N`` items qualify. Item
            ids of a sparse fit are int32, as implicit's.

        Raises:
            UnknownIdError: a user id (without ``recalculate_user``) or an ``items`` id is not
                in the training data.
        """
        self._check_fitted()
        if n is not None:
            if N != 10 and n != N:
                raise ValueError(f"N={N} and n={n} disagree: pass only one of them")
            N = n
        if exclude_seen is not None:
            filter_already_liked_items = exclude_seen
        N = int(N)
        if N < 0:
            raise ValueError(f"N must be >= 0, got {N}")
        batch = np.ndim(userid) > 0
        ids = _as_id_array(userid).ravel()
        rows = self._user_items_rows(
            user_items, len(ids), filter_already_liked_items or recalculate_user
        )
        if recalculate_user and rows is None:
            raise ValueError(
                "recalculate_user=True needs user_items: a CSR matrix with one row of ratings per user "
                "(columns in the order of item_ids_)"
            )
        codes = None if recalculate_user else self._known_codes(ids, "user")
        cand, N = self._candidates(filter_items, items, N)

        scale = self._checked_scale()
        per_chunk = max(1, _SCORE_CHUNK_BYTES // (8 * max(1, self.n_items_)))
        out_pos, out_scores = [], []
        for start in range(0, len(ids), per_chunk):
            stop = min(len(ids), start + per_chunk)
            if recalculate_user:
                # one small solve per user: fold-ins do not batch (each has its own item set)
                S = np.stack(
                    [
                        self._fold_in_codes(*_row_entries(rows, r, scale, self.duplicates))
                        for r in range(start, stop)
                    ]
                )
            else:
                S = self._score_block(codes[start:stop])
            if filter_already_liked_items:
                liked = rows[start:stop] if rows is not None else self._seen()[codes[start:stop]]
                liked = sp.csr_matrix(liked)
                r_idx = np.repeat(np.arange(stop - start), np.diff(liked.indptr))
                S[r_idx, liked.indices] = -np.inf
            pos, sc = top_n(cand.apply(S), N)
            out_pos.append(pos)
            out_scores.append(sc)
        pos = np.concatenate(out_pos) if out_pos else np.empty((0, N), dtype=np.int64)
        scores = np.concatenate(out_scores) if out_scores else np.empty((0, N))
        return self._finish(cand.to_codes(pos), scores, self.item_ids_, batch)

    def recommend_new_user(
        self, ratings, n: int = 10, exclude_seen: bool = True, filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for a user not in the training data, from her ratings (fold-in).

        Args:
            ratings: as :meth:`fold_in`.
            n, exclude_seen, filter_items, items: as :meth:`recommend`.

        Returns:
            ``(item_ids, scores)``, 1-d.
        """
        self._check_fitted()
        codes, values = self._new_user_ratings(ratings)
        S = self._fold_in_codes(codes, values)[None, :]
        if exclude_seen:
            S[0, codes] = -np.inf
        cand, n = self._candidates(filter_items, items, int(n))
        pos, sc = top_n(cand.apply(S), n)
        return self._finish(cand.to_codes(pos), sc, self.item_ids_, batch=False)

    def _user_items_rows(self, user_items, n_rows: int, needed: bool):
        if user_items is None or not needed:
            return None
        if not sp.issparse(user_items):
            raise ValueError(
                "user_items needs to be a CSR sparse matrix (one row per requested user)"
            )
        M = sp.csr_matrix(user_items)
        if M.shape[0] != n_rows:
            raise ValueError(
                f"user_items must contain 1 row for every user in userid: got {M.shape[0]} rows for {n_rows} user(s)"
            )
        if M.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items has {M.shape[1]} columns but the model knows {self.n_items_} items; its "
                f"columns must follow item_ids_"
            )
        return M

    def _candidates(self, filter_items, items, N: int) -> _Candidates:
        if items is not None:
            if filter_items is not None and len(np.atleast_1d(filter_items)):
                raise ValueError("Can't set both items and filter_items: pass one of them")
            sub = self._known_codes(_as_id_array(items).ravel(), "item")
            sub = pd.unique(sub)
            return _Candidates(subset=sub, blocked=None), min(N, sub.size)
        blocked = None
        if filter_items is not None:
            fc = self._item_codes(_as_id_array(filter_items).ravel())
            blocked = fc[fc >= 0]
        return _Candidates(subset=None, blocked=blocked), N

    def _finish(self, pos: np.ndarray, scores: np.ndarray, id_array: np.ndarray, batch: bool):
        """Map code positions (-1 = none) to ids; trim a single row, pad a batch."""
        if not batch:
            row_pos, row_sc = pos[0], scores[0]
            ok = row_pos >= 0
            return _ids_of(id_array, row_pos[ok]), np.ascontiguousarray(row_sc[ok])
        ids = _ids_of(id_array, np.where(pos >= 0, pos, 0))
        if (pos < 0).any():
            ids = ids.copy()
            ids[pos < 0] = _pad_value(ids.dtype)
        return np.ascontiguousarray(ids), np.ascontiguousarray(scores)

    # ------------------------------------------------------------------ fold-in

    def fold_in(self, ratings_of_new_user) -> pd.Series:
        """Predicted ratings of every known item for a new user, with the fitted kernel (no refit).

        The user's bias is the ridge estimate with ``reg_user``; the rest is her row fitted like
        any training row (users as rows) or her residuals regressed on the fitted item rows
        (users as features); see :meth:`rfm_recsys.core.fitting.RatingsFit.fold_in`.

        Args:
            ratings_of_new_user: a DataFrame with ``item_col`` and ``rating_col`` (a
                ``user_col``, if present, must hold one user), a Series indexed by item id, or a
                dict item id -> rating. Items unknown to the model are ignored with a warning;
                no ratings at all give the item baseline ``mu + b_i``.

        Returns:
            A Series of predicted ratings indexed by ``item_ids_`` (clipped to
            ``rating_scale`` when set).
        """
        self._check_fitted()
        codes, values = self._new_user_ratings(ratings_of_new_user)
        scores = self._clip(self._fold_in_codes(codes, values))
        return pd.Series(scores, index=self._item_index(), name="score")

    def _new_user_ratings(self, ratings) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(ratings, Mapping):
            ratings = pd.Series(ratings, dtype=object if len(ratings) == 0 else None)
        if isinstance(ratings, pd.DataFrame):
            missing = [c for c in (self.item_col, self.rating_col) if c not in ratings.columns]
            if missing:
                raise RatingsError(
                    f"column(s) {missing} not found in the new user's ratings; it has columns "
                    f"{list(ratings.columns)} (the model uses item_col={self.item_col!r}, rating_col={self.rating_col!r})"
                )
            if (
                self.user_col in ratings.columns
                and ratings[self.user_col].nunique(dropna=False) > 1
            ):
                raise RatingsError(
                    f"fold_in takes the ratings of one new user but column {self.user_col!r} holds "
                    f"{ratings[self.user_col].nunique(dropna=False)} users: call it once per user"
                )
            raw_items = ratings[self.item_col].to_numpy()
            values = (
                _numeric_ratings(ratings[self.rating_col], self.rating_col)
                if len(ratings)
                else np.empty(0)
            )
        elif isinstance(ratings, pd.Series):
            raw_items = ratings.index.to_numpy()
            values = _numeric_ratings(ratings, "ratings") if len(ratings) else np.empty(0)
        else:
            raise TypeError(
                f"fold_in expects a DataFrame with columns {self.item_col!r}, {self.rating_col!r}, a "
                f"Series indexed by item id or a dict item -> rating, got {type(ratings).__name__}"
            )
        if values.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        codes = self._item_codes(raw_items)
        unknown = codes < 0
        if unknown.any():
            warnings.warn(
                f"{int(unknown.sum())} of the new user's {codes.size} rated item(s) are unknown to the "
                f"model and were ignored (e.g. {raw_items[unknown][:5].tolist()})",
                UserWarning,
                stacklevel=3,
            )
        codes, values = codes[~unknown], values[~unknown]
        if values.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        _, codes, values = check_triples(
            np.zeros(codes.size, dtype=np.int64),
            codes,
            values,
            rating_scale=self._checked_scale(),
            duplicates=self.duplicates,
        )
        return codes, values

    # ------------------------------------------------------------------ similarity

    def similar_items(
        self,
        itemid,
        N: int = 10,
        recalculate_item: bool = False,
        item_users=None,
        filter_items=None,
        items=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most similar items by cosine in the learned geometry; the item itself comes first.

        When items are the kernel (feature) side, the similarity of items ``a, b`` is
        ``K[a, b] / sqrt(K[a, a] K[b, b])``; when items are rows, it is the cosine of their
        completed rows ``W = A K`` (computed as ``A (K (K a_x))`` without forming ``W``).

        Args:
            itemid: one item id or an array of them.
            N: number of items returned per query (the query item included).
            recalculate_item, item_users: not supported (``NotImplementedError``).
            filter_items: item ids to leave out.
            items: only consider these item ids (not with ``filter_items``).

        Returns:
            ``(item_ids, scores)``, 1-d for one id and 2-d (padded as :meth:`recommend`) for an
            array.
        """
        if recalculate_item:
            raise NotImplementedError(
                "recalculate_item is not supported by LinRFM: refit to add items"
            )
        return self._similar("item", itemid, N, filter_items, items)

    def similar_users(
        self, userid, N: int = 10, filter_users=None, users=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most similar users by cosine in the learned geometry (see :meth:`similar_items`)."""
        return self._similar("user", userid, N, filter_users, users)

    def _similar(self, side: str, query, N: int, filter_ids, subset):
        self._check_fitted()
        f = self.fit_
        batch = np.ndim(query) > 0
        qcodes = self._known_codes(_as_id_array(query).ravel(), side)
        is_feature = (side == "item") == f.users_are_rows
        if subset is not None:
            if filter_ids is not None and len(np.atleast_1d(filter_ids)):
                raise ValueError(f"Can't set both {side}s and filter_{side}s: pass one of them")
            sub = pd.unique(self._known_codes(_as_id_array(subset).ravel(), side))
            cand, N = _Candidates(subset=sub, blocked=None), min(int(N), sub.size)
        else:
            blocked = None
            if filter_ids is not None:
                codes_f = (self._item_codes if side == "item" else self._user_codes)(
                    _as_id_array(filter_ids).ravel()
                )
                blocked = codes_f[codes_f >= 0]
            cand = _Candidates(subset=None, blocked=blocked)
        tiny = np.finfo(np.float64).tiny
        if is_feature:
            diag = np.sqrt(np.maximum(np.diag(f.K).astype(np.float64), tiny))
            S = f.K[qcodes].astype(np.float64) / diag[qcodes][:, None] / diag[None, :]
        else:
            norms = self._cached("row_norms", self._row_norms)
            Z = f.A[qcodes].toarray().astype(np.float64)
            K64 = f.K.astype(np.float64)
            M = (Z @ K64) @ K64  # rows a_x^T K K
            S = (
                np.asarray(f.A @ M.T).T
                / np.maximum(norms[qcodes], tiny)[:, None]
                / np.maximum(norms, tiny)[None, :]
            )
        np.clip(S, -1.0, 1.0, out=S)
        # Ties at cosine 1 (duplicate rows) must not push the query item out of first place.
        S[np.arange(len(qcodes)), qcodes] = np.inf
        pos, sc = top_n(cand.apply(S), int(N))
        sc[np.isposinf(sc)] = 1.0
        id_array = self.item_ids_ if side == "item" else self.user_ids_
        return self._finish(cand.to_codes(pos), sc, id_array, batch)

    def _row_norms(self) -> np.ndarray:
        """``||W_r||`` for every row ``r`` of ``W = A K``, in dense chunks of bounded size."""
        f = self.fit_
        n, d = f.A.shape
        out = np.empty(n, dtype=np.float64)
        per = max(1, _SCORE_CHUNK_BYTES // (8 * max(1, d)))
        for start in range(0, n, per):
            X = np.asarray(f.A[start : start + per] @ f.K, dtype=np.float64)
            out[start : start + per] = np.sqrt(np.einsum("ij,ij->i", X, X))
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, file) -> None:
        """Save to a ``.npz`` file (arrays + one JSON string): no pickle, no code.

        Args:
            file: a path (``".npz"`` is appended if missing, as implicit does) or a binary
                file object.

        Raises:
            TypeError: raw ids that are neither integers, floats nor strings (map them first).
        """
        if isinstance(file, (str, os.PathLike)):
            file = os.fspath(file)
            if not file.endswith(".npz"):
                file += ".npz"
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "params": self._json_params(),
            "fitted": "fit_" in self.__dict__,
        }
        arrays: dict[str, np.ndarray] = {}
        if meta["fitted"]:
            f = self.fit_
            A = f.A
            arrays.update(
                K=f.kernel.dense(),
                A_data=A.data,
                A_indices=A.indices,
                A_indptr=A.indptr,
                b_user=np.asarray(f.b_user),
                b_item=np.asarray(f.b_item),
                user_ids=_storable_ids(self.user_ids_, "user"),
                item_ids=_storable_ids(self.item_ids_, "item"),
            )
            meta.update(
                mu=float(f.mu),
                users_are_rows=bool(f.users_are_rows),
                lam=float(f.lam),
                reg_user=float(f.reg_user),
                A_shape=[int(x) for x in A.shape],
                best_iteration=int(f.best_iteration),
                history=_json_history(f.history),
                fitted_on=self.fitted_on_,
            )
        arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
        np.savez(file, **arrays)

    @classmethod
    def load(cls, fileobj_or_path) -> LinRFM:
        """Load a model written by :meth:`save` (``np.load(..., allow_pickle=False)``)."""
        if isinstance(fileobj_or_path, (str, os.PathLike)):
            fileobj_or_path = os.fspath(fileobj_or_path)
            if not fileobj_or_path.endswith(".npz"):
                fileobj_or_path += ".npz"
        with np.load(fileobj_or_path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise ValueError(
                    "not a LinRFM file: no 'meta' entry (was it written by LinRFM.save?)"
                )
            meta = json.loads(str(data["meta"][()]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"not a LinRFM file (format {meta.get('format')!r})")
            if meta.get("version", 0) > _FORMAT_VERSION:
                raise ValueError(
                    f"file format version {meta['version']} is newer than this rfm_recsys "
                    f"understands ({_FORMAT_VERSION}): upgrade rfm_recsys"
                )
            params = dict(meta["params"])
            if params.get("rating_scale") is not None:
                params["rating_scale"] = tuple(params["rating_scale"])
            model = cls(**params)
            if meta["fitted"]:
                A = sp.csr_matrix(
                    (data["A_data"], data["A_indices"], data["A_indptr"]),
                    shape=tuple(meta["A_shape"]),
                )
                fit = RatingsFit(
                    mu=float(meta["mu"]),
                    b_user=data["b_user"],
                    b_item=data["b_item"],
                    users_are_rows=bool(meta["users_are_rows"]),
                    kernel=DenseKernel(data["K"]),
                    A=A,
                    lam=float(meta["lam"]),
                    reg_user=float(meta["reg_user"]),
                    history=_unjson_history(meta["history"]),
                    best_iteration=int(meta["best_iteration"]),
                )
                model._set_fitted(fit, data["user_ids"], data["item_ids"], meta["fitted_on"])
        return model

    def _json_params(self) -> dict[str, Any]:
        out = {}
        for k, v in self.get_params().items():
            if k == "dtype":
                v = np.dtype(v).name
            elif k == "rating_scale" and v is not None:
                v = [float(x) for x in v]
            elif isinstance(v, np.generic):
                v = v.item()
            if k == "random_state" and not (v is None or isinstance(v, int)):
                warnings.warn(
                    f"random_state={v!r} cannot be saved as JSON; the loaded model has random_state=None",
                    UserWarning,
                    stacklevel=3,
                )
                v = None
            out[k] = v
        return out


# ---------------------------------------------------------------------- helpers


class _Candidates:
    """The items (or users) that may be ranked: all, all but ``blocked``, or only ``subset``."""

    def __init__(self, subset: np.ndarray | None, blocked: np.ndarray | None):
        self.subset = subset
        self.blocked = blocked

    def apply(self, S: np.ndarray) -> np.ndarray:
        if self.blocked is not None and self.blocked.size:
            S[:, self.blocked] = -np.inf
        if self.subset is not None:
            return S[:, self.subset]
        return S

    def to_codes(self, pos: np.ndarray) -> np.ndarray:
        if self.subset is None:
            return pos
        return np.where(pos >= 0, self.subset[np.maximum(pos, 0)], -1)


def _pad_value(dtype: np.dtype):
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "US":
        return ""
    return None


def _ids_of(id_array: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.asarray(id_array)[pos]


def _as_id_array(x) -> np.ndarray:
    if isinstance(x, (pd.Series, pd.Index)):
        return x.to_numpy()
    arr = np.asarray(x)
    if (
        arr.dtype.kind in "US"
        and arr.ndim == 1
        and isinstance(x, (list, tuple))
        and not all(isinstance(v, str) for v in x)
    ):
        # numpy would turn ["a", 1] into two strings and so lose the integer id 1
        arr = np.empty(len(x), dtype=object)
        arr[:] = x
    return arr


def _codes(index: pd.Index, ids) -> np.ndarray:
    arr = _as_id_array(ids).ravel()
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    try:
        return np.asarray(index.get_indexer(arr), dtype=np.int64)
    except (TypeError, ValueError):
        # ids of a type the index cannot compare with (e.g. unhashable): all unknown
        return np.full(arr.size, -1, dtype=np.int64)


def _factorize(col: pd.Series, what: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Inner codes and the raw id of each code (sorted when the ids are sortable)."""
    try:
        codes, uniques = pd.factorize(col, sort=True)
    except TypeError:  # mixed types that do not sort: order of first appearance
        codes, uniques = pd.factorize(col, sort=False)
    missing = codes < 0
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        raise RatingsError(
            f"{int(missing.sum()):,} rows have a missing {what} id in column {name!r} (first at "
            f"row {col.index[k]!r}); drop them first, e.g. df.dropna(subset=[{name!r}])"
        )
    return codes.astype(np.int64), _clean_ids(uniques)


def _clean_ids(uniques) -> np.ndarray:
    """A plain numpy array of raw ids: numbers stay numbers, strings become a unicode array."""
    arr = np.asarray(uniques)
    if arr.dtype.kind == "O" and arr.size:
        if all(isinstance(x, str) for x in arr):
            return arr.astype(str)
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in arr):
            try:
                return arr.astype(np.int64)
            except OverflowError:
                return arr
    if arr.dtype.kind == "O" and arr.size == 0:
        return arr.astype(str)
    return arr


def _storable_ids(ids: np.ndarray, what: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind in "iufUSb":
        return ids
    raise TypeError(
        f"the {what} ids are Python objects of types "
        f"{sorted({type(x).__name__ for x in ids[:1000]})}, which cannot be saved without pickle: "
        f"map them to integers or strings before fitting (e.g. df[col].astype(str))"
    )


def _numeric_ratings(col: pd.Series, name: str) -> np.ndarray:
    """Ratings as float64; a non-numeric column is an error naming the first bad value."""
    if pd.api.types.is_bool_dtype(col.dtype) or not pd.api.types.is_numeric_dtype(col.dtype):
        as_num = pd.to_numeric(col, errors="coerce")
        bad = as_num.isna() & col.notna()
        example = ""
        if bad.any():
            k = int(np.flatnonzero(bad.to_numpy())[0])
            example = f" (e.g. {col.iloc[k]!r} at row {col.index[k]!r})"
        raise RatingsError(
            f"the rating column {name!r} must hold numbers but has dtype {col.dtype}{example}; convert "
            f"it first, e.g. df[{name!r}] = pd.to_numeric(df[{name!r}])"
        )
    # nullable dtypes (Int64, Float64) carry pd.NA: make it NaN so check_triples reports it
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _triples_from_sparse(X):
    if X.ndim != 2:
        raise RatingsError(
            f"a sparse ratings matrix must be 2-d (users x items), got shape {X.shape}"
        )
    if X.dtype.kind not in "iuf":
        raise RatingsError(
            f"the sparse ratings matrix has dtype {X.dtype}; ratings must be integers or floats: "
            f"convert it with X.astype(np.float32)"
        )
    n_users, n_items = X.shape
    # tocoo keeps every stored entry, duplicates and explicit zeros included: both are data here.
    coo = X.tocoo()
    users = np.asarray(coo.row, dtype=np.int64)
    items = np.asarray(coo.col, dtype=np.int64)
    values = np.asarray(coo.data, dtype=np.float64)
    if values.size == 0:
        raise RatingsError(
            f"no ratings to fit: the {n_users} x {n_items} sparse matrix stores no entries; pass at "
            f"least one rating per user and item"
        )
    user_ids = np.arange(n_users, dtype=np.int32)
    item_ids = np.arange(n_items, dtype=np.int32)
    return users, items, values, user_ids, item_ids, "sparse"


def _row_entries(M: sp.csr_matrix, r: int, scale, duplicates: str) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = M.indptr[r], M.indptr[r + 1]
    items = np.asarray(M.indices[lo:hi], dtype=np.int64)
    values = np.asarray(M.data[lo:hi], dtype=np.float64)
    if values.size == 0:
        return items, values
    _, items, values = check_triples(
        np.zeros(items.size, dtype=np.int64),
        items,
        values,
        rating_scale=scale,
        duplicates=duplicates,
    )
    return items, values


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


def _json_history(history: list[dict]) -> list[dict]:
    def conv(v):
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return (
                v if math.isfinite(v) else None
            )  # strict JSON has no NaN; None means "not defined"
        if isinstance(v, np.integer):
            return int(v)
        return v

    return [{k: conv(v) for k, v in rec.items()} for rec in history]


def _unjson_history(history: list[dict]) -> list[dict]:
    return [{k: (float("nan") if v is None else v) for k, v in rec.items()} for rec in history]
