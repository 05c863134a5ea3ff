"""Top-N test figures and fit cost of ImplicitLinRFM against EASE and implicit's ALS.

    python -m evaluation.benchmark_implicit --data-home ../shared/movielens \
        --chosen results/topn_defaults/chosen.json
    python -m evaluation.benchmark_implicit --large          # ML-25M-shaped fit only
    python -m evaluation.benchmark_implicit --solver-sizes   # exact vs randomized solver time

Folds: the harness's (Surprise ``KFold(5, random_state=0, shuffle=True)``), protocol: relevant =
test rating >= 4, candidates = items the user has not rated in training,
``implicit.evaluation.ranking_metrics_at_k`` at K = 10 (:mod:`rfm_recsys.ranking`).
ImplicitLinRFM runs with its class defaults; EASE and implicit's ALS with the settings
``evaluation.choose_topn_defaults`` chose for that dataset on validation splits of training
folds (``--chosen``); implicit's ALS with its library defaults is listed too. Fit times are
wall clock, one BLAS thread per fit (``threadpoolctl``), ALS with one thread.

``--large`` writes an ML-25M-shaped binary interaction matrix (162,541 x 59,047, 25,000,095
pairs from :func:`rfm_recsys.datasets.make_ratings`) to a temporary file and fits
ImplicitLinRFM on it in a fresh process with the machine's BLAS threads, reporting that
process's wall time and peak RSS (``ru_maxrss``, which includes loading the matrix).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ML25M_SHAPE = (162_541, 59_047, 25_000_095)


def test_folds(dataset: str, data_home: str | None, n_folds: int = 5):
    from surprise.model_selection import KFold

    from rfm_recsys.datasets import load_movielens, to_surprise
    from rfm_recsys.ranking import ranking_matrices

    df = load_movielens(dataset, data_home=data_home)
    data = to_surprise(df, tuple(df.attrs["rating_scale"]))
    for k, (trainset, testset) in enumerate(
        KFold(n_splits=n_folds, random_state=0, shuffle=True).split(data)
    ):
        train, test, _ = ranking_matrices(trainset, testset)
        yield k, train, test


def models_for(dataset: str, chosen: dict | None) -> dict[str, tuple[str, dict]]:
    """label -> (model key, params); a chosen.json of an earlier run is read in today's
    parameter names."""
    from evaluation.choose_topn_defaults import RENAMED

    out = {"ImplicitLinRFM (defaults)": ("implicit-linrfm", {})}
    tuned = (chosen or {}).get("tuned", {})
    if "ease" in tuned:
        params = {RENAMED.get(k, k): v for k, v in tuned["ease"][dataset].items()}
        out["EASE (tuned)"] = ("ease", params)
    else:
        out["EASE (ridge 500)"] = ("ease", {"ridge": 500.0})
    if "implicit-als" in tuned:
        out["implicit ALS (tuned)"] = ("implicit-als", tuned["implicit-als"][dataset])
    out["implicit ALS (defaults)"] = ("implicit-als", {})
    return out


def run_folds(datasets, data_home, chosen, n_folds: int) -> pd.DataFrame:
    from evaluation.choose_topn_defaults import fit_topn_model
    from rfm_recsys.core.blas import blas_threads
    from rfm_recsys.ranking import ranking_metrics

    rows = []
    for dataset in datasets:
        models = models_for(dataset, chosen)
        for fold, train, test in test_folds(dataset, data_home, n_folds):
            for label, (key, params) in models.items():
                with blas_threads(1):
                    fit_topn_model(key, params, train[:50])  # warm-up: imports, first calls
                    t = time.perf_counter()
                    model = fit_topn_model(key, params, train)
                    fit_s = time.perf_counter() - t
                    m = ranking_metrics(model, train, test, K=10)
                rows.append(
                    {
                        "dataset": dataset,
                        "fold": fold,
                        "model": label,
                        "params": json.dumps(params, sort_keys=True),
                        "precision@10": m["precision"],
                        "ndcg@10": m["ndcg"],
                        "map@10": m["map"],
                        "fit_s": fit_s,
                    }
                )
                print(
                    f"{dataset} fold {fold} {label}: p@10 {m['precision']:.4f} "
                    f"ndcg@10 {m['ndcg']:.4f} fit {fit_s:.3f}s",
                    flush=True,
                )
    return pd.DataFrame(rows)


def summary_table(df: pd.DataFrame) -> str:
    lines = [
        "| dataset | model | precision@10 | NDCG@10 | fit (s, median) | settings |",
        "|---|---|---:|---:|---:|---|",
    ]
    for (dataset, model), g in df.groupby(["dataset", "model"], sort=False):
        p, n = g["precision@10"], g["ndcg@10"]
        lines.append(
            f"| {dataset} | {model} | {p.mean():.3f} ± {p.std():.3f} | "
            f"{n.mean():.3f} ± {n.std():.3f} | {g['fit_s'].median():.3f} | "
            f"`{g['params'].iloc[0]}` |"
        )
    return "\n".join(lines)


def plot_precision_vs_fit_time(df: pd.DataFrame, path: Path) -> Path:
    """precision@10 (mean over folds, with the std as an error bar) against median fit time."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(df["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for model, g in df[df.dataset == dataset].groupby("model", sort=False):
            ax.errorbar(
                g["fit_s"].median(),
                g["precision@10"].mean(),
                yerr=g["precision@10"].std(),
                fmt="o",
                capsize=3,
                label=model,
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("fit time (s, median over folds, one BLAS thread)")
        ax.set_ylabel("precision@10 (5-fold mean ± std)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- large fit


def _large_child(path: str, params: dict) -> None:
    """Runs in a fresh process: load the matrix, fit, print a JSON line."""
    import scipy.sparse as sp

    from rfm_recsys import ImplicitLinRFM

    t0 = time.perf_counter()
    X = sp.load_npz(path).tocsr()
    assert X.nnz > 0
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    cpu = time.process_time()
    model = ImplicitLinRFM(**params).fit(X)
    fit_s = time.perf_counter() - t
    fit_cpu_s = time.process_time() - cpu
    ids, _ = model.recommend(np.arange(1000), X[:1000], N=10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "load_s": load_s,
                "fit_s": fit_s,
                "fit_cpu_s": fit_cpu_s,
                "peak_rss_gib": peak / 2**30,
                "rank": int(model.components_.shape[1]),
                "valid_ids": bool((ids >= 0).all()),
            }
        ),
        flush=True,
    )


