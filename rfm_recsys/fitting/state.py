"""A fitted rating model in user/item terms: the biases, the kernel and the row coefficients.

Every rating model built on the engine (``LinRFMAlgo``, ``KernelRFMAlgo``, ``IRLSAlgo``,
``LinRFM``, ``KernelRFM``) holds one :class:`RatingsFit` (or, with both orientations, a
:class:`CombinedFit`). The prediction rule, with ``r`` the row side and ``c`` the feature side
of the fit's orientation::

    r_hat(u, i) = mu + b_u + b_i + sum_{s in S_r} K[c, s] A[r, s]

where ``S_r`` are the observed feature columns of row ``r`` and ``A`` the row coefficients.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..core.biases import bias_estimates, bias_scores
from ..core.kernel import Completion, Kernel
from ..core.solve import spd_solve

_COMPLETION_LOCK = threading.Lock()


@dataclass
class RatingsFit:
    """A fitted model in user/item terms. Indices are inner codes; -1 means unknown."""

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    users_are_rows: bool
    kernel: Kernel
    A: sp.csr_matrix
    ridge: float
    bias_ridge: float
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

        The user's bias is the ridge estimate with ``bias_ridge``. Users as rows: the new row is
        fitted like any other, ``a = (K[S,S] + ridge I)^-1 y`` and scores ``K[:, S] a``. Users as
        features: a new column has no kernel row, so the user's residuals are regressed on the
        fitted item rows instead (kernel ridge in the dual with the item kernel ``W W^T``,
        ``W = A K``, rescaled to mean diagonal 1 on the rated items): scores ``W W_S^T alpha``.

        Returns:
            ``(scores over all items, user bias)``.
        """
        items = np.asarray(items, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        dev = ratings - self.mu - self.b_item[items]
        b_u = float(dev.sum() / (self.bias_ridge + dev.size)) if dev.size else 0.0
        y = dev - b_u
        base = self.mu + b_u + self.b_item
        if y.size == 0:
            return base, b_u
        if self.users_are_rows:
            a = self.kernel.solve_row(items, y, self.ridge)
            kernel = self.kernel.apply(items, a)
        else:
            W_S = self.completion.rows(items)  # |S| x n_users
            G = W_S @ W_S.T
            scale = float(np.mean(np.diag(G))) or 1.0
            G.flat[:: items.size + 1] += self.ridge * scale
            alpha = spd_solve(G, y)
            kernel = np.asarray(self.A @ self.kernel.matvec(W_S.T @ alpha))
        return base + kernel.astype(np.float64), b_u


@dataclass
class CombinedFit:
    """Two fits of the same ratings, users as rows in one and items as rows in the other.

    Both share the baseline (it does not depend on the orientation); the kernel parts are
    averaged with ``weight`` on the first: ``mu + b_u + b_i + w k_1(u, i) + (1 - w) k_2(u, i)``.
    Each side's kernel sees a different similarity (between items in one, between users in the
    other), so their errors are far from identical and the average gains.
    """

    first: RatingsFit
    second: RatingsFit
    weight: float = 0.5

    @property
    def mu(self) -> float:
        return self.first.mu

    @property
    def b_user(self) -> np.ndarray:
        return self.first.b_user

    @property
    def b_item(self) -> np.ndarray:
        return self.first.b_item

    @property
    def n_users(self) -> int:
        return self.first.n_users

    @property
    def n_items(self) -> int:
        return self.first.n_items

    @property
    def history(self) -> list[dict]:
        return self.first.history

    def _mix(self, a: np.ndarray, b: np.ndarray, base) -> np.ndarray:
        return base + self.weight * (a - base) + (1.0 - self.weight) * (b - base)

    def predict(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`RatingsFit.predict`, the kernel parts of both sides averaged."""
        e1, impossible = self.first.predict(users, items)
        e2, _ = self.second.predict(users, items)
        # the baseline parts are identical, so mixing the estimates mixes the kernel parts
        return self.weight * e1 + (1.0 - self.weight) * e2, impossible

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings of every item for known users (``len(users) x n_items``)."""
        out = self.first.score_users(users)
        out *= self.weight
        out += (1.0 - self.weight) * self.second.score_users(users)
        return out

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """Both sides' fold-ins averaged (the user bias is the same in both)."""
        s1, b_u = self.first.fold_in(items, ratings)
        s2, _ = self.second.fold_in(items, ratings)
        return self.weight * s1 + (1.0 - self.weight) * s2, b_u
