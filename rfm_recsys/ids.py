"""Maps between raw ids (any hashable values) and the inner codes ``0..n-1`` the numerics use.

:class:`Vocabulary` is one side's map (users or items), in the spirit of LensKit's: built once
at ``fit`` from a column of raw ids (or as ``arange(n)`` for a matrix whose ids are its indices),
it turns raw ids into codes (-1 for unknown) and codes back into raw ids.
"""

from __future__ import annotations

import contextlib
import numbers
import threading

import numpy as np
import pandas as pd

from .checks import RatingsError

__all__ = ["Vocabulary", "as_id_array", "broadcast_ids", "check_id_types"]

_INDEX_LOCK = threading.Lock()


def as_id_array(x) -> np.ndarray:
    """Raw ids as a numpy array, keeping mixed-type lists as objects (``["a", 1]`` stays so)."""
    if isinstance(x, (pd.Series, pd.Index)):
        return x.to_numpy()
    arr = np.asarray(x)
    if (
        arr.dtype.kind in "US"
        and arr.ndim == 1
        and isinstance(x, (list, tuple))
        and not all(isinstance(v, str) for v in x)
    ):
        # numpy would turn ["a", 1] into two strings and so lose the integer id 1
        arr = np.empty(len(x), dtype=object)
        arr[:] = x
    return arr


def broadcast_ids(users, items) -> tuple[np.ndarray, np.ndarray]:
    """User and item ids as arrays of one shape: a single id on either side is repeated.

    Raises:
        ValueError: both are sequences, of different shapes (numpy would broadcast a
            one-element list silently).
    """
    u, i = as_id_array(users), as_id_array(items)
    if u.ndim and i.ndim and u.shape != i.shape:
        raise ValueError(
            f"users and items must have one shape, or one of them be a single id; got shapes "
            f"{u.shape} and {i.shape}: pass one user and one item per pair"
        )
    return tuple(np.broadcast_arrays(u, i))


# pandas' names for an object column whose values are of more than one kind
_MIXED_KINDS = ("mixed", "mixed-integer")


def check_id_types(values, what: str, name: str) -> None:
    """Refuse a column of ids that mixes types (``1`` and ``"1"`` would be two ids).

    Raises:
        RatingsError: the message names the types found and the fix (cast the column).
    """
    if pd.api.types.infer_dtype(values, skipna=True) not in _MIXED_KINDS:
        return  # one kind throughout (pandas' C scan): the common case costs nothing more
    kinds = {_id_kind(v) for v in pd.Series(values).dropna()}
    if len(kinds) <= 1:
        return  # e.g. tuples throughout, or ints next to floats (1 and 1.0 are one id)
    types = sorted({type(v).__name__ for v in pd.Series(values).dropna()})
    raise RatingsError(
        f"the {what} id column {name!r} mixes id types ({', '.join(types)}): equal-looking ids "
        f"such as 1 and '1' would be different {what}s. Cast the column to one type first, "
        f"e.g. df[{name!r}] = df[{name!r}].astype(str)"
    )


def _id_kind(value) -> str:
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return "number"
    return type(value).__name__


class Vocabulary:
    """The raw ids of one side, in code order; ``numbers`` and ``terms`` map both ways.

    Args:
        ids: the raw id of each code (numbers stay numbers, strings become a unicode array).
    """

    def __init__(self, ids):
        self._ids = _clean_ids(ids)

    @classmethod
    def from_column(cls, col: pd.Series, what: str, name: str) -> tuple[np.ndarray, Vocabulary]:
        """Codes of a column of raw ids and its vocabulary (sorted when the ids are sortable).

        Raises:
            RatingsError: the column has missing ids (the message names the first row) or mixes
                id types.
        """
        if col.dtype == object:
            check_id_types(col, what, name)
        try:
            codes, uniques = pd.factorize(col, sort=True)
        except TypeError:  # mixed types that do not sort: order of first appearance
            codes, uniques = pd.factorize(col, sort=False)
        missing = codes < 0
        if missing.any():
            k = int(np.flatnonzero(missing)[0])
            raise RatingsError(
                f"{int(missing.sum()):,} rows have a missing {what} id in column {name!r} (first "
                f"at row {col.index[k]!r}); drop them first, e.g. df.dropna(subset=[{name!r}])"
            )
        return codes.astype(np.int64), cls(uniques)

    @classmethod
    def range(cls, n: int) -> Vocabulary:
        """Ids ``0..n-1`` (int32, as implicit's): for a matrix whose ids are its indices."""
        return cls(np.arange(n, dtype=np.int32))

    def __len__(self) -> int:
        return len(self._ids)

    def __getstate__(self) -> dict:
        return {"_ids": self._ids}  # the pandas index is rebuilt on demand

    @property
    def ids(self) -> np.ndarray:
        """The raw id of each code."""
        return self._ids

    @property
    def index(self) -> pd.Index:
        """The ids as a pandas Index (built on first use)."""
        index = self.__dict__.get("_index")
        if index is None:
            with _INDEX_LOCK:
                index = self.__dict__.get("_index")
                if index is None:
                    index = pd.Index(self._ids)
                    # pandas fills an index's hash table on its first lookup; do that here,
                    # under the lock, so concurrent first lookups never share the filling.
                    with contextlib.suppress(TypeError, ValueError):  # see numbers()
                        index.get_indexer(index[:1])
                    self._index = index
        return index

    def numbers(self, ids) -> np.ndarray:
        """Codes of raw ids (flattened); -1 for ids not in the vocabulary."""
        arr = as_id_array(ids).ravel()
        if arr.size == 0:
            return np.empty(0, dtype=np.int64)
        try:
            return np.asarray(self.index.get_indexer(arr), dtype=np.int64)
        except (TypeError, ValueError):
            # ids of a type the index cannot compare with (e.g. unhashable): all unknown
            return np.full(arr.size, -1, dtype=np.int64)

    def terms(self, codes: np.ndarray) -> np.ndarray:
        """Raw ids of codes (all must be valid)."""
        return self._ids[np.asarray(codes)]

    def storable(self, what: str) -> np.ndarray:
        """The ids as an array ``numpy.save`` writes without pickle.

        Raises:
            TypeError: the ids are Python objects (the message says how to map them first).
        """
        if self._ids.dtype.kind in "iufUSb":
            return self._ids
        kinds = sorted({type(x).__name__ for x in self._ids[:1000]})
        raise TypeError(
            f"the {what} ids are Python objects of types {kinds}, which cannot be saved without "
            f"pickle: map them to integers or strings before fitting (e.g. df[col].astype(str))"
        )


def _clean_ids(uniques) -> np.ndarray:
    """A plain numpy array of raw ids: numbers stay numbers, strings become a unicode array."""
    arr = np.asarray(uniques)
    if arr.dtype.kind == "O" and arr.size:
        if all(isinstance(x, str) for x in arr):
            return arr.astype(str)
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in arr):
            try:
                return arr.astype(np.int64)
            except OverflowError:
                return arr
    if arr.dtype.kind == "O" and arr.size == 0:
        return arr.astype(str)
    return arr
