"""choose_rank: the rank study's learning curves run on the library, on a tiny synthetic set."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from evaluation.choose_rank import (
    LIBRARY_PASSES,
    data_point,
    first_update_passes,
    needed_rank,
    parse_fractions,
    run_study,
    summary_table,
)
from rfm_recsys.core import factored_kernel
from rfm_recsys.datasets import make_ratings


def test_rank_study_on_synthetic_ratings(tmp_path):
    # 400 items: "auto" is factored (more than 256 columns) and rank 512 is the exact case;
    # 200 items: "auto" keeps the dense kernel
    frames = {
        "toy": make_ratings(150, 400, 8000, random_state=0),
        "few": make_ratings(60, 200, 3000, random_state=1),
    }
    out = tmp_path / "curves" / "rank_curves.csv"
    fractions = {"toy": (0.5, 1.0), "few": (1.0,)}
    rows = run_study(frames, fractions, out, ranks=(64, 512), passes=(0, 2), log=lambda s: None)

    saved = pd.read_csv(out)
    assert len(saved) == len(rows) == 3 * (1 + 2 * 2 + 1)
    assert not list(out.parent.glob(".*"))  # the atomic write left no temporary file
    fitted = saved[saved["status"] == "fitted"]
    assert fitted["valid_rmse"].between(0.3, 2.0).all()
    assert (saved.loc[saved["kernel"] == "dense", "minus_dense"] == 0.0).all()
    exact = saved[saved["status"] == "exact"]
    assert set(exact["rank"].astype(int)) == {512} and exact["valid_rmse"].isna().all()
    assert (exact["rank"].astype(int) >= exact["n_items"]).all()

    for name, fracs in fractions.items():
        for fraction in fracs:
            pr = [r for r in rows if (r["dataset"], r["fraction"]) == (name, fraction)]
            pick = next(r["rank"] for r in pr if r["kernel"] == "auto")
            n_rows, n_items = pr[0]["n_rows"], pr[0]["n_items"]
            if n_items <= 256:
                assert pick == "dense"
            else:
                power_of_two = 64 <= pick <= 1024 and pick & (pick - 1) == 0
                assert power_of_two or pick == min(n_rows, n_items), pick
            assert needed_rank(pr) in (64, "exact")

    table = summary_table(rows)
    assert table.count("\n") == 2 + 3 - 1
    assert "toy 50% (75 x " in table and "exact / exact" in table
    assert "gap at 64 (0 / 2 passes)" in table


def test_data_point_subsamples_users_before_splitting():
    df = make_ratings(100, 80, 2000, random_state=0)
    p = data_point("toy", df, 0.25)
    assert p.n_rows == 25 and p.n_items <= 80
    # only the chosen users' ratings, of which fold 0's training part keeps 4/5
    n = p.train[2].size + p.valid[2].size
    assert n < 0.8 * len(df) and max(p.train[0].max(), p.valid[0].max()) < p.n_rows
    assert math.isclose(p.valid[2].size / n, 0.1, abs_tol=0.05)


def test_passes_override_is_restored_and_fractions_parse():
    with first_update_passes(0):
        assert factored_kernel.FIRST_PASSES == 0
    assert factored_kernel.FIRST_PASSES == LIBRARY_PASSES == 2
    assert parse_fractions(["ml-100k=0.5,1"]) == {"ml-100k": (0.5, 1.0)}
    assert list(parse_fractions(None)) == ["ml-latest-small", "ml-100k"]
    with pytest.raises(ValueError):
        parse_fractions(["ml-20m=0.5"])
