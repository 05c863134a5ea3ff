"""The one registry of MovieLens releases, and where local copies live (the data home).

Every loader, downloader and converter is driven by :data:`DATASETS`, a dict of frozen
:class:`MovieLensDataset` entries: the download address, the published size and checksums, the
layout of the zip, the format of the ratings and movies files, and the official counts used to
check a parse.

Sources of the figures:

* Sizes, md5 and sha256 of ml-100k, ml-1m, ml-20m, ml-25m and ml-latest-small: the project's
  ``shared/movielens/README.md`` (md5 from GroupLens' own ``<name>.zip.md5`` files).
* ml-10m: md5 from GroupLens' ``ml-10m.zip.md5`` (also in that README); the size
  (65,566,137 bytes) and sha256 are not published by GroupLens and were taken from several
  independent public projects that pin the official zip, all agreeing.
* ml-32m: md5 ``d472be33...`` as published in GroupLens' ``ml-32m.zip.md5``, size 238,950,008
  bytes and sha256 from several independent public projects that pin the official zip, all
  agreeing. Its counts are from the dataset's README (32,000,204 ratings, 200,948 users, 87,585
  movies); the number of distinct *rated* movies is not published, so it is not checked.
* Counts of the other releases: their READMEs and ``shared/movielens/README.md``. ``n_items``
  is the number of distinct items *in the ratings file* (what a parse can check); ``n_movies``
  the number of rows of the movies file.

``ml-latest-small`` is a moving release: GroupLens may replace it, and a newer zip then fails the
checksum. The error says so; pin the figures of the new zip with :func:`register_dataset`.

A checksum or size that is ``None`` is not verified; the downloader logs a warning then.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownDatasetError

BASE_URL = "https://files.grouplens.org/datasets/movielens/"

#: Environment variable naming the data home (overrides the per-user default).
DATA_HOME_ENV = "RFM_RECSYS_DATA"


@dataclass(frozen=True)
class MovieLensDataset:
    """One MovieLens release: where to get it, how to read it, what it should contain.

    Attributes:
        name: Registry key, also the zip's stem (``<home>/<name>.zip``) and the folder name of an
            unpacked copy (``<home>/<name>/``).
        url: Download address of the zip.
        size: Size of the zip in bytes, or ``None`` when unknown (then not checked).
        md5: Hex md5 of the zip, or ``None``.
        sha256: Hex sha256 of the zip, or ``None``.
        folder: Folder the files live under inside the zip (``ml-10M100K`` for ml-10m).
        ratings_file: Ratings file name inside ``folder``.
        ratings_sep: Field separator of the ratings file (``"::"`` is read without falling back
            to pandas' slow Python engine).
        ratings_header: Whether the ratings file starts with a header line.
        ratings_columns: The file's own column names, in order (user, item, rating, timestamp).
        items_file: Movies file name inside ``folder``.
        items_sep: Field separator of the movies file.
        items_encoding: Text encoding of the movies file (latin-1 files that happen to be valid
            UTF-8 are decoded as UTF-8).
        rating_scale: (lowest, highest) rating.
        rating_step: Granularity of the ratings (1.0 whole stars, 0.5 half stars).
        n_ratings: Official number of ratings, or ``None``.
        n_users: Official number of distinct users in the ratings, or ``None``.
        n_items: Official number of distinct items in the ratings, or ``None``.
        n_movies: Official number of rows of the movies file, or ``None``.
        counts_source: Where the official counts come from.
    """

    name: str
    url: str
    size: int | None
    md5: str | None
    sha256: str | None
    folder: str
    ratings_file: str
    ratings_sep: str
    ratings_header: bool
    ratings_columns: tuple[str, ...]
    items_file: str
    items_sep: str
    items_encoding: str
    rating_scale: tuple[float, float]
    rating_step: float
    n_ratings: int | None
    n_users: int | None
    n_items: int | None
    n_movies: int | None
    counts_source: str = "dataset README"

    @property
    def ratings_member(self) -> str:
        """Path of the ratings file inside the zip."""
        return f"{self.folder}/{self.ratings_file}"

    @property
    def items_member(self) -> str:
        """Path of the movies file inside the zip."""
        return f"{self.folder}/{self.items_file}"

    def replace(self, **changes: object) -> MovieLensDataset:
        """Return a copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_DAT_COLS = ("UserID", "MovieID", "Rating", "Timestamp")
_CSV_COLS = ("userId", "movieId", "rating", "timestamp")


def _csv_release(
    name: str,
    size: int | None,
    md5: str | None,
    sha256: str | None,
    counts: tuple[int | None, int | None, int | None, int | None],
    counts_source: str = "dataset README",
) -> MovieLensDataset:
    # ml-20m and later share one layout: ratings.csv / movies.csv with headers, half stars.
    return MovieLensDataset(
        name=name,
        url=f"{BASE_URL}{name}.zip",
        size=size,
        md5=md5,
        sha256=sha256,
        folder=name,
        ratings_file="ratings.csv",
        ratings_sep=",",
        ratings_header=True,
        ratings_columns=_CSV_COLS,
        items_file="movies.csv",
        items_sep=",",
        items_encoding="utf-8",
        rating_scale=(0.5, 5.0),
        rating_step=0.5,
        n_ratings=counts[0],
        n_users=counts[1],
        n_items=counts[2],
        n_movies=counts[3],
        counts_source=counts_source,
    )


def _dat_release(
    name: str,
    size: int,
    md5: str,
    sha256: str,
    folder: str,
    rating_scale: tuple[float, float],
    rating_step: float,
    counts: tuple[int, int, int, int],
) -> MovieLensDataset:
    # ml-1m and ml-10m share one layout: '::'-separated ratings.dat / movies.dat in latin-1.
    return MovieLensDataset(
        name=name,
        url=f"{BASE_URL}{name}.zip",
        size=size,
        md5=md5,
        sha256=sha256,
        folder=folder,
        ratings_file="ratings.dat",
        ratings_sep="::",
        ratings_header=False,
        ratings_columns=_DAT_COLS,
        items_file="movies.dat",
        items_sep="::",
        items_encoding="latin-1",
        rating_scale=rating_scale,
        rating_step=rating_step,
        n_ratings=counts[0],
        n_users=counts[1],
        n_items=counts[2],
        n_movies=counts[3],
    )


#: The registry: every MovieLens release the package knows, by name (``"ml-100k"``, ...); the
#: API reference's entry for ``rfm_recsys.datasets.DATASETS`` (docs/api/index.rst) says the same.
DATASETS: dict[str, MovieLensDataset] = {
    "ml-100k": MovieLensDataset(
        name="ml-100k",
        url=f"{BASE_URL}ml-100k.zip",
        size=4_924_029,
        md5="0e33842e24a9c977be4e0107933c0723",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        folder="ml-100k",
        ratings_file="u.data",
        ratings_sep="\t",
        ratings_header=False,
        ratings_columns=("user id", "item id", "rating", "timestamp"),
        items_file="u.item",
        items_sep="|",
        items_encoding="latin-1",
        rating_scale=(1.0, 5.0),
        rating_step=1.0,
        n_ratings=100_000,
        n_users=943,
        n_items=1_682,
        n_movies=1_682,
        counts_source="dataset README and u.info",
    ),
    "ml-1m": _dat_release(
        "ml-1m",
        5_917_549,
        "c4d9eecfca2ab87c1945afe126590906",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "ml-1m",
        (1.0, 5.0),
        1.0,
        (1_000_209, 6_040, 3_706, 3_883),
    ),
    "ml-10m": _dat_release(
        "ml-10m",
        65_566_137,
        "ce571fd55effeba0271552578f2648bd",
        "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
        "ml-10M100K",
        (0.5, 5.0),
        0.5,
        (10_000_054, 69_878, 10_677, 10_681),
    ),
    "ml-20m": _csv_release(
        "ml-20m",
        198_702_078,
        "cd245b17a1ae2cc31bb14903e1204af3",
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        (20_000_263, 138_493, 26_744, 27_278),
    ),
    "ml-25m": _csv_release(
        "ml-25m",
        261_978_986,
        "6b51fb2759a8657d3bfcbfc42b592ada",
        "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        (25_000_095, 162_541, 59_047, 62_423),
    ),
    "ml-32m": _csv_release(
        "ml-32m",
        238_950_008,
        "d472be332d4daa821edc399621853b57",
        "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",
        # Distinct rated movies are not published for ml-32m: only the catalogue size is.
        (32_000_204, 200_948, None, 87_585),
        counts_source="from the dataset README (rated-movie count not published)",
    ),
    "ml-latest-small": _csv_release(
        "ml-latest-small",
        978_202,
        "31a303aabbc519bd33d025e44d6c2570",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        (100_836, 610, 9_724, 9_742),
        counts_source="dataset README (2018 release) and shared/movielens/README.md",
    ),
}


def known_names(registry: Mapping[str, MovieLensDataset] | None = None) -> list[str]:
    """Names in the registry, sorted."""
    return sorted(DATASETS if registry is None else registry)


def get_dataset(
    name: str | MovieLensDataset, registry: Mapping[str, MovieLensDataset] | None = None
) -> MovieLensDataset:
    """Look a dataset up by name (an entry passes through unchanged).

    Args:
        name: Registry key such as ``"ml-100k"``, or a :class:`MovieLensDataset` to use as is
            (e.g. an official entry with another ``url``, for a mirror or a test server).
        registry: Registry to look in; the global :data:`DATASETS` by default.

    Returns:
        The registry entry.

    Raises:
        UnknownDatasetError: ``name`` is not registered (the message lists the known names).
    """
    if isinstance(name, MovieLensDataset):
        return name
    reg = DATASETS if registry is None else registry
    try:
        return reg[name]
    except (KeyError, TypeError):
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(known_names(reg))} "
            "(or register your own with rfm_recsys.datasets.register_dataset)"
        ) from None


