"""The Dask backend fits the threads backend's model, on a LocalCluster started here (loopback)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
psutil = pytest.importorskip("psutil")

from rfm_recsys import KernelRFM, KernelRFMAlgo, LinRFM, LinRFMAlgo  # noqa: E402
from rfm_recsys.datasets import load_movielens, make_ratings  # noqa: E402
from rfm_recsys.distributed import DistributedFitError  # noqa: E402
from rfm_recsys.params import InvalidParameterError  # noqa: E402

RTOL = 1e-5


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes on 127.0.0.1, no dashboard; closed after the module.

    Not the default client: tests that want it enter ``client.as_current()``, so the others
    see no client at all.
    """
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return make_ratings(500, 240, 15_000, random_state=3)[["user_id", "item_id", "rating"]]


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _pairs(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return df["user_id"].to_numpy(), df["item_id"].to_numpy()


@pytest.mark.parametrize("orient", ["auto", "users"])
def test_same_model_as_threads_backend(client, ratings, orient, tmp_path):
    threads = LinRFM(n_updates=3, orient=orient, rank=None).fit(ratings)
    with client.as_current():
        dask = LinRFM(n_updates=3, orient=orient, rank=None, backend="dask").fit(ratings)
    u, i = _pairs(ratings)
    assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < RTOL
    assert [h["iteration"] for h in dask.history_] == [h["iteration"] for h in threads.history_]
    assert dask.fit_.A.nnz == threads.fit_.A.nnz
    # the fitted model is an ordinary LinRFM: ranking and fold-in work as with threads
    ids, _ = dask.recommend(int(u[0]), N=5)
    assert ids.shape == (5,)
    new = dask.fold_in({int(i[0]): 4.0, int(i[1]): 2.0})
    assert np.allclose(new.to_numpy(), threads.fold_in({int(i[0]): 4.0, int(i[1]): 2.0}), rtol=1e-4)
    dask.save(tmp_path / "m.npz")
    loaded = LinRFM.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.predict(u, i), dask.predict(u, i))


def test_validation_share_same_split_and_curve(client, ratings):
    kw = dict(n_updates=5, validation_share=0.15, random_state=7, rank=None)
    threads = LinRFM(**kw).fit(ratings)
    with client.as_current():
        dask = LinRFM(**dict(kw, backend="dask")).fit(ratings)
    assert dask.fit_.best_iteration == threads.fit_.best_iteration
    got = [h["valid_rmse"] for h in dask.history_]
    want = [h["valid_rmse"] for h in threads.history_]
    assert np.allclose(got, want, rtol=RTOL)
    u, i = _pairs(ratings)
    assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < RTOL


def test_ml100k_same_predictions(client, movielens_home):
    df = load_movielens("ml-100k", movielens_home, download=False, progress=False)
    threads = LinRFM(rank=None).fit(df)
    with client.as_current():
        dask = LinRFM(rank=None, backend="dask").fit(df)
    u, i = _pairs(df)
    assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < RTOL


@pytest.mark.parametrize("rank", [32, "auto"])
def test_ml100k_factored_kernel_same_predictions(client, movielens_home, rank):
    """The library's default (rank="auto": rank 128 at d = 943) and an explicit rank.

    Both backends run FactoredKernel's own solve and update code; only the order of the sums
    over rows differs (measured: 5e-6 relative at "auto", 1e-15 at rank 32).
    """
    df = load_movielens("ml-100k", movielens_home, download=False, progress=False)
    threads = LinRFM(rank=rank).fit(df)
    with client.as_current():
        dask = LinRFM(rank=rank, backend="dask").fit(df)
    assert dask.fit_.kernel.rank == threads.fit_.kernel.rank == (32 if rank == 32 else 128)
    assert dask.fit_.kernel.U.shape == threads.fit_.kernel.U.shape
    u, i = _pairs(df)
    assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < RTOL


def test_factored_kernel_validation_curve(client, ratings):
    # tol=0: the kernel changes are computed (and compared) but never stop the fit
    kw = dict(n_updates=3, validation_share=0.15, random_state=7, rank=16, tol=0.0)
    threads = LinRFM(**kw).fit(ratings)
    with client.as_current():
        dask = LinRFM(**dict(kw, backend="dask")).fit(ratings)
    assert dask.fit_.best_iteration == threads.fit_.best_iteration
    got = [h["valid_rmse"] for h in dask.history_]
    assert np.allclose(got, [h["valid_rmse"] for h in threads.history_], rtol=RTOL)
    changes = [h["kernel_change"] for h in dask.history_[1:]]
    assert np.allclose(changes, [h["kernel_change"] for h in threads.history_[1:]], rtol=1e-4)
    u, i = _pairs(ratings)
    assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < RTOL


