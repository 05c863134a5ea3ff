"""Summaries, tables and the files of one comparison run (results.csv, results.json, report.md).

Everything here is plain data in, text or files out, so it can be tested without fitting
anything. A *row* is one (algorithm, fold) result as a flat dict; :func:`summarise` turns the rows
into one record per algorithm with the mean and standard deviation over folds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.common import (
    finite,
    fmt_fixed,
    jsonable,
    markdown_table,
    text_table,
    write_csv,
    write_json,
    write_text,
)
from evaluation.movielens.specs import FINAL_MARGIN, LINRFM_LABEL, RELEVANCE_THRESHOLD

#: Columns of results.csv, in order (missing values are empty cells).
CSV_COLUMNS = (
    "dataset", "run_id", "algorithm", "label", "fold", "rmse", "mae", "fit_seconds",
    "test_seconds", "peak_rss_mb", "memory_method", "tune_seconds", "n_train", "n_test",
    "precision@10", "map@10", "ndcg@10", "auc@10", "ranking_seconds", "ranking_model",
    "time_to_final_seconds", "final_model_seconds", "curve_final_rmse", "params", "error",
)  # fmt: skip

#: Metrics averaged per algorithm (mean and sample standard deviation over folds).
SUMMARY_METRICS = (
    "rmse", "mae", "fit_seconds", "test_seconds", "peak_rss_mb", "tune_seconds",
    "precision@10", "map@10", "ndcg@10", "auc@10", "ranking_seconds", "time_to_final_seconds",
    "final_model_seconds", "curve_final_rmse",
)  # fmt: skip

_finite = finite


def summarise(rows: Sequence[dict], order: Sequence[str] | None = None) -> list[dict]:
    """One record per algorithm: ``algorithm``, ``label``, ``folds``, ``<metric>_mean``, ``_std``.

    The standard deviation is the sample one (``ddof=1``; 0 with a single fold). Metrics that
    are missing or non-finite for every fold (e.g. RMSE of a top-N-only model) are NaN.
    """
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["algorithm"], []).append(r)
    keys = [k for k in (order or []) if k in by] + [k for k in by if k not in (order or [])]
    out = []
    for key in keys:
        rs = by[key]
        rec: dict[str, Any] = {
            "algorithm": key,
            "label": rs[0].get("label", key),
            "folds": len(rs),
            "failed_folds": sum(1 for r in rs if r.get("error")),
        }
        for m in SUMMARY_METRICS:
            vals = np.array([float(r[m]) for r in rs if _finite(r.get(m))], dtype=np.float64)
            rec[f"{m}_mean"] = float(vals.mean()) if vals.size else float("nan")
            rec[f"{m}_std"] = (
                float(vals.std(ddof=1)) if vals.size > 1 else (0.0 if vals.size else float("nan"))
            )
        out.append(rec)
    return out


def _pm(rec: dict, metric: str, digits: int) -> str:
    m, s = rec.get(f"{metric}_mean"), rec.get(f"{metric}_std")
    if m is None or not math.isfinite(m):
        return "—"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def rating_table(summary: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the rating-prediction table (mean ± std over folds)."""
    header = ["algorithm", "RMSE", "MAE", "fit (s)", "test (s)", "peak RSS (MB)"]
    rows = []
    for rec in summary:
        if (
            not math.isfinite(rec.get("rmse_mean", float("nan")))
            and rec.get("failed_folds", 0) == 0
        ):
            continue  # top-N-only models
        label = rec["label"] + (
            f" ({rec['failed_folds']} failed)" if rec.get("failed_folds") else ""
        )
        rows.append(
            [
                label,
                _pm(rec, "rmse", 4),
                _pm(rec, "mae", 4),
                _pm(rec, "fit_seconds", 2),
                _pm(rec, "test_seconds", 2),
                _pm(rec, "peak_rss_mb", 1),
            ]
        )
    return header, rows


