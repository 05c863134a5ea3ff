"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

The item-item weights solve ``min ||X - X B||^2 + ridge ||B||^2`` subject to ``diag(B) = 0``
on the binary users x items matrix ``X``; the closed form is

    P = (X^T X + ridge I)^-1        B = I - P diag(1 / diag(P))

(zero diagonal), and a user's scores are ``x_u B``. No maintained library on PyPI offers it as
an ``implicit`` recommender without heavy dependencies, so these few lines are ours (tested
against a per-column constrained least-squares solve). ``ridge`` is Steck's lambda, in the
paper's units (on ``X^T X``, not divided by the number of users).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..config import EASE as EASE_CONFIG
from ..config import with_config
from ..implicit_feedback.base import ItemScoringRecommender, check_user_items

__all__ = ["EASE", "ease_weights"]


def ease_weights(X: sp.spmatrix, lam: float) -> np.ndarray:
    """EASE's ``B`` (``d x d`` float32, zero diagonal) for a binary users x items matrix.

    With at least as many users as items: one Cholesky factorisation and inverse of
    ``X^T X + lam I`` (LAPACK ``potrf``/``potri``, float64). With fewer users than items, the
    Woodbury identity ``P = (I - Z^T Z) / lam`` with ``Z = L^-1 X`` and ``L L^T = X X^T + lam I``
    needs only an ``n x n`` factorisation and ``d x d`` products, built in column blocks.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    n, d = X.shape
    if n < d:
        return _ease_woodbury(X, lam)
    G = (X.T @ X).toarray()
    G[np.diag_indices_from(G)] += lam
    c, info = sla.lapack.dpotrf(G, lower=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"X^T X + lam I is not positive definite (potrf info {info})")
    P, info = sla.lapack.dpotri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverting X^T X + lam I failed (potri info {info})")
    P = np.triu(P) + np.triu(P, 1).T  # potri fills the upper triangle only
    B = P / (-np.diag(P))[None, :]
    np.fill_diagonal(B, 0.0)
    return B.astype(np.float32)


def _ease_woodbury(X: sp.csr_matrix, lam: float) -> np.ndarray:
    n, d = X.shape
    M = (X @ X.T).toarray()
    M[np.diag_indices_from(M)] += lam
    L = np.linalg.cholesky(M)
    Z = sla.solve_triangular(L, X.toarray(), lower=True)  # n x d, smaller than B itself
    diag_p = (1.0 - np.einsum("ij,ij->j", Z, Z)) / lam
    B = np.empty((d, d), dtype=np.float32)
    block = max(1, (64 * 2**20) // (8 * d))
    for lo in range(0, d, block):
        hi = min(lo + block, d)
        P = -(Z.T @ Z[:, lo:hi]) / lam  # off-diagonal part of P[:, lo:hi]
        B[:, lo:hi] = P / (-diag_p[lo:hi])[None, :]
        B[np.arange(lo, hi), np.arange(lo, hi)] = 0.0
    return B


@with_config(EASE_CONFIG)
class EASE(ItemScoringRecommender):
    """EASE as an ``implicit`` recommender (binary interactions; values are ignored).

    ``similar_items`` ranks by cosine of the rows of ``B + I`` and ``similar_users`` by cosine of
    the users' score vectors ``x_u B``.

    Attributes:
        item_weights_: after ``fit``, ``B``, ``n_items x n_items`` float32 with zero diagonal.
        user_items_: after ``fit``, the binarised training interactions.
        fit_seconds_: after ``fit``, the wall time of the last fit.
    """

    _format: ClassVar[str] = "rfm_recsys.EASE"

    def fit(self, user_items, show_progress: bool = False, callback=None) -> EASE:
        """Fit on a users x items sparse matrix; returns ``self``."""
        self._validate_params()
        start = time.perf_counter()
        X = self._transform(check_user_items(user_items))
        if X.nnz == 0:
            raise ValueError("user_items stores no interactions: nothing to fit")
        B = ease_weights(X, float(self.ridge))
        self._set_interactions(X)
        self.item_weights_ = B
        self.fit_seconds_ = time.perf_counter() - start
        if callback is not None:
            callback(0, self.fit_seconds_, None)
        return self

    def _transform(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        X = user_items.copy()
        X.data = np.ones_like(X.data)
        return X

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.item_weights_)

    def _item_vectors(self) -> np.ndarray:
        # with the identity restored, rows i and j share the weights B_ij and B_ji
        return self.item_weights_ + np.eye(self.n_items_, dtype=np.float32)

    def _user_vectors(self, rows: sp.csr_matrix) -> np.ndarray:
        return self._scores(rows)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"item_weights": self.item_weights_}, {"fit_seconds": float(self.fit_seconds_)}

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.item_weights_ = arrays["item_weights"]
        self.fit_seconds_ = float(meta["fit_seconds"])