def _load_part(k: int, folder: str) -> pd.DataFrame:
    """One partition of the test's ratings, recording which process read it."""
    Path(folder, f"{k}-{os.getpid()}").touch()
    return make_ratings(500, 240, 15_000, random_state=3)[["user_id", "item_id", "rating"]].iloc[
        k::4
    ]


def test_dask_frame_stays_on_the_workers(client, ratings, tmp_path, monkeypatch):
    # meta given, as read_parquet takes it from the schema: dask then reads no partition here
    meta = ratings.iloc[:0]
    ddf = dd.from_map(_load_part, range(4), folder=str(tmp_path), meta=meta, enforce_metadata=False)
    assert ddf.npartitions == 4
    computed = []
    for cls in {type(ddf), dd.DataFrame}:
        original = cls.compute

        def counting(self, *args, _original=original, **kwargs):
            computed.append(self)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "compute", counting)
    with client.as_current():
        model = LinRFM(n_updates=3, rank=None).fit(ddf)  # a dask frame implies the dask backend
    assert computed == [], "the driver computed the frame"
    readers = {tuple(p.name.split("-")) for p in tmp_path.iterdir()}
    partitions = {int(k) for k, _ in readers}
    pids = {int(pid) for _, pid in readers}
    assert partitions == {0, 1, 2, 3}
    assert os.getpid() not in pids, "a partition was read in the driver process"
    assert pids <= set(client.run(os.getpid).values()), "read outside the worker processes"
    threads = LinRFM(n_updates=3, rank=None).fit(ratings)
    u, i = _pairs(ratings)
    assert _relative_gap(model.predict(u, i), threads.predict(u, i)) < RTOL
    assert model.fitted_on_ == "dataframe"


def _kill_workers(client, n: int) -> None:
    for pid in sorted(client.run(os.getpid).values())[:n]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)


@pytest.mark.parametrize("rank, at", [(None, 1), (16, 0)])
def test_worker_killed_during_fit_dask_frame_recovers(client, ratings, rank, at):
    """A part read from its source is recomputed by Dask: the same model as without the loss.

    The factored kernel's worker dies right before the randomized update's passes over the
    blocks (after iteration 0), the dense kernel's before its second update.
    """
    client.wait_for_workers(2, timeout=60)
    ddf = dd.from_pandas(ratings, npartitions=4)

    def kill(it, rec):
        if it == at:
            _kill_workers(client, 1)

    with client.as_current():
        model = LinRFM(n_updates=3, rank=rank, backend="dask").fit(ddf, callback=kill)
    client.wait_for_workers(2, timeout=60)
    threads = LinRFM(n_updates=3, rank=rank).fit(ratings)
    u, i = _pairs(ratings)
    assert _relative_gap(model.predict(u, i), threads.predict(u, i)) < RTOL


def test_workers_killed_during_fit_scattered_is_a_clear_error(client, ratings):
    """Ratings scattered from the driver have no source to recompute from: the fit stops.

    Both workers are killed (the nannies restart them empty), so every part and block is gone.
    Losing one worker may or may not end the fit, depending on where the blocks live; a fit
    that ends is always one built from every rating (the blocks' counts are checked).
    """
    client.wait_for_workers(2, timeout=60)

    def kill_at_first_update(it, rec):
        if it == 1:
            _kill_workers(client, 2)

    model = LinRFM(n_updates=3, rank=None, backend="dask")
    with client.as_current(), pytest.raises(DistributedFitError, match="worker was lost"):
        model.fit(ratings, callback=kill_at_first_update)
    assert not hasattr(model, "fit_")  # no model from missing partitions
    client.wait_for_workers(2, timeout=60)


@pytest.mark.parametrize("rank", [None, 16])
def test_surprise_cross_validate_with_dask_backend(client, ratings, rank):
    from surprise import Dataset, Reader
    from surprise.model_selection import KFold, cross_validate

    data = Dataset.load_from_df(ratings, Reader(rating_scale=(1, 5)))
    out = {}
    for backend in ("threads", "dask"):
        algo = LinRFMAlgo(n_updates=2, rank=rank, backend=backend)
        with client.as_current():
            res = cross_validate(algo, data, ["rmse"], cv=KFold(3, random_state=0), n_jobs=1)
        out[backend] = res["test_rmse"]
    assert np.allclose(out["dask"], out["threads"], rtol=RTOL)


@pytest.mark.parametrize("cls", [LinRFM, KernelRFM], ids=lambda c: c.__name__)
def test_no_client_starts_and_closes_a_local_cluster(ratings, cls):
    with pytest.raises(ValueError):
        distributed.get_client()  # no client is current outside the fixture's context
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    model = cls(n_updates=1, rank=None, backend="dask").fit(ratings)
    assert model.fit_.A.nnz == len(ratings)
    deadline = time.time() + 30
    while time.time() < deadline:
        extra = {p.pid for p in me.children(recursive=True)} - before
        if not extra:
            break
        time.sleep(0.2)
    assert not extra, f"worker processes left running: {extra}"
    with pytest.raises(ValueError):
        distributed.get_client()


