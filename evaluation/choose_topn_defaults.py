"""Choose top-N settings of ImplicitLinRFM, EASE and implicit's ALS on validation splits only.

    python -m evaluation.choose_topn_defaults --data-home ../shared/movielens

For ml-100k and ml-latest-small, the training part of the first ``--folds`` folds of Surprise's
``KFold(5, random_state=0, shuffle=True)`` (the harness's folds) is split again 90/10 by
Surprise's ``train_test_split(random_state=0)`` (the harness's ``--tune`` split); every setting
is fitted on the 90% and scored on the 10% with the harness's top-N protocol (relevant =
rating >= 4; candidates = items the user has not rated in the 90%;
``implicit.evaluation.ranking_metrics_at_k`` at K = 10). Test folds are never read.

Every model gets the same budget: ``len(grid)`` settings (24 each, see the ``*_GRID`` lists).
Per dataset, the tuned setting of a model is the one with the best mean validation
precision@10 over the folds. ImplicitLinRFM's *default* is one setting for both datasets: the
best mean over datasets of precision@10 divided by that dataset's best (as
``evaluation.choose_defaults`` does for ratings). ``--study`` adds a one-knob-at-a-time study
around that default (power, alpha, n_updates) that says which knobs earn their place (a
``user_norm`` knob, rows divided by the user's degree to a power, was studied the same way and
dropped: 0.25 changed nothing and 0.5 lost on both datasets).

Writes ``<out>/validation.csv`` (one row per dataset, fold, model, setting),
``<out>/chosen.json`` (tuned settings per dataset, ImplicitLinRFM's default) and
``<out>/study.csv`` with ``--study``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = ("ml-100k", "ml-latest-small")

LINRFM_GRID = [
    {"n_updates": n, "ridge": ridge, "alpha": alpha}
    for n, ridge, alpha in itertools.product((1, 2, 3), (10.0, 20.0, 40.0, 80.0), (1.0, 2.0))
]
EASE_GRID = [{"ridge": float(round(x, 1))} for x in np.geomspace(10.0, 10_000.0, 24)]
ALS_GRID = [
    {"factors": f, "regularization": r, "alpha": a, "values": "ratings"}
    for f, r, a in itertools.product((8, 16, 32), (3.0, 10.0, 30.0, 100.0), (0.25, 0.5))
]
GRIDS = {"implicit-linrfm": LINRFM_GRID, "ease": EASE_GRID, "implicit-als": ALS_GRID}


def fit_topn_model(key: str, params: dict, train, seed: int = 0):
    """A fitted ``RecommenderBase`` for ``key`` on the ratings matrix ``train`` (users x items).

    implicit's ALS gets ``values="binary"`` (every rating is one interaction of confidence
    ``1 + alpha``) or ``"ratings"`` (confidence ``1 + alpha * rating``); ImplicitLinRFM weighs
    ratings by its own ``alpha``; EASE binarises.
    """
    if key == "implicit-linrfm":
        from rfm_recsys import ImplicitLinRFM

        return ImplicitLinRFM(**params, random_state=seed).fit(train)
    if key == "ease":
        from rfm_recsys.baselines.ease import EASE

        return EASE(**params).fit(train)
    if key == "implicit-als":
        return fit_als(train, seed=seed, **params)
    raise ValueError(f"unknown top-N model {key!r}; known: {', '.join(GRIDS)}")


def fit_als(train, *, seed: int, values: str = "binary", **params):
    """implicit's CPU ALS, one thread, on binarised or rating-valued interactions."""
    from rfm_recsys.ranking import fit_implicit_als

    return fit_implicit_als(train, **params, random_state=seed, num_threads=1, values=values)


def validation_matrices(dataset: str, data_home: str | None, n_folds: int):
    """``[(fold, train, valid)]``: 90/10 splits of the training parts of the harness's folds."""
    from surprise.model_selection import KFold

    from evaluation.movielens.worker import validation_split
    from rfm_recsys.datasets import load_movielens, to_surprise
    from rfm_recsys.ranking import ranking_matrices

    df = load_movielens(dataset, data_home=data_home)
    data = to_surprise(df, tuple(df.attrs["rating_scale"]))
    folds = list(KFold(n_splits=5, random_state=0, shuffle=True).split(data))
    out = []
    for k, (trainset, _test_never_read) in enumerate(folds[:n_folds]):
        vtrain, vtest = validation_split(trainset, 0)
        train, valid, _ = ranking_matrices(vtrain, vtest)
        out.append((k, train, valid))
    return out


def score(key: str, params: dict, train, valid) -> dict:
    """Validation metrics of one setting; the fit and the ranking use one BLAS thread."""
    from rfm_recsys.core.blas import blas_threads
    from rfm_recsys.ranking import ranking_metrics

    with blas_threads(1):
        t = time.perf_counter()
        model = fit_topn_model(key, params, train)
        fit_s = time.perf_counter() - t
        m = ranking_metrics(model, train, valid, K=10)
    return {"precision": m["precision"], "ndcg": m["ndcg"], "map": m["map"], "fit_s": fit_s}


