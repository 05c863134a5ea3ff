"""Learning curves of the factored kernel's rank: what plain lin-RFM loses against the dense kernel
at a given rank, and the rank ``rank="auto"`` picks, as the data grow.

    python -m evaluation.choose_rank --data-home ../shared/movielens

Data points: ml-latest-small with its users subsampled to 25/50/75/100% and ml-100k to 50/100%
(``--fractions``; a seeded choice of users, only their ratings kept). On each, the protocol of
:mod:`evaluation.choose_defaults`: the training part of fold 0 of the seeded 5-fold split
(:func:`~evaluation.choose_defaults.training_splits`) is split again 90/10 into fit and
validation parts; the test fold is never read. Plain lin-RFM with items as features
(``orient="items"``) and LinRFMAlgo's other defaults is fitted on the fit part by the library's
fitting layer (:func:`rfm_recsys.fitting.validation_curve`) with

- the dense kernel (``rank=None``);
- factored kernels of ranks 64/128/256/512 (``--ranks``), each with 0, 1 and 2 power passes of
  the range finder that gives the first update's subspace (``--passes``; the library runs 2);
  a rank at or above the number of items is not fitted (``exact``: the dense kernel's form),
  one above the number of rows keeps every direction the first kernel has (one per row);
- ``rank="auto"``: the library's rule (:mod:`rfm_recsys.core.rank_rule`); the rank it picks is
  read off the kernel of a one-update fit of the same fit part (the rule decides there).

Each setting's validation RMSE after the last update, its gap to the dense kernel on the same
split and its seconds go to ``--out`` (CSV, rewritten after every data point). The printed
Markdown table has one line per data point: the gaps at every rank and number of passes, the
rank the rule picks, and the rank needed: the smallest rank whose gap, with the library's
passes, is at most 0.001.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from evaluation.choose_defaults import DATASETS, training_splits
from evaluation.common import markdown_table, write_csv
from rfm_recsys.core import factored_kernel
from rfm_recsys.datasets import load_movielens
from rfm_recsys.fitting import FitSettings, fit_ratings, validation_curve
from rfm_recsys.surprise_algos import LinRFMAlgo

#: User fractions per dataset (the datasets of choose_defaults' protocol, DATASETS).
FRACTIONS: dict[str, tuple[float, ...]] = {
    "ml-latest-small": (0.25, 0.5, 0.75, 1.0),
    "ml-100k": (0.5, 1.0),
}
RANKS = (64, 128, 256, 512)
PASSES = (0, 1, 2)
#: A rank is "needed" once it is within this validation RMSE of the dense kernel.
NEEDED_GAP = 0.001
#: The first subspace's power passes the library runs (the "needed" rank is read at these).
LIBRARY_PASSES = factored_kernel.FIRST_PASSES
#: Plain lin-RFM with items as features, LinRFMAlgo's other defaults (ridge 10, bias_ridge 2,
#: 2 updates, power 1, solve_tol 1e-2); "auto" would take the users' side on these sets.
BASE = FitSettings.from_params(LinRFMAlgo(orient="items").get_params())

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DataPoint:
    """One point of a learning curve: the fit and validation parts of a subsample."""

    dataset: str
    fraction: float
    train: Triples
    valid: Triples
    n_rows: int
    n_items: int

    def info(self) -> dict:
        return dict(
            dataset=self.dataset,
            fraction=self.fraction,
            n_rows=self.n_rows,
            n_items=self.n_items,
            n_fit=int(self.train[2].size),
            n_valid=int(self.valid[2].size),
        )


def data_point(dataset: str, df: pd.DataFrame, fraction: float, seed: int = 0) -> DataPoint:
    """The fit/validation split of fold 0's training part, on a seeded ``fraction`` of users.

    Users are drawn before the split, so the split sees only their ratings; items nobody of
    them rated are dropped (the kernel's ``d`` is the subsample's catalogue).
    """
    users = np.unique(df["user_id"].to_numpy())
    # round() (half to even) as in the published table: 25% of 610 users is 152, 75% is 458
    k = min(users.size, max(1, round(fraction * users.size)))
    chosen = np.random.default_rng(seed).choice(users, k, replace=False)
    sub = df[df["user_id"].isin(chosen)].reset_index(drop=True)
    u, _ = pd.factorize(sub["user_id"])
    i, _ = pd.factorize(sub["item_id"])
    r = sub["rating"].to_numpy(np.float64)
    _, fit_idx, val_idx = next(training_splits(sub, 1, seed))
    return DataPoint(
        dataset,
        float(fraction),
        (u[fit_idx], i[fit_idx], r[fit_idx]),
        (u[val_idx], i[val_idx], r[val_idx]),
        int(u.max()) + 1,
        int(i.max()) + 1,
    )


def point_label(info: Mapping) -> str:
    """``ml-100k 50% (472 x 1,590, 37k)``: rows x items and fit ratings of a data point."""
    return (
        f"{info['dataset']} {info['fraction']:.0%} "
        f"({info['n_rows']:,} x {info['n_items']:,}, {info['n_fit'] / 1000:.0f}k)"
    )


@contextlib.contextmanager
def first_update_passes(passes: int | None) -> Iterator[None]:
    """Run the first update's range finder with ``passes`` power passes (``None``: as is).

    The fitting layer has no setting for them (``n_power_passes`` in rfm_recsys.config belongs
    to the implicit-feedback models), so the study overrides the constant the factored kernel
    reads when it builds its first subspace, and restores it afterwards.
    """
    if passes is None:
        yield
        return
    with mock.patch.object(factored_kernel, "FIRST_PASSES", int(passes)):
        yield


def settings_plan(
    ranks: Sequence[int], passes: Sequence[int]
) -> list[tuple[str, int | str | None, int | None]]:
    """``(kernel, rank, passes)`` in fitting order, the dense kernel first (every gap needs it)."""
    plan: list[tuple[str, int | str | None, int | None]] = [("dense", None, None)]
    plan += [("factored", r, p) for r in sorted(ranks) for p in sorted(passes)]
    plan.append(("auto", "auto", None))
    return plan


def rule_pick(point: DataPoint) -> int | str:
    """The rank ``rank="auto"`` takes on the point's fit part (``"dense"`` for few items).

    ``validation_curve`` returns the curve only; the rule decides at the first update, so a
    one-update fit of the same data, settings and seed reads the same rank off its kernel.
    """
    settings = dataclasses.replace(BASE, n_updates=1)
    fit = fit_ratings(*point.train, point.n_rows, point.n_items, settings)
    U = getattr(fit.kernel, "U", None)
    return "dense" if U is None else int(U.shape[1])


def point_rows(
    point: DataPoint,
    ranks: Sequence[int],
    passes: Sequence[int],
    log: Callable[[str], None] = print,
) -> list[dict]:
    """One row per setting of :func:`settings_plan` on ``point``."""
    rows: list[dict] = []
    dense_rmse = float("nan")
    for kernel, rank, p in settings_plan(ranks, passes):
        row = {**point.info(), "kernel": kernel, "rank": rank, "passes": p}
        if kernel == "factored" and rank >= point.n_items:
            rows.append({**row, "status": "exact"})
            continue
        settings = dataclasses.replace(BASE, rank=rank)
        t0 = time.perf_counter()
        with first_update_passes(p):
            hist = validation_curve(point.train, point.valid, point.n_rows, point.n_items, settings)
        seconds = time.perf_counter() - t0
        rmse = float(hist[-1]["valid_rmse"])
        if kernel == "dense":
            dense_rmse = rmse
        if kernel == "auto":
            row["rank"] = rule_pick(point)
        row.update(status="fitted", valid_rmse=rmse, minus_dense=rmse - dense_rmse, seconds=seconds)
        rows.append(row)
        log(
            f"{point_label(row)} {kernel} rank={row['rank']} passes={p}: "
            f"{rmse:.4f} ({rmse - dense_rmse:+.4f}) {seconds:.1f}s"
        )
    return rows


def needed_rank(
    rows: Sequence[dict], gap: float = NEEDED_GAP, passes: int = LIBRARY_PASSES
) -> int | str:
    """The smallest rank within ``gap`` of the dense kernel with ``passes`` power passes.

    ``"exact"`` when none is and a larger rank was the dense kernel's form (not fitted),
    ``">r"`` when none of the fitted ranks up to ``r`` is, ``"-"`` when none was measured.
    """
    factored = sorted(
        (r for r in rows if r["kernel"] == "factored" and r["passes"] == passes),
        key=lambda r: r["rank"],
    )
    for r in factored:
        if r["status"] == "exact":
            return "exact"
        if r["minus_dense"] <= gap:
            return int(r["rank"])
    return f">{factored[-1]['rank']}" if factored else "-"


def summary_table(rows: Sequence[dict]) -> str:
    """Markdown: one line per data point, the gaps to the dense kernel, the rule, the need."""
    fact = [r for r in rows if r["kernel"] == "factored"]
    ranks = sorted({r["rank"] for r in fact})
    passes = sorted({r["passes"] for r in fact})
    header = ["data (rows x items, ratings)", "dense RMSE"]
    header += [f"gap at {r} ({' / '.join(map(str, passes))} passes)" for r in ranks]
    header += ["rule picks", "gap with the rule", "rank needed"]
    lines = []
    for key in dict.fromkeys((r["dataset"], r["fraction"]) for r in rows):
        pr = [r for r in rows if (r["dataset"], r["fraction"]) == key]
        by = {(r["kernel"], r["rank"], r["passes"]): r for r in pr if r["kernel"] != "auto"}
        auto = next(r for r in pr if r["kernel"] == "auto")
        line = [point_label(pr[0]), f"{by['dense', None, None]['valid_rmse']:.4f}"]
        for rank in ranks:
            cells = [by.get(("factored", rank, p), {"status": "-"}) for p in passes]
            line.append(" / ".join(_gap(c) for c in cells))
        line += [auto["rank"], _gap(auto), needed_rank(pr)]
        lines.append(line)
    return markdown_table(header, lines)


def _gap(row: Mapping) -> str:
    return f"{row['minus_dense']:+.4f}" if row["status"] == "fitted" else row["status"]


def run_study(
    frames: Mapping[str, pd.DataFrame],
    fractions: Mapping[str, Sequence[float]],
    out: Path,
    ranks: Sequence[int] = RANKS,
    passes: Sequence[int] = PASSES,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Every data point of ``fractions`` (dataset -> user fractions) cut from ``frames``.

    The CSV at ``out`` is rewritten (atomically) after each point, so an interrupted run
    keeps what it measured.
    """
    rows: list[dict] = []
    for dataset, fracs in fractions.items():
        for fraction in fracs:
            point = data_point(dataset, frames[dataset], fraction, seed)
            rows += point_rows(point, ranks, passes, log)
            write_csv(Path(out), rows)
    return rows


