"""The top-N defaults script: equal budgets, the choice rule, every model fits and ranks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from model_mixin import block_interactions

from evaluation.choose_topn_defaults import GRIDS, choose, fit_topn_model
from rfm_recsys.ranking import ranking_metrics


def test_every_model_gets_the_same_budget():
    assert len({len(g) for g in GRIDS.values()}) == 1


@pytest.mark.parametrize("key", list(GRIDS))
def test_each_model_fits_and_ranks(key):
    X = block_interactions()
    params = {k: v for k, v in GRIDS[key][0].items()}
    if key == "implicit-als":
        params["iterations"] = 3
    model = fit_topn_model(key, params, X)
    m = ranking_metrics(model, X, X, K=5)  # only the call path: train items are filtered
    assert set(m) >= {"precision", "ndcg"}


def test_choice_is_the_best_mean_and_the_default_is_best_relative():
    rows = []
    # setting a: best on d1, setting b: best on d2 and close on d1 -> b is the default
    for ds, pa, pb in (("d1", 0.30, 0.29), ("d2", 0.10, 0.20)):
        for fold in (0, 1):
            for name, p in (("a", pa), ("b", pb)):
                rows.append(
                    {
                        "dataset": ds,
                        "fold": fold,
                        "model": "implicit-linrfm",
                        "params": json.dumps({"s": name}),
                        "precision": p,
                        "ndcg": p,
                        "fit_s": 0.1,
                    }
                )
    out = choose(pd.DataFrame(rows))
    assert out["tuned"]["implicit-linrfm"] == {"d1": {"s": "a"}, "d2": {"s": "b"}}
    assert out["default"]["implicit-linrfm"] == {"s": "b"}
    assert out["default_relative_precision"] == pytest.approx(np.mean([0.29 / 0.30, 1.0]))


def test_earlier_runs_are_read_in_todays_parameter_names():
    from evaluation.choose_topn_defaults import renamed_params

    old = json.dumps({"alpha": 2.0, "lam": 20.0, "n_iter": 1}, sort_keys=True)
    assert json.loads(renamed_params(old)) == {"alpha": 2.0, "ridge": 20.0, "n_updates": 1}
    assert {"n_updates", "ridge", "alpha"} == set(GRIDS["implicit-linrfm"][0])
    assert set(GRIDS["ease"][0]) == {"ridge"}
