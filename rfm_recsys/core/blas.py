"""One way of limiting BLAS threads for the whole package.

Every part of the package that wants a given number of BLAS threads (one thread while many small
batched LAPACK calls run in Python threads, a worker's share of the cores) goes through
:func:`blas_threads`; :func:`default_threads` is the number of worker threads a step may use.
Both use a single cached :class:`threadpoolctl.ThreadpoolController`: building a new one (or
calling ``threadpool_limits``) rescans the loaded libraries, which costs milliseconds per call
and dominated small fits.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

_CONTROLLER: ThreadpoolController | None = None


def controller() -> ThreadpoolController:
    """The package's one cached controller (built on first use)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Worker threads for a parallel step: the BLAS thread count in force, at most the cores.

    Inside joblib/loky workers (which limit BLAS to their share) this is that share, so a
    step run there does not oversubscribe the machine.
    """
    cores = usable_cores()
    blas = [lib.num_threads for lib in controller().lib_controllers if lib.user_api == "blas"]
    return max(1, min(cores, min(blas) if blas else cores))


@contextlib.contextmanager
def blas_threads(n: int | None, user_api: str | None = "blas") -> Iterator[None]:
    """Limit BLAS (or, with ``user_api=None``, also OpenMP) to ``n`` threads inside the block.

    ``n=None`` or ``0`` leaves the limits as they are, so callers can pass an optional setting
    straight through.
    """
    if not n:
        yield
        return
    with controller().limit(limits=int(n), user_api=user_api):
        yield
