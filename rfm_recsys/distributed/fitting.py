"""The driver's side of a Dask fit: the same model as :func:`rfm_recsys.core.fitting.fit_ratings`.

The ratings stay on the workers as :class:`~rfm_recsys.distributed.blocks.RatingPart` futures,
each holding every rating of a set of rows. One engine run:

1. **Baseline** by reductions: the mean and the per-user/per-item counts, then each alternating
   half-step as partial ``bincount`` sums (one vector of biases broadcast, one summed back).
2. **Blocks**: each part becomes, on its worker, the CSR matrix of its rows' residuals and its
   row plan; kept there (persisted futures) for every iteration of the run.
3. **Iterations**: the kernel is broadcast once (the dense ``d x d`` array, or the factored
   kernel's ``d x r`` ``U`` with its ``s`` and ``eps``); each block solves its rows with the
   threads backend's code (the coefficients stay on the worker) and returns ``sum a^2`` and
   its validation errors. Its share of the feature update is summed over a tree of tasks on
   the workers and only the total reaches the driver: the dense kernel's ``X^T X``
   (``d x d``); the factored kernel's ``Z^T Z`` (``r x r``), or, for a randomized update (the
   first one, or any with a shift), ``X^T X P`` (``d x q``) for each ``d x q`` block ``P`` the
   driver broadcasts. The driver finishes the update with the same
   :class:`~rfm_recsys.core.kernels.FactoredKernel` methods as the threads backend
   (``next_exact``, ``next_randomized``) and broadcasts the next kernel.
4. **Result**: the coefficients of the chosen iteration are gathered into the ordinary
   :class:`~rfm_recsys.core.fitting.RatingsFit`.

Every task is a pure function of its inputs, so Dask recomputes whatever a lost worker held
from its lineage (back to the files of a dask DataFrame); ratings scattered from the driver
have no lineage, and their loss ends the fit with
:class:`~rfm_recsys.distributed.cluster.DistributedFitError`. Each run also checks that its blocks
fitted exactly the number of ratings it was given.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.baseline import Baseline
from ..core.engine import AGOPPower, FeatureUpdate, check_memory
from ..core.fitting import RatingsFit, _seed, resolve_orientation
from ..core.kernels import DenseKernel, FactoredKernel, check_spectral, resolve_rank
from . import blocks as B
from .cluster import DistributedFitError, broadcast, gather

# Partial Gram matrices are summed in a tree of this fan-in on the workers.
_FAN_IN = 4
# Times a step is redone after Dask lost data it cannot recompute (broadcast arrays).
_RETRIES = 3


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


def fit_ratings_dask(
    data: DaskRatings,
    *,
    update: FeatureUpdate | None = None,
    lam: float,
    n_iter: int,
    orient: str,
    reg_user: float,
    reg_item: float,
    baseline_epochs: int,
    dtype,
    tol: float | None,
    validation_share: float,
    patience: int,
    max_memory: int | None,
    progress: bool = False,
    callback: Callable[[int, dict], None] | None = None,
    rank: int | str | None = None,
    shift: float = 0.0,
    random_state=None,
) -> RatingsFit:
    """:func:`~rfm_recsys.core.fitting.fit_ratings` on ratings held by a Dask cluster.

    The validation share was drawn when the parts were made (``RatingPart.held``). With it, the
    early-stopping run fits the non-held ratings, then the model is refitted on all of them for
    the best number of iterations; the history keeps the validation curve. ``rank`` and
    ``shift`` choose the kernel's form as in :func:`~rfm_recsys.core.fitting.fit_ratings`.
    """
    update = update if update is not None else AGOPPower(1.0)
    r = check_supported(rank, orient, data.n_users, data.n_items, update)
    run = _Run(
        data,
        update=update,
        lam=float(lam),
        orient=orient,
        reg_user=reg_user,
        reg_item=reg_item,
        epochs=int(baseline_epochs),
        dtype=np.dtype(dtype),
        tol=tol,
        max_memory=max_memory,
        progress=progress,
        rank=r,
        shift=float(shift),
        seed=_seed(random_state) if r is not None else 0,
    )
    if not validation_share:
        return run.fit("all", n_iter, None, callback)
    if data.n_held in (0, data.nnz):
        raise ValueError(
            "validation_share leaves no ratings on one side: use more data or another share"
        )
    probe = run.fit("train", n_iter, patience, callback)
    fit = run.fit("all", probe.best_iteration, None, None)
    fit.history = probe.history
    return fit


def check_supported(rank, orient: str, n_users: int, n_items: int, update) -> int | None:
    """The kernel's rank (``None``: dense) for this fit; refuses an update it cannot apply."""
    d = n_items if resolve_orientation(orient, n_users, n_items) else n_users
    r = resolve_rank(rank, d, update)
    if r is not None:
        check_spectral(update)
    return r


