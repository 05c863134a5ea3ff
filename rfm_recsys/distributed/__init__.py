"""lin-RFM on a Dask cluster (``backend="dask"``): the same model, fitted where the ratings lie.

Entry points used by the model classes: :func:`fit_arrays_dask` (coded triples already in this
process: a pandas DataFrame, a sparse matrix or a Surprise trainset, split by rows and scattered
once) and :func:`fit_frame_dask` (a ``dask.dataframe.DataFrame``, coded and kept on the
workers). Both run on the current ``dask.distributed`` client or, without one, on a temporary
``LocalCluster`` (:func:`~rfm_recsys.distributed.cluster.dask_client`). The fitted state is an
ordinary :class:`~rfm_recsys.core.fitting.RatingsFit` on the driver.

Needs the ``dask`` extra: ``pip install "rfm_recsys[dask]"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..core.fitting import RatingsFit
from ..ids import Vocabulary
from .cluster import DistributedFitError, dask_client
from .data import frame_ratings, is_dask_frame, scatter_ratings
from .fitting import check_supported, fit_ratings_dask

__all__ = ["DistributedFitError", "fit_arrays_dask", "fit_frame_dask", "is_dask_frame"]


def check_plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values this backend fits: the kernel step dropped (with a warning), both sides refused.

    The backend fits plain lin-RFM only. With the kernel step on (the default), the kernel-step
    parameters (``kernel``, ``bandwidth``, ``implicit``, ``kernel_updates``, ``kernel_lam``) are
    replaced by :data:`~rfm_recsys.config.PLAIN_LINRFM`'s and a ``UserWarning`` says so; the
    user's ``orient`` and everything else are kept. ``orient="both"`` is refused.
    """
    from ..config import PLAIN_LINRFM
    from ..core.kernel_rfm import KERNEL_PARAMS, kernel_step_is_plain

    if values.get("orient") == "both":
        raise NotImplementedError(
            "backend='dask' fits one orientation: use orient='auto', 'items' or 'users', or "
            "backend='threads' for orient='both'"
        )
    out = dict(values)
    kernel = {k: values[k] for k in KERNEL_PARAMS if k in values}
    if kernel and not kernel_step_is_plain(**kernel):
        warnings.warn(
            f"the kernel step does not run on the dask backend: fitted plain lin-RFM (the "
            f"kernel-step parameters {kernel} replaced by rfm_recsys.config.PLAIN_LINRFM's, "
            f"orient={values.get('orient')!r} kept); pass **rfm_recsys.config.PLAIN_LINRFM to "
            f"silence, or backend='threads' for the kernel step",
            UserWarning,
            stacklevel=4,
        )
        out.update({k: PLAIN_LINRFM[k] for k in KERNEL_PARAMS})
    return out


def fit_arrays_dask(
    config: ModelConfig,
    values: Mapping[str, Any],
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    progress: bool = False,
    callback=None,
) -> RatingsFit:
    """:func:`~rfm_recsys.core.fitting.fit_with_config` on the cluster, from checked triples."""
    values = check_plain(values)
    kwargs = config.fit_kwargs(values)
    kwargs["progress"] = bool(progress or kwargs.get("progress", False))
    # before any cluster is started or data sent
    check_supported(kwargs.get("rank"), kwargs["orient"], n_users, n_items, kwargs.get("update"))
    with dask_client() as client:
        data = scatter_ratings(
            client,
            np.asarray(users, dtype=np.int64),
            np.asarray(items, dtype=np.int64),
            np.asarray(ratings, dtype=np.float64),
            n_users,
            n_items,
            orient=kwargs["orient"],
            validation_share=kwargs["validation_share"],
            random_state=kwargs["random_state"],
        )
        return fit_ratings_dask(data, callback=callback, **kwargs)


def fit_frame_dask(
    config: ModelConfig,
    values: Mapping[str, Any],
    ddf,
    rating_scale: tuple[float, float] | None,
    progress: bool = False,
    callback=None,
) -> tuple[RatingsFit, Vocabulary, Vocabulary, tuple[float, float]]:
    """Fit on a dask DataFrame of ratings without bringing the ratings to this process.

    Returns:
        ``(fit, user vocabulary, item vocabulary, (lowest, highest) rating)``.
    """
    values = check_plain(values)
    kwargs = config.fit_kwargs(values)
    kwargs["progress"] = bool(progress or kwargs.get("progress", False))
    columns = (values["user_col"], values["item_col"], values["rating_col"])
    with dask_client() as client:
        data, user_vocab, item_vocab = frame_ratings(
            client,
            ddf,
            columns,
            rating_scale=rating_scale,
            duplicates=values["duplicates"],
            orient=kwargs["orient"],
            validation_share=kwargs["validation_share"],
            random_state=kwargs["random_state"],
        )
        fit = fit_ratings_dask(data, callback=callback, **kwargs)
    return fit, user_vocab, item_vocab, data.rating_range
