"""``speed``: lin-RFM (power 1) against IRLS-p per iteration and to an error; a big run."""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.common import environment_line, fmt_sci, markdown_table, write_csv, write_text
from evaluation.paper.common import ROOT, log, out_dir, progress, pyplot
from evaluation.paper.methods import REF_LAM
from evaluation.paper.problems import SUCCESS_TOL, make_lowrank
from evaluation.paper.tracked import TrackedRun, run_engine_tracked
from rfm_recsys.core.completion import predict_pairs
from rfm_recsys.core.engine import AGOPPower, IRLSUpdate, fit_engine


@dataclass
class SpeedConfig:
    ds: list[int]
    rank: int
    ratio: float
    n_iter: int
    time_budget: float
    eval_size: int
    big_shape: tuple[int, int]
    big_frac: float
    big_iter: int
    irls_ps: list[float]


def speed_config(quick: bool) -> SpeedConfig:
    if quick:
        return SpeedConfig([60, 120], 2, 3.0, 40, 20.0, 20000, (300, 300), 0.02, 5, [0.0])
    return SpeedConfig(
        [500, 1000, 2000, 5000], 5, 3.0, 1000, 1200.0, 50000, (5000, 5000), 0.02, 100, [0.0]
    )


THRESHOLDS = (1e-1, 1e-2, 1e-3)


def _time_to(run: TrackedRun, thr: float) -> tuple[float, int] | tuple[None, None]:
    for it, err in run.errors:
        if err < thr:
            return run.compute_seconds[it], it
    return None, None


def _big_run_child(shape: tuple[int, int], frac: float, rank: int, n_iter: int) -> dict:
    """The big run itself; executed in a fresh interpreter by :func:`big_run`."""
    n, d = shape
    t0 = time.perf_counter()
    prob = make_lowrank(n, d, rank, 0, frac=frac)
    gen = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    res = fit_engine(
        prob.R,
        ridge=REF_LAM,
        n_updates=n_iter,
        update=AGOPPower(1.0),
        tol=1e-7,
        dtype=np.float64,
        reimpose_observed=True,
    )
    fit_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows, cols = prob.missing_sample(1_000_000)
    pred = predict_pairs(res.K, res.A, rows, cols)
    truth = prob.entries(rows, cols)
    err = float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))
    iters = res.history[-1]["iteration"]
    secs = [h["seconds"] for h in res.history]
    per_iter = float(np.median(np.diff(secs))) if len(secs) > 1 else float("nan")
    return {
        "n": n,
        "d": d,
        "rank": rank,
        "observed": prob.m,
        "missing": n * d - prob.m,
        "ratio": prob.ratio,
        "iterations": iters,
        "fit_seconds": fit_s,
        "sec_per_iter_median": per_iter,
        "generate_seconds": gen,
        "peak_rss_bytes": peak,
        "rss_before_fit_bytes": rss_before,
        "rel_err_missing_sample": err,
        "missing_sample": int(rows.size),
    }


def big_run(cfg: SpeedConfig) -> dict:
    """lin-RFM (power 1) through ``fit_engine`` on a big problem, in a fresh interpreter so that
    its peak resident memory (``ru_maxrss``) is its own. The result comes back as JSON."""
    code = (
        "import json, sys; from evaluation.paper.speed import _big_run_child; "
        f"r = _big_run_child({tuple(cfg.big_shape)!r}, {cfg.big_frac!r}, {cfg.rank!r}, "
        f"{cfg.big_iter!r}); "
        "sys.stdout.write('\\nBIGRUN ' + json.dumps(r) + '\\n')"
    )
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BIGRUN "):
            return json.loads(line[len("BIGRUN ") :])
    raise RuntimeError(f"the big run failed (exit code {proc.returncode}):\n{proc.stderr[-3000:]}")


def _variants(cfg: SpeedConfig) -> list[tuple[str, str, dict]]:
    """(key, label, settings) of the compared methods."""
    return [
        ("linrfm-p1", "lin-RFM power 1, lam 5e-2", dict(update=AGOPPower(1.0), lam=REF_LAM)),
        (
            "linrfm-p1-decay",
            "lin-RFM power 1, lam 5e-2 / 1.03^k",
            dict(update=AGOPPower(1.0), lam=REF_LAM, lam_decay=1.03, lam_min=1e-10),
        ),
    ] + [
        (
            f"irls-p{p:g}",
            f"IRLS-{p:g}, eta 1.03",
            dict(update=IRLSUpdate(p=p, gamma0=1e-2, eta=1.03, gamma_min=1e-10), lam=0.0),
        )
        for p in cfg.irls_ps
    ]


