"""choose_defaults: each model family writes its own parameters into columns named after them."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from evaluation.choose_defaults import FAMILIES, rank_settings, validation_rows
from rfm_recsys.datasets import make_ratings


@pytest.mark.parametrize(
    "key, columns",
    [
        ("linrfm", ["orient", "power", "ridge", "bias_ridge", "n_updates"]),
        ("irls", ["orient", "p", "ridge", "bias_ridge", "n_updates"]),
        ("als", ["rank", "ridge", "bias_ridge", "n_sweeps"]),
    ],
)
def test_each_family_has_its_own_columns(key, columns):
    family = FAMILIES[key]
    df = make_ratings(80, 50, 2000, random_state=0)
    args = argparse.Namespace(quick=True, folds=1, n_updates=1)
    rows = validation_rows(family, "toy", df, args)
    res = pd.DataFrame(rows)
    assert list(res.columns) == [
        "dataset",
        "fold",
        *columns,
        "valid_rmse",
        "fit_seconds",
        "run_seconds",
    ]
    settings = list(family.grid(True))
    assert len(res) == len(settings) * len(set(res[columns[-1]]))
    assert res["valid_rmse"].between(0.3, 2.0).all()
    both = pd.concat([res, res.assign(dataset="toy2")])
    ranking = rank_settings(both, columns)
    assert list(ranking.index.names) == columns and ranking["mean_ratio"].iloc[0] == 1.0


def test_kernel_step_defaults_are_stated_and_rerun():
    from evaluation.choose_defaults import KERNEL_STEP_GRID, KERNEL_STEP_TEXT, kernel_step_rows
    from rfm_recsys.config import KERNEL_RFM

    for needle in (
        "bandwidth=0.7",
        "kernel_ridge=3.0",
        "co_rating=2.0",
        "n_kernel_updates=3",
        "orient='items'",
        "KernelRFMAlgo",
        "python -m evaluation.explore_kernel_rfm",
        "folds 0/1",
        "section 9",
    ):
        assert needle in KERNEL_STEP_TEXT, needle
    # the defaults lie inside the grid --kernel-step reruns
    assert all(KERNEL_RFM[k].default in v for k, v in KERNEL_STEP_GRID.items())
    df = make_ratings(80, 50, 2000, random_state=0)
    rows = kernel_step_rows("toy", df, quick=True)
    assert len(rows) == 1 and rows[0]["form"] == "dense"
    assert set(KERNEL_STEP_GRID) <= set(rows[0]) and 0.3 < rows[0]["valid_rmse"] < 2.0


def test_explore_kernel_step_is_the_fit_kernel_rfm_makes():
    from evaluation.explore_kernel_rfm import base_fit, kernel_step_fit, step_of
    from rfm_recsys.fitting import FitSettings, fit_ratings

    df = make_ratings(80, 50, 2000, random_state=0)
    u, i = df["user_id"].to_numpy() - 1, df["item_id"].to_numpy() - 1
    train = (u, i, df["rating"].to_numpy(float))
    setting = {"kernel": "gaussian", "bandwidth": 0.7, "ridge": 3.0, "co_rating": 2.0}
    for rank in (None, 8):
        args = argparse.Namespace(
            n_updates=2, ridge=10.0, orient="items", rank=rank, bias_ridge=2.0
        )
        step = step_of({**setting, "n_updates": 2})
        refit = kernel_step_fit(base_fit(train, 80, 50, args), train, 80, 50, step)
        settings = FitSettings(orient="items", rank=rank, random_state=0, step=step)
        full = fit_ratings(*train, 80, 50, settings)
        assert refit.predict(u, i)[0] == pytest.approx(full.predict(u, i)[0], abs=1e-6)
    # a setting without a kernel is a linear step with no signal and no update
    plain = step_of({})
    assert (plain.kernel, plain.co_rating, plain.n_updates) == ("linear", 0.0, 0)
    with pytest.raises(SystemExit, match="'co_rating' now"):
        step_of({"implicit_weight": 1.0})
    with pytest.raises(SystemExit, match="commit 9881642"):
        step_of({"geometry": "mahalanobis"})
