"""Summaries, tables and the files of one evaluation run (results.csv, results.json, report.md).

Everything here is plain data in, text or files out, so it can be tested without fitting
anything. A *row* is one (algorithm, fold) result as a flat dict; :func:`summarise` turns the rows
into one record per algorithm with the mean and standard deviation over folds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

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

#: Packages whose versions every report lists.
PACKAGES = (
    "rfm_recsys", "numpy", "scipy", "pandas", "scikit-surprise", "implicit", "threadpoolctl",
    "tqdm", "matplotlib",
)  # fmt: skip


def _finite(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(float(x))


def summarise(rows: Sequence[dict], order: Sequence[str] | None = None) -> list[dict]:
    """One record per algorithm: ``{"algorithm", "label", "folds", "<metric>_mean", "<metric>_std"}``.

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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (first column left-aligned, the rest right-aligned)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = (
        [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        if rows
        else [len(h) for h in header]
    )
    fmt = lambda cells: "  ".join(  # noqa: E731
        (str(c).ljust(w) if j == 0 else str(c).rjust(w))
        for j, (c, w) in enumerate(zip(cells, widths))
    )
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), sep] + [fmt(r) for r in rows])


# ---------------------------------------------------------------------------- environment


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores, RAM, OS and Python of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if ram is None:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            ram = None
    info = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {
                k: d.get(k)
                for k in (
                    "internal_api",
                    "version",
                    "num_threads",
                    "architecture",
                    "threading_layer",
                )
            }
            for d in threadpool_info()
        ]
    except Exception:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    if env:
        info["blas_env"] = env
    return info


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions (``"not installed"`` where absent)."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def git_revision(path: str | os.PathLike[str] | None = None) -> str | None:
    """``git describe --always --dirty`` of the checkout holding ``path`` (None outside git)."""
    try:
        res = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=path or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


# ---------------------------------------------------------------------------- files


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """results.csv: one row per (algorithm, fold), columns :data:`CSV_COLUMNS`."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            rec = {}
            for c in CSV_COLUMNS:
                v = r.get(c)
                if isinstance(v, dict):
                    v = json.dumps(_jsonable(v), sort_keys=True)
                elif isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
                    v = ""
                rec[c] = "" if v is None else v
            w.writerow(rec)


def write_json(path: Path, payload: dict) -> None:
    """results.json: strict JSON (NaN and infinities become null)."""
    with open(path, "w") as fh:
        json.dump(_jsonable(payload), fh, indent=2, allow_nan=False)
        fh.write("\n")


def time_to_final_table(speed: dict) -> tuple[list[str], list[list[str]]]:
    """Table of the time each curve algorithm needs to get within 1% of its final RMSE."""
    header = [
        "algorithm",
        "n_iter (final model)",
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


def _fmt(x, digits: int) -> str:
    return f"{float(x):.{digits}f}" if _finite(x) else "—"


def write_report(
    path: Path,
    *,
    title: str,
    summary: Sequence[dict],
    meta: dict,
    speed: dict | None,
    plots: Sequence[str],
    notes: Sequence[str],
) -> str:
    """report.md: the tables, the protocol, the machine, package versions and the exact command."""
    parts = [f"# {title}", ""]
    parts += [
        f"Run `{meta['run_id']}`, {meta['started']} ({meta['elapsed_seconds']:.0f} s in all).",
        "",
    ]
    parts += ["## Rating prediction (mean ± std over folds)", ""]
    parts += [markdown_table(*rating_table(summary)), ""]
    h, r = ranking_table(summary)
    if r:
        parts += [
            f"## Top-N (K = 10, relevant = test rating >= {meta['protocol'].get('relevance_threshold', 4):g})",
            "",
        ]
        parts += [markdown_table(h, r), ""]
    if speed and speed.get("algorithms"):
        parts += ["## Time to reach the final test RMSE", ""]
        parts += [markdown_table(*time_to_final_table(speed)), ""]
        if speed.get("ratio") is not None:
            parts += [speed["ratio_text"], ""]
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{p}]({p})" for p in plots] + [""]
    parts += ["## Protocol", ""]
    parts += [f"- {k.replace('_', ' ')}: {v}" for k, v in meta["protocol"].items()]
    parts += [f"- {n}" for n in notes] + [""]
    parts += ["## Hyperparameters", ""]
    for key, p in meta.get("params", {}).items():
        parts.append(f"- {key}: `{json.dumps(_jsonable(p), sort_keys=True)}`")
    parts += [""]
    parts += ["## Machine", ""]
    m = meta["machine"]
    parts += [
        f"- CPU: {m.get('cpu')} ({m.get('logical_cores')} logical cores), RAM {m.get('ram_gib')} GiB"
    ]
    parts += [f"- OS: {m.get('os')}; Python {m.get('python')} ({m.get('python_implementation')})"]
    if m.get("load_average") is not None:
        parts += [f"- load average at the start: {m['load_average']}"]
    if m.get("blas"):
        parts += [f"- BLAS: {json.dumps(m['blas'])}"]
    if m.get("blas_env"):
        parts += [f"- BLAS environment: {json.dumps(m['blas_env'], sort_keys=True)}"]
    parts += [""]
    parts += ["## Package versions", ""]
    parts += [f"- {k} {v}" for k, v in meta["versions"].items()]
    if meta.get("git"):
        parts += [f"- rfm_recsys checkout: {meta['git']}"]
    parts += ["", "## Command", "", "```", meta["command"], "```", ""]
    text = "\n".join(parts)
    path.write_text(text)
    return text
