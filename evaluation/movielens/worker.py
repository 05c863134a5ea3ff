"""One (algorithm, fold) task: tune, fit with its peak memory, test, rank and trace a curve.

Each task runs in a fresh worker process (or in the harness process with ``--in-process``) and
returns its result as one flat dict, a *row*. Progress goes back to the harness through a queue
as ``(key, fold, text, units)`` messages.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import time
import traceback
from typing import Any

import numpy as np

from evaluation.common import PeakRSS
from evaluation.movielens.specs import ALGORITHMS, FINAL_MARGIN, AlgoSpec, make_algo

_QUEUE = None  # progress messages to the main process: (key, fold, text, units)


def init_worker(q: Any, blas_threads: int | None) -> None:
    """Worker initialiser: the progress queue and the BLAS thread limit."""
    global _QUEUE
    _QUEUE = q
    if blas_threads:
        from rfm_recsys.core.blas import controller

        # for the worker's whole life: never restored
        controller().limit(limits=blas_threads, user_api=None)


def set_queue(q: Any) -> None:
    """Progress queue of tasks run in this process (None to detach)."""
    global _QUEUE
    _QUEUE = q


def blas_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """A context limiting BLAS threads (a no-op for None or 0)."""
    from rfm_recsys.core.blas import blas_threads

    return blas_threads(threads, user_api=None)


def _emit(key: str, fold: int, text: str, units: int = 0) -> None:
    if _QUEUE is not None:
        with contextlib.suppress(Exception):  # progress is best effort
            _QUEUE.put((key, fold, text, units))


def _warm_up() -> None:
    # First LAPACK/BLAS calls start thread pools and load kernels: keep that out of fit times.
    a = np.random.default_rng(0).standard_normal((64, 64))
    s = a @ a.T + 64 * np.eye(64)
    np.linalg.solve(s, a)
    np.linalg.eigh(s)
    np.linalg.solve(np.broadcast_to(s, (4, 64, 64)).copy(), a[None].repeat(4, 0))


def validation_split(trainset: Any, seed: int | None) -> tuple[Any, list]:
    """A 90/10 split of a training fold's own ratings (never touches the test fold).

    The ratings' timestamps, where the training fold has them, go along (the split is the same
    with or without them).
    """
    import pandas as pd
    from surprise import Reader
    from surprise.model_selection import train_test_split

    from rfm_recsys.datasets.timestamps import TimedDatasetAutoFolds, timestamps_of_trainset

    raw = [
        (trainset.to_raw_uid(u), trainset.to_raw_iid(i), r) for u, i, r in trainset.all_ratings()
    ]
    df = pd.DataFrame(raw, columns=["user_id", "item_id", "rating"])
    data = TimedDatasetAutoFolds(
        reader=Reader(rating_scale=trainset.rating_scale),
        df=df,
        timestamps=timestamps_of_trainset(trainset),
    )
    return train_test_split(data, test_size=0.1, random_state=seed)


def _tune(key: str, params: dict, grid: dict, trainset: Any, seed, fold: int) -> tuple[dict, dict]:
    from surprise import accuracy

    t0 = time.perf_counter()
    vtrain, vtest = validation_split(trainset, seed)
    names = list(grid)
    results = []
    for values in itertools.product(*(grid[n] for n in names)):
        combo = dict(zip(names, values))
        algo = make_algo(key, {**params, **combo}, seed)
        algo.fit(vtrain)
        rmse = float(accuracy.rmse(algo.test(vtest), verbose=False))
        results.append({"params": combo, "valid_rmse": rmse})
        _emit(key, fold, f"tuning {len(results)}: {combo} -> {rmse:.4f}", 1)
    best = min(results, key=lambda r: r["valid_rmse"])
    info = {
        "grid": results,
        "best": best,
        "seconds": time.perf_counter() - t0,
        "validation_share": 0.1,
    }
    return {**params, **best["params"]}, info


def _ranking_model(spec: AlgoSpec, algo: Any, params: dict, train: Any, seed) -> tuple[Any, str]:
    """The algorithm's own ranking model when its spec has one, else the thin Surprise adapter."""
    from rfm_recsys.ranking import SurpriseTopN

    if spec.ranker is not None:
        return spec.ranker(algo, params, train, seed)
    return SurpriseTopN(algo), f"SurpriseTopN({spec.label})"


