"""rfm_recsys: Recursive Feature Machines for rating prediction and top-N recommendation.

Rating models, each with a Surprise face (``AlgoBase``) and a pandas/scipy face with implicit's
``RecommenderBase`` contract: :class:`LinRFMAlgo` / :class:`LinRFM` (lin-RFM, the PNAS 2025
paper's algorithm) and :class:`KernelRFMAlgo` / :class:`KernelRFM` (kernel RFM with the
co-rating signal); :class:`IRLSAlgo` is the IRLS-p baseline on the same engine.
:class:`ImplicitLinRFM` and :class:`EASE` rank from implicit feedback; :class:`ALSAlgo` and
:class:`BayesianMFAlgo` (myfm, the ``bayes`` extra) are the baselines we implement. The
numerical core is :mod:`rfm_recsys.core` (:func:`~rfm_recsys.core.engine.fit_engine`).
"""

from .baselines.als import ALSAlgo
from .baselines.bayesian_mf import BayesianMFAlgo
from .baselines.ease import EASE
from .checks import RatingsError
from .core.memory import EngineMemoryError
from .fileformat import ModelFileError
from .implicit_feedback import ImplicitLinRFM
from .model import KernelRFM, LinRFM, NotFittedError, UnknownIdError
from .params import InvalidParameterError
from .surprise_algos import IRLSAlgo, KernelRFMAlgo, LinRFMAlgo

__version__ = "0.2.0"

__all__ = [
    "EASE",
    "ALSAlgo",
    "BayesianMFAlgo",
    "EngineMemoryError",
    "IRLSAlgo",
    "ImplicitLinRFM",
    "InvalidParameterError",
    "KernelRFM",
    "KernelRFMAlgo",
    "LinRFM",
    "LinRFMAlgo",
    "ModelFileError",
    "NotFittedError",
    "RatingsError",
    "UnknownIdError",
]
