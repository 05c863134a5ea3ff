"""The loaders on the real GroupLens files in ../shared/movielens (skipped when absent).

Read-only: nothing is written into the shared folder (the ml-100k folds are read in place).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rfm_recsys.datasets import (
    DatasetWarning,
    load_movielens,
    load_movielens_items,
    ml100k_official_folds,
    to_csr,
    to_surprise,
    verify_file,
)

pytestmark = pytest.mark.slow  # the project's marker for tests on real MovieLens files

UDATA_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"


@pytest.fixture(autouse=True)
def _counts_must_match() -> Iterator[None]:
    # A DatasetWarning means the parse disagrees with the official counts: fail on it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        yield


@pytest.fixture(scope="module")
def latest_small_zip(movielens_home: Path) -> Path:
    z = movielens_home / "ml-latest-small.zip"
    if not z.is_file():
        pytest.skip(f"{z} not found: put the official ml-latest-small.zip in {movielens_home}")
    return z


def test_ml100k_exact_counts_and_dtypes(movielens_home: Path, ml100k_dir: Path) -> None:
    df = load_movielens("ml-100k", movielens_home, download=False)
    assert len(df) == 100_000
    assert df.user_id.nunique() == 943 and df.item_id.nunique() == 1_682
    assert df.user_id.min() == 1 and df.user_id.max() == 943
    assert df.item_id.min() == 1 and df.item_id.max() == 1_682
    assert [str(t) for t in df.dtypes] == ["int32", "int32", "float32", "int64"]
    assert sorted(np.unique(df.rating)) == [1, 2, 3, 4, 5]
    # first line of u.data, in file order
    assert df.iloc[0].tolist() == [196, 242, 3.0, 881250949]
    # the copy parsed is the verified one
    assert hashlib.sha256((ml100k_dir / "u.data").read_bytes()).hexdigest() == UDATA_SHA256


def test_ml100k_folder_given_directly(ml100k_dir: Path) -> None:
    assert len(load_movielens("ml-100k", ml100k_dir, download=False)) == 100_000


def test_ml100k_items(movielens_home: Path) -> None:
    items = load_movielens_items("ml-100k", movielens_home, download=False)
    assert len(items) == 1_682
    toy = items.set_index("item_id").loc[1]
    assert toy.title == "Toy Story (1995)" and toy.year == 1995
    assert toy.genres == "Animation|Children's|Comedy"
    assert items.year.notna().sum() >= 1_680
    # latin-1 titles decode to real accented letters, not mojibake
    assert items.title.str.contains("é").any()
    assert not items.title.str.contains("Ã").any()


def test_ml100k_official_u_folds(movielens_home: Path) -> None:
    from surprise.model_selection import PredefinedKFold

    full = load_movielens("ml-100k", movielens_home, download=False)
    all_pairs = set(zip(full.user_id.astype(str), full.item_id.astype(str), strict=True))
    data, folds = ml100k_official_folds("u", movielens_home, download=False)
    assert [Path(t).name for _, t in folds] == [f"u{k}.test" for k in range(1, 6)]
    assert all(Path(p).parent.name == "ml-100k" for pair in folds for p in pair)  # read in place
    seen: set[tuple[str, str]] = set()
    for trainset, testset in PredefinedKFold().split(data):
        assert trainset.n_ratings == 80_000 and len(testset) == 20_000
        test_pairs = {(u, i) for u, i, _ in testset}
        assert not test_pairs & seen  # the five test sets are disjoint ...
        seen |= test_pairs
        train_pairs = {
            (trainset.to_raw_uid(u), trainset.to_raw_iid(i)) for u, i, _ in trainset.all_ratings()
        }
        assert not train_pairs & test_pairs
    assert seen == all_pairs  # ... and cover u.data


def test_ml100k_ua_ub_have_ten_test_ratings_per_user(movielens_home: Path) -> None:
    from surprise.model_selection import PredefinedKFold

    data, folds = ml100k_official_folds("uab", movielens_home, download=False)
    for trainset, testset in PredefinedKFold().split(data):
        assert len(testset) == 9_430 and trainset.n_ratings == 90_570
        per_user = np.unique([u for u, _, _ in testset], return_counts=True)[1]
        assert (per_user == 10).all()


def test_ml100k_to_surprise(movielens_home: Path) -> None:
    df = load_movielens("ml-100k", movielens_home, download=False)
    ts = to_surprise(df).build_full_trainset()
    assert ts.n_ratings == 100_000 and ts.n_users == 943 and ts.n_items == 1_682
    assert ts.rating_scale == (1.0, 5.0)


def test_latest_small_from_the_unopened_zip(movielens_home: Path, latest_small_zip: Path) -> None:
    df = load_movielens("ml-latest-small", movielens_home, download=False, verify=True)
    assert len(df) == 100_836
    assert df.user_id.nunique() == 610 and df.item_id.nunique() == 9_724
    assert set(np.unique(df.rating)) == set(np.arange(0.5, 5.01, 0.5))
    assert df.attrs["rating_scale"] == (0.5, 5.0)
    mat, users, items = to_csr(df)
    assert mat.shape == (610, 9_724) and mat.nnz == 100_836
    row = df.iloc[123]
    assert (
        mat[np.searchsorted(users, row.user_id), np.searchsorted(items, row.item_id)] == row.rating
    )


def test_latest_small_items(movielens_home: Path, latest_small_zip: Path) -> None:
    items = load_movielens_items("ml-latest-small", movielens_home, download=False)
    assert len(items) == 9_742
    toy = items.set_index("item_id").loc[1]
    assert toy.title == "Toy Story (1995)" and toy.year == 1995
    assert toy.genres == "Adventure|Animation|Children|Comedy|Fantasy"
    assert (items.genres == "").sum() > 0  # "(no genres listed)" -> ""
    assert items.year.notna().mean() > 0.99


def test_latest_small_zip_matches_the_published_checksum(latest_small_zip: Path) -> None:
    verify_file("ml-latest-small", latest_small_zip)
