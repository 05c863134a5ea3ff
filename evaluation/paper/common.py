"""Where the paper's experiments write, how they log, and matplotlib without a display."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Default output folder: ``results/paper/<experiment>/`` (``.../quick/`` with ``--quick``).
RESULTS = ROOT / "results" / "paper"


def out_dir(args: argparse.Namespace, name: str) -> Path:
    """``--out``, else the experiment's default folder."""
    if args.out is not None:
        return Path(args.out)
    return RESULTS / name / "quick" if args.quick else RESULTS / name


def log(msg: str) -> None:
    """One line of progress on stdout (above the progress bar, if one is shown)."""
    from tqdm.auto import tqdm

    tqdm.write(msg)


def progress(total: int, desc: str) -> Any:
    """A progress bar over an experiment's runs (on stderr)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
