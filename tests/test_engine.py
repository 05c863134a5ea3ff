"""The numerical core: exact recovery, the batched solver, the updates, memory refusal."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rfm_recsys.core.completion import gram_of_completion, predict_pairs
from rfm_recsys.core.engine import complete_dense, fit_engine
from rfm_recsys.core.memory import EngineMemoryError, estimate_memory
from rfm_recsys.core.solve import RowPlan, solve_rows
from rfm_recsys.core.updates import AGOPPower, IRLSUpdate


def low_rank_problem(n=60, d=80, rank=3, frac=0.5, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) / np.sqrt(rank)
    mask = rng.random((n, d)) < frac
    rows, cols = np.nonzero(mask)
    R = sp.csr_matrix((Y[rows, cols], (rows, cols)), shape=(n, d))
    return Y, mask, R


def rel_err_missing(W, Y, mask):
    return np.linalg.norm((W - Y)[~mask]) / np.linalg.norm(Y[~mask])


def test_exact_recovery_rank3():
    # the paper's claim in small: rank 3, 60 x 80, half observed, no noise, no baseline. As in
    # the paper, observed entries are put back before each AGOP: without that, the fitted rows
    # only hold the part of y the current kernel explains and new directions cannot enter.
    Y, mask, R = low_rank_problem()
    res = fit_engine(
        R,
        ridge=1e-3,
        n_updates=300,
        update=AGOPPower(1.0),
        dtype=np.float64,
        reimpose_observed=True,
    )
    err = rel_err_missing(complete_dense(res.K, res.A), Y, mask)
    assert err < 1e-3, err
    # and the iteration is what does it: one ridge fit with K = I predicts 0 off the observations
    res0 = fit_engine(R, ridge=1e-3, n_updates=0, update=AGOPPower(1.0), dtype=np.float64)
    assert rel_err_missing(complete_dense(res0.K, res0.A), Y, mask) > 0.99


def test_exact_recovery_power2_with_eigh():
    Y, mask, R = low_rank_problem(seed=1)
    res = fit_engine(
        R,
        ridge=1e-5,
        n_updates=300,
        update=AGOPPower(2.0, normalize=None),
        dtype=np.float64,
        reimpose_observed=True,
    )
    assert rel_err_missing(complete_dense(res.K, res.A), Y, mask) < 1e-6


@pytest.mark.parametrize("orient_big_rows", [False, True])
def test_batched_solver_matches_naive(orient_big_rows):
    rng = np.random.default_rng(3)
    n, d = (40, 300) if orient_big_rows else (200, 50)
    density = 0.6 if orient_big_rows else 0.2  # the first case has rows above the Cholesky cut
    mask = rng.random((n, d)) < density
    mask[0] = False  # an empty row
    rows, cols = np.nonzero(mask)
    R = sp.csr_matrix((rng.standard_normal(rows.size), (rows, cols)), shape=(n, d))
    B = rng.standard_normal((d, 7))
    K = B @ B.T / 7 + 0.1 * np.eye(d)
    plan = RowPlan.from_csr(R)
    a = solve_rows(K, plan, R.data, lam=0.3)
    for i in range(n):
        lo, hi = R.indptr[i], R.indptr[i + 1]
        S = R.indices[lo:hi]
        if S.size == 0:
            continue
        naive = np.linalg.solve(K[np.ix_(S, S)] + 0.3 * np.eye(S.size), R.data[lo:hi])
        np.testing.assert_allclose(a[lo:hi], naive, rtol=0, atol=1e-10)


def test_gram_and_pairs_match_dense():
    rng = np.random.default_rng(4)
    Y, mask, R = low_rank_problem(n=30, d=20, seed=4)
    A = sp.csr_matrix((rng.standard_normal(R.nnz), R.indices, R.indptr), shape=R.shape)
    K = np.cov(rng.standard_normal((20, 50)))
    W = A.toarray() @ K
    np.testing.assert_allclose(gram_of_completion(K, A), W.T @ W, atol=1e-10)
    X = W.copy()
    X[mask] = Y[mask]
    np.testing.assert_allclose(gram_of_completion(K, A, targets=R.data), X.T @ X, atol=1e-10)
    r, c = rng.integers(0, 30, 500), rng.integers(0, 20, 500)
    np.testing.assert_allclose(predict_pairs(K, A, r, c), W[r, c], atol=1e-10)


def test_agop_power_one_is_normalised_agop_without_eigh(monkeypatch):
    import scipy.linalg

    def no_eigh(*a, **k):
        raise AssertionError("power 1 must not call eigh")

    monkeypatch.setattr(scipy.linalg, "eigh", no_eigh)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6))
    K = AGOPPower(1.0)(X.T @ X, 40, 0)
    G = X.T @ X / 40
    np.testing.assert_allclose(K, G / np.mean(np.diag(G)))


def test_agop_power_half_is_matrix_square_root():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 6))
    K = AGOPPower(0.5, normalize=None)(X.T @ X, 40, 0)
    np.testing.assert_allclose(K @ K, X.T @ X / 40, atol=1e-10)


def test_irls_schedule_decreases_gamma_to_floor():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 5))
    xtx = X.T @ X
    up = IRLSUpdate(p=0.0, gamma0=1e-2, eta=2.0, gamma_min=1e-4)
    lmax = np.linalg.eigvalsh(xtx)[-1]
    gammas = []
    for t in range(12):
        up(xtx, 30, t)
        gammas.append(up.gamma_)
    assert gammas[0] == pytest.approx(1e-2 * lmax)
    assert gammas[1] == pytest.approx(0.5e-2 * lmax)
    assert gammas[-1] == pytest.approx(1e-4 * lmax)
    assert all(g1 <= g0 for g0, g1 in zip(gammas, gammas[1:]))


def test_irls0_fixed_gamma_equals_linrfm_power1():
    # lin-RFM with K = G = X^T X / n (no rescaling) and ridge lam equals IRLS-0 with kernel
    # X^T X + gamma I, gamma = n * lam, interpolating the observed entries (PAPER_NOTES).
    Y, mask, R = low_rank_problem(n=30, d=25, rank=2, frac=0.6, seed=8)
    n = R.shape[0]
    lam = 0.05
    rfm = fit_engine(
        R,
        ridge=lam,
        n_updates=15,
        update=AGOPPower(1.0, normalize=None),
        dtype=np.float64,
        reimpose_observed=True,
    )
    irls = fit_engine(
        R,
        ridge=1e-300,
        n_updates=15,
        update=IRLSUpdate(p=0.0, fixed_gamma=n * lam, normalize=None),
        dtype=np.float64,
        reimpose_observed=True,
    )
    W1 = complete_dense(rfm.K, rfm.A)
    W2 = complete_dense(irls.K, irls.A)
    assert np.max(np.abs((W1 - W2)[~mask])) < 1e-8


def test_validation_early_stopping_restores_best():
    Y, mask, R = low_rank_problem(n=50, d=40, rank=2, seed=9)
    rng = np.random.default_rng(9)
    Yn = Y + 0.5 * rng.standard_normal(Y.shape)
    rows, cols = np.nonzero(mask)
    held = rng.random(rows.size) < 0.2
    Rt = sp.csr_matrix((Yn[rows[~held], cols[~held]], (rows[~held], cols[~held])), shape=Y.shape)
    res = fit_engine(
        Rt,
        ridge=0.5,
        n_updates=30,
        update=AGOPPower(1.0),
        dtype=np.float64,
        validation=(rows[held], cols[held], Yn[rows[held], cols[held]]),
        patience=2,
    )
    vals = [h["valid_rmse"] for h in res.history]
    # the best iteration is the minimum up to the engine's improvement threshold (1e-9)
    assert vals[res.best_iteration] <= min(vals) + 1e-9
    pred = predict_pairs(res.K, res.A, rows[held], cols[held])
    assert np.sqrt(np.mean((pred - Yn[rows[held], cols[held]]) ** 2)) == pytest.approx(
        vals[res.best_iteration]
    )
    assert len(vals) < 31  # stopped early


def test_tol_stops_when_kernel_settles():
    Y, mask, R = low_rank_problem(seed=10)
    res = fit_engine(
        R, ridge=1e-2, n_updates=500, update=AGOPPower(1.0), tol=1e-6, dtype=np.float64
    )
    assert len(res.history) < 501
    assert res.history[-1]["kernel_change"] < 1e-6


def test_float32_close_to_float64():
    Y, mask, R = low_rank_problem(seed=11)
    r64 = fit_engine(R, ridge=0.1, n_updates=5, update=AGOPPower(1.0), dtype=np.float64)
    r32 = fit_engine(R, ridge=0.1, n_updates=5, update=AGOPPower(1.0), dtype=np.float32)
    assert r32.K.dtype == np.float32
    W64, W32 = complete_dense(r64.K, r64.A), complete_dense(r32.K, r32.A)
    assert np.max(np.abs(W64 - W32)) < 1e-3


def test_memory_refused_with_figures():
    R = sp.random(100, 50, density=0.1, format="csr", random_state=0)
    need = estimate_memory(100, 50, R.nnz)
    with pytest.raises(EngineMemoryError, match=r"needs about .* GiB.*max_memory allows"):
        fit_engine(R, ridge=1.0, n_updates=1, update=AGOPPower(), max_memory=need // 2)
    # a d = 200,000 kernel is refused before anything is allocated
    big = sp.csr_matrix((1, 200_000), dtype=np.float32)
    with pytest.raises(EngineMemoryError, match="d = 200,000"):
        fit_engine(big, ridge=1.0, n_updates=1, update=AGOPPower())


def _hand_loop(R, lams, n_iter, update):
    """The engine's iteration written out plainly, with ridge ``lams[k]`` at iteration ``k``."""
    n, d = R.shape
    K = np.eye(d)
    for k in range(n_iter + 1):
        A = np.zeros((n, d))
        for i in range(n):
            S = R.indices[R.indptr[i] : R.indptr[i + 1]]
            y = R.data[R.indptr[i] : R.indptr[i + 1]]
            if S.size:
                A[i, S] = np.linalg.solve(K[np.ix_(S, S)] + lams[k] * np.eye(S.size), y)
        if k == n_iter:
            return K, A
        W = A @ K
        K = update(W.T @ W, n, k)


