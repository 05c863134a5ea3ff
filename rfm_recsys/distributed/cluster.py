"""Which Dask client a fit uses, and what a lost worker means for it.

As dask-ml and xgboost.dask do, a fit runs on the current ``dask.distributed`` client
(``distributed.get_client()``: the one the user created with ``Client("tcp://...")`` or
``Client(LocalCluster(...))``). Without one, the fit starts a ``LocalCluster`` sized to the
machine (one single-threaded worker process per usable core, loopback only, no dashboard) and
closes it when the fit ends, whether it succeeded or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..core.blas import usable_cores

__all__ = ["DistributedFitError", "broadcast", "dask_client", "gather", "require_dask"]


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
