"""Loaders, bad input and downloads, on small synthetic MovieLens-format files (no internet).

Every zip here is built by the test from synthetic ratings, in the layouts of the official
releases; the download tests serve them from an HTTP server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import socket
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rfm_recsys.datasets.download as dl
from rfm_recsys.datasets import (
    DATASETS,
    ChecksumError,
    CorruptDatasetError,
    DataHomeError,
    DatasetError,
    DatasetNotFoundError,
    DatasetWarning,
    DownloadError,
    MalformedLineError,
    MovieLensDataset,
    UnknownDatasetError,
    download_movielens,
    load_movielens,
    load_movielens_items,
    make_ratings,
    ml100k_official_folds,
    to_csr,
    to_surprise,
    verify_file,
)

# ---------------------------------------------------------------------------------------------
# builders of official-layout files from synthetic ratings


def _ratings(scale: tuple[float, float] = (1, 5), step: float = 1.0, seed: int = 0) -> pd.DataFrame:
    return make_ratings(
        30, 12, 200, rank=3, rating_scale=scale, rating_step=step, random_state=seed
    )


def _fmt_rating(r: float) -> str:
    return f"{r:g}"


def ratings_bytes(df: pd.DataFrame, kind: str) -> bytes:
    """The ratings file of a release family: 'tab' (u.data), 'dat' (::), 'csv' (header)."""
    rows = [
        (str(u), str(i), _fmt_rating(r), str(t))
        for u, i, r, t in zip(df.user_id, df.item_id, df.rating, df.timestamp, strict=True)
    ]
    if kind == "tab":
        return "".join("\t".join(r) + "\n" for r in rows).encode()
    if kind == "dat":
        return "".join("::".join(r) + "\n" for r in rows).encode()
    return (
        "userId,movieId,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows)
    ).encode()


TITLES = {1: "Café Society (1995)", 2: "Star Wars: Episode IV (1977)", 3: "Untitled"}


def items_bytes(n_items: int, kind: str) -> bytes:
    """The movies file: u.item (| and 19 flags, latin-1), movies.dat (::, latin-1), movies.csv."""
    lines = []
    for i in range(1, n_items + 1):
        title = TITLES.get(i, f"Movie {i} ({1980 + i})")
        if kind == "u.item":
            flags = ["0"] * 19
            flags[1 + (i % 3)] = "1"  # Action / Adventure / Animation
            if i == 3:
                flags = ["1"] + ["0"] * 18  # only 'unknown'
            lines.append(f"{i}|{title}|01-Jan-1995||http://example.invalid/{i}|" + "|".join(flags))
        elif kind == "dat":
            lines.append(f"{i}::{title}::{'Comedy|Drama' if i != 3 else '(no genres listed)'}")
        else:
            t = f'"{title}, The"' if i == 2 else title
            lines.append(f"{i},{t},{'Comedy|Drama' if i != 3 else '(no genres listed)'}")
    text = "\n".join(lines) + "\n"
    if kind == "csv":
        return ("movieId,title,genres\n" + text).encode("utf-8")
    return text.encode("latin-1")


U_GENRE = (
    b"unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\n"
    b"Documentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\nMystery|13\n"
    b"Romance|14\nSci-Fi|15\nThriller|16\nWar|17\nWestern|18\n\n"
)


def release_files(name: str, df: pd.DataFrame) -> dict[str, bytes]:
    """Member name -> bytes for a synthetic copy of release ``name``."""
    entry = DATASETS[name]
    n_items = int(df.item_id.max())
    if name == "ml-100k":
        files = {
            "u.data": ratings_bytes(df, "tab"),
            "u.item": items_bytes(n_items, "u.item"),
            "u.genre": U_GENRE,
        }
        files.update(_ml100k_splits(files["u.data"]))
    elif entry.ratings_sep == "::":
        files = {"ratings.dat": ratings_bytes(df, "dat"), "movies.dat": items_bytes(n_items, "dat")}
    else:
        files = {"ratings.csv": ratings_bytes(df, "csv"), "movies.csv": items_bytes(n_items, "csv")}
    return {f"{entry.folder}/{k}": v for k, v in files.items()}


def _ml100k_splits(udata: bytes) -> dict[str, bytes]:
    # The logic of ml-100k's mku.sh: fold k tests the k-th fifth of u.data, trains on the rest.
    lines = udata.splitlines(keepends=True)
    n = len(lines)
    out = {}
    for k in range(1, 6):
        lo, hi = (k - 1) * n // 5, k * n // 5
        out[f"u{k}.test"] = b"".join(lines[lo:hi])
        out[f"u{k}.base"] = b"".join(lines[:lo] + lines[hi:])
    for s in ("ua", "ub"):
        out[f"{s}.test"] = b"".join(lines[: n // 10])
        out[f"{s}.base"] = b"".join(lines[n // 10 :])
    return out


def build_zip(path: Path, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        folders = sorted({m.split("/")[0] + "/" for m in files})
        for f in folders:
            zf.writestr(f, b"")
        for m, data in files.items():
            zf.writestr(m, data)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def unpack(home: Path, files: dict[str, bytes]) -> None:
    for m, data in files.items():
        p = home / m
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def entry_for(
    base: str, df: pd.DataFrame, zip_bytes: bytes | None = None, **changes: object
) -> MovieLensDataset:
    """The official entry, with the synthetic copy's counts and checksums."""
    fields: dict[str, object] = dict(
        n_ratings=len(df),
        n_users=int(df.user_id.nunique()),
        n_items=int(df.item_id.nunique()),
        n_movies=int(df.item_id.max()),
    )
    if zip_bytes is not None:
        fields.update(
            size=len(zip_bytes),
            md5=hashlib.md5(zip_bytes).hexdigest(),
            sha256=hashlib.sha256(zip_bytes).hexdigest(),
        )
    fields.update(changes)
    return DATASETS[base].replace(**fields)


