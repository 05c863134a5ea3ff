"""The two kernel forms: the factored one agrees with the dense one and scales as promised."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rfm_recsys.core.dense_kernel import DenseKernel
from rfm_recsys.core.engine import complete_dense, fit_engine
from rfm_recsys.core.factored_kernel import FactoredKernel
from rfm_recsys.core.kernel_forms import kernel_from_arrays
from rfm_recsys.core.memory import EngineMemoryError, estimate_memory
from rfm_recsys.core.solve import RowPlan
from rfm_recsys.core.updates import AGOPPower, IRLSUpdate


def low_rank_problem(n=60, d=80, rank=3, frac=0.5, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) / np.sqrt(rank)
    mask = rng.random((n, d)) < frac
    rows, cols = np.nonzero(mask)
    R = sp.csr_matrix((Y[rows, cols], (rows, cols)), shape=(n, d))
    return Y, mask, R


def random_factored(d, r, eps=0.0, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((d, r)))[0].astype(dtype)
    s = rng.uniform(0.5, 3.0, r).astype(dtype)
    return FactoredKernel(U, s, eps, rank=r)


@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("reimpose", [False, True])
def test_factored_equals_dense_at_full_rank(power, reimpose):
    Y, mask, R = low_rank_problem(n=40, d=30, seed=1)
    kw = dict(
        ridge=0.1,
        n_updates=4,
        update=AGOPPower(power),
        dtype=np.float64,
        reimpose_observed=reimpose,
    )
    dense = fit_engine(R, **kw)
    fact = fit_engine(R, rank=30, **kw)
    assert isinstance(fact.kernel, FactoredKernel)
    np.testing.assert_allclose(fact.K, dense.K, atol=1e-10)
    np.testing.assert_allclose(fact.A.toarray(), dense.A.toarray(), atol=1e-10)
    changes_d = [h["kernel_change"] for h in dense.history[1:]]
    changes_f = [h["kernel_change"] for h in fact.history[1:]]
    np.testing.assert_allclose(changes_f, changes_d, rtol=1e-6)


def test_factored_equals_dense_with_more_columns_than_rows():
    # n < d: the range finder's block is capped at n columns and is still exact
    Y, mask, R = low_rank_problem(n=12, d=30, frac=0.7, seed=2)
    kw = dict(ridge=0.5, n_updates=3, update=AGOPPower(1.0), dtype=np.float64)
    dense = fit_engine(R, **kw)
    fact = fit_engine(R, rank=30, **kw)
    np.testing.assert_allclose(
        complete_dense(fact.kernel, fact.A), complete_dense(dense.K, dense.A), atol=1e-9
    )


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_woodbury_and_direct_solves_agree_with_dense(eps):
    rng = np.random.default_rng(3)
    n, d, r = 120, 90, 8
    counts = rng.integers(0, 40, n)  # rows shorter and longer than r, and empty ones
    counts[:3] = [0, r, r + 1]
    rows = np.repeat(np.arange(n), counts)
    cols = np.concatenate([rng.choice(d, c, replace=False) for c in counts])
    R = sp.csr_matrix((rng.standard_normal(rows.size), (rows, cols)), shape=(n, d))
    R.sort_indices()
    ker = random_factored(d, r, eps=eps, seed=3)
    K = ker.dense()
    lam = 0.7
    a = ker.solve_rows(RowPlan.from_csr(R), R.data, lam, n_threads=2)
    for i in range(n):
        lo, hi = R.indptr[i], R.indptr[i + 1]
        S = R.indices[lo:hi]
        if S.size == 0:
            continue
        naive = np.linalg.solve(K[np.ix_(S, S)] + lam * np.eye(S.size), R.data[lo:hi])
        np.testing.assert_allclose(a[lo:hi], naive, atol=1e-9)
        # the fold-in path solves one row the same way
        np.testing.assert_allclose(ker.solve_row(S, R.data[lo:hi], lam), naive, atol=1e-9)
    # the dense form's solver gives the same coefficients
    a_dense = DenseKernel(K).solve_rows(RowPlan.from_csr(R), R.data, lam)
    np.testing.assert_allclose(a, a_dense, atol=1e-9)


def test_woodbury_and_direct_formulas_agree_on_one_long_row():
    from rfm_recsys.core.factored_solve import _solve_stack

    rng = np.random.default_rng(4)
    L = rng.standard_normal((3, 25, 6))  # c = 25 > r = 6: Woodbury
    y = rng.standard_normal((3, 25))
    woodbury = _solve_stack(L, y, 0.4)
    direct = np.stack([np.linalg.solve(Li @ Li.T + 0.4 * np.eye(25), yi) for Li, yi in zip(L, y)])
    np.testing.assert_allclose(woodbury, direct, atol=1e-10)


def test_rank2_matrix_completed_with_rank4_kernel():
    rng = np.random.default_rng(5)
    n, d = 60, 80
    Y = rng.standard_normal((n, 2)) @ rng.standard_normal((2, d)) / np.sqrt(2)
    mask = rng.random((n, d)) < 0.5
    rows, cols = np.nonzero(mask)
    R = sp.csr_matrix((Y[rows, cols], (rows, cols)), shape=(n, d))
    res = fit_engine(
        R,
        ridge=1e-3,
        n_updates=300,
        update=AGOPPower(1.0),
        dtype=np.float64,
        reimpose_observed=True,
        rank=4,
    )
    assert res.kernel.U.shape == (d, 4)
    W = complete_dense(res.kernel, res.A)
    err = np.linalg.norm((W - Y)[~mask]) / np.linalg.norm(Y[~mask])
    assert err < 1e-3, err


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_factored_completion_matches_dense(eps):
    rng = np.random.default_rng(6)
    Y, mask, R = low_rank_problem(n=30, d=20, seed=6)
    A = sp.csr_matrix((rng.standard_normal(R.nnz), R.indices, R.indptr), shape=R.shape)
    ker = random_factored(20, 5, eps=eps, seed=6)
    W = A.toarray() @ ker.dense()
    comp = ker.complete(A)
    r, c = rng.integers(0, 30, 400), rng.integers(0, 20, 400)
    r[:5], c[:5] = R.nonzero()[0][:5], R.nonzero()[1][:5]  # observed pairs (the eps A part)
    np.testing.assert_allclose(comp.pairs(r, c), W[r, c], atol=1e-10)
    np.testing.assert_allclose(comp.rows(np.array([3, 7])), W[[3, 7]], atol=1e-10)
    np.testing.assert_allclose(comp.column(4), W[:, 4], atol=1e-10)
    S = np.array([1, 4, 9])
    a = rng.standard_normal(3)
    np.testing.assert_allclose(ker.apply(S, a), ker.dense()[:, S] @ a, atol=1e-10)
    v = rng.standard_normal(20)
    np.testing.assert_allclose(ker.matvec(v), ker.dense() @ v, atol=1e-10)
    V = rng.standard_normal((20, 3))
    np.testing.assert_allclose(ker.matvec(V), ker.dense() @ V, atol=1e-10)
    np.testing.assert_allclose(comp.columns(np.array([2, 5])), W[:, [2, 5]], atol=1e-10)
    np.testing.assert_allclose(comp.times(V), W @ V, atol=1e-10)
    np.testing.assert_allclose(comp.row_norms(), np.linalg.norm(W, axis=1), atol=1e-10)
    np.testing.assert_allclose(ker.rows(np.array([0, 3])), ker.dense()[[0, 3]], atol=1e-10)
    np.testing.assert_allclose(ker.diag(), np.diag(ker.dense()), atol=1e-10)
    # the dense form answers the same questions the same way
    dcomp = DenseKernel(ker.dense()).complete(A)
    calls = [
        ("pairs", (r, c)),
        ("rows", (np.array([3, 7]),)),
        ("column", (4,)),
        ("columns", (np.array([2, 5]),)),
        ("times", (V,)),
        ("row_norms", ()),
    ]
    for name, args in calls:
        expect = getattr(dcomp, name)(*args)
        np.testing.assert_allclose(getattr(comp, name)(*args), expect, atol=1e-10)


def test_factored_distance_and_arrays_round_trip():
    k0 = random_factored(25, 4, eps=0.1, seed=7)
    k1 = random_factored(25, 6, eps=0.0, seed=8)
    expect = np.linalg.norm(k1.dense() - k0.dense()) / np.linalg.norm(k0.dense())
    assert k0.distance(k1) == pytest.approx(expect, rel=1e-9)
    back = kernel_from_arrays(k0.to_arrays())
    np.testing.assert_array_equal(back.dense(), k0.dense())
    assert (back.rank, back.eps) == (k0.rank, k0.eps)
    dense = DenseKernel(k1.dense())
    np.testing.assert_array_equal(kernel_from_arrays(dense.to_arrays()).dense(), dense.dense())


def test_factored_float32_close_to_float64():
    Y, mask, R = low_rank_problem(n=80, d=60, seed=9)
    kw = dict(ridge=0.5, n_updates=3, update=AGOPPower(1.0), rank=8)
    r64 = fit_engine(R, dtype=np.float64, **kw)
    r32 = fit_engine(R, dtype=np.float32, **kw)
    assert r32.kernel.U.dtype == np.float32
    W64, W32 = complete_dense(r64.kernel, r64.A), complete_dense(r32.kernel, r32.A)
    assert np.max(np.abs(W64 - W32)) < 1e-3


def test_shifted_factored_kernel_runs_and_tracks_validation():
    Y, mask, R = low_rank_problem(n=60, d=50, rank=2, seed=10)
    rows, cols = np.nonzero(~mask)
    res = fit_engine(
        R,
        ridge=0.1,
        n_updates=4,
        update=AGOPPower(1.0),
        dtype=np.float64,
        rank=6,
        shift=0.1,
        validation=(rows, cols, Y[rows, cols]),
        patience=10,
    )
    assert res.kernel.eps == pytest.approx(0.1)
    # mean diagonal of the kernel: the low-rank part's share plus the shift
    assert np.mean(np.diag(res.K)) <= 1.0 + 1e-9
    comp = res.kernel.complete(res.A)
    rmse = np.sqrt(np.mean((comp.pairs(rows, cols) - Y[rows, cols]) ** 2))
    assert rmse == pytest.approx(res.history[res.best_iteration]["valid_rmse"])


def test_irls_needs_the_dense_kernel():
    Y, mask, R = low_rank_problem(n=20, d=15, seed=11)
    with pytest.raises(ValueError, match=r"IRLSUpdate needs the dense kernel \(rank=None\)"):
        fit_engine(R, ridge=0.1, n_updates=2, update=IRLSUpdate(), rank=4)


def test_factored_memory_estimate():
    gib = 2**30
    # ML-32M shaped, items as features: the dense d x d kernel cannot fit in 24 GiB ...
    n, d, nnz = 200_948, 84_432, 32_000_204
    dense = estimate_memory(n, d, nnz, np.float32)
    assert dense > 100 * gib
    # ... the rank-256 factored one is a few GiB: ratings plus (n + d) x r blocks
    fact = estimate_memory(n, d, nnz, np.float32, rank=256)
    assert fact < 4 * gib
    # linear, not quadratic, in d at a fixed rank
    small = estimate_memory(n, 1_000, nnz, np.float32, rank=256)
    grow = estimate_memory(n, 2_000, nnz, np.float32, rank=256) - small
    grow2 = estimate_memory(n, 3_000, nnz, np.float32, rank=256) - small
    assert grow2 == pytest.approx(2 * grow, rel=1e-9)
    # a rank above d costs what rank d does
    assert estimate_memory(100, 50, 500, rank=80) == estimate_memory(100, 50, 500, rank=50)


def test_factored_fits_where_dense_is_refused():
    R = sp.random(200, 3_000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    dense_need = estimate_memory(200, 3_000, R.nnz)
    fact_need = estimate_memory(200, 3_000, R.nnz, rank=8)
    assert fact_need < dense_need
    limit = (fact_need + dense_need) // 2
    with pytest.raises(EngineMemoryError, match=r"rank=256 needs about"):
        fit_engine(R, ridge=1.0, n_updates=1, update=AGOPPower(), max_memory=limit)
    res = fit_engine(R, ridge=1.0, n_updates=1, update=AGOPPower(), max_memory=limit, rank=8)
    assert res.kernel.rank == 8


def test_size_no_form_can_fit_is_refused_with_the_figures():
    R = sp.random(100, 50, density=0.1, format="csr", random_state=0, dtype=np.float32)
    need = estimate_memory(100, 50, R.nnz, rank=4)
    with pytest.raises(EngineMemoryError) as info:
        fit_engine(R, ridge=1.0, n_updates=1, update=AGOPPower(), rank=4, max_memory=need // 2)
    msg = str(info.value)
    assert f"{need / 2**30:.2f} GiB" in msg
    assert "rank-4 factored kernel" in msg and "max_memory allows" in msg
    assert "ratings alone take about" in msg and "subsample the ratings" in msg


def test_randomized_range_finder_finds_the_top_eigenpairs():
    from rfm_recsys.core.randomized import top_eig_randomized

    rng = np.random.default_rng(12)
    n, d, r = 300, 120, 10
    # a sparse matrix with a decaying spectrum: low rank plus noise, 30% observed
    X = rng.standard_normal((n, 15)) @ np.diag(0.7 ** np.arange(15)) @ rng.standard_normal((15, d))
    X += 0.05 * rng.standard_normal((n, d))
    A = sp.csr_matrix(X * (rng.random((n, d)) < 0.3))
    ker = FactoredKernel.eye(d, np.float64, rank=r)
    At = A.T.tocsr()
    gram = lambda P: ker.range_gram(A, At, P, 1.0)  # noqa: E731
    V, evals = top_eig_randomized(gram, d, r + 10, r, np.float64, seed=(0, 0))
    exact = np.linalg.svd(A.toarray(), compute_uv=False) ** 2
    # the leading pairs are found closely; towards the flat tail of a sampled matrix the
    # estimates fall short (never above: they are Ritz values), but the energy kept is close
    np.testing.assert_allclose(evals[:5], exact[:5], rtol=0.05)
    assert np.all(evals <= exact[:r] * (1 + 1e-9))
    assert evals.sum() > 0.95 * exact[:r].sum()
    np.testing.assert_allclose(V.T @ V, np.eye(r), atol=1e-10)


def test_update_pieces_add_up_over_row_blocks():
    """What a block of rows contributes to the factored update sums to the whole matrix's."""
    from rfm_recsys.core.factored_kernel import factor_gram

    rng = np.random.default_rng(5)
    n, d = 200, 60
    A = sp.random(n, d, density=0.2, format="csr", random_state=5)
    U = np.linalg.qr(rng.standard_normal((d, 6)))[0]
    ker = FactoredKernel(U, np.arange(6, 0, -1.0), 0.3, rank=6)
    P = rng.standard_normal((d, 9))
    blocks = [A[:70], A[70:150], A[150:]]
    whole = ker.range_gram(A, A.T.tocsr(), P, 0.3)
    parts = sum(ker.range_gram(b, b.T.tocsr(), P, 0.3) for b in blocks)
    np.testing.assert_allclose(parts, whole, rtol=1e-10)
    X = A @ ker.dense()
    np.testing.assert_allclose(whole, X.T @ (X @ P), rtol=1e-10)
    Z = ker.complete(A).Z
    ztz = sum(factor_gram(ker.complete(b).Z) for b in blocks)
    np.testing.assert_allclose(ztz, Z.T @ Z, rtol=1e-10)


def test_threaded_sparse_product_matches_scipy():
    from rfm_recsys.core.randomized import spmm

    A = sp.random(3_000, 800, density=0.5, format="csr", random_state=13, dtype=np.float32)
    X = np.random.default_rng(13).standard_normal((800, 5)).astype(np.float32)
    assert A.nnz >= 1_000_000  # large enough for the threaded path
    for n_threads in (1, 2, 3):
        np.testing.assert_allclose(spmm(A, X, n_threads), A @ X, rtol=1e-5, atol=1e-4)
