"""MovieLens loaders, converters and a MovieLens-shaped synthetic generator.

Quick start::

    from rfm_recsys.datasets import load_movielens, load_movielens_items, to_surprise

    ratings = load_movielens("ml-1m")          # downloads once into the data home
    movies = load_movielens_items("ml-1m")     # item_id, title, year, genres
    data = to_surprise(ratings)                # rating scale taken from ratings.attrs

The data home is the ``data_home`` argument, else ``$RFM_RECSYS_DATA``, else
``~/.cache/rfm_recsys`` (``$XDG_CACHE_HOME`` respected). A dataset is read from
``<home>/<name>.zip`` or the unpacked ``<home>/<name>/`` folder.
"""

from .convert import ML100K_FOLDS, CSRRatings, ml100k_official_folds, to_csr, to_surprise
from .download import copy_into_home, download_movielens, file_digests, verify_file
from .errors import (
    ChecksumError,
    CorruptDatasetError,
    DataHomeError,
    DatasetError,
    DatasetNotFoundError,
    DatasetWarning,
    DownloadError,
    MalformedLineError,
    RatingsFrameError,
    UnknownDatasetError,
)
from .movielens import ITEM_COLUMNS, RATING_COLUMNS, load_movielens, load_movielens_items
from .registry import (
    DATA_HOME_ENV,
    DATASETS,
    MovieLensDataset,
    data_home,
    default_data_home,
    get_dataset,
    known_names,
    register_dataset,
)
from .synthetic import make_ratings, ml10m_shape

__all__ = [
    "DATASETS",
    "DATA_HOME_ENV",
    "ITEM_COLUMNS",
    "ML100K_FOLDS",
    "RATING_COLUMNS",
    "CSRRatings",
    "ChecksumError",
    "CorruptDatasetError",
    "DataHomeError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetWarning",
    "DownloadError",
    "MalformedLineError",
    "MovieLensDataset",
    "RatingsFrameError",
    "UnknownDatasetError",
    "copy_into_home",
    "data_home",
    "default_data_home",
    "download_movielens",
    "file_digests",
    "get_dataset",
    "known_names",
    "load_movielens",
    "load_movielens_items",
    "make_ratings",
    "ml10m_shape",
    "ml100k_official_folds",
    "register_dataset",
    "to_csr",
    "to_surprise",
    "verify_file",
]
