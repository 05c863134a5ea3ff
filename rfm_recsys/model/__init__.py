"""The explicit-feedback models on pandas/scipy data with an ``implicit`` face.

:mod:`.base` holds the ranking side shared by every model (recommend, similar items and users),
:mod:`.rating_model` the fitting, prediction and fold-in of :class:`LinRFM` and
:class:`KernelRFM` (:mod:`.linrfm`), :mod:`.inputs` the parsing of their inputs and
:mod:`.persistence` their file format.
"""

from .base import NotFittedError, ScoringRecommenderBase, UnknownIdError
from .linrfm import KernelRFM, LinRFM
from .rating_model import RatingModel

__all__ = [
    "KernelRFM",
    "LinRFM",
    "NotFittedError",
    "RatingModel",
    "ScoringRecommenderBase",
    "UnknownIdError",
]
