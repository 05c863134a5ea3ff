"""Load MovieLens ratings and movies from a local zip or unpacked folder (downloading if allowed).

A dataset ``name`` is looked for in the data home as

1. an unpacked folder: ``<home>/<name>/``, ``<home>/<zip folder>/`` (``ml-10M100K`` for ml-10m)
   or ``<home>/<name>/<zip folder>/`` — the layout of the official zip;
2. the official zip ``<home>/<name>.zip``.

``data_home`` may also point straight at the unpacked folder or at the zip itself.

Parsing uses pandas' C engine throughout. The ``::`` separator of ml-1m and ml-10m would force
pandas onto its Python engine (about a minute for ml-10m); instead ratings are split on ``:`` with
the empty fields between the two colons skipped (separators are counted to catch the lines this
would mis-split), and movies, whose titles contain ``:``, have ``::`` replaced by a tab. When the
fast parse fails, or parsed values are out of range, the file is scanned line by line to name the
first bad line (file and 1-based line number) in the error.
"""

from __future__ import annotations

import contextlib
import csv
import io
import lzma
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from .download import download_movielens, manual_instructions, verify_file, zip_path
from .errors import (
    CorruptDatasetError,
    DatasetNotFoundError,
    DatasetWarning,
    MalformedLineError,
)
from .registry import MovieLensDataset, get_dataset
from .registry import data_home as resolve_home

RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
ITEM_COLUMNS = ("item_id", "title", "year", "genres")

_INT32 = np.iinfo(np.int32)

# Header names seen in MovieLens-like files, mapped to ours (compared lower-cased, no spaces).
_ALIASES = {
    "userid": "user_id",
    "user_id": "user_id",
    "user": "user_id",
    "movieid": "item_id",
    "movie_id": "item_id",
    "itemid": "item_id",
    "item_id": "item_id",
    "item": "item_id",
    "rating": "rating",
    "timestamp": "timestamp",
    "time": "timestamp",
}

# ml-100k's u.genre, used when the file is absent from a local copy.
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_YEAR_RE = r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$"


# Errors of the file system itself, which say nothing about the zip's content.
_LOCAL_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, MemoryError)
# What zipfile and its decompressors raise on damaged bytes (OSError: bz2's "invalid data
# stream" and seeks to offsets read from damaged headers).
_ZIP_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,
)


@dataclass(frozen=True)
class _Source:
    """One file of a dataset: a plain file, or a member of a zip."""

    entry: MovieLensDataset
    path: Path
    member: str | None = None

    @property
    def label(self) -> str:
        return str(self.path) if self.member is None else f"{self.member} in {self.path}"

    @property
    def fix(self) -> str:
        if self.member is None:
            return (
                f"restore {self.path.name} from the official zip ({self.entry.url}), or delete "
                f"the folder {self.path.parent} to use {self.entry.name}.zip instead"
            )
        return (
            f"delete {self.path} and download it again (download_movielens({self.entry.name!r}, "
            f"force=True)), or put the official zip from {self.entry.url} there by hand"
        )

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        with self.guard():
            if self.member is None:
                with open(self.path, "rb") as f:
                    yield f
            else:
                with _open_zip(self.path, self.entry) as zf, zf.open(self.member) as f:
                    yield f

    def read_bytes(self) -> bytes:
        with self.open() as f:
            return f.read()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        # Damage inside a zip surfaces only while a member is opened or read: a bad CRC or
        # truncated stream, and, from damaged header fields, an "unsupported" compression
        # method, version or flag, a spurious encryption flag, or a seek to a negative offset.
        try:
            yield
        except _LOCAL_FILE_ERRORS:
            raise
        except _ZIP_DAMAGE as exc:
            raise CorruptDatasetError(
                f"{self.label} is damaged ({type(exc).__name__}: {exc}): {self.fix}"
            ) from exc