def large_matrix(shape=ML25M_SHAPE, seed: int = 0):
    """The ML-25M-shaped binary users x items CSR matrix (``make_ratings``, half stars)."""
    import scipy.sparse as sp

    from rfm_recsys.datasets import make_ratings

    nu, ni, nr = shape
    df = make_ratings(nu, ni, nr, rating_scale=(0.5, 5), rating_step=0.5, random_state=seed)
    rows = df.user_id.to_numpy(np.int32) - 1
    cols = df.item_id.to_numpy(np.int32) - 1
    del df
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(nu, ni))


def large_fit(
    shape=ML25M_SHAPE, params: dict | None = None, seed: int = 0, cache: str | None = None
) -> dict:
    """Fit on the large matrix in a fresh process; ``cache``: an ``.npz`` to reuse or write."""
    import scipy.sparse as sp

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = cache or os.path.join(tmp, "X.npz")
        if not os.path.exists(path):
            X = large_matrix(shape, seed)
            part = path + ".part.npz"
            sp.save_npz(part, X, compressed=False)
            os.replace(part, path)
            del X
        gen_s = time.perf_counter() - t
        load1 = os.getloadavg()[0]
        code = (
            "import json, sys; from evaluation.benchmark_implicit import _large_child; "
            "_large_child(sys.argv[1], json.loads(sys.argv[2]))"
        )
        t = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", code, path, json.dumps(params or {})],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"large fit failed:\n{res.stderr}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out.update(
        shape=list(shape),
        params=params or {},
        generate_or_read_s=gen_s,
        process_wall_s=wall,
        load_average_before=load1,
        load_average_after=os.getloadavg()[0],
        cpus=os.cpu_count(),
    )
    return out


#: ``--fit-time-against``: the rating model ImplicitLinRFM's fit time is compared with.
REFERENCES = {"kernel-rfm": "KernelRFMAlgo", "linrfm": "LinRFMAlgo"}


