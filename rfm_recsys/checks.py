"""Checks on rating triples: every problem gets an error that names it and the fix."""

from __future__ import annotations

import numpy as np

# Beyond this, squared residuals summed over millions of rows approach float32's 3.4e38.
_MAX_RATING = 1e12


class RatingsError(ValueError):
    """The ratings given to ``fit`` cannot be used as they are; the message says why and how."""


class DuplicateRatingsError(RatingsError):
    """A (user, item) pair is rated more than once and nothing says how to resolve it."""


def check_triples(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    rating_scale: tuple[float, float] | None = None,
    duplicates: str = "raise",
    scale_name: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate integer-coded triples and resolve duplicate (user, item) pairs.

    Args:
        users, items: non-negative integer codes, one per rating.
        ratings: the rating values.
        rating_scale: ``(low, high)``; ratings outside it are an error.
        duplicates: ``"raise"`` (default), ``"mean"`` (average repeated pairs) or ``"last"``
            (keep the last occurrence).
        scale_name: where ``rating_scale`` comes from, for the message, when it is not the
            user's ``rating_scale`` (e.g. the range of the ratings a model was fitted on).

    Returns:
        ``(users, items, ratings)`` with duplicates resolved, as int64/int64/float64.
    """
    users = np.asarray(users)
    items = np.asarray(items)
    try:
        ratings = np.asarray(ratings, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RatingsError(
            f"ratings must be numbers ({exc}); convert the rating column with pandas.to_numeric"
        ) from None
    if not (users.shape == items.shape == ratings.shape) or ratings.ndim != 1:
        raise RatingsError(
            f"users, items and ratings must be 1-d arrays of one length, got shapes "
            f"{users.shape}, {items.shape}, {ratings.shape}"
        )
    if ratings.size == 0:
        raise RatingsError(
            "no ratings to fit: the data is empty; pass at least one rating per user and item"
        )
    bad = ~np.isfinite(ratings)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise RatingsError(
            f"{int(bad.sum()):,} ratings are NaN or infinite (first at position {k}: "
            f"{ratings[k]!r}); drop or impute them before fitting "
            f"(e.g. df.dropna(subset=[rating_col]))"
        )
    big = np.abs(ratings) > _MAX_RATING
    if big.any():
        k = int(np.flatnonzero(big)[0])
        raise RatingsError(
            f"{int(big.sum()):,} ratings exceed {_MAX_RATING:g} in magnitude (first at position "
            f"{k}: {ratings[k]:g}); their squares would overflow the kernel's float32 "
            "arithmetic: rescale the ratings (e.g. to a 1-5 or 0-1 scale)"
        )
    if rating_scale is not None:
        lo, hi = rating_scale
        if not lo < hi:
            raise RatingsError(
                f"rating_scale must be (low, high) with low < high, got {rating_scale!r}"
            )
        out = (ratings < lo) | (ratings > hi)
        if out.any():
            k = int(np.flatnonzero(out)[0])
            where = f"rating_scale={rating_scale}" if scale_name is None else scale_name
            fix = (
                "fix the data or declare the scale it really uses"
                if scale_name is None
                else "rescale these ratings to it, or fit the model with rating_scale=(low, "
                "high) to declare the scale the ratings really use"
            )
            raise RatingsError(
                f"{int(out.sum()):,} ratings lie outside {where} (first at position {k}: "
                f"{ratings[k]}); {fix}"
            )
    if duplicates not in ("raise", "mean", "last"):
        raise ValueError(f"duplicates must be 'raise', 'mean' or 'last', got {duplicates!r}")
    key = users.astype(np.int64) * (int(items.max()) + 1) + items.astype(np.int64)
    uniq, first, inverse, counts = np.unique(
        key, return_index=True, return_inverse=True, return_counts=True
    )
    if uniq.size == key.size:
        return users.astype(np.int64), items.astype(np.int64), ratings
    if duplicates == "raise":
        k = int(np.flatnonzero(counts > 1)[0])
        pos = np.flatnonzero(inverse == k)
        raise DuplicateRatingsError(
            f"{int((counts > 1).sum()):,} (user, item) pairs are rated more than once (e.g. "
            f"positions {pos[:3].tolist()}); pass duplicates='mean' to average them or "
            f"duplicates='last' to keep the latest, or deduplicate the data first"
        )
    if duplicates == "mean":
        vals = np.bincount(inverse, weights=ratings) / counts
        idx = first
    else:
        # the last occurrence of each key: reverse, take first, map back
        last = key.size - 1 - np.unique(key[::-1], return_index=True)[1]
        idx = last
        vals = ratings[last]
    return users[idx].astype(np.int64), items[idx].astype(np.int64), vals.astype(np.float64)


def check_shape(n_users: int, n_items: int) -> None:
    """A kernel needs at least two feature columns and two rows to learn anything."""
    if n_users < 2 or n_items < 2:
        raise RatingsError(
            f"the ratings cover {n_users} user(s) and {n_items} item(s); lin-RFM needs at least "
            f"2 users and 2 items (a single row or column has no structure to learn): add data"
        )
