"""Choose LinRFMAlgo's defaults on validation splits cut from training folds only.

    python -m evaluation.choose_defaults --data-home ../shared/movielens

For ml-100k and ml-latest-small, the training part of folds 1 and 2 of Surprise's
``KFold(5, random_state=0)`` is split again 90/10 (seeded); every setting is fitted on the 90%
and scored on the 10% after each kernel update. Test folds are never read. A setting's score is
its validation RMSE divided by the best RMSE found on that dataset, averaged over both
datasets, so the chosen defaults are good on both rather than best on one.
Writes ``<out>/validation.csv`` and ``<out>/ranking.csv`` and prints the ranking. With
``--irls`` the same is done for ``IRLSAlgo`` (p, lam and the number of iterations), with
``--als`` for ``ALSAlgo`` (factors, penalty and the number of epochs).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rfm_recsys.baselines.als import fit_biased_als, predict_als
from rfm_recsys.core.engine import AGOPPower, IRLSUpdate
from rfm_recsys.core.fitting import validation_curve
from rfm_recsys.datasets import load_movielens

DATASETS = ("ml-100k", "ml-latest-small")


def training_splits(df: pd.DataFrame, n_folds_used: int, seed: int = 0):
    """(fit, valid) index pairs: 90/10 splits of the training parts of KFold(5) folds."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    folds = np.array_split(order, 5)
    for k in range(n_folds_used):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        held = np.random.default_rng(seed + 1 + k).random(train.size) < 0.1
        yield k, train[~held], train[held]


def als_grid(quick: bool):
    """(n_factors, reg, reg_bias) settings of ALSAlgo; the epoch axis is the curve."""
    factors, regs = ((20, 50), (0.12,)) if quick else ((20, 50, 100), (0.06, 0.12, 0.25))
    for k, reg in itertools.product(factors, regs):
        yield (k, reg, 1.0)


def als_curve(
    train,
    valid,
    n_users: int,
    n_items: int,
    n_factors: int,
    reg: float,
    reg_bias: float,
    n_epochs: int,
) -> list[dict]:
    """Validation RMSE after every ALS epoch (one fit, read through the epoch callback)."""
    vu, vi, vr = valid
    curve = []

    def record(epoch, mu, b_u, b_i, P, Q):
        est, _ = predict_als(mu, b_u, b_i, P, Q, vu, vi)
        curve.append(
            {
                "iteration": epoch + 1,
                "valid_rmse": float(np.sqrt(np.mean((est - vr) ** 2))),
                "seconds": float("nan"),
            }
        )

    fit_biased_als(
        *train,
        n_users,
        n_items,
        n_factors=n_factors,
        reg=reg,
        n_epochs=n_epochs,
        random_state=0,
        reg_bias=reg_bias,
        callback=record,
    )
    return curve


def irls_grid(quick: bool):
    """(orient, p, lam, reg_user, reg_item) settings of IRLSAlgo."""
    for p, lam in itertools.product((0.0, 1.0) if quick else (0.0, 0.5, 1.0), (10.0, 20.0)):
        yield ("auto", p, lam, 2.0, 2.0)


