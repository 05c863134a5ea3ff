"""Conjugate-gradient row fits against the direct solves: agreement, warm starts, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rfm_recsys.core.cg import cg_solve_dense, cg_solve_factored
from rfm_recsys.core.factored_kernel import FactoredKernel
from rfm_recsys.core.solve import RowPlan, solve_rows


def _problem(n=120, d=90, density=0.2, rank=12, seed=0):
    rng = np.random.default_rng(seed)
    R = sp.random(n, d, density=density, random_state=seed, format="csr", dtype=np.float64)
    R.data = rng.standard_normal(R.nnz)
    R.sort_indices()
    X = rng.standard_normal((d, rank))
    K = X @ X.T / rank  # rank-deficient PSD: the ridge makes every block definite
    return R, K


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_cg_matches_direct(dtype):
    R, K = _problem()
    plan = RowPlan.from_csr(R)
    direct = solve_rows(K, plan, R.data, 0.3)
    a, iters = cg_solve_dense(
        K.astype(dtype), R.indptr, R.indices, R.data.astype(dtype), 0.3, tol=1e-10, max_iter=500
    )
    assert a.dtype == dtype
    assert _rel(a, direct) < (1e-8 if dtype == np.float64 else 1e-5)
    counts = np.diff(R.indptr)
    assert np.all(iters[counts == 0] == 0)
    assert iters.max() > 1  # it did iterate


def test_factored_cg_matches_woodbury_with_per_column_shift():
    R, _ = _problem(n=150, d=80, density=0.4)
    rng = np.random.default_rng(1)
    U = np.linalg.qr(rng.standard_normal((80, 10)))[0]
    s = rng.uniform(0.5, 3.0, 10)
    e = rng.uniform(0.0, 0.5, 80)
    kernel = FactoredKernel(U, s, e, rank=10)
    plan = RowPlan.from_csr(R)
    direct = kernel.solve_rows(plan, R.data, 0.2)
    a, _ = cg_solve_factored(U, s, e, R.indptr, R.indices, R.data, 0.2, tol=1e-11, max_iter=500)
    assert _rel(a, direct) < 1e-8
    # a scalar shift is the same as that number on every column
    a1, _ = cg_solve_factored(U, s, 0.25, R.indptr, R.indices, R.data, 0.2, tol=1e-11)
    a2, _ = cg_solve_factored(U, s, np.full(80, 0.25), R.indptr, R.indices, R.data, 0.2, tol=1e-11)
    np.testing.assert_array_equal(a1, a2)


def test_stopping_rule_holds_on_every_row():
    R, K = _problem()
    tol = 1e-3
    a, iters = cg_solve_dense(K, R.indptr, R.indices, R.data, 0.3, tol=tol)
    for i in range(R.shape[0]):
        S = R.indices[R.indptr[i] : R.indptr[i + 1]]
        if S.size == 0:
            continue
        y = R.data[R.indptr[i] : R.indptr[i + 1]]
        res = y - (K[np.ix_(S, S)] + 0.3 * np.eye(S.size)) @ a[R.indptr[i] : R.indptr[i + 1]]
        assert np.linalg.norm(res) <= tol * np.linalg.norm(y) * (1 + 1e-9)
    # a looser tolerance takes fewer steps
    _, loose = cg_solve_dense(K, R.indptr, R.indices, R.data, 0.3, tol=1e-1)
    assert loose.sum() < iters.sum()


def test_warm_start_changes_iterations_not_answer():
    R, K = _problem()
    cold, it_cold = cg_solve_dense(K, R.indptr, R.indices, R.data, 0.3, tol=1e-10, max_iter=500)
    # from the answer itself: no step at all
    same, it_same = cg_solve_dense(K, R.indptr, R.indices, R.data, 0.3, a0=cold, tol=1e-8)
    assert it_same.max() == 0
    np.testing.assert_array_equal(same, cold)
    # from a nearby start (the previous kernel's answer): fewer steps, the same answer
    K2 = K + 0.05 * np.eye(K.shape[0])
    ref = solve_rows(K2, RowPlan.from_csr(R), R.data, 0.3)
    warm, it_warm = cg_solve_dense(K2, R.indptr, R.indices, R.data, 0.3, a0=cold, tol=1e-10)
    fresh, it_fresh = cg_solve_dense(K2, R.indptr, R.indices, R.data, 0.3, tol=1e-10)
    assert it_warm.sum() < it_fresh.sum()
    assert _rel(warm, ref) < 1e-8 and _rel(fresh, ref) < 1e-8


@pytest.mark.parametrize("form", ["dense", "factored"])
def test_deterministic_whatever_the_threads(form):
    R, K = _problem(n=400, d=120, density=0.3)
    R = R.astype(np.float32)
    if form == "dense":

        def run(t):
            return cg_solve_dense(
                K.astype(np.float32), R.indptr, R.indices, R.data, 0.5, tol=1e-3, n_threads=t
            )
    else:
        U = np.linalg.qr(np.random.default_rng(2).standard_normal((120, 16)))[0]
        U = U.astype(np.float32)
        s = np.linspace(3, 0.1, 16).astype(np.float32)

        def run(t):
            return cg_solve_factored(
                U, s, 0.05, R.indptr, R.indices, R.data, 0.5, tol=1e-3, n_threads=t
            )

    a1, i1 = run(1)
    a2, i2 = run(2)
    a3, i3 = run(2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(a2, a3)
    np.testing.assert_array_equal(i1, i2)


def test_zero_targets_and_empty_rows():
    R, K = _problem()
    R.data[R.indptr[3] : R.indptr[4]] = 0.0
    a, iters = cg_solve_dense(K, R.indptr, R.indices, R.data, 0.3)
    assert np.all(a[R.indptr[3] : R.indptr[4]] == 0) and iters[3] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LinRFMAlgo", "KernelRFMAlgo", "KernelRFMAlgo rank 128"])
def test_tight_cg_fits_the_direct_model_on_ml100k(u1, name):
    """Whole fits: CG at a tight tolerance gives the direct solves' predictions to 1e-4."""
    from surprise import accuracy

    from rfm_recsys import KernelRFMAlgo, LinRFMAlgo

    cls = LinRFMAlgo if name == "LinRFMAlgo" else KernelRFMAlgo
    extra = {"rank": 128} if name.endswith("128") else {}
    trainset, testset = u1
    direct = cls(solve_tol=None, **extra).fit(trainset)
    tight = cls(solve_tol=1e-6, **extra).fit(trainset)
    p_direct = np.array([p.est for p in direct.test(testset)])
    p_tight = np.array([p.est for p in tight.test(testset)])
    assert _rel(p_tight, p_direct) < 1e-4
    # the default tolerance stays within the noise of the direct solves
    default = cls(**extra).fit(trainset)
    gap = accuracy.rmse(default.test(testset), verbose=False) - accuracy.rmse(
        direct.test(testset), verbose=False
    )
    assert abs(gap) < 1e-3, gap


@pytest.fixture(scope="module")
def u1(ml100k_dir):
    from surprise import Dataset, Reader
    from surprise.model_selection import PredefinedKFold

    data = Dataset.load_from_folds(
        [(str(ml100k_dir / "u1.base"), str(ml100k_dir / "u1.test"))], Reader("ml-100k")
    )
    return next(PredefinedKFold().split(data))
