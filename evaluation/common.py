"""Report helpers every evaluation command shares: tables, files, the machine and peak memory.

Plain data in, text or files out: Markdown and fixed-width tables, CSV and strict JSON written
atomically, the machine and package versions a report lists, and :class:`PeakRSS`, the peak
resident memory of a block (it sees BLAS and other C allocations, unlike ``tracemalloc``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

#: Packages whose versions every report lists.
PACKAGES = (
    "rfm_recsys", "numpy", "scipy", "pandas", "scikit-surprise", "implicit", "threadpoolctl",
    "tqdm", "matplotlib",
)  # fmt: skip


# ---------------------------------------------------------------------------- numbers and tables


def finite(x: Any) -> bool:
    """True for a finite int or float (numpy scalars included)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(float(x))


def fmt_fixed(x: Any, digits: int) -> str:
    """``x`` with ``digits`` decimals, or an em dash when it is missing or not finite."""
    return f"{float(x):.{digits}f}" if finite(x) else "—"


def fmt_sci(x: Any, digits: int = 2) -> str:
    """Scientific notation for very small or large numbers, else ``digits + 1`` significant."""
    if not finite(x):
        return "—"
    x = float(x)
    return (
        f"{x:.{digits}e}" if (abs(x) < 1e-2 or abs(x) >= 1e4) and x != 0 else f"{x:.{digits + 1}g}"
    )


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (first column left-aligned, the rest right-aligned)."""
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = (
        [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        if rows
        else [len(h) for h in header]
    )

    def line(cells: Sequence[Any]) -> str:
        return "  ".join(
            (str(c).ljust(w) if j == 0 else str(c).rjust(w))
            for j, (c, w) in enumerate(zip(cells, widths))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in rows])


# ---------------------------------------------------------------------------- files


def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars and arrays, paths and non-finite floats made strict-JSON-safe."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _csv_cell(v: Any, float_format: str | None) -> Any:
    if isinstance(v, dict):
        return json.dumps(jsonable(v), sort_keys=True)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "" if float_format is None else f"{v}"
        return v if float_format is None else format(v, float_format)
    return "" if v is None else v


def write_csv(
    path: Path,
    rows: Sequence[dict],
    columns: Sequence[str] | None = None,
    float_format: str | None = None,
) -> None:
    """A CSV file with ``columns`` (default: every key of the rows, in order of appearance).

    Dicts become JSON cells; missing values become empty cells. With ``float_format``
    (e.g. ``".6g"``) floats are formatted and non-finite ones written as ``nan``/``inf``;
    without it non-finite floats become empty cells.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: _csv_cell(r.get(c), float_format) for c in columns})
    write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_json(path: Path, payload: dict) -> None:
    """Strict JSON (NaN and infinities become null), written atomically."""
    write_text(path, json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def blas_env() -> dict[str, str]:
    """The BLAS/OpenMP thread variables that are set."""
    return {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores, RAM, OS, Python, load average and the BLAS libraries."""
    from threadpoolctl import threadpool_info

    ram = _ram_bytes()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    info["blas"] = [{k: d.get(k) for k in keys} for d in threadpool_info()]
    if blas_env():
        info["blas_env"] = blas_env()
    return info


def environment_line() -> str:
    """One sentence on the Python, numpy and scipy versions, cores, load and BLAS threads."""
    import scipy

    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    threads = {
        k: v
        for k, v in blas_env().items()
        if k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    return (
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"{os.cpu_count()} CPUs, load average at start {load}, BLAS thread settings "
        f"{threads or 'default'}"
    )


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


# ---------------------------------------------------------------------------- memory


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux ``/proc/self/statm``), or None."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def maxrss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``'s ``ru_maxrss``)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


class PeakRSS:
    """Peak resident memory of a block above the RSS at its start (bytes in ``delta``).

    The peak is the larger of an RSS sampler thread (every ``interval`` seconds) and
    ``ru_maxrss`` when that grew during the block (exact, but only meaningful in a process whose
    earlier peak was lower: hence a fresh worker per fit in the MovieLens comparison).
    """

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.delta: int | None = None

    def __enter__(self) -> PeakRSS:
        self.start = rss_bytes()
        self.max0 = maxrss_bytes()
        self.peak = self.start or 0
        self._stop = threading.Event()
        self._thread = None
        if self.start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            r = rss_bytes()
            if r is not None and r > self.peak:
                self.peak = r
            self._stop.wait(self.interval)

    def __exit__(self, *exc: object) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        end = rss_bytes()
        max1 = maxrss_bytes()
        peak = max(self.peak, end or 0)
        if max1 > self.max0:
            peak = max(peak, max1)
        start = self.start if self.start is not None else self.max0
        self.delta = max(0, peak - start)
        return False
