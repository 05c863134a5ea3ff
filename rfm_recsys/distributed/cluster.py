"""Which Dask client a fit uses, and what a lost worker means for it.

As dask-ml and xgboost.dask do, a fit runs on the current ``dask.distributed`` client
(``distributed.get_client()``: the one the user created with ``Client("tcp://...")`` or
``Client(LocalCluster(...))``). Without one, the fit starts a ``LocalCluster`` sized to the
machine (one single-threaded worker process per usable core, loopback only, no dashboard) and
closes it when the fit ends, whether it succeeded or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..core.blas import usable_cores

__all__ = [
    "DistributedFitError",
    "broadcast",
    "dask_client",
    "gather",
    "require_dask",
    "retrying",
]


class DistributedFitError(RuntimeError):
    """A Dask fit could not finish (a worker lost with data Dask cannot recompute, ...)."""


def require_dask():
    """Import ``distributed``, or explain how to install the extra."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed
    except ImportError as exc:  # pragma: no cover - the dev extra installs both
        raise ImportError(
            f"backend='dask' needs dask[dataframe] and distributed ({exc}): "
            f'pip install "rfm_recsys[dask]"'
        ) from None
    return distributed


@contextlib.contextmanager
def dask_client() -> Iterator:
    """The current client, or a temporary ``LocalCluster`` closed when the block ends."""
    distributed = require_dask()
    try:
        client = distributed.get_client()
    except ValueError:  # no client in this process
        client = None
    if client is not None:
        yield client
        return
    with (
        distributed.LocalCluster(
            n_workers=usable_cores(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # no dashboard; the scheduler's small HTTP server takes a free port, not 8787
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def _lost_message(exc: BaseException) -> str:
    return (
        f"a Dask worker was lost during the fit and its data could not be recomputed "
        f"({type(exc).__name__}: {exc}). Ratings passed as a pandas DataFrame, sparse matrix "
        f"or Surprise trainset are scattered from this process and live only on the "
        f"workers: refit, or pass a dask DataFrame read from storage (dd.read_parquet) so "
        f"that Dask can recompute lost partitions from their source."
    )


def lost_types() -> tuple[type, ...]:
    """Exceptions that mean a worker (and what it held) was lost during a step."""
    distributed = require_dask()
    from distributed.comm.core import CommClosedError

    return (
        distributed.KilledWorker,
        distributed.client.FutureCancelledError,
        CommClosedError,
        OSError,
    )


def gather(client, futures):
    """``client.gather`` that turns the loss of unrecoverable data into a clear error.

    Dask recomputes results lost with a worker from their inputs; what it cannot recompute
    (ratings scattered from this process, or a task that killed its worker too often) surfaces
    here as :class:`DistributedFitError` instead of Dask's internal exception, and the fit stops:
    it never returns a model built from missing partitions.
    """
    try:
        return client.gather(futures)
    except lost_types() as exc:
        raise DistributedFitError(_lost_message(exc)) from exc


def broadcast(client, x):
    """``x`` scattered to every worker; a worker lost meanwhile is :class:`DistributedFitError`.

    Dask copies a broadcast to the workers it knows; one that dies (or restarts) during the
    copy makes the scheduler's ``replicate`` fail with a ``ValueError`` or a closed comm.
    """
    try:
        return client.scatter(x, broadcast=True, hash=False)
    except (ValueError, *lost_types()) as exc:
        raise DistributedFitError(_lost_message(exc)) from exc


# Times a step is redone after Dask lost data it cannot recompute (broadcast arrays).
RETRIES = 3


def _repairable() -> tuple[type, ...]:
    """Causes of a lost step that a redo may repair: data cancelled with a worker, a comm closed
    or a broadcast cut short by a worker leaving. Not ``KilledWorker``: a task that kept
    killing its workers would kill them again."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    return (FutureCancelledError, CommClosedError, OSError, ValueError)


def retrying(
    step: Callable[[], Any],
    can_redo: Callable[[], bool],
    before_redo: Callable[[], None] | None = None,
) -> Any:
    """Run ``step``; after a loss Dask could not repair by itself, ``before_redo()`` and again.

    Results derived from broadcast arrays (kernel, biases) have no lineage in Dask; the driver
    still holds those arrays, so while ``can_redo()`` (every rating part alive, or recomputable
    from its source) the step is redone from them, up to ``RETRIES`` times. Other errors, and a
    loss that cannot be redone, stand.
    """
    for attempt in range(RETRIES + 1):
        try:
            if attempt and before_redo is not None:  # in the try: a loss here is retried too
                before_redo()
            return step()
        except DistributedFitError as exc:
            lost = isinstance(exc.__cause__, _repairable())
            if attempt == RETRIES or not lost or not can_redo():
                raise
    raise AssertionError("unreachable")  # pragma: no cover
