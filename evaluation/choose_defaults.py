"""Choose LinRFMAlgo's defaults on validation splits cut from training folds only.

    python -m evaluation.choose_defaults --data-home ../shared/movielens

For ml-100k and ml-latest-small, the training part of folds 1 and 2 of Surprise's
``KFold(5, random_state=0)`` is split again 90/10 (seeded); every setting is fitted on the 90%
and scored on the 10% after each kernel update. Test folds are never read. A setting's score is
its validation RMSE divided by the best RMSE found on that dataset, averaged over both
datasets, so the chosen defaults are good on both rather than best on one.
Writes ``<out>/validation.csv`` and ``<out>/ranking.csv`` and prints the ranking; for lin-RFM
also ``<out>/defaults.md``, which states the kernel step's defaults and how they were chosen
(:data:`KERNEL_STEP_TEXT`). With ``--irls`` the same is done for ``IRLSAlgo`` (p, ridge and the
number of updates), with ``--als`` for ``ALSAlgo`` (rank, ridge and the number of sweeps). Each
model family has its own grid and its own columns (:data:`FAMILIES`), named after the model's
parameters; every setting is fitted by the library's own fitting layer
(:func:`rfm_recsys.fitting.validation_curve` with the model's settings,
:meth:`~rfm_recsys.fitting.FitSettings.from_params`). ``--kernel-step`` reruns the kernel
step's final grid around ``KernelRFMAlgo``'s defaults (bandwidth x kernel_ridge x
n_kernel_updates) on fold 0 of both sets, each setting one ``KernelRFMAlgo`` fit (lin-RFM's
updates, then the kernel step), and ranks it the same way.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from evaluation.common import write_text
from rfm_recsys.baselines.als import fit_biased_als, predict_als
from rfm_recsys.config import KERNEL_RFM
from rfm_recsys.core.blas import blas_threads
from rfm_recsys.datasets import load_movielens
from rfm_recsys.fitting import (
    FitSettings,
    fit_ratings,
    resolve_orientation,
    resolve_rank,
    validation_curve,
)
from rfm_recsys.surprise_algos import IRLSAlgo, KernelRFMAlgo, LinRFMAlgo

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


def als_grid(quick: bool) -> Iterator[dict]:
    """ALSAlgo settings; the sweep axis is the curve."""
    ranks, ridges = ((20, 50), (0.12,)) if quick else ((20, 50, 100), (0.06, 0.12, 0.25))
    for k, ridge in itertools.product(ranks, ridges):
        yield {"rank": k, "ridge": ridge, "bias_ridge": 1.0}


def als_curve(train, valid, n_users: int, n_items: int, setting: dict, n_sweeps: int) -> list[dict]:
    """Validation RMSE after every ALS sweep (one fit, read through the sweep callback)."""
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
        rank=setting["rank"],
        ridge=setting["ridge"],
        n_sweeps=n_sweeps,
        random_state=0,
        bias_ridge=setting["bias_ridge"],
        callback=record,
    )
    return curve


def irls_grid(quick: bool) -> Iterator[dict]:
    """IRLSAlgo settings: the exponent p and the ridge."""
    for p, ridge in itertools.product((0.0, 1.0) if quick else (0.0, 0.5, 1.0), (10.0, 20.0)):
        yield {"orient": "auto", "p": p, "ridge": ridge, "bias_ridge": 2.0}


def linrfm_grid(quick: bool) -> Iterator[dict]:
    """LinRFMAlgo settings; orient 'auto' is the smaller side."""

    def one(orient: str, power: float, ridge: float, bias_ridge: float) -> dict:
        return dict(orient=orient, power=power, ridge=ridge, bias_ridge=bias_ridge)

    if quick:
        yield from (one("auto", 1.0, ridge, 5.0) for ridge in (10.0, 20.0))
        return
    for ridge, bias_ridge in itertools.product((5.0, 10.0, 20.0), (10.0, 5.0, 2.0)):
        yield one("auto", 1.0, ridge, bias_ridge)
    for power, ridge in itertools.product((0.5, 2.0), (10.0, 20.0)):
        yield one("auto", power, ridge, 5.0)
    # the other orientation, where its kernel is affordable (d = n_items)
    for ridge in (10.0, 20.0):
        yield one("items", 1.0, ridge, 5.0)


def _engine_curve(algo: type) -> Callable[..., list[dict]]:
    """Validation RMSE after every kernel update of one fit of ``algo(**setting)``, through the
    library's fitting layer (the model's other hyperparameters at their defaults)."""

    def curve(train, valid, n_users: int, n_items: int, setting: dict, n_updates: int):
        settings = FitSettings.from_params(algo(**setting).get_params(), n_updates=n_updates)
        return validation_curve(train, valid, n_users, n_items, settings)

    return curve


@dataclass(frozen=True)
class Family:
    """One model family: its grid, how its validation curve is traced, and its columns.

    Attributes:
        name: the family's name (``--als``, ``--irls``, default lin-RFM).
        columns: the setting's columns, named after the model's parameters.
        iteration: the column of the curve's axis (kernel updates or sweeps).
        grid: ``grid(quick)`` yields one dict per setting, keyed by ``columns``.
        curve: ``curve(train, valid, n_users, n_items, setting, n)`` returns one record per
            iteration with ``iteration``, ``valid_rmse`` and ``seconds``.
    """

    name: str
    columns: tuple[str, ...]
    iteration: str
    grid: Callable[[bool], Iterator[dict]]
    curve: Callable[..., list[dict]]


FAMILIES = {
    "linrfm": Family(
        "LinRFMAlgo",
        ("orient", "power", "ridge", "bias_ridge"),
        "n_updates",
        linrfm_grid,
        _engine_curve(LinRFMAlgo),
    ),
    "irls": Family(
        "IRLSAlgo",
        ("orient", "p", "ridge", "bias_ridge"),
        "n_updates",
        irls_grid,
        _engine_curve(IRLSAlgo),
    ),
    "als": Family("ALSAlgo", ("rank", "ridge", "bias_ridge"), "n_sweeps", als_grid, als_curve),
}


def _codes(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    u_codes, _ = pd.factorize(df["user_id"])
    i_codes, _ = pd.factorize(df["item_id"])
    r = df["rating"].to_numpy(np.float64)
    return u_codes, i_codes, r, int(u_codes.max()) + 1, int(i_codes.max()) + 1


def validation_rows(family: Family, name: str, df: pd.DataFrame, args) -> list[dict]:
    """Every setting of the family on every validation split of one dataset."""
    u, i, r, nu, ni = _codes(df)
    settings = list(family.grid(args.quick))
    rows = []
    for k, fit_idx, val_idx in training_splits(df, 1 if args.quick else args.folds):
        train = (u[fit_idx], i[fit_idx], r[fit_idx])
        valid = (u[val_idx], i[val_idx], r[val_idx])
        for setting in tqdm(settings, desc=f"{name} fold {k + 1}"):
            t0 = time.perf_counter()
            hist = family.curve(train, valid, nu, ni, setting, args.n_updates)
            secs = time.perf_counter() - t0
            rows.extend(
                {
                    "dataset": name,
                    "fold": k + 1,
                    **setting,
                    family.iteration: h["iteration"],
                    "valid_rmse": h["valid_rmse"],
                    "fit_seconds": h["seconds"],
                    "run_seconds": secs,
                }
                for h in hist
            )
    return rows


def rank_settings(res: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Settings by their validation RMSE over each dataset's best, averaged over the datasets."""
    per_ds = res.groupby(["dataset"] + keys, as_index=False)["valid_rmse"].mean()
    best = per_ds.groupby("dataset")["valid_rmse"].transform("min")
    per_ds["ratio"] = per_ds["valid_rmse"] / best
    wide = per_ds.pivot_table(index=keys, columns="dataset", values="valid_rmse")
    wide["mean_ratio"] = per_ds.groupby(keys)["ratio"].mean()
    return wide.dropna().sort_values("mean_ratio")


