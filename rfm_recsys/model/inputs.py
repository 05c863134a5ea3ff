"""Parsing of the rating inputs the models accept: DataFrames, sparse matrices, one user's ratings.

Each parser returns integer-coded triples (or raw item ids and values) and raises an error naming
the problem and the fix; the value checks proper (NaN, scale, duplicates) are
:func:`rfm_recsys.checks.check_triples`'.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..checks import RatingsError, check_triples
from ..ids import Vocabulary

__all__ = ["Triples", "new_user_ratings", "numeric_ratings", "ratings_triples", "row_entries"]

# (users, items, ratings, user vocabulary, item vocabulary, "dataframe" | "sparse")
Triples = tuple[np.ndarray, np.ndarray, np.ndarray, Vocabulary, Vocabulary, str]


def ratings_triples(ratings, user_col, item_col, rating_col) -> Triples:
    """Coded triples and vocabularies of a DataFrame of ratings or a sparse users x items matrix.

    Raises:
        RatingsError: unusable ratings (the message names the problem and the fix).
        TypeError: ``ratings`` is neither a DataFrame nor a scipy sparse matrix.
    """
    if isinstance(ratings, pd.DataFrame):
        return _triples_from_frame(ratings, user_col, item_col, rating_col)
    if sp.issparse(ratings):
        return _triples_from_sparse(ratings)
    kind = type(ratings).__name__
    hint = ""
    if isinstance(ratings, np.ndarray) and ratings.ndim == 2:
        hint = (
            " For a dense users x items array use scipy.sparse.csr_matrix(array) (zeros become "
            "missing ratings)."
        )
    raise TypeError(
        f"fit expects a pandas DataFrame with columns {user_col!r}, {item_col!r}, "
        f"{rating_col!r} or a scipy sparse users x items matrix of ratings, got {kind}.{hint}"
    )


def _triples_from_frame(df: pd.DataFrame, user_col, item_col, rating_col) -> Triples:
    cols = (user_col, item_col, rating_col)
    if len(set(cols)) < 3:
        raise ValueError(
            f"user_col, item_col and rating_col must be three different columns, got {cols}"
        )
    if len(df) == 0:
        raise RatingsError(
            "no ratings to fit: the DataFrame is empty; pass at least one rating per user and item"
        )
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise RatingsError(
            f"column(s) {missing} not found in the ratings; the DataFrame has columns "
            f"{list(df.columns)}. Name them with LinRFM(user_col=..., item_col=..., "
            f"rating_col=...) (now user_col={user_col!r}, item_col={item_col!r}, "
            f"rating_col={rating_col!r})"
        )
    values = numeric_ratings(df[rating_col], rating_col)
    users, user_vocab = Vocabulary.from_column(df[user_col], "user", user_col)
    items, item_vocab = Vocabulary.from_column(df[item_col], "item", item_col)
    return users, items, values, user_vocab, item_vocab, "dataframe"


def _triples_from_sparse(X) -> Triples:
    if X.ndim != 2:
        raise RatingsError(
            f"a sparse ratings matrix must be 2-d (users x items), got shape {X.shape}"
        )
    if X.dtype.kind not in "iuf":
        raise RatingsError(
            f"the sparse ratings matrix has dtype {X.dtype}; ratings must be integers or floats: "
            f"convert it with X.astype(np.float32)"
        )
    n_users, n_items = X.shape
    # tocoo keeps every stored entry, duplicates and explicit zeros included: both are data here.
    coo = X.tocoo()
    users = np.asarray(coo.row, dtype=np.int64)
    items = np.asarray(coo.col, dtype=np.int64)
    values = np.asarray(coo.data, dtype=np.float64)
    if values.size == 0:
        raise RatingsError(
            f"no ratings to fit: the {n_users} x {n_items} sparse matrix stores no entries; pass "
            f"at least one rating per user and item"
        )
    return users, items, values, Vocabulary.range(n_users), Vocabulary.range(n_items), "sparse"


def numeric_ratings(col: pd.Series, name: str) -> np.ndarray:
    """Ratings as float64; a non-numeric column is an error naming the first bad value."""
    if pd.api.types.is_bool_dtype(col.dtype) or not pd.api.types.is_numeric_dtype(col.dtype):
        as_num = pd.to_numeric(col, errors="coerce")
        bad = as_num.isna() & col.notna()
        example = ""
        if bad.any():
            k = int(np.flatnonzero(bad.to_numpy())[0])
            example = f" (e.g. {col.iloc[k]!r} at row {col.index[k]!r})"
        raise RatingsError(
            f"the rating column {name!r} must hold numbers but has dtype {col.dtype}{example}; "
            f"convert it first, e.g. df[{name!r}] = pd.to_numeric(df[{name!r}])"
        )
    # nullable dtypes (Int64, Float64) carry pd.NA: make it NaN so check_triples reports it
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def new_user_ratings(ratings, user_col, item_col, rating_col) -> tuple[np.ndarray, np.ndarray]:
    """Raw item ids and ratings of one new user (a DataFrame, a Series by item or a dict).

    Raises:
        RatingsError: missing columns, several users, non-numeric ratings.
        TypeError: any other type.
    """
    if isinstance(ratings, Mapping):
        ratings = pd.Series(ratings, dtype=object if len(ratings) == 0 else None)
    if isinstance(ratings, pd.DataFrame):
        missing = [c for c in (item_col, rating_col) if c not in ratings.columns]
        if missing:
            raise RatingsError(
                f"column(s) {missing} not found in the new user's ratings; it has columns "
                f"{list(ratings.columns)} (the model uses item_col={item_col!r}, "
                f"rating_col={rating_col!r})"
            )
        n_users = ratings[user_col].nunique(dropna=False) if user_col in ratings.columns else 1
        if n_users > 1:
            raise RatingsError(
                f"fold_in takes the ratings of one new user but column {user_col!r} holds "
                f"{n_users} users: call it once per user"
            )
        raw_items = ratings[item_col].to_numpy()
        values = numeric_ratings(ratings[rating_col], rating_col) if len(ratings) else np.empty(0)
    elif isinstance(ratings, pd.Series):
        raw_items = ratings.index.to_numpy()
        values = numeric_ratings(ratings, "ratings") if len(ratings) else np.empty(0)
    else:
        raise TypeError(
            f"fold_in expects a DataFrame with columns {item_col!r}, {rating_col!r}, a Series "
            f"indexed by item id or a dict item -> rating, got {type(ratings).__name__}"
        )
    return raw_items, values


def row_entries(
    M: sp.csr_matrix, r: int, scale, duplicates: str, scale_name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Checked (item codes, ratings) of row ``r`` of a users x items CSR matrix."""
    lo, hi = M.indptr[r], M.indptr[r + 1]
    items = np.asarray(M.indices[lo:hi], dtype=np.int64)
    values = np.asarray(M.data[lo:hi], dtype=np.float64)
    if values.size == 0:
        return items, values
    _, items, values = check_triples(
        np.zeros(items.size, dtype=np.int64),
        items,
        values,
        rating_scale=scale,
        duplicates=duplicates,
        scale_name=scale_name,
    )
    return items, values
