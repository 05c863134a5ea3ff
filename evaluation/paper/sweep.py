"""A sweep of methods over problem shapes, observation ratios and seeds, its tables and figure.

Shared by the ``recovery`` and ``dln`` experiments.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.common import fmt_sci, markdown_table
from evaluation.paper.common import log, progress, pyplot
from evaluation.paper.methods import MCMethod, mc_methods, run_mc_method
from evaluation.paper.problems import SUCCESS_TOL, make_lowrank


@dataclass
class RecoveryConfig:
    shapes: list[tuple[int, int]]
    rank: int
    ratios: list[float]
    seeds: int
    methods: list[str]
    n_iter: int
    dln_iter: int


def recovery_config(quick: bool) -> RecoveryConfig:
    if quick:
        return RecoveryConfig(
            [(40, 40), (60, 40)],
            2,
            [1.5, 3.0],
            2,
            ["linrfm-p1", "linrfm-p1-decay", "linrfm-p2", "irls-p0", "irls-p1", "dln-d2"],
            30,
            300,
        )
    return RecoveryConfig(
        [(500, 500), (1000, 500)],
        5,
        [1.0, 1.5, 2.0, 2.5, 3.0, 4.0],
        5,
        ["linrfm-p1", "linrfm-p1-decay", "linrfm-p2", "irls-p0", "irls-p1", "dln-d2"],
        1000,
        3000,
    )


def apply_overrides(cfg: RecoveryConfig, args) -> None:
    """The command line's ``--seeds``, ``--ratios``, ``--methods`` and ``--shapes``, if given."""
    for name in ("seeds", "ratios", "methods", "shapes"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)


def run_mc_sweep(cfg: RecoveryConfig, experiment: str, curves: dict | None = None) -> list[dict]:
    """Every method on every problem of the sweep. With ``curves``, the training histories of
    the deep linear networks on the first shape's largest-ratio problem, seed 0, are kept there
    (for the training-curve figure, without fitting them a second time)."""
    methods = mc_methods(cfg.n_iter, cfg.dln_iter)
    unknown = [m for m in cfg.methods if m not in methods]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(methods)}")
    rows = []
    bar = progress(len(cfg.shapes) * len(cfg.ratios) * cfg.seeds * len(cfg.methods), experiment)
    for n, d in cfg.shapes:
        for ratio in cfg.ratios:
            for seed in range(cfg.seeds):
                prob = make_lowrank(n, d, cfg.rank, seed, ratio=ratio)
                Y, mask = prob.dense(), prob.observed_mask()
                for key in cfg.methods:
                    rec = run_mc_method(methods[key], prob, Y, mask)
                    history = rec.pop("_history", None)
                    if (
                        curves is not None
                        and history is not None
                        and (n, d) == cfg.shapes[0]
                        and ratio == max(cfg.ratios)
                        and seed == 0
                    ):
                        curves[key] = history
                    row = {
                        "experiment": experiment,
                        "n": n,
                        "d": d,
                        "rank": cfg.rank,
                        "ratio": ratio,
                        "observed": prob.m,
                        "frac_observed": prob.m / (n * d),
                        "seed": seed,
                        **rec,
                    }
                    rows.append(row)
                    bar.update(1)
                    log(
                        f"[{experiment}] {n}x{d} ratio {ratio:g} seed {seed} {key:16s} "
                        f"err {rec['rel_err_missing']:.2e} it {rec['iterations']} "
                        f"({rec['stop']}) {rec['seconds']:.1f}s"
                    )
    bar.close()
    return rows


def summarise_sweep(rows: list[dict], methods: dict[str, MCMethod]) -> tuple[str, dict]:
    """Markdown tables of success counts and median errors per shape, method and ratio."""
    by = defaultdict(list)
    for r in rows:
        by[(int(r["n"]), int(r["d"]), r["method"], float(r["ratio"]))].append(r)
    shapes = sorted({(int(r["n"]), int(r["d"])) for r in rows})
    ratios = sorted({float(r["ratio"]) for r in rows})
    keys = list(dict.fromkeys(r["method"] for r in rows))
    parts = []
    summary: dict = {}
    for n, d in shapes:
        parts.append(
            f"\n#### {n} x {d}: successes (error < {SUCCESS_TOL:g}) / runs, median error\n"
        )
        table = []
        for k in keys:
            cells = []
            for ratio in ratios:
                rs = by.get((n, d, k, ratio), [])
                if not rs:
                    cells.append("—")
                    continue
                errs = np.array([float(x["rel_err_missing"]) for x in rs])
                succ = int(np.sum(errs < SUCCESS_TOL))
                med = float(np.median(errs))
                summary[(n, d, k, ratio)] = (succ, len(rs), med)
                cells.append(f"{succ}/{len(rs)}, {fmt_sci(med)}")
            label = methods[k].label if k in methods else k
            table.append([f"`{k}` {label}"] + cells)
        parts.append(markdown_table(["method"] + [f"{x:g}x dof" for x in ratios], table))
    return "\n".join(parts), summary


def plot_sweep(rows: list[dict], path: Path, title: str) -> None:
    shapes = sorted({(int(r["n"]), int(r["d"])) for r in rows})
    keys = list(dict.fromkeys(r["method"] for r in rows))
    plt = pyplot()
    fig, axes = plt.subplots(2, len(shapes), figsize=(5.5 * len(shapes), 8), squeeze=False)
    for j, (n, d) in enumerate(shapes):
        for k in keys:
            rs = [r for r in rows if int(r["n"]) == n and int(r["d"]) == d and r["method"] == k]
            ratios = sorted({float(r["ratio"]) for r in rs})
            succ = [
                np.mean(
                    [
                        float(r["rel_err_missing"]) < SUCCESS_TOL
                        for r in rs
                        if float(r["ratio"]) == x
                    ]
                )
                for x in ratios
            ]
            med = [
                np.median([float(r["rel_err_missing"]) for r in rs if float(r["ratio"]) == x])
                for x in ratios
            ]
            axes[0, j].plot(ratios, succ, marker="o", label=k)
            axes[1, j].semilogy(ratios, med, marker="o", label=k)
        axes[0, j].set_title(f"{title}: {n} x {d}")
        axes[0, j].set_ylabel(f"success rate (error < {SUCCESS_TOL:g})")
        axes[0, j].set_ylim(-0.05, 1.05)
        axes[1, j].axhline(SUCCESS_TOL, color="gray", ls="--", lw=0.8)
        axes[1, j].set_ylabel("median relative error, missing entries")
        for ax in axes[:, j]:
            ax.set_xlabel("observed entries / degrees of freedom r(n+d-r)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def threshold_ratio(summary: dict, n: int, d: int, key: str, need: float = 0.8) -> float | None:
    """Smallest ratio from which on at least ``need`` of the runs succeed."""
    ratios = sorted(r for (nn, dd, k, r) in summary if (nn, dd, k) == (n, d, key))
    ok = [summary[(n, d, key, r)][0] / summary[(n, d, key, r)][1] >= need for r in ratios]
    for i, r in enumerate(ratios):
        if all(ok[i:]):
            return r
    return None