#: The kernel step's hyperparameters, in the order :data:`KERNEL_STEP_TEXT` lists them.
KERNEL_STEP_PARAMS = (
    "orient", "rank", "kernel", "bandwidth", "co_rating", "n_kernel_updates", "kernel_ridge"
)  # fmt: skip
_KERNEL_STEP_DEFAULTS = ", ".join(f"{k}={KERNEL_RFM[k].default!r}" for k in KERNEL_STEP_PARAMS)
#: The kernel step's part of the defaults and where it comes from (printed and written).
KERNEL_STEP_TEXT = f"""\
The kernel step (KernelRFMAlgo, KernelRFM; LinRFMAlgo and LinRFM are plain lin-RFM)
  Defaults (rfm_recsys.config.KERNEL_RFM): {_KERNEL_STEP_DEFAULTS}.
  After lin-RFM's AGOP updates the rows are refitted with a Gaussian kernel over the angles of
  the learned geometry plus the co-rating matrix (weight `co_rating`), the kernel over items,
  ridge `kernel_ridge`, and `n_kernel_updates` more AGOP updates with that kernel; rank "auto"
  is the dense kernel up to 4,096 items and beyond a factored kernel (lin-RFM's rank by the
  rule of rfm_recsys.core.rank_rule, the step's kernel by Nystrom with 512 landmarks).
  Chosen by python -m evaluation.explore_kernel_rfm on validation shares of folds 0/1 of
  ml-100k and ml-latest-small (evaluation/kernel_rfm_experiments.md section 9): best on both
  sets for both the dense and the factored kernel, about 0.025 validation RMSE ahead of plain
  lin-RFM. Test folds were never read. Rerun its final grid here: --kernel-step.
"""
#: ``--kernel-step``: the grid around the kernel step's defaults (the rest as the defaults).
KERNEL_STEP_GRID = {
    "bandwidth": [0.7, 1.0],
    "kernel_ridge": [2.0, 3.0, 5.0],
    "n_kernel_updates": [2, 3],
}


