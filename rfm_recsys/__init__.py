"""rfm_recsys: linear Recursive Feature Machines (lin-RFM) for rating prediction.

The numerical core is :mod:`rfm_recsys.core.engine`; the user-facing classes are the Surprise
algorithms :class:`LinRFMAlgo` and :class:`IRLSAlgo` and the explicit-feedback model
:class:`LinRFM`; :class:`ImplicitLinRFM` ranks from implicit feedback.
"""

from .baselines.als import ALSAlgo
from .checks import RatingsError
from .core.engine import AGOPPower, EngineMemoryError, IRLSUpdate, fit_engine, predict_pairs
from .fileformat import ModelFileError
from .implicit_feedback import ImplicitLinRFM
from .model import LinRFM, NotFittedError, UnknownIdError
from .params import InvalidParameterError
from .surprise_algos import IRLSAlgo, LinRFMAlgo

__version__ = "0.1.0"

__all__ = [
    "AGOPPower",
    "ALSAlgo",
    "EngineMemoryError",
    "IRLSAlgo",
    "IRLSUpdate",
    "ImplicitLinRFM",
    "InvalidParameterError",
    "LinRFM",
    "LinRFMAlgo",
    "ModelFileError",
    "NotFittedError",
    "RatingsError",
    "UnknownIdError",
    "fit_engine",
    "predict_pairs",
]
