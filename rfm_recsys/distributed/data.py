"""Ratings on the cluster, as a fit's data source: biases by reductions, row blocks per part.

The ratings get there in one of two ways: in-memory triples scattered once
(:func:`scatter_ratings`), or a dask DataFrame coded where it lies (:func:`frame_ratings`).
Either way the result is a :class:`DaskRatings`: futures of
:class:`~rfm_recsys.distributed.blocks.RatingPart`, each holding all the ratings of a set of
rows of the fit's orientation. It gives the fitting layer what a source in this process gives:
the biases of a run (:meth:`DaskRatings.biases`, the alternating sweeps of
:func:`~rfm_recsys.core.biases.alternate_biases` on partial sums) and its row blocks
(:meth:`DaskRatings.blocks`, :class:`~rfm_recsys.distributed.dask_blocks.DaskBlocks`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..checks import RatingsError, check_shape
from ..core.biases import Baseline, alternate_biases
from ..ids import Vocabulary, check_id_types
from . import blocks as B
from .cluster import broadcast, gather, retrying
from .dask_blocks import DaskBlocks

__all__ = ["DaskRatings", "frame_ratings", "is_dask_frame", "scatter_ratings"]


@dataclass
class DaskRatings:
    """Coded ratings held by the cluster: part futures and the sizes the driver knows."""

    client: object
    parts: list
    n_users: int
    n_items: int
    nnz: int
    n_held: int = 0
    recomputable: bool = False  # whether Dask can recompute a lost part from its source
    rating_range: tuple[float, float] | None = None  # (lowest, highest) rating
    # ratings per user and per item of each run's mode, from its biases' reductions
    _counts: dict = field(default_factory=dict, repr=False, init=False)

    def parts_alive(self) -> bool:
        """Whether a lost step can be redone: every part alive, or recomputable."""
        if self.recomputable:
            return True
        return all(f.status not in ("lost", "cancelled", "error") for f in self.parts)

    def _submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def biases(self, mode: str, reg_user: float, reg_item: float, n_sweeps: int) -> Baseline:
        """The biases of the ratings a run fits (``"all"``, or ``"train"``: not held out)."""
        if mode == "train" and self.n_held in (0, self.nnz):
            raise ValueError(
                "validation_share leaves no ratings on one side: use more data or another share"
            )
        return retrying(lambda: self._biases(mode, reg_user, reg_item, n_sweeps), self.parts_alive)

    def _biases(self, mode: str, reg_user: float, reg_item: float, n_sweeps: int) -> Baseline:
        nu, ni = self.n_users, self.n_items
        sums = gather(
            self.client, [self._submit(B.baseline_sums, p, mode, nu, ni) for p in self.parts]
        )
        mu = sum(x[0] for x in sums) / sum(x[1] for x in sums)

        def half_step(b_other: np.ndarray, users_side: bool) -> np.ndarray:
            other = broadcast(self.client, b_other)
            size = nu if users_side else ni
            futs = [
                self._submit(B.bias_half_step, p, mode, mu, other, users_side, size)
                for p in self.parts
            ]
            return np.sum(gather(self.client, futs), axis=0)

        count_user = np.sum([x[2] for x in sums], axis=0)
        count_item = np.sum([x[3] for x in sums], axis=0)
        self._counts[mode] = (count_user, count_item)
        b_user, b_item = alternate_biases(
            half_step, count_user, count_item, reg_user, reg_item, n_sweeps
        )
        return Baseline(mu=float(mu), b_row=b_user, b_col=b_item)

    def blocks(
        self, mode: str, baseline: Baseline, users_are_rows: bool, dtype, validating: bool
    ) -> DaskBlocks:
        """The run's row blocks, built on the workers from the parts and the biases."""
        n, d = (self.n_users, self.n_items) if users_are_rows else (self.n_items, self.n_users)
        nnz = self.nnz - (self.n_held if mode == "train" else 0)

        def build() -> list:
            b_user, b_item = (broadcast(self.client, b) for b in (baseline.b_row, baseline.b_col))
            return [
                self._submit(
                    B.build_block,
                    p,
                    mode,
                    baseline.mu,
                    b_user,
                    b_item,
                    users_are_rows,
                    d,
                    np.dtype(dtype),
                    validating,
                )
                for p in self.parts
            ]

        count_user, count_item = self._counts[mode]
        counts = count_user if users_are_rows else count_item
        row_length = float((counts**2).sum() / max(counts.sum(), 1.0))
        return DaskBlocks(self, build, n, d, nnz, dtype, validating, row_length)


def is_dask_frame(x) -> bool:
    """Whether ``x`` is a ``dask.dataframe.DataFrame`` (without importing dask otherwise)."""
    return type(x).__module__.startswith(("dask.dataframe", "dask_expr")) and hasattr(
        x, "npartitions"
    )


def total_threads(client) -> int:
    return max(1, int(sum(client.nthreads().values())))


def scatter_ratings(
    client,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    users_are_rows: bool,
    held: np.ndarray | None = None,
    n_parts: int | None = None,
) -> DaskRatings:
    """Split checked, coded triples into parts of whole rows and scatter them once.

    ``held`` marks the validation share (drawn by the fitting layer, as for a fit in this
    process, so both backends hold out the same ratings). Parts are balanced by their number of
    ratings, one per worker thread.
    """
    if held is None:
        held = np.zeros(ratings.size, dtype=bool)
    rows = users if users_are_rows else items
    order = np.argsort(rows, kind="stable")
    parts = []
    for sl in _row_slices(rows[order], n_parts or total_threads(client)):
        idx = order[sl]
        parts.append(B.RatingPart(users[idx], items[idx], ratings[idx], held[idx]))
    futures = client.scatter(parts, hash=False)
    return DaskRatings(client, futures, n_users, n_items, int(ratings.size), int(held.sum()))


