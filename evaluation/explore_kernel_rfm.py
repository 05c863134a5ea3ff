"""Kernel RFM experiments on validation shares of training folds (never the test folds).

    python -m evaluation.explore_kernel_rfm --data-home /work/shared/movielens --experiment compare

The protocol is that of :mod:`evaluation.choose_defaults`: for ml-100k and ml-latest-small, the
training part of fold ``k`` of ``KFold(5)`` (seeded permutation) is split again 90/10; every
setting is fitted on the 90% and scored (RMSE, estimates clipped to the rating scale) on the 10%.
A lin-RFM is fitted first (``--ridge``, ``--n-updates``, ``--orient``, ``--bias-ridge``,
``--rank``), then each setting runs the engine's kernel step from that fit's learned kernel
(:func:`kernel_step_fit`: the same step ``KernelRFMAlgo`` runs after the same lin-RFM). A
setting holds fields of :class:`~rfm_recsys.core.kernel_step.KernelStep` (``kernel``,
``bandwidth``, ``co_rating``, ``ridge``, ``n_updates``, and for the factored step
``landmarks``, ``geometry_rank``, ``update_rank``); fields left out take
:data:`STEP_DEFAULTS` (the linear kernel without the co-rating signal and without updates: the
lin-RFM fit itself). Experiments:

- ``base``: lin-RFM alone over ``ridge`` and the number of updates (the starting point).
- ``co-rating`` (or ``implicit``): the co-rating matrix added to the geometry, weights 0, 0.1,
  0.3 and 1, for each setting of ``--settings``.
- ``orient``: both orientations' kernel parts blended, ``alpha`` (the weight of ``--orient``'s
  side) chosen on validation; a setting's ``"other"`` entry holds the other side's settings.
- ``bmf``: Bayesian MF (myfm, rank 10 and 32, default sampling) on the same splits.
- ``compare``: in one run, each setting of ``--settings`` as the dense kernel step (lin-RFM with
  ``rank=None``) and as the factored one (``--rank``), plain lin-RFM both ways, Surprise's SVD
  and Bayesian MF rank 10; ``seconds`` is the whole fit (lin-RFM and its kernel step).
- ``confirm``: the settings of ``--settings`` (a JSON list, or a dict of lists meaning their
  product) on every fold given.

The experiments ``oneshot`` (the Mahalanobis geometry), ``updates`` (the AGOP of the
predictor's gradient) and ``count`` (a ridge scaled by the row's rating count), and the
``landmark_choice`` and ``diag_fix`` settings of the factored step, went with those options
(validation rejected them: ``evaluation/kernel_rfm_experiments.md``); they run with the code of
commit 9881642.

Rows are appended to ``<out>/<experiment>.csv``; the table printed is the mean over folds.
One BLAS thread throughout (the machine is shared); times are wall seconds of the kernel step
alone (``compare``: of the whole fit).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rfm_recsys.baselines.bayesian_mf import fit_bayesian_mf
from rfm_recsys.core.biases import Baseline
from rfm_recsys.core.blas import blas_threads
from rfm_recsys.core.engine import AGOPPower, run_engine
from rfm_recsys.core.kernel_step import KernelStep
from rfm_recsys.datasets import load_movielens
from rfm_recsys.fitting import FitSettings, LocalRatings, RatingsFit, fit_ratings

from .choose_defaults import DATASETS, training_splits

#: The fields a setting leaves out: the linear kernel over lin-RFM's geometry with its ridge
#: (10, the default of ``--ridge``), no co-rating signal, no update.
STEP_DEFAULTS = {"kernel": "linear", "bandwidth": 1.0, "co_rating": 0.0, "ridge": 10.0}
#: Setting fields of earlier versions of this script and their names now.
RENAMED = {"lam": "ridge", "implicit_weight": "co_rating"}
#: Setting fields whose options were removed from the library.
REMOVED = ("geometry", "feature_update", "count_power", "landmark_choice", "diag_fix")
EXPERIMENTS = ("base", "co-rating", "implicit", "orient", "confirm", "bmf", "compare")
#: Experiments of removed options, and the option each needed.
REMOVED_EXPERIMENTS = {
    "oneshot": "the Mahalanobis geometry",
    "updates": "the AGOP of the predictor's gradient",
    "count": "the count-scaled ridge",
}


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


def step_of(setting: dict) -> KernelStep:
    """The :class:`KernelStep` of one setting (fields left out: :data:`STEP_DEFAULTS`)."""
    fields = {f.name for f in dataclasses.fields(KernelStep)}
    for key in setting:
        if key in RENAMED:
            raise SystemExit(f"setting {setting}: {key!r} is called {RENAMED[key]!r} now")
        if key in REMOVED:
            raise SystemExit(
                f"setting {setting}: the option {key!r} was removed from the library after "
                "validation rejected it; its experiments run with the code of commit 9881642"
            )
        if key not in fields:
            raise SystemExit(f"setting {setting}: unknown field {key!r}; known: {sorted(fields)}")
    return KernelStep(**{**STEP_DEFAULTS, **setting})


def base_fit(train, nu, ni, args, ridge=None, n_updates=None, orient=None, rank="args"):
    """lin-RFM (power 1) on the training triples, through the library's fitting layer."""
    settings = FitSettings(
        n_updates=args.n_updates if n_updates is None else n_updates,
        ridge=args.ridge if ridge is None else ridge,
        update=AGOPPower(1.0),
        orient=orient or args.orient,
        rank=args.rank if rank == "args" else rank,
        bias_ridge=args.bias_ridge,
        random_state=0,
    )
    return fit_ratings(*train, nu, ni, settings)