def _speed_row(cfg: SpeedConfig, d: int, prob, key: str, run: TrackedRun) -> dict:
    per_iter = (
        np.diff(run.compute_seconds[1:]) if len(run.compute_seconds) > 2 else np.array([np.nan])
    )
    row = {
        "d": d,
        "rank": cfg.rank,
        "observed": prob.m,
        "frac_observed": prob.m / d**2,
        "method": key,
        "iterations": run.iterations,
        "stop": run.stop,
        "sec_per_iter_median": float(np.median(per_iter)),
        "total_seconds": run.compute_seconds[-1],
        "final_rel_err": run.errors[-1][1],
    }
    for thr in THRESHOLDS:
        s, it = _time_to(run, thr)
        row[f"seconds_to_{thr:g}"] = s if s is not None else float("nan")
        row[f"iters_to_{thr:g}"] = it if it is not None else ""
    return row


def _measure(cfg: SpeedConfig, variants) -> tuple[list[dict], dict[tuple[int, str], TrackedRun]]:
    """Every method at every d, with its error trajectory on a sample of missing entries."""
    rows = []
    curves: dict[tuple[int, str], TrackedRun] = {}
    bar = progress(len(cfg.ds) * len(variants), "speed")
    for d in cfg.ds:
        prob = make_lowrank(d, d, cfg.rank, 0, ratio=cfg.ratio)
        er, ec = prob.missing_sample(cfg.eval_size)
        truth = prob.entries(er, ec)
        tnorm = float(np.linalg.norm(truth))

        def evaluate(K, A, er=er, ec=ec, truth=truth, tnorm=tnorm):
            return float(np.linalg.norm(predict_pairs(K, A, er, ec) - truth) / tnorm)

        for key, _label, params in variants:
            run = run_engine_tracked(
                prob.R,
                n_iter=cfg.n_iter,
                tol=1e-7,
                evaluate=evaluate,
                time_budget=cfg.time_budget,
                **params,
            )
            curves[(d, key)] = run
            row = _speed_row(cfg, d, prob, key, run)
            rows.append(row)
            bar.update(1)
            log(
                f"[speed] d {d} {key:16s} {row['sec_per_iter_median']:.3f} s/iter, "
                f"{run.iterations} iters ({run.stop}), final err {row['final_rel_err']:.2e}"
            )
    bar.close()
    # ratios against lin-RFM power 1 (same d)
    for row in rows:
        base = next(r for r in rows if r["d"] == row["d"] and r["method"] == "linrfm-p1")
        row["per_iter_ratio_vs_linrfm_p1"] = (
            row["sec_per_iter_median"] / base["sec_per_iter_median"]
        )
    return rows, curves


def _plot(cfg: SpeedConfig, rows, curves, keys: list[str], path: Path) -> None:
    """Time per iteration against d; error against compute time at the largest d."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in keys:
        xs = [r["d"] for r in rows if r["method"] == key]
        ys = [r["sec_per_iter_median"] for r in rows if r["method"] == key]
        axes[0].loglog(xs, ys, marker="o", label=key)
    axes[0].set_xlabel(f"d (square d x d, rank {cfg.rank}, {cfg.ratio:g}x dof observed)")
    axes[0].set_ylabel("seconds per iteration (median)")
    axes[0].grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    dmax = max(cfg.ds)
    for key in keys:
        run = curves[(dmax, key)]
        axes[1].loglog(
            [max(run.compute_seconds[i], 1e-4) for i, _ in run.errors],
            [e for _, e in run.errors],
            label=key,
        )
    axes[1].axhline(SUCCESS_TOL, color="gray", ls="--", lw=0.8)
    axes[1].set_xlabel("compute seconds (evaluation excluded)")
    axes[1].set_ylabel("relative error, sample of missing entries")
    axes[1].set_title(f"d = {dmax}")
    axes[1].grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _tables(cfg: SpeedConfig, rows: list[dict]) -> tuple[list, list[str]]:
    """The rows of the speed table and the ratio lines (IRLS over lin-RFM)."""
    table = []
    for r in rows:
        table.append(
            [
                r["d"],
                f"`{r['method']}`",
                f"{r['sec_per_iter_median']:.3g}",
                f"{r['per_iter_ratio_vs_linrfm_p1']:.2f}",
                f"{r['iterations']} ({r['stop']})",
                *[fmt_sci(r[f"seconds_to_{t:g}"]) for t in THRESHOLDS],
                fmt_sci(r["final_rel_err"]),
            ]
        )
    ratio_lines = []
    for d in cfg.ds:
        for p in cfg.irls_ps:
            irls = next(r for r in rows if r["d"] == d and r["method"] == f"irls-p{p:g}")
            for fast in ("linrfm-p1", "linrfm-p1-decay"):
                lr = next(r for r in rows if r["d"] == d and r["method"] == fast)
                per_iter = irls["sec_per_iter_median"] / lr["sec_per_iter_median"]
                parts = [f"time per iteration x{per_iter:.1f}"]
                for thr in THRESHOLDS:
                    a, b = irls[f"seconds_to_{thr:g}"], lr[f"seconds_to_{thr:g}"]
                    if math.isfinite(a) and math.isfinite(b) and b > 0:
                        parts.append(f"time to {thr:g} x{a / b:.1f}")
                    elif math.isfinite(b):
                        parts.append(f"time to {thr:g}: only `{fast}` reached it")
                    elif math.isfinite(a):
                        parts.append(f"time to {thr:g}: only IRLS reached it")
                ratio_lines.append(f"- d = {d}, IRLS-{p:g} / `{fast}`: " + ", ".join(parts) + ".")
    return table, ratio_lines


def _report(cfg: SpeedConfig, rows: list[dict], big: dict, env: str, seconds: float) -> str:
    table, ratio_lines = _tables(cfg, rows)
    header = ["d", "method", "s / iter", "x lin-RFM p1", "iterations"]
    header += [f"s to {t:g}" for t in THRESHOLDS] + ["final error"]
    gib = 2**30
    return f"""# Speed: lin-RFM (power 1) against IRLS-p

