"""The one fitting layer: settings, the choices of orientation, kernel form and backend, and the
fitted state every engine-based rating model holds.

Above the numerical core (:mod:`rfm_recsys.core`) and the Dask backend
(:mod:`rfm_recsys.distributed`), below the model classes: they build a :class:`FitSettings`
from their hyperparameters and call :func:`fit_ratings`.
"""

from .fit import BOTH_WEIGHT, fit_dask_frame, fit_ratings, fit_source, validation_curve
from .local import LocalRatings
from .plan import resolve_orientation, resolve_rank, validation_mask
from .settings import FitSettings
from .state import CombinedFit, RatingsFit

__all__ = [
    "BOTH_WEIGHT",
    "CombinedFit",
    "FitSettings",
    "LocalRatings",
    "RatingsFit",
    "fit_dask_frame",
    "fit_ratings",
    "fit_source",
    "resolve_orientation",
    "resolve_rank",
    "validation_curve",
    "validation_mask",
]