@pytest.fixture
def no_dataset_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        yield


ALL_FAMILIES = ["ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "ml-32m"]

# ---------------------------------------------------------------------------------------------
# loading, both layouts, every format family


@pytest.mark.parametrize("name", ALL_FAMILIES)
@pytest.mark.parametrize("layout", ["zip", "folder"])
def test_loads_every_format_from_zip_and_folder(
    tmp_path: Path, name: str, layout: str, no_dataset_warnings: None
) -> None:
    entry = DATASETS[name]
    df = _ratings(entry.rating_scale, entry.rating_step, seed=len(name))
    files = release_files(name, df)
    if layout == "zip":
        zb = build_zip(tmp_path / f"{name}.zip", files)
        e = entry_for(name, df, zb)
    else:
        unpack(tmp_path, files)
        e = entry_for(name, df)
    got = load_movielens(e, tmp_path, download=False)
    assert list(got.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert got.dtypes.to_dict() == {
        "user_id": np.dtype("int32"),
        "item_id": np.dtype("int32"),
        "rating": np.dtype("float32"),
        "timestamp": np.dtype("int64"),
    }
    pd.testing.assert_frame_equal(got, df, check_like=False)
    assert got.attrs["rating_scale"] == entry.rating_scale
    if layout == "zip":
        verify_file(e, tmp_path / f"{name}.zip")


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-10m", "ml-latest-small"])
def test_items_titles_years_genres_and_encodings(
    tmp_path: Path, name: str, no_dataset_warnings: None
) -> None:
    df = _ratings(DATASETS[name].rating_scale, DATASETS[name].rating_step)
    zb = build_zip(tmp_path / f"{name}.zip", release_files(name, df))
    items = load_movielens_items(entry_for(name, df, zb), tmp_path, download=False)
    assert list(items.columns) == ["item_id", "title", "year", "genres"]
    assert items["item_id"].dtype == np.int32
    assert items["item_id"].tolist() == list(range(1, int(df.item_id.max()) + 1))
    by_id = items.set_index("item_id")
    # latin-1 bytes decoded correctly, ':' inside a '::'-separated title kept
    assert by_id.loc[1, "title"] == "Café Society (1995)"
    assert by_id.loc[2, "title"].startswith("Star Wars: Episode IV (1977)")
    assert by_id.loc[1, "year"] == 1995
    assert pd.isna(by_id.loc[3, "year"])
    assert by_id.loc[3, "genres"] == ""
    if name == "ml-100k":
        assert by_id.loc[1, "genres"] == "Adventure"  # flag index 2 per the test's u.item
        assert by_id.loc[2, "genres"] == "Animation"
    else:
        assert by_id.loc[1, "genres"] == "Comedy|Drama"


def test_ml10m_folder_is_found_under_its_zip_folder_name(
    tmp_path: Path, no_dataset_warnings: None
) -> None:
    # The official ml-10m.zip unpacks to ml-10M100K/, not ml-10m/.
    df = _ratings((0.5, 5), 0.5)
    files = release_files("ml-10m", df)
    assert all(m.startswith("ml-10M100K/") for m in files)
    unpack(tmp_path, files)
    got = load_movielens(entry_for("ml-10m", df), tmp_path, download=False)
    assert len(got) == len(df)
    assert set(np.unique(got.rating)) <= set(np.arange(0.5, 5.01, 0.5))


def test_data_home_may_be_the_folder_or_the_zip_itself(
    tmp_path: Path, no_dataset_warnings: None
) -> None:
    df = _ratings()
    files = release_files("ml-1m", df)
    unpack(tmp_path / "a", files)
    zb = build_zip(tmp_path / "elsewhere.zip", files)
    e = entry_for("ml-1m", df, zb)
    assert len(load_movielens(e, tmp_path / "a" / "ml-1m", download=False)) == len(df)
    assert len(load_movielens(e, tmp_path / "elsewhere.zip", download=False)) == len(df)


def test_env_var_is_the_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_dataset_warnings: None
) -> None:
    df = _ratings()
    unpack(tmp_path, release_files("ml-1m", df))
    monkeypatch.setenv("RFM_RECSYS_DATA", str(tmp_path))
    assert len(load_movielens(entry_for("ml-1m", df), download=False)) == len(df)


def test_copy_without_timestamps_loads(tmp_path: Path) -> None:
    df = _ratings()
    rows = "".join(
        f"{u}::{i}::{r:g}\n" for u, i, r in zip(df.user_id, df.item_id, df.rating, strict=True)
    )
    unpack(tmp_path, {"ml-1m/ratings.dat": rows.encode()})
    got = load_movielens(entry_for("ml-1m", df), tmp_path, download=False)
    assert list(got.columns) == ["user_id", "item_id", "rating"]
    np.testing.assert_array_equal(got.rating.to_numpy(), df.rating.to_numpy())


def test_count_mismatch_warns(tmp_path: Path) -> None:
    df = _ratings()
    unpack(tmp_path, release_files("ml-1m", df))
    with pytest.warns(DatasetWarning, match=r"ratings 200 \(official 1,000,209\).*users"):
        load_movielens("ml-1m", tmp_path, download=False)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownDatasetError) as exc:
        load_movielens("ml-7m", download=False)
    msg = str(exc.value)
    for name in DATASETS:
        assert name in msg
    assert isinstance(exc.value, ValueError)


