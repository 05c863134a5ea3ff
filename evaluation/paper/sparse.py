"""``sparse``: sparse linear regression, lin-RFM with a diagonal feature matrix vs baselines."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.common import environment_line, fmt_sci, markdown_table, write_csv, write_text
from evaluation.paper.common import log, out_dir, progress, pyplot
from evaluation.paper.deep_linear import DiagonalLinearNetwork
from evaluation.paper.problems import SUCCESS_TOL
from evaluation.paper.regression import (
    BasisPursuitRegressor,
    IRLSRegressor,
    LassoRegressor,
    LinRFMRegressor,
)


@dataclass
class SparseConfig:
    d: int
    k: int
    ns: list[int]
    seeds: int
    dln_iter: int


def sparse_config(quick: bool) -> SparseConfig:
    if quick:
        return SparseConfig(40, 3, [12, 20], 2, 3000)
    return SparseConfig(200, 10, [20, 30, 40, 50, 60, 70, 80, 100, 120], 10, 100000)


def sparse_methods(cfg: SparseConfig) -> dict[str, Callable[[np.ndarray, np.ndarray], Any]]:
    def lasso(X: np.ndarray, y: np.ndarray):
        # alpha fixed a priori at 1e-4 of alpha_max = ||X^T y||_inf / n (all-zero solution above it)
        amax = float(np.max(np.abs(X.T @ y))) / X.shape[0]
        return LassoRegressor(alpha=1e-4 * amax, max_iter=50000, tol=1e-12).fit(X, y)

    return {
        "linrfm-p1": lambda X, y: LinRFMRegressor(power=1.0, n_iter=500).fit(X, y),
        "linrfm-p0.5": lambda X, y: LinRFMRegressor(power=0.5, n_iter=2000).fit(X, y),
        "irls-p0": lambda X, y: IRLSRegressor(p=0.0).fit(X, y),
        "irls-p1": lambda X, y: IRLSRegressor(p=1.0).fit(X, y),
        "basis-pursuit": lambda X, y: BasisPursuitRegressor().fit(X, y),
        "lasso": lasso,
        "diag-dln-d2": lambda X, y: DiagonalLinearNetwork(
            depth=2, init_scale=1e-3, n_iter=cfg.dln_iter
        ).fit(X, y),
    }


SPARSE_LABELS = {
    "linrfm-p1": "lin-RFM, diagonal M, power 1 (IRLS-0 with a fixed floor)",
    "linrfm-p0.5": "lin-RFM, diagonal M, power 1/2 (l1)",
    "irls-p0": "IRLS-0, gamma / 1.1 per iteration",
    "irls-p1": "IRLS-1, gamma / 1.1 per iteration",
    "basis-pursuit": "basis pursuit (HiGHS LP)",
    "lasso": "Lasso (FISTA), alpha = 1e-4 alpha_max",
    "diag-dln-d2": "diagonal linear network u^2 - v^2, init 1e-3",
}


def _measure(cfg: SparseConfig, methods: dict) -> list[dict]:
    """Every method on every (n, seed) problem: error, time, iterations, training residual."""
    rows: list[dict] = []
    bar = progress(len(cfg.ns) * cfg.seeds, "sparse")
    for n in cfg.ns:
        for seed in range(cfg.seeds):
            rng = np.random.default_rng(seed)
            X = rng.standard_normal((n, cfg.d))
            beta = np.zeros(cfg.d)
            beta[rng.choice(cfg.d, cfg.k, replace=False)] = rng.standard_normal(cfg.k)
            y = X @ beta
            for key, fit in methods.items():
                t1 = time.perf_counter()
                est = fit(X, y)
                secs = time.perf_counter() - t1
                err = float(np.linalg.norm(est.coef_ - beta) / np.linalg.norm(beta))
                resid = float(np.linalg.norm(X @ est.coef_ - y) / np.linalg.norm(y))
                rows.append(
                    {
                        "d": cfg.d,
                        "k": cfg.k,
                        "n": n,
                        "seed": seed,
                        "method": key,
                        "rel_err": err,
                        "success": int(err < SUCCESS_TOL),
                        "seconds": secs,
                        "iterations": getattr(est, "n_iter_", ""),
                        "train_residual": resid,
                    }
                )
            log(
                f"[sparse] n {n} seed {seed}: "
                + ", ".join(f"{r['method']} {r['rel_err']:.1e}" for r in rows[-len(methods) :])
            )
            bar.update(1)
    bar.close()
    return rows


def _plot(cfg: SparseConfig, rows: list[dict], methods: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in methods:
        rs = [r for r in rows if r["method"] == key]
        xs = cfg.ns
        succ = [np.mean([r["success"] for r in rs if r["n"] == n]) for n in xs]
        med = [np.median([r["rel_err"] for r in rs if r["n"] == n]) for n in xs]
        axes[0].plot(xs, succ, marker="o", label=key)
        axes[1].semilogy(xs, np.maximum(med, 1e-17), marker="o", label=key)
    axes[0].set_ylabel(f"success rate (relative error < {SUCCESS_TOL:g})")
    axes[1].set_ylabel("median relative error of beta")
    axes[1].axhline(SUCCESS_TOL, color="gray", ls="--", lw=0.8)
    for ax in axes:
        ax.set_xlabel(f"samples n (d = {cfg.d}, {cfg.k}-sparse)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _report(cfg: SparseConfig, rows: list[dict], methods: dict, env: str, seconds: float) -> str:
    table = []
    first_n = {}
    for key in methods:
        cells = []
        for n in cfg.ns:
            errs = [r["rel_err"] for r in rows if r["method"] == key and r["n"] == n]
            n_ok = sum(e < SUCCESS_TOL for e in errs)
            cells.append(f"{n_ok}/{len(errs)}, {fmt_sci(float(np.median(errs)))}")
        rates = [
            np.mean([r["success"] for r in rows if r["method"] == key and r["n"] == n])
            for n in cfg.ns
        ]
        first_n[key] = next(
            (n for i, n in enumerate(cfg.ns) if all(x >= 0.8 for x in rates[i:])), None
        )
        secs = np.median([r["seconds"] for r in rows if r["method"] == key])
        table.append([f"`{key}` {SPARSE_LABELS[key]}", *cells, f"{secs:.3g}"])
    lines = [
        f"- `{k}`: "
        + (
            f">= 80% success from n = {v} on"
            if v is not None
            else "no n with >= 80% success from there on"
        )
        for k, v in first_n.items()
    ]
    return f"""# Sparse linear regression: lin-RFM with a diagonal feature matrix

