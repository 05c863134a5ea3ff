"""lin-RFM on a Dask cluster (``backend="dask"``): the same model, fitted where the ratings lie.

The fitting layer (:mod:`rfm_recsys.fitting`) runs the one engine loop on a source of this
package: ratings scattered from this process (:func:`scattered_ratings`: a pandas DataFrame, a
sparse matrix or a Surprise trainset, split by rows and scattered once) or a
``dask.dataframe.DataFrame`` coded and kept on the workers (:func:`frame_source`). Both run on
the current ``dask.distributed`` client or, without one, on a temporary ``LocalCluster``
(``rfm_recsys.distributed.cluster.dask_client``). The fitted state is an ordinary
:class:`~rfm_recsys.fitting.state.RatingsFit` on the driver.

Needs the ``dask`` extra: ``pip install "rfm_recsys[dask]"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from ..ids import Vocabulary
from .cluster import DistributedFitError, dask_client
from .data import DaskRatings, frame_ratings, is_dask_frame, scatter_ratings

__all__ = [
    "DaskRatings",
    "DistributedFitError",
    "frame_source",
    "is_dask_frame",
    "scattered_ratings",
]


@contextlib.contextmanager
def scattered_ratings(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    users_are_rows: bool,
    held: np.ndarray | None,
) -> Iterator[DaskRatings]:
    """Checked, coded triples scattered to the cluster (the client open while in the block)."""
    with dask_client() as client:
        yield scatter_ratings(
            client,
            np.asarray(users, dtype=np.int64),
            np.asarray(items, dtype=np.int64),
            np.asarray(ratings, dtype=np.float64),
            n_users,
            n_items,
            users_are_rows,
            held,
        )


@contextlib.contextmanager
def frame_source(
    ddf,
    columns: tuple,
    *,
    rating_scale: tuple[float, float] | None,
    duplicates: str,
    users_are_rows: Callable[[int, int], bool],
    validation_share: float,
    random_state,
) -> Iterator[tuple[DaskRatings, Vocabulary, Vocabulary]]:
    """A dask DataFrame of ratings coded on the workers, never brought to this process.

    Yields ``(source, user vocabulary, item vocabulary)``; the client stays open in the block.
    """
    with dask_client() as client:
        yield frame_ratings(
            client,
            ddf,
            columns,
            rating_scale=rating_scale,
            duplicates=duplicates,
            users_are_rows=users_are_rows,
            validation_share=validation_share,
            random_state=random_state,
        )
