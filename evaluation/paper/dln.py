"""``dln``: deep linear networks (depth 2 and 3) on the ``recovery`` problems."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from evaluation.common import environment_line, read_csv, write_csv, write_text
from evaluation.paper.common import RESULTS, log, out_dir, pyplot
from evaluation.paper.methods import mc_methods
from evaluation.paper.sweep import (
    apply_overrides,
    plot_sweep,
    recovery_config,
    run_mc_sweep,
    summarise_sweep,
    threshold_ratio,
)


def _plot_training(curves: dict, cfg, path: Path) -> None:
    """Training residual against steps of each network on one problem (first shape, largest
    ratio, seed 0)."""
    plt = pyplot()
    n, d = cfg.shapes[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, h in curves.items():
        ax.semilogy([x["iteration"] for x in h], [x["rel_residual"] for x in h], label=key)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("relative training residual")
    ax.set_title(f"{n} x {d}, rank {cfg.rank}, {max(cfg.ratios):g}x dof, seed 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _comparison(args: argparse.Namespace, rows: list[dict], methods: dict) -> str:
    """The lin-RFM rows of a ``recovery`` run on the same problems, where that run is found."""
    if args.out is None:  # where `recovery` writes by default
        rec_path = RESULTS / "recovery" / ("quick" if args.quick else "") / "results.csv"
    else:  # --out DIR/dln -> DIR/recovery
        rec_path = Path(args.out).parent / "recovery" / "results.csv"
    if not rec_path.is_file():
        return "The `recovery` results were not found, so there is no side-by-side table here."
    same = {(int(r["n"]), int(r["d"]), float(r["ratio"]), int(r["seed"])) for r in rows}
    rec_rows = [
        r
        for r in read_csv(rec_path)
        if not r["method"].startswith("dln")
        and (int(r["n"]), int(r["d"]), float(r["ratio"]), int(r["seed"])) in same
    ]
    if not rec_rows:
        return "The `recovery` results were not found, so there is no side-by-side table here."
    t2, _ = summarise_sweep(rec_rows, methods)
    return f"Same problems (same generator and seeds), from `{rec_path}`:\n{t2}"


def _findings(cfg, rows: list[dict], summary: dict) -> list[str]:
    lines = []
    for n, d in cfg.shapes:
        for k in cfg.methods:
            thr = threshold_ratio(summary, n, d, k)
            mine = [r for r in rows if r["method"] == k and int(r["n"]) == n and int(r["d"]) == d]
            med_it = np.median([float(r["iterations"]) for r in mine])
            med_s = np.median([float(r["seconds"]) for r in mine])
            lines.append(
                f"- {n} x {d}, `{k}`: "
                + (
                    f">= 80% success from {thr:g}x dof"
                    if thr is not None
                    else "no ratio with >= 80% success"
                )
                + f"; median {med_it:.0f} steps, {med_s:.1f} s per fit."
            )
    return lines


def cmd_dln(args: argparse.Namespace) -> Path:
    """Run the deep-linear-network sweep; writes results.csv, two figures and report.md."""
    cfg = recovery_config(args.quick)
    cfg.methods = ["dln-d2", "dln-d3", "dln-d2-i1e-2", "dln-d3-i1e-2"]
    cfg.dln_iter = 300 if args.quick else 5000
    apply_overrides(cfg, args)
    out = out_dir(args, "dln")
    out.mkdir(parents=True, exist_ok=True)
    env = environment_line()
    t0 = time.perf_counter()
    methods = mc_methods(cfg.n_iter, cfg.dln_iter)
    curves: dict = {}
    rows = run_mc_sweep(cfg, "dln", curves)
    write_csv(out / "results.csv", rows, float_format=".6g")
    plot_sweep(rows, out / "dln_phase_transition.png", "deep linear networks")
    _plot_training(curves, cfg, out / "dln_training.png")
    tables, summary = summarise_sweep(rows, methods)
    comparison = _comparison(args, rows, methods)
    lines = _findings(cfg, rows, summary)
    report = f"""# Deep linear networks on the `recovery` problems

``X = W_L ... W_1`` (full width ``min(n, d)``), gradient descent on the squared error over the
observed entries from a small Gaussian initialisation (each factor has spectral norm about
`init_scale`, relative to the target's spectral norm), adaptive step from a local curvature bound
(a scalar time reparametrisation of gradient flow; see `rfm_recsys/baselines/dln.py`), stop when the
relative training residual < 1e-6 or after {cfg.dln_iter} steps. Depths 2 and 3, init 1e-3 and
1e-2. Same problems, seeds and success criterion as `recovery`.

Figures: `dln_phase_transition.png`, `dln_training.png` (training residual against steps on the
largest-ratio problem).

{tables}

## Findings

{chr(10).join(lines)}

Depth 3 from a small initialisation learns the singular directions one after another and each new
direction takes longer than the last (the escape time grows like 1 / init); within a fixed budget
of steps it may stop before it has fitted the training data. Such runs are failures of the budget
as much as of the model; the training residual column of `results.csv` shows which.

## Against lin-RFM

{comparison}

Run time {time.perf_counter() - t0:.0f} s. Environment: {env}.
"""
    write_text(out / "report.md", report)
    log(f"wrote {out}/results.csv, dln_phase_transition.png, dln_training.png, report.md")
    return out
