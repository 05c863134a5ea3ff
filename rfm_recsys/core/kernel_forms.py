"""A kernel in the form a fit asks for: ``K = I`` to start from, or one read back from a file."""

from __future__ import annotations

import numpy as np

from .dense_kernel import DenseKernel
from .factored_kernel import FactoredKernel
from .kernel import Kernel


def initial_kernel(
    d: int, dtype, rank: int | None, shift: float = 0.0, K0=None, random_state=0
) -> Kernel:
    """``K = I`` in the requested form (``rank=None``: dense), or the caller's ``K0``
    (an array or a kernel)."""
    if K0 is not None:
        return K0 if hasattr(K0, "solve_rows") else DenseKernel(np.array(K0, dtype=dtype))
    if rank is None:
        return DenseKernel.eye(d, dtype)
    return FactoredKernel.eye(d, dtype, rank, shift, random_state)


def kernel_from_arrays(arrays) -> Kernel:
    """The kernel saved by ``to_arrays`` (a mapping such as an ``np.load`` result)."""
    if "K" in arrays:
        return DenseKernel(np.asarray(arrays["K"]))
    eps = np.asarray(arrays["kernel_eps"], dtype=np.float64)
    return FactoredKernel(
        np.asarray(arrays["kernel_U"]),
        np.asarray(arrays["kernel_s"]),
        float(eps) if eps.ndim == 0 else eps,
        int(arrays["kernel_rank"]),
        float(arrays["kernel_shift"]),
        # files written before the step kept Nystrom factors hold orthonormal ones
        orthonormal=bool(arrays["kernel_orthonormal"]) if "kernel_orthonormal" in arrays else True,
    )
