"""Recommend, similar items and users, candidate filtering and top-N, once for every model.

:class:`ScoringRecommenderBase` is an implicit :class:`~implicit.recommender_base.RecommenderBase`
that, like implicit's ``MatrixFactorizationBase``, implements the ranking side of the contract
once; a model class adds ``fit``, ``save``/``load`` and a few scoring hooks:

* ``_score_users(codes)``: scores of every item for known users (``len(codes) x n_items``);
* ``_seen_items()``: the users x items CSR pattern of the training data (filtered by default);
* ``_similarity(side, codes)``: cosine similarity (in ``[-1, 1]``) of the query users or items
  to every one of that side (``"user"`` or ``"item"``); the query itself is reported as 1;
* ``_score_new_users(rows, start, stop)``: optional, scores of rows ``start:stop`` of a users x
  items CSR of new interactions (``recalculate_user=True``).

After ``fit`` the model holds ``user_vocab_`` and ``item_vocab_``
(:class:`~rfm_recsys.ids.Vocabulary`): ids are raw ids for a model fitted on a DataFrame and
row/column indices (``Vocabulary.range``) for one fitted on a sparse matrix, so both faces use
one set of methods. Caches (pandas indexes, the seen matrix, norms) live under ``_cache_*`` and
are dropped on pickling and refitting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.recommender_base import RecommenderBase

from ..ids import Vocabulary, as_id_array
from ..params import ParamsMixin
from ..topn import Candidates, block_seen, score_chunk_rows, top_n

__all__ = ["NotFittedError", "ScoringRecommenderBase", "UnknownIdError"]

# One lock for every model's lazy caches: builds are rare (once per fit) and short.
_CACHE_LOCK = threading.RLock()
_MISSING = object()


class NotFittedError(ValueError, AttributeError):
    """The model is used before ``fit``; as scikit-learn's, a ValueError and an AttributeError."""


