"""Runs the (algorithm, fold) tasks: in fresh worker processes (or in-process), with live bars."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue as queue_mod
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.movielens import worker
from evaluation.movielens.specs import ALGORITHMS, AlgoSpec, make_algo

# Modules the forkserver imports once, so each fresh worker starts in milliseconds.
_PRELOAD = [
    "numpy", "scipy.sparse", "scipy.linalg", "pandas", "surprise", "surprise.model_selection",
    "implicit.cpu.als", "implicit.evaluation", "rfm_recsys.surprise_algos",
    "rfm_recsys.baselines.als", "rfm_recsys.ranking", "rfm_recsys.model",
    "rfm_recsys.implicit_feedback", "rfm_recsys.baselines.ease", "evaluation.movielens.worker",
]  # fmt: skip


def run_dir(base: Path, dataset: str, run_id: str | None) -> tuple[Path, str]:
    """A new results folder ``base/dataset/<run id>`` (a suffix keeps earlier runs)."""
    rid = run_id or datetime.now().strftime("%Y%m%d-%H%M%S")
    d = base / dataset / rid
    n = 2
    while d.exists() and run_id is None:
        d = base / dataset / f"{rid}-{n}"
        n += 1
    d.mkdir(parents=True, exist_ok=run_id is not None)
    return d, d.name


class Progress:
    """One live bar per algorithm, fed by the workers' messages."""

    def __init__(self, keys: list[str], totals: dict[str, int], n_folds: int, enabled: bool):
        self.n_folds = n_folds
        self.bars: dict[str, Any] = {}
        if enabled:
            from tqdm.auto import tqdm

            width = max(len(ALGORITHMS[k].label) for k in keys)
            for pos, k in enumerate(keys):
                self.bars[k] = tqdm(
                    total=totals[k],
                    desc=ALGORITHMS[k].label.ljust(width),
                    position=pos,
                    leave=True,
                    dynamic_ncols=True,
                    bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} [{elapsed}] {postfix}",
                )

    def update(self, key: str, fold: int, text: str, units: int) -> None:
        bar = self.bars.get(key)
        if bar is None:
            return
        bar.set_postfix_str(f"fold {fold + 1}/{self.n_folds}: {text}", refresh=False)
        bar.update(units)

    def finish(self, key: str, row: dict) -> None:
        bar = self.bars.get(key)
        if bar is None:
            where = f"{ALGORITHMS[key].label} fold {row['fold']}"
            state = f"FAILED {row['error']}" if row.get("error") else "done"
            print(f"{where}: {state}", file=sys.stderr, flush=True)
            return
        bar.n = min(bar.total, bar.n)
        bar.refresh()

    def close(self) -> None:
        for b in self.bars.values():
            b.close()


def units(spec: AlgoSpec, args, params: dict) -> int:
    """Progress units of one fold (must match the progress messages of the worker)."""
    n = 2
    grid = spec.quick_grid if args.quick else spec.grid
    if args.tune and grid:
        n += int(np.prod([len(v) for v in grid.values()]))
    if spec.kind == "topn":
        return n
    if args.ranking:
        n += 1
    if spec.curve_param and args.curve_iters > 0:
        final_iter = params.get(spec.curve_param)
        if final_iter is None:
            final_iter = getattr(make_algo(spec.key, params, None), spec.curve_param)
        n += max(args.curve_iters, int(final_iter)) + 1
    return n


def _listen(q, progress: Progress, stop: threading.Event) -> None:
    while True:
        try:
            msg = q.get(timeout=0.1)
        except queue_mod.Empty:
            if stop.is_set():
                return
            continue
        except (EOFError, OSError):
            return
        if msg is None:
            return
        progress.update(*msg)


def write_folds(folds: list, tmp: Path, show: bool) -> list[str]:
    """Pickle each fold once; the workers read their fold from the file."""
    from tqdm.auto import tqdm

    paths = []
    for f, fold in enumerate(tqdm(folds, desc="writing folds", disable=not show, leave=False)):
        path = tmp / f"fold{f}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(fold, fh, protocol=pickle.HIGHEST_PROTOCOL)
        paths.append(str(path))
    return paths


def _failed_row(task: dict, exc: BaseException) -> dict:
    return {
        "algorithm": task["key"],
        "label": ALGORITHMS[task["key"]].label,
        "fold": task["fold"] + 1,
        "dataset": task["dataset"],
        "run_id": task["run_id"],
        "error": f"worker died: {type(exc).__name__}: {exc}",
    }


def _run_in_process(tasks, progress, q, blas_threads) -> list[dict]:
    rows = []
    worker.set_queue(q)
    try:
        with worker.blas_limit(blas_threads):
            for t in tasks:
                row = worker.run_task(t)
                progress.finish(t["key"], row)
                rows.append(row)
    finally:
        worker.set_queue(None)
    return rows


def _run_in_pool(tasks, progress, ctx, q, n_jobs: int, worker_threads) -> list[dict]:
    rows = []
    with ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=ctx,
        max_tasks_per_child=1,
        initializer=worker.init_worker,
        initargs=(q, worker_threads),
    ) as ex:
        futs = {ex.submit(worker.run_task, t): t for t in tasks}
        try:
            for fut in as_completed(futs):
                t = futs[fut]
                try:
                    row = fut.result()
                except Exception as exc:
                    row = _failed_row(t, exc)
                progress.finish(t["key"], row)
                rows.append(row)
        except KeyboardInterrupt:
            ex.shutdown(wait=False, cancel_futures=True)
            raise
    return rows


def run_tasks(tasks: list[dict], progress: Progress, args, blas_threads, threads) -> list[dict]:
    """Every task's row, in fresh workers (``--n-jobs`` at once) or in this process."""
    stop = threading.Event()
    if args.in_process:
        q: Any = queue_mod.Queue()
    else:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        q = ctx.Queue()
    listener = threading.Thread(target=_listen, args=(q, progress, stop), daemon=True)
    listener.start()
    try:
        if args.in_process:
            rows = _run_in_process(tasks, progress, q, blas_threads)
        else:
            worker_threads = blas_threads or (threads if args.n_jobs > 1 else None)
            rows = _run_in_pool(tasks, progress, ctx, q, args.n_jobs, worker_threads)
        time.sleep(0.2)  # let the last progress messages arrive
    finally:
        stop.set()
        listener.join(timeout=2)
        progress.close()
    return rows