def run_grid(splits: dict, keys: list[str], grids: dict, log) -> pd.DataFrame:
    rows = []
    for dataset, folds in splits.items():
        for fold, train, valid in folds:
            for key in keys:
                for i, params in enumerate(grids[key]):
                    r = score(key, params, train, valid)
                    rows.append(
                        {
                            "dataset": dataset,
                            "fold": fold,
                            "model": key,
                            "setting": i,
                            "params": json.dumps(params, sort_keys=True),
                            **r,
                        }
                    )
                    log(f"{dataset} fold {fold} {key} {params}: p@10 {r['precision']:.4f}")
    return pd.DataFrame(rows)


#: Parameter names of earlier runs' validation.csv files and their names now.
RENAMED = {"n_iter": "n_updates", "lam": "ridge"}


def renamed_params(text: str) -> str:
    """A setting's JSON with the parameter names of earlier runs replaced by today's."""
    params = json.loads(text)
    return json.dumps({RENAMED.get(k, k): v for k, v in params.items()}, sort_keys=True)


def choose(df: pd.DataFrame) -> dict:
    """Tuned setting per model and dataset; ImplicitLinRFM's one default for all datasets."""
    mean = df.groupby(["model", "dataset", "params"])[["precision", "ndcg", "fit_s"]].mean()
    out: dict = {"tuned": {}, "validation": {}}
    for (model, dataset), g in mean.groupby(level=[0, 1]):
        best = g["precision"].idxmax()
        out["tuned"].setdefault(model, {})[dataset] = json.loads(best[2])
        out["validation"].setdefault(model, {})[dataset] = {
            k: float(v) for k, v in g.loc[best].items()
        }
    if "implicit-linrfm" not in mean.index.get_level_values(0):
        return out
    lin = mean.loc["implicit-linrfm"]["precision"].unstack(0)  # params x dataset
    relative = (lin / lin.max()).mean(axis=1)
    out["default"] = {"implicit-linrfm": json.loads(relative.idxmax())}
    out["default_relative_precision"] = float(relative.max())
    return out


def study(splits: dict, center: dict, log) -> pd.DataFrame:
    """One knob at a time around ``center``: which of ImplicitLinRFM's knobs matter."""
    variants = [("center", {})]
    variants += [(f"power={p}", {"power": p}) for p in (0.5, 2.0)]
    variants += [(f"alpha={a}", {"alpha": a}) for a in (0.0, 0.5, 2.0)]
    variants += [(f"n_updates={n}", {"n_updates": n}) for n in (1, 2, 3, 4)]
    rows = []
    for dataset, folds in splits.items():
        for fold, train, valid in folds:
            for name, change in variants:
                params = {**center, **change}
                r = score("implicit-linrfm", params, train, valid)
                rows.append({"dataset": dataset, "fold": fold, "variant": name, **r})
                log(f"study {dataset} fold {fold} {name}: p@10 {r['precision']:.4f}")
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=os.environ.get("RFM_RECSYS_DATA"))
    ap.add_argument("--folds", type=int, default=2, help="training folds used per dataset")
    ap.add_argument("--models", default=",".join(GRIDS), help="comma-separated subset")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--study", action="store_true", help="also the one-knob study")
    ap.add_argument("--quick", action="store_true", help="3 settings each, one fold (smoke run)")
    ap.add_argument("--out", default="results/topn_defaults", help="output folder")
    ap.add_argument(
        "--from-csv",
        nargs="+",
        default=None,
        help="recompute chosen.json from validation.csv files of earlier runs (no fitting)",
    )
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    grids = {k: (GRIDS[k][:3] if args.quick else GRIDS[k]) for k in keys}
    n_folds = 1 if args.quick else args.folds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    if args.from_csv:
        df = pd.concat([pd.read_csv(f) for f in args.from_csv], ignore_index=True)
        df["params"] = df["params"].map(renamed_params)
        keys = sorted(df.model.unique())
        n_folds = int(df.fold.nunique())
        args.study = False
    else:
        splits = {
            ds: validation_matrices(ds, args.data_home, n_folds) for ds in args.datasets.split(",")
        }
        df = run_grid(splits, keys, grids, log)
    df.to_csv(out / "validation.csv", index=False)
    chosen = choose(df)
    chosen["budget"] = {
        k: int(df[df.model == k].groupby(["dataset", "fold"]).size().max()) for k in keys
    }
    chosen["protocol"] = (
        f"first {n_folds} training folds of KFold(5, random_state=0, shuffle=True), each split "
        "90/10 by surprise train_test_split(random_state=0); relevant = rating >= 4; "
        "ranking_metrics_at_k K=10; choice by mean validation precision@10"
    )
    if args.study and "implicit-linrfm" in keys:
        st = study(splits, chosen["default"]["implicit-linrfm"], log)
        st.to_csv(out / "study.csv", index=False)
        table = st.groupby(["variant", "dataset"])["precision"].mean().unstack()
        chosen["study_precision"] = {
            v: {d: float(x) for d, x in row.items()} for v, row in table.iterrows()
        }
        print(table.round(4).to_string())
    tmp = out / "chosen.json.tmp"
    tmp.write_text(json.dumps(chosen, indent=2))
    os.replace(tmp, out / "chosen.json")
    print(json.dumps({k: chosen[k] for k in ("tuned", "default") if k in chosen}, indent=1))
    return chosen


if __name__ == "__main__":
    main()