Square d x d problems, rank {cfg.rank}, {cfg.ratio:g}x the degrees of freedom observed, seed 0, one
run per method and d in one process. Times are compute only: the error on a fixed sample of
{cfg.eval_size:,} missing entries is evaluated after every row fit but outside the timer, and only
reported. Each method stops at relative kernel change < 1e-7, after {cfg.n_iter} updates, or after
{cfg.time_budget:g} s of compute. `seconds_to_X` is the compute time until the sampled error first
fell below X ("—": not within the run).

{markdown_table(header, table)}

Ratios (IRLS over lin-RFM; > 1 means lin-RFM is faster):

{chr(10).join(ratio_lines)}

Figure: `speed.png` (left: seconds per iteration against d; right: error against compute time at
the largest d).

## A run with millions of missing entries

`fit_engine` (lin-RFM power 1, lam 5e-2, float64, observed entries re-imposed, stop at kernel
change < 1e-7 or {cfg.big_iter} updates) on a {big["n"]:,} x {big["d"]:,} rank-{big["rank"]}
matrix with {big["observed"]:,} observed and {big["missing"]:,} missing entries
({big["ratio"]:.1f}x dof), in a child process:

- {big["iterations"]} iterations in {big["fit_seconds"]:.1f} s
  ({big["sec_per_iter_median"]:.2f} s per iteration, median); generating the problem took
  {big["generate_seconds"]:.1f} s;
- peak resident memory {big["peak_rss_bytes"] / gib:.2f} GiB
  ({big["rss_before_fit_bytes"] / gib:.2f} GiB before the fit: interpreter, libraries and the
  problem);
- relative error on a sample of {big["missing_sample"]:,} missing entries:
  {fmt_sci(big["rel_err_missing_sample"])}.

Timings depend on the BLAS threads and on other load: {env}.
Run time {seconds:.0f} s.
"""


def cmd_speed(args: argparse.Namespace) -> Path:
    """Run the speed comparison and the big run; writes the CSVs, speed.png and report.md."""
    cfg = speed_config(args.quick)
    if args.ds is not None:
        cfg.ds = args.ds
    if args.time_budget is not None:
        cfg.time_budget = args.time_budget
    if args.big_iter is not None:
        cfg.big_iter = args.big_iter
    out = out_dir(args, "speed")
    out.mkdir(parents=True, exist_ok=True)
    env = environment_line()
    t0 = time.perf_counter()
    variants = _variants(cfg)
    rows, curves = _measure(cfg, variants)
    write_csv(out / "results.csv", rows, float_format=".6g")
    log(f"[speed] big run {cfg.big_shape} at {cfg.big_frac:.0%} observed (child process)")
    big = big_run(cfg)
    write_csv(out / "big_run.csv", [big], float_format=".6g")
    _plot(cfg, rows, curves, [k for k, _, _ in variants], out / "speed.png")
    write_text(out / "report.md", _report(cfg, rows, big, env, time.perf_counter() - t0))
    log(f"wrote {out}/results.csv, big_run.csv, speed.png, report.md")
    return out
