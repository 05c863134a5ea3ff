"""The one settings object of a rating fit, and how a model's hyperparameters become it.

Every model class stores its hyperparameters verbatim (Surprise's contract); at ``fit`` they
become one :class:`FitSettings`, which the fitting layer, the engine loop and both backends read.
No keyword list of the fit is spelled out anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.kernel_step import KernelStep
from ..core.updates import AGOPPower, FeatureUpdate, IRLSUpdate

_FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class FitSettings:
    """How one rating model is fitted (the fields are the hyperparameters' own names).

    Attributes:
        n_updates: kernel updates of lin-RFM's stage (AGOP or IRLS steps).
        ridge: ridge of the row fits.
        update: the feature update (:class:`~rfm_recsys.core.updates.AGOPPower` or
            :class:`~rfm_recsys.core.updates.IRLSUpdate`).
        orient: ``"auto"``, ``"items"``, ``"users"`` or ``"both"`` (the kernel's side).
        rank: ``None`` (dense), an int (factored) or ``"auto"``.
        bias_ridge: ridge of the user and item biases.
        n_bias_sweeps: alternating sweeps of the bias fit.
        dtype: of the kernel and the solves.
        tol: stop once the kernel's relative change falls below it (``None``: never).
        validation_share: share held out for early stopping (0: none).
        patience: iterations without validation improvement before stopping.
        random_state: seed of the validation split and the randomized range finder.
        max_memory: bytes a fit may take (``None``: what the machine has).
        progress: show a progress bar.
        backend: ``"threads"`` or ``"dask"``.
        step: the kernel step after lin-RFM's updates, or ``None`` (plain lin-RFM).
        shift: factored kernel only: share of the mean diagonal given to ``eps I``.
        solve_tol: relative residual of the conjugate-gradient row fits (``None``: direct).
    """

    n_updates: int = 2
    ridge: float = 10.0
    update: FeatureUpdate = field(default_factory=AGOPPower)
    orient: str = "auto"
    rank: int | str | None = "auto"
    bias_ridge: float = 2.0
    n_bias_sweeps: int = 10
    dtype: np.dtype = _FLOAT32
    tol: float | None = None
    validation_share: float = 0.0
    patience: int = 2
    random_state: Any = None
    max_memory: int | None = None
    progress: bool = False
    backend: str = "threads"
    step: KernelStep | None = None
    shift: float = 0.0
    solve_tol: float | None = None

    @classmethod
    def from_params(cls, values: Mapping[str, Any], **extra: Any) -> FitSettings:
        """The settings of a model with these stored hyperparameters (already validated).

        Fields are read by name; ``p`` (with ``gamma0``, ``eta``, ``gamma_min``) makes the
        update IRLS-p's, ``power`` lin-RFM's AGOP power; ``kernel`` (with ``bandwidth``,
        ``co_rating``, ``kernel_ridge``, ``n_kernel_updates``) adds the kernel step; ``verbose``
        is ``progress``. ``extra`` overrides any field.
        """
        kw: dict[str, Any] = {
            k: values[k]
            for k in cls.__dataclass_fields__
            if k in values and k not in ("update", "step", "progress", "dtype")
        }
        if "dtype" in values:
            kw["dtype"] = np.dtype(values["dtype"])
        kw["progress"] = bool(values.get("verbose", False))
        if "p" in values:
            kw["update"] = IRLSUpdate(
                p=values["p"],
                gamma0=values["gamma0"],
                eta=values["eta"],
                gamma_min=values["gamma_min"],
            )
        else:
            kw["update"] = AGOPPower(power=values.get("power", 1.0), normalize="diag")
        if "kernel" in values and not _plain_step(values):
            kernel_ridge = values["kernel_ridge"]
            kw["step"] = KernelStep(
                kernel=values["kernel"],
                bandwidth=float(values["bandwidth"]),
                co_rating=float(values["co_rating"]),
                ridge=float(values["ridge"] if kernel_ridge is None else kernel_ridge),
                n_updates=int(values["n_kernel_updates"]),
            )
        kw.update(extra)
        return cls(**kw)

    @property
    def dense_only(self) -> bool:
        """Whether the update needs the dense kernel (IRLS-p sees more than top eigenvalues)."""
        return not hasattr(self.update, "spectrum")


def _plain_step(values: Mapping[str, Any]) -> bool:
    """Whether kernel-step parameters leave the lin-RFM fit they follow unchanged."""
    return (
        values["kernel"] == "linear"
        and not values["co_rating"]
        and not values["n_kernel_updates"]
        and values["kernel_ridge"] in (None, values["ridge"])
    )