Noise-free ``y = X beta``: Gaussian ``X`` (n x {cfg.d}), ``beta`` {cfg.k}-sparse with Gaussian
non-zeros on a random support, {cfg.seeds} seeds per n. Success:
``||beta_hat - beta|| / ||beta|| < {SUCCESS_TOL:g}``.
All settings fixed in advance (defaults of `evaluation.paper.regression` and
`evaluation.paper.deep_linear`): lin-RFM reg 1e-8, floor 1e-12, stop at relative change 1e-8;
IRLS gamma_0 = 1e-2 max beta_0^2, gamma / 1.1 per iteration down to 1e-14 (relative), stop at
relative change 1e-10; the diagonal network runs {cfg.dln_iter:,} gradient steps at most.

Cells: successes / runs, median relative error; last column: median seconds per fit.

{markdown_table(["method", *[f"n = {n}" for n in cfg.ns], "s / fit"], table)}

Figure: `sparse_recovery.png`.

## Findings

{chr(10).join(lines)}

lin-RFM with power s is IRLS for l_p with p = 2 - 2s (power 1: p = 0; power 1/2: l1); with a
fixed floor instead of a decreasing smoothing it has no continuation, so compare `linrfm-p1` with
`irls-p0` for the effect of the schedule and `linrfm-p0.5`/`irls-p1` with `basis-pursuit` for l1.

Run time {seconds:.0f} s. Environment: {env}.
"""


def cmd_sparse(args: argparse.Namespace) -> Path:
    """Run the sparse-regression sweep; writes results.csv, sparse_recovery.png and report.md."""
    cfg = sparse_config(args.quick)
    if args.seeds is not None:
        cfg.seeds = args.seeds
    out = out_dir(args, "sparse")
    out.mkdir(parents=True, exist_ok=True)
    env = environment_line()
    t0 = time.perf_counter()
    methods = sparse_methods(cfg)
    rows = _measure(cfg, methods)
    write_csv(out / "results.csv", rows, float_format=".6g")
    _plot(cfg, rows, methods, out / "sparse_recovery.png")
    write_text(out / "report.md", _report(cfg, rows, methods, env, time.perf_counter() - t0))
    log(f"wrote {out}/results.csv, sparse_recovery.png, report.md")
    return out
