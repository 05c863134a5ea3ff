"""The Surprise face: cross_validate, GridSearchCV, predict/test, dump, unknown ids, real data."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, Dataset, Reader, accuracy, dump
from surprise.model_selection import GridSearchCV, PredefinedKFold, cross_validate

from rfm_recsys import (
    ALSAlgo,
    BayesianMFAlgo,
    InvalidParameterError,
    IRLSAlgo,
    KernelRFMAlgo,
    LinRFMAlgo,
    RatingsError,
)
from rfm_recsys.core.blas import blas_threads
from rfm_recsys.core.dense_kernel import DenseKernel
from rfm_recsys.core.factored_kernel import FactoredKernel
from rfm_recsys.core.memory import EngineMemoryError
from rfm_recsys.core.updates import AGOPPower
from rfm_recsys.fitting import FitSettings, fit_ratings, plan
from rfm_recsys.surprise_algos import _trainset_arrays


def synthetic_df(n_users=120, n_items=90, density=0.3, rank=3, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n_users, rank)) * 0.6
    Q = rng.standard_normal((n_items, rank)) * 0.6
    bu = rng.normal(0, 0.3, n_users)
    bi = rng.normal(0, 0.4, n_items)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = 3.4 + bu[u] + bi[i] + (P[u] * Q[i]).sum(1) + noise * rng.standard_normal(u.size)
    r = np.clip(np.round(r), 1, 5)
    return pd.DataFrame({"user": u.astype(str), "item": i.astype(str), "rating": r})


@pytest.fixture(scope="module")
def data():
    return Dataset.load_from_df(synthetic_df(), Reader(rating_scale=(1, 5)))


def test_cross_validate_parallel_beats_svd(data):
    out = cross_validate(LinRFMAlgo(random_state=0), data, measures=["RMSE", "MAE"], cv=3, n_jobs=2)
    svd = cross_validate(SVD(random_state=0), data, measures=["RMSE"], cv=3, n_jobs=1)
    assert len(out["test_rmse"]) == 3 and np.all(np.isfinite(out["test_mae"]))
    # a low-rank signal with biases: lin-RFM must do clearly better than the global mean
    ratings = synthetic_df()["rating"].to_numpy()
    assert out["test_rmse"].mean() < 0.9 * ratings.std()
    assert out["test_rmse"].mean() < svd["test_rmse"].mean() + 0.05


def test_grid_search(data):
    gs = GridSearchCV(
        LinRFMAlgo, {"ridge": [5.0, 20.0], "n_updates": [1, 3]}, measures=["rmse"], cv=2
    )
    gs.fit(data)
    assert set(gs.best_params["rmse"]) == {"ridge", "n_updates"}
    assert 0.3 < gs.best_score["rmse"] < 1.2
    assert isinstance(gs.best_estimator["rmse"], LinRFMAlgo)


def test_init_stores_verbatim_and_fit_returns_self(data):
    algo = LinRFMAlgo(ridge=7.5, n_updates=2, orient="items", dtype="float64")
    assert (algo.ridge, algo.n_updates, algo.orient, algo.dtype) == (7.5, 2, "items", "float64")
    assert not hasattr(algo, "fit_")  # no work in __init__
    trainset = data.build_full_trainset()
    assert algo.fit(trainset) is algo
    assert len(algo.history_) == 3
    assert algo.fit_.K.dtype == np.float64


@pytest.mark.parametrize("cls", [LinRFMAlgo, IRLSAlgo])
def test_vectorised_test_equals_predict(cls, data):
    trainset = data.build_full_trainset()
    algo = cls(n_updates=2).fit(trainset)
    testset = trainset.build_testset()[:300] + [
        ("u?", "0", 3.0),
        ("0", "i?", 4.0),
        ("u?", "i?", 2.0),
    ]
    fast = algo.test(testset)
    slow = [algo.predict(u, i, r) for u, i, r in testset]
    for f, s in zip(fast, slow):
        assert (f.uid, f.iid, f.r_ui) == (s.uid, s.iid, s.r_ui)
        assert f.est == pytest.approx(s.est, abs=1e-12)
        assert f.details == s.details


def test_unknown_ids_follow_surprise_svd(data):
    trainset = data.build_full_trainset()
    algo = LinRFMAlgo().fit(trainset)
    fit = algo.fit_
    iu, ii = trainset.to_inner_uid("0"), trainset.to_inner_iid("0")
    p_user_unknown = algo.predict("nobody", "0")
    assert p_user_unknown.est == pytest.approx(np.clip(fit.mu + fit.b_item[ii], 1, 5))
    p_item_unknown = algo.predict("0", "nothing")
    assert p_item_unknown.est == pytest.approx(np.clip(fit.mu + fit.b_user[iu], 1, 5))
    p_both = algo.predict("nobody", "nothing")
    assert p_both.details["was_impossible"] and p_both.est == pytest.approx(trainset.global_mean)
    assert not p_user_unknown.details["was_impossible"]


def test_estimates_clipped(data):
    algo = LinRFMAlgo(ridge=0.01, n_updates=3).fit(data.build_full_trainset())
    ests = np.array([p.est for p in algo.test(data.build_full_trainset().build_testset())])
    assert ests.min() >= 1 and ests.max() <= 5


def test_dump_round_trip(tmp_path, data):
    trainset = data.build_full_trainset()
    algo = LinRFMAlgo(random_state=1).fit(trainset)
    path = tmp_path / "algo.dump"
    dump.dump(str(path), algo=algo)
    _, loaded = dump.load(str(path))
    testset = trainset.build_testset()[:200]
    assert [p.est for p in loaded.test(testset)] == [p.est for p in algo.test(testset)]


def test_duplicates_in_trainset():
    df = synthetic_df(n_users=20, n_items=15, density=0.5)
    df = pd.concat([df, df.iloc[:3].assign(rating=1.0)])
    data = Dataset.load_from_df(df, Reader(rating_scale=(1, 5)))
    with pytest.raises(RatingsError, match="rated more than once.*duplicates='mean'"):
        LinRFMAlgo().fit(data.build_full_trainset())
    algo = LinRFMAlgo(duplicates="mean").fit(data.build_full_trainset())
    assert algo.fit_.A.nnz == len(df) - 3


def test_single_user_refused():
    df = pd.DataFrame({"u": ["a"] * 3, "i": ["x", "y", "z"], "r": [1.0, 2.0, 3.0]})
    trainset = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    with pytest.raises(RatingsError, match="1 user.*at least 2 users"):
        LinRFMAlgo().fit(trainset)


def test_memory_limit_refused(data):
    with pytest.raises(EngineMemoryError, match="GiB"):
        LinRFMAlgo(max_memory=1000).fit(data.build_full_trainset())


def test_validation_share_early_stopping(data):
    algo = LinRFMAlgo(n_updates=10, validation_share=0.2, random_state=0).fit(
        data.build_full_trainset()
    )
    vals = [h["valid_rmse"] for h in algo.history_]
    assert "valid_rmse" in algo.history_[0]
    assert algo.fit_.best_iteration <= 10
    assert vals[algo.fit_.best_iteration] <= min(vals) + 1e-9


def test_test_is_vectorised_on_20k(data, monkeypatch):
    trainset = data.build_full_trainset()
    algo = LinRFMAlgo().fit(trainset)
    rng = np.random.default_rng(0)
    testset = [
        (str(u), str(i), 3.0)
        for u, i in zip(rng.integers(0, 120, 20_000), rng.integers(0, 90, 20_000))
    ]
    expected = [algo.predict(u, i, r).est for u, i, r in testset[:500]]

    def per_rating(*args, **kwargs):
        raise AssertionError("test() must not call estimate() once per rating")

    # its speed (about 0.1 s for 20k ratings) is measured by the harness, not asserted here
    monkeypatch.setattr(algo, "estimate", per_rating)
    preds = algo.test(testset)
    assert len(preds) == 20_000
    assert [p.est for p in preds[:500]] == pytest.approx(expected, abs=1e-12)
    # the collector, paused while the predictions are built, is back as it was
    import gc

    assert gc.isenabled()
    gc.disable()
    try:
        algo.test(testset[:10])
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def u1(ml100k_dir):
    reader = Reader("ml-100k")
    data = Dataset.load_from_folds(
        [(str(ml100k_dir / "u1.base"), str(ml100k_dir / "u1.test"))], reader
    )
    return next(PredefinedKFold().split(data))


def test_ml100k_u1_kernel_rfm_defaults(u1):
    # kernel RFM, dense over ml-100k's 1,682 items: 0.8991 measured
    trainset, testset = u1
    algo = KernelRFMAlgo().fit(trainset)
    # rank="auto" with the kernel step: the dense kernel up to 4096 items
    assert isinstance(algo.fit_.kernel, DenseKernel)
    rmse = accuracy.rmse(algo.test(testset), verbose=False)
    assert rmse <= 0.905, rmse


def test_ml100k_u1_linrfm_defaults(u1):
    # plain lin-RFM: 0.9285 measured (direct solves)
    trainset, testset = u1
    algo = LinRFMAlgo().fit(trainset)
    rmse = accuracy.rmse(algo.test(testset), verbose=False)
    assert rmse <= 0.929, rmse


#: Each model's RMSE on ml-100k's u1 split with the direct row solves (``solve_tol=None``), to
#: the last bit: a change to any model shows here. The pins were first taken before the package
#: took its present names and one fitting layer (LinRFMAlgo() was then
#: LinRFMAlgo(**PLAIN_LINRFM), KernelRFMAlgo() the LinRFMAlgo() of that time), and the renames
#: and the restructuring left all eight unchanged. The factored fits then changed on purpose
#: (the rank rule, two power passes with q = r + 32 in the first update, the co-rating factor
#: once per fit and Nystrom kernels without QR), and their pins were retaken. Measured with one
#: BLAS thread on an "AMD EPYC" CPU; the last bits depend on the BLAS kernels (thread count,
#: CPU), so on another CPU the test allows 1e-7 relative and says so.
PINNED_CPU = "AMD EPYC"
U1_RMSE = [
    ("LinRFMAlgo()", LinRFMAlgo, {}, 0.9284830213585333),
    ("KernelRFMAlgo()", KernelRFMAlgo, {}, 0.8990958810404788),
    ("KernelRFMAlgo(rank=128)", KernelRFMAlgo, {"rank": 128}, 0.9010488129688744),
    ("LinRFMAlgo(rank=64)", LinRFMAlgo, {"rank": 64}, 0.9294321191076546),
    ("LinRFMAlgo(orient='items')", LinRFMAlgo, {"orient": "items"}, 0.9250762466208043),
    ("IRLSAlgo()", IRLSAlgo, {}, 0.9266578017361093),
    ("ALSAlgo(random_state=0)", ALSAlgo, {"random_state": 0}, 0.9233390854459306),
    ("KernelRFMAlgo(orient='both')", KernelRFMAlgo, {"orient": "both"}, 0.9006504457195136),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "cls, params, expected", [c[1:] for c in U1_RMSE], ids=[c[0] for c in U1_RMSE]
)
def test_ml100k_u1_default_rmse_unchanged_bit_for_bit(u1, cls, params, expected):
    trainset, testset = u1
    algo = cls(**params) if cls is ALSAlgo else cls(**params, solve_tol=None)
    with blas_threads(1):
        rmse = accuracy.rmse(algo.fit(trainset).test(testset), verbose=False)
    if _cpu_model() == PINNED_CPU:
        assert rmse == expected
    else:  # other BLAS kernels round differently in the last bits
        assert rmse == pytest.approx(expected, rel=1e-7), f"on {_cpu_model()!r}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


#: Every default of LinRFMAlgo, spelled out (the paper's lin-RFM with our biases and ridge).
LINRFM_DEFAULTS = {
    "n_updates": 2, "ridge": 10.0, "power": 1.0, "orient": "auto", "rank": "auto",
    "bias_ridge": 2.0, "n_bias_sweeps": 10, "dtype": "float32", "tol": None, "solve_tol": 1e-2,
    "validation_share": 0.0, "patience": 2, "duplicates": "raise", "random_state": None,
    "max_memory": None, "backend": "threads", "verbose": False,
}  # fmt: skip
#: What KernelRFMAlgo adds or changes.
KERNEL_STEP_DEFAULTS = {
    "kernel": "gaussian", "bandwidth": 0.7, "co_rating": 2.0, "kernel_ridge": 3.0,
    "n_kernel_updates": 3, "orient": "items",
}  # fmt: skip


def test_linrfm_defaults_are_plain_linrfm(data):
    algo = LinRFMAlgo()
    assert algo.get_params() == LINRFM_DEFAULTS
    trainset = data.build_full_trainset()
    algo.fit(trainset)
    u, i, r = _trainset_arrays(trainset)
    # the fitting layer with the defaults written out (no default read from config.py)
    settings = FitSettings(
        n_updates=2, ridge=10.0, update=AGOPPower(1.0, normalize="diag"), orient="auto",
        rank="auto", bias_ridge=2.0, n_bias_sweeps=10, dtype=np.dtype(np.float32),
        solve_tol=1e-2,
    )  # fmt: skip
    ref = fit_ratings(u, i, r, trainset.n_users, trainset.n_items, settings)
    assert isinstance(algo.fit_, type(ref)) and algo.fit_.users_are_rows == ref.users_are_rows
    assert np.array_equal(algo.fit_.K, ref.K) and (algo.fit_.A != ref.A).nnz == 0
    assert {h["stage"] for h in algo.history_} == {"linear"}
    uu, ii = np.meshgrid(np.arange(trainset.n_users), np.arange(trainset.n_items))
    est, _ = algo.fit_.predict(uu.ravel(), ii.ravel())
    assert np.array_equal(est, ref.predict(uu.ravel(), ii.ravel())[0])


def test_kernel_rfm_defaults_are_the_kernel_step(data):
    algo = KernelRFMAlgo()
    assert algo.get_params() == {**LINRFM_DEFAULTS, **KERNEL_STEP_DEFAULTS}
    trainset = data.build_full_trainset()
    algo.fit(trainset)
    plain = LinRFMAlgo().fit(trainset)
    assert algo.fit_.users_are_rows  # the kernel over items
    # two linear row fits, then 1 + 3 with the step's kernel: the history shows them all
    assert [h["stage"] for h in algo.history_] == ["linear"] * 2 + ["kernel"] * 4
    assert algo.fit_.ridge == 3.0
    testset = trainset.build_testset()
    est = [p.est for p in algo.test(testset)]
    assert not np.allclose(est, [p.est for p in plain.test(testset)])


def test_kernel_step_auto_rank_rule(data, monkeypatch):
    assert plan.resolve_rank("auto", 4096, False, True) is None
    assert plan.resolve_rank("auto", 4097, False, True) == plan.AUTO_RULE
    assert plan.resolve_rank("auto", 256, False, False) is None
    assert plan.resolve_rank("auto", 257, False, False) == plan.AUTO_RULE
    assert plan.resolve_rank("auto", 10**6, True, False) is None  # IRLS: dense only
    assert plan.resolve_rank(None, 10**6, False, True) is None
    assert plan.resolve_rank(7, 5, False, True) == 7
    trainset = data.build_full_trainset()  # 90 items: dense under every rule here
    assert isinstance(KernelRFMAlgo(n_kernel_updates=1).fit(trainset).fit_.kernel, DenseKernel)
    monkeypatch.setattr(plan, "KERNEL_DENSE_MAX_D", 50)  # 90 items now count as many
    fit = KernelRFMAlgo(n_kernel_updates=1).fit(trainset).fit_
    assert isinstance(fit.kernel, FactoredKernel)
    # explicit ranks are respected, and plain lin-RFM keeps its own rule (dense up to 256)
    assert isinstance(
        KernelRFMAlgo(n_kernel_updates=1, rank=None).fit(trainset).fit_.kernel, DenseKernel
    )
    assert isinstance(LinRFMAlgo(orient="items").fit(trainset).fit_.kernel, DenseKernel)


@pytest.mark.parametrize(
    "cls, params, pattern",
    [
        (LinRFMAlgo, {"ridge": -1}, r"LinRFMAlgo: ridge must be .*>= 0, got -1"),
        (LinRFMAlgo, {"n_updates": "3"}, r"n_updates must be an integer >= 0, got '3' \(str\)"),
        (KernelRFMAlgo, {"co_rating": -2}, r"KernelRFMAlgo: co_rating must be .*>= 0"),
        (KernelRFMAlgo, {"kernel": "rbf"}, r"kernel must be one of 'linear', 'gaussian'"),
        (LinRFMAlgo, {"orient": "rows"}, r"orient must be one of 'auto', 'users', 'items'"),
        (IRLSAlgo, {"p": 3}, r"IRLSAlgo: p must be .* in \[0, 1\], got 3"),
        (IRLSAlgo, {"validation_share": 1.0}, r"validation_share must be .*\[0, 1\), got 1.0"),
        (ALSAlgo, {"rank": 0}, r"ALSAlgo: rank must be an integer >= 1, got 0"),
        (ALSAlgo, {"dtype": "int8"}, r"dtype must be 'float32' or 'float64', got 'int8'"),
    ],
)
def test_bad_hyperparameters_raise_at_fit(data, cls, params, pattern):
    algo = cls(**params)  # stored verbatim, checked only by fit
    assert all(getattr(algo, k) == v for k, v in params.items())
    with pytest.raises(InvalidParameterError, match=pattern):
        algo.fit(data.build_full_trainset())
    assert not hasattr(algo, "fit_")


@pytest.mark.parametrize("cls", [LinRFMAlgo, KernelRFMAlgo, IRLSAlgo, ALSAlgo, BayesianMFAlgo])
def test_signature_lists_the_config(cls):
    sig = inspect.signature(cls)
    assert list(sig.parameters) == cls.config.names()
    assert {k: p.default for k, p in sig.parameters.items()} == cls.config.defaults()
    assert cls().get_params() == cls.config.defaults()
    assert set(cls._parameter_constraints) == set(cls.config.names())
