"""Choose the factored kernel's rank (``rank="auto"``) on validation splits of training folds.

    python -m evaluation.choose_rank --data-home ../shared/movielens

The protocol of :mod:`evaluation.choose_defaults`: for ml-100k and ml-latest-small, the training
part of folds 1 and 2 of a seeded 5-fold split is split again 90/10; every setting is fitted on
the 90% with the models' other defaults and scored on the 10% after each kernel update. Test
folds are never read. Each rank (and shift) is compared with the dense kernel on the same
split; the table gives the validation RMSE at the default number of updates, its difference to
the dense kernel, and the fit time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.choose_defaults import DATASETS, training_splits
from rfm_recsys.datasets import load_movielens
from rfm_recsys.fitting import FitSettings, validation_curve
from rfm_recsys.surprise_algos import LinRFMAlgo

#: lin-RFM's settings besides the kernel's form: LinRFMAlgo's defaults (ridge 10, bias_ridge 2,
#: 2 updates, power 1, orient "auto").
DEFAULTS = FitSettings.from_params(LinRFMAlgo().get_params())


def settings(ranks: list[int], shifts: list[float]):
    yield (None, 0.0)
    for r in ranks:
        for h in shifts:
            yield (r, h)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=None, help="folder with the MovieLens zips or folders")
    ap.add_argument("--folds", type=int, default=2, help="training folds used per dataset")
    ap.add_argument("--ranks", default="32,64,128,256", help="comma-separated ranks to compare")
    ap.add_argument("--shifts", default="0", help="comma-separated shifts to compare")
    ap.add_argument("--out", default="results/defaults", help="output folder")
    args = ap.parse_args(argv)
    ranks = [int(x) for x in args.ranks.split(",")]
    shifts = [float(x) for x in args.shifts.split(",")]
    rows = []
    for name in DATASETS:
        df = load_movielens(name, data_home=args.data_home, download=False)
        u, _ = pd.factorize(df["user_id"])
        i, _ = pd.factorize(df["item_id"])
        r = df["rating"].to_numpy(np.float64)
        nu, ni = u.max() + 1, i.max() + 1
        for k, fit_idx, val_idx in training_splits(df, args.folds):
            for rank, shift in settings(ranks, shifts):
                t0 = time.perf_counter()
                hist = validation_curve(
                    (u[fit_idx], i[fit_idx], r[fit_idx]),
                    (u[val_idx], i[val_idx], r[val_idx]),
                    nu,
                    ni,
                    dataclasses.replace(DEFAULTS, rank=rank, shift=shift),
                )
                rows.append(
                    dict(
                        dataset=name,
                        fold=k + 1,
                        rank="dense" if rank is None else rank,
                        shift=shift,
                        valid_rmse=hist[-1]["valid_rmse"],
                        seconds=time.perf_counter() - t0,
                    )
                )
                print(rows[-1], flush=True)
    res = pd.DataFrame(rows)
    dense = res[res["rank"] == "dense"].set_index(["dataset", "fold"])["valid_rmse"]
    res["minus_dense"] = res["valid_rmse"] - dense.loc[list(zip(res.dataset, res.fold))].values
    table = res.groupby(["dataset", "rank", "shift"], as_index=False, sort=False)[
        ["valid_rmse", "minus_dense", "seconds"]
    ].mean()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "rank_validation.csv.tmp"
    res.to_csv(tmp, index=False)
    os.replace(tmp, out / "rank_validation.csv")  # atomic: never a half-written table
    pd.set_option("display.width", 160)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return table


if __name__ == "__main__":
    main()
