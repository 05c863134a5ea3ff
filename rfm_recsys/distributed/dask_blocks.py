"""Row blocks on a Dask cluster: the engine loop's block operations, run where the ratings lie.

:class:`DaskBlocks` implements :class:`~rfm_recsys.core.blocks.RowBlocks` over futures of
``rfm_recsys.distributed.blocks.Block``: each operation broadcasts what the workers need
(the kernel once per solve, ``P`` once per randomized pass), runs the blocks' task and sums their
shares in a tree of tasks on the workers, so only the total reaches the driver. The coefficients
stay on the workers until :meth:`DaskBlocks.coefficients` gathers the chosen ones.

A step that loses data Dask cannot recompute by itself (results derived from broadcast arrays)
is redone from what the driver holds: the blocks are rebuilt from the rating parts (kept, or
recomputed from their source) and the coefficients solved again with the kernel and ridge they
came from. A lost scattered part cannot be redone: the error stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.dense_kernel import DenseKernel
from ..core.factored_kernel import FactoredKernel
from . import blocks as B
from .cluster import DistributedFitError, broadcast, gather, retrying

# Partial sums are added in a tree of this fan-in on the workers.
_FAN_IN = 4


@dataclass
class DaskCoefs:
    """Futures of every block's coefficients, and what gives them back: the kernel, the ridge,
    the tolerance and the coefficients they were started from (``warm``, a chain back to a
    solve from zero)."""

    a: list
    kernel: Any
    kernel_future: Any
    ridge: float
    tol: float | None = None
    warm: DaskCoefs | None = None


def _wire(kernel) -> Any:
    """What a worker's task takes for ``kernel``: ``None`` for the identity, the ``d x d``
    array, or the factored kernel itself."""
    if isinstance(kernel, FactoredKernel):
        return kernel
    if isinstance(kernel, DenseKernel):
        return None if kernel.identity else kernel.K
    raise TypeError(f"the Dask backend cannot fit with a {type(kernel).__name__}")


class DaskBlocks:
    """The blocks of one engine run on the cluster (see the module docstring).

    Args:
        source: the :class:`~rfm_recsys.distributed.data.DaskRatings` the blocks come from.
        build: ``build()`` submits the block futures (called again after a loss).
        n_rows, n_cols: the fit's matrix shape; ``nnz``: ratings the blocks must fit.
        dtype: of the kernel and the solves.
        validating: whether the blocks hold validation pairs.
        row_length: the rows' length seen from a rating, ``sum c^2 / sum c``.
    """

    def __init__(
        self, source, build, n_rows: int, n_cols: int, nnz: int, dtype, validating,
        row_length: float,
    ):  # fmt: skip
        self.source = source
        self.client = source.client
        self._build = build
        self.n_rows, self.n_cols, self.nnz = n_rows, n_cols, nnz
        self.dtype = np.dtype(dtype)
        self.validating = validating
        self.row_length = row_length
        self.futures = build()

    # ------------------------------------------------------------------ the protocol

    def solve(self, kernel, ridge: float, warm: DaskCoefs | None = None, tol=None) -> DaskCoefs:
        coefs = DaskCoefs([], kernel, None, float(ridge), tol, warm)
        self._solve(coefs)
        return coefs

    def stats(self, coefs: DaskCoefs, kernel) -> dict:
        def step():
            futs = [
                self._submit(B.block_stats, b, x, coefs.kernel_future)
                for b, x in zip(self.futures, coefs.a)
            ]
            parts = gather(self.client, futs)
            return {k: sum(p[k] for p in parts) for k in ("sum_a2", "n_a", "sse", "n_valid")}

        out = self._retrying(step, coefs)
        if out["n_a"] != self.nnz:
            # a block that silently lost rows would give a wrong model: refuse it
            raise DistributedFitError(
                f"the blocks fitted {out['n_a']:,} ratings instead of {self.nnz:,}: a partition "
                f"was lost"
            )
        return out

    def gram(self, coefs: DaskCoefs, kernel, reimposed: bool) -> np.ndarray:
        if reimposed:
            raise NotImplementedError("the Dask backend never re-imposes observed ratings")
        return self._summed(
            coefs, lambda b, x: self._submit(B.block_gram, b, x, coefs.kernel_future, self.dtype)
        )

    def factor_gram(self, coefs: DaskCoefs, kernel) -> np.ndarray:
        return self._summed(
            coefs, lambda b, x: self._submit(B.block_factor_gram, b, x, coefs.kernel_future)
        )

    def range_gram(self, coefs: DaskCoefs, kernel, P: np.ndarray, c) -> np.ndarray:
        P_fut = None

        def share(b, x):
            nonlocal P_fut
            if P_fut is None:  # broadcast once per pass (and again after a loss)
                P_fut = broadcast(self.client, np.ascontiguousarray(P, dtype=self.dtype))
            return self._submit(B.block_range_gram, b, x, coefs.kernel_future, P_fut, c)

        def reset():
            nonlocal P_fut
            P_fut = None

        return self._summed(coefs, share, reset)

    def coefficients(self, coefs: DaskCoefs) -> sp.csr_matrix:
        def step():
            futs = [self._submit(B.block_coefficients, b, x) for b, x in zip(self.futures, coefs.a)]
            return B.assemble_rows(gather(self.client, futs), self.n_rows, self.n_cols, self.dtype)

        A = self._retrying(step, coefs)
        if A.nnz != self.nnz:
            raise DistributedFitError(
                f"the blocks returned {A.nnz:,} coefficients for {self.nnz:,}"
            )
        return A

    def column_counts(self) -> np.ndarray:
        return self._summed(None, lambda b, _: self._submit(B.block_column_counts, b))

    def pattern_gram(self, dtype) -> np.ndarray:
        dt = np.dtype(dtype)
        return self._summed(None, lambda b, _: self._submit(B.block_pattern_gram, b, dt)).astype(
            dt, copy=False
        )

    def pattern_gram_times(self, P: np.ndarray) -> np.ndarray:
        P_fut = None

        def share(b, _):
            nonlocal P_fut
            if P_fut is None:  # broadcast once per pass (and again after a loss)
                P_fut = broadcast(self.client, np.ascontiguousarray(P, dtype=np.float64))
            return self._submit(B.block_pattern_times, b, P_fut)

        def reset():
            nonlocal P_fut
            P_fut = None

        return self._summed(None, share, reset)

    def pattern(self, dtype) -> sp.csr_matrix:
        def step():
            futs = [self._submit(B.block_pattern, b) for b in self.futures]
            return B.assemble_rows(gather(self.client, futs), self.n_rows, self.n_cols, dtype)

        return self._retrying(step)

    # ------------------------------------------------------------------ internals

    def _submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def _solve(self, coefs: DaskCoefs) -> None:
        wire = _wire(coefs.kernel)
        coefs.kernel_future = None if wire is None else broadcast(self.client, wire)
        starts = [None] * len(self.futures) if coefs.warm is None else coefs.warm.a
        coefs.a = [
            self._submit(
                B.solve_block, b, coefs.kernel_future, coefs.ridge, self.dtype, a0, coefs.tol
            )
            for b, a0 in zip(self.futures, starts)
        ]

    def _resolve(self, coefs: DaskCoefs) -> None:
        """Solve ``coefs`` again on rebuilt blocks, its warm starts first: the same start gives
        the same coefficients, so a step redone after a lost worker fits the same model."""
        if coefs.warm is not None:
            self._resolve(coefs.warm)
        self._solve(coefs)

    def _summed(self, coefs: DaskCoefs | None, share, reset=None) -> np.ndarray:
        """The tree-summed ``share(block, coefficients)`` of every block (``coefs=None``: shares
        of the blocks' ratings alone)."""

        def step():
            a = coefs.a if coefs is not None else [None] * len(self.futures)
            tree = self._tree([share(b, x) for b, x in zip(self.futures, a)])
            return np.asarray(gather(self.client, [tree])[0])

        return self._retrying(step, coefs, reset)

    def _tree(self, futs):
        """One future: the sum of ``futs``, added in a tree of fan-in ``_FAN_IN`` on the workers."""
        while len(futs) > 1:
            futs = [
                self._submit(B.sum_arrays, *futs[k : k + _FAN_IN])
                for k in range(0, len(futs), _FAN_IN)
            ]
        return futs[0]

    def _retrying(self, step, coefs: DaskCoefs | None = None, reset=None):
        """Run ``step``; after a loss Dask could not repair by itself, rebuild the blocks, solve
        ``coefs`` again and rerun it (:func:`~rfm_recsys.distributed.cluster.retrying`)."""

        def redo() -> None:
            self.futures = self._build()
            if coefs is not None:
                self._resolve(coefs)
            if reset is not None:
                reset()

        return retrying(step, self.source.parts_alive, redo)
