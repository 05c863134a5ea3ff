"""Top-N recommendation from implicit feedback (who interacted with what).

:class:`ImplicitLinRFM` is lin-RFM on the fully observed binary (or confidence-weighted) users x
items matrix; its fit is one eigendecomposition of the item Gram matrix
(:mod:`~rfm_recsys.implicit_feedback.spectral`). Both it and the EASE baseline
(:class:`rfm_recsys.baselines.ease.EASE`) are ``implicit`` recommenders through
:class:`~rfm_recsys.implicit_feedback.base.ItemScoringRecommender`.
"""

from .base import ItemScoringRecommender, NotFittedError, check_user_items
from .linrfm import ImplicitLinRFM

__all__ = ["ImplicitLinRFM", "ItemScoringRecommender", "NotFittedError", "check_user_items"]