def fit_time_ratio(data_home: str | None, repeats: int = 3, against: str = "kernel-rfm") -> dict:
    """ImplicitLinRFM's fit time on ml-100k folds against a rating model's, alternating.

    ``against`` is ``"kernel-rfm"`` (``KernelRFMAlgo()``) or ``"linrfm"`` (``LinRFMAlgo()``,
    plain lin-RFM). Both with one BLAS thread, fits interleaved on each of the 5 training folds
    so that load from other processes hits both alike; the ratio of the medians carries over to
    an idle machine better than either time.
    """
    from surprise.model_selection import KFold

    import rfm_recsys
    from rfm_recsys import ImplicitLinRFM
    from rfm_recsys.core.blas import blas_threads
    from rfm_recsys.datasets import load_movielens, to_surprise
    from rfm_recsys.ranking import ranking_matrices

    reference = getattr(rfm_recsys, REFERENCES[against])
    df = load_movielens("ml-100k", data_home=data_home)
    data = to_surprise(df, tuple(df.attrs["rating_scale"]))
    ours, ref = [], []
    with blas_threads(1):
        for trainset, testset in KFold(5, random_state=0, shuffle=True).split(data):
            train, _, _ = ranking_matrices(trainset, testset)
            ImplicitLinRFM().fit(train)  # warm-up
            for _ in range(repeats):
                t = time.perf_counter()
                ImplicitLinRFM().fit(train)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                reference().fit(trainset)
                ref.append(time.perf_counter() - t)
    out = {
        "implicit_linrfm_median_s": float(np.median(ours)),
        "reference": reference.__name__,
        "reference_median_s": float(np.median(ref)),
        "ratio": float(np.median(ours) / np.median(ref)),
        "fits_each": len(ours),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(out), flush=True)
    return out


def solver_sizes(seed: int = 0) -> pd.DataFrame:
    """Fit time of the exact and the randomized solver on MovieLens-shaped binary matrices."""
    import scipy.sparse as sp

    from rfm_recsys import ImplicitLinRFM
    from rfm_recsys.core.blas import blas_threads
    from rfm_recsys.datasets import make_ratings

    rows = []
    for nu, ni, nr in ((943, 1682, 100_000), (3000, 6000, 600_000), (6040, 3706, 1_000_209)):
        df = make_ratings(nu, ni, nr, random_state=seed)
        X = sp.csr_matrix(
            (np.ones(len(df), np.float32), (df.user_id - 1, df.item_id - 1)), shape=(nu, ni)
        )
        for solver in ("exact", "randomized"):
            with blas_threads(1):
                t = time.perf_counter()
                ImplicitLinRFM(solver=solver, random_state=0, num_threads=1).fit(X)
                rows.append(
                    {
                        "shape": f"{nu}x{ni}",
                        "nnz": X.nnz,
                        "solver": solver,
                        "fit_s": time.perf_counter() - t,
                    }
                )
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=os.environ.get("RFM_RECSYS_DATA"))
    ap.add_argument("--chosen", default=None, help="chosen.json of choose_topn_defaults")
    ap.add_argument("--datasets", default="ml-100k,ml-latest-small")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--large", action="store_true", help="only the ML-25M-shaped fit")
    ap.add_argument("--large-params", default="{}", help="ImplicitLinRFM params as JSON")
    ap.add_argument(
        "--large-cache", default=None, help="an .npz to reuse (or write) the large matrix"
    )
    ap.add_argument("--solver-sizes", action="store_true", help="only the solver timing")
    ap.add_argument(
        "--fit-time",
        action="store_true",
        help="only the ml-100k fit time against a rating model's (--fit-time-against)",
    )
    ap.add_argument(
        "--fit-time-against",
        choices=sorted(REFERENCES),
        default="kernel-rfm",
        help="the rating model of --fit-time: kernel-rfm (KernelRFMAlgo(), the default) or "
        "linrfm (LinRFMAlgo(), plain lin-RFM)",
    )
    ap.add_argument("--out", default="results/topn_benchmark")
    ap.add_argument("--replot", default=None, help="table and figure from an earlier folds.csv")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.large:
        res = large_fit(params=json.loads(args.large_params), cache=args.large_cache)
        print(json.dumps(res, indent=1))
        (out / "large.json").write_text(json.dumps(res, indent=1))
        return 0
    if args.fit_time:
        res = fit_time_ratio(args.data_home, against=args.fit_time_against)
        (out / "fit_time.json").write_text(json.dumps(res, indent=1))
        return 0
    if args.solver_sizes:
        df = solver_sizes()
        df.to_csv(out / "solver_sizes.csv", index=False)
        print(df.to_string())
        return 0
    if args.replot:
        df = pd.read_csv(args.replot)
    else:
        chosen = json.loads(Path(args.chosen).read_text()) if args.chosen else None
        df = run_folds(args.datasets.split(","), args.data_home, chosen, args.folds)
    df.to_csv(out / "folds.csv", index=False)
    table = summary_table(df)
    (out / "table.md").write_text(table + "\n")
    print(table)
    print("figure:", plot_precision_vs_fit_time(df, out / "precision_vs_fit_time.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