@contextlib.contextmanager
def _open_zip(path: Path, entry: MovieLensDataset) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(path)
    except _LOCAL_FILE_ERRORS:
        raise
    except Exception as exc:
        # Only the directory is read here; damage shows as BadZipFile, OSError (EINVAL from
        # seeking to the end record of a tiny file), NotImplementedError (a version or flag
        # field), UnicodeDecodeError (a name flagged UTF-8), struct.error...
        with open(path, "rb") as f:
            head = f.read(512).lstrip()
        fix = (
            f"delete it and download again (download_movielens({entry.name!r}, force=True)), "
            f"or put the official zip from {entry.url} at {path} by hand"
        )
        if head.startswith(b"<"):
            raise CorruptDatasetError(
                f"{path} is an HTML page (an error or login page saved as a zip), not the "
                f"{entry.name} zip: {fix}"
            ) from exc
        size = path.stat().st_size
        expected = f" of the expected {entry.size:,}" if entry.size else ""
        raise CorruptDatasetError(
            f"{path} is not a valid zip (truncated or damaged: {size:,} bytes{expected}): {fix}"
        ) from exc
    with zf:
        yield zf


def _find_member(path: Path, entry: MovieLensDataset, filename: str) -> str | None:
    with _open_zip(path, entry) as zf:
        names = zf.namelist()
    for exact in (f"{entry.folder}/{filename}", f"{entry.name}/{filename}", filename):
        if exact in names:
            return exact
    # Re-zipped copies may use another top folder; take the shallowest file of that name.
    cands = sorted(
        (n for n in names if n.rsplit("/", 1)[-1] == filename), key=lambda n: n.count("/")
    )
    return cands[0] if cands else None


def _candidate_dirs(entry: MovieLensDataset, home: Path) -> list[Path]:
    dirs = [home / entry.name, home / entry.folder, home / entry.name / entry.folder]
    # data_home may be the unpacked folder itself.
    if home.name in (entry.name, entry.folder):
        dirs.insert(0, home)
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _locate(entry: MovieLensDataset, home: Path, filename: str) -> _Source | None:
    """Find ``filename`` of ``entry`` in ``home``: an unpacked folder first, then the zip."""
    zips = [zip_path(entry, home)]
    if home.is_file():
        # data_home may be the zip itself.
        zips = [home]
    else:
        for d in _candidate_dirs(entry, home):
            if (d / filename).is_file():
                return _Source(entry, d / filename)
    for z in zips:
        if z.is_file():
            member = _find_member(z, entry, filename)
            if member is None:
                raise CorruptDatasetError(
                    f"{z} has no {filename}: it is not the official {entry.name} zip. Delete it "
                    f"and download again, or put the official zip from {entry.url} there by hand"
                )
            return _Source(entry, z, member)
    return None


def _not_found(entry: MovieLensDataset, home: Path, filename: str) -> DatasetNotFoundError:
    looked = [str(d / filename) for d in _candidate_dirs(entry, home)] + [
        str(zip_path(entry, home))
    ]
    return DatasetNotFoundError(
        f"{entry.name} not found in the data home {home} (looked for {', '.join(looked)}). "
        f"Call with download=True, or {manual_instructions(entry, home)}; the data home is the "
        "data_home argument, else $RFM_RECSYS_DATA, else ~/.cache/rfm_recsys"
    )


def _resolve(
    entry: MovieLensDataset,
    home: Path,
    filename: str,
    download: bool,
    progress: bool,
) -> _Source:
    src = _locate(entry, home, filename)
    if src is None and download and not home.is_file():
        download_movielens(entry, home, progress=progress)
        src = _locate(entry, home, filename)
    if src is None:
        raise _not_found(entry, home, filename)
    return src


# ----------------------------------------------------------------------------------------------
# ratings


