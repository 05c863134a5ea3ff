"""``python -m evaluation.movielens``: load the data, cut the folds, run the fits, report."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from evaluation.common import git_revision, machine_info, package_versions
from evaluation.movielens import report
from evaluation.movielens.data import REPO_ROOT, load_data, make_folds
from evaluation.movielens.options import parse_args, settle_defaults
from evaluation.movielens.runner import Progress, run_dir, run_tasks, units, write_folds
from evaluation.movielens.specs import (
    ALGORITHMS,
    RELEVANCE_THRESHOLD,
    DataShape,
    algorithm_params,
    effective_params,
    parse_param_overrides,
    resolve_algorithms,
    skip_reasons,
)

MEMORY_IN_PROCESS = (
    "RSS sampler in the harness process (approximate: allocator reuse can hide growth)"
)
MEMORY_WORKER = (
    "fresh worker process per fit: peak of ru_maxrss and a 2 ms RSS sampler, minus RSS at fit start"
)


def _prepare(args, show: bool):
    """Data, folds, protocol and notes, with a progress bar over the three steps."""
    from tqdm.auto import tqdm

    with tqdm(total=2, desc="loading data", disable=not show, leave=False) as bar:
        dataset, data, n_ratings, scale, info = load_data(args)
        notes = settle_defaults(args, n_ratings)
        bar.update(1)
        bar.set_description("cutting folds")
        folds, protocol = make_folds(args, dataset, data, info)
        bar.update(1)
    if data is None:
        n_ratings = folds[0][0].n_ratings + len(folds[0][1])
    return dataset, folds, protocol, n_ratings, scale, info, notes


def _select(args, folds, n_ratings: int, overrides: dict, notes: list[str]):
    """Algorithm keys to run, their parameters, and ``{label: reason}`` of those skipped."""
    keys, more = resolve_algorithms(args.algorithms, n_ratings, args.ranking, args.svdpp)
    notes += more
    if args.quick and not args.algorithms and "svdpp" in keys:
        keys.remove("svdpp")
        notes.append("SVD++ left out by --quick (name it in --algorithms to include it)")
    params = {k: algorithm_params(k, args.quick, overrides) for k in keys}
    if getattr(args, "backend", "threads") == "dask":
        for key in keys:
            if ALGORITHMS[key].dask:
                notes.append(_use_dask(key, params[key]))
    train = folds[0][0]
    shape = DataShape(train.n_users, train.n_items, train.n_ratings)
    reasons = skip_reasons(keys, params, shape, args)
    skipped = {ALGORITHMS[k].label: r for k, r in reasons.items()}
    keys = [k for k in keys if k not in reasons]
    return keys, params, skipped


def _use_dask(key: str, params: dict) -> str:
    """The parameters of an algorithm that fits on Dask (its spec's ``dask``) for
    ``--backend dask``; the note for the report. Kernel RFM does not run there: its skip rule
    names the reason."""
    if not ALGORITHMS[key].dask:
        raise ValueError(f"{ALGORITHMS[key].label} does not fit on the Dask backend")
    params["backend"] = "dask"
    return f"{ALGORITHMS[key].label} fitted with backend='dask' (a LocalCluster per fit)"


def _tasks(args, keys, params, paths, dataset, run_id, threads, memory_method) -> list[dict]:
    common = {
        "seed": args.seed, "tune": args.tune, "ranking": args.ranking, "quick": args.quick,
        "curve_iters": args.curve_iters, "threshold": RELEVANCE_THRESHOLD, "threads": threads,
        "dataset": dataset, "run_id": run_id, "memory_method": memory_method,
    }  # fmt: skip
    return [
        {"key": k, "fold": f, "fold_path": p, "params": params[k], **common}
        for k in keys
        for f, p in enumerate(paths)
    ]


def _plots(args, run_dir_: Path, dataset: str, protocol: dict, rows, summary) -> list[str]:
    if args.no_plots:
        return []
    from evaluation.movielens.plots import (
        plot_precision_vs_fit_time,
        plot_rmse_per_iteration,
        plot_rmse_vs_fit_time,
    )

    curves: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("curve"):
            curves.setdefault(r["label"], []).append(r["curve"])
    out = []
    title = f"{dataset}, {protocol['folds']}"
    if plot_rmse_vs_fit_time(run_dir_ / "rmse_vs_fit_time.png", rows, summary, title):
        out.append("rmse_vs_fit_time.png")
    title = f"{dataset}: test RMSE per iteration"
    if plot_rmse_per_iteration(run_dir_ / "rmse_per_iteration.png", curves, title):
        out.append("rmse_per_iteration.png")
    title = f"{dataset}, top-N (K = 10), {protocol['folds']}"
    if plot_precision_vs_fit_time(run_dir_ / "precision_vs_fit_time.png", rows, summary, title):
        out.append("precision_vs_fit_time.png")
    return out


def _command(args) -> tuple[str, dict]:
    env = {k: os.environ[k] for k in ("RFM_RECSYS_DATA",) if k in os.environ}
    cmd = "python -m evaluation.movielens " + shlex.join(args.argv)
    if env:
        cmd = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + cmd
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns 1 when a fit failed, else 0."""
    args = parse_args(argv)
    overrides = parse_param_overrides(args.param)
    started, t_start = datetime.now(), time.perf_counter()
    machine = machine_info()
    show = not args.no_progress
    dataset, folds, protocol, n_ratings, scale, data_info, notes = _prepare(args, show)
    keys, params, skipped = _select(args, folds, n_ratings, overrides, notes)
    out_dir, run_id = run_dir(Path(args.results_dir), dataset, args.run_id)
    blas_threads = args.blas_threads if args.blas_threads > 0 else None
    threads = blas_threads or max(1, (os.cpu_count() or 1) // args.n_jobs)
    memory_method = MEMORY_IN_PROCESS if args.in_process else MEMORY_WORKER
    labels = ", ".join(ALGORITHMS[k].label for k in keys) or "none"
    print(
        f"{dataset}: {n_ratings:,} ratings, {len(folds)} fold(s), algorithms: {labels} -> "
        f"{out_dir}",
        file=sys.stderr,
        flush=True,
    )
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for label, reason in skipped.items():
        print(f"skipped {label}: {reason}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="rfm-folds-") as tmp:
        paths = write_folds(folds, Path(tmp), show)
        n_folds = len(folds)
        del folds
        tasks = _tasks(args, keys, params, paths, dataset, run_id, threads, memory_method)
        totals = {k: n_folds * units(ALGORITHMS[k], args, params[k]) for k in keys}
        progress = Progress(keys, totals, n_folds, enabled=show and bool(keys))
        rows = run_tasks(tasks, progress, args, blas_threads, threads)

    rows.sort(key=lambda r: (keys.index(r["algorithm"]), r["fold"]))
    failed = [r for r in rows if r.get("error")]
    for r in failed:
        print(
            f"\n{r['label']} fold {r['fold']} failed: {r['error']}\n{r.get('traceback', '')}",
            file=sys.stderr,
        )
    summary = report.summarise(rows, keys)
    speed = report.speed_summary(rows)
    plots = _plots(args, out_dir, dataset, protocol, rows, summary)
    protocol.update(
        report.describe_protocol(
            args, f"{dataset} ({n_ratings:,} ratings, rating scale {scale[0]:g}-{scale[1]:g})",
            data_info, (blas_threads, threads), memory_method,
        )
    )  # fmt: skip
    command, env = _command(args)
    meta = {
        "dataset": dataset,
        "run_id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "elapsed_seconds": time.perf_counter() - t_start,
        "command": command,
        "cwd": os.getcwd(),
        "environment": env,
        "protocol": protocol,
        "params": {ALGORITHMS[k].label: effective_params(k, params[k]) for k in keys},
        "machine": machine,
        "versions": package_versions(),
        "git": git_revision(REPO_ROOT),
        "notes": notes,
        "data": data_info,
    }
    report.write_outputs(out_dir, rows, summary, speed, meta, plots, notes, skipped)
    report.print_results(dataset, protocol, summary, speed, skipped)
    print(f"\nresults: {out_dir}")
    return 1 if failed else 0


def run() -> None:
    """Entry point of ``python -m evaluation.movielens``: dataset errors without a traceback."""
    from rfm_recsys.datasets import DatasetError

    try:
        sys.exit(main())
    except DatasetError as exc:
        # the message already says what is missing and what to do: no traceback on top of it
        sys.exit(f"error: {exc}")