def test_missing_copy_without_download_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as exc:
        load_movielens("ml-1m", tmp_path, download=False)
    msg = str(exc.value)
    assert str(tmp_path / "ml-1m.zip") in msg
    assert DATASETS["ml-1m"].url in msg


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("7::3::4", "expected 4 fields"),
        ("7::3::4::5::6", "expected 4 fields"),
        ("7::x::4::881250949", "item_id 'x' is not an integer"),
        ("7::3::9::881250949", "rating 9 is outside the scale 1..5"),
        ("7::3::::881250949", "rating '' is not a number"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, problem: str) -> None:
    df = _ratings()
    lines = ratings_bytes(df, "dat").decode().splitlines()
    lines.insert(41, bad_line)  # becomes line 42
    unpack(tmp_path, {"ml-1m/ratings.dat": ("\n".join(lines) + "\n").encode()})
    with pytest.raises(MalformedLineError) as exc:
        load_movielens("ml-1m", tmp_path, download=False)
    err = exc.value
    assert err.line_number == 42
    assert err.path.endswith("ratings.dat")
    assert err.line == bad_line  # shown with the file's own '::'
    assert f"line 42: {problem}" in str(err)
    assert "official zip" in str(err)


def test_malformed_line_in_zipped_csv(tmp_path: Path) -> None:
    df = _ratings((0.5, 5), 0.5)
    files = release_files("ml-latest-small", df)
    member = "ml-latest-small/ratings.csv"
    lines = files[member].decode().splitlines()
    lines[9] = "1,2,3.5,notatime"
    files[member] = ("\n".join(lines) + "\n").encode()
    build_zip(tmp_path / "ml-latest-small.zip", files)
    with pytest.raises(
        MalformedLineError, match=r"ratings\.csv in .*ml-latest-small\.zip, line 10: timestamp"
    ):
        load_movielens("ml-latest-small", tmp_path, download=False)


