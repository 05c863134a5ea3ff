"""PNG plots of one evaluation run (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.common import finite as _ok


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_rmse_vs_fit_time(
    path: Path, rows: Sequence[dict], summary: Sequence[dict], title: str
) -> Path | None:
    """Test RMSE against fit time: one dot per fold; per algorithm the mean, the folds' range of
    fit times and the standard deviation of RMSE."""
    return _metric_vs_fit_time(path, rows, summary, title, "rmse", "test RMSE")


def plot_precision_vs_fit_time(
    path: Path, rows: Sequence[dict], summary: Sequence[dict], title: str
) -> Path | None:
    """Top-N precision@10 against fit time: one dot per fold, per algorithm the mean with the
    folds' range of fit times and the standard deviation of precision@10."""
    return _metric_vs_fit_time(path, rows, summary, title, "precision@10", "precision@10")


def _metric_vs_fit_time(
    path: Path, rows: Sequence[dict], summary: Sequence[dict], title: str, metric: str, label: str
) -> Path | None:
    pts = [r for r in rows if _ok(r.get(metric)) and _ok(r.get("fit_seconds"))]
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    # 18 distinct colours: the top-N figure has a dozen algorithms, more than one cycle of tab10
    colors = [*plt.get_cmap("tab10").colors, *plt.get_cmap("Dark2").colors]
    for j, rec in enumerate(s for s in summary if _ok(s.get(f"{metric}_mean"))):
        c = colors[j % len(colors)]
        mine = [r for r in pts if r["algorithm"] == rec["algorithm"]]
        if not mine:
            continue
        xs = [r["fit_seconds"] for r in mine]
        ax.scatter(xs, [r[metric] for r in mine], color=c, alpha=0.35, s=18)
        mx = float(rec.get("fit_seconds_mean") or np.mean(xs))
        # x: the range of the folds (a std bar would cross zero on the log axis); y: the std.
        ax.errorbar(
            mx,
            rec[f"{metric}_mean"],
            xerr=[[max(0.0, mx - min(xs))], [max(0.0, max(xs) - mx)]],
            yerr=rec.get(f"{metric}_std", 0.0),
            fmt="o",
            color=c,
            ms=8,
            capsize=3,
            label=rec["label"],
        )
    ax.set_xscale("log")
    ax.set_xlabel("fit time per fold (s, log scale)")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_rmse_per_iteration(path: Path, curves: dict[str, list[dict]], title: str) -> Path | None:
    """Test RMSE per iteration (left) and against cumulative fit time (right), per fold and mean.

    Args:
        curves: ``{label: [fold curve, ...]}`` where a fold curve is
            ``{"iteration": [...], "rmse": [...], "seconds": [...]}``.
    """
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, folds) in enumerate(curves.items()):
        c = colors[j % len(colors)]
        n = min(len(f["rmse"]) for f in folds)
        for f in folds:
            ax1.plot(f["iteration"], f["rmse"], color=c, alpha=0.25, lw=1)
            ax2.plot(f["seconds"], f["rmse"], color=c, alpha=0.25, lw=1)
        it = np.asarray(folds[0]["iteration"][:n])
        mean_rmse = np.mean([f["rmse"][:n] for f in folds], axis=0)
        mean_sec = np.mean([f["seconds"][:n] for f in folds], axis=0)
        ax1.plot(it, mean_rmse, "o-", color=c, label=label, ms=4)
        ax2.plot(mean_sec, mean_rmse, "o-", color=c, label=label, ms=4)
    ax1.set_xlabel("iteration (feature updates)")
    ax1.set_ylabel("test RMSE")
    ax2.set_xlabel("fit time to reach that iteration (s)")
    ax2.set_ylabel("test RMSE")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