def _row_slices(sorted_rows: np.ndarray, n_parts: int) -> list[slice]:
    """About equal numbers of ratings per slice, cut only where the row changes."""
    n = sorted_rows.size
    bounds = [0]
    for k in range(1, n_parts):
        cut = int(np.searchsorted(sorted_rows, sorted_rows[min(n - 1, k * n // n_parts)]))
        if cut > bounds[-1]:
            bounds.append(cut)
    bounds.append(n)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def frame_ratings(
    client,
    ddf,
    columns: tuple,
    *,
    rating_scale: tuple[float, float] | None,
    duplicates: str,
    users_are_rows: Callable[[int, int], bool],
    validation_share: float,
    random_state,
) -> tuple[DaskRatings, Vocabulary, Vocabulary]:
    """Code a dask DataFrame of ratings on the workers; the driver sees only ids and sizes.

    The id vocabularies come from distributed ``drop_duplicates`` (the driver receives the
    distinct ids, which the fitted model keeps anyway); the frame is shuffled by the row side's
    id so every row's ratings share a partition, and each partition is coded, checked (NaN,
    scale, duplicates) and sorted on its worker. The resulting parts keep their lineage: a part
    lost with a worker is recomputed from the frame's source. ``users_are_rows(n_users,
    n_items)`` is the fitting layer's orientation rule, applied once the sizes are known.
    """
    import dask

    user_col, item_col, rating_col = columns
    _check_frame(ddf, columns)
    # one tree reduction per column: the driver receives the distinct ids only
    uniq = client.compute([ddf[c].drop_duplicates(split_out=1) for c in (user_col, item_col)])
    user_vocab, item_vocab = (
        _vocabulary(s, what, col)
        for s, what, col in zip(gather(client, uniq), ("user", "item"), (user_col, item_col))
    )
    n_users, n_items = len(user_vocab), len(item_vocab)
    check_shape(n_users, n_items)
    row_col = user_col if users_are_rows(n_users, n_items) else item_col
    shuffled = ddf[list(columns)].shuffle(on=row_col, shuffle_method="tasks")
    pieces = shuffled.to_delayed()
    seeds = _seeds(random_state, len(pieces))
    # the id indexes travel in the graph (not scattered), so they too can be recomputed
    uidx = dask.delayed(user_vocab.index, pure=True)
    iidx = dask.delayed(item_vocab.index, pure=True)
    share = float(validation_share)
    parts = client.compute(
        [
            dask.delayed(B.part_from_frame, pure=True)(
                piece, uidx, iidx, columns, rating_scale, duplicates, share, seed
            )
            for piece, seed in zip(pieces, seeds)
        ]
    )
    sizes = gather(client, [client.submit(B.part_sizes, p, pure=False) for p in parts])
    nnz = sum(s[0] for s in sizes)
    if nnz == 0:
        raise RatingsError(
            "no ratings to fit: the dask DataFrame is empty; pass at least one rating"
        )
    data = DaskRatings(
        client,
        parts,
        n_users,
        n_items,
        nnz,
        sum(s[1] for s in sizes),
        recomputable=True,
        rating_range=(min(s[2] for s in sizes), max(s[3] for s in sizes)),
    )
    return data, user_vocab, item_vocab


def _check_frame(ddf, columns: tuple) -> None:
    if len(set(columns)) < 3:
        raise ValueError(
            f"user_col, item_col and rating_col must be three different columns, got {columns}"
        )
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise RatingsError(
            f"column(s) {missing} not found in the ratings; the dask DataFrame has columns "
            f"{list(ddf.columns)}. Name them with LinRFM(user_col=..., item_col=..., "
            f"rating_col=...)"
        )
    dtype = ddf[columns[2]].dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        raise RatingsError(
            f"the rating column {columns[2]!r} must hold numbers but has dtype {dtype}; convert "
            f"it first, e.g. ddf[{columns[2]!r}] = dd.to_numeric(ddf[{columns[2]!r}])"
        )


def _vocabulary(uniques: pd.Series, what: str, name: str) -> Vocabulary:
    """Sorted distinct ids (as :meth:`Vocabulary.from_column` codes them), missing ids refused."""
    if uniques.isna().any():
        raise RatingsError(
            f"some rows have a missing {what} id in column {name!r}; drop them first, e.g. "
            f"ddf.dropna(subset=[{name!r}])"
        )
    check_id_types(uniques, what, name)
    values = uniques.to_numpy()
    with contextlib.suppress(TypeError):  # mixed types that do not sort: keep the order found
        values = np.sort(values)
    return Vocabulary(values)


def _seeds(random_state, n: int) -> list[np.random.SeedSequence]:
    """One seed per partition for the validation draw, from ``random_state``."""
    if isinstance(random_state, np.random.Generator):
        root = np.random.SeedSequence(int(random_state.integers(2**63)))
    elif isinstance(random_state, np.random.BitGenerator):
        root = np.random.SeedSequence(int(np.random.Generator(random_state).integers(2**63)))
    elif isinstance(random_state, np.random.SeedSequence):
        root = random_state
    else:
        root = np.random.SeedSequence(random_state)
    return root.spawn(n)