def load_movielens(
    name: str | MovieLensDataset,
    data_home: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    verify: bool = False,
    check_counts: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Load a MovieLens ratings file as a DataFrame.

    Args:
        name: ``"ml-100k"``, ``"ml-1m"``, ``"ml-10m"``, ``"ml-20m"``, ``"ml-25m"``, ``"ml-32m"``,
            ``"ml-latest-small"``, another registered name, or a registry entry.
        data_home: Folder holding ``<name>.zip`` or the unpacked ``<name>/`` folder (or that
            folder / zip itself). Default: ``$RFM_RECSYS_DATA``, else ``~/.cache/rfm_recsys``.
        download: Download the official zip when no local copy is found.
        verify: Check a local zip's size and checksum before reading (hashes the whole file;
            downloads are always verified).
        check_counts: Warn (:class:`DatasetWarning`) when the numbers of ratings, users or items
            differ from the registry's official figures.
        progress: Show a progress bar while downloading.

    Returns:
        One row per rating, in file order, with columns ``user_id`` (int32), ``item_id``
        (int32) — the raw MovieLens ids, not re-indexed — ``rating`` (float32) and
        ``timestamp`` (int64 seconds since the epoch; absent when a local copy's ratings file
        has only three columns). ``df.attrs`` holds ``dataset``, ``source`` and
        ``rating_scale``.

    Raises:
        UnknownDatasetError: Unknown name (the message lists the known ones).
        DatasetNotFoundError: No local copy and ``download`` is false.
        CorruptDatasetError: Truncated zip, HTML page saved as a zip, missing file.
        MalformedLineError: A line cannot be parsed (the message names file and line).
        DownloadError, ChecksumError, DataHomeError: See :func:`download_movielens`.
    """
    entry = get_dataset(name)
    home = resolve_home(data_home)
    src = _resolve(entry, home, entry.ratings_file, download, progress)
    if verify and src.member is not None:
        verify_file(entry, src.path)
    df = _read_ratings(src)
    if check_counts:
        _check_counts(entry, df, src.label)
    df.attrs.update(dataset=entry.name, source=src.label, rating_scale=entry.rating_scale)
    return df


def _canonical(name: str) -> str | None:
    return _ALIASES.get(name.strip().lower().replace(" ", "_"))


def _read_ratings(src: _Source) -> pd.DataFrame:
    entry = src.entry
    sep = entry.ratings_sep
    raw: bytes | None = None
    if len(sep) > 1:
        raw = src.read_bytes()
        head = raw[:65536]
    else:
        with src.open() as f:
            head = f.read(65536)
    lines = [ln for ln in head.decode("latin-1").splitlines() if ln.strip()]
    if not lines:
        raise CorruptDatasetError(f"{src.label} is empty: {src.fix}")

    if entry.ratings_header:
        header = [h.strip().strip('"') for h in lines[0].split(sep)]
        names = []
        for i, h in enumerate(header):
            c = _canonical(h)
            names.append(c if c is not None and c not in names else f"_unused{i}")
        missing = [c for c in RATING_COLUMNS[:3] if c not in names]
        if missing:
            raise MalformedLineError(
                f"{src.label}, line 1: header {lines[0][:200]!r} lacks {', '.join(missing)} "
                f"(expected {sep.join(entry.ratings_columns)}): {src.fix}",
                src.label,
                1,
                lines[0][:200],
            )
    else:
        nf = len(lines[0].split(sep))
        if nf not in (3, 4):
            _raise_bad_line(src, raw, 4, False, list(RATING_COLUMNS))
        names = list(RATING_COLUMNS[:nf])
    nfields = len(names)
    usecols = [c for c in RATING_COLUMNS if c in names]
    # Final dtypes straight from the parser: converting afterwards costs as much as parsing. An
    # id beyond int32 makes the parse fail, and the line scan then names it.
    dtypes = {"user_id": "int32", "item_id": "int32", "rating": "float32", "timestamp": "int64"}
    dtype = {c: dtypes[c] for c in usecols}

    try:
        with src.guard():
            if raw is None:
                with src.open() as buf:
                    # No usecols: with it the C parser silently drops surplus fields of a line.
                    df = _read_csv_c(buf, sep, names, dtype, entry.ratings_header)
            elif sep == sep[0] * len(sep):
                # '::': split on ':' and skip the empty fields between the colons. pandas' C
                # engine has no multi-character separator, and its Python engine takes a
                # minute for ml-10m; this keeps the C engine and needs no copy of the bytes.
                gap = len(sep) - 1
                wide: list[str] = []
                for k, n in enumerate(names):
                    wide.append(n)
                    if k < nfields - 1:
                        wide.extend(f"_gap{k}_{j}" for j in range(gap))
                df = _read_csv_c(
                    io.BytesIO(raw), sep[0], wide, dtype, entry.ratings_header, usecols
                )
                # usecols tolerates surplus fields and single colons: count separators instead.
                rows = len(df) + int(entry.ratings_header)
                n_sep = raw.count(sep.encode())
                if n_sep != (nfields - 1) * rows or raw.count(sep[0].encode()) != len(sep) * n_sep:
                    raise ValueError("separator count does not match the number of lines")
            else:
                df = _read_csv_c(
                    io.BytesIO(raw.replace(sep.encode(), b"\t")),
                    "\t",
                    names,
                    dtype,
                    entry.ratings_header,
                )
    except (ValueError, OverflowError, pd.errors.ParserError) as exc:
        _raise_bad_line(src, raw, nfields, entry.ratings_header, names, cause=exc)
        raise  # pragma: no cover - _raise_bad_line always raises

    if not _values_ok(df, entry):
        _raise_bad_line(src, raw, nfields, entry.ratings_header, names)
    return df[usecols] if list(df.columns) != usecols else df


def _read_csv_c(
    buf: IO[bytes],
    sep: str,
    names: list[str],
    dtype: dict[str, str],
    header: bool,
    usecols: list[str] | None = None,
) -> pd.DataFrame:
    with warnings.catch_warnings():
        # a damaged number such as "97E300760" in an integer column warns before it fails; the
        # failure is reported (with the line) by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        return pd.read_csv(
            buf,
            sep=sep,
            header=0 if header else None,
            names=names,
            usecols=usecols,
            dtype=dtype,
            engine="c",
            na_filter=False,
            quoting=csv.QUOTE_NONE,
        )


def _values_ok(df: pd.DataFrame, entry: MovieLensDataset) -> bool:
    lo, hi = entry.rating_scale
    r = df["rating"].to_numpy()
    return bool(
        np.isfinite(r).all() and r.min(initial=lo) >= lo - 1e-6 and r.max(initial=hi) <= hi + 1e-6
    )


def _line_problem(
    parts: list[str], nfields: int, names: list[str], scale: tuple[float, float], sep: str
) -> str | None:
    if len(parts) != nfields:
        return f"expected {nfields} fields separated by {sep!r}, found {len(parts)}"
    for value, col in zip(parts, names, strict=True):
        value = value.strip()
        if col in ("user_id", "item_id", "timestamp"):
            try:
                v = int(value)
            except ValueError:
                return f"{col} {value!r} is not an integer"
            if col != "timestamp" and not _INT32.min <= v <= _INT32.max:
                return f"{col} {v} does not fit in 32 bits"
        elif col == "rating":
            try:
                r = float(value)
            except ValueError:
                return f"rating {value!r} is not a number"
            if not (np.isfinite(r) and scale[0] - 1e-6 <= r <= scale[1] + 1e-6):
                return f"rating {value} is outside the scale {scale[0]:g}..{scale[1]:g}"
    return None


def _raise_bad_line(
    src: _Source,
    raw: bytes | None,
    nfields_expected: int,
    has_header: bool,
    names: list[str],
    cause: BaseException | None = None,
) -> None:
    entry = src.entry
    sep = entry.ratings_sep

    def check(parts: list[str]) -> str | None:
        return _line_problem(parts, nfields_expected, names, entry.rating_scale, sep)

    found = _scan_lines(src, raw, sep, has_header, check)
    if found is not None:
        lineno, line, problem = found
        raise MalformedLineError(
            f"{src.label}, line {lineno}: {problem}: {line[:200]!r}. The file is damaged or is "
            f"not the official {entry.name} ratings file: {src.fix}",
            src.label,
            lineno,
            line[:200],
        ) from cause
    raise CorruptDatasetError(f"cannot parse {src.label} ({cause}): {src.fix}") from cause


def _scan_lines(
    src: _Source,
    raw: bytes | None,
    sep: str,
    has_header: bool,
    check: Callable[[list[str]], str | None],
) -> tuple[int, str, str] | None:
    """Find the first line failing ``check`` (slow, Python-level; only used after a failure)."""
    with contextlib.ExitStack() as stack:
        if raw is not None:
            stream: IO[bytes] = io.BytesIO(raw)
        else:
            stream = stack.enter_context(src.open())
        with src.guard():
            for lineno, bline in enumerate(stream, 1):
                line = bline.decode("latin-1").rstrip("\r\n")
                if (has_header and lineno == 1) or not line.strip():
                    continue
                problem = check(line.split(sep))
                if problem is not None:
                    return lineno, line, problem
    return None


def _check_counts(entry: MovieLensDataset, df: pd.DataFrame, label: str) -> None:
    got = {
        "ratings": (len(df), entry.n_ratings),
        "users": (int(df["user_id"].nunique()), entry.n_users),
        "items": (int(df["item_id"].nunique()), entry.n_items),
    }
    diffs = [f"{k} {g:,} (official {e:,})" for k, (g, e) in got.items() if e is not None and g != e]
    if diffs:
        warnings.warn(
            f"{label}: {'; '.join(diffs)} per the {entry.counts_source}: the local copy of "
            f"{entry.name} is incomplete, modified or another release",
            DatasetWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------
# movies


def load_movielens_items(
    name: str | MovieLensDataset,
    data_home: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    check_counts: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Load a MovieLens movies file: titles, release years and genres.

    Args:
        name: Registry name or entry (see :func:`load_movielens`).
        data_home: See :func:`load_movielens`.
        download: Download the official zip when no local copy is found.
        check_counts: Warn when the number of movies differs from the official figure.
        progress: Show a progress bar while downloading.

    Returns:
        One row per movie, sorted by id: ``item_id`` (int32, the id used in the ratings),
        ``title`` (str, as published, e.g. ``"Toy Story (1995)"``), ``year`` (nullable Int16,
        parsed from the title; ``<NA>`` when the title has none) and ``genres`` (str, genre
        names joined by ``|``; ``""`` when none are listed).

    Raises:
        See :func:`load_movielens`.
    """
    entry = get_dataset(name)
    home = resolve_home(data_home)
    src = _resolve(entry, home, entry.items_file, download, progress)
    if entry.items_file == "u.item":
        genres_src = _locate(entry, home, "u.genre")
        df = _read_ml100k_items(src, genres_src)
    elif len(entry.items_sep) > 1:
        df = _read_dat_items(src)
    else:
        df = _read_csv_items(src)
    df["title"] = df["title"].str.strip()
    year = df["title"].str.extract(_YEAR_RE, expand=False)
    out = pd.DataFrame(
        {
            "item_id": df["item_id"].to_numpy(np.int32),
            "title": df["title"].astype(str),
            "year": pd.to_numeric(year, errors="coerce").astype("Int16"),
            "genres": df["genres"].astype(str).replace("(no genres listed)", ""),
        }
    )
    out = out.sort_values("item_id", kind="stable").reset_index(drop=True)
    if check_counts and entry.n_movies is not None and len(out) != entry.n_movies:
        warnings.warn(
            f"{src.label}: {len(out):,} movies (official {entry.n_movies:,}, "
            f"{entry.counts_source})",
            DatasetWarning,
            stacklevel=2,
        )
    out.attrs.update(dataset=entry.name, source=src.label)
    return out


