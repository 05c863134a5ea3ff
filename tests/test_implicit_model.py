"""ImplicitLinRFM: spectral fit vs the explicit lin-RFM iteration; implicit's contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from model_mixin import N_ITEMS, RecommenderContract, block_interactions

from rfm_recsys import ImplicitLinRFM
from rfm_recsys.implicit_feedback.spectral import (
    exact_eigenpairs,
    kernel_spectrum,
    randomized_eigenpairs,
)
from rfm_recsys.params import InvalidParameterError


def _binary(n=30, d=20, density=0.3, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, random_state=rng, format="csr", dtype=np.float64)
    X.data = np.round(1 + 4 * X.data)  # "ratings" 1..5
    return X


def _psd_power(A: np.ndarray, p: float) -> np.ndarray:
    s, U = np.linalg.eigh(A)
    return (U * np.maximum(s, 0) ** p) @ U.T


def _explicit_iteration(X: np.ndarray, n_iter: int, lam: float, power: float, rows=None):
    """lin-RFM as written: K = I; per row a = (K + lam I)^-1 x, w = K a; K <- AGOP^power."""
    n, d = X.shape
    Xg = X if rows is None else rows
    K = np.eye(d)
    for _ in range(n_iter):
        W = np.array([K @ np.linalg.solve(K + lam * np.eye(d), x) for x in Xg])
        A = W.T @ W / n
        A /= np.trace(A) / d
        K = A if power == 1 else _psd_power(A, power)
        K /= np.trace(K) / d
    W = np.array([K @ np.linalg.solve(K + lam * np.eye(d), x) for x in X])
    return K, W


def _scores(model, X: sp.csr_matrix) -> np.ndarray:
    """Every user's score of every item, read through recommend (no filtering)."""
    n, d = X.shape
    ids, scores = model.recommend(np.arange(n), X, N=d, filter_already_liked_items=False)
    S = np.empty((n, d))
    np.put_along_axis(S, ids.astype(np.int64), scores, axis=1)
    return S


@pytest.mark.parametrize(
    "n_iter, lam, power", [(1, 10.0, 1.0), (2, 3.0, 1.0), (3, 1.0, 0.5), (2, 5.0, 2.0)]
)
def test_scores_equal_per_row_kernel_ridge_solves(n_iter, lam, power):
    X = _binary()
    Xb = (X.toarray() > 0).astype(float)
    model = ImplicitLinRFM(n_updates=n_iter, ridge=lam, power=power, alpha=0.0).fit(X)
    K, W = _explicit_iteration(Xb, n_iter, lam, power)
    np.testing.assert_allclose(_scores(model, X), W, rtol=1e-4, atol=1e-5)
    # the spectral kernel is the explicit one
    U, k = model.components_.astype(float), model.kernel_spectrum_
    np.testing.assert_allclose((U * k) @ U.T, K, rtol=1e-4, atol=1e-5)


def test_confidence_weights_follow_the_same_iteration():
    X = _binary(seed=3)
    alpha = 0.5
    Xw = X.toarray()
    Xw[Xw > 0] = 1 + alpha * Xw[Xw > 0]
    model = ImplicitLinRFM(n_updates=2, ridge=4.0, alpha=alpha).fit(X)
    K, W = _explicit_iteration(Xw, 2, 4.0, 1.0)
    U, k = model.components_.astype(float), model.kernel_spectrum_
    np.testing.assert_allclose((U * k) @ U.T, K, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_scores(model, X), W, rtol=1e-4, atol=1e-5)


def test_kernel_spectrum_is_the_matrix_iteration_on_eigenvalues():
    s = np.array([5.0, 2.0, 0.5, 0.01])
    k, _ = kernel_spectrum(s, n_features=6, n_iter=0, lam=2.0, power=1.0)
    np.testing.assert_array_equal(k, np.ones(4))
    k, k_tail = kernel_spectrum(s, n_features=6, n_iter=1, lam=2.0, power=1.0)
    np.testing.assert_allclose(k, s / (s.sum() / 6))  # first update: K = G / mean diag
    assert k.sum() == pytest.approx(6.0) and k_tail == 0.0
    # a tail of equal eigenvalues follows the recursion as two more entries of s would
    full, _ = kernel_spectrum(np.r_[s, 0.3, 0.3], 6, 3, 2.0, 0.5)
    k, k_tail = kernel_spectrum(s, 6, 3, 2.0, 0.5, tail=0.3)
    np.testing.assert_allclose(np.r_[k, k_tail, k_tail], full, rtol=1e-12)