def test_decaying_ridge_schedule_equals_hand_loop():
    Y, mask, R = low_rank_problem(n=30, d=20, rank=2, frac=0.5, seed=12)
    schedule = [max(1.0 / 1.5**k, 0.05) for k in range(6)]
    res = fit_engine(
        R,
        ridge=123.0,  # ignored: the schedule gives every iteration's ridge
        n_updates=5,
        update=AGOPPower(1.0),
        dtype=np.float64,
        ridge_schedule=lambda k: schedule[k],
    )
    K, A = _hand_loop(R, schedule, 5, AGOPPower(1.0))
    np.testing.assert_allclose(res.K, K, atol=1e-10)
    np.testing.assert_allclose(res.A.toarray(), A, atol=1e-10)
    # and the recorded training residual uses each iteration's own ridge
    a_last = res.A.data
    assert res.history[-1]["train_rmse"] == pytest.approx(schedule[5] * np.sqrt(np.mean(a_last**2)))


def test_constant_schedule_equals_no_schedule():
    Y, mask, R = low_rank_problem(n=30, d=20, rank=2, seed=13)
    r1 = fit_engine(R, ridge=0.3, n_updates=3, update=AGOPPower(1.0), dtype=np.float64)
    r2 = fit_engine(
        R,
        ridge=9.0,
        n_updates=3,
        update=AGOPPower(1.0),
        dtype=np.float64,
        ridge_schedule=lambda k: 0.3,
    )
    np.testing.assert_allclose(r1.K, r2.K)
    np.testing.assert_allclose(r1.A.toarray(), r2.A.toarray())