def _decode(raw: bytes, encoding: str) -> str:
    # The registry's latin-1 is what GroupLens documents, but some releases' movies files are in
    # fact UTF-8; valid UTF-8 is decoded as such (a latin-1 file of accented titles is almost
    # never valid UTF-8), anything else with the registry's encoding.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode(encoding, errors="replace")


def _parse_text_table(
    src: _Source,
    text: str,
    sep: str,
    nfields: int,
    read: Callable[[io.StringIO], pd.DataFrame],
    parse_text: str | None = None,
) -> pd.DataFrame:
    """Parse with the C engine; on failure name the first bad line of ``text`` (split on sep)."""
    try:
        df = read(io.StringIO(text if parse_text is None else parse_text))
    except (ValueError, pd.errors.ParserError) as exc:
        bad = _first_bad_text_line(text, sep, nfields, header=src.entry.items_file.endswith(".csv"))
        if bad is None:
            raise CorruptDatasetError(f"cannot parse {src.label} ({exc}): {src.fix}") from exc
        lineno, line, problem = bad
        raise MalformedLineError(
            f"{src.label}, line {lineno}: {problem}: {line[:200]!r}: {src.fix}",
            src.label,
            lineno,
            line[:200],
        ) from exc
    return df


def _first_bad_text_line(
    text: str, sep: str, nfields: int, header: bool
) -> tuple[int, str, str] | None:
    lines = text.splitlines()
    if sep == ",":
        rows = enumerate(csv.reader(lines), 1)
    else:
        rows = enumerate((ln.split(sep) for ln in lines), 1)
    for lineno, parts in rows:
        if (header and lineno == 1) or not any(p.strip() for p in parts):
            continue
        if len(parts) != nfields:
            return (
                lineno,
                lines[lineno - 1],
                f"expected {nfields} fields separated by {sep!r}, found {len(parts)}",
            )
        try:
            int(parts[0])
        except ValueError:
            return lineno, lines[lineno - 1], f"movie id {parts[0]!r} is not an integer"
    return None