class UnknownIdError(KeyError, IndexError):
    """An id asked for is not in the training data.

    A KeyError for pandas-style callers and an IndexError for implicit-style ones (implicit's
    models raise IndexError for ids out of range).
    """

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class ScoringRecommenderBase(ParamsMixin, RecommenderBase):
    """implicit's ranking contract on top of a few scoring hooks (see the module docstring)."""

    #: the attribute whose presence marks a fitted model
    _fitted_attr = "item_vocab_"

    user_vocab_: Vocabulary
    item_vocab_: Vocabulary

    # ------------------------------------------------------------------ hooks

    def _score_users(self, codes: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _seen_items(self) -> sp.csr_matrix:  # pragma: no cover - abstract
        raise NotImplementedError

    def _similarity(self, side: str, codes: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _score_new_users(self, rows: sp.csr_matrix, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError(
            f"recalculate_user is not supported by {type(self).__name__}: refit to add users"
        )

    # ------------------------------------------------------------------ fitted state

    @property
    def user_ids_(self) -> np.ndarray:
        """Raw id of each inner user code."""
        return self.user_vocab_.ids

    @property
    def item_ids_(self) -> np.ndarray:
        """Raw id of each inner item code."""
        return self.item_vocab_.ids

    @property
    def n_users_(self) -> int:
        return len(self.user_vocab_)

    @property
    def n_items_(self) -> int:
        return len(self.item_vocab_)

    def __getstate__(self) -> dict:
        # Caches (seen-items matrix, norms) are rebuilt on demand.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache")}

    def _clear_caches(self) -> None:
        for k in [k for k in self.__dict__ if k.startswith("_cache")]:
            del self.__dict__[k]

    def _check_fitted(self) -> None:
        if self._fitted_attr not in self.__dict__:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(ratings) first"
            )

    def _cached(self, name: str, build: Callable[[], Any]) -> Any:
        # Built once under a lock: concurrent predict/recommend calls on one fitted model must
        # neither build twice nor see a half-made value. Reentrant, as a build may use another
        # cache.
        key = "_cache_" + name
        value = self.__dict__.get(key, _MISSING)
        if value is _MISSING:
            with _CACHE_LOCK:
                value = self.__dict__.get(key, _MISSING)
                if value is _MISSING:
                    value = build()
                    self.__dict__[key] = value
        return value

    def _user_codes(self, users) -> np.ndarray:
        return self.user_vocab_.numbers(users)

    def _item_codes(self, items) -> np.ndarray:
        return self.item_vocab_.numbers(items)

    def _known_codes(self, ids, side: str) -> np.ndarray:
        vocab = self.user_vocab_ if side == "user" else self.item_vocab_
        codes = vocab.numbers(ids)
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
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items by score (the predicted rating) for one user or a batch of users.

        Scores are unclipped, so that items predicted beyond the top of the scale keep their
        order.

        Args:
            userid: one user id or an array of them.
            user_items: optional CSR matrix with one row per requested user and one column per
                item (in the order of ``item_ids_``); its stored entries are that user's
                ratings. It gives the items filtered as already rated and, with
                ``recalculate_user=True``, the ratings folded in. Without it the training
                ratings are filtered.
            N: number of items per user.
            filter_already_liked_items: leave out items the user rated.
            filter_items: item ids never to recommend (unknown ids are ignored).
            recalculate_user: score from ``user_items`` by fold-in with the fitted model (no
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
        N = int(N)
        if N < 0:
            raise ValueError(f"N must be >= 0, got {N}")
        batch = np.ndim(userid) > 0
        ids = as_id_array(userid).ravel()
        rows = self._user_items_rows(
            user_items, len(ids), filter_already_liked_items or recalculate_user
        )
        if recalculate_user and rows is None:
            raise ValueError(
                "recalculate_user=True needs user_items: a CSR matrix with one row of ratings "
                "per user (columns in the order of item_ids_)"
            )
        codes = None if recalculate_user else self._known_codes(ids, "user")
        cand, N = self._candidates(filter_items, items, N)
        per_chunk = score_chunk_rows(self.n_items_)
        out_pos, out_scores = [], []
        for start in range(0, len(ids), per_chunk):
            stop = min(len(ids), start + per_chunk)
            if recalculate_user:
                S = self._score_new_users(rows, start, stop)
            else:
                S = self._score_users(codes[start:stop])
            if filter_already_liked_items:
                seen = rows[start:stop] if rows is not None else None
                block_seen(S, seen if seen is not None else self._seen()[codes[start:stop]])
            pos, sc = top_n(cand.apply(S), N)
            out_pos.append(pos)
            out_scores.append(sc)
        pos = np.concatenate(out_pos) if out_pos else np.empty((0, N), dtype=np.int64)
        scores = np.concatenate(out_scores) if out_scores else np.empty((0, N))
        return self._finish(cand.to_codes(pos), scores, self.item_ids_, batch)

    def _seen(self) -> sp.csr_matrix:
        return self._cached("seen", self._seen_items)

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
                f"user_items must contain 1 row for every user in userid: got {M.shape[0]} rows "
                f"for {n_rows} user(s)"
            )
        if M.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items has {M.shape[1]} columns but the model knows {self.n_items_} items; "
                f"its columns must follow item_ids_"
            )
        return M

    def _candidates(self, filter_ids, subset, N: int, side: str = "item"):
        """The :class:`~rfm_recsys.topn.Candidates` of a call and ``N`` capped to a subset."""
        if subset is not None:
            if filter_ids is not None and len(np.atleast_1d(filter_ids)):
                raise ValueError(f"Can't set both {side}s and filter_{side}s: pass one of them")
            sub = pd.unique(self._known_codes(as_id_array(subset).ravel(), side))
            return Candidates(subset=sub), min(N, sub.size)
        blocked = None
        if filter_ids is not None:
            vocab = self.item_vocab_ if side == "item" else self.user_vocab_
            fc = vocab.numbers(filter_ids)
            blocked = fc[fc >= 0]
        return Candidates(blocked=blocked), N

    def _finish(self, pos: np.ndarray, scores: np.ndarray, id_array: np.ndarray, batch: bool):
        """Map code positions (-1 = none) to ids; trim a single row, pad a batch."""
        if not batch:
            row_pos, row_sc = pos[0], scores[0]
            ok = row_pos >= 0
            return np.asarray(id_array)[row_pos[ok]], np.ascontiguousarray(row_sc[ok])
        ids = np.asarray(id_array)[np.where(pos >= 0, pos, 0)]
        if (pos < 0).any():
            ids = ids.copy()
            ids[pos < 0] = _pad_value(ids.dtype)
        return np.ascontiguousarray(ids), np.ascontiguousarray(scores)

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
        """Most similar items by the model's cosine similarity; the item itself comes first.

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
                f"recalculate_item is not supported by {type(self).__name__}: refit to add items"
            )
        return self._similar("item", itemid, N, filter_items, items)

    def similar_users(
        self, userid, N: int = 10, filter_users=None, users=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most similar users (see :meth:`similar_items`); the user itself comes first."""
        return self._similar("user", userid, N, filter_users, users)

    def _similar(self, side: str, query, N: int, filter_ids, subset):
        self._check_fitted()
        batch = np.ndim(query) > 0
        qcodes = self._known_codes(as_id_array(query).ravel(), side)
        cand, N = self._candidates(filter_ids, subset, int(N), side)
        S = self._similarity(side, qcodes)
        # Ties at cosine 1 (duplicate rows) must not push the query out of first place.
        S[np.arange(len(qcodes)), qcodes] = np.inf
        pos, sc = top_n(cand.apply(S), N)
        sc[np.isposinf(sc)] = 1.0
        id_array = self.item_ids_ if side == "item" else self.user_ids_
        return self._finish(cand.to_codes(pos), sc, id_array, batch)


def _pad_value(dtype: np.dtype):
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "US":
        return ""
    return None
