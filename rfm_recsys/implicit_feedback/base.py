"""implicit's ``RecommenderBase`` face shared by the item-operator recommenders of the package.

A subclass fits an item-to-item operator on a users x items interaction matrix and provides

* ``_transform(user_items)``: the interaction values it scores (e.g. binarised or confidence
  weights) as a float32 CSR matrix;
* ``_scores(rows)``: scores of every item for a batch of such rows (``b x d`` float32);
* ``_item_vectors()`` and ``_user_vectors(rows)``: vectors whose cosine is the similarity of
  ``similar_items`` and ``similar_users``;
* ``_state()`` / ``_restore(arrays, meta)``: its fitted arrays for :meth:`save` / :meth:`load`.

Everything else (id checks, filtering, top-N, batching, ``recommend_all``, atomic pickle-free
``save``/``load``) lives here. Ids are row and column indices of the fitted matrix.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from implicit.recommender_base import RecommenderBase

from ..params import ParamsMixin
from ..topn import top_n

__all__ = ["ItemScoringRecommender", "NotFittedError", "check_user_items"]

# Dense score blocks (users x all items) are built in chunks of about this many bytes.
_SCORE_CHUNK_BYTES = 32 * 2**20


class NotFittedError(ValueError, AttributeError):
    """The model is used before ``fit``."""


def check_user_items(user_items, what: str = "user_items") -> sp.csr_matrix:
    """A users x items interaction matrix as float32 CSR, summed duplicates, no stored zeros.

    Raises:
        TypeError: not a scipy sparse matrix (the message says how to convert).
        ValueError: not 2-d, non-numeric, NaN/infinite or negative values.
    """
    if not sp.issparse(user_items):
        hint = ""
        if isinstance(user_items, np.ndarray) and user_items.ndim == 2:
            hint = " For a dense array use scipy.sparse.csr_matrix(array)."
        raise TypeError(
            f"{what} must be a scipy sparse users x items matrix (CSR), got "
            f"{type(user_items).__name__}.{hint}"
        )
    if user_items.ndim != 2:
        raise ValueError(f"{what} must be 2-d (users x items), got shape {user_items.shape}")
    if user_items.dtype.kind not in "biuf":
        raise ValueError(
            f"{what} has dtype {user_items.dtype}; interactions must be numbers: "
            f"convert with .astype(np.float32)"
        )
    X = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    X.sum_duplicates()
    if X.nnz and not np.isfinite(X.data).all():
        raise ValueError(f"{what} holds NaN or infinite values: drop or replace them first")
    if X.nnz and X.data.min() < 0:
        raise ValueError(
            f"{what} holds negative values (min {X.data.min():g}); interactions are counts, "
            f"ratings or confidences >= 0: shift or clip them first"
        )
    X.eliminate_zeros()
    X.indices = X.indices.astype(np.int32, copy=False)
    X.indptr = X.indptr.astype(np.int64 if X.nnz >= 2**31 else np.int32, copy=False)
    return X


class ItemScoringRecommender(ParamsMixin, RecommenderBase):
    """Recommend, similar items/users and persistence for models scoring items from user rows."""

    _format: ClassVar[str] = ""
    _format_version: ClassVar[int] = 1

    # ------------------------------------------------------------------ hooks

    def _transform(self, user_items: sp.csr_matrix) -> sp.csr_matrix:  # pragma: no cover
        raise NotImplementedError

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _item_vectors(self) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _user_vectors(self, rows: sp.csr_matrix) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        raise NotImplementedError  # pragma: no cover

    # ------------------------------------------------------------------ fitted state

    def _set_interactions(self, X: sp.csr_matrix) -> None:
        """Keep the transformed training rows: user ``u``'s representation is row ``u``."""
        for k in [k for k in self.__dict__ if k.startswith("_cache")]:
            del self.__dict__[k]
        self.user_items_ = X
        self.n_users_, self.n_items_ = X.shape

    def _check_fitted(self) -> None:
        if "user_items_" not in self.__dict__:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(user_items) first"
            )

    def _cached(self, name: str, build):
        key = "_cache_" + name
        if key not in self.__dict__:
            self.__dict__[key] = build()
        return self.__dict__[key]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache")}

    @property
    def item_factors(self) -> np.ndarray:
        """Item vectors of :meth:`similar_items` (the name implicit's models use)."""
        self._check_fitted()
        return self._item_vectors()

    # ------------------------------------------------------------------ recommend

    def recommend(
        self,
        userid,
        user_items,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items=None,
        recalculate_user: bool = False,
        items=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``N`` items for one user or a batch (implicit's contract).

        Args:
            userid: a user id (row of the fitted matrix) or an array of them.
            user_items: CSR with one row per user in ``userid``: the items filtered out with
                ``filter_already_liked_items``, and the user's interactions with
                ``recalculate_user`` (then ``userid`` may be any id, even unknown).
            N: number of items returned.
            filter_already_liked_items: never return items stored in ``user_items``.
            filter_items: item ids never returned.
            recalculate_user: score from ``user_items`` instead of the training rows.
            items: rank only these item ids (cannot be combined with ``filter_items``).

        Returns:
            ``(ids, scores)`` int32 / float32, best first; 1-d for a scalar ``userid``, else one
            row per user. Fewer than ``N`` candidates are padded with id -1 and score -inf.
        """
        self._check_fitted()
        scalar = np.isscalar(userid) or np.ndim(userid) == 0
        users = np.atleast_1d(np.asarray(userid)).astype(np.int64, copy=False).ravel()
        if filter_already_liked_items or recalculate_user:
            if not sp.issparse(user_items) or user_items.format != "csr":
                raise ValueError("user_items needs to be a CSR sparse matrix")
            if user_items.shape[0] != users.size:
                raise ValueError("user_items must contain 1 row for every user in userids")
            if user_items.shape[1] != self.n_items_:
                raise ValueError(
                    f"user_items has {user_items.shape[1]} columns, the model {self.n_items_} items"
                )
        if recalculate_user:
            rows = self._transform(check_user_items(user_items))
        else:
            self._check_ids(users, self.n_users_, "user")
            rows = self.user_items_[users]
        subset = self._subset(items, filter_items)
        blocked = self._blocked(filter_items)
        N = int(N) if subset is None else min(int(N), subset.size)
        ids = np.full((users.size, N), -1, dtype=np.int32)
        scores = np.full((users.size, N), -np.inf, dtype=np.float32)
        per = max(1, _SCORE_CHUNK_BYTES // (4 * max(1, self.n_items_)))
        for lo in range(0, users.size, per):
            hi = min(lo + per, users.size)
            S = self._scores(rows[lo:hi])
            if filter_already_liked_items:
                seen = user_items[lo:hi]
                S[np.repeat(np.arange(hi - lo), np.diff(seen.indptr)), seen.indices] = -np.inf
            if blocked is not None:
                S[:, blocked] = -np.inf
            if subset is not None:
                pos, sc = top_n(S[:, subset], N, np.int64, np.float32)
                pos = np.where(pos >= 0, subset[np.maximum(pos, 0)], -1)
            else:
                pos, sc = top_n(S, N, np.int64, np.float32)
            ids[lo:hi], scores[lo:hi] = pos, sc
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def recommend_all(
        self,
        user_items,
        N: int = 10,
        recalculate_user: bool = False,
        filter_already_liked_items: bool = True,
        filter_items=None,
        users_items_offset: int = 0,
    ) -> np.ndarray:
        """Item ids recommended to every row of ``user_items`` (deprecated in implicit, kept)."""
        warnings.warn(
            "recommend_all is deprecated. Use recommend with an array of userids instead",
            DeprecationWarning,
            stacklevel=2,
        )
        user_items = sp.csr_matrix(user_items)
        userids = np.arange(user_items.shape[0]) + users_items_offset
        if users_items_offset:
            pad = sp.csr_matrix((users_items_offset, user_items.shape[1]), dtype=user_items.dtype)
            user_items = sp.vstack([pad, user_items], format="csr")[userids]
        ids, _ = self.recommend(
            userids,
            user_items,
            N=N,
            filter_already_liked_items=filter_already_liked_items,
            filter_items=filter_items,
            recalculate_user=recalculate_user,
        )
        return ids

    def _subset(self, items, filter_items) -> np.ndarray | None:
        if items is None:
            return None
        if filter_items is not None and np.size(filter_items):
            raise ValueError("Can't set both items and filter_items in recommend call")
        subset = np.unique(np.asarray(items, dtype=np.int64).ravel())
        if subset.size and (subset.min() < 0 or subset.max() >= self.n_items_):
            raise IndexError("Some itemids in the items parameter are not in the model")
        return subset

    def _blocked(self, filter_ids, n: int | None = None) -> np.ndarray | None:
        if filter_ids is None or not np.size(filter_ids):
            return None
        ids = np.asarray(filter_ids, dtype=np.int64).ravel()
        n = self.n_items_ if n is None else n
        return ids[(ids >= 0) & (ids < n)]

    @staticmethod
    def _check_ids(ids: np.ndarray, n: int, what: str) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            bad = ids[(ids < 0) | (ids >= n)]
            raise IndexError(
                f"{what} id(s) {bad[:5].tolist()} out of range: the model has {n} {what}s "
                f"(ids 0..{n - 1}); for a new user pass her interactions with "
                f"recalculate_user=True"
                if what == "user"
                else f"{what} id(s) {bad[:5].tolist()} out of range: the model has {n} {what}s"
            )

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
        """Most similar items by cosine of :attr:`item_factors`; the item itself comes first."""
        self._check_fitted()
        if recalculate_item:
            raise NotImplementedError(
                f"recalculate_item is not supported by {type(self).__name__}: refit to add items"
            )
        scalar = np.ndim(itemid) == 0
        q = np.atleast_1d(np.asarray(itemid, dtype=np.int64)).ravel()
        self._check_ids(q, self.n_items_, "item")
        V = self._cached("item_vectors", self._item_vectors)
        norms = self._cached("item_norms", lambda: _norms(V))
        S = (V[q] @ V.T) / (norms[q][:, None] * norms[None, :])
        return self._rank_similar(S, q, N, filter_items, items, self.n_items_, scalar, "item")

    def similar_users(
        self, userid, N: int = 10, filter_users=None, users=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most similar users by cosine of their vectors; the user itself comes first."""
        self._check_fitted()
        scalar = np.ndim(userid) == 0
        q = np.atleast_1d(np.asarray(userid, dtype=np.int64)).ravel()
        self._check_ids(q, self.n_users_, "user")
        Vq = self._user_vectors(self.user_items_[q])
        nq = _norms(Vq)
        n = self.n_users_
        S = np.empty((q.size, n), dtype=np.float32)
        norms = np.empty(n, dtype=np.float32)
        per = max(1, _SCORE_CHUNK_BYTES // (4 * max(1, Vq.shape[1])))
        for lo in range(0, n, per):
            V = self._user_vectors(self.user_items_[lo : lo + per])
            norms[lo : lo + per] = _norms(V)
            S[:, lo : lo + per] = Vq @ V.T
        S /= nq[:, None] * norms[None, :]
        return self._rank_similar(S, q, N, filter_users, users, n, scalar, "user")

    def _rank_similar(self, S, q, N, filter_ids, subset, n, scalar, what):
        np.clip(S, -1.0, 1.0, out=S)
        # ties at cosine 1 (duplicate vectors) must not push the query out of first place
        S[np.arange(q.size), q] = np.inf
        blocked = self._blocked(filter_ids, n)
        if blocked is not None:
            S[:, blocked] = -np.inf
        if subset is not None:
            if filter_ids is not None and np.size(filter_ids):
                raise ValueError(f"Can't set both {what}s and filter_{what}s")
            sub = np.unique(np.asarray(subset, dtype=np.int64).ravel())
            self._check_ids(sub, n, what)
            pos, sc = top_n(S[:, sub], min(int(N), sub.size), np.int64, np.float32)
            pos = np.where(pos >= 0, sub[np.maximum(pos, 0)], -1)
        else:
            pos, sc = top_n(S, int(N), np.int64, np.float32)
        sc[np.isposinf(sc)] = 1.0
        pos = pos.astype(np.int32)
        if scalar:
            return pos[0], sc[0]
        return pos, sc

    # ------------------------------------------------------------------ persistence

    def save(self, file) -> None:
        """Save to ``.npz`` (arrays plus one JSON string): no pickle, no code.

        A path gets ``.npz`` appended when missing (as implicit does) and is written
        atomically: a temporary file beside it, then ``os.replace``. A binary file object is
        written in place.
        """
        meta: dict[str, Any] = {
            "format": self._format,
            "version": self._format_version,
            "params": self._json_params(),
            "fitted": "user_items_" in self.__dict__,
        }
        arrays: dict[str, np.ndarray] = {}
        if meta["fitted"]:
            X = self.user_items_
            arrays.update(X_data=X.data, X_indices=X.indices, X_indptr=X.indptr)
            meta["shape"] = [int(x) for x in X.shape]
            extra_arrays, extra_meta = self._state()
            arrays.update(extra_arrays)
            meta.update(extra_meta)
        arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
        if not isinstance(file, (str, os.PathLike)):
            np.savez(file, **arrays)
            return
        path = os.fspath(file)
        if not path.endswith(".npz"):
            path += ".npz"
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, fileobj_or_path):
        """Load a model written by :meth:`save` (``np.load(..., allow_pickle=False)``)."""
        if isinstance(fileobj_or_path, (str, os.PathLike)):
            fileobj_or_path = os.fspath(fileobj_or_path)
            if not fileobj_or_path.endswith(".npz"):
                fileobj_or_path += ".npz"
        with np.load(fileobj_or_path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise ValueError(f"not a {cls.__name__} file: no 'meta' entry")
            meta = json.loads(str(data["meta"][()]))
            if meta.get("format") != cls._format:
                raise ValueError(
                    f"not a {cls.__name__} file (format {meta.get('format')!r}, "
                    f"expected {cls._format!r})"
                )
            if meta.get("version", 0) > cls._format_version:
                raise ValueError(
                    f"file format version {meta['version']} is newer than this rfm_recsys "
                    f"understands ({cls._format_version}): upgrade rfm_recsys"
                )
            model = cls(**meta["params"])
            if meta["fitted"]:
                arrays = {k: data[k] for k in data.files if k != "meta"}
                X = sp.csr_matrix(
                    (arrays.pop("X_data"), arrays.pop("X_indices"), arrays.pop("X_indptr")),
                    shape=tuple(meta["shape"]),
                )
                model._set_interactions(X)
                model._restore(arrays, meta)
        return model

    def _json_params(self) -> dict[str, Any]:
        out = {}
        for k, v in self.get_params().items():
            if isinstance(v, np.generic):
                v = v.item()
            if k == "random_state" and not (v is None or isinstance(v, int)):
                warnings.warn(
                    f"random_state={v!r} cannot be saved as JSON; the loaded model has "
                    f"random_state=None",
                    UserWarning,
                    stacklevel=3,
                )
                v = None
            out[k] = v
        return out


def _norms(V: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64)).astype(np.float32)
    n[n == 0] = 1e-10
    return n