def _read_dat_items(src: _Source) -> pd.DataFrame:
    entry = src.entry
    text = _decode(src.read_bytes(), entry.items_encoding)
    # Titles contain ':' (so the ratings' split-on-':' does not apply) but never '::', and no
    # field contains a tab.
    tab = text.replace(entry.items_sep, "\t")

    def read(buf: io.StringIO) -> pd.DataFrame:
        df = pd.read_csv(
            buf,
            sep="\t",
            header=None,
            names=["item_id", "title", "genres"],
            dtype={"item_id": "int64", "title": str, "genres": str},
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            engine="c",
        )
        # The C parser pads a line with missing fields silently; count the separators.
        if tab.count("\t") != 2 * len(df):
            raise ValueError("a line has fewer than 3 fields")
        return df

    return _parse_text_table(src, text, entry.items_sep, 3, read, parse_text=tab)


def _read_csv_items(src: _Source) -> pd.DataFrame:
    entry = src.entry
    text = _decode(src.read_bytes(), entry.items_encoding)
    df = _parse_text_table(
        src,
        text,
        ",",
        3,
        lambda buf: pd.read_csv(
            buf,
            sep=",",
            header=0,
            dtype={"movieId": "int64", "title": str, "genres": str},
            keep_default_na=False,
            engine="c",
        ),
    )
    cols = {c: _canonical(c) or c.strip().lower() for c in df.columns}
    df = df.rename(columns=cols)
    if not {"item_id", "title", "genres"} <= set(df.columns):
        raise MalformedLineError(
            f"{src.label}, line 1: header lacks movieId,title,genres: {src.fix}",
            src.label,
            1,
            ",".join(df.columns),
        )
    return df