def ranking_table(summary: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the top-N table (only algorithms with ranking results)."""
    header = ["algorithm", "precision@10", "MAP@10", "NDCG@10"]
    rows = []
    for rec in summary:
        if not math.isfinite(rec.get("ndcg@10_mean", float("nan"))):
            continue
        rows.append(
            [
                rec["label"],
                _pm(rec, "precision@10", 4),
                _pm(rec, "map@10", 4),
                _pm(rec, "ndcg@10", 4),
            ]
        )
    return header, rows


def time_to_final_table(speed: dict) -> tuple[list[str], list[list[str]]]:
    """Table of the time each curve algorithm needs to get within 1% of its final RMSE."""
    header = [
        "algorithm",
        "n_updates (final model)",
        "final test RMSE",
        "time to within 1% (s)",
        "iteration reaching it",
        "time to the final model (s)",
    ]
    rows = []
    for label, rec in speed.get("algorithms", {}).items():
        rows.append(
            [
                label,
                str(rec.get("iterations", "")),
                _fmt(rec.get("final_rmse_mean"), 4),
                _fmt(rec.get("seconds_mean"), 2)
                + (f" ± {rec['seconds_std']:.2f}" if _finite(rec.get("seconds_std")) else ""),
                _fmt(rec.get("iteration_mean"), 1),
                _fmt(rec.get("final_model_seconds_mean"), 2)
                + (
                    f" ± {rec['final_model_seconds_std']:.2f}"
                    if _finite(rec.get("final_model_seconds_std"))
                    else ""
                ),
            ]
        )
    return header, rows


_fmt = fmt_fixed


def write_results_csv(path: Path, rows: Sequence[dict]) -> None:
    """results.csv: one row per (algorithm, fold), columns :data:`CSV_COLUMNS`."""
    write_csv(path, rows, CSV_COLUMNS)


def speed_summary(rows: list[dict]) -> dict:
    """Time to within 1% of the final test RMSE per curve algorithm, and IRLS / lin-RFM."""
    out: dict[str, Any] = {"margin": FINAL_MARGIN, "algorithms": {}}
    per: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("curve") and not r.get("error"):
            per.setdefault(r["label"], []).append(r)
    for label, rs in per.items():
        secs = np.array([r["time_to_final_seconds"] for r in rs])
        full = np.array([r["final_model_seconds"] for r in rs])
        out["algorithms"][label] = {
            "final_model_seconds_mean": float(full.mean()),
            "final_model_seconds_std": float(full.std(ddof=1)) if full.size > 1 else 0.0,
            "iterations": rs[0]["curve"].get("final_iteration", len(rs[0]["curve"]["rmse"]) - 1),
            "seconds_mean": float(secs.mean()),
            "seconds_std": float(secs.std(ddof=1)) if secs.size > 1 else 0.0,
            "iteration_mean": float(np.mean([r["time_to_final_iteration"] for r in rs])),
            "final_rmse_mean": float(np.mean([r["curve_final_rmse"] for r in rs])),
            "per_fold_seconds": secs.tolist(),
        }
    a = out["algorithms"]
    lin = LINRFM_LABEL
    if lin in a and "IRLS-p" in a and a[lin]["seconds_mean"] > 0:
        out.update(_speed_ratio(a[lin], a["IRLS-p"]))
    return out


def _speed_ratio(lr: dict, ir: dict) -> dict:
    ratio = ir["seconds_mean"] / lr["seconds_mean"]
    ratio_full = ir["final_model_seconds_mean"] / max(lr["final_model_seconds_mean"], 1e-12)
    text = (
        f"lin-RFM gets within {FINAL_MARGIN:.0%} of its final test RMSE (that of its "
        f"{lr['iterations']}-iteration model) in {lr['seconds_mean']:.2f} s, IRLS-p (final = "
        f"its {ir['iterations']}-iteration model) in {ir['seconds_mean']:.2f} s: {ratio:.1f}x. "
        f"Fitting the final models themselves takes {lr['final_model_seconds_mean']:.2f} s and "
        f"{ir['final_model_seconds_mean']:.2f} s: {ratio_full:.1f}x (target: lin-RFM at "
        "least 3x faster)."
    )
    if lr["iteration_mean"] == 0 and ir["iteration_mean"] == 0:
        text += (
            " Both are within 1% already at iteration 0 (baseline plus one ridge fit with "
            "K = I): the 1% criterion does not separate them on this data, the final-model "
            "times do."
        )
    return {"ratio": ratio, "ratio_final_model": ratio_full, "ratio_text": text}


_TOP_N = (
    "implicit.evaluation.ranking_metrics_at_k(model, train, test, K=10); train = the fold's "
    "training ratings (those items are never recommended), test = 1 for test ratings >= 4 whose "
    "user and item are in the training fold; users without such items are skipped. "
    "precision@10 is implicit's: hits / sum_u min(10, |relevant_u|). Rating models rank by "
    "predicted rating (lin-RFM and kernel RFM through the RecommenderBase faces of "
    "rfm_recsys.model.LinRFM and KernelRFM fitted on the same training matrix, kernel RFM with "
    "the kernel over items when orient='both'; IRLS-p, ALS and Surprise's through "
    "rfm_recsys.ranking.SurpriseTopN); the implicit-feedback models ImplicitLinRFM, EASE and "
    "implicit-ALS are fitted on the fold's users x items training matrix (ImplicitLinRFM with "
    "confidences 1 + alpha * rating, EASE binarised, implicit-ALS binarised unless its "
    "values='ratings')"
)


def describe_protocol(
    args: Any, dataset: str, data_info: dict, threads: tuple, memory_method: str
) -> dict[str, Any]:
    """The protocol entries of the report: data, seed, hyperparameters, timing and memory."""
    blas_threads, n_threads = threads
    hyper = (
        "--tune: per fold, the grid point with the lowest RMSE (rating models) or the highest "
        "precision@10 (top-N models, the same number of settings each) on a 10% validation "
        "split of the fold's training ratings (seeded), refitted on the whole training fold"
        if args.tune
        else "documented defaults" + (" (--quick epochs)" if args.quick else "")
    )
    timing = (
        "time.perf_counter around fit(trainset) and test(testset); the first BLAS/LAPACK calls "
        "are warmed up before; "
        + (f"{args.n_jobs} fits at once" if args.n_jobs > 1 else "one fit at a time")
        + "; BLAS threads per fit: "
        + (str(blas_threads) if blas_threads else "library default")
        + f"; implicit num_threads: {n_threads}"
    )
    out: dict[str, Any] = {
        "dataset": dataset,
        "data_source": data_info.get("source", ""),
        "seed": args.seed,
        "hyperparameters": hyper,
        "timing": timing,
        "peak_memory": memory_method,
        "relevance_threshold": RELEVANCE_THRESHOLD,
    }
    if args.ranking:
        out["top_n"] = _TOP_N
    if args.curve_iters > 0:
        out["curves"] = (
            f"lin-RFM and IRLS-p refitted with 0..max({args.curve_iters}, n_updates) iterations "
            "on each training fold and scored on its test fold (reporting only, nothing is chosen "
            "from them); the time of iteration n is the wall time of the longest fit minus its "
            f"engine time after iteration n; 'reaches its final RMSE' = the first iteration "
            f"within {FINAL_MARGIN:.0%} of the test RMSE of the model in the table (its n_updates "
            "iterations)"
        )
    return out


def _machine_lines(m: dict) -> list[str]:
    lines = [
        f"- CPU: {m.get('cpu')} ({m.get('logical_cores')} logical cores), "
        f"RAM {m.get('ram_gib')} GiB",
        f"- OS: {m.get('os')}; Python {m.get('python')} ({m.get('python_implementation')})",
    ]
    if m.get("load_average") is not None:
        lines += [f"- load average at the start: {m['load_average']}"]
    if m.get("blas"):
        lines += [f"- BLAS: {json.dumps(m['blas'])}"]
    if m.get("blas_env"):
        lines += [f"- BLAS environment: {json.dumps(m['blas_env'], sort_keys=True)}"]
    return lines


def _result_sections(summary, meta: dict, speed: dict | None, plots, skipped: dict) -> list[str]:
    parts = ["## Rating prediction (mean ± std over folds)", ""]
    parts += [markdown_table(*rating_table(summary)), ""]
    h, r = ranking_table(summary)
    if r:
        threshold = meta["protocol"].get("relevance_threshold", RELEVANCE_THRESHOLD)
        parts += [f"## Top-N (K = 10, relevant = test rating >= {threshold:g})", ""]
        parts += [markdown_table(h, r), ""]
    if skipped:
        parts += ["## Skipped", ""]
        parts += [f"- {label}: {reason}" for label, reason in skipped.items()] + [""]
    if speed and speed.get("algorithms"):
        parts += ["## Time to reach the final test RMSE", ""]
        parts += [markdown_table(*time_to_final_table(speed)), ""]
        if speed.get("ratio") is not None:
            parts += [speed["ratio_text"], ""]
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{p}]({p})" for p in plots] + [""]
    return parts


def write_report(
    path: Path,
    *,
    title: str,
    summary: Sequence[dict],
    meta: dict,
    speed: dict | None,
    plots: Sequence[str],
    notes: Sequence[str],
    skipped: dict[str, str] | None = None,
) -> str:
    """report.md: the tables, what was skipped and why, the protocol, the machine, package
    versions and the exact command."""
    parts = [f"# {title}", ""]
    parts += [
        f"Run `{meta['run_id']}`, {meta['started']} ({meta['elapsed_seconds']:.0f} s in all).",
        "",
    ]
    parts += _result_sections(summary, meta, speed, plots, skipped or {})
    parts += ["## Protocol", ""]
    parts += [f"- {k.replace('_', ' ')}: {v}" for k, v in meta["protocol"].items()]
    parts += [f"- {n}" for n in notes] + [""]
    parts += ["## Hyperparameters", ""]
    for key, p in meta.get("params", {}).items():
        parts.append(f"- {key}: `{json.dumps(jsonable(p), sort_keys=True)}`")
    parts += ["", "## Machine", ""] + _machine_lines(meta["machine"]) + [""]
    parts += ["## Package versions", ""]
    parts += [f"- {k} {v}" for k, v in meta["versions"].items()]
    if meta.get("git"):
        parts += [f"- rfm_recsys checkout: {meta['git']}"]
    parts += ["", "## Command", "", "```", meta["command"], "```", ""]
    text = "\n".join(parts)
    write_text(path, text)
    return text


def print_results(dataset: str, protocol: dict, summary, speed: dict, skipped: dict) -> None:
    """The tables on the terminal."""
    print()
    print(f"{dataset}, {protocol['folds']} (mean ± std over folds)")
    print(text_table(*rating_table(summary)))
    h, r = ranking_table(summary)
    if r:
        print(f"\ntop-N (K=10, relevant = test rating >= {RELEVANCE_THRESHOLD:g})")
        print(text_table(h, r))
    for label, reason in skipped.items():
        print(f"skipped {label}: {reason}")
    if speed.get("algorithms"):
        print("\ntime to reach the final test RMSE")
        print(text_table(*time_to_final_table(speed)))
        if speed.get("ratio_text"):
            print(speed["ratio_text"])


def write_outputs(run_dir: Path, rows, summary, speed, meta, plots, notes, skipped) -> None:
    """results.csv, results.json and report.md of a run."""
    write_results_csv(run_dir / "results.csv", rows)
    slim = [{k: v for k, v in r.items() if k != "traceback"} for r in rows]
    payload = {**meta, "summary": summary, "speed": speed, "skipped": skipped, "rows": slim}
    write_json(run_dir / "results.json", payload)
    report_notes = list(notes)
    if any(r.get("n_impossible") for r in rows):
        report_notes.append(
            "pairs with both user and item unknown in training are predicted as the global mean"
        )
    write_report(
        run_dir / "report.md",
        title=f"{meta['dataset']}: lin-RFM, kernel RFM and baselines",
        summary=summary,
        meta=meta,
        speed=speed,
        plots=plots,
        notes=report_notes,
        skipped=skipped,
    )
