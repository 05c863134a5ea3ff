"""The evaluation harness end to end on a small synthetic data set, and its pieces."""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest

from evaluation import movielens as harness
from evaluation.movielens.report import CSV_COLUMNS, summarise

ALL = list(harness.ALGORITHMS)
LABELS = [harness.ALGORITHMS[k].label for k in ALL]
TOPN = [k for k in ALL if harness.ALGORITHMS[k].kind == "topn"]
TOPN_LABELS = [harness.ALGORITHMS[k].label for k in TOPN]


def _strict_json(path):
    def no_nan(x):
        raise ValueError(f"non-standard JSON constant {x}")

    return json.loads(path.read_text(), parse_constant=no_nan)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """All algorithms, 2 folds, top-N and curves, every fit in a fresh worker process."""
    out = tmp_path_factory.mktemp("results")
    argv = [
        "--dataset", "synthetic", "--synthetic-shape", "120,80,3000", "--folds", "2",
        "--algorithms", ",".join(ALL), "--ranking", "--quick", "--curve-iters", "2",
        "--results-dir", str(out), "--run-id", "e2e", "--no-progress", "--seed", "3",
    ]  # fmt: skip
    code = harness.main(argv)
    return code, out / "synthetic" / "e2e"


def test_end_to_end_files_exist_and_parse(run):
    code, d = run
    assert code == 0
    for name in (
        "results.csv",
        "results.json",
        "report.md",
        "rmse_vs_fit_time.png",
        "rmse_per_iteration.png",
    ):
        assert (d / name).is_file(), name
    for png in d.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(d / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert sorted((r["algorithm"], r["fold"]) for r in rows) == sorted(
        (k, str(f)) for k in ALL for f in (1, 2)
    )
    assert not any(r["error"] for r in rows)
    for r in rows:
        assert float(r["fit_seconds"]) >= 0 and float(r["peak_rss_mb"]) >= 0
        assert 0 <= float(r["ndcg@10"]) <= 1 and 0 <= float(r["precision@10"]) <= 1
        if r["algorithm"] in TOPN:
            assert r["rmse"] == ""  # implicit feedback: top-N table only
        else:
            assert 0.3 < float(r["rmse"]) < 1.5 and float(r["mae"]) < float(r["rmse"])
            assert float(r["test_seconds"]) >= 0
    # identical folds for every algorithm
    for f in ("1", "2"):
        sizes = {(r["n_train"], r["n_test"]) for r in rows if r["fold"] == f}
        assert len(sizes) == 1
    assert sum(int(r["n_test"]) for r in rows if r["algorithm"] == "svd") == 3000

    res = _strict_json(d / "results.json")
    # the recorded command reruns the run: the data-home variable, when set, is part of it
    assert "python -m evaluation.movielens --dataset synthetic" in res["command"]
    assert {s["label"] for s in res["summary"]} == set(LABELS)
    for key in ("cpu", "logical_cores", "ram_gib", "python"):
        assert res["machine"][key]
    assert res["versions"]["scikit-surprise"] and res["versions"]["implicit"]
    # the per-iteration curves are lin-RFM's (and IRLS-p's), not kernel RFM's
    assert set(res["speed"]["algorithms"]) == {"lin-RFM", "IRLS-p"}
    assert {r["blas_threads"] for r in res["rows"]} == {
        1
    }  # --blas-threads defaults to 1 in every worker
    assert not any(r.get("curve") for r in res["rows"] if r["algorithm"] == "kernel-rfm")
    curves = [r["curve"] for r in res["rows"] if r["algorithm"] in ("linrfm", "irls")]
    assert len(curves) == 4 and all(
        len(c["rmse"]) == max(3, c["final_iteration"] + 1) for c in curves
    )
    # the curve's point at the model's own iteration count is the model in the table
    for r in res["rows"]:
        if r.get("curve"):
            c = r["curve"]
            assert c["rmse"][c["iteration"].index(c["final_iteration"])] == pytest.approx(
                r["rmse"], abs=1e-9
            )
    assert all(np.all(np.diff(c["seconds"]) > 0) for c in curves)

    report = (d / "report.md").read_text()
    rating_part = report.split("## Top-N")[0]
    for label in LABELS:
        assert f"| {label} |" in report
        if label not in TOPN_LABELS:
            assert f"| {label} |" in rating_part
    for label in TOPN_LABELS:
        assert f"| {label} |" not in rating_part
    for needle in (
        "## Machine",
        "## Package versions",
        "scikit-surprise",
        "## Command",
        "## Time to reach",
    ):
        assert needle in report


def test_summary_mean_and_std():
    rows = [
        {"algorithm": "a", "label": "A", "rmse": 1.0, "fit_seconds": 2.0},
        {"algorithm": "a", "label": "A", "rmse": 3.0, "fit_seconds": 4.0},
        {"algorithm": "b", "label": "B", "rmse": float("nan"), "ndcg@10": 0.5},
    ]
    s = summarise(rows, ["b", "a"])
    assert [x["algorithm"] for x in s] == ["b", "a"]
    assert s[1]["rmse_mean"] == 2.0 and s[1]["rmse_std"] == pytest.approx(math.sqrt(2))
    assert (
        math.isnan(s[0]["rmse_mean"]) and s[0]["ndcg@10_mean"] == 0.5 and s[0]["ndcg@10_std"] == 0.0
    )


def test_in_process_tune_holdout(tmp_path, capsys):
    argv = [
        "--dataset", "synthetic", "--synthetic-shape", "100,70,2500", "--folds", "holdout",
        "--algorithms", "linrfm,svd", "--tune", "--quick", "--curve-iters", "0", "--in-process",
        "--results-dir", str(tmp_path), "--run-id", "t", "--no-plots",
    ]  # fmt: skip
    assert harness.main(argv) == 0
    res = _strict_json(tmp_path / "synthetic" / "t" / "results.json")
    assert "90/10" in res["protocol"]["folds"]
    for r in res["rows"]:
        grid = r["tune"]["grid"]
        assert len(grid) == 2
        best = min(grid, key=lambda g: g["valid_rmse"])
        assert all(r["params"][k] == v for k, v in best["params"].items())
    out = capsys.readouterr().out
    assert "lin-RFM" in out and "SVD" in out and "RMSE" in out


def test_topn_models_are_tuned_on_validation_precision_with_one_budget(tmp_path):
    grids = [harness.ALGORITHMS[k].grid for k in TOPN]
    sizes = {int(np.prod([len(v) for v in g.values()])) for g in grids}
    assert len(sizes) == 1, sizes  # the same number of settings for every top-N model
    argv = [
        "--dataset", "synthetic", "--synthetic-shape", "100,70,2500", "--folds", "holdout",
        "--algorithms", ",".join(TOPN), "--ranking", "--tune", "--quick", "--in-process",
        "--results-dir", str(tmp_path), "--run-id", "t", "--no-plots",
    ]  # fmt: skip
    assert harness.main(argv) == 0
    res = _strict_json(tmp_path / "synthetic" / "t" / "results.json")
    assert sorted(r["algorithm"] for r in res["rows"]) == sorted(TOPN)
    for r in res["rows"]:
        tune = r["tune"]
        assert tune["criterion"] == "validation precision@10" and len(tune["grid"]) == 2
        best = max(tune["grid"], key=lambda g: g["valid_precision@10"])
        assert all(r["params"][k] == v for k, v in best["params"].items())
        assert 0 <= r["precision@10"] <= 1


def test_validation_split_is_cut_from_the_training_fold():
    from surprise.model_selection import train_test_split

    from rfm_recsys.datasets import make_ratings, to_surprise

    tr, te = train_test_split(
        to_surprise(make_ratings(60, 40, 1200, random_state=0)), test_size=0.2, random_state=0
    )
    vtr, vte = harness.validation_split(tr, seed=1)
    train_pairs = {(tr.to_raw_uid(u), tr.to_raw_iid(i), r) for u, i, r in tr.all_ratings()}
    vtrain_pairs = {(vtr.to_raw_uid(u), vtr.to_raw_iid(i), r) for u, i, r in vtr.all_ratings()}
    vtest_pairs = set(vte)
    assert vtrain_pairs | vtest_pairs == train_pairs and not vtrain_pairs & vtest_pairs
    assert len(vtest_pairs) == pytest.approx(0.1 * len(train_pairs), abs=1)
    assert not {(u, i) for u, i, _ in vtest_pairs} & {(u, i) for u, i, _ in te}
    # the ratings' timestamps go along, and the split is the one made without them
    from rfm_recsys.datasets.timestamps import timestamps_of_testset, timestamps_of_trainset

    df = make_ratings(60, 40, 1200, random_state=0)
    times = {(u, i): float(t) for u, i, t in zip(df.user_id, df.item_id, df.timestamp)}
    assert list(timestamps_of_testset(vte)) == [times[(u, i)] for u, i, _ in vte]
    assert timestamps_of_trainset(vtr).shape == (vtr.n_ratings,)
    tr0, _ = train_test_split(
        to_surprise(df.drop(columns="timestamp")), test_size=0.2, random_state=0
    )
    vtr0, vte0 = harness.validation_split(tr0, seed=1)
    assert list(vte0) == list(vte) and timestamps_of_testset(vte0) is None
    assert list(vtr0.all_ratings()) == list(vtr.all_ratings())


def test_peak_rss_sees_c_allocations():
    with harness.PeakRSS() as m:
        a = np.ones(80 * 2**20 // 8)  # 80 MiB allocated and touched by numpy's C code
        # held long enough for the sampler thread to run (np.ones keeps the GIL while it fills,
        # and ru_maxrss of this long-lived pytest process may already be higher)
        time.sleep(0.05)
        del a
    assert m.delta > 60 * 2**20


def test_time_to_final():
    curve = {
        "iteration": [0, 1, 2, 3],
        "rmse": [1.0, 0.95, 0.905, 0.9],
        "seconds": [0.1, 0.2, 0.3, 0.4],
    }
    assert harness.time_to_final(curve) == (0.3, 2, 0.9)
    assert harness.time_to_final(curve, final_iteration=1) == (0.2, 1, 0.95)


def test_help_explains_every_option():
    text = harness.build_parser().format_help()
    for opt in (
        "--dataset",
        "--algorithms",
        "--folds",
        "--n-jobs",
        "--data-home",
        "--seed",
        "--quick",
        "--tune",
        "--ranking",
        "--ratings-csv",
        "--curve-iters",
        "--param",
    ):
        assert opt in text


def test_algorithm_selection_and_overrides():
    keys, notes = harness.resolve_algorithms(None, 1_000_000, ranking=False, svdpp=False)
    assert "svdpp" not in keys and "implicit-als" not in keys and notes
    keys, _ = harness.resolve_algorithms(None, 100_000, ranking=True, svdpp=False)
    assert keys == [
        "linrfm", "kernel-rfm", "bmf10", "bmf32", "bsvdpp", "irls", "als", "svd", "svdpp",
        "baseline", *TOPN,
    ]  # fmt: skip
    assert harness.ALGORITHMS["linrfm"].label == "lin-RFM"
    assert harness.ALGORITHMS["kernel-rfm"].label == "kernel RFM"
    assert "plain-linrfm" not in harness.ALGORITHMS
    for alias, key in [
        ("plain-linrfm", "linrfm"),
        ("plain", "linrfm"),
        ("plain-rfm", "linrfm"),
        ("krfm", "kernel-rfm"),
        ("kernelrfm", "kernel-rfm"),
    ]:
        assert harness.resolve_algorithms(alias, 10, False, False)[0] == [key]
    assert TOPN == ["implicit-linrfm", "ease", "implicit-als"]
    keys, _ = harness.resolve_algorithms("SVD++, lin-rfm", 10**7, ranking=False, svdpp=False)
    assert keys == ["linrfm", "svdpp"]
    with pytest.raises(SystemExit, match="unknown algorithm"):
        harness.resolve_algorithms("nope", 10, False, False)
    assert harness.parse_param_overrides(
        ["linrfm.ridge=5", "svd++.n_factors=7", "plain-linrfm.rank=None"]
    ) == {
        "linrfm": {"ridge": 5, "rank": None},
        "svdpp": {"n_factors": 7},
    }
    # a name of an earlier release is refused with the one that replaced it
    for item, new in [
        ("linrfm.lam=5", "ridge"),
        ("irls.n_iter=3", "n_updates"),
        ("bmf10.n_iter=100", "n_sweeps"),
        ("als.n_factors=100", "rank"),
        ("kernel-rfm.kernel_lam=2", "kernel_ridge"),
    ]:
        with pytest.raises(SystemExit, match=f"called {new} now"):
            harness.parse_param_overrides([item])


def test_data_home_from_argument_and_environment(movielens_home, monkeypatch, tmp_path):
    monkeypatch.setenv("RFM_RECSYS_DATA", str(movielens_home))
    label, data, n, scale, info = harness.load_data(harness.parse_args(["--no-download"]))
    assert (label, n, scale) == ("ml-100k", 100_000, (1.0, 5.0))
    assert info["data_home"] == str(movielens_home)
    monkeypatch.setenv("RFM_RECSYS_DATA", str(tmp_path))  # the argument wins over the variable
    args = harness.parse_args(
        ["--dataset", "ml-latest-small", "--data-home", str(movielens_home), "--no-download"]
    )
    label, data, n, scale, info = harness.load_data(args)
    assert (label, n, scale) == ("ml-latest-small", 100_836, (0.5, 5.0))
    assert harness.resolve_data_home(None) == tmp_path
    monkeypatch.delenv("RFM_RECSYS_DATA")
    assert harness.resolve_data_home(None) == harness.REPO_ROOT / "datasets"


def test_ratings_csv(tmp_path):
    from rfm_recsys.datasets import make_ratings

    df = make_ratings(50, 30, 800, random_state=2).rename(
        columns={"user_id": "userId", "item_id": "movieId"}
    )
    path = tmp_path / "my_ratings.csv"
    df.to_csv(path, index=False)
    argv = [
        "--ratings-csv",
        str(path),
        "--algorithms",
        "baseline,als",
        "--quick",
        "--in-process",
        "--no-plots",
        "--no-progress",
        "--results-dir",
        str(tmp_path),
        "--run-id",
        "csv",
    ]
    assert harness.main(argv) == 0
    res = _strict_json(tmp_path / "my_ratings" / "csv" / "results.json")
    assert "800 ratings" in res["protocol"]["dataset"] and len(res["rows"]) == 4


# ---------------------------------------------------------------------------- large sets


def _args(**kw):
    import argparse

    return argparse.Namespace(**{"svdpp": False, **kw})


def test_skip_rules_name_the_reason(monkeypatch):
    import rfm_recsys.core.memory as memory

    # ML-25M-shaped training fold: the dense kernel needs tens of GiB, with eigh even more
    shape = harness.DataShape(162_541, 59_047, 22_500_086)
    monkeypatch.setattr(memory, "available_memory", lambda: 20 * 2**30)
    keys = ["linrfm", "kernel-rfm", "irls", "als", "svd", "svdpp", "baseline"]
    params = {k: {} for k in keys}
    params["linrfm"] = params["kernel-rfm"] = {"rank": None}  # the dense kernel
    reasons = harness.skip_reasons(keys, params, shape, _args())
    assert set(reasons) == {"linrfm", "kernel-rfm", "irls", "svdpp"}
    assert "59,047 x 59,047 kernel (with eigh)" in reasons["irls"]
    for key in ("linrfm", "kernel-rfm"):
        assert "without eigh" in reasons[key] and "20.0 GiB available" in reasons[key]
    assert "hours" in reasons["svdpp"] and "--svdpp" in reasons["svdpp"]
    assert "svdpp" not in harness.skip_reasons(keys, params, shape, _args(svdpp=True))
    # a factored kernel of fixed rank fits where the dense one does not; a rank the model
    # chooses itself (the default, "auto") is left to the model's own up-front check
    for rank in (128, "auto"):
        params["linrfm"] = params["kernel-rfm"] = {"rank": rank}
        assert not {"linrfm", "kernel-rfm"} & set(
            harness.skip_reasons(keys, params, shape, _args())
        )
    params["linrfm"] = params["kernel-rfm"] = {}
    assert not {"linrfm", "kernel-rfm"} & set(harness.skip_reasons(keys, params, shape, _args()))
    # a small set: nothing is skipped
    small = harness.DataShape(943, 1682, 80_000)
    assert harness.skip_reasons(keys, params, small, _args()) == {}
    # on the Dask backend both run (the kernel step runs there too)
    assert harness.skip_reasons(keys, params, small, _args(backend="dask")) == {}


def test_myfm_skip_rules(monkeypatch):
    import importlib.util

    keys = ["bmf10", "bsvdpp"]
    params = {k: {} for k in keys}
    ml1m = harness.DataShape(6_040, 3_706, 800_167)
    ml10m = harness.DataShape(69_878, 10_677, 9_000_048)
    if importlib.util.find_spec("myfm") is not None:
        assert harness.skip_reasons(keys, params, ml1m, _args()) == {}
        reasons = harness.skip_reasons(keys, params, ml10m, _args())
        assert set(reasons) == {"bmf10", "bsvdpp"}
        assert "200 sweeps" in reasons["bsvdpp"] and "--bayesian-svdpp" in reasons["bsvdpp"]
        lifted = _args(bayesian_svdpp=True, bayesian_mf=True)
        assert harness.skip_reasons(keys, params, ml10m, lifted) == {}
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "myfm" else real(name, *a)
    )
    reasons = harness.skip_reasons(keys, params, ml1m, _args())
    assert all("myfm is not installed" in reasons[k] for k in keys)


def test_large_sets_default_to_one_holdout_and_no_curves():
    from evaluation.movielens.options import settle_defaults

    args = harness.parse_args(["--dataset", "ml-25m"])
    assert args.folds is None and args.curve_iters is None
    notes = settle_defaults(args, 25_000_095)
    assert (args.folds, args.curve_iters) == ("holdout", 0) and len(notes) == 2
    args = harness.parse_args(["--quick"])
    assert settle_defaults(args, 100_000) == [] and (args.folds, args.curve_iters) == ("2", 3)
    args = harness.parse_args(["--dataset", "ml-25m", "--folds", "3", "--curve-iters", "2"])
    settle_defaults(args, 25_000_095)
    assert (args.folds, args.curve_iters) == ("3", 2)


def test_release_shapes_come_from_the_registry():
    s = harness.release_shape("ml-25m")
    assert (s["n_users"], s["n_items"], s["n_ratings"]) == (162_541, 59_047, 25_000_095)
    assert s["rating_scale"] == (0.5, 5.0) and s["rating_step"] == 0.5
    s = harness.release_shape("ml-1m", 0.01)  # density kept: users and items by sqrt(0.01)
    assert (s["n_users"], s["n_items"], s["n_ratings"]) == (604, 371, 10_002)
    assert s["rating_scale"] == (1.0, 5.0) and s["rating_step"] == 1.0
    assert harness.release_shape("ml-32m")["n_items"] == 87_585  # movies: rated count unpublished


def test_synthetic_release_runs_and_reports_what_it_skipped(tmp_path, monkeypatch):
    import rfm_recsys.core.memory as memory

    # pretend the eigh path does not fit, so IRLS-p is skipped while lin-RFM runs
    def estimate(n_rows, n_cols, nnz, dtype=None, needs_eigh=False, rank=None):
        return 10**15 if needs_eigh else 1

    monkeypatch.setattr(memory, "estimate_memory", estimate)
    argv = [
        "--synthetic", "ml-1m", "--synthetic-scale", "0.002", "--folds", "holdout",
        "--algorithms", "linrfm,irls,svd,baseline", "--quick", "--curve-iters", "0",
        "--in-process", "--no-plots", "--no-progress", "--results-dir", str(tmp_path),
        "--run-id", "s",
    ]  # fmt: skip
    assert harness.main(argv) == 0
    d = tmp_path / "synthetic-ml-1m" / "s"
    res = _strict_json(d / "results.json")
    assert {r["algorithm"] for r in res["rows"]} == {"linrfm", "svd", "baseline"}
    assert not any(r.get("error") for r in res["rows"])
    assert list(res["skipped"]) == ["IRLS-p"] and "GiB" in res["skipped"]["IRLS-p"]
    assert "2,000 ratings, rating scale 1-5" in res["protocol"]["dataset"]
    assert (
        "make_ratings(270, 166, 2000, rating_scale=(1.0, 5.0), rating_step=1.0"
        in (res["protocol"]["data_source"])
    )
    report = (d / "report.md").read_text()
    assert "## Skipped" in report and "- IRLS-p: needs about" in report
    assert "python -m evaluation.movielens --synthetic ml-1m" in res["command"]


def test_backend_dask_fits_both_rfm_models_there():
    from evaluation.movielens.cli import _use_dask
    from evaluation.movielens.specs import algorithm_params

    params = algorithm_params("linrfm", False, {"linrfm": {"rank": 64}})
    note = _use_dask("linrfm", params)
    assert params == {"rank": 64, "backend": "dask"} and "backend='dask'" in note
    params = algorithm_params("kernel-rfm", False, {})
    _use_dask("kernel-rfm", params)
    assert params["backend"] == "dask"
    with pytest.raises(ValueError, match="does not fit on the Dask backend"):
        _use_dask("als", {})
