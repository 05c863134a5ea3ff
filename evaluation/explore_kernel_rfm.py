"""Kernel RFM experiments on validation shares of training folds (never the test folds).

    python -m evaluation.explore_kernel_rfm --data-home /work/shared/movielens --experiment oneshot

The protocol is that of :mod:`evaluation.choose_defaults`: for ml-100k and ml-latest-small, the
training part of fold ``k`` of ``KFold(5)`` (seeded permutation) is split again 90/10; every
setting is fitted on the 90% and scored (RMSE, estimates clipped to the rating scale) on the 10%.
A lin-RFM is fitted first (``--lam``, ``--n-iter``, ``--orient``, bias penalties), then each
kernel setting refits its rows (:func:`rfm_recsys.core.kernel_rfm.refit_kernel`). Experiments:

- ``base``: lin-RFM alone over ``lam`` and the number of updates (the starting point).
- ``oneshot``: kernel x geometry x bandwidth x refit ridge, no further update.
- ``updates``: 1-2 feature updates after the refit, AGOP of the completion or of the gradient.
- ``count``: ridge scaled by the row's number of ratings (also on the linear kernel).
- ``implicit``: the co-rating matrix added to the geometry.
- ``orient``: both orientations' kernel parts blended, ``alpha`` (the weight of ``--orient``'s
  side) chosen on validation; a setting's ``"other"`` entry holds the other side's settings.
- ``bmf``: Bayesian MF (myfm, rank 10 and 32, default sampling) on the same splits.
- ``compare``: in one run, each setting of ``--settings`` as the dense kernel step (lin-RFM with
  ``rank=None``) and as the factored one (``--rank``), plain lin-RFM both ways, Surprise's SVD
  and Bayesian MF rank 10; ``seconds`` is the whole fit (lin-RFM and its kernel step).
- ``confirm``: the settings of ``--settings`` (a JSON list, or a dict of lists meaning their
  product) on every fold given.

Rows are appended to ``<out>/<experiment>.csv``; the table printed is the mean over folds.
One BLAS thread throughout (the machine is shared); times are wall seconds of the refit alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from rfm_recsys.baselines.bayesian_mf import fit_bayesian_mf
from rfm_recsys.core.blas import blas_threads
from rfm_recsys.core.engine import AGOPPower
from rfm_recsys.core.fitting import RatingsFit, fit_ratings
from rfm_recsys.core.kernel_rfm import KernelSettings, refit_kernel
from rfm_recsys.datasets import load_movielens

from .choose_defaults import DATASETS, training_splits


def load(name: str, data_home: str | None):
    df = load_movielens(name, data_home=data_home, download=False)
    u, _ = pd.factorize(df["user_id"])
    i, _ = pd.factorize(df["item_id"])
    r = df["rating"].to_numpy(np.float64)
    return df, u.astype(np.int64), i.astype(np.int64), r


def rmse(fit: RatingsFit, valid, scale) -> float:
    u, i, r = valid
    est = np.clip(fit.predict(u, i)[0], *scale)
    return float(np.sqrt(np.mean((est - r) ** 2)))


def base_fit(train, nu, ni, args, lam=None, n_iter=None, orient=None, rank="args") -> RatingsFit:
    return fit_ratings(
        *train,
        nu,
        ni,
        update=AGOPPower(1.0),
        lam=args.lam if lam is None else lam,
        n_iter=args.n_iter if n_iter is None else n_iter,
        orient=orient or args.orient,
        reg_user=args.reg_user,
        reg_item=args.reg_item,
        rank=args.rank if rank == "args" else rank,
        random_state=0,
    )


def oneshot_grid():
    for kernel, geometry, h, lam in itertools.product(
        ("gaussian", "laplace"), ("cosine", "mahalanobis"), (0.5, 1.0, 2.0), (0.5, 1.0, 3.0, 10.0)
    ):
        yield KernelSettings(kernel, h, geometry, lam=lam)


def updates_grid(best: list[dict]):
    for b in best:
        for n_up, how in itertools.product((1, 2), ("completion", "gradient")):
            if how == "gradient" and b["geometry"] != "mahalanobis":
                continue
            yield KernelSettings(**{**b, "n_updates": n_up, "feature_update": how})


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--folds", default="0", help="comma-separated fold indices (0-based)")
    ap.add_argument(
        "--experiment",
        required=True,
        choices=[
            "base",
            "oneshot",
            "updates",
            "count",
            "implicit",
            "orient",
            "confirm",
            "bmf",
            "compare",
        ],
    )
    ap.add_argument(
        "--settings",
        default="[]",
        help="JSON list of KernelSettings fields, or a dict of lists (their product)",
    )
    ap.add_argument("--lam", type=float, default=10.0)
    ap.add_argument("--n-iter", type=int, default=2)
    ap.add_argument("--orient", default="auto")
    ap.add_argument("--reg-user", type=float, default=2.0)
    ap.add_argument("--reg-item", type=float, default=2.0)
    ap.add_argument("--out", default="results/kernel_rfm")
    ap.add_argument(
        "--rank",
        default="auto",
        help="form of the learned kernel: 'none' (dense), an int, or 'auto' (the default's); a "
        "factored one makes the kernel step factored (rfm_recsys.core.kernel_rfm_factored)",
    )
    args = ap.parse_args(argv)
    if args.rank != "auto":
        args.rank = None if args.rank == "none" else int(args.rank)
    spec = json.loads(args.settings)
    if isinstance(spec, dict):  # a grid: every combination of the listed values
        keys = list(spec)
        spec = [dict(zip(keys, combo)) for combo in itertools.product(*spec.values())]
    given = [dict(s) for s in spec]
    folds = [int(f) for f in args.folds.split(",")]
    rows = []
    with blas_threads(1):
        for name in args.datasets.split(","):
            df, u, i, r = load(name, args.data_home)
            nu, ni = int(u.max()) + 1, int(i.max()) + 1
            scale = (float(r.min()), float(r.max()))
            for k, fit_idx, val_idx in training_splits(df, max(folds) + 1):
                if k not in folds:
                    continue
                train = (u[fit_idx], i[fit_idx], r[fit_idx])
                valid = (u[val_idx], i[val_idx], r[val_idx])

                def record(setting: dict, score: float, secs: float, ds=name, fold=k):
                    rows.append(
                        {
                            "dataset": ds,
                            "fold": fold,
                            **setting,
                            "valid_rmse": score,
                            "seconds": secs,
                        }
                    )
                    print(f"{ds} fold {fold} {setting}: {score:.4f} ({secs:.1f}s)", flush=True)

                run_experiment(args, given, train, valid, nu, ni, scale, record)
    res = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.experiment}.csv"
    res.to_csv(path, mode="a", header=not path.exists(), index=False)
    keys = [c for c in res.columns if c not in ("dataset", "fold", "valid_rmse", "seconds")]
    table = (
        res.astype(object)
        .fillna("-")
        .pivot_table(index=keys, columns="dataset", values="valid_rmse", aggfunc="mean")
    )
    table["mean"] = table.mean(axis=1)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    print(table.sort_values("mean").head(25).to_string(float_format=lambda x: f"{x:.4f}"))
    return table


def run_experiment(args, given, train, valid, nu, ni, scale, record) -> None:
    t0 = time.perf_counter()
    if args.experiment == "base":
        for lam, n_iter in itertools.product((5.0, 10.0, 20.0), (1, 2, 3, 4)):
            t0 = time.perf_counter()
            fit = base_fit(train, nu, ni, args, lam=lam, n_iter=n_iter)
            record(
                {"kernel": "linear", "lam": lam, "n_iter": n_iter},
                rmse(fit, valid, scale),
                time.perf_counter() - t0,
            )
        return
    if args.experiment == "compare":
        compare(args, given, train, valid, nu, ni, scale, record)
        return
    if args.experiment == "bmf":
        for rank in (10, 32):
            t0 = time.perf_counter()
            bmf = fit_bayesian_mf(*train, nu, ni, rank=rank, random_state=0)
            est = np.clip(bmf.predict(*valid[:2])[0], *scale)
            score = float(np.sqrt(np.mean((est - valid[2]) ** 2)))
            record({"kernel": f"BayesianMF (myfm) rank {rank}"}, score, time.perf_counter() - t0)
        return
    fit = base_fit(train, nu, ni, args)
    base_secs = time.perf_counter() - t0
    record({"kernel": "lin-RFM"}, rmse(fit, valid, scale), base_secs)
    if args.experiment == "orient":
        other = "users" if fit.users_are_rows else "items"
        t0 = time.perf_counter()
        fit2 = base_fit(train, nu, ni, args, orient=other)
        secs = time.perf_counter() - t0
        given = given or [asdict(KernelSettings())]
        cache: dict = {}

        def side(f, settings: dict):
            # one refit per (side, settings): pairs share the refits they have in common
            key = (f.users_are_rows, json.dumps(settings, sort_keys=True))
            if key not in cache:
                cache[key] = refit_kernel(f, *train, KernelSettings(**settings))[0]
            return cache[key].predict(*valid[:2])[0]

        for s in given:
            # "other": settings of the other orientation's side, if they differ
            mine = {k: v for k, v in s.items() if k != "other"}
            e1, e2 = side(fit, mine), side(fit2, s.get("other", mine))
            for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
                est = np.clip(alpha * e1 + (1 - alpha) * e2, *scale)
                score = float(np.sqrt(np.mean((est - valid[2]) ** 2)))
                rec = {**mine, "other": json.dumps(s.get("other", "same"))}
                record({**rec, "alpha_auto_side": alpha}, score, secs)
        return
    if args.experiment == "oneshot":
        settings = list(oneshot_grid())
    elif args.experiment == "updates":
        settings = list(updates_grid(given))
    elif args.experiment == "count":
        base = given or [asdict(KernelSettings("linear", lam=args.lam))]
        settings = [
            KernelSettings(**{**b, "count_power": p})
            for b in base
            for p in (-0.5, 0.0, 0.25, 0.5, 1.0)
        ]
    elif args.experiment == "implicit":
        settings = [
            KernelSettings(**{**b, "implicit_weight": w})
            for b in given
            for w in (0.0, 0.1, 0.3, 1.0)
        ]
    else:
        settings = [KernelSettings(**s) for s in given]
    for s in settings:
        t0 = time.perf_counter()
        refit, _ = refit_kernel(fit, *train, s)
        record(asdict(s), rmse(refit, valid, scale), time.perf_counter() - t0)


def compare(args, given, train, valid, nu, ni, scale, record) -> None:
    """Dense and factored kernel steps and the references, fit seconds from one run."""
    from surprise import SVD, Dataset, Reader

    for form, rank in (("dense", None), ("factored", args.rank)):
        t0 = time.perf_counter()
        fit = base_fit(train, nu, ni, args, rank=rank)
        base_secs = time.perf_counter() - t0
        record({"kernel": "lin-RFM", "form": form}, rmse(fit, valid, scale), base_secs)
        for s in given:
            t0 = time.perf_counter()
            refit, _ = refit_kernel(fit, *train, KernelSettings(**s))
            secs = base_secs + time.perf_counter() - t0
            record({**s, "form": form}, rmse(refit, valid, scale), secs)
    df = pd.DataFrame({"u": train[0], "i": train[1], "r": train[2]})
    ts = Dataset.load_from_df(df, Reader(rating_scale=scale)).build_full_trainset()
    t0 = time.perf_counter()
    algo = SVD(random_state=0).fit(ts)
    secs = time.perf_counter() - t0
    est = np.array([algo.predict(a, b, clip=False).est for a, b in zip(*valid[:2])])
    score = float(np.sqrt(np.mean((np.clip(est, *scale) - valid[2]) ** 2)))
    record({"kernel": "SVD (Surprise)"}, score, secs)
    t0 = time.perf_counter()
    bmf = fit_bayesian_mf(*train, nu, ni, rank=10, random_state=0)
    secs = time.perf_counter() - t0
    est = np.clip(bmf.predict(*valid[:2])[0], *scale)
    score = float(np.sqrt(np.mean((est - valid[2]) ** 2)))
    record({"kernel": "BayesianMF (myfm) rank 10"}, score, secs)


if __name__ == "__main__":
    main()
