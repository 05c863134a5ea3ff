"""``LinRFM``, the explicit-feedback model on pandas/scipy data with an ``implicit`` face."""

from .linrfm import LinRFM, NotFittedError, UnknownIdError

__all__ = ["LinRFM", "NotFittedError", "UnknownIdError"]
