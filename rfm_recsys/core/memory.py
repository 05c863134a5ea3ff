"""Memory estimates of a fit and the up-front refusal of fits that would not fit.

The estimate is made before anything large is allocated, so a fit that cannot run fails in
milliseconds with the figures and the fix instead of after minutes, or in the kernel's OOM killer.
"""

from __future__ import annotations

import numpy as np

# Dense scratch per batched step; large enough for BLAS-3 efficiency, small enough to be noise.
CHUNK_BYTES = 64 * 2**20
# Oversampling of the randomized range finder (columns beyond the rank).
OVERSAMPLE = 10


class EngineMemoryError(MemoryError):
    """The fit would need more memory than allowed; the message gives the figures and the fix."""


def _per_entry_bytes(itemsize: int) -> int:
    # indices, plan positions, data/targets/a, and the rating-level arrays of the fitting layer
    # (integer codes, ratings, baseline, residuals, the COO to CSR copy): calibrated on fits of
    # ML-10M to ML-32M-shaped sets, which peaked at 53-62 bytes per rating beyond the kernel
    # and scratch
    return 4 + 8 + 3 * itemsize + 40


def estimate_memory(
    n_rows: int,
    n_cols: int,
    nnz: int,
    dtype=np.float32,
    needs_eigh: bool = False,
    rank: int | None = None,
) -> int:
    """Bytes a fit needs at its peak: kernel-sized matrices, per-entry arrays and chunk scratch.

    Dense kernel (``rank=None``), ``d x d``: the kernel, ``A^T A``, the product and the next
    kernel (plus ``eigh``'s eigenvectors and workspace when the update needs it). Factored kernel
    of rank ``r``: ``U`` and its successor (``d x r`` each), the range finder's blocks
    (``n x (r + p)`` and ``d x (r + p)``, three of each) and ``Z = A U diag(s)`` (``n x r``).
    Both: per observed entry the CSR pattern, targets, ``a`` and the row plan's positions, and
    the dense scratch of row chunks and batched systems.
    """
    it = np.dtype(dtype).itemsize
    d = n_cols
    per_entry = nnz * _per_entry_bytes(it) + 4 * CHUNK_BYTES + 16 * n_rows
    if rank is None:
        n_square = 4 + (3 if needs_eigh else 0)
        return int(n_square * d * d * it + per_entry)
    r = min(int(rank), d)
    q = min(r + OVERSAMPLE, d)
    return int((2 * d * r + 3 * (n_rows + d) * q + n_rows * r) * it + per_entry)


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (bytes), or a conservative 4 GiB where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def check_memory(
    n_rows: int,
    n_cols: int,
    nnz: int,
    dtype,
    needs_eigh: bool,
    max_memory: int | None,
    rank: int | None = None,
) -> int:
    """Refuse, with the figures, a fit that would not fit in memory. Returns the estimate."""
    need = estimate_memory(n_rows, n_cols, nnz, dtype, needs_eigh, rank)
    limit = available_memory() if max_memory is None else int(max_memory)
    if need <= limit:
        return need
    gib = 2**30
    head = (
        f"this fit needs about {need / gib:.2f} GiB ({n_rows:,} rows x {n_cols:,} feature "
        f"columns, {nnz:,} ratings, {np.dtype(dtype).name}, "
        f"{'dense d x d kernel' if rank is None else f'rank-{rank} factored kernel'}) but "
        f"{'max_memory allows' if max_memory is not None else 'the machine has'} "
        f"{limit / gib:.2f} GiB."
    )
    if rank is None:
        factored = estimate_memory(n_rows, n_cols, nnz, dtype, False, 256)
        fix = (
            f" The d x d kernel dominates (d = {n_cols:,}): use a factored kernel (rank=256 "
            f"needs about {factored / gib:.2f} GiB), orient='auto' so the smaller side is d, "
            f"dtype=np.float32, or subsample the columns; or raise max_memory if the machine "
            f"really has more."
        )
    else:
        entries = nnz * _per_entry_bytes(np.dtype(dtype).itemsize)
        fix = (
            f" The ratings alone take about {entries / gib:.2f} GiB: lower the rank, use "
            f"dtype=np.float32, subsample the ratings or use a machine with more memory; or "
            f"raise max_memory if the machine really has more."
        )
    raise EngineMemoryError(head + fix)
