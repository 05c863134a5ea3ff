"""Speed and memory of the lin-RFM engine, as ratios to Surprise SVD measured in the same run.

    python -m evaluation.benchmark_engine --data-home ../shared/movielens

1. ml-100k: ``LinRFMAlgo()`` and ``SVD()`` (defaults) are fitted on the same training folds,
   under two protocols: Surprise's ``KFold(5, random_state=0)`` of ``u.data`` (what
   ``cross_validate(algo, Dataset.load_builtin("ml-100k"))`` does) and the official u1..u5
   files. Each fit runs in a fresh process (so the peak RSS is that fit's own), alternating the
   two algorithms; reported: fit time, peak RSS above the process's RSS before the fit, and
   the ratios lin-RFM / SVD. Surprise's SVD is about 3x faster on the official files than on
   KFold folds of ``u.data``: its SGD walks Python tuples user by user, and a file sorted by
   user keeps each user's tuples together in memory; folds of the shuffled ``u.data`` do not.
2. An ML-1M-shaped synthetic problem (6,040 users x 3,706 items, 1,000,000 ratings,
   ``make_ratings``): lin-RFM's fit time and peak RSS of the fitting process.

Prints a table and writes ``results/benchmark/benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _fit_surprise_fold(args) -> dict:
    algo_name, data_home, protocol, fold, seed = args
    from surprise import SVD
    from surprise.model_selection import KFold, PredefinedKFold

    from rfm_recsys import LinRFMAlgo
    from rfm_recsys.datasets import load_movielens, ml100k_official_folds, to_surprise

    if protocol == "kfold":
        data = to_surprise(load_movielens("ml-100k", data_home=data_home, download=False))
        trainset, testset = list(KFold(5, random_state=seed).split(data))[fold]
    else:
        data, _ = ml100k_official_folds("u", data_home=data_home, download=False)
        trainset, testset = list(PredefinedKFold().split(data))[fold]
    algo = LinRFMAlgo() if algo_name == "lin-RFM" else SVD(random_state=seed)
    before = _rss_bytes()
    t0 = time.perf_counter()
    algo.fit(trainset)
    fit_s = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    preds = algo.test(testset)
    rmse = float(np.sqrt(np.mean([(p.est - p.r_ui) ** 2 for p in preds])))
    return dict(
        algo=algo_name,
        fold=fold + 1,
        fit_s=fit_s,
        peak_rss=peak,
        rss_before=before,
        fit_mem=peak - before,
        rmse=rmse,
    )


def _fit_synthetic(args) -> dict:
    n_users, n_items, n_ratings, seed = args
    from rfm_recsys.core.fitting import fit_ratings
    from rfm_recsys.datasets import make_ratings

    df = make_ratings(n_users, n_items, n_ratings, random_state=seed)
    u = df["user_id"].to_numpy() - 1
    i = df["item_id"].to_numpy() - 1
    r = df["rating"].to_numpy(np.float64)
    del df
    before = _rss_bytes()
    t0 = time.perf_counter()
    fit = fit_ratings(u, i, r, n_users, n_items)
    fit_s = time.perf_counter() - t0
    return dict(
        fit_s=fit_s,
        peak_rss=_peak_rss_bytes(),
        rss_before=before,
        fit_mem=_peak_rss_bytes() - before,
        per_iteration=[h["seconds"] for h in fit.history],
        users_are_rows=fit.users_are_rows,
        n_ratings=int(r.size),
    )


def _summarise(protocol: str, rows: list[dict]) -> dict:
    by = {n: [r for r in rows if r["algo"] == n] for n in ("SVD", "lin-RFM")}
    summary = {
        n: {k: float(np.mean([r[k] for r in v])) for k in ("fit_s", "fit_mem", "peak_rss", "rmse")}
        for n, v in by.items()
    }
    summary["ratio_fit_time"] = summary["lin-RFM"]["fit_s"] / summary["SVD"]["fit_s"]
    summary["ratio_fit_memory"] = summary["lin-RFM"]["fit_mem"] / max(summary["SVD"]["fit_mem"], 1)
    title = {"kfold": "KFold(5, random_state=seed) of u.data", "official": "official u1..u5 files"}[
        protocol
    ]
    print(f"\nml-100k, {title}, mean over folds")
    print(f"{'':10s}{'fit s':>9s}{'fit MiB':>10s}{'peak RSS MiB':>14s}{'RMSE':>8s}")
    for n in ("SVD", "lin-RFM"):
        s = summary[n]
        print(
            f"{n:10s}{s['fit_s']:9.3f}{s['fit_mem'] / 2**20:10.1f}{s['peak_rss'] / 2**20:14.1f}{s['rmse']:8.4f}"
        )
    print(
        f"ratio lin-RFM / SVD: fit time {summary['ratio_fit_time']:.2f}, "
        f"fit memory {summary['ratio_fit_memory']:.2f}\n"
    )
    return summary


def run_isolated(fn, args):
    # a fresh interpreter per fit: ru_maxrss is then that fit's peak, not an earlier one's
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, (args,))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=None, help="folder with ml-100k (zip or unpacked)")
    ap.add_argument("--folds", type=int, default=5, help="ml-100k folds to time (of 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-synthetic", action="store_true", help="only the ml-100k comparison")
    ap.add_argument("--synthetic-shape", default="6040,3706,1000000", help="users,items,ratings")
    ap.add_argument("--out", default="results/benchmark")
    args = ap.parse_args(argv)
    gib = 2**30
    out = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        }
    }
    for protocol in ("kfold", "official"):
        rows = []
        for fold in range(args.folds):
            for name in ("SVD", "lin-RFM"):
                rows.append(
                    run_isolated(
                        _fit_surprise_fold, (name, args.data_home, protocol, fold, args.seed)
                    )
                )
                r = rows[-1]
                print(
                    f"{protocol} fold {fold + 1} {name:8s} fit {r['fit_s']:.3f}s  fit memory "
                    f"{r['fit_mem'] / 2**20:.1f} MiB  RMSE {r['rmse']:.4f}",
                    flush=True,
                )
        out[f"ml100k_{protocol}"] = rows
        out[f"ml100k_{protocol}_summary"] = _summarise(protocol, rows)
    if not args.skip_synthetic:
        nu, ni, nr = (int(x) for x in args.synthetic_shape.split(","))
        syn = run_isolated(_fit_synthetic, (nu, ni, nr, args.seed))
        out["synthetic"] = dict(shape=[nu, ni, nr], **syn)
        print(
            f"\nsynthetic {nu:,} x {ni:,}, {syn['n_ratings']:,} ratings: fit {syn['fit_s']:.2f}s "
            f"(iterations at {', '.join(f'{s:.2f}' for s in syn['per_iteration'])} s), "
            f"peak RSS {syn['peak_rss'] / gib:.2f} GiB (fit added {syn['fit_mem'] / gib:.2f} GiB)"
        )
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "benchmark.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
