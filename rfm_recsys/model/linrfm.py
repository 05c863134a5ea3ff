"""``LinRFM`` and ``KernelRFM``: the explicit-feedback models on pandas/scipy data.

Both are :class:`~rfm_recsys.model.rating_model.RatingModel` (fit, predict, fold-in, the
``implicit`` face, save/load); they differ in their hyperparameters, declared in
:mod:`rfm_recsys.config`.
"""

from __future__ import annotations

from ..config import FRAME, KERNEL_RFM, LINRFM, with_config
from .rating_model import RatingModel

__all__ = ["KernelRFM", "LinRFM"]


@with_config(LINRFM + FRAME)
class LinRFM(RatingModel):
    """Linear Recursive Feature Machine (lin-RFM) for explicit ratings.

    The paper's algorithm (Radhakrishnan, Belkin & Drusvyatskiy, PNAS 2025) on the residuals of
    regularised biases: each row (a user, with ``orient="items"``) is fitted by kernel ridge
    regression over its observed feature columns with the linear kernel ``K``, and ``K`` is
    learned::

        r_hat(u, i) = mu + b_u + b_i + sum_{s in S_r} K[c, s] a_{r, s}
        a_r = (K[S_r, S_r] + ridge I)^-1 y_r       K <- (W^T W / n)^power / mean diag

    where ``r`` is the row and ``c`` the feature column of the pair, ``S_r`` the columns
    observed in row ``r``, ``y_r`` its residuals and ``W = A K`` the fitted rows (their average
    gradient outer product, AGOP). ``K`` starts as the identity and is replaced ``n_updates``
    times; with ``power=1`` no eigendecomposition is needed anywhere.

    ``backend="dask"`` (or a ``dask.dataframe.DataFrame`` given to ``fit``) fits the same model
    on the current ``dask.distributed`` client, or on a temporary ``LocalCluster`` without one
    (:mod:`rfm_recsys.distributed`): the ratings live on the workers as blocks of rows, and per
    iteration only the kernel (out) and the blocks' summed share of the update (back) cross the
    network. The driver holds what any fitted model holds: the id vocabularies and biases, the
    kernel (``d r`` or ``d^2`` floats) and the coefficients ``A`` (one float and one int32 index
    per rating, about 8 bytes per rating in float32).

    Defaults chosen on validation shares of ml-100k and ml-latest-small training folds
    (``python -m evaluation.choose_defaults``).
    """

    _format = "rfm_recsys.LinRFM"


@with_config(KERNEL_RFM + FRAME)
class KernelRFM(RatingModel):
    """Kernel RFM for explicit ratings: lin-RFM's updates, then the kernel step.

    After ``n_updates`` of lin-RFM (see :class:`LinRFM`), the rows are refitted with a radial
    kernel over the learned geometry plus the co-rating signal (which items the same users
    rated, the signal SVD++ adds to SVD), and the geometry is updated ``n_kernel_updates`` times
    from those fits' AGOP (kernel RFM: Radhakrishnan et al., Science 2024;
    :mod:`rfm_recsys.core.kernel_step`). The prediction rule is lin-RFM's with the step's kernel
    matrix in place of ``K``; predict, fold-in, recommend and save/load work as for
    :class:`LinRFM`.

    More accurate than plain lin-RFM on every MovieLens set measured (about 0.025 RMSE on
    ml-100k and ml-latest-small), at several times its fit time. The defaults (settings F* of
    ``evaluation/kernel_rfm_experiments.md``) were chosen on validation shares of ml-100k and
    ml-latest-small training folds. It runs on the Dask backend as LinRFM does.
    """

    _format = "rfm_recsys.KernelRFM"
