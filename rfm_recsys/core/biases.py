"""Regularised biases: the global mean plus user and item biases every rating model starts from.

Ratings are noisy and far from zero-mean, so the kernel part of lin-RFM is fitted to the residuals
of this baseline (as Surprise's SVD does with its biases). The biases are fitted by alternating
least squares, as Surprise's ``BaselineOnly(bsl_options={"method": "als"})`` does::

    b_row[r] = sum_{c in S_r} (y - mu - b_col[c]) / (reg_row + |S_r|)
    b_col[c] = sum_{r in S^c} (y - mu - b_row[r]) / (reg_col + |S^c|)

:func:`alternate_biases` runs the sweeps on sums supplied by the caller, so the same loop fits
ratings held in this process (:func:`fit_baseline`) or spread over a cluster (the Dask
backend's partial sums).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Baseline:
    """Global mean and biases; ``predict`` treats an index of -1 (unknown) as a zero bias."""

    mu: float
    b_row: np.ndarray
    b_col: np.ndarray

    def predict(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return bias_estimates(self.mu, self.b_row, self.b_col, rows, cols)[0]


def bias_estimates(
    mu: float, b_user: np.ndarray, b_item: np.ndarray, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline part of every model's prediction, with -1 marking an unknown id.

    A known user adds ``b_u``, a known item ``b_i``, so a pair with one unknown side gets the
    known side's baseline and a pair with both unknown the global mean (as Surprise's SVD).

    Returns:
        ``(estimates, both_known, impossible)``: float64 estimates, the mask of pairs whose
        interaction term the model adds, and the mask of pairs with both ids unknown.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ku = users >= 0
    ki = items >= 0
    est = np.full(users.shape, mu, dtype=np.float64)
    est[ku] += b_user[users[ku]]
    est[ki] += b_item[items[ki]]
    return est, ku & ki, ~(ku | ki)


def bias_scores(mu: float, b_user: np.ndarray, b_item: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Baseline of every item for known users: ``mu + b_u + b_i`` as ``len(users) x n_items``."""
    out = np.empty((np.size(users), b_item.shape[0]), dtype=np.float64)
    out[:] = b_item[None, :]
    out += mu
    out += np.asarray(b_user, dtype=np.float64)[np.asarray(users, dtype=np.int64)][:, None]
    return out


def alternate_biases(
    half_step: Callable[[np.ndarray, bool], np.ndarray],
    count_row: np.ndarray,
    count_col: np.ndarray,
    reg_row: float,
    reg_col: float,
    n_sweeps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column biases by ``n_sweeps`` alternating ridge updates.

    Args:
        half_step: ``half_step(b_other, rows_side)`` returns, per row (``rows_side``) or per
            column, the sum of ``(y - mu) - b_other[other side]`` over its ratings.
        count_row, count_col: ratings per row and per column (float64).
        reg_row, reg_col: ridge penalties of the row and column biases.
        n_sweeps: alternating sweeps; 10 converges to well below rating precision.
    """
    b_row = np.zeros(count_row.shape[0])
    b_col = np.zeros(count_col.shape[0])
    for _ in range(n_sweeps):
        b_row = half_step(b_col, True) / (reg_row + count_row)
        b_col = half_step(b_row, False) / (reg_col + count_col)
    return b_row, b_col


def fit_baseline(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    n_rows: int,
    n_cols: int,
    reg_row: float,
    reg_col: float,
    n_sweeps: int,
) -> Baseline:
    """Fit mean and biases of ratings held in this process (vectorised with ``bincount``).

    Args:
        rows, cols: integer indices of the observed entries.
        values: the observed ratings.
        n_rows, n_cols: shape of the rating matrix.
        reg_row, reg_col: ridge penalties of the row and column biases.
        n_sweeps: alternating sweeps (:func:`alternate_biases`).

    Returns:
        The fitted :class:`Baseline`.
    """
    values = np.asarray(values, dtype=np.float64)
    mu = float(values.mean())
    dev = values - mu

    def half_step(b_other: np.ndarray, rows_side: bool) -> np.ndarray:
        own, other, size = (rows, cols, n_rows) if rows_side else (cols, rows, n_cols)
        return np.bincount(own, weights=dev - b_other[other], minlength=size)

    b_row, b_col = alternate_biases(
        half_step,
        np.bincount(rows, minlength=n_rows).astype(np.float64),
        np.bincount(cols, minlength=n_cols).astype(np.float64),
        reg_row,
        reg_col,
        n_sweeps,
    )
    return Baseline(mu=mu, b_row=b_row, b_col=b_col)