def test_malformed_movies_line(tmp_path: Path) -> None:
    df = _ratings()
    files = release_files("ml-1m", df)
    lines = files["ml-1m/movies.dat"].decode("latin-1").splitlines()
    lines[4] = "5::Too::Many::Fields"
    files["ml-1m/movies.dat"] = ("\n".join(lines) + "\n").encode("latin-1")
    unpack(tmp_path, files)
    with pytest.raises(MalformedLineError) as exc:
        load_movielens_items("ml-1m", tmp_path, download=False)
    assert exc.value.line_number == 5
    assert "movies.dat" in exc.value.path


def test_truncated_zip_says_delete_and_download_again(tmp_path: Path) -> None:
    df = _ratings()
    data = build_zip(tmp_path / "ml-1m.zip", release_files("ml-1m", df))
    (tmp_path / "ml-1m.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match="truncated or damaged.*download again") as exc:
        load_movielens("ml-1m", tmp_path, download=False)
    assert str(tmp_path / "ml-1m.zip") in str(exc.value)


def test_damaged_member_is_reported(tmp_path: Path) -> None:
    df = _ratings()
    data = bytearray(build_zip(tmp_path / "ml-1m.zip", release_files("ml-1m", df)))
    # Flip bytes inside the compressed ratings data: the central directory stays readable.
    start = data.find(b"ratings.dat") + 40
    for k in range(start, start + 20):
        data[k] ^= 0xFF
    (tmp_path / "ml-1m.zip").write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="damaged"):
        load_movielens("ml-1m", tmp_path, download=False, check_counts=False)


def test_html_page_saved_as_zip(tmp_path: Path) -> None:
    (tmp_path / "ml-1m.zip").write_bytes(b"<!DOCTYPE html><html><body>Not Found</body></html>")
    with pytest.raises(CorruptDatasetError, match="HTML page.*download again"):
        load_movielens("ml-1m", tmp_path, download=False)


def test_zip_of_another_dataset(tmp_path: Path) -> None:
    build_zip(tmp_path / "ml-1m.zip", {"something/else.txt": b"hello"})
    with pytest.raises(CorruptDatasetError, match="has no ratings.dat"):
        load_movielens("ml-1m", tmp_path, download=False)


def test_verify_file_detects_a_modified_zip(tmp_path: Path) -> None:
    df = _ratings()
    zb = build_zip(tmp_path / "ml-1m.zip", release_files("ml-1m", df))
    e = entry_for("ml-1m", df, zb)
    (tmp_path / "ml-1m.zip").write_bytes(zb[:-1] + bytes([zb[-1] ^ 1]))
    with pytest.raises(ChecksumError, match="sha256"):
        verify_file(e, tmp_path / "ml-1m.zip")
    with pytest.raises(ChecksumError):
        load_movielens(e, tmp_path, download=False, verify=True)


