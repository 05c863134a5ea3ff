"""The choices a rating fit makes before any work: orientation, the kernel's form, the split.

These rules live here, above the numerical core and the backends, so that every model class and
both backends make them the same way.
"""

from __future__ import annotations

import numpy as np

from ..core.rank_rule import RankRule

# rank="auto": the dense kernel while d <= AUTO_DENSE_MAX_D (there the factored form saves
# nothing), else a factored kernel whose rank the first update chooses by the shrinkage rule
# (rfm_recsys.core.rank_rule): on learning curves over growing subsamples of ml-latest-small and
# ml-100k (validation shares) the rank within 0.001 of the dense kernel grew with the data
# (128 at 17-33k ratings, 256 at 53-73k on ml-latest-small), which a constant cannot follow; the
# rule followed it within 0.0016 RMSE of the dense kernel on all six points, where rank 128 lost
# up to 0.0045 (``python -m evaluation.choose_rank``). A shift of 0.1 changed the scores by
# -0.0002 and +0.0004 at rank 128 for 20-45% more time, so updates use none by default.
AUTO_RULE = RankRule()
AUTO_DENSE_MAX_D = 256
# rank="auto" with the kernel step on: the dense kernel (lin-RFM and the step) up to
# KERNEL_DENSE_MAX_D feature columns, the factored one (rank by the rule) beyond. Measured with
# the default step on folds 0 and 1 (evaluation/kernel_rfm_experiments.md, section 9; a shared
# 2-core machine): on ml-100k (1,682 items) the dense step took 3.5 s against the factored
# 7.9 s and scored 0.001-0.002 better validation RMSE; on ml-latest-small (9,724 items) the
# factored step took 12.7 s against the dense 58 s (2.2 GB) for 0.004 worse. The dense step's
# time and memory grow with d squared to cubed, so the switch lies between the two: 4096
# columns (a 64 MB float32 kernel).
KERNEL_DENSE_MAX_D = 4096


def resolve_orientation(orient: str, n_users: int, n_items: int) -> bool:
    """Return ``users_are_rows``. ``"auto"`` puts the smaller side in the ``d x d`` kernel."""
    if orient == "auto":
        return n_items <= n_users
    if orient == "items":  # items are the features (kernel over items), users are rows
        return True
    if orient == "users":
        return False
    raise ValueError(
        f"orient must be 'auto', 'users' or 'items' (the feature side), got {orient!r}"
    )


def resolve_rank(
    rank: int | str | None, d: int, dense_only: bool, with_step: bool
) -> int | RankRule | None:
    """The kernel's form for ``d`` feature columns: ``None`` (dense), a rank, or the rule.

    ``None`` keeps the dense kernel and an int asks for a factored kernel of that rank.
    ``"auto"`` is dense up to ``AUTO_DENSE_MAX_D`` (256) columns, with the kernel step up to
    ``KERNEL_DENSE_MAX_D`` (4096), and beyond a factored kernel whose rank the data decides
    (``AUTO_RULE``); always dense for an update that needs the dense kernel (IRLS-p:
    ``dense_only``).
    """
    if rank is None:
        return None
    if isinstance(rank, str):
        if rank != "auto":
            raise ValueError(f"rank must be None, a positive int or 'auto', got {rank!r}")
        if dense_only:
            return None
        return None if d <= (KERNEL_DENSE_MAX_D if with_step else AUTO_DENSE_MAX_D) else AUTO_RULE
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be None, a positive int or 'auto', got {rank!r}")
    return int(rank)


def validation_mask(n_ratings: int, share: float, random_state=None) -> np.ndarray:
    """Which of ``n_ratings`` ratings (in their given order) are held out for validation.

    Exactly ``round(share * n)`` of them, at least one and never all, drawn with
    ``random_state``: a small share of a small set still holds out a rating (a per-rating coin
    flip could hold out none). Both backends use this split for ratings given in memory.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"validation_share must be in (0, 1), got {share}")
    if n_ratings < 2:
        raise ValueError(
            f"validation_share needs at least 2 ratings to hold one out, got {n_ratings}: "
            f"use validation_share=0"
        )
    k = min(max(1, round(share * n_ratings)), n_ratings - 1)
    held = np.zeros(n_ratings, dtype=bool)
    held[np.random.default_rng(random_state).choice(n_ratings, k, replace=False)] = True
    return held


def integer_seed(random_state) -> int:
    """A reproducible integer seed for the range finder from any ``random_state``."""
    if random_state is None:
        return 0
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    return int(np.random.default_rng(random_state).integers(2**31))