def test_truncated_fit_scores_unseen_items_with_a_flat_tail():
    """rank r: unseen-item scores are those of the kernel whose left-out eigenvalues are equal."""
    X = _binary(40, 25, density=0.3, seed=5)
    full = ImplicitLinRFM(n_updates=2, ridge=3.0, alpha=0.0).fit(X)
    s, U = full.spectrum_, full.components_.astype(float)
    r, d = 6, X.shape[1]
    tail = (s.sum() - s[:r].sum()) / (d - r)
    flat = np.r_[s[:r], np.full(d - r, tail)]
    Uc = np.linalg.svd(U[:, :r], full_matrices=True)[0][:, r:]  # complement of the top r
    G_flat = np.hstack([U[:, :r], Uc]) @ np.diag(flat) @ np.hstack([U[:, :r], Uc]).T
    G_flat_sqrt = _psd_power(G_flat, 0.5)
    Xb = (X.toarray() > 0).astype(float)
    # any rows with Gram G_flat give the same kernel: use G_flat^1/2 scaled to n rows
    _, W = _explicit_iteration(Xb, 2, 3.0, 1.0, rows=G_flat_sqrt * np.sqrt(X.shape[0]))
    model = ImplicitLinRFM(n_updates=2, ridge=3.0, alpha=0.0, solver="exact", rank=r).fit(X)
    unseen = Xb == 0
    np.testing.assert_allclose(_scores(model, X)[unseen], W[unseen], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30)])
def test_exact_eigenpairs_from_either_gram(shape):
    X = _binary(*shape, density=0.2, seed=1)
    s, U = exact_eigenpairs(X)
    G = (X.T @ X).toarray() / shape[0]
    np.testing.assert_allclose((U.astype(float) * s) @ U.T, G, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(U.T @ U, np.eye(s.size), atol=1e-4)
    assert np.all(np.diff(s) <= 0)


def test_randomized_eigenpairs_match_exact_top():
    rng = np.random.default_rng(0)
    # a low-rank-plus-noise pattern: the top eigenvalues are well separated
    P = rng.random((200, 5)) @ rng.random((5, 120))
    X = sp.csr_matrix((rng.random((200, 120)) < 0.15 * P / P.mean()).astype(np.float32))
    s, U = exact_eigenpairs(X)
    for threads in (1, 2):
        sr, Ur = randomized_eigenpairs(X, 5, n_power_iter=4, random_state=0, num_threads=threads)
        np.testing.assert_allclose(sr, s[:5], rtol=1e-3)
        overlap = np.abs(np.sum(Ur * U[:, :5], axis=0))
        assert overlap.min() > 0.99, overlap
    a, _ = randomized_eigenpairs(X, 5, random_state=7)
    b, _ = randomized_eigenpairs(X, 5, random_state=7)
    np.testing.assert_array_equal(a, b)


def test_randomized_solver_with_full_rank_scores_like_exact():
    X = block_interactions(seed=2)
    exact = ImplicitLinRFM(solver="exact").fit(X)
    approx = ImplicitLinRFM(solver="randomized", rank=N_ITEMS, random_state=0).fit(X)
    np.testing.assert_allclose(_scores(approx, X), _scores(exact, X), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [
        {"ridge": 0.0},
        {"ridge": -1.0},
        {"n_updates": -1},
        {"n_updates": 1.5},
        {"power": 0.0},
        {"alpha": -0.1},
        {"rank": 0},
        {"solver": "svd"},
        {"num_threads": -1},
    ],
)
def test_bad_hyperparameters_raise(params):
    X = block_interactions()
    name = next(iter(params))
    with pytest.raises(InvalidParameterError, match=name):
        ImplicitLinRFM(**params).fit(X)


def test_rank_none_keeps_every_eigenpair_and_needs_the_exact_solver():
    # one meaning of rank across the package: None is no truncation, "auto" the library's rule
    X = block_interactions()
    every = ImplicitLinRFM(rank=None, solver="exact").fit(X)
    auto = ImplicitLinRFM().fit(X)  # exact on a small matrix: every eigenpair as well
    np.testing.assert_array_equal(every.spectrum_, auto.spectrum_)
    with pytest.raises(InvalidParameterError, match="rank=None keeps every eigenpair"):
        ImplicitLinRFM(rank=None, solver="randomized").fit(X)


class TestImplicitLinRFMContract(RecommenderContract):
    def make_model(self, **params):
        return ImplicitLinRFM(**params)


class TestImplicitLinRFMRandomizedContract(RecommenderContract):
    def make_model(self, **params):
        return ImplicitLinRFM(**{"solver": "randomized", "rank": 12, "random_state": 0, **params})


def test_item_factors_shape():
    model = ImplicitLinRFM().fit(block_interactions())
    assert model.item_factors.shape[0] == N_ITEMS
