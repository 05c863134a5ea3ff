"""Kernel RFM for ratings: nonlinear kernels over the geometry that lin-RFM's AGOP learns.

lin-RFM regresses each row on the feature columns ``e_j`` with the linear kernel
``k(e_j, e_k) = M_jk``, ``M`` the learned (AGOP) matrix. Kernel RFM (Radhakrishnan et al.,
Science 2024) keeps the learned Mahalanobis geometry but swaps the linear kernel for a radial
one over its distances::

    d_jk^2 = M_jj + M_kk - 2 M_jk            (||e_j - e_k||_M^2)
    gaussian:  k_jk = exp(-d_jk^2 / (2 h^2))        laplace:  k_jk = exp(-d_jk / h)

Both are positive definite functions of a Euclidean distance (Schoenberg), so the ``d x d``
kernel matrix is symmetric PSD whatever ``M`` is (``M`` PSD makes ``d`` Euclidean). With
``geometry="cosine"`` the distance is that of the unit-normalised columns (``d_jk^2 = 2 - 2
cos_jk``) and the kernel is rescaled by the norms, ``k_jk = |e_j|_M |e_k|_M f(d_jk)`` (still PSD:
a product with the rank-one PSD ``n n^T``), which keeps the strength the AGOP gives each feature.
``"linear"`` returns ``M`` itself, so that kernel is today's model exactly.

Rows are then refitted with the kernel matrix in the ridge solves of the engine
(``a_r = (k[S_r, S_r] + lam I)^-1 y_r``); prediction is unchanged in form
(``sum_s k[c, s] a_rs``), so a :class:`~rfm_recsys.core.fitting.RatingsFit` holding the kernel
matrix predicts, folds in and saves as before. The feature update is either the AGOP of the
completed matrix ``W = A k`` (as lin-RFM does) or the AGOP of the nonlinear predictors
themselves, ``sum_r sum_j grad f_r(e_j) grad f_r(e_j)^T`` with
``f_r(x) = sum_s a_rs k(x, e_s)`` (:func:`predictor_agop`, in closed form with ``d x d``
products only).

Two more levers live here. The implicit signal of who rated what: the co-rating matrix
``B^T B`` of the feature side (:func:`co_rating_matrix`), added to ``M`` before each kernel is
built, so the rows are fitted and the next AGOP learned with it (with the kernel over items it is
the signal SVD++ adds to SVD). And both orientations: :class:`CombinedFit` averages a fit with
users as rows and one with items as rows (:func:`fit_both_orientations`). What validation kept,
and the figures, are in ``evaluation/kernel_rfm_experiments.md``; the user-facing classes reach
this module through :func:`apply_kernel`.

Everything above forms ``d x d`` matrices. On a fit with a
:class:`~rfm_recsys.core.kernels.FactoredKernel` (``rank`` an int, or ``"auto"`` beyond 4,096
feature columns) :func:`refit_kernel` hands over to
:func:`~rfm_recsys.core.kernel_rfm_factored.refit_kernel_factored`, the same step (cosine
geometry, co-rating signal, AGOP of the completion) with low-rank factors and Nystrom instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .engine import RowPlan, gram_of_completion, solve_rows
from .kernel_rfm_factored import refit_kernel_factored
from .kernels import DenseKernel, FactoredKernel, resolve_step_rank

if TYPE_CHECKING:  # fitting imports this module: no import cycle at run time
    from .fitting import RatingsFit

KERNELS = ("linear", "laplace", "gaussian")
GEOMETRIES = ("mahalanobis", "cosine")
FEATURE_UPDATES = ("completion", "gradient")


def _check(kernel: str, geometry: str, bandwidth: float) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")


def squared_distances(M: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``d_jk^2 = M_jj + M_kk - 2 M_jk`` (a new array), round-off negatives clipped to 0."""
    D2 = np.array(M, dtype=dtype)
    diag = np.diag(D2).copy()
    D2 *= -2.0
    D2 += diag[:, None]
    D2 += diag[None, :]
    np.maximum(D2, 0.0, out=D2)
    np.fill_diagonal(D2, 0.0)
    return D2


