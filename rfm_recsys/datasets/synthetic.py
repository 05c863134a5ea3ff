"""MovieLens-shaped synthetic ratings of any size: low-rank signal, biases, noise, long tails.

The generator never builds a users x items array: pairs are drawn as int64 keys
``user * n_items + item`` from the product of a user-activity and an item-popularity
distribution, deduplicated with :func:`numpy.unique`, and topped up until exactly ``n_ratings``
distinct pairs exist; ratings are then computed per pair, in chunks. An ML-10M-shaped set
(69,878 users x 10,677 items, 10,000,054 ratings) takes seconds (see the project README).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

# MovieLens' timestamps span 1995-01-09 .. 2023-10-12; synthetic ones fall in the same range.
_T0, _T1 = 789_652_009, 1_697_068_800
_CHUNK = 1 << 20
# Below this share of the grid, rejection sampling of pairs converges in a few rounds; above it,
# the complement of the grid is small enough (<= 4 x n_ratings keys) to sample from directly.
_DENSE = 0.25


def _weights(
    rng: np.random.Generator, n: int, popularity: str, kind: str, exponent: float, sigma: float
) -> np.ndarray:
    if popularity == "uniform":
        return np.full(n, 1.0 / n)
    if kind == "item":
        # Zipf-Mandelbrot: (rank + b)^-a. With a = 1.7 and b = 2% of the catalogue the counts
        # of an ML-10M-sized draw match ML-10M's (max ~35k = 37x the mean, median ~135); a
        # pure Zipf head would ask for more ratings of the top item than there are users.
        offset = max(1.0, 0.02 * n)
        w = (np.arange(1, n + 1, dtype=np.float64) + offset) ** (-exponent)
        w = w[rng.permutation(n)]  # popularity must not follow the id order
    else:
        w = rng.lognormal(0.0, sigma, size=n)
    return w / w.sum()


def _unique(a: np.ndarray) -> np.ndarray:
    # Sort + mask: numpy 2.x's np.unique is >10x slower than this on 10M int64 keys.
    a = np.sort(a)
    if len(a) == 0:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _isin_sorted(needles: np.ndarray, hay: np.ndarray) -> np.ndarray:
    """Membership of sorted ``needles`` in sorted ``hay`` (a sequential, cache-friendly merge)."""
    if len(hay) == 0:
        return np.zeros(len(needles), dtype=bool)
    pos = np.minimum(np.searchsorted(hay, needles), len(hay) - 1)
    return hay[pos] == needles


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each value (earlier positions win)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    first_sorted = np.empty(len(keys), dtype=bool)
    if len(keys):
        first_sorted[0] = True
        np.not_equal(sk[1:], sk[:-1], out=first_sorted[1:])
    first = np.empty(len(keys), dtype=bool)
    first[order] = first_sorted
    return first


def _draw(rng: np.random.Generator, cdf: np.ndarray, k: int) -> np.ndarray:
    idx = np.searchsorted(cdf, rng.random(k) * cdf[-1], side="right")
    return np.minimum(idx, len(cdf) - 1).astype(np.int64)


def _coverage(
    rng: np.random.Generator, nu: int, ni: int, m: int, item_cdf: np.ndarray
) -> np.ndarray:
    """Sorted keys giving every user and item a rating, and every user about ``m``."""
    # A random "matching" of max(nu, ni) pairs touches every user and every item once, and its
    # pairs are distinct because the longer side's indices are.
    k = max(nu, ni)
    pu = rng.permutation(nu)[np.arange(k) % nu]
    pi = rng.permutation(ni)[np.arange(k) % ni]
    base = _unique(pu.astype(np.int64) * ni + pi)
    extra_per_user = min(m, ni) - 1
    if extra_per_user <= 0:
        return base
    users = np.repeat(np.arange(nu, dtype=np.int64), extra_per_user)
    items = _draw(rng, item_cdf, len(users))
    # MovieLens users have >= 20 ratings; resample the items that collide with a pair already
    # drawn. Heavy collisions (tiny catalogues) stop after a few rounds: "about m" then.
    for _ in range(20):
        dup = ~_first_occurrence(np.concatenate([base, users * ni + items]))[len(base) :]
        if not dup.any():
            break
        items[dup] = _draw(rng, item_cdf, int(dup.sum()))
    return _unique(np.concatenate([base, users * ni + items]))


def _fill(
    rng: np.random.Generator,
    taken: np.ndarray,
    need: int,
    nu: int,
    ni: int,
    user_w: np.ndarray,
    item_w: np.ndarray,
) -> np.ndarray:
    """``need`` more distinct keys, not in the sorted ``taken``, drawn ~ user_w x item_w."""
    grid = nu * ni
    if need <= 0:
        return np.empty(0, dtype=np.int64)
    if (len(taken) + need) > _DENSE * grid:
        # Dense: weighted sampling without replacement over the free cells (Efraimidis-Spirakis:
        # the k largest u^(1/w)), exact and O(grid) <= O(4 * n_ratings) memory.
        free = np.setdiff1d(np.arange(grid, dtype=np.int64), taken, assume_unique=True)
        w = user_w[free // ni] * item_w[free % ni]
        score = np.log(rng.random(len(free))) / np.maximum(w, 1e-300)
        pick = np.argpartition(-score, need - 1)[:need]
        return np.sort(free[pick])
    ucdf, icdf = np.cumsum(user_w), np.cumsum(item_w)
    found: list[np.ndarray] = []
    have = 0
    seen = taken
    accept = 1.0
    for _ in range(200):
        # Oversample by the last round's acceptance rate so that one or two rounds suffice.
        k = int((need - have) * 1.1 / max(accept, 0.05)) + 1024
        cand = _unique(_draw(rng, ucdf, k) * ni + _draw(rng, icdf, k))
        cand = cand[~_isin_sorted(cand, seen)]
        accept = len(cand) / k
        if have + len(cand) > need:
            # cand is sorted: keep a random subset, not the lowest keys (= lowest user ids).
            cand = np.sort(cand[rng.choice(len(cand), need - have, replace=False)])
        found.append(cand)
        have += len(cand)
        if have >= need:
            break
        seen = np.sort(np.concatenate([seen, cand]))  # disjoint: no dedupe needed
    else:  # pragma: no cover - the density guard above makes this unreachable in practice
        raise RuntimeError(
            "pair sampling did not converge; lower n_ratings or use popularity='uniform'"
        )
    return np.concatenate(found)


def make_ratings(
    n_users: int,
    n_items: int,
    n_ratings: int,
    rank: int = 10,
    noise: float = 0.5,
    popularity: Literal["zipf", "uniform"] = "zipf",
    rating_scale: tuple[float, float] = (1, 5),
    random_state: int | np.random.Generator | None = None,
    *,
    rating_step: float = 1.0,
    min_user_ratings: int | None = None,
    item_exponent: float = 1.7,
    user_sigma: float = 1.3,
    return_factors: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Any]]:
    """Generate MovieLens-like explicit ratings from a known low-rank model.

    Model: ``r = mu + b_u + b_i + <p_u, q_i> + e``, rounded to ``rating_step`` and clipped to
    ``rating_scale``, with (in units of a quarter of the scale's width, i.e. stars on 1..5)
    ``mu`` at 60% of the scale (3.4 on 1..5; MovieLens' mean is ~3.5), ``b_u ~ N(0, 0.5)``,
    ``b_i ~ N(0, 0.5)`` plus a small bonus for popular items, ``<p_u, q_i>`` with standard
    deviation 0.6, and ``e ~ N(0, noise)`` in rating units.

    Every user and every item gets at least one rating (so the shape is exactly
    ``n_users x n_items``), and every user about ``min_user_ratings``. The rest of the pairs are
    drawn with probability proportional to ``activity(u) * popularity(i)``: with
    ``popularity="zipf"``, user activity is log-normal (``user_sigma``) and item popularity
    Zipf-Mandelbrot (``item_exponent``), giving MovieLens' long tails; ``"uniform"`` draws
    pairs uniformly.

    Args:
        n_users: Number of users (ids ``1..n_users``).
        n_items: Number of items (ids ``1..n_items``).
        n_ratings: Number of distinct (user, item) ratings; at least ``max(n_users, n_items)``
            and at most ``n_users * n_items``.
        rank: Rank of the interaction signal.
        noise: Standard deviation of the Gaussian noise, in rating units.
        popularity: ``"zipf"`` (long-tailed, MovieLens-like) or ``"uniform"``.
        rating_scale: (lowest, highest) rating.
        random_state: Seed or ``numpy.random.Generator``; the same seed gives the same frame.
        rating_step: Rounding step (1.0 whole stars, 0.5 half stars as in ML-10M and later).
        min_user_ratings: Minimum ratings per user; default ``min(20, n_ratings / (2 n_users))``
            (MovieLens keeps users with >= 20 ratings).
        item_exponent: Tail exponent of item popularity.
        user_sigma: Log-normal spread of user activity.
        return_factors: Also return the true model.

    Returns:
        A DataFrame like :func:`load_movielens`'s, sorted by user then item: ``user_id``,
        ``item_id`` (int32), ``rating`` (float32), ``timestamp`` (int64); ``df.attrs`` holds
        ``rating_scale``. With ``return_factors``, also a dict with ``mu``, ``user_bias``,
        ``item_bias``, ``user_factors`` (n_users x rank) and ``item_factors`` (n_items x rank),
        row ``k`` belonging to id ``k + 1``.

    Raises:
        ValueError: Impossible sizes, unknown popularity, bad scale or step.
    """
    nu, ni, n = int(n_users), int(n_items), int(n_ratings)
    lo, hi = float(rating_scale[0]), float(rating_scale[1])
    _check_arguments(nu, ni, n, popularity, rating_scale, rating_step, rank, noise)
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    m = min_user_ratings if min_user_ratings is not None else min(20, max(1, n // (2 * nu)))
    m = max(1, min(int(m), ni, (n - max(nu, ni)) // nu + 1))

    # The draws below happen in a fixed order: the same seed must keep giving the same frame.
    user_w = _weights(rng, nu, popularity, "user", item_exponent, user_sigma)
    item_w = _weights(rng, ni, popularity, "item", item_exponent, user_sigma)
    # m was capped above so that the coverage (<= max(nu, ni) + nu * (m - 1) keys) fits in n.
    keys = _coverage(rng, nu, ni, m, np.cumsum(item_w))
    keys = np.sort(np.concatenate([keys, _fill(rng, keys, n - len(keys), nu, ni, user_w, item_w)]))
    users = (keys // ni).astype(np.int32)
    items = (keys % ni).astype(np.int32)
    del keys

    truth = _true_model(rng, nu, ni, rank, lo, hi, item_w)
    ratings = _rate(rng, users, items, truth, noise, lo, hi, rating_step)
    timestamps = _timestamps(rng, users, nu)
    df = pd.DataFrame(
        {
            "user_id": users + np.int32(1),
            "item_id": items + np.int32(1),
            "rating": ratings,
            "timestamp": timestamps,
        }
    )
    df.attrs.update(dataset="synthetic", rating_scale=(lo, hi))
    return (df, truth) if return_factors else df


def _check_arguments(nu, ni, n, popularity, rating_scale, rating_step, rank, noise) -> None:
    if nu < 1 or ni < 1:
        raise ValueError("n_users and n_items must be >= 1")
    if not max(nu, ni) <= n <= nu * ni:
        raise ValueError(
            f"n_ratings must be between max(n_users, n_items) = {max(nu, ni):,} (every user and "
            f"item rated once) and n_users * n_items = {nu * ni:,}, got {n:,}"
        )
    if nu > np.iinfo(np.int32).max or ni > np.iinfo(np.int32).max:
        raise ValueError("n_users and n_items must fit in int32")
    if popularity not in ("zipf", "uniform"):
        raise ValueError(f"popularity must be 'zipf' or 'uniform', got {popularity!r}")
    if not float(rating_scale[0]) < float(rating_scale[1]):
        raise ValueError(f"rating_scale must be (low, high) with low < high, got {rating_scale!r}")
    if not rating_step > 0:
        raise ValueError("rating_step must be > 0")
    if rank < 1:
        raise ValueError("rank must be >= 1")
    if noise < 0:
        raise ValueError("noise must be >= 0")


def _true_model(rng, nu: int, ni: int, rank: int, lo: float, hi: float, item_w) -> dict[str, Any]:
    """Global mean, biases and factors, in "stars" (a quarter of the scale's width)."""
    s = (hi - lo) / 4.0
    mu = lo + 0.6 * (hi - lo)
    user_bias = rng.normal(0.0, 0.5 * s, nu)
    logpop = np.log(item_w)
    z = (logpop - logpop.mean()) / (logpop.std() + 1e-12)
    # Popular items are rated a little higher in MovieLens.
    item_bias = rng.normal(0.0, 0.5 * s, ni) + 0.15 * s * z
    scale_f = (0.36 * s * s / rank) ** 0.25  # var(<p, q>) = rank * scale_f**4 = (0.6 s)^2
    user_factors = rng.normal(0.0, scale_f, (nu, rank)).astype(np.float32)
    item_factors = rng.normal(0.0, scale_f, (ni, rank)).astype(np.float32)
    return {
        "mu": mu,
        "user_bias": user_bias,
        "item_bias": item_bias,
        "user_factors": user_factors,
        "item_factors": item_factors,
    }


def _rate(rng, users, items, truth: dict[str, Any], noise, lo, hi, rating_step) -> np.ndarray:
    """The model's ratings of the sampled pairs plus noise, rounded to the step and clipped."""
    n = len(users)
    P, Q = truth["user_factors"], truth["item_factors"]
    ratings = np.empty(n, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        u = users[start : start + _CHUNK]
        i = items[start : start + _CHUNK]
        x = np.einsum("ij,ij->i", P[u], Q[i], dtype=np.float64)
        x += truth["mu"] + truth["user_bias"][u] + truth["item_bias"][i]
        x += rng.normal(0.0, noise, len(u))
        x = lo + np.round((x - lo) / rating_step) * rating_step
        ratings[start : start + len(u)] = np.clip(x, lo, hi)
    return ratings


def _timestamps(rng, users: np.ndarray, nu: int) -> np.ndarray:
    # Each user rates within a window of their own, like real accounts.
    start_t = rng.uniform(_T0, _T1, nu)
    span = np.minimum(rng.exponential(365 * 86400.0, nu), _T1 - start_t)
    return (start_t[users] + rng.random(len(users)) * span[users]).astype(np.int64)


def ml10m_shape() -> dict[str, int]:
    """``make_ratings`` size arguments of an ML-10M-shaped problem."""
    return {"n_users": 69_878, "n_items": 10_677, "n_ratings": 10_000_054}


__all__ = ["make_ratings", "ml10m_shape"]
