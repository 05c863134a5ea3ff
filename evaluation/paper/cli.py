"""``python -m evaluation.paper {recovery,speed,dln,sparse}``: the command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from evaluation.paper.dln import cmd_dln
from evaluation.paper.recovery import cmd_recovery
from evaluation.paper.sparse import cmd_sparse
from evaluation.paper.speed import cmd_speed


def _shape(text: str) -> tuple[int, int]:
    try:
        n, d = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 500x500, got {text!r}") from None
    return n, d


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.paper",
        description="Synthetic experiments on the claims of the lin-RFM paper.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    specs = {
        "recovery": "exact low-rank completion: phase transition over the observed fraction",
        "speed": "time per iteration and time to error against d; a run with millions of "
        "missing entries",
        "dln": "deep linear networks (depth 2 and 3) on the recovery problems",
        "sparse": "sparse linear regression: lin-RFM vs IRLS, basis pursuit, Lasso, diagonal "
        "network",
    }
    for name, help_ in specs.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--quick", action="store_true", help="tiny problems, finishes in seconds (tests)"
        )
        p.add_argument(
            "--blas-threads",
            type=int,
            default=None,
            help="limit BLAS threads (threadpoolctl; also exported to the big run's "
            "child process). Default: the library's own setting",
        )
        p.add_argument(
            "--out",
            type=Path,
            default=None,
            help="output folder (default results/paper/<command>[/quick])",
        )
        if name in ("recovery", "dln", "sparse"):
            p.add_argument("--seeds", type=int, default=None, help="number of seeds per point")
        if name in ("recovery", "dln"):
            p.add_argument(
                "--ratios",
                type=float,
                nargs="+",
                default=None,
                help="observed entries as multiples of the degrees of freedom",
            )
            p.add_argument(
                "--methods",
                nargs="+",
                default=None,
                help="method keys (see mc_methods in evaluation/paper/methods.py)",
            )
            p.add_argument(
                "--shapes",
                nargs="+",
                default=None,
                type=_shape,
                help="matrix shapes as NxD, e.g. 500x500 1000x500",
            )
        if name == "speed":
            p.add_argument("--ds", type=int, nargs="+", default=None, help="matrix sizes d")
            p.add_argument(
                "--time-budget",
                type=float,
                default=None,
                help="compute seconds allowed per method and d (default 1200)",
            )
            p.add_argument(
                "--big-iter",
                type=int,
                default=None,
                help="iteration cap of the big run (default 100)",
            )
    return ap


COMMANDS = {"recovery": cmd_recovery, "speed": cmd_speed, "dln": cmd_dln, "sparse": cmd_sparse}


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    if args.blas_threads is None:
        return COMMANDS[args.command](args)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.blas_threads)
    from rfm_recsys.core.blas import blas_threads

    with blas_threads(args.blas_threads, user_api=None):
        return COMMANDS[args.command](args)