def _curve(
    key: str, spec: AlgoSpec, params: dict, trainset, testset, seed, n_max: int, fold: int
) -> dict:
    """Test RMSE after 0..n_max iterations (one refit each) and the time to reach each.

    The time of iteration ``n`` is read off the longest fit: its total wall time minus the
    engine's time for the iterations after ``n`` (so it includes the baseline fit and setup).
    Reporting only: nothing is chosen from these curves.
    """
    from surprise import accuracy

    rmse, fit_times, hist = [], [], None
    for n in range(n_max + 1):
        algo = make_algo(key, {**params, spec.curve_param: n}, seed)
        t = time.perf_counter()
        algo.fit(trainset)
        fit_times.append(time.perf_counter() - t)
        rmse.append(float(accuracy.rmse(algo.test(testset), verbose=False)))
        if n == n_max:
            hist = list(getattr(algo, "history_", []) or [])
        _emit(key, fold, f"curve {n}/{n_max}: RMSE {rmse[-1]:.4f}", 1)
    total = fit_times[-1]
    secs = list(fit_times)
    if hist:
        h = {int(rec["iteration"]): float(rec["seconds"]) for rec in hist if "seconds" in rec}
        if n_max in h:
            secs = [total - (h[n_max] - h[n]) if n in h else fit_times[n] for n in range(n_max + 1)]
    return {
        "iteration": list(range(n_max + 1)),
        "rmse": rmse,
        "seconds": secs,
        "refit_seconds": fit_times,
        "train_rmse": [float(r.get("train_rmse", float("nan"))) for r in hist] if hist else [],
    }


def time_to_final(
    curve: dict, final_iteration: int | None = None, margin: float = FINAL_MARGIN
) -> tuple[float, int, float]:
    """(seconds, iteration, final RMSE): the first point within ``margin`` of the final RMSE.

    The final RMSE is the curve's value at ``final_iteration`` (the iteration count of the model
    in the table), or its last value when that is not given.
    """
    rmse = np.asarray(curve["rmse"], dtype=np.float64)
    its = list(curve["iteration"])
    final = float(rmse[its.index(final_iteration)] if final_iteration is not None else rmse[-1])
    j = int(np.flatnonzero(rmse <= final * (1.0 + margin))[0])
    return float(curve["seconds"][j]), int(its[j]), final


def run_task(task: dict) -> dict:
    """Fit, test (and rank, and trace) one algorithm on one fold; returns the result row."""
    key, fold = task["key"], task["fold"]
    spec = ALGORITHMS[key]
    row: dict[str, Any] = {
        "algorithm": key,
        "label": spec.label,
        "fold": fold + 1,
        "dataset": task["dataset"],
        "run_id": task["run_id"],
        "memory_method": task["memory_method"],
    }
    try:
        return _run_task(task, spec, row)
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()
        _emit(key, fold, "FAILED", 0)
        return row


def _rank(row: dict, model: Any, train: Any, test: Any, label: str, info: dict) -> dict:
    from rfm_recsys.ranking import ranking_metrics

    t = time.perf_counter()
    m = ranking_metrics(model, train, test, K=10)
    row["ranking_seconds"] = time.perf_counter() - t
    row["ranking_model"] = label
    row["ranking_info"] = info
    row.update({f"{k}@10": v for k, v in m.items()})
    return m


def _tune_topn(spec: AlgoSpec, params: dict, grid: dict, trainset, task: dict):
    """The grid point with the best precision@10 on a validation split of the training fold."""
    from rfm_recsys.ranking import ranking_matrices, ranking_metrics

    key, fold, seed = task["key"], task["fold"], task["seed"]
    t0 = time.perf_counter()
    vtrain, vtest = validation_split(trainset, seed)
    train, valid, _ = ranking_matrices(vtrain, vtest, task["threshold"])
    names = list(grid)
    results = []
    for values in itertools.product(*(grid[n] for n in names)):
        combo = dict(zip(names, values))
        model, _ = spec.fit_topn({**params, **combo}, train, seed, task["threads"])
        m = ranking_metrics(model, train, valid, K=10)
        results.append({"params": combo, "valid_precision@10": m["precision"]})
        _emit(key, fold, f"tuning {len(results)}: {combo} -> p@10 {m['precision']:.4f}", 1)
    best = max(results, key=lambda r: r["valid_precision@10"])
    info = {
        "grid": results,
        "best": best,
        "seconds": time.perf_counter() - t0,
        "validation_share": 0.1,
        "criterion": "validation precision@10",
    }
    return {**params, **best["params"]}, info


