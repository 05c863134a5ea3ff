"""rfm_recsys: linear Recursive Feature Machines (lin-RFM) for rating prediction.

The numerical core is :mod:`rfm_recsys.engine`; the user-facing classes are the Surprise
algorithms :class:`LinRFMAlgo` and :class:`IRLSAlgo` and the explicit-feedback model
:class:`LinRFM`.
"""

from .algos import IRLSAlgo, LinRFMAlgo
from .als import ALSAlgo
from .model import LinRFM, NotFittedError, UnknownIdError
from .engine import AGOPPower, EngineMemoryError, IRLSUpdate, fit_engine, predict_pairs
from .validation import RatingsError

__version__ = "0.1.0"

__all__ = [
    "AGOPPower",
    "ALSAlgo",
    "EngineMemoryError",
    "IRLSAlgo",
    "IRLSUpdate",
    "LinRFM",
    "LinRFMAlgo",
    "NotFittedError",
    "UnknownIdError",
    "RatingsError",
    "fit_engine",
    "predict_pairs",
]