def kernel_step_fit(fit: RatingsFit, train, nu: int, ni: int, step: KernelStep) -> RatingsFit:
    """The engine's kernel step on a fitted lin-RFM: its biases and learned kernel kept.

    The rows (baseline residuals of ``train`` in the fit's orientation) go through
    :func:`~rfm_recsys.core.engine.run_engine` with the fit's kernel as the learned geometry
    and no further linear update, so the result is what ``KernelRFMAlgo`` fits after the same
    lin-RFM, dense or factored as the fit's kernel is.
    """
    baseline = Baseline(fit.mu, fit.b_user, fit.b_item)
    blocks = LocalRatings(*train, nu, ni).blocks(
        "all", baseline, fit.users_are_rows, fit.kernel.dtype, validating=False
    )
    res = run_engine(
        blocks, ridge=step.ridge, n_updates=0, update=AGOPPower(1.0), K0=fit.kernel, step=step
    )
    return dataclasses.replace(
        fit, kernel=res.kernel, A=res.A, ridge=res.ridge, history=res.history
    )


def _settings(text: str) -> list[dict]:
    spec = json.loads(text)
    if isinstance(spec, dict):  # a grid: every combination of the listed values
        keys = list(spec)
        spec = [dict(zip(keys, combo)) for combo in itertools.product(*spec.values())]
    return [dict(s) for s in spec]


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
        choices=EXPERIMENTS + tuple(REMOVED_EXPERIMENTS),
        metavar="{" + ",".join(EXPERIMENTS) + "}",
    )
    ap.add_argument(
        "--settings",
        default="[]",
        help="JSON list of KernelStep fields (kernel, bandwidth, co_rating, ridge, n_updates, "
        "landmarks, geometry_rank, update_rank), or a dict of lists (their product)",
    )
    ap.add_argument("--ridge", type=float, default=10.0, help="lin-RFM's ridge")
    ap.add_argument("--n-updates", type=int, default=2, help="lin-RFM's kernel updates")
    ap.add_argument("--orient", default="auto", help="lin-RFM's kernel side")
    ap.add_argument("--bias-ridge", type=float, default=2.0, help="ridge of the biases")
    ap.add_argument("--out", default="results/kernel_rfm")
    ap.add_argument(
        "--rank",
        default="auto",
        help="form of the learned kernel: 'none' (dense), an int, or 'auto' (lin-RFM's rule: "
        "rank 128 beyond 256 feature columns); a factored one makes the kernel step factored "
        "(rfm_recsys.core.kernel_step_factored)",
    )
    args = ap.parse_args(argv)
    if args.experiment in REMOVED_EXPERIMENTS:
        ap.error(
            f"--experiment {args.experiment} needs {REMOVED_EXPERIMENTS[args.experiment]}, removed "
            "from the library after validation rejected it; it runs with the code of commit "
            "9881642"
        )
    if args.rank != "auto":
        args.rank = None if args.rank == "none" else int(args.rank)
    if args.experiment == "implicit":
        args.experiment = "co-rating"
    given = _settings(args.settings)
    for s in given:  # refuse a bad setting before any fit
        step_of({k: v for k, v in s.items() if k != "other"})
        if isinstance(s.get("other"), dict):
            step_of(s["other"])
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
        for ridge, n_updates in itertools.product((5.0, 10.0, 20.0), (1, 2, 3, 4)):
            t0 = time.perf_counter()
            fit = base_fit(train, nu, ni, args, ridge=ridge, n_updates=n_updates)
            record(
                {"kernel": "linear", "ridge": ridge, "n_updates": n_updates},
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
        orient(args, given, fit, train, valid, nu, ni, scale, record)
        return
    if args.experiment == "co-rating":
        settings = [{**b, "co_rating": w} for b in given for w in (0.0, 0.1, 0.3, 1.0)]
    else:
        settings = given
    for s in settings:
        step = step_of(s)
        t0 = time.perf_counter()
        refit = kernel_step_fit(fit, train, nu, ni, step)
        record(dataclasses.asdict(step), rmse(refit, valid, scale), time.perf_counter() - t0)


def orient(args, given, fit, train, valid, nu, ni, scale, record) -> None:
    """Both orientations, each with its kernel step, blended with weights ``alpha``."""
    other = "users" if fit.users_are_rows else "items"
    t0 = time.perf_counter()
    fit2 = base_fit(train, nu, ni, args, orient=other)
    secs = time.perf_counter() - t0
    given = given or [{}]  # plain lin-RFM both ways
    cache: dict = {}

    def side(f, settings: dict):
        # one kernel step per (side, settings): pairs share the steps they have in common
        step = step_of(settings)
        key = (f.users_are_rows, step)
        if key not in cache:
            cache[key] = kernel_step_fit(f, train, nu, ni, step)
        return cache[key].predict(*valid[:2])[0]

    for s in given:
        # "other": settings of the other orientation's side, if they differ
        mine = {k: v for k, v in s.items() if k != "other"}
        e1, e2 = side(fit, mine), side(fit2, s.get("other", mine))
        for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
            est = np.clip(alpha * e1 + (1 - alpha) * e2, *scale)
            score = float(np.sqrt(np.mean((est - valid[2]) ** 2)))
            rec = {**dataclasses.asdict(step_of(mine)), "other": json.dumps(s.get("other", "same"))}
            record({**rec, "alpha_auto_side": alpha}, score, secs)


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
            refit = kernel_step_fit(fit, train, nu, ni, step_of(s))
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