def test_backend_is_checked_at_fit(ratings):
    with pytest.raises(InvalidParameterError, match="backend"):
        LinRFM(backend="spark").fit(ratings)


def test_both_orientations_are_refused_before_any_cluster(ratings):
    from surprise import Dataset, Reader

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    trainset = Dataset.load_from_df(ratings, Reader(rating_scale=(1, 5))).build_full_trainset()
    with pytest.raises(NotImplementedError, match="orient='auto'"):
        KernelRFMAlgo(orient="both", backend="dask").fit(trainset)
    assert {p.pid for p in me.children(recursive=True)} <= before


@pytest.mark.parametrize("rank", [None, 16], ids=["dense", "factored"])
def test_kernel_step_same_model_as_threads_backend(client, ratings, rank):
    # the kernel step runs the same code on both backends: the co-rating signal summed over
    # the blocks, the step's kernel broadcast, its AGOP from the blocks' shares
    threads = KernelRFM(rank=rank).fit(ratings)
    with client.as_current():
        dask = KernelRFM(rank=rank, backend="dask").fit(ratings)
    u, i = _pairs(ratings)
    assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < 1e-4
    assert [h["stage"] for h in dask.history_] == [h["stage"] for h in threads.history_]
    assert type(dask.fit_.kernel) is type(threads.fit_.kernel)


@pytest.mark.slow
def test_ml100k_kernel_step_same_predictions(client, movielens_home):
    """float32 with the default CG tolerance: 1e-4 relative (measured 7.7e-5); float64 with
    direct solves: 1e-8 (measured 8.9e-15). (float64 at the default tolerance differs by up to
    3.7e-6: a row whose CG stops one step apart on the two backends.)"""
    df = load_movielens("ml-100k", movielens_home, download=False, progress=False)
    u, i = _pairs(df)
    for params, bound in (({}, 1e-4), ({"dtype": "float64", "solve_tol": None}, 1e-8)):
        threads = KernelRFM(**params).fit(df)
        with client.as_current():
            dask = KernelRFM(**params, backend="dask").fit(df)
        assert _relative_gap(dask.predict(u, i), threads.predict(u, i)) < bound, params


@pytest.mark.parametrize("rank", [None, 16], ids=["dense", "factored"])
def test_worker_killed_during_the_kernel_step_recovers(client, ratings, rank):
    """A worker dies after the step's first row fit, before its first AGOP update: the step is
    redone from what the driver holds (the warm starts too), the same model as without it."""
    client.wait_for_workers(2, timeout=60)
    ddf = dd.from_pandas(ratings, npartitions=4)

    def kill(it, rec):
        if it == 2:  # n_updates=2: iterations 0 and 1 are linear, 2 the step's first fit
            _kill_workers(client, 1)

    with client.as_current():
        model = KernelRFM(rank=rank, backend="dask").fit(ddf, callback=kill)
    client.wait_for_workers(2, timeout=60)
    threads = KernelRFM(rank=rank).fit(ratings)
    u, i = _pairs(ratings)
    assert _relative_gap(model.predict(u, i), threads.predict(u, i)) < 1e-4


def test_surprise_cross_validate_kernel_rfm_with_dask_backend(client, ratings):
    from surprise import Dataset, Reader
    from surprise.model_selection import KFold, cross_validate

    data = Dataset.load_from_df(ratings, Reader(rating_scale=(1, 5)))
    out = {}
    for backend in ("threads", "dask"):
        algo = KernelRFMAlgo(n_kernel_updates=1, backend=backend)
        with client.as_current():
            res = cross_validate(algo, data, ["rmse"], cv=KFold(3, random_state=0), n_jobs=1)
        out[backend] = res["test_rmse"]
    assert np.allclose(out["dask"], out["threads"], rtol=1e-5)


def test_harness_backend_flag_sets_dask():
    from evaluation.movielens.cli import _use_dask
    from evaluation.movielens.options import parse_args
    from evaluation.movielens.specs import algorithm_params

    assert parse_args(["--backend", "dask"]).backend == "dask"
    assert parse_args([]).backend == "threads"
    params = algorithm_params("linrfm", False, {"linrfm": {"rank": 64}})
    note = _use_dask("linrfm", params)
    # any rank: both kernel forms fit on Dask
    assert params == {"rank": 64, "backend": "dask"}
    assert "backend='dask'" in note
    # kernel RFM runs there too, the same model
    params = algorithm_params("kernel-rfm", False, {})
    assert "backend='dask'" in _use_dask("kernel-rfm", params)
    assert params["backend"] == "dask"