def _radial_inplace(D2: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    # d x d temporaries are the memory peak for large d: work in place
    if kernel == "gaussian":
        D2 *= D2.dtype.type(-0.5 / bandwidth**2)
    else:
        np.sqrt(D2, out=D2)
        D2 *= D2.dtype.type(-1.0 / bandwidth)
    return np.exp(D2, out=D2)


def _radial(D2: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    return _radial_inplace(D2.copy(), kernel, bandwidth)


def kernel_matrix(
    M: np.ndarray, kernel: str = "linear", bandwidth: float = 1.0, geometry: str = "mahalanobis"
) -> np.ndarray:
    """The ``d x d`` kernel matrix ``k(e_j, e_k)`` over the geometry of ``M`` (symmetric PSD).

    Args:
        M: the learned feature matrix (symmetric PSD, mean diagonal 1 as the engine keeps it,
            so distances are of order 1 and ``bandwidth`` means the same on every data set).
        kernel: ``"linear"`` (returns ``M`` itself), ``"gaussian"`` or ``"laplace"``.
        bandwidth: ``h`` of the radial function.
        geometry: ``"mahalanobis"`` (distances of ``M``) or ``"cosine"`` (distances of the
            unit-normalised features, kernel rescaled by the norms).

    Returns:
        The kernel matrix in ``M``'s dtype (computed in it, in place, to bound memory).
    """
    _check(kernel, geometry, bandwidth)
    if kernel == "linear":
        return M
    dtype = M.dtype if M.dtype.kind == "f" else np.dtype(np.float64)
    if geometry == "mahalanobis":
        Kn = _radial_inplace(squared_distances(M, dtype), kernel, bandwidth)
    else:
        norms = np.sqrt(np.clip(np.diag(M).astype(np.float64), 0.0, None))
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(dtype)
        D2 = np.array(M, dtype=dtype)
        D2 *= inv[:, None]
        D2 *= inv[None, :]  # cosines
        D2 *= -2.0
        D2 += 2.0
        np.clip(D2, 0.0, 4.0, out=D2)
        np.fill_diagonal(D2, 0.0)
        Kn = _radial_inplace(D2, kernel, bandwidth)
        n = norms.astype(dtype)
        Kn *= n[:, None]
        Kn *= n[None, :]
    # exact symmetry for Cholesky and eigh downstream
    Kn += Kn.T
    Kn *= 0.5
    return Kn


def _derivative_factor(D2: np.ndarray, Kn: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    """``c_jk`` with ``grad_x k(x, e_k) = c_jk M (x - e_k)`` at ``x = e_j`` (Mahalanobis only)."""
    if kernel == "gaussian":
        return Kn * (-1.0 / bandwidth**2)
    D = np.sqrt(D2)
    # the Laplace kernel has no gradient at d = 0; RFM's implementation sets that term to 0
    return np.divide(-Kn, bandwidth * D, out=np.zeros_like(Kn), where=D > 0)


def predictor_agop(M: np.ndarray, A: sp.csr_matrix, kernel: str, bandwidth: float) -> np.ndarray:
    """AGOP of the row predictors ``f_r(x) = sum_s A_rs k(x, e_s)`` over all ``x = e_j``.

    With ``grad f_r(e_j) = M v_rj``, ``v_rj = sum_s A_rs c_js (e_j - e_s)``, the stacked
    ``V_r = diag(C a_r) - C diag(a_r)`` give ``sum_r V_r^T V_r`` as
    ``diag(sum_r (C a_r)^2) - C o P - (C o P)^T + (C C) o (A^T A)`` with ``P = (A C)^T A``
    (``o`` the elementwise product), so no ``n x d x d`` array is formed. The result is
    ``M (sum_r V_r^T V_r) M / (n d)``, float64.

    Only for the Mahalanobis geometry (``gaussian`` or ``laplace``): the linear kernel's
    gradient is the completed row itself (:func:`~rfm_recsys.core.engine.gram_of_completion`).
    """
    _check(kernel, "mahalanobis", bandwidth)
    if kernel == "linear":
        raise ValueError("the linear kernel's AGOP is that of the completed matrix")
    M64 = np.asarray(M, dtype=np.float64)
    D2 = squared_distances(M64)
    Kn = _radial(D2, kernel, bandwidth)
    C = _derivative_factor(D2, Kn, kernel, bandwidth)
    A64 = sp.csr_matrix(A, dtype=np.float64)
    AC = np.asarray(A64 @ C)  # n x d, rows c_r = C a_r
    P = np.asarray(A64.T @ AC).T  # sum_r c_r a_r^T
    T2 = C * P
    ata = (A64.T @ A64).toarray()
    S = np.diag((AC**2).sum(axis=0)) - T2 - T2.T + (C @ C) * ata
    n, d = A.shape
    G = M64 @ S @ M64 / (n * d)
    return 0.5 * (G + G.T)


def solve_rows_scaled(
    K: np.ndarray, plan: RowPlan, y: np.ndarray, lam: float, count_power: float = 0.0
) -> np.ndarray:
    """Row fits with ridge ``lam * (c_r / mean c)^count_power`` for a row of ``c_r`` ratings.

    ``count_power = 0`` is the engine's :func:`~rfm_recsys.core.engine.solve_rows` with one
    ``lam``. Rows are grouped by count already, so each group is one call with its own ridge.
    """
    if count_power == 0.0:
        return solve_rows(K, plan, y, lam)
    counts = np.diff(plan.indptr)
    mean_c = float(counts[counts > 0].mean())
    a = np.zeros(y.shape[0], dtype=K.dtype)
    for group in plan.groups:
        sub = RowPlan(plan.n_rows, plan.n_cols, plan.indptr, plan.indices, [group])
        lam_c = lam * (group[0] / mean_c) ** count_power
        a += solve_rows(K, sub, y, lam_c, n_threads=1)
    return a


def _normalise(G: np.ndarray) -> np.ndarray:
    s = float(np.mean(np.diag(G)))
    if s == 0.0 and not G.any():
        # every fitted row is zero (the residuals after the baseline are all zero, e.g. one
        # rating value throughout): the fit is the baseline whatever the kernel, so keep the
        # neutral geometry, as the AGOP update does, rather than fail
        return np.eye(G.shape[0], dtype=G.dtype)
    if not np.isfinite(s) or s <= 0:
        raise FloatingPointError("the feature matrix collapsed to zero: lower the ridge")
    G /= G.dtype.type(s)
    return G


@dataclass(frozen=True)
class KernelSettings:
    """How the rows are refitted on top of a fitted lin-RFM.

    Attributes:
        kernel: ``"linear"``, ``"laplace"`` or ``"gaussian"``.
        bandwidth: ``h`` of the radial kernel (distances of a mean-diagonal-1 ``M``).
        geometry: ``"mahalanobis"`` or ``"cosine"`` (see :func:`kernel_matrix`).
        lam: ridge of the refitted rows (relative to the kernel's scale).
        n_updates: feature updates after the first refit (0 = one refit with the lin-RFM ``M``).
        feature_update: ``"completion"`` (AGOP of ``W = A k``) or ``"gradient"`` (AGOP of the
            nonlinear predictors, Mahalanobis geometry only).
        count_power: the ridge of a row with ``c`` ratings is ``lam (c / mean c)^count_power``.
        implicit_weight: weight of the co-rating matrix ``B^T B`` (``B`` the 0/1 pattern of who
            rated what), mean-diagonal normalised, added to ``M`` before the kernel is built.
        landmarks: Nystrom landmarks of the factored kernel step (None: 4 times the rank).
        landmark_choice: ``"uniform"`` (seeded draw) or ``"greedy"`` (pivoted Cholesky).
        diag_fix: ``"exact"`` (the factored kernel keeps the dense one's diagonal, one shift per
            feature), ``"mean"`` (one shift, the mean of what it misses) or ``"none"``.
        geometry_rank: rank of the factored geometry with the co-rating term (None: 4 times
            the learned kernel's rank).
        update_rank: rank of the geometry each feature update learns (None: the learned
            kernel's rank). The last five apply to a fit with a factored kernel only
            (:mod:`rfm_recsys.core.kernel_rfm_factored`).
    """

    kernel: str = "linear"
    bandwidth: float = 1.0
    geometry: str = "mahalanobis"
    lam: float = 10.0
    n_updates: int = 0
    feature_update: str = "completion"
    count_power: float = 0.0
    implicit_weight: float = 0.0
    landmarks: int | None = None
    landmark_choice: str = "uniform"
    diag_fix: str = "exact"
    geometry_rank: int | None = None
    update_rank: int | None = None


def residual_matrix(
    fit: RatingsFit, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, dtype
) -> sp.csr_matrix:
    """Baseline residuals of the training triples in the fit's orientation, as the engine's."""
    # same order of operations as Baseline.predict, so the linear refit is bit-identical
    base = np.full(ratings.shape, fit.mu) + fit.b_user[users] + fit.b_item[items]
    resid = ratings - base
    rows, cols = (users, items) if fit.users_are_rows else (items, users)
    shape = (fit.n_users, fit.n_items) if fit.users_are_rows else (fit.n_items, fit.n_users)
    R = sp.csr_matrix((resid.astype(dtype), (rows, cols)), shape=shape)
    R.sort_indices()
    return R


def refit_kernel(
    fit: RatingsFit,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    settings: KernelSettings,
) -> tuple[RatingsFit, np.ndarray]:
    """Refit the rows of a lin-RFM fit with a (nonlinear) kernel over its learned geometry.

    Args:
        fit: the fitted lin-RFM (its ``K`` is the geometry ``M``; its baseline is kept).
        users, items, ratings: the training triples the fit was made on (inner ids).
        settings: the kernel and the refit's ridge and updates.

    Returns:
        ``(fit with the kernel matrix as K and the refitted A, final geometry M)``; for a fit
        with a :class:`~rfm_recsys.core.kernels.FactoredKernel` both are factored kernels
        (:func:`~rfm_recsys.core.kernel_rfm_factored.refit_kernel_factored`, no ``d x d``
        matrix).
    """
    s = settings
    _check(s.kernel, s.geometry, s.bandwidth)
    if isinstance(fit.kernel, FactoredKernel):
        R = residual_matrix(fit, users, items, ratings, fit.kernel.dtype)
        return refit_kernel_factored(fit, R, s)
    if s.feature_update not in FEATURE_UPDATES:
        raise ValueError(
            f"feature_update must be one of {', '.join(FEATURE_UPDATES)}, got {s.feature_update!r}"
        )
    if s.feature_update == "gradient" and (s.kernel == "linear" or s.geometry != "mahalanobis"):
        raise ValueError(
            "feature_update='gradient' needs a radial kernel over the Mahalanobis geometry"
        )
    dtype = fit.K.dtype
    R = residual_matrix(fit, users, items, ratings, dtype)
    plan = RowPlan.from_csr(R)
    y = R.data.astype(dtype)
    M = fit.K
    implicit = None
    if s.implicit_weight:
        implicit = co_rating_matrix(R, s.implicit_weight, dtype)
    for step in range(s.n_updates + 1):
        geometry = M if implicit is None else (M + implicit).astype(dtype)
        Kn = kernel_matrix(geometry, s.kernel, s.bandwidth, s.geometry)
        a = solve_rows_scaled(Kn, plan, y, s.lam, s.count_power)
        A = sp.csr_matrix((a, R.indices, R.indptr), shape=R.shape)
        if step == s.n_updates:
            break
        if s.feature_update == "gradient":
            G = predictor_agop(geometry, A, s.kernel, s.bandwidth)
        else:
            G = gram_of_completion(Kn, A, dtype=dtype)
        M = _normalise(G).astype(dtype, copy=False)
    return replace(fit, kernel=DenseKernel(Kn), A=A, lam=float(s.lam)), M


def co_rating_matrix(R: sp.csr_matrix, weight: float, dtype) -> np.ndarray:
    """``weight * B^T B`` rescaled to mean diagonal ``weight``, ``B`` the 0/1 pattern of ``R``.

    Entry ``(j, k)`` counts the rows that rated both features ``j`` and ``k``: the implicit
    signal of which items a user rated (SVD++'s), here shaping the kernel the rows are fitted
    with rather than added as a fixed regressor.
    """
    B = sp.csr_matrix((np.ones(R.nnz, dtype=dtype), R.indices, R.indptr), shape=R.shape)
    C = (B.T @ B).toarray()
    scale = float(np.mean(np.diag(C)))
    if scale > 0:
        C *= dtype.type(weight / scale)
    return C


def kernel_step_is_plain(
    kernel: str = "linear",
    bandwidth: float = 1.0,
    implicit: float = 0.0,
    kernel_updates: int = 0,
    kernel_lam: float | None = None,
) -> bool:
    """Whether the user-facing classes' kernel settings leave plain lin-RFM unchanged."""
    return kernel == "linear" and not implicit and not kernel_updates and kernel_lam is None


def is_plain(settings: KernelSettings, lam: float) -> bool:
    """Whether the refit would reproduce the lin-RFM fit (nothing to do)."""
    s = settings
    return (
        s.kernel == "linear"
        and s.n_updates == 0
        and s.count_power == 0
        and s.implicit_weight == 0
        and s.lam == lam
    )


@dataclass
class CombinedFit:
    """Two fits of the same ratings, users as rows in one and items as rows in the other.

    Both share the baseline (it does not depend on the orientation); the kernel parts are
    averaged with ``weight`` on the first: ``mu + b_u + b_i + w k_1(u, i) + (1 - w) k_2(u, i)``.
    Each side's kernel sees a different similarity (between items in one, between users in the
    other), so their errors are far from identical and the average gains.
    """

    first: RatingsFit
    second: RatingsFit
    weight: float = 0.5

    @property
    def mu(self) -> float:
        return self.first.mu

    @property
    def b_user(self) -> np.ndarray:
        return self.first.b_user

    @property
    def b_item(self) -> np.ndarray:
        return self.first.b_item

    @property
    def n_users(self) -> int:
        return self.first.n_users

    @property
    def n_items(self) -> int:
        return self.first.n_items

    @property
    def history(self) -> list[dict]:
        return self.first.history

    def _mix(self, a: np.ndarray, b: np.ndarray, base) -> np.ndarray:
        return base + self.weight * (a - base) + (1.0 - self.weight) * (b - base)

    def predict(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`RatingsFit.predict`, the kernel parts of both sides averaged."""
        e1, impossible = self.first.predict(users, items)
        e2, _ = self.second.predict(users, items)
        # the baseline parts are identical, so mixing the estimates mixes the kernel parts
        return self.weight * e1 + (1.0 - self.weight) * e2, impossible

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings of every item for known users (``len(users) x n_items``)."""
        out = self.first.score_users(users)
        out *= self.weight
        out += (1.0 - self.weight) * self.second.score_users(users)
        return out

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """Both sides' fold-ins averaged (the user bias is the same in both)."""
        s1, b_u = self.first.fold_in(items, ratings)
        s2, _ = self.second.fold_in(items, ratings)
        return self.weight * s1 + (1.0 - self.weight) * s2, b_u


#: Hyperparameters of the user-facing classes that :func:`apply_kernel` takes.
KERNEL_PARAMS = ("kernel", "bandwidth", "implicit", "kernel_updates", "kernel_lam")
#: Weight of the kernel-over-items side when both orientations are averaged, chosen on
#: validation shares of ml-100k and ml-latest-small (evaluation/kernel_rfm_experiments.md).
BOTH_WEIGHT = 0.75


def fit_both_orientations(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    kernel: dict[str, Any],
    *,
    weight: float = BOTH_WEIGHT,
    **fit_kwargs: Any,
) -> CombinedFit:
    """lin-RFM and the kernel step with the kernel over items, then over users; averaged.

    ``kernel`` holds :func:`apply_kernel`'s keywords, ``fit_kwargs`` those of
    :func:`~rfm_recsys.core.fitting.fit_ratings` (``orient`` is set here);
    ``weight`` is that of the side with the kernel over items (users as rows).
    """
    from .fitting import fit_ratings

    fit_kwargs.pop("orient", None)
    step = not kernel_step_is_plain(**kernel)

    def one(side: str) -> RatingsFit:
        kw = dict(fit_kwargs)
        if step and "rank" in kw:  # the kernel step's rule for rank="auto", per side
            kw["rank"] = resolve_step_rank(kw["rank"], n_items if side == "items" else n_users)
        fit = fit_ratings(users, items, ratings, n_users, n_items, orient=side, **kw)
        return apply_kernel(fit, users, items, ratings, **kernel)

    return CombinedFit(one("items"), one("users"), weight=weight)


def apply_kernel(
    fit: RatingsFit,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    *,
    kernel: str = "linear",
    bandwidth: float = 1.0,
    implicit: float = 0.0,
    kernel_updates: int = 0,
    kernel_lam: float | None = None,
) -> RatingsFit:
    """The user-facing classes' kernel step on a fitted lin-RFM (cosine geometry, completion AGOP).

    Dense or factored as ``fit``'s kernel is (:func:`refit_kernel`).

    Returns ``fit`` itself when the settings change nothing (linear kernel, no implicit signal,
    no update, the same ridge), so :data:`~rfm_recsys.config.PLAIN_LINRFM` is plain lin-RFM exactly.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    settings = KernelSettings(
        kernel=kernel,
        bandwidth=bandwidth,
        geometry="cosine",
        lam=fit.lam if kernel_lam is None else float(kernel_lam),
        n_updates=kernel_updates,
        implicit_weight=implicit,
    )
    if is_plain(settings, fit.lam):
        return fit
    refit, _ = refit_kernel(fit, users, items, ratings, settings)
    return refit