# ---------------------------------------------------------------------------------------------
# converters and the ml-100k folds on synthetic files


def test_to_csr_maps_back_to_raw_ids() -> None:
    df = _ratings()
    mat, users, items = to_csr(df)
    assert mat.shape == (df.user_id.nunique(), df.item_id.nunique())
    assert mat.dtype == np.float32 and mat.nnz == len(df)
    row = df.iloc[17]
    u = np.searchsorted(users, row.user_id)
    i = np.searchsorted(items, row.item_id)
    assert users[u] == row.user_id and items[i] == row.item_id
    assert mat[u, i] == row.rating
    with pytest.raises(ValueError, match="duplicate"):
        to_csr(pd.concat([df, df.iloc[:3]]))


def test_to_surprise_uses_the_scale_and_raw_ids() -> None:
    df = _ratings((0.5, 5), 0.5)
    ts = to_surprise(df).build_full_trainset()
    assert ts.n_ratings == len(df)
    assert ts.rating_scale == (0.5, 5.0)
    assert ts.to_inner_uid(int(df.user_id.iloc[0])) >= 0
    bare = pd.DataFrame({c: df[c].to_numpy() for c in ("user_id", "item_id", "rating")})
    with pytest.raises(ValueError, match="rating_scale"):
        to_surprise(bare)
    assert to_surprise(bare, (1, 5)).build_full_trainset().rating_scale == (1.0, 5.0)


def test_ml100k_folds_from_a_zip_are_unpacked_and_usable(tmp_path: Path) -> None:
    from surprise.model_selection import PredefinedKFold

    df = _ratings()
    build_zip(tmp_path / "ml-100k.zip", release_files("ml-100k", df))
    data, folds = ml100k_official_folds("u", tmp_path, download=False)
    assert len(folds) == 5
    assert all(Path(p).parent == tmp_path / "ml-100k-folds" for pair in folds for p in pair)
    sizes = [(tr.n_ratings, len(te)) for tr, te in PredefinedKFold().split(data)]
    assert sizes == [(160, 40)] * 5
    # no temporary files left behind
    assert not list((tmp_path / "ml-100k-folds").glob(".*part*"))
    data_ab, folds_ab = ml100k_official_folds("uab", tmp_path, download=False)
    assert [Path(b).name for b, _ in folds_ab] == ["ua.base", "ub.base"]
    with pytest.raises(ValueError, match="unknown ml-100k split"):
        ml100k_official_folds("u9", tmp_path, download=False)


# ---------------------------------------------------------------------------------------------
# downloads from a local HTTP server