def kernel_step_rows(
    name: str, df: pd.DataFrame, quick: bool, grid: dict[str, list] | None = None
) -> list[dict]:
    """Validation RMSE of ``grid`` (default :data:`KERNEL_STEP_GRID`) on fold 0: one
    ``KernelRFMAlgo`` fit each.

    Every setting is ``KernelRFMAlgo``'s defaults with the grid's values (lin-RFM over items,
    then the kernel step, in the form ``rank="auto"`` gives it), fitted by the library's
    fitting layer with ``random_state=0``; ``fit_seconds`` is the whole fit.
    """
    from .explore_kernel_rfm import rmse

    u, i, r, nu, ni = _codes(df)
    scale = (float(r.min()), float(r.max()))
    _, fit_idx, val_idx = next(training_splits(df, 1))
    train = (u[fit_idx], i[fit_idx], r[fit_idx])
    valid = (u[val_idx], i[val_idx], r[val_idx])
    grid = KERNEL_STEP_GRID if grid is None else grid
    if quick:
        grid = {k: v[:1] for k, v in grid.items()}
    rows = []
    for combo in tqdm(list(itertools.product(*grid.values())), desc=name, leave=False):
        setting = dict(zip(grid, combo))
        settings = FitSettings.from_params(KernelRFMAlgo(**setting).get_params(), random_state=0)
        d = ni if resolve_orientation(settings.orient, nu, ni) else nu
        rank = resolve_rank(settings.rank, d, settings.dense_only, with_step=True)
        t0 = time.perf_counter()
        fit = fit_ratings(*train, nu, ni, settings)
        rows.append(
            {
                "dataset": name,
                "fold": 0,
                **setting,
                "valid_rmse": rmse(fit, valid, scale),
                "fit_seconds": time.perf_counter() - t0,
                "form": "dense" if rank is None else f"rank {rank}",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the protocol for one model family; returns the ranking (best first)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=None, help="folder with the MovieLens zips or folders")
    ap.add_argument(
        "--n-updates",
        "--n-iter",
        dest="n_updates",
        type=int,
        default=6,
        help="kernel updates (ALS: sweeps) tracked per setting",
    )
    ap.add_argument("--folds", type=int, default=2, help="training folds used per dataset")
    ap.add_argument("--quick", action="store_true", help="small grid, one fold (smoke run)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument(
        "--als",
        action="store_true",
        help="choose ALSAlgo's defaults instead (columns rank, ridge, bias_ridge, n_sweeps)",
    )
    which.add_argument(
        "--irls",
        action="store_true",
        help="choose IRLSAlgo's defaults instead (columns orient, p, ridge, bias_ridge, n_updates)",
    )
    which.add_argument(
        "--kernel-step",
        action="store_true",
        help="rank the kernel step's final grid (bandwidth x kernel_ridge x n_kernel_updates) "
        "around KernelRFMAlgo's defaults on fold 0 of both sets instead",
    )
    ap.add_argument(
        "--grid",
        type=json.loads,
        default=None,
        help="with --kernel-step: a JSON object of KernelRFMAlgo parameters and the values to "
        "try, in place of the final grid (e.g. '{\"solve_tol\": [null, 0.1, 0.01, 0.0001]}')",
    )
    ap.add_argument("--out", default="results/defaults", help="output folder")
    args = ap.parse_args(argv)
    if args.kernel_step:
        return kernel_step_main(args)
    family = FAMILIES["als" if args.als else "irls" if args.irls else "linrfm"]
    rows = []
    for name in DATASETS:
        df = load_movielens(name, data_home=args.data_home, download=False)
        rows += validation_rows(family, name, df, args)
    res = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "validation.csv", res.to_csv(index=False))
    keys = [*family.columns, family.iteration]
    wide = rank_settings(res, keys)
    write_text(out / "ranking.csv", wide.to_csv())
    chosen = {k: getattr(v, "item", lambda v=v: v)() for k, v in zip(keys, wide.index[0])}
    pd.set_option("display.width", 160)
    print(wide.head(15).to_string(float_format=lambda x: f"{x:.4f}"))
    print(f"\n{family.name}, chosen (best mean ratio over both datasets): {chosen}")
    if family is FAMILIES["linrfm"]:
        text = (
            "lin-RFM (LinRFMAlgo; KernelRFMAlgo's AGOP stage), chosen (best mean ratio over "
            f"both datasets): {chosen}\n\n"
        )
        write_text(out / "defaults.md", text + KERNEL_STEP_TEXT)
        print("\n" + KERNEL_STEP_TEXT)
    return wide


def kernel_step_main(args) -> pd.DataFrame:
    """``--kernel-step``: :func:`kernel_step_rows` on both sets, ranked by mean ratio."""
    rows = []
    with blas_threads(1):
        for name in DATASETS:
            df = load_movielens(name, data_home=args.data_home, download=False)
            rows += kernel_step_rows(name, df, args.quick, args.grid)
    res = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "kernel_step.csv", res.to_csv(index=False))
    keys = list(KERNEL_STEP_GRID if args.grid is None else args.grid)
    # None (a direct solve) cannot be a groupby key
    res[keys] = res[keys].astype(object).where(res[keys].notna(), "None")
    wide = rank_settings(res, keys)
    write_text(out / "kernel_step_ranking.csv", wide.to_csv())
    pd.set_option("display.width", 160)
    print(wide.to_string(float_format=lambda x: f"{x:.4f}"))
    seconds = res.pivot_table(index=keys, columns="dataset", values="fit_seconds")
    print("\nfit seconds\n" + seconds.to_string(float_format=lambda x: f"{x:.2f}"))
    print("\n" + KERNEL_STEP_TEXT)
    return wide


if __name__ == "__main__":
    main()
