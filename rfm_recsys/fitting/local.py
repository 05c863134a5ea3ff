"""Ratings held in this process, as the fit's data source: biases and row blocks from triples."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..core.biases import Baseline, fit_baseline
from ..core.blas import default_threads
from ..core.blocks import LocalBlocks


class LocalRatings:
    """Integer-coded triples (already checked) and the mask of those held out for validation.

    ``mode`` selects what a run fits: ``"all"`` the ratings, ``"train"`` those not held out
    (the held-out ones are then the blocks' validation pairs).
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        n_users: int,
        n_items: int,
        held: np.ndarray | None = None,
    ) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.ratings = np.asarray(ratings, dtype=np.float64)
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.held = held if held is not None else np.zeros(self.ratings.size, dtype=bool)

    def _select(self, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if mode == "all":
            return self.users, self.items, self.ratings
        keep = ~self.held
        return self.users[keep], self.items[keep], self.ratings[keep]

    def biases(self, mode: str, reg_user: float, reg_item: float, n_sweeps: int) -> Baseline:
        u, i, r = self._select(mode)
        return fit_baseline(u, i, r, self.n_users, self.n_items, reg_user, reg_item, n_sweeps)

    def blocks(
        self, mode: str, baseline: Baseline, users_are_rows: bool, dtype, validating: bool
    ) -> LocalBlocks:
        """The rows' baseline residuals in the fit's orientation, with the validation pairs."""
        u, i, r = self._select(mode)
        resid = r - baseline.predict(u, i)
        rows, cols = (u, i) if users_are_rows else (i, u)
        shape = (self.n_users, self.n_items) if users_are_rows else (self.n_items, self.n_users)
        R = sp.csr_matrix((resid.astype(dtype), (rows, cols)), shape=shape)
        if not R.has_sorted_indices:
            R.sort_indices()
        validation = None
        if validating:
            vu, vi, vr = self.users[self.held], self.items[self.held], self.ratings[self.held]
            vrows, vcols = (vu, vi) if users_are_rows else (vi, vu)
            # the engine predicts residuals of rows it has seen; the others stay baseline
            keep = np.diff(R.indptr)[vrows] > 0
            validation = (vrows[keep], vcols[keep], (vr - baseline.predict(vu, vi))[keep])
        return LocalBlocks(R, validation, default_threads())
