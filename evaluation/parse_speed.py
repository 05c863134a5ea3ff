"""How fast an ML-10M-sized ``::``-separated ratings file parses, against pandas' own C reader.

Writes a synthetic ``ratings.dat`` of ML-10M's shape (10,000,054 lines, ``user::item::rating::ts``,
from :func:`rfm_recsys.datasets.make_ratings`) into a temporary folder, then times

* ``load_movielens("ml-10m")`` on the unpacked folder (``::`` -> tab in bytes, pandas C engine),
* the same from a zip laid out like the official one (``ml-10M100K/ratings.dat``),
* the baseline: pandas' C engine on the same data written with a single-character separator,
* pandas' Python engine with ``sep="::"`` (what a naive loader falls back to) on the first
  ``--python-lines`` lines, extrapolated to the whole file.

Usage::

    .venv/bin/python -m evaluation.parse_speed            # full size, ~2 minutes on 2 cores
    .venv/bin/python -m evaluation.parse_speed --lines 1000000 --no-zip

No MovieLens file is read or written: GroupLens' files never enter this benchmark.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from rfm_recsys.datasets import DatasetWarning, load_movielens, make_ratings


def _write(df: pd.DataFrame, path: Path, sep: str) -> None:
    # Ratings as MovieLens writes them: "5", "4.5".
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", header=False, index=False, float_format="%g")
    data = buf.getvalue().encode()
    if sep != "\t":
        data = data.replace(b"\t", sep.encode())
    path.write_bytes(data)


def _time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print the timings.

    Args:
        argv: Command-line arguments (``--lines``, ``--python-lines``, ``--repeat``,
            ``--no-zip``).

    Returns:
        The measured figures (seconds, and the ratio to the baseline).
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--lines", type=int, default=10_000_054, help="ratings lines (ML-10M: 10,000,054)"
    )
    ap.add_argument(
        "--python-lines", type=int, default=500_000, help="lines for the Python-engine timing"
    )
    ap.add_argument("--repeat", type=int, default=2, help="best of N for the fast readers")
    ap.add_argument("--no-zip", action="store_true", help="skip the zip timing")
    args = ap.parse_args(argv)

    n = args.lines
    scale = n / 10_000_054
    shape = dict(
        n_users=max(1, int(69_878 * scale**0.5)),
        n_items=max(1, int(10_677 * scale**0.5)),
        n_ratings=n,
    )
    print(
        f"generating {n:,} synthetic ratings ({shape['n_users']:,} x {shape['n_items']:,}) ...",
        flush=True,
    )
    t = time.perf_counter()
    df = make_ratings(**shape, rating_scale=(0.5, 5), rating_step=0.5, random_state=0)
    print(f"  make_ratings: {time.perf_counter() - t:.1f} s", flush=True)

    res: dict[str, float] = {"lines": float(n)}
    with tempfile.TemporaryDirectory(prefix="rfm-parse-speed-") as tmp:
        home = Path(tmp)
        folder = home / "ml-10M100K"
        folder.mkdir()
        dat = folder / "ratings.dat"
        tsv = home / "ratings.tsv"
        t = time.perf_counter()
        _write(df, dat, "::")
        _write(df, tsv, "\t")
        print(
            f"  wrote {dat.stat().st_size / 1e6:.0f} MB ratings.dat in "
            f"{time.perf_counter() - t:.1f} s",
            flush=True,
        )

        def ours() -> pd.DataFrame:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DatasetWarning)  # synthetic counts != official
                return load_movielens("ml-10m", home, download=False)

        def baseline() -> pd.DataFrame:
            return pd.read_csv(
                tsv,
                sep="\t",
                header=None,
                names=["user_id", "item_id", "rating", "timestamp"],
                dtype={
                    "user_id": "int64",
                    "item_id": "int64",
                    "rating": "float64",
                    "timestamp": "int64",
                },
                engine="c",
            )

        res["ours_folder_s"], got = _time(ours, args.repeat)
        assert len(got) == n and np.array_equal(got["item_id"].to_numpy(), df["item_id"].to_numpy())
        res["baseline_c_tab_s"], _ = _time(baseline, args.repeat)
        res["ratio_to_baseline"] = res["ours_folder_s"] / res["baseline_c_tab_s"]

        k = min(args.python_lines, n)
        head = b"".join(dat.open("rb").readlines()[:k]) if k < 2_000_000 else dat.read_bytes()
        t = time.perf_counter()
        pd.read_csv(io.BytesIO(head), sep="::", header=None, engine="python")
        res["python_engine_extrapolated_s"] = (time.perf_counter() - t) * n / k

        if not args.no_zip:
            zpath = home / "ml-10m.zip"
            with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                zf.write(dat, "ml-10M100K/ratings.dat")
            dat.unlink()
            folder.rmdir()
            res["ours_zip_s"], _ = _time(ours, args.repeat)

    _print(res, n, k)
    return res


def _print(res: dict[str, float], n: int, k: int) -> None:
    print()
    print(f"ratings.dat, {n:,} lines, '::'-separated")
    print(f"  load_movielens, unpacked folder : {res['ours_folder_s']:6.2f} s")
    if "ours_zip_s" in res:
        print(f"  load_movielens, official-style zip: {res['ours_zip_s']:6.2f} s")
    print(f"  baseline pandas C engine, '\\t'  : {res['baseline_c_tab_s']:6.2f} s")
    print(f"  ratio ours / baseline           : {res['ratio_to_baseline']:6.2f}")
    py = res["python_engine_extrapolated_s"]
    print(f"  pandas python engine sep='::'   : {py:6.1f} s (extrapolated from {k:,} lines)")
    print(json.dumps({k2: round(v, 3) for k2, v in res.items()}))


if __name__ == "__main__":
    main()
