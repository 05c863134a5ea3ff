"""The implicit-feedback recommenders' part of the ranking contract and their file format.

:class:`ItemScoringRecommender` builds on :class:`~rfm_recsys.model.base.ScoringRecommenderBase`
(which implements ``recommend``, ``similar_items`` and ``similar_users`` once for every model)
for models that score items from a user's row of interactions. A subclass provides

* ``_transform(user_items)``: the interaction values it scores (binarised, confidence
  weights...) as a float32 CSR matrix;
* ``_scores(rows)``: scores of every item for a batch of such rows (``b x d`` float32);
* ``_item_vectors()`` and ``_user_vectors(rows)``: vectors whose cosine is the similarity of
  ``similar_items`` and ``similar_users``;
* ``_state()`` / ``_restore(arrays, meta)``: its fitted arrays for
  :meth:`ItemScoringRecommender.save` / :meth:`ItemScoringRecommender.load`.

The base here keeps the transformed training rows (user ``u`` is row ``u``; ids are row and
column indices), folds in new users for ``recalculate_user`` with the same transform, and saves
atomically to ``.npz`` + JSON without pickle.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..fileformat import load_checked, npz_path, write_model_file
from ..ids import Vocabulary
from ..model.base import NotFittedError, ScoringRecommenderBase
from ..model.persistence import json_params, renamed_params
from ..topn import score_chunk_rows

__all__ = ["ItemScoringRecommender", "NotFittedError", "check_user_items"]


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


class ItemScoringRecommender(ScoringRecommenderBase):
    """Recommenders that score items from a user's interaction row (see the module docstring)."""

    _format: ClassVar[str] = ""
    # 2: the hyperparameters' present names (1: n_iter, lam, n_power_iter; see RENAMED)
    _format_version: ClassVar[int] = 2

    # ------------------------------------------------------------------ hooks of subclasses

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
        self._clear_caches()
        self.user_items_ = X
        self.user_vocab_ = Vocabulary.range(X.shape[0])
        self.item_vocab_ = Vocabulary.range(X.shape[1])

    @property
    def item_factors(self) -> np.ndarray:
        """Item vectors of :meth:`similar_items` (the name implicit's models use)."""
        self._check_fitted()
        return self._item_vectors()

    # ------------------------------------------------------------------ hooks of the base

    def _score_users(self, codes: np.ndarray) -> np.ndarray:
        return self._scores(self.user_items_[codes])

    def _seen_items(self) -> sp.csr_matrix:
        return self.user_items_

    def _score_new_users(self, rows: sp.csr_matrix, start: int, stop: int) -> np.ndarray:
        return self._scores(self._transform(check_user_items(rows[start:stop])))

    def _similarity(self, side: str, codes: np.ndarray) -> np.ndarray:
        """Cosine of item vectors, or of user vectors computed in chunks of users."""
        if side == "item":
            V = self._cached("item_vectors", self._item_vectors)
            norms = self._cached("item_norms", lambda: _norms(V))
            S = (V[codes] @ V.T) / (norms[codes][:, None] * norms[None, :])
        else:
            Vq = self._user_vectors(self.user_items_[codes])
            n = self.n_users_
            S = np.empty((codes.size, n), dtype=np.float32)
            norms = np.empty(n, dtype=np.float32)
            per = score_chunk_rows(Vq.shape[1])
            for lo in range(0, n, per):
                V = self._user_vectors(self.user_items_[lo : lo + per])
                norms[lo : lo + per] = _norms(V)
                S[:, lo : lo + per] = Vq @ V.T
            S /= _norms(Vq)[:, None] * norms[None, :]
        return np.clip(S, -1.0, 1.0, out=S)

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

    # ------------------------------------------------------------------ persistence

    def save(self, file) -> None:
        """Save in the package's checked model format (:mod:`rfm_recsys.fileformat`).

        No pickle, no code: arrays plus JSON metadata with a sha256 per array. A path gets
        ``.npz`` appended when missing (as implicit does) and is written atomically: a failed
        or interrupted save leaves the previous file at that path intact.
        """
        meta: dict[str, Any] = {
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
        write_model_file(
            npz_path(file), arrays, meta, format=self._format, version=self._format_version
        )

    @classmethod
    def load(cls, fileobj_or_path):
        """Load a model written by :meth:`save`.

        Raises:
            ModelFileError: the file is damaged, truncated, of another model or too new.
        """
        return load_checked(
            npz_path(fileobj_or_path),
            cls._build,
            format=cls._format,
            max_version=cls._format_version,
            what=cls.__name__,
        )

    @classmethod
    def _upgrade_params(cls, params: dict[str, Any], version: int) -> dict[str, Any]:
        """A file's hyperparameters under their present names."""
        return renamed_params(params) if version < 2 else dict(params)

    @classmethod
    def _build(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], version: int):
        model = cls(**cls._upgrade_params(meta["params"], version))
        if meta["fitted"]:
            X = sp.csr_matrix(
                (arrays.pop("X_data"), arrays.pop("X_indices"), arrays.pop("X_indptr")),
                shape=tuple(meta["shape"]),
            )
            model._set_interactions(X)
            model._restore(arrays, meta)
        return model

    def _json_params(self) -> dict[str, Any]:
        return json_params(self.get_params())


def _norms(V: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64)).astype(np.float32)
    n[n == 0] = 1e-10
    return n
