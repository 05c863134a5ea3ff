"""Feature updates: how the kernel ``K`` is computed from ``X^T X`` of the completed matrix.

lin-RFM uses a power of the AGOP ``G = X^T X / n`` (:class:`AGOPPower`); IRLS-p uses
``(X^T X + gamma I)^(1 - p/2)`` with a decreasing ``gamma`` (:class:`IRLSUpdate`). The engine
treats both through the :class:`FeatureUpdate` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.linalg


class FeatureUpdate(Protocol):
    """How the kernel ``K`` is updated from ``X^T X`` of the completed matrix."""

    @property
    def needs_eigh(self) -> bool:
        """Whether an update takes a ``d x d`` eigendecomposition (for the memory estimate)."""

    def reset(self) -> None:
        """Forget state from a previous fit (IRLS's smoothing parameter)."""

    def __call__(self, xtx: np.ndarray, n_rows: int, iteration: int) -> np.ndarray:
        """Return the next kernel (``d x d``, symmetric PSD) from ``X^T X``."""


def _normalise(K: np.ndarray, how: str | None) -> np.ndarray:
    # A constant factor on K is equivalent to dividing lam by it; fixing the mean diagonal at 1
    # keeps lam meaningful from one iteration to the next instead of drifting with ||X||.
    if how is None or how == "none":
        return K
    if how == "diag":
        s = float(np.mean(np.diag(K)))
        if s == 0.0 and not K.any():
            # Every fitted row is zero (the residuals after the baseline are all zero, e.g. one
            # rating value throughout): the fit is the baseline whatever the kernel, so the
            # neutral kernel is kept rather than failing.
            return np.eye(K.shape[0], dtype=K.dtype)
        if not np.isfinite(s) or s <= 0:
            raise FloatingPointError(
                "the kernel collapsed to zero (all fitted rows are 0): lower `lam` or check that "
                "the targets are not all zero"
            )
        K /= s
        return K
    raise ValueError(f"normalize must be 'diag' or None, got {how!r}")


def _sym_power(S: np.ndarray, power: float, shift: float = 0.0) -> np.ndarray:
    """``(S + shift I)^power`` of a symmetric PSD matrix through ``eigh`` (negatives clipped)."""
    evals, evecs = scipy.linalg.eigh(S, check_finite=False, overwrite_a=False)
    evals = np.clip(evals, 0.0, None) + shift
    with np.errstate(divide="ignore"):
        scaled = evecs * (evals**power).astype(S.dtype)
    return scaled @ evecs.T


@dataclass
class AGOPPower:
    """lin-RFM's update ``K <- (X^T X / n)^power``, then rescaled to mean diagonal 1.

    ``power = 1`` is the SVD-free variant: the kernel is the AGOP itself, no eigendecomposition.
    Any other power takes ``scipy.linalg.eigh`` of the ``d x d`` AGOP. The reference code's
    ``alpha`` (kernel ``(G^alpha)^T G^alpha``) is ``power = 2 alpha``; as IRLS-p with weights
    ``K^-1``, ``power = 1 - p/2`` (``p = 2 - 2 power``: power 1 is IRLS-0, the log-det
    heuristic, with a fixed smoothing; power 1/2 is the nuclear norm).

    Args:
        power: exponent of the AGOP.
        normalize: ``"diag"`` rescales ``K`` to mean diagonal 1; ``None`` keeps the raw AGOP.
    """

    power: float = 1.0
    normalize: str | None = "diag"

    @property
    def needs_eigh(self) -> bool:
        return self.power != 1

    def reset(self) -> None:
        pass

    def spectrum(self, evals: np.ndarray, n_rows: int, iteration: int, d: int) -> np.ndarray:
        """Eigenvalues of the next kernel from the top eigenvalues of ``X^T X`` (factored form).

        The kept eigenvalues are rescaled so that the kernel has mean diagonal 1, as the dense
        kernel is. (Rescaling by the whole ``X^T X``'s trace instead, so that a truncated
        kernel would be the dense one minus its tail, scored 0.0000-0.0004 worse on validation
        shares of ml-100k and ml-latest-small at rank 128.)
        """
        g = np.clip(np.asarray(evals, dtype=np.float64), 0.0, None) / n_rows
        k = g if self.power == 1 else g**self.power
        if self.normalize is None or self.normalize == "none":
            return k
        if self.normalize != "diag":
            raise ValueError(f"normalize must be 'diag' or None, got {self.normalize!r}")
        mean_diag = float(k.sum()) / d
        if mean_diag == 0.0 and not k.any():  # all rows zero: see _normalise
            return np.ones_like(k)
        if not np.isfinite(mean_diag) or mean_diag <= 0:
            raise FloatingPointError(
                "the kernel collapsed to zero (all fitted rows are 0): lower `lam` or check that "
                "the targets are not all zero"
            )
        return k / mean_diag

    def __call__(self, xtx: np.ndarray, n_rows: int, iteration: int) -> np.ndarray:
        G = xtx / xtx.dtype.type(n_rows)
        K = G if self.power == 1 else _sym_power(G, self.power)
        return _normalise(K, self.normalize)


@dataclass
class IRLSUpdate:
    """IRLS-p's update (Mohan & Fazel 2012): ``K <- (X^T X + gamma_k I)^(1 - p/2)``.

    ``K`` is the inverse of the IRLS weight ``(X^T X + gamma I)^(p/2 - 1)``. The smoothing
    follows IRLS's own schedule: ``gamma_0 = gamma0 * lambda_max(X_1^T X_1)`` (``gamma0`` about
    1e-2 of the squared spectral norm of the first iterate), then
    ``gamma_{k+1} = max(gamma_k / eta, gamma_min)``. Every iteration needs ``eigh`` of ``X^T X``,
    the cost lin-RFM with power 1 avoids. With ``fixed_gamma`` the schedule is off and ``gamma``
    is that absolute value (IRLS-0 at fixed ``gamma = n * lam`` is lin-RFM with power 1).

    Args:
        p: Schatten-p quasi-norm being minimised (0 = log-det, 1 = nuclear norm).
        gamma0: initial smoothing relative to ``lambda_max(X^T X)``.
        eta: divisor of ``gamma`` per iteration (1.1 easy problems, 1.03 hard ones).
        gamma_min: floor of ``gamma`` relative to ``lambda_max`` of the first iterate.
        fixed_gamma: absolute, constant ``gamma`` (disables the schedule).
        normalize: ``"diag"`` or ``None``, as for :class:`AGOPPower`.
    """

    p: float = 0.0
    gamma0: float = 1e-2
    eta: float = 1.1
    gamma_min: float = 1e-10
    fixed_gamma: float | None = None
    normalize: str | None = "diag"
    gamma_: float | None = field(default=None, init=False, repr=False)
    gamma_floor_: float = field(default=0.0, init=False, repr=False)

    needs_eigh = True

    def reset(self) -> None:
        self.gamma_ = None

    def __call__(self, xtx: np.ndarray, n_rows: int, iteration: int) -> np.ndarray:
        if self.fixed_gamma is not None:
            gamma = float(self.fixed_gamma)
        elif self.gamma_ is None:
            lmax = float(
                scipy.linalg.eigh(
                    xtx,
                    eigvals_only=True,
                    subset_by_index=[xtx.shape[0] - 1, xtx.shape[0] - 1],
                    check_finite=False,
                )[0]
            )
            lmax = max(lmax, np.finfo(np.float64).tiny)
            gamma = self.gamma0 * lmax
            self.gamma_floor_ = self.gamma_min * lmax
        else:
            gamma = max(self.gamma_ / self.eta, self.gamma_floor_)
        self.gamma_ = gamma
        K = _sym_power(xtx, 1.0 - self.p / 2.0, shift=gamma)
        return _normalise(K, self.normalize)