def grid(quick: bool):
    """(orient, power, lam, reg_user, reg_item) settings; orient 'auto' is the smaller side."""
    if quick:
        yield from (("auto", 1.0, lam, 5.0, 5.0) for lam in (10.0, 20.0))
        return
    for lam, regs in itertools.product((5.0, 10.0, 20.0), ((15.0, 10.0), (5.0, 5.0), (2.0, 2.0))):
        yield ("auto", 1.0, lam) + regs
    for power, lam in itertools.product((0.5, 2.0), (10.0, 20.0)):
        yield ("auto", power, lam, 5.0, 5.0)
    # the other orientation, where its kernel is affordable (d = n_items)
    for lam in (10.0, 20.0):
        yield ("items", 1.0, lam, 5.0, 5.0)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=None, help="folder with the MovieLens zips or folders")
    ap.add_argument("--n-iter", type=int, default=6, help="kernel updates tracked per setting")
    ap.add_argument("--folds", type=int, default=2, help="training folds used per dataset")
    ap.add_argument("--quick", action="store_true", help="small grid, one fold (smoke run)")
    ap.add_argument(
        "--als",
        action="store_true",
        help="choose ALSAlgo's defaults instead (columns: orient=n_factors, "
        "power=reg, lam=reg_bias; n_iter = epochs)",
    )
    ap.add_argument(
        "--irls",
        action="store_true",
        help="choose IRLSAlgo's defaults instead (the column 'power' then holds p)",
    )
    ap.add_argument("--out", default="results/defaults", help="output folder")
    args = ap.parse_args(argv)
    rows = []
    for name in DATASETS:
        df = load_movielens(name, data_home=args.data_home, download=False)
        u_codes, _ = pd.factorize(df["user_id"])
        i_codes, _ = pd.factorize(df["item_id"])
        r = df["rating"].to_numpy(np.float64)
        nu, ni = u_codes.max() + 1, i_codes.max() + 1
        if args.als:
            for k, fit_idx, val_idx in training_splits(df, 1 if args.quick else args.folds):
                for n_factors, reg, reg_bias in tqdm(
                    list(als_grid(args.quick)), desc=f"{name} fold {k + 1}"
                ):
                    hist = als_curve(
                        (u_codes[fit_idx], i_codes[fit_idx], r[fit_idx]),
                        (u_codes[val_idx], i_codes[val_idx], r[val_idx]),
                        nu,
                        ni,
                        n_factors,
                        reg,
                        reg_bias,
                        args.n_iter,
                    )
                    rows.extend(
                        dict(
                            dataset=name,
                            fold=k + 1,
                            orient=n_factors,
                            power=reg,
                            lam=reg_bias,
                            reg_user=0.0,
                            reg_item=0.0,
                            n_iter=h["iteration"],
                            valid_rmse=h["valid_rmse"],
                            fit_seconds=h["seconds"],
                            run_seconds=float("nan"),
                        )
                        for h in hist
                    )
            continue
        settings = list(irls_grid(args.quick) if args.irls else grid(args.quick))
        for k, fit_idx, val_idx in training_splits(df, 1 if args.quick else args.folds):
            for orient, power, lam, reg_user, reg_item in tqdm(
                settings, desc=f"{name} fold {k + 1}"
            ):
                t0 = time.perf_counter()
                hist = validation_curve(
                    (u_codes[fit_idx], i_codes[fit_idx], r[fit_idx]),
                    (u_codes[val_idx], i_codes[val_idx], r[val_idx]),
                    nu,
                    ni,
                    update=IRLSUpdate(p=power) if args.irls else AGOPPower(power),
                    lam=lam,
                    n_iter=args.n_iter,
                    orient=orient,
                    reg_user=reg_user,
                    reg_item=reg_item,
                )
                secs = time.perf_counter() - t0
                for h in hist:
                    rows.append(
                        dict(
                            dataset=name,
                            fold=k + 1,
                            orient=orient,
                            power=power,
                            lam=lam,
                            reg_user=reg_user,
                            reg_item=reg_item,
                            n_iter=h["iteration"],
                            valid_rmse=h["valid_rmse"],
                            fit_seconds=h["seconds"],
                            run_seconds=secs,
                        )
                    )
    res = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / "validation.csv", index=False)
    keys = ["orient", "power", "lam", "reg_user", "reg_item", "n_iter"]
    per_ds = res.groupby(["dataset"] + keys, as_index=False)["valid_rmse"].mean()
    per_ds["ratio"] = per_ds["valid_rmse"] / per_ds.groupby("dataset")["valid_rmse"].transform(
        "min"
    )
    wide = per_ds.pivot_table(index=keys, columns="dataset", values="valid_rmse")
    wide["mean_ratio"] = per_ds.groupby(keys)["ratio"].mean()
    wide = wide.dropna().sort_values("mean_ratio")
    wide.to_csv(out / "ranking.csv")
    pd.set_option("display.width", 160)
    print(wide.head(15).to_string(float_format=lambda x: f"{x:.4f}"))
    print(f"\nchosen (best mean ratio over both datasets): {dict(zip(keys, wide.index[0]))}")
    return wide


if __name__ == "__main__":
    main()
