"""Explicit-feedback biased ALS with weighted-lambda regularisation (Zhou et al. 2008).

The rating model is Surprise SVD's::

    r_hat(u, i) = mu + b_u + b_i + p_u . q_i

fitted by alternating least squares instead of SGD. With the item side fixed, user ``u``'s
factor and bias are one ridge regression over the items ``S_u`` it rated, on the augmented item
vectors ``x_i = [q_i, 1]`` and targets ``r_ui - mu - b_i``::

    (sum_{i in S_u} x_i x_i^T + diag(ridge n_u, ..., ridge n_u, bias_ridge)) [p_u; b_u]
        = sum_{i in S_u} x_i (r_ui - mu - b_i)

and symmetrically for the items. The factor penalty ``ridge * n_u`` (``n_u = |S_u|``) is the
"weighted-lambda" regularisation of Zhou, Wilkinson, Schreiber & Pan (2008, ALS-WR), which makes
one ``ridge`` fit users and items of any activity; the biases get an ordinary ridge ``bias_ridge``
(as the baseline of :mod:`rfm_recsys.core.biases`). ``mu`` is the mean training rating.

The numerical core (:func:`fit_biased_als`, :func:`predict_als`) is separate from the Surprise
algorithm :class:`ALSAlgo`, in the style of implicit. A half-step forms every row's
``(k+1) x (k+1)`` normal equations at once: rows are grouped by their number of ratings, each
group's gathered factors ``X_g`` (``g x c x (k+1)``) give ``X_g^T X_g`` in one batched
``matmul``, and the systems are solved by batched ``numpy.linalg.solve`` calls of up to 16 MiB
of stacked matrices each. Memory is ``O(|Omega| + (n_users + n_items) k)`` plus bounded
buffers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from surprise import AlgoBase

from ..checks import DuplicateRatingsError, check_triples
from ..config import ALS, with_config
from ..core.biases import bias_estimates, bias_scores
from ..core.blas import blas_threads
from ..core.solve import RowPlan
from ..surprise_algos import _trainset_arrays, _VectorisedAlgo

# Bound on the gathered factors of one batched matmul (bytes).
_GATHER_BYTES = 32 * 2**20
# Bound on the stacked normal equations solved in one batched call (bytes).
_SOLVE_BYTES = 16 * 2**20


@dataclass
class ALSFit:
    """A fitted biased ALS model in inner (0-based) indices; -1 means unknown.

    Attributes:
        mu: global mean.
        b_user, b_item: biases.
        P, Q: user and item factors (``n_users x k``, ``n_items x k``).
        history: per-epoch ``{"epoch", "train_rmse", "seconds"}``.
    """

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    history: list[dict] = field(default_factory=list)

    def predict(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimates and the mask of impossible pairs (user and item both unknown)."""
        return predict_als(self.mu, self.b_user, self.b_item, self.P, self.Q, users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Predicted ratings of every item for known users (``len(users) x n_items``)."""
        u = np.atleast_1d(np.asarray(users, dtype=np.int64))
        out = bias_scores(self.mu, self.b_user, self.b_item, u)
        out += self.P[u] @ self.Q.T
        return out


def _single_threaded_blas():
    """BLAS limited to one thread while the many small batched products run.

    The half-steps are thousands of ``(k+1) x c`` by ``c x (k+1)`` products and ``(k+1)``-sized
    solves: too small to split across threads, and OpenBLAS's threads then spin against each
    other (measured: a 5 x 300 x 51 batched product took 160 ms with 2 threads on a busy
    2-core machine and 0.13 ms with one).
    """
    return blas_threads(1)


def _side_plan(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int):
    """CSR order of the ratings for one side and its row plan (rows grouped by count)."""
    order = np.lexsort((cols, rows))
    R = sp.csr_matrix(
        (np.arange(rows.size, dtype=np.float64)[order], (rows[order], cols[order])),
        shape=(n_rows, n_cols),
    )
    if R.nnz != rows.size:
        raise ValueError(
            f"{rows.size - R.nnz:,} (user, item) pairs are rated more than once: deduplicate the "
            "ratings first (rfm_recsys.checks.check_triples(..., duplicates='mean'))"
        )
    R.sort_indices()
    # R.data holds, in CSR data order, the index of the rating in the input arrays.
    perm = R.data.astype(np.int64)
    plan = RowPlan.from_csr(R)
    return plan, perm


def _solve_side(
    plan: RowPlan,
    perm: np.ndarray,
    other: np.ndarray,
    targets: np.ndarray,
    ridge: float,
    bias_ridge: float,
    dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """One ALS half-step: every row's ``[factor; bias]`` given the other side's factors.

    Args:
        plan: row plan of this side (CSR of rows x other-side columns).
        perm: input-order index of each CSR entry.
        other: the other side's factors (``n_cols x k``).
        targets: rating minus everything but this side's factor and bias, input order.
        ridge: weighted-lambda factor penalty (times the row's count).
        bias_ridge: ridge penalty of the bias.

    Returns:
        ``(factors n_rows x k, biases n_rows)``; rows without ratings get zeros.
    """
    n_rows = plan.n_rows
    k = other.shape[1]
    k1 = k + 1
    X = np.empty((other.shape[0], k1), dtype=dtype)
    X[:, :k] = other
    X[:, k] = 1.0
    y = targets[perm].astype(dtype, copy=False)
    counts = np.diff(plan.indptr)
    itemsize = np.dtype(dtype).itemsize
    sol = np.zeros((n_rows, k1), dtype=dtype)
    diag = np.arange(k1)
    budget = max(1, _SOLVE_BYTES // (k1 * k1 * itemsize))  # systems per batched solve
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_pending = 0

    def flush():
        rows = np.concatenate([p[0] for p in pending])
        A = np.concatenate([p[1] for p in pending])
        b = np.concatenate([p[2] for p in pending])
        A[:, diag[:k], diag[:k]] += (ridge * counts[rows]).astype(dtype)[:, None]
        A[:, k, k] += bias_ridge
        try:
            sol[rows] = np.linalg.solve(A, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            # Only with ridge = bias_ridge = 0 and too few ratings: the minimum-norm solutions.
            sol[rows] = np.stack([np.linalg.lstsq(M, v, rcond=None)[0] for M, v in zip(A, b)])
        pending.clear()

    for c, rows, pos in plan.groups:
        per = max(1, min(budget, _GATHER_BYTES // (c * k1 * itemsize)))
        for s in range(0, rows.shape[0], per):
            p = pos[s : s + per]
            Xg = X[plan.indices[p]]  # g x c x k1
            pending.append(
                (
                    rows[s : s + per],
                    np.matmul(Xg.transpose(0, 2, 1), Xg),
                    np.matmul(y[p][:, None, :], Xg)[:, 0, :],
                )
            )
            n_pending += pending[-1][0].size
            if n_pending >= budget:
                flush()
                n_pending = 0
    if pending:
        flush()
    return sol[:, :k], sol[:, k]


def fit_biased_als(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    rank: int = 50,
    ridge: float = 0.12,
    n_sweeps: int = 10,
    random_state: int | np.random.Generator | None = None,
    dtype=np.float64,
    *,
    bias_ridge: float = 1.0,
    init_std: float = 0.1,
    callback=None,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``r ~ mu + b_u + b_i + q_i^T p_u`` by alternating weighted-lambda ridge solves.

    Args:
        users, items: 0-based integer codes, one per rating (no repeated pairs).
        ratings: the ratings.
        n_users, n_items: sizes of the two sides (codes must be below them).
        rank: rank ``k`` of the interaction.
        ridge: weighted-lambda penalty: user ``u``'s factor is penalised by ``ridge * n_u``,
            item ``i``'s by ``ridge * n_i``.
        n_sweeps: full sweeps (a user half-step then an item half-step).
        random_state: seed or Generator of the item factors' initialisation
            (``N(0, init_std^2)``).
        dtype: float64 (default) or float32 for the factors and the solves.
        bias_ridge: ridge penalty of every user and item bias (not weighted).
        init_std: standard deviation of the initial item factors.
        callback: called as ``callback(epoch, mu, b_u, b_i, P, Q)`` after each epoch (for
            learning curves; the arrays are live, copy them to keep them).

    Returns:
        ``(mu, b_u, b_i, P, Q)``: float mean, biases (``n_users``, ``n_items``) and factors
        (``n_users x k``, ``n_items x k``). Users or items without ratings keep zero factors
        and biases (they predict from the known side only).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    if not (users.shape == items.shape == ratings.shape) or ratings.ndim != 1:
        raise ValueError("users, items and ratings must be 1-d arrays of one length")
    if ratings.size == 0:
        raise ValueError("no ratings to fit")
    if users.min() < 0 or items.min() < 0 or users.max() >= n_users or items.max() >= n_items:
        raise ValueError("user and item codes must lie in [0, n_users) and [0, n_items)")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if ridge < 0 or bias_ridge < 0:
        raise ValueError("ridge and bias_ridge must be >= 0")
    dtype = np.dtype(dtype)
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    mu = float(ratings.mean())
    dev = ratings - mu
    uplan, uperm = _side_plan(users, items, n_users, n_items)
    iplan, iperm = _side_plan(items, users, n_items, n_users)
    P = np.zeros((n_users, rank), dtype=dtype)
    Q = (rng.standard_normal((n_items, rank)) * init_std).astype(dtype)
    b_u = np.zeros(n_users, dtype=np.float64)
    b_i = np.zeros(n_items, dtype=np.float64)
    rated_i = np.bincount(items, minlength=n_items) > 0
    Q[~rated_i] = 0.0
    with _single_threaded_blas():
        for epoch in range(n_sweeps):
            P, bu = _solve_side(uplan, uperm, Q, dev - b_i[items], ridge, bias_ridge, dtype)
            b_u = bu.astype(np.float64)
            Q, bi = _solve_side(iplan, iperm, P, dev - b_u[users], ridge, bias_ridge, dtype)
            b_i = bi.astype(np.float64)
            if callback is not None:
                callback(epoch, mu, b_u, b_i, P, Q)
    return mu, b_u, b_i, P, Q


def predict_als(
    mu: float,
    b_u: np.ndarray,
    b_i: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised predictions; an index of -1 is an unknown user or item.

    A pair with one unknown side gets ``mu`` plus the known side's bias (as Surprise's SVD);
    the returned mask marks pairs with both sides unknown (estimate ``mu``).
    """
    est, both, impossible = bias_estimates(mu, b_u, b_i, users, items)
    users = np.asarray(users, dtype=np.int64)[both]
    items = np.asarray(items, dtype=np.int64)[both]
    est[both] += np.einsum("ij,ij->i", P[users], Q[items], dtype=np.float64)
    return est, impossible


@with_config(ALS)
class ALSAlgo(_VectorisedAlgo):
    """Biased matrix factorisation fitted by ALS with weighted-lambda regularisation.

    The prediction is Surprise SVD's::

        r_hat(u, i) = mu + b_u + b_i + q_i^T p_u

    fitted by alternating exact ridge solves (Zhou et al. 2008) instead of SGD: each half-step
    solves, for every user (then every item), the regression of its baseline residuals on the
    other side's factors augmented with a constant 1 (which fits the bias jointly), with penalty
    ``ridge * n_u`` on the factor (``n_u`` the number of its training ratings) and ``bias_ridge`` on
    the bias. If the user is unknown the estimate is ``mu + b_i``, if the item is unknown
    ``mu + b_u``; if both are unknown ``PredictionImpossible`` is raised (Surprise then predicts
    the global mean). Estimates are clipped to the rating scale by Surprise.

    Defaults were first chosen on a seeded 90/10 validation split of ml-100k's ``u1.base``
    (``u1.test`` never used; grid ``rank`` 5-100, ``ridge`` 0.03-0.35, ``bias_ridge`` 0.5-15, up
    to 25 epochs) and then checked with the protocol of LinRFMAlgo's defaults,
    ``python -m evaluation.choose_defaults --als --n-iter 15`` (validation shares of ml-100k and
    ml-latest-small training folds): ``rank=50, ridge=0.12, bias_ridge=1, n_sweeps=10`` scores
    within 0.1% of that grid's best (100 factors, 6 epochs).

    The hyperparameters are :data:`rfm_recsys.config.ALS`'s.
    """

    def fit(self, trainset, callback=None) -> ALSAlgo:
        """Fit on a Surprise ``Trainset``; returns ``self``.

        Args:
            trainset: the training ratings.
            callback: optional ``callback(epoch, fit)`` with the :class:`ALSFit` of that epoch
                (shares arrays with the running fit), for learning curves.

        Raises:
            InvalidParameterError: a hyperparameter outside its allowed range.
            RatingsError: no ratings, NaN/infinite or huge ratings, or a (user, item) pair
                rated more than once (:class:`~rfm_recsys.checks.DuplicateRatingsError`).
        """
        self._validate_params()
        u, i, r = _trainset_arrays(trainset)
        try:
            u, i, r = check_triples(u, i, r)
        except DuplicateRatingsError as exc:
            raise DuplicateRatingsError(
                f"{exc.args[0].split(';')[0]}; deduplicate the ratings before building the "
                "trainset, e.g. df.drop_duplicates(['user_id', 'item_id'], keep='last')"
            ) from None
        history: list[dict] = []
        t0 = time.perf_counter()

        def _cb(epoch, mu, b_u, b_i, P, Q):
            rec = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0}
            if self.verbose or callback is not None:
                est, _ = predict_als(mu, b_u, b_i, P, Q, u, i)
                rec["train_rmse"] = float(np.sqrt(np.mean((est - r) ** 2)))
            history.append(rec)
            if self.verbose:
                print(f"ALS epoch {epoch + 1}: train RMSE {rec['train_rmse']:.4f}")
            if callback is not None:
                callback(epoch + 1, ALSFit(mu, b_u, b_i, P, Q, history))

        mu, b_u, b_i, P, Q = fit_biased_als(
            u,
            i,
            r,
            trainset.n_users,
            trainset.n_items,
            rank=self.rank,
            ridge=self.ridge,
            n_sweeps=self.n_sweeps,
            random_state=self.random_state,
            dtype=np.dtype(self.dtype),
            bias_ridge=self.bias_ridge,
            init_std=self.init_std,
            callback=_cb,
        )
        # The trainset (its id maps) and the fit are replaced together, only now: a fit that
        # fails or is interrupted leaves a previously fitted algorithm as it was.
        AlgoBase.fit(self, trainset)
        self.fit_ = ALSFit(mu, b_u, b_i, P, Q, history)
        # Surprise SVD's attribute names, so code written for SVD reads the model as well.
        self.bu, self.bi, self.pu, self.qi = b_u, b_i, P, Q
        return self

    @property
    def history_(self) -> list[dict]:
        """Per-epoch records of the last fit."""
        return self.fit_.history