def _run_topn(task: dict, spec: AlgoSpec, params: dict, trainset, testset, row: dict) -> dict:
    from rfm_recsys.ranking import ranking_matrices

    key, fold, seed = task["key"], task["fold"], task["seed"]
    train, test, info = ranking_matrices(trainset, testset, task["threshold"])
    with PeakRSS() as mem:
        t = time.perf_counter()
        model, label = spec.fit_topn(params, train, seed, task["threads"])
        row["fit_seconds"] = time.perf_counter() - t
    row["peak_rss_mb"] = mem.delta / 2**20
    _emit(key, fold, "ranking", 1)
    m = _rank(row, model, train, test, label, info)
    _emit(key, fold, f"NDCG@10 {m['ndcg']:.4f}", 1)
    return row


def _fit_and_test(task: dict, spec: AlgoSpec, params: dict, trainset, testset, row: dict):
    from surprise import accuracy

    key, fold = task["key"], task["fold"]
    algo = make_algo(key, params, task["seed"])
    with PeakRSS() as mem:
        t = time.perf_counter()
        algo.fit(trainset)
        row["fit_seconds"] = time.perf_counter() - t
    row["peak_rss_mb"] = mem.delta / 2**20
    _emit(key, fold, f"testing (fit {row['fit_seconds']:.2f} s)", 1)
    algo.test(testset[:10])  # one-off first-call costs stay out of the test time
    t = time.perf_counter()
    preds = algo.test(testset)
    row["test_seconds"] = time.perf_counter() - t
    row["rmse"] = float(accuracy.rmse(preds, verbose=False))
    row["mae"] = float(accuracy.mae(preds, verbose=False))
    row["n_impossible"] = int(sum(1 for p in preds if p.details.get("was_impossible")))
    _emit(key, fold, f"RMSE {row['rmse']:.4f}", 1)
    if hasattr(algo, "history_"):
        row["history"] = list(algo.history_)
    return algo


def _trace(task: dict, spec: AlgoSpec, algo, params: dict, trainset, testset, row: dict) -> None:
    final_iter = int(getattr(algo, spec.curve_param))
    n_max = max(task["curve_iters"], final_iter)
    curve = _curve(task["key"], spec, params, trainset, testset, task["seed"], n_max, task["fold"])
    curve["final_iteration"] = final_iter
    row["curve"] = curve
    sec, it, final = time_to_final(curve, final_iter)
    row["time_to_final_seconds"] = sec
    row["time_to_final_iteration"] = it
    row["curve_final_rmse"] = final
    row["final_model_seconds"] = float(curve["seconds"][curve["iteration"].index(final_iter)])


def _run_task(task: dict, spec: AlgoSpec, row: dict) -> dict:
    from threadpoolctl import threadpool_info

    from rfm_recsys.ranking import ranking_matrices

    key, fold, seed = task["key"], task["fold"], task["seed"]
    with open(task["fold_path"], "rb") as fh:
        trainset, testset = pickle.load(fh)
    row["n_train"] = trainset.n_ratings
    row["n_test"] = len(testset)
    _warm_up()
    row["blas_threads"] = max(
        (d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"), default=None
    )
    params = dict(task["params"])
    grid = spec.quick_grid if task["quick"] else spec.grid
    if task["tune"] and grid:
        _emit(key, fold, "tuning", 0)
        if spec.kind == "topn":
            params, tune_info = _tune_topn(spec, params, grid, trainset, task)
        else:
            params, tune_info = _tune(key, params, grid, trainset, seed, fold)
        row["tune_seconds"] = tune_info["seconds"]
        row["tune"] = tune_info
    row["params"] = params
    _emit(key, fold, "fitting", 0)
    if spec.kind == "topn":
        return _run_topn(task, spec, params, trainset, testset, row)
    algo = _fit_and_test(task, spec, params, trainset, testset, row)
    if task["ranking"]:
        train, test, info = ranking_matrices(trainset, testset, task["threshold"])
        model, label = _ranking_model(spec, algo, params, train, seed)
        m = _rank(row, model, train, test, label, info)
        _emit(key, fold, f"RMSE {row['rmse']:.4f}, NDCG@10 {m['ndcg']:.4f}", 1)
    if spec.curve_param and task["curve_iters"] > 0:
        _trace(task, spec, algo, params, trainset, testset, row)
    return row
