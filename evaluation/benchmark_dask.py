"""Dask backend against the threads backend on a MovieLens-shaped synthetic problem, same run.

For one shape (``--shape ml-1m|ml-10m|ml-25m`` or ``--users/--items/--ratings``) the script
draws ratings with :func:`rfm_recsys.datasets.make_ratings`, fits ``--model`` (``kernel-rfm``,
the default: :class:`KernelRFM`; ``linrfm``: :class:`LinRFM`) with the threads backend, then with
``backend="dask"`` on ``LocalCluster(n_workers=W, threads_per_worker=1)`` (started before the
clock runs), and reports:

* the wall time of each fit and their ratio (dask / threads), and per-iteration seconds;
* bytes per iteration: into the workers (what the driver scatters, counted as the arrays'
  ``nbytes`` times the number of workers for a broadcast: the kernel, and the ``d x q``
  blocks of a randomized update) and out of the workers
  (``Worker.transfer_outgoing_bytes_total``: partial sums moving between workers for the tree
  sum, and the total to the driver), beside the estimate ``d * r * 4`` per worker of the
  factored kernel (``d * d * 4`` for the dense one, ``--rank none``);
* the seconds of each task function (Dask's task stream), for the per-partition costs, and
  the peak RSS of the driver and of each worker process;
* the largest relative gap between the two models' predictions on 200,000 training pairs.

Both fits see the same cores: the threads backend uses ``W`` threads (``RFM_BLAS_THREADS`` is not
touched). Both fit the same model (``--rank``, default ``auto``: the library's default, a
factored kernel whose rank the data decides beyond 256 feature columns, 4,096 with the kernel
step). Run it on an idle machine; the JSON lines it prints (and appends to ``--out``) hold the
figures and the command line.

    python -m evaluation.benchmark_dask --shape ml-25m
    python -m evaluation.benchmark_dask --shape ml-25m --model linrfm
    python -m evaluation.benchmark_dask --shape ml-1m --n-updates 2 --rank none
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

SHAPES = {
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-10m": (69_878, 10_677, 10_000_054),
    "ml-25m": (162_541, 59_047, 25_000_095),
}


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="ml-1m")
    p.add_argument("--users", type=int)
    p.add_argument("--items", type=int)
    p.add_argument("--ratings", type=int)
    p.add_argument("--model", choices=["kernel-rfm", "linrfm"], default="kernel-rfm")
    p.add_argument(
        "--n-updates",
        "--n-iter",
        dest="n_updates",
        type=int,
        default=None,
        help="lin-RFM's updates (default: the model's default)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument(
        "--rank", dest="rank_text", default="auto", help="'auto' (default), 'none' or an int"
    )
    p.add_argument("--skip-threads", action="store_true", help="time the dask fit only")
    p.add_argument("--out", default=None, help="append the JSON record to this file")
    args = p.parse_args(argv)
    text = args.rank_text.lower()
    args.rank = {"auto": "auto", "none": None}[text] if text in ("auto", "none") else int(text)
    return args


def _payload_bytes(x) -> int:
    """Bytes of the arrays in what the driver scatters (a kernel object: its factors)."""
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if isinstance(x, (list, tuple)):
        return sum(_payload_bytes(v) for v in x)
    if hasattr(x, "to_arrays"):
        return sum(int(np.asarray(v).nbytes) for v in x.to_arrays().values())
    from dask.sizeof import sizeof

    return int(sizeof(x))


class _Traffic:
    """Bytes the driver scatters (counted at the call) and bytes the workers send out."""

    def __init__(self, client) -> None:
        self.client = client
        self.scattered = 0
        n_workers = len(client.nthreads())
        scatter = client.scatter

        def counting(data, *args, **kwargs):
            copies = n_workers if kwargs.get("broadcast") else 1
            self.scattered += _payload_bytes(data) * copies
            return scatter(data, *args, **kwargs)

        client.scatter = counting
        self.marks: list[tuple[int, int]] = []

    def worker_out(self) -> int:
        totals = self.client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
        return int(sum(totals.values()))

    def mark(self, *_args) -> None:
        self.marks.append((self.scattered, self.worker_out()))

    def per_iteration(self) -> list[dict]:
        out = []
        for (s0, w0), (s1, w1) in zip(self.marks[:-1], self.marks[1:]):
            out.append({"to_workers": s1 - s0, "from_workers": w1 - w0})
        return out


def _task_seconds(stream: list[dict]) -> dict:
    """Seconds and task counts per task function and action (compute, transfer, ...)."""
    out: dict[str, list] = {}
    for task in stream:
        key = task["key"]
        name = (key if isinstance(key, str) else str(key[0])).rsplit("-", 5)[0]
        for ss in task["startstops"]:
            entry = out.setdefault(f"{name}:{ss['action']}", [0, 0.0])
            entry[0] += 1
            entry[1] = round(entry[1] + ss["stop"] - ss["start"], 3)
    return out


def main(argv=None) -> dict:
    args = _parse(argv)
    from distributed import Client, LocalCluster, get_task_stream

    from rfm_recsys.datasets import make_ratings
    from rfm_recsys.model import KernelRFM, LinRFM

    model_class = KernelRFM if args.model == "kernel-rfm" else LinRFM

    n_users, n_items, n_ratings = SHAPES[args.shape]
    n_users, n_items = args.users or n_users, args.items or n_items
    n_ratings = args.ratings or n_ratings
    t = time.perf_counter()
    df = make_ratings(n_users, n_items, n_ratings, random_state=args.seed)
    df = df[["user_id", "item_id", "rating"]]
    record = {
        "command": "python -m evaluation.benchmark_dask " + " ".join(sys.argv[1:]),
        "model": args.model,
        "shape": [n_users, n_items, len(df)],
        "n_updates": args.n_updates,
        "rank": args.rank,
        "dtype": args.dtype,
        "workers": args.workers,
        "generate_seconds": round(time.perf_counter() - t, 2),
        "load_before": os.getloadavg(),
    }
    # LinRFM's "auto" orientation puts the smaller side in the kernel, KernelRFM's is items
    d = n_items if args.model == "kernel-rfm" else min(n_users, n_items)
    # the predictions are compared on a seeded sample of training pairs: predicting all of
    # ML-10M's pairs with a dense kernel takes minutes
    pick = np.random.default_rng(args.seed).choice(len(df), min(len(df), 200_000), replace=False)
    u, i = df["user_id"].to_numpy()[pick], df["item_id"].to_numpy()[pick]
    p_threads = None
    if not args.skip_threads:
        t = time.perf_counter()
        threads = model_class(**_params(args)).fit(df)
        record["threads_seconds"] = round(time.perf_counter() - t, 2)
        record["threads_iteration_seconds"] = [
            round(h["iteration_seconds"], 2) for h in threads.history_
        ]
        p_threads = threads.predict(u, i)
        del threads
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        Client(cluster) as client,
    ):
        traffic = _Traffic(client)
        traffic.mark()
        t = time.perf_counter()
        with get_task_stream(client) as stream:
            model = model_class(**_params(args), backend="dask").fit(df, callback=traffic.mark)
        record["dask_seconds"] = round(time.perf_counter() - t, 2)
        traffic.mark()
        record["task_seconds"] = _task_seconds(stream.data)
        peaks = client.run(_own_peak_rss_mib)
        record["worker_peak_rss_mib"] = sorted(peaks.values())
    record["dask_iteration_seconds"] = [round(h["iteration_seconds"], 2) for h in model.history_]
    marks = traffic.per_iteration()
    # marks: [start -> end of iteration 0 (setup + first solve), it 0 -> it 1, ..., last -> end]
    record["bytes_setup_and_first_solve"] = marks[0]
    record["bytes_per_iteration"] = marks[1:-1]
    record["bytes_final_gather"] = marks[-1]
    itemsize = np.dtype(args.dtype).itemsize
    # the kernel the last iterations broadcast (the step's: its Nystrom factor's columns)
    kernel = model.fit_.kernel
    r = getattr(kernel, "rank", None)
    width = d if r is None else kernel.U.shape[1]
    record["kernel"] = "dense" if r is None else f"factored, {width} columns (rank {r})"
    record["estimate_kernel_bytes_per_worker"] = d * width * itemsize
    record["driver_peak_rss_mib"] = _peak_rss_mib()
    if p_threads is not None:
        record["ratio_dask_over_threads"] = round(
            record["dask_seconds"] / record["threads_seconds"], 3
        )
        p_dask = model.predict(u, i)
        record["max_relative_gap"] = float(
            np.max(np.abs(p_dask - p_threads) / np.maximum(np.abs(p_threads), 1e-12))
        )
    record["load_after"] = os.getloadavg()
    line = json.dumps(record)
    print(line)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(line + "\n")
    return record


def _params(args: argparse.Namespace) -> dict:
    """The model's parameters: its defaults but for what the command line sets."""
    params = {"dtype": args.dtype, "rank": args.rank}
    if args.n_updates is not None:
        params["n_updates"] = args.n_updates
    return params


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _own_peak_rss_mib() -> float:
    """The calling process's own peak RSS (``VmHWM``). A worker process is forked from the
    driver and then exec'd, and Linux carries the parent's peak into ``ru_maxrss`` across both,
    so ``getrusage`` in a worker reports at least the driver's peak; ``VmHWM`` is the peak of
    the process's own address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return _peak_rss_mib()


if __name__ == "__main__":
    main()
