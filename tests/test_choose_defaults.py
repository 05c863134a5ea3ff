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
        ("linrfm", ["orient", "power", "lam", "reg_user", "reg_item", "n_iter"]),
        ("irls", ["orient", "p", "lam", "reg_user", "reg_item", "n_iter"]),
        ("als", ["n_factors", "reg", "reg_bias", "n_epochs"]),
    ],
)
def test_each_family_has_its_own_columns(key, columns):
    family = FAMILIES[key]
    df = make_ratings(80, 50, 2000, random_state=0)
    args = argparse.Namespace(quick=True, folds=1, n_iter=1)
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
        "kernel_lam=3.0",
        "implicit=2.0",
        "kernel_updates=3",
        "orient='items'",
        "python -m evaluation.explore_kernel_rfm",
        "folds 0/1",
        "section 9",
    ):
        assert needle in KERNEL_STEP_TEXT, needle
    # the defaults lie inside the grid --kernel-step reruns
    assert all(KERNEL_RFM[k] in v for k, v in KERNEL_STEP_GRID.items())
    df = make_ratings(80, 50, 2000, random_state=0)
    rows = kernel_step_rows("toy", df, quick=True)
    assert len(rows) == 1 and rows[0]["form"] == "dense"
    assert set(KERNEL_STEP_GRID) <= set(rows[0]) and 0.3 < rows[0]["valid_rmse"] < 2.0