class _Server:
    """routes: path -> (status, body, headers, cut) ; cut = bytes actually sent (None: all)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, dict[str, str], int | None]] = {}
        self.hits: dict[str, int] = {}
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits[self.path] = hits.get(self.path, 0) + 1
                status, body, headers, cut = routes.get(
                    self.path, (404, b"<html>404</html>", {}, None)
                )
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def _served(
    server: _Server, name: str = "ml-latest-small", **route: object
) -> tuple[MovieLensDataset, pd.DataFrame, bytes]:
    entry = DATASETS[name]
    df = _ratings(entry.rating_scale, entry.rating_step)
    buf_path = io.BytesIO()
    with zipfile.ZipFile(buf_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for m, data in release_files(name, df).items():
            zf.writestr(m, data)
    zb = buf_path.getvalue()
    server.routes[f"/{name}.zip"] = (
        int(route.get("status", 200)),  # type: ignore[arg-type]
        route.get("body", zb),  # type: ignore[arg-type]
        route.get("headers", {"Content-Type": "application/zip"}),  # type: ignore[arg-type]
        route.get("cut"),  # type: ignore[arg-type]
    )
    return entry_for(name, df, zb, url=f"{server.url}/{name}.zip"), df, zb


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_download_streams_verifies_and_renames(
    server: _Server, tmp_path: Path, no_dataset_warnings: None
) -> None:
    e, df, zb = _served(server)
    home = tmp_path / "new" / "home"  # created on demand
    got = load_movielens(e, home, progress=False)
    pd.testing.assert_frame_equal(got, df)
    assert _leftovers(home) == ["ml-latest-small.zip"]
    assert (home / "ml-latest-small.zip").read_bytes() == zb
    assert (home / "ml-latest-small.zip").stat().st_mode & 0o777 == 0o644  # readable by others
    # a second load uses the local copy
    load_movielens(e, home, progress=False)
    assert server.hits["/ml-latest-small.zip"] == 1


def test_download_checksum_mismatch_keeps_nothing(server: _Server, tmp_path: Path) -> None:
    e, _, _ = _served(server)
    e = e.replace(sha256="0" * 64)
    with pytest.raises(ChecksumError, match="sha256 is .*expected 0000.*Nothing was kept") as exc:
        download_movielens(e, tmp_path, progress=False)
    assert "latest" in str(exc.value)  # the hint about GroupLens replacing ml-latest-*
    assert _leftovers(tmp_path) == []


def test_download_size_mismatch(server: _Server, tmp_path: Path) -> None:
    e, _, zb = _served(server)
    with pytest.raises(ChecksumError, match="size is"):
        download_movielens(e.replace(size=len(zb) + 1), tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_keeps_nothing_and_can_be_retried(
    server: _Server, tmp_path: Path
) -> None:
    e, df, zb = _served(server, cut=100)
    with pytest.raises(DownloadError, match=r"interrupted: 100 of [\d,]+ bytes.*run it again"):
        download_movielens(e, tmp_path, progress=False)
    assert _leftovers(tmp_path) == []
    # the connection comes back: the retry succeeds
    server.routes["/ml-latest-small.zip"] = (200, zb, {}, None)
    path = download_movielens(e, tmp_path, progress=False)
    assert path.read_bytes() == zb
    assert _leftovers(tmp_path) == ["ml-latest-small.zip"]


def test_ctrl_c_during_download_keeps_nothing(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e, _, _ = _served(server)

    class Boom:
        def __init__(self, *a: object, **k: object) -> None:
            pass

        def __enter__(self) -> Boom:
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(dl, "tqdm", Boom)
    with pytest.raises(KeyboardInterrupt):
        download_movielens(e, tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_html_error_page_is_not_saved(server: _Server, tmp_path: Path) -> None:
    page = b"<!DOCTYPE html><html><head><title>Captive portal</title></head></html>"
    e, _, _ = _served(server, body=page, headers={"Content-Type": "text/html"})
    with pytest.raises(DownloadError, match="HTML page, not a zip.*put it at"):
        download_movielens(e, tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_http_error(server: _Server, tmp_path: Path) -> None:
    e, _, _ = _served(server)
    e = e.replace(url=f"{server.url}/missing.zip")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_movielens(e, tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_offline_error_says_where_to_put_the_zip(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = DATASETS["ml-1m"].replace(url=f"http://127.0.0.1:{port}/ml-1m.zip")
    with pytest.raises(DownloadError) as exc:
        load_movielens(e, tmp_path, progress=False)
    msg = str(exc.value)
    assert "offline" in msg and str(tmp_path / "ml-1m.zip") in msg and e.url in msg
    assert isinstance(exc.value, OSError) and isinstance(exc.value, DatasetError)
    assert _leftovers(tmp_path) == []


def test_data_home_that_is_not_writable(server: _Server, tmp_path: Path) -> None:
    e, _, _ = _served(server)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # Tests run as root, which ignores permission bits: a path under a regular file can never
    # be created, whoever runs the test.
    for home in (blocker / "home", blocker):
        with pytest.raises(DataHomeError, match="RFM_RECSYS_DATA.*put it at") as exc:
            download_movielens(e, home, progress=False)
        assert str(home) in str(exc.value)
    assert server.hits.get("/ml-latest-small.zip", 0) == 0


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits"
)
def test_read_only_data_home(server: _Server, tmp_path: Path) -> None:
    e, _, _ = _served(server)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(DataHomeError, match="not writable"):
            download_movielens(e, ro, progress=False)
    finally:
        ro.chmod(0o700)


def test_registry_entries_point_at_grouplens() -> None:
    assert set(DATASETS) == {
        "ml-100k",
        "ml-1m",
        "ml-10m",
        "ml-20m",
        "ml-25m",
        "ml-32m",
        "ml-latest-small",
    }
    for name, e in DATASETS.items():
        assert e.name == name
        assert e.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert e.md5 is None or len(e.md5) == 32
        assert e.sha256 is None or len(e.sha256) == 64
        assert e.md5 or e.sha256, f"{name} has no checksum"
        assert e.n_ratings and e.n_users
    assert DATASETS["ml-10m"].ratings_member == "ml-10M100K/ratings.dat"
    assert DATASETS["ml-32m"].n_ratings == 32_000_204 and DATASETS["ml-32m"].n_users == 200_948
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["ml-1m"].url = "x"  # type: ignore[misc]


def test_data_home_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rfm_recsys.datasets import data_home, default_data_home

    monkeypatch.delenv("RFM_RECSYS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_home() == tmp_path / "xdg" / "rfm_recsys"
    assert data_home() == tmp_path / "xdg" / "rfm_recsys"
    assert data_home(default=tmp_path / "repo-datasets") == tmp_path / "repo-datasets"
    monkeypatch.setenv("RFM_RECSYS_DATA", str(tmp_path / "env"))
    assert data_home(default=tmp_path / "repo-datasets") == tmp_path / "env"
    assert data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_home() == Path.home() / ".cache" / "rfm_recsys"


def test_register_dataset_and_copy_into_home(tmp_path: Path, no_dataset_warnings: None) -> None:
    from rfm_recsys.datasets import copy_into_home, register_dataset

    df = _ratings()
    files = {k.replace("ml-1m/", "my-ml/"): v for k, v in release_files("ml-1m", df).items()}
    zb = build_zip(tmp_path / "download.zip", files)
    mine = entry_for(
        "ml-1m", df, zb, name="my-ml", folder="my-ml", url="https://example.invalid/my-ml.zip"
    )
    register_dataset(mine)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_dataset(mine)
        home = tmp_path / "home"
        installed = copy_into_home(tmp_path / "download.zip", "my-ml", home)
        assert installed == home / "my-ml.zip" and _leftovers(home) == ["my-ml.zip"]
        assert len(load_movielens("my-ml", home, download=False)) == len(df)
        (tmp_path / "bad.zip").write_bytes(zb[:-10])
        with pytest.raises(ChecksumError):
            copy_into_home(tmp_path / "bad.zip", "my-ml", tmp_path / "home2")
        assert not (tmp_path / "home2").exists() or _leftovers(tmp_path / "home2") == []
    finally:
        DATASETS.pop("my-ml")


def test_movies_line_with_a_missing_field(tmp_path: Path) -> None:
    df = _ratings()
    files = release_files("ml-10m", df)
    member = "ml-10M100K/movies.dat"
    lines = files[member].decode("latin-1").splitlines()
    lines[6] = "7::Only a title (1999)"
    files[member] = ("\n".join(lines) + "\n").encode("latin-1")
    build_zip(tmp_path / "ml-10m.zip", files)
    with pytest.raises(
        MalformedLineError, match=r"movies\.dat in .*, line 7: expected 3 fields"
    ) as exc:
        load_movielens_items("ml-10m", tmp_path, download=False)
    assert exc.value.line == "7::Only a title (1999)"
