"""``LinRFM``, the explicit-feedback model on pandas/scipy data with an ``implicit`` face.

:mod:`.base` holds the ranking side shared by every model (recommend, similar items and users),
:mod:`.linrfm` the model, :mod:`.inputs` the parsing of its inputs and :mod:`.persistence` its
file format.
"""

from .base import NotFittedError, ScoringRecommenderBase, UnknownIdError
from .linrfm import LinRFM

__all__ = ["LinRFM", "NotFittedError", "ScoringRecommenderBase", "UnknownIdError"]
