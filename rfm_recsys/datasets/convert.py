"""Convert rating DataFrames to Surprise datasets and SciPy CSR matrices; ml-100k's folds."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataHomeError, RatingsFrameError
from .movielens import _open_zip, _resolve, _Source
from .registry import data_home as resolve_home
from .registry import default_data_home, get_dataset

if TYPE_CHECKING:  # Surprise is imported lazily: it is slow to import and only these need it.
    from .timestamps import TimedDatasetAutoFolds, TimedDatasetUserFolds

#: The literature's ml-100k splits: five disjoint 80/20 folds (u1..u5) made by the dataset's
#: mku.sh, and ua/ub (exactly 10 test ratings per user).
ML100K_FOLDS = {
    "u": ("u1", "u2", "u3", "u4", "u5"),
    "ua": ("ua",),
    "ub": ("ub",),
    "uab": ("ua", "ub"),
}


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _scale(df: pd.DataFrame, rating_scale: tuple[float, float] | None) -> tuple[float, float]:
    scale = rating_scale if rating_scale is not None else df.attrs.get("rating_scale")
    if scale is None:
        raise ValueError(
            "rating_scale is required (e.g. (1, 5) for ml-100k/ml-1m, (0.5, 5) for ml-10m and "
            "later); DataFrames from load_movielens/make_ratings carry it in df.attrs"
        )
    try:
        lo, hi = float(scale[0]), float(scale[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"rating_scale must be (low, high), got {scale!r}") from None
    if not lo < hi or not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"rating_scale must be (low, high) with low < high, got {scale!r}")
    return lo, hi


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _checked_ratings(df: pd.DataFrame) -> np.ndarray:
    """The rating column as finite float64, or an error naming the first bad row."""
    missing = [c for c in ("user_id", "item_id", "rating") if c not in getattr(df, "columns", ())]
    if missing:
        raise RatingsFrameError(
            f"the ratings lack the column(s) {missing}; expected user_id, item_id, rating (rename "
            "yours, e.g. df.rename(columns={'userId': 'user_id', 'movieId': 'item_id'}))"
        )
    col = df["rating"]
    if col.dtype == bool:
        raise RatingsFrameError(
            "the rating column holds booleans: pass numeric ratings (for implicit feedback use "
            "1.0 per interaction)"
        )
    try:
        ratings = col.to_numpy(np.float64)
    except (TypeError, ValueError) as exc:
        raise RatingsFrameError(
            f"the rating column is not numeric ({exc}): convert it, e.g. with "
            "pd.to_numeric(df['rating'])"
        ) from None
    bad = ~np.isfinite(ratings)
    if bad.any():
        k = _first(bad)
        raise RatingsFrameError(
            f"{int(bad.sum()):,} ratings are NaN or infinite (first in row {df.index[k]!r}): "
            "drop them, e.g. df.dropna(subset=['rating'])"
        )
    return ratings


def _checked_ids(df: pd.DataFrame, col: str) -> np.ndarray:
    ids = df[col].to_numpy()
    missing = pd.isna(ids)
    if missing.any():
        k = _first(missing)
        raise RatingsFrameError(
            f"{int(missing.sum()):,} values of {col} are missing (NaN/None; first in row "
            f"{df.index[k]!r}): drop those rows, e.g. df.dropna(subset=[{col!r}])"
        )
    return ids


def to_surprise(
    df: pd.DataFrame, rating_scale: tuple[float, float] | None = None
) -> TimedDatasetAutoFolds:
    """Wrap a ratings DataFrame as a Surprise ``Dataset``.

    Args:
        df: Ratings with columns ``user_id``, ``item_id``, ``rating`` and optionally
            ``timestamp`` (seconds since the epoch, or datetimes; other columns ignored).
        rating_scale: (lowest, highest) rating, which Surprise uses to clip predictions. Defaults
            to ``df.attrs["rating_scale"]`` (set by :func:`load_movielens` and
            :func:`make_ratings`); required otherwise.

    Returns:
        A :class:`~rfm_recsys.datasets.timestamps.TimedDatasetAutoFolds`: what
        ``surprise.Dataset.load_from_df(...)`` returns (the same raw ratings in the same order,
        so the same folds), with the timestamps as the raw ratings' 4th element, which its
        trainsets and testsets carry for models that use the time of a rating. Raw ids are the
        integer MovieLens ids.

    Raises:
        RatingsFrameError: Missing columns or ids; ratings that are not numbers, NaN or
            infinite; timestamps that are neither numbers nor datetimes. (Ratings outside the
            scale are kept: Surprise only clips predictions to it.)
        ValueError: No (or an invalid) rating scale.
    """
    from surprise import Reader

    from .timestamps import TimedDatasetAutoFolds

    ratings = _checked_ratings(df)
    lo, hi = _scale(df, rating_scale)
    for col in ("user_id", "item_id"):
        _checked_ids(df, col)
    frame = pd.DataFrame(
        {
            "user_id": df["user_id"].to_numpy(),
            "item_id": df["item_id"].to_numpy(),
            "rating": ratings,
        }
    )
    times = _timestamp_seconds(df["timestamp"]) if "timestamp" in df.columns else None
    return TimedDatasetAutoFolds(reader=Reader(rating_scale=(lo, hi)), df=frame, timestamps=times)


def _timestamp_seconds(col: pd.Series) -> list:
    """A timestamp column as seconds since the epoch (Python numbers; None where missing)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        stamps = pd.to_datetime(col, utc=True)
        secs = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        return [None if s != s else s for s in secs.tolist()]
    bad = col.dtype == bool
    if not bad and not pd.api.types.is_numeric_dtype(col):
        try:
            col = pd.to_numeric(col)
        except (TypeError, ValueError):
            bad = True
    if bad:
        raise RatingsFrameError(
            f"the timestamp column holds {col.dtype} values: pass seconds since the epoch or "
            "datetimes (e.g. pd.to_datetime(df['timestamp'])), or drop the column"
        )
    if pd.api.types.is_integer_dtype(col) and not col.isna().any():
        return col.to_numpy(np.int64).tolist()
    return [None if s != s else s for s in col.to_numpy(np.float64).tolist()]


