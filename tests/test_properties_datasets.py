"""Property tests: damaged dataset zips and malformed rating frames.

The zips are built here from synthetic ratings in the official layouts (never real MovieLens
bytes). A damaged copy either loads exactly what was written (the damage hit bytes that carry no
content, e.g. a timestamp) or raises one of the documented DatasetError subclasses.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_datasets_files import build_zip, entry_for, release_files, unpack

from rfm_recsys.datasets import (
    DatasetError,
    DatasetWarning,
    RatingsFrameError,
    load_movielens,
    load_movielens_items,
    make_ratings,
    to_csr,
    to_surprise,
)

PROPS = settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

FAMILIES = ["ml-100k", "ml-1m", "ml-latest-small"]


def _synthetic(name: str):
    scale = (1.0, 5.0) if name != "ml-latest-small" else (0.5, 5.0)
    df = make_ratings(
        15,
        8,
        60,
        rank=2,
        rating_scale=scale,
        rating_step=0.5 if scale[0] < 1 else 1,
        random_state=0,
    )
    files = release_files(name, df)
    return df, files


class _Releases(dict):
    def __repr__(self) -> str:  # keeps hypothesis' failure reports short
        return "<synthetic releases>"


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    out = _Releases()
    for name in FAMILIES:
        home = tmp_path_factory.mktemp(name)
        df, files = _synthetic(name)
        data = build_zip(home / f"{name}.zip", files)
        entry = entry_for(name, df)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DatasetWarning)
            ratings = load_movielens(entry, home, download=False)
            items = load_movielens_items(entry, home, download=False)
        out[name] = (entry, home, data, ratings, items)
        folder = tmp_path_factory.mktemp(f"{name}-folder")
        unpack(folder, files)
        out[name + "/folder"] = (entry, folder, files, ratings, items)
    return out


def _outcome(entry, home: Path, ratings: pd.DataFrame, items: pd.DataFrame) -> str:
    outcomes = []
    for load, expected in ((load_movielens, ratings), (load_movielens_items, items)):
        try:
            got = load(entry, home, download=False, check_counts=False)
        except DatasetError as exc:
            outcomes.append(type(exc).__name__)
            continue
        pd.testing.assert_frame_equal(got, expected)
        outcomes.append("identical")
    return " / ".join(outcomes)


def _damage(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    if draw(st.booleans(), label="truncate"):
        return bytes(buf[: draw(st.integers(0, len(buf) - 1), label="length")])
    for _ in range(draw(st.integers(1, 6), label="bytes changed")):
        buf[draw(st.integers(0, len(buf) - 1), label="position")] = draw(
            st.integers(0, 255), label="value"
        )
    return bytes(buf)


@pytest.mark.parametrize("name", FAMILIES)
@PROPS
@given(data=st.data())
def test_damaged_zip_loads_identically_or_raises_a_dataset_error(releases, name, data):
    entry, home, good, ratings, items = releases[name]
    damaged = _damage(good, data.draw)
    path = home / f"{name}.zip"
    path.write_bytes(damaged)
    try:
        event(_outcome(entry, home, ratings, items))
    finally:
        path.write_bytes(good)


@pytest.mark.parametrize("name", FAMILIES)
@PROPS
@given(data=st.data())
def test_damaged_unpacked_files_load_or_raise_a_dataset_error(releases, name, data):
    # No checksum protects plain files: a damaged line may still parse. Then the result must
    # still be a valid ratings table (dtypes, ids, ratings within the scale).
    entry, home, files, _, _ = releases[name + "/folder"]
    member = data.draw(st.sampled_from(sorted(files)), label="file")
    if not member.endswith((entry.ratings_file, entry.items_file)):
        member = f"{entry.folder}/{entry.ratings_file}"
    path = home / member
    path.write_bytes(_damage(files[member], data.draw))
    try:
        for load in (load_movielens, load_movielens_items):
            try:
                got = load(entry, home, download=False, check_counts=False)
            except DatasetError as exc:
                event(f"{load.__name__}: {type(exc).__name__}")
                continue
            event(f"{load.__name__}: loaded")
            assert got["item_id"].dtype == np.int32
            if load is load_movielens:
                assert got["user_id"].dtype == np.int32 and got["rating"].dtype == np.float32
                lo, hi = entry.rating_scale
                assert got["rating"].between(lo, hi).all()
    finally:
        path.write_bytes(files[member])


# ---------------------------------------------------------------------------------------------
# malformed rating frames

ID_VALUES = st.one_of(
    st.integers(-3, 6),
    st.sampled_from([2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=2),
    st.none(),
    st.booleans(),
)
RATING_VALUES = st.one_of(
    st.floats(0.5, 5.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e39, 0.0, 5]),
    st.text(max_size=2),
    st.none(),
    st.booleans(),
)


@st.composite
def rating_frames(draw):
    """Mostly plausible frames; each column is malformed with probability 1/3."""
    n = draw(st.integers(0, 6), label="rows")

    def column(name, valid, junk, dtype_choices):
        bad = draw(st.sampled_from([False, False, True]), label=f"{name} malformed")
        vals = draw(st.lists(junk if bad else valid, min_size=n, max_size=n), label=name)
        dtype = draw(st.sampled_from(dtype_choices), label=f"{name} dtype")
        try:
            with warnings.catch_warnings():  # 1e300 as float32 becomes inf, as meant
                warnings.simplefilter("ignore", RuntimeWarning)
                return pd.Series(vals, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            return pd.Series(vals, dtype=object)

    ids = st.integers(1, 4)
    cols = {
        "user_id": column("user_id", ids, ID_VALUES, [None, object, "int64", "uint64", "string"]),
        "item_id": column("item_id", ids, ID_VALUES, [None, object, "int32", "float32"]),
        "rating": column(
            "rating", st.floats(0.5, 5.0), RATING_VALUES, [None, object, "float32", "string"]
        ),
    }
    drop = draw(st.sampled_from([None] * 8 + ["user_id", "rating"]), label="dropped column")
    if drop is not None:
        del cols[drop]
    return pd.DataFrame(cols)


@settings(PROPS, max_examples=300)
@given(df=rating_frames(), scale=st.sampled_from([(0.5, 5.0), (0.5, 5.0), (1, 5), (5, 1), None]))
def test_malformed_frames_convert_or_raise_a_documented_error(df, scale):
    try:
        csr = to_csr(df)
    except RatingsFrameError as exc:
        event(f"to_csr: RatingsFrameError ({str(exc)[:25]})")
    else:
        event("to_csr: converted")
        m = csr.matrix
        assert m.shape == (len(csr.user_ids), len(csr.item_ids)) and m.nnz == len(df)
        assert np.isfinite(m.data).all()
        rows = np.searchsorted(csr.user_ids, df["user_id"].to_numpy())
        cols = np.searchsorted(csr.item_ids, df["item_id"].to_numpy())
        expected = df["rating"].to_numpy(np.float64).astype(np.float32)
        np.testing.assert_array_equal(m.toarray()[rows, cols], expected)
    try:
        data = to_surprise(df, scale)
    except RatingsFrameError as exc:
        event(f"to_surprise: RatingsFrameError ({str(exc)[:25]})")
    except ValueError as exc:
        assert "rating_scale" in str(exc)  # missing or invalid scale: a plain ValueError
        event("to_surprise: ValueError (rating_scale)")
    else:
        event("to_surprise: converted")
        assert len(data.raw_ratings) == len(df)
        assert all(np.isfinite(r[2]) for r in data.raw_ratings)