def test_bad_schedule_value_is_refused():
    Y, mask, R = low_rank_problem(n=10, d=8, seed=14)
    with pytest.raises(ValueError, match=r"ridge_schedule\(1\) returned -1"):
        fit_engine(
            R, ridge=1.0, n_updates=2, update=AGOPPower(), ridge_schedule=lambda k: 1.0 - 2 * k
        )


def test_on_iteration_hook_sees_state_and_can_stop():
    from rfm_recsys.core.engine import IterationState

    Y, mask, R = low_rank_problem(n=30, d=20, rank=2, seed=15)
    seen = []
    calls = []

    def hook(state):
        assert isinstance(state, IterationState)
        seen.append((state.iteration, state.ridge, state.record["iteration"]))
        # the state is the pair the rows were fitted with: A K is the completion of this step
        calls.append(complete_dense(state.K, state.A))
        return state.iteration == 2

    res = fit_engine(
        R,
        ridge=0.5,
        n_updates=10,
        update=AGOPPower(1.0),
        dtype=np.float64,
        ridge_schedule=lambda k: 0.5 + k,
        on_iteration=hook,
        callback=lambda it, rec: calls.append(it),  # the old callback keeps working
    )
    assert [s[0] for s in seen] == [0, 1, 2]
    assert [s[1] for s in seen] == [0.5, 1.5, 2.5]
    assert len(res.history) == 3 and res.best_iteration == 2
    np.testing.assert_allclose(calls[-1], complete_dense(res.K, res.A))
    assert [c for c in calls if isinstance(c, int)] == [0, 1, 2]


def test_hook_time_is_excluded_from_seconds(monkeypatch):
    import time

    Y, mask, R = low_rank_problem(n=20, d=10, rank=2, seed=16)
    # a clock that only moves inside the hook: every recorded second would be hook time
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def slow_hook(state):
        clock[0] += 100.0

    res = fit_engine(R, ridge=0.5, n_updates=3, update=AGOPPower(), on_iteration=slow_hook)
    assert len(res.history) == 4
    assert [h["seconds"] for h in res.history] == [0.0, 0.0, 0.0, 0.0]


def test_time_budget_through_the_hook():
    Y, mask, R = low_rank_problem(n=20, d=10, rank=2, seed=17)
    res = fit_engine(
        R,
        ridge=0.5,
        n_updates=1000,
        update=AGOPPower(),
        on_iteration=lambda s: s.record["seconds"] > 0.0 and s.iteration >= 4,
    )
    assert len(res.history) == 5


def test_blas_threads_limits_and_restores():
    from rfm_recsys.core.blas import blas_threads, controller, default_threads

    def blas_counts():
        return [lib.num_threads for lib in controller().lib_controllers if lib.user_api == "blas"]

    before = blas_counts()
    with blas_threads(1):
        assert all(c == 1 for c in blas_counts())
        assert default_threads() == 1
    assert blas_counts() == before
    with blas_threads(None):  # no setting: limits untouched
        assert blas_counts() == before
