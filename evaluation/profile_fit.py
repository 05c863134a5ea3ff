"""Where a fit's time goes, step by step, beside Surprise SVD's fit on the same training set.

    python -m evaluation.profile_fit --dataset ml-100k --data-home ../shared/movielens
    python -m evaluation.profile_fit --dataset ml-latest-small --data-home ../shared/movielens
    python -m evaluation.profile_fit --synthetic ml-1m
    python -m evaluation.profile_fit --dataset ml-100k --model linrfm

Fold 0 of ``KFold(5, random_state=0)`` (a 90/10 holdout of a synthetic shape), one BLAS thread
(as the harness fits), the model's defaults. Each step's time is the inclusive time of the
functions that do it, wrapped for the run (a step nested in another, such as a range finder
inside an update, is counted in both); the fit and SVD's fit are timed around the whole call,
alternately, ``--repeats`` times. Load averages are printed: on a shared machine only the
ratios within one run mean much.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

# (label, module, attribute path): the functions whose inclusive time makes each step
STEPS = [
    ("biases", "rfm_recsys.fitting.local", "fit_baseline"),
    ("row solves, dense kernel", "rfm_recsys.core.dense_kernel", "DenseKernel.solve_rows"),
    ("row solves, factored kernel", "rfm_recsys.core.factored_kernel", "FactoredKernel.solve_rows"),
    ("lin-RFM updates, dense", "rfm_recsys.core.dense_kernel", "DenseKernel.next"),
    ("lin-RFM updates, factored", "rfm_recsys.core.factored_kernel", "FactoredKernel.next"),
    (
        "  of which: first subspace by the rank rule",
        "rfm_recsys.core.factored_kernel",
        "FactoredKernel.next_by_rule",
    ),
    ("step: co-rating signal (once)", "rfm_recsys.core.kernel_step", "KernelStep.start"),
    ("step: dense kernel matrices", "rfm_recsys.core.kernel_step", "_DenseStep.build"),
    ("step: Nystrom kernels", "rfm_recsys.core.kernel_step", "_FactoredStep.build"),
    ("step: AGOP updates, dense", "rfm_recsys.core.kernel_step", "_DenseStep.next"),
    ("step: AGOP updates, factored", "rfm_recsys.core.kernel_step", "_FactoredStep.next"),
]


@contextlib.contextmanager
def timed_steps(totals: dict) -> Iterator[None]:
    """Wrap the functions of :data:`STEPS` so that their inclusive seconds add to ``totals``."""
    import importlib

    undo = []
    for label, module, path in STEPS:
        owner = importlib.import_module(module)
        *parents, name = path.split(".")
        for p in parents:
            owner = getattr(owner, p)
        original = getattr(owner, name)

        def wrapper(*args, _f=original, _label=label, **kwargs):
            t = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - t

        setattr(owner, name, wrapper)
        undo.append((owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in undo:
            setattr(owner, name, original)


def _data(args):
    from surprise.model_selection import KFold, train_test_split

    from rfm_recsys.datasets import load_movielens, make_ratings, to_surprise
    from rfm_recsys.datasets.registry import get_dataset

    if args.synthetic:
        spec = get_dataset(args.synthetic)
        df = make_ratings(spec.n_users, spec.n_items, spec.n_ratings, random_state=0)
        return train_test_split(to_surprise(df), test_size=0.1, random_state=0)
    df = load_movielens(args.dataset, args.data_home, progress=False)
    return next(KFold(5, random_state=0, shuffle=True).split(to_surprise(df)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--synthetic", default=None, help="a release's shape: ml-1m, ml-10m, ...")
    p.add_argument("--data-home", default=None)
    p.add_argument("--model", choices=["kernel-rfm", "linrfm"], default="kernel-rfm")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from surprise import SVD, accuracy

    from rfm_recsys import KernelRFMAlgo, LinRFMAlgo
    from rfm_recsys.core.blas import blas_threads

    trainset, testset = _data(args)
    make = KernelRFMAlgo if args.model == "kernel-rfm" else LinRFMAlgo
    make(n_updates=1).fit(trainset)  # compiled code loaded before the clock runs
    print(f"load before: {os.getloadavg()}")
    fits, svds, totals = [], [], defaultdict(float)
    with blas_threads(1):
        for _ in range(args.repeats):
            t = time.perf_counter()
            svd = SVD(random_state=0).fit(trainset)
            svds.append(time.perf_counter() - t)
            with timed_steps(totals):
                t = time.perf_counter()
                algo = make().fit(trainset)
                fits.append(time.perf_counter() - t)
    rmse = accuracy.rmse(algo.test(testset), verbose=False)
    svd_rmse = accuracy.rmse(svd.test(testset), verbose=False)
    where = args.synthetic or args.dataset
    print(f"{make.__name__}() on {where}: fit {np.median(fits):.3f} s (median of {len(fits)}), "
          f"Surprise SVD {np.median(svds):.3f} s: ratio {np.median(fits) / np.median(svds):.2f}; "
          f"test RMSE {rmse:.4f} (SVD {svd_rmse:.4f})")  # fmt: skip
    kernel = algo.fit_.kernel
    print(f"kernel: {type(kernel).__name__}, rank {getattr(kernel, 'rank', None)}")
    print("| step | seconds per fit |\n|---|---:|")
    for label, *_ in STEPS:
        if totals[label]:
            print(f"| {label} | {totals[label] / len(fits):.3f} |")
    print(f"load after: {os.getloadavg()}")
    return {"fit": fits, "svd": svds, "steps": dict(totals), "rmse": rmse}


if __name__ == "__main__":
    main()