class CSRRatings(NamedTuple):
    """A users x items rating matrix with the maps back to raw ids.

    Row ``u`` is user ``user_ids[u]``, column ``i`` is item ``item_ids[i]``; both id arrays are
    sorted, so ``np.searchsorted(user_ids, raw)`` maps raw ids to rows.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray


def to_csr(df: pd.DataFrame) -> CSRRatings:
    """Build a float32 CSR matrix (users x items) of the ratings.

    Args:
        df: Ratings with columns ``user_id``, ``item_id``, ``rating``.

    Returns:
        ``(matrix, user_ids, item_ids)``; inner index ``u`` corresponds to raw id
        ``user_ids[u]``. Only users and items with at least one rating get a row or column; an
        empty frame gives a 0 x 0 matrix.

    Raises:
        RatingsFrameError: Missing columns or ids, ids of types that cannot be ordered together
            (e.g. numbers and strings), ratings that are not finite numbers or exceed float32,
            or a (user, item) pair that occurs more than once (summing would corrupt ratings:
            aggregate or deduplicate first).
    """
    ratings = _checked_ratings(df)
    big = np.abs(ratings) > _FLOAT32_MAX
    if big.any():
        k = _first(big)
        raise RatingsFrameError(
            f"rating {ratings[k]:g} (row {df.index[k]!r}) exceeds the float32 range of the "
            "matrix: rescale the ratings"
        )
    codes = []
    for col in ("user_id", "item_id"):
        ids = _checked_ids(df, col)
        try:
            codes.append(np.unique(ids, return_inverse=True))
        except TypeError as exc:
            raise RatingsFrameError(
                f"{col} mixes id types that cannot be ordered together ({exc}): use one type, "
                f"e.g. df[{col!r}].astype(str)"
            ) from None
    (users, uidx), (items, iidx) = codes
    coo = sp.coo_matrix(
        (ratings.astype(np.float32), (uidx.astype(np.int32), iidx.astype(np.int32))),
        shape=(len(users), len(items)),
        dtype=np.float32,
    )
    mat = coo.tocsr()
    mat.sum_duplicates()
    if mat.nnz != len(ratings):
        raise RatingsFrameError(
            f"{len(ratings) - mat.nnz} duplicate (user_id, item_id) pairs: deduplicate first, e.g. "
            "df.drop_duplicates(['user_id', 'item_id'], keep='last')"
        )
    return CSRRatings(mat, users, items)


def _fold_names(which: str | Sequence[str]) -> list[str]:
    if isinstance(which, str):
        names = list(ML100K_FOLDS.get(which, (which,)))
    else:
        names = list(which)
    valid = {f"u{i}" for i in range(1, 6)} | {"ua", "ub"}
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(
            f"unknown ml-100k split(s) {bad}: use 'u' (u1..u5), 'ua', 'ub', 'uab' or a list of "
            f"{sorted(valid)}"
        )
    return names


def _writable_dir(candidates: Sequence[Path]) -> Path:
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=d, prefix=".probe-", delete=True):
                pass
            return d
        except OSError:
            continue
    raise DataHomeError(
        "no writable folder to unpack the ml-100k folds into (tried "
        f"{', '.join(map(str, candidates))}): pass extract_to=... a writable folder, or unpack "
        "ml-100k.zip into the data home"
    )


def ml100k_official_folds(
    which: str | Sequence[str] = "u",
    data_home: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    extract_to: str | os.PathLike[str] | None = None,
) -> tuple[TimedDatasetUserFolds, list[tuple[str, str]]]:
    """ml-100k's official train/test splits as a Surprise dataset for ``PredefinedKFold``.

    The files ``u1.base``/``u1.test`` ... ``u5.*`` (and ``ua``/``ub``) shipped in the official
    zip are used as they are, so results are comparable with the literature. From an unpacked
    folder they are read in place; from the zip the needed members are unpacked (atomically) into
    ``extract_to``, else ``<data home>/ml-100k-folds/``, else the per-user cache.

    Args:
        which: ``"u"`` for u1..u5, ``"ua"``, ``"ub"``, ``"uab"``, or a list such as
            ``["u1", "u2"]``.
        data_home: See :func:`load_movielens`.
        download: Download ml-100k when no local copy is found.
        extract_to: Folder to unpack fold files into when reading from the zip.

    Returns:
        ``(data, folds)``: ``data`` is what ``surprise.Dataset.load_from_folds(folds, reader)``
        returns, whose folds also carry the ratings' timestamps
        (:class:`~rfm_recsys.datasets.timestamps.TimedDatasetUserFolds`) — use
        it with ``surprise.model_selection.PredefinedKFold().split(data)``; ``folds`` is the list
        of ``(train_file, test_file)`` paths. As with Surprise's built-in ``ml-100k``, raw ids
        read from files are strings (``"196"``), unlike :func:`to_surprise`'s integers.

    Raises:
        ValueError: Unknown split name.
        DatasetNotFoundError, CorruptDatasetError, DataHomeError: See :func:`load_movielens`.
    """
    from surprise import Reader

    from .timestamps import TimedDatasetUserFolds

    names = _fold_names(which)
    entry = get_dataset("ml-100k")
    home = resolve_home(data_home)
    paths: dict[str, Path] = {}
    for stem in names:
        for part in ("base", "test"):
            fname = f"{stem}.{part}"
            src = _resolve(entry, home, fname, download, progress=True)
            if src.member is None:
                paths[fname] = src.path
                continue
            candidates = [Path(extract_to)] if extract_to is not None else []
            if not candidates:
                if not home.is_file():
                    candidates.append(home / "ml-100k-folds")
                candidates.append(default_data_home() / "ml-100k-folds")
            out_dir = _writable_dir(candidates)
            paths[fname] = _extract_member(src, out_dir / fname)
    folds = [(str(paths[f"{s}.base"]), str(paths[f"{s}.test"])) for s in names]
    reader = Reader(
        line_format="user item rating timestamp", sep="\t", rating_scale=entry.rating_scale
    )
    return TimedDatasetUserFolds(folds_files=folds, reader=reader), folds


def _extract_member(src: _Source, target: Path) -> Path:
    """Unpack one zip member to ``target`` atomically (skipped when already there)."""
    assert src.member is not None
    with src.guard(), _open_zip(src.path, src.entry) as zf:
        info = zf.getinfo(src.member)
        if target.is_file() and target.stat().st_size == info.file_size:
            return target
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.part-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(src.member) as inp:
                while chunk := inp.read(1 << 20):
                    out.write(chunk)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target