class _Run:
    """Engine runs on one set of parts (the early-stopping run and the final one share it)."""

    def __init__(self, data: DaskRatings, **settings) -> None:
        self.data = data
        self.client = data.client
        self.s = settings
        self.users_are_rows = resolve_orientation(settings["orient"], data.n_users, data.n_items)
        self.n, self.d = (
            (data.n_users, data.n_items) if self.users_are_rows else (data.n_items, data.n_users)
        )

    def _submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def _broadcast(self, x):
        return broadcast(self.client, x)

    # ------------------------------------------------------------------ baseline

    def baseline(self, mode: str) -> tuple[Baseline, int]:
        """:func:`~rfm_recsys.core.baseline.fit_baseline` by reductions over the parts."""
        data, s = self.data, self.s
        nu, ni = data.n_users, data.n_items
        sums = gather(
            self.client, [self._submit(B.baseline_sums, p, mode, nu, ni) for p in data.parts]
        )
        total = sum(x[0] for x in sums)
        count = sum(x[1] for x in sums)
        mu = total / count
        cnt_u = np.sum([x[2] for x in sums], axis=0)
        cnt_i = np.sum([x[3] for x in sums], axis=0)
        b_user, b_item = np.zeros(nu), np.zeros(ni)
        for _ in range(s["epochs"]):
            b_user = self._half_step(mode, mu, b_item, True, nu) / (s["reg_user"] + cnt_u)
            b_item = self._half_step(mode, mu, b_user, False, ni) / (s["reg_item"] + cnt_i)
        return Baseline(mu=float(mu), b_row=b_user, b_col=b_item), int(count)

    def _half_step(self, mode, mu, b_other, users_side, size) -> np.ndarray:
        other = self._broadcast(b_other)
        futs = [
            self._submit(B.bias_half_step, p, mode, mu, other, users_side, size)
            for p in self.data.parts
        ]
        return np.sum(gather(self.client, futs), axis=0)

    # ------------------------------------------------------------------ engine

    def fit(self, mode: str, n_iter: int, patience: int | None, callback) -> RatingsFit:
        s = self.s
        bl, nnz = self._retrying(lambda: self.baseline(mode))
        check_memory(
            self.n, self.d, nnz, s["dtype"], s["update"].needs_eigh, s["max_memory"], s["rank"]
        )
        self.block_spec = (mode, bl, patience is not None)
        self._make_blocks()
        history, best_iteration, K, a = self._iterate(nnz, n_iter, patience, callback)
        kept = [a]

        def coefficients():
            pieces = gather(self.client, self._coefficient_futures(K, kept.pop() if kept else None))
            return B.assemble_rows(pieces, self.n, self.d, s["dtype"])

        A = self._retrying(coefficients, self._make_blocks)
        if A.nnz != nnz:
            raise DistributedFitError(f"the blocks returned {A.nnz:,} coefficients for {nnz:,}")
        return RatingsFit(
            mu=bl.mu,
            b_user=bl.b_row,
            b_item=bl.b_col,
            users_are_rows=self.users_are_rows,
            kernel=self._as_kernel(K),
            A=A,
            lam=s["lam"],
            reg_user=float(s["reg_user"]),
            history=history,
            best_iteration=best_iteration,
        )

    def _initial_kernel(self):
        """``K = I``: ``None`` for the dense form (never materialised on the workers)."""
        s = self.s
        if s["rank"] is None:
            return None
        return FactoredKernel.eye(self.d, s["dtype"], s["rank"], s["shift"], s["seed"])

    def _as_kernel(self, K):
        if isinstance(K, FactoredKernel):
            return K
        return DenseKernel.eye(self.d, self.s["dtype"]) if K is None else DenseKernel(K)

    def _make_blocks(self) -> None:
        """(Re)build the engine blocks on the workers from the parts and the driver's baseline."""
        mode, bl, validating = self.block_spec
        b_user, b_item = self._broadcast(bl.b_row), self._broadcast(bl.b_col)
        self.blocks = [
            self._submit(
                B.build_block,
                p,
                mode,
                bl.mu,
                b_user,
                b_item,
                self.users_are_rows,
                self.d,
                self.s["dtype"],
                validating,
            )
            for p in self.data.parts
        ]

    def _coefficient_futures(self, K, a):
        if a is None:  # lost with a worker: solve again with the chosen kernel
            K_fut = None if K is None else self._broadcast(K)
            a = [
                self._submit(B.solve_block, b, K_fut, self.s["lam"], self.s["dtype"])
                for b in self.blocks
            ]
        return [self._submit(B.block_coefficients, b, x) for b, x in zip(self.blocks, a)]

    def _retrying(self, step, on_retry=None):
        """Run ``step``; after a loss Dask could not repair by itself, rebuild and run it again.

        Results derived from broadcast arrays (kernel, biases) have no lineage in Dask; the
        driver still holds those arrays, so while every rating part is alive (or recomputable
        from its source) the step is redone from them. A lost scattered part cannot be redone:
        the error stands.
        """
        rebuild = None
        for attempt in range(_RETRIES + 1):
            try:
                if rebuild is not None:  # inside the try: a loss while rebuilding is retried too
                    rebuild()
                return step()
            except DistributedFitError as exc:
                lost = isinstance(exc.__cause__, _repairable())
                if attempt == _RETRIES or not lost or not self._parts_alive():
                    raise
                rebuild = on_retry
        raise AssertionError("unreachable")  # pragma: no cover

    def _parts_alive(self) -> bool:
        if self.data.recomputable:
            return True
        return all(f.status not in ("lost", "cancelled", "error") for f in self.data.parts)

    def _remote_iteration(self, K, last: bool):
        """One round on the workers: row solves, their statistics and (unless last) the summed
        share of the feature update that needs no further round (see :meth:`_update_share`)."""
        dtype = self.s["dtype"]
        K_fut = None if K is None else self._broadcast(K)
        a = [self._submit(B.solve_block, b, K_fut, self.s["lam"], dtype) for b in self.blocks]
        stats = [self._submit(B.block_stats, b, x, K_fut) for b, x in zip(self.blocks, a)]
        share = None if last else self._update_share(K, a, K_fut)
        out = gather(self.client, stats if share is None else [*stats, share])
        total = None if share is None else np.asarray(out[-1])
        return out[: len(stats)], total, a, K_fut

    def _update_share(self, K, a, K_fut):
        """The tree-summed future of the blocks' ``X^T X`` (dense kernel) or ``Z^T Z``
        (factored, exact update); ``None`` for a randomized update, which takes its own rounds.
        """
        if not isinstance(K, FactoredKernel):
            dtype = self.s["dtype"]
            return self._tree(
                [self._submit(B.block_gram, b, x, K_fut, dtype) for b, x in zip(self.blocks, a)]
            )
        if np.any(K.update_shift(0.0, False)):
            return None
        return self._tree(
            [self._submit(B.block_factor_gram, b, x, K_fut) for b, x in zip(self.blocks, a)]
        )

    def _next_kernel(self, K, total, state: dict, it: int):
        """The driver's side of the feature update, as the threads backend's kernel does it."""
        update, dtype = self.update, self.s["dtype"]
        if not isinstance(K, FactoredKernel):
            K_new = update(np.asarray(total, dtype=dtype), self.n, it)
            if not np.all(np.isfinite(K_new)):
                raise FloatingPointError(
                    f"the kernel became non-finite at iteration {it + 1}: raise `lam` or use "
                    f"float64"
                )
            return K_new.astype(dtype, copy=False)
        if total is not None:
            return K.next_exact(total, update, self.n, it)
        c = K.update_shift(0.0, False)

        def gram(P):  # X^T X P summed over the blocks; P is broadcast once per pass
            P_fut = self._broadcast(np.ascontiguousarray(P, dtype=dtype))
            futs = [
                self._submit(B.block_range_gram, b, x, state["K_fut"], P_fut, c)
                for b, x in zip(self.blocks, state["a"])
            ]
            return np.asarray(gather(self.client, [self._tree(futs)])[0])

        def redo():  # after a lost worker: the blocks and this iteration's solves again
            self._make_blocks()
            state["K_fut"] = self._broadcast(K)
            state["a"] = [
                self._submit(B.solve_block, b, state["K_fut"], self.s["lam"], dtype)
                for b in self.blocks
            ]

        return self._retrying(lambda: K.next_randomized(gram, update, self.n, it), redo)

    def _change(self, K, K_new) -> float:
        if isinstance(K, FactoredKernel):
            return K.distance(K_new)
        K_old = np.eye(self.d, dtype=self.s["dtype"]) if K is None else K
        return float(np.linalg.norm(K_new - K_old) / max(np.linalg.norm(K_old), 1e-300))

    def _iterate(self, nnz: int, n_iter: int, patience: int | None, callback):
        """The engine loop of :func:`~rfm_recsys.core.engine.fit_engine`, one task per block."""
        s = self.s
        self.update = copy.deepcopy(s["update"])
        self.update.reset()
        t0 = time.perf_counter()
        K = self._initial_kernel()
        history: list[dict] = []
        best = _Best(patience)
        change = float("nan")
        bar = _bar(s["progress"], n_iter + 1)
        it = 0
        while True:
            last = it >= n_iter or (s["tol"] is not None and it > 0 and change < s["tol"])
            stats, total, a, K_fut = self._retrying(
                lambda K=K, last=last: self._remote_iteration(K, last), self._make_blocks
            )
            rec = self._record(it, stats, nnz, change, patience is not None)
            best.observe(rec, it, K, a)
            rec["seconds"] = time.perf_counter() - t0
            history.append(rec)
            if callback is not None:
                callback(it, rec)
            if bar is not None:
                bar.update(1)
            if last or best.exhausted:
                break
            K_new = self._next_kernel(K, total, {"a": a, "K_fut": K_fut}, it)
            change = self._change(K, K_new)
            K = K_new
            it += 1
        if bar is not None:
            bar.close()
        best_iteration, K, a = best.result(it, K, a)
        return history, best_iteration, K, a

    def _tree(self, futs):
        """One future: the sum of ``futs``, added in a tree of fan-in ``_FAN_IN`` on the workers."""
        while len(futs) > 1:
            futs = [
                self._submit(B.sum_arrays, *futs[k : k + _FAN_IN])
                for k in range(0, len(futs), _FAN_IN)
            ]
        return futs[0]

    def _record(
        self, it: int, stats: list[dict], nnz: int, change: float, validating: bool
    ) -> dict:
        n_a = sum(x["n_a"] for x in stats)
        if n_a != nnz:
            # a block that silently lost rows would give a wrong model: refuse it
            raise DistributedFitError(
                f"iteration {it} fitted {n_a:,} ratings instead of {nnz:,}: a partition was lost"
            )
        lam = self.s["lam"]
        sum_a2 = sum(x["sum_a2"] for x in stats)
        rec = {
            "iteration": it,
            "train_rmse": float(lam * math.sqrt(sum_a2 / n_a)) if n_a else 0.0,
            "kernel_change": change,
        }
        if validating:
            n_valid = sum(x["n_valid"] for x in stats)
            sse = sum(x["sse"] for x in stats)
            rec["valid_rmse"] = float(math.sqrt(sse / n_valid)) if n_valid else float("nan")
        return rec


def _repairable() -> tuple[type, ...]:
    """Causes of a lost step that a redo may repair: data cancelled with a worker, a comm closed
    or a broadcast cut short by a worker leaving. Not ``KilledWorker``: a task that kept
    killing its workers would kill them again."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    return (FutureCancelledError, CommClosedError, OSError, ValueError)


class _Best:
    """Patience and the best (iteration, kernel, coefficient futures), as the engine's tracker."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best_rmse = math.inf
        self.state: tuple | None = None
        self.since_best = 0

    def observe(self, rec: dict, it: int, K, a) -> None:
        if self.patience is None or "valid_rmse" not in rec:
            return
        if rec["valid_rmse"] < self.best_rmse - 1e-9:
            self.best_rmse = rec["valid_rmse"]
            self.state = (it, K, a)
            self.since_best = 0
        else:
            self.since_best += 1

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def result(self, it: int, K, a) -> tuple:
        return self.state if self.state is not None else (it, K, a)


def _bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="lin-RFM (dask)", leave=False)