def _read_ml100k_items(src: _Source, genres_src: _Source | None) -> pd.DataFrame:
    entry = src.entry
    genre_names = list(_ML100K_GENRES)
    if genres_src is not None:
        gtext = _decode(genres_src.read_bytes(), entry.items_encoding)
        pairs = [ln.split("|") for ln in gtext.splitlines() if ln.strip()]
        parsed = {int(i): g for g, i in pairs if i.strip().isdigit()}
        if sorted(parsed) == list(range(len(parsed))) and len(parsed) == len(_ML100K_GENRES):
            genre_names = [parsed[i] for i in range(len(parsed))]
    nfields = 5 + len(genre_names)
    text = _decode(src.read_bytes(), entry.items_encoding)
    df = _parse_text_table(
        src,
        text,
        "|",
        nfields,
        lambda buf: pd.read_csv(
            buf,
            sep="|",
            header=None,
            dtype=str,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            engine="c",
        ),
    )
    if df.shape[1] != nfields:
        raise CorruptDatasetError(
            f"{src.label}: {df.shape[1]} fields per line, expected {nfields}: {src.fix}"
        )
    try:
        flags = df.iloc[:, 5:].to_numpy(np.int8).astype(bool)
        ids = df.iloc[:, 0].to_numpy(np.int64)
    except ValueError:
        bad = _first_bad_text_line(text, "|", nfields, header=False)
        lineno, line = (bad[0], bad[1]) if bad else (0, "")
        raise MalformedLineError(
            f"{src.label}, line {lineno}: non-numeric id or genre flag: {line[:200]!r}: {src.fix}",
            src.label,
            lineno,
            line[:200],
        ) from None
    names = np.array(genre_names, dtype=object)
    # 'unknown' is ml-100k's flag for "no genre"; the later releases write no genre as "".
    keep = names != "unknown"
    genres = ["|".join(names[keep][row[keep]]) for row in flags]
    return pd.DataFrame({"item_id": ids, "title": df.iloc[:, 1], "genres": genres})
