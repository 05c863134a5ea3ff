"""``ImplicitLinRFM``: lin-RFM on a fully observed users x items interaction matrix."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..config import IMPLICIT_LINRFM, with_config
from ..params import InvalidParameterError
from .base import ItemScoringRecommender, check_user_items
from .spectral import gram_eigenpairs, kernel_spectrum

__all__ = ["ImplicitLinRFM"]

# Up to this many users or items (whichever is fewer), ``solver="auto"`` takes the exact
# eigendecomposition of the smaller Gram matrix; beyond it, the randomized top-``rank`` one.
# Measured (one BLAS thread, ``python -m evaluation.benchmark_implicit --solver-sizes``): exact
# and randomized cost the same at 943 (ml-100k), exact is ~3x slower near 2,000 and ~9x at
# 3,000, where the O(m^3) eigh dominates; the exact fit ranks a little better (validation
# precision@10 on ml-latest-small 0.177 against 0.172 with rank 256).
EXACT_MAX = 2000
# ``rank="auto"`` with the randomized solver.
DEFAULT_RANK = 256


@with_config(IMPLICIT_LINRFM)
class ImplicitLinRFM(ItemScoringRecommender):
    """Linear Recursive Feature Machine for top-N recommendation from implicit feedback.

    The interaction matrix ``X`` (users x items) is fully observed: a missing pair is a 0.
    Every user's row is fitted by kernel ridge regression over all items with one shared
    kernel ``K``, and ``K`` is replaced ``n_updates`` times by the rows' average gradient outer
    product (AGOP) raised to ``power`` and rescaled to mean diagonal 1::

        W = X K (K + ridge I)^-1          K <- (W^T W / n)^power / mean diag

    Starting from ``K = I`` every kernel shares the eigenvectors ``U`` of ``G = X^T X / n``, so
    the fit is one eigendecomposition plus elementwise updates of its spectrum
    (:mod:`rfm_recsys.implicit_feedback.spectral`), and a user's scores are
    ``x_u U diag(k / (k + ridge)) U^T``. Items the user already has are filtered by
    ``recommend`` as in implicit.

    It is an :class:`implicit.recommender_base.RecommenderBase`: ``fit(user_items)``,
    ``recommend``, ``recommend_all``, ``similar_items``, ``similar_users``, ``save``/``load``
    (npz + JSON, no pickle), so ``implicit.evaluation.ranking_metrics_at_k`` runs on it.

    Defaults (``n_updates=1, ridge=20, alpha=2``) were chosen on validation splits of ml-100k
    and ml-latest-small training folds (``python -m evaluation.choose_topn_defaults``): rating
    values as confidences help (precision@10 0.235 against 0.218 binary on ml-100k), more
    updates, another ``power`` or down-weighting heavy users do not.

    Attributes:
        spectrum_: after ``fit``, the eigenvalues of ``G`` kept (descending).
        tail_eigenvalue_: after ``fit``, the eigenvalue given to the directions left out by
            ``rank``.
        kernel_spectrum_: after ``fit``, the kernel's eigenvalues on ``components_`` after the
            updates.
        kernel_tail_: after ``fit``, the kernel's eigenvalue on the directions left out.
        components_: after ``fit``, ``U``, ``n_items x r`` float32.
        item_factors: after ``fit``, ``V = U diag(k / (k + ridge) - f_tail)^1/2``; a user's
            scores of unseen items are ``(x_u @ V) @ V.T``.
        user_items_: after ``fit``, the (weighted) training interactions, one row per user.
        fit_seconds_: after ``fit``, the wall time of the last fit.
    """

    _format: ClassVar[str] = "rfm_recsys.ImplicitLinRFM"

    @classmethod
    def _upgrade_params(cls, params: dict[str, Any], version: int) -> dict[str, Any]:
        params = super()._upgrade_params(params, version)
        if version < 2 and params.get("rank") is None:
            params["rank"] = "auto"  # version 1's rank=None was today's "auto"
        return params

    def fit(self, user_items, show_progress: bool = False, callback=None) -> ImplicitLinRFM:
        """Fit on a users x items CSR matrix of interactions (values: counts, ratings, ...).

        Args:
            user_items: scipy sparse users x items; stored non-zero entries are interactions.
            show_progress: accepted for implicit's signature (the fit has no long loop).
            callback: called once as ``callback(n_updates, seconds, None)`` (implicit's form).

        Returns:
            ``self``. A failed fit leaves a previously fitted model as it was.
        """
        self._validate_params()
        start = time.perf_counter()
        X = self._transform(check_user_items(user_items))
        n, d = X.shape
        if n < 1 or d < 1 or X.nnz == 0:
            raise ValueError(
                f"user_items ({n} x {d}) stores no interactions: pass at least one per user"
            )
        exact = self.solver == "exact" or (self.solver == "auto" and min(n, d) <= EXACT_MAX)
        if self.rank is None and not exact:
            raise InvalidParameterError(
                "ImplicitLinRFM: rank=None keeps every eigenpair, which needs the exact solver: "
                "use solver='exact' (or 'auto'), or an int rank for the randomized one"
            )
        if self.rank == "auto":
            rank = None if exact else DEFAULT_RANK
        else:
            rank = self.rank
        s, U = gram_eigenpairs(
            X,
            rank,
            exact=exact,
            n_power_iter=self.n_power_passes,
            oversample=self.oversample,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )
        # the directions left out share one eigenvalue: their mean, from the trace of G
        trace = float(np.dot(X.data, X.data)) / n
        tail = max(trace - float(s.sum()), 0.0) / (d - s.size) if d > s.size else 0.0
        k, k_tail = kernel_spectrum(
            s, d, self.n_updates, float(self.ridge), float(self.power), tail
        )
        self._set_interactions(X)
        self.spectrum_ = s
        self.tail_eigenvalue_ = tail
        self.kernel_spectrum_ = k
        self.kernel_tail_ = k_tail
        self.components_ = U
        self._set_factors()
        self.fit_seconds_ = time.perf_counter() - start
        if callback is not None:
            callback(self.n_updates, self.fit_seconds_, None)
        return self

    # ------------------------------------------------------------------ hooks of the base

    def _transform(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        X = user_items.copy()
        if self.alpha:
            X.data = (1.0 + float(self.alpha) * X.data).astype(np.float32)
        else:
            X.data = np.ones_like(X.data)
        return X

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        V = self._factors
        return np.asarray(rows @ V) @ V.T

    def _item_vectors(self) -> np.ndarray:
        return self._factors

    def _user_vectors(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self._factors)

    def _set_factors(self) -> None:
        """``U diag(f - f_tail)^1/2`` with ``f = k / (k + ridge)``.

        The left-out directions carry ``f_tail (I - U U^T)``; on the items a user has not seen
        that is ``-f_tail x_u U U^T`` (``x_u`` itself is zero there), so it shifts the leading
        factors and needs no storage.
        """
        ridge = float(self.ridge)
        k = self.kernel_spectrum_
        shift = self.kernel_tail_ / (self.kernel_tail_ + ridge)
        shrink = np.maximum(k / (k + ridge) - shift, 0.0).astype(np.float32)
        self._factors = self.components_ * np.sqrt(shrink)[None, :]

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            "spectrum": self.spectrum_,
            "kernel_spectrum": self.kernel_spectrum_,
            "components": self.components_,
        }
        meta = {
            "fit_seconds": float(self.fit_seconds_),
            "tail_eigenvalue": float(self.tail_eigenvalue_),
            "kernel_tail": float(self.kernel_tail_),
        }
        return arrays, meta

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.spectrum_ = arrays["spectrum"]
        self.kernel_spectrum_ = arrays["kernel_spectrum"]
        self.components_ = arrays["components"]
        self.tail_eigenvalue_ = float(meta["tail_eigenvalue"])
        self.kernel_tail_ = float(meta["kernel_tail"])
        self._set_factors()
        self.fit_seconds_ = float(meta["fit_seconds"])