def parse_fractions(specs: Sequence[str] | None) -> dict[str, tuple[float, ...]]:
    """``["ml-100k=0.5,1", ...]`` -> ``{"ml-100k": (0.5, 1.0), ...}`` (default: FRACTIONS)."""
    if not specs:
        return dict(FRACTIONS)
    out: dict[str, tuple[float, ...]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or name not in DATASETS:
            raise ValueError(f"--fractions takes NAME=F[,F...] with NAME in {DATASETS}: {spec!r}")
        out[name] = tuple(float(x) for x in values.split(","))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-home", default=None, help="folder with the MovieLens zips or folders")
    ap.add_argument(
        "--fractions",
        action="append",
        metavar="NAME=F[,F...]",
        help="user fractions of one dataset (repeat per dataset; default: "
        + "; ".join(f"{k}={','.join(map(str, v))}" for k, v in FRACTIONS.items())
        + ")",
    )
    ap.add_argument("--ranks", default="64,128,256,512", help="comma-separated ranks")
    ap.add_argument("--passes", default="0,1,2", help="comma-separated first-update passes")
    ap.add_argument("--seed", type=int, default=0, help="seed of the users' choice and splits")
    ap.add_argument("--out", default="results/defaults/rank_curves.csv", help="the CSV written")
    args = ap.parse_args(argv)
    try:
        fractions = parse_fractions(args.fractions)
    except ValueError as e:
        ap.error(str(e))
    frames = {
        name: load_movielens(name, data_home=args.data_home, download=False) for name in fractions
    }
    t0 = time.perf_counter()
    rows = run_study(
        frames,
        fractions,
        Path(args.out),
        ranks=[int(x) for x in args.ranks.split(",")],
        passes=[int(x) for x in args.passes.split(",")],
        seed=args.seed,
    )
    print(f"\n{summary_table(rows)}\n\n{time.perf_counter() - t0:.0f} s; rows in {args.out}")
    return rows


if __name__ == "__main__":
    main()