def register_dataset(entry: MovieLensDataset, *, overwrite: bool = False) -> MovieLensDataset:
    """Add an entry to the global registry (e.g. a mirror, or a newer ml-latest-small).

    Args:
        entry: The dataset description; its ``name`` becomes the registry key.
        overwrite: Replace an existing entry of the same name instead of raising.

    Returns:
        The entry previously registered under that name, or ``entry`` itself if there was none,
        so a caller can restore it.

    Raises:
        ValueError: The name is taken and ``overwrite`` is false.
    """
    old = DATASETS.get(entry.name)
    if old is not None and not overwrite:
        raise ValueError(f"dataset {entry.name!r} is already registered; pass overwrite=True")
    DATASETS[entry.name] = entry
    return old if old is not None else entry


def default_data_home() -> Path:
    """The per-user default data home: ``$XDG_CACHE_HOME/rfm_recsys`` or ``~/.cache/rfm_recsys``."""
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "rfm_recsys"


def data_home(
    path: str | os.PathLike[str] | None = None, *, default: str | os.PathLike[str] | None = None
) -> Path:
    """Resolve the data home: the argument, else ``$RFM_RECSYS_DATA``, else a default.

    The folder is not created here (reading from a read-only home must work); the downloader
    creates it when it needs to write.

    Args:
        path: Explicit data home; wins over everything.
        default: Fallback when neither ``path`` nor the environment variable is set (the
            evaluation harness passes the repository's ``datasets/`` folder); the per-user cache
            folder :func:`default_data_home` when ``None``.

    Returns:
        The data home folder (``~`` expanded).
    """
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(DATA_HOME_ENV)
    if env:
        return Path(env).expanduser()
    if default is not None:
        return Path(default).expanduser()
    return default_data_home()
