"""Rating timestamps through Surprise's datasets, folds and testsets.

Surprise keeps a timestamp as the 4th element of each raw rating (``(uid, iid, r, timestamp)``)
but drops it when it builds a ``Trainset`` or a testset. A model that uses the time of a rating
(the day of the rating in Bayesian timeSVD++ flipped,
:class:`rfm_recsys.baselines.bayesian_svdpp.BayesianSVDppAlgo`) gets it back through these
subclasses of Surprise's datasets, which override only the two methods that every Surprise
splitter (``KFold``, ``ShuffleSplit``, ``train_test_split``, ``LeaveOneOut``,
``PredefinedKFold``) and ``build_full_trainset`` call:

* ``construct_trainset`` builds Surprise's own ``Trainset`` and attaches ``trainset.timestamps``:
  the seconds since the epoch of every training rating (float64, NaN where a rating has none),
  in the order of ``trainset.all_ratings()`` (users by inner id, each user's ratings in the order
  of the raw ratings), or None when no rating has a timestamp.
* ``construct_testset`` returns a :class:`TimedTestset`: the usual list of ``(uid, iid, r)``
  triples with the timestamps of the test ratings beside it (the time of each request).

The raw ratings, and so the folds every splitter draws from them, are the same as without
timestamps: only the 4th element of each raw rating changes from None to the time. Every other
Surprise algorithm sees an ordinary ``Trainset`` (an extra attribute) and an ordinary list of
triples. A model reads the times with :func:`timestamps_of_trainset` and
:func:`timestamps_of_testset`, which return None for Surprise's own objects, so the same model works
on data without timestamps (its time terms are then off).

:func:`rfm_recsys.datasets.to_surprise` returns a :class:`TimedDatasetAutoFolds` (timestamps from
a ``timestamp`` column when the frame has one) and
:func:`rfm_recsys.datasets.ml100k_official_folds` a :class:`TimedDatasetUserFolds` (timestamps
from the fold files). Timestamps are numbers of seconds since the epoch (a raw value that is a
numeric string, as Surprise's ``Reader`` gives, is converted; a ``datetime`` too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, SupportsIndex, overload

import numpy as np
from surprise.dataset import DatasetAutoFolds, DatasetUserFolds
from surprise.trainset import Trainset


def _seconds(value: Any) -> float:
    """A raw timestamp as float seconds since the epoch; NaN for None or NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    stamp = getattr(value, "timestamp", None)  # datetime.datetime, pandas.Timestamp
    if callable(stamp):
        return float(stamp())
    raise ValueError(
        f"timestamp {value!r} ({type(value).__name__}) is neither a number of seconds since the "
        "epoch nor a datetime"
    )


def _raw_seconds(raw: Sequence[tuple]) -> np.ndarray | None:
    """The 4th elements of raw ratings as float64 seconds, or None when none has a timestamp."""
    if not any(r[3] is not None for r in raw):
        return None
    return np.fromiter((_seconds(r[3]) for r in raw), dtype=np.float64, count=len(raw))


class TimedTestset(list):
    """A Surprise testset (a list of ``(uid, iid, r)`` triples) with the ratings' timestamps.

    Attributes:
        timestamps: float64 seconds since the epoch of each triple (NaN where unknown), or None.

    Slicing keeps the timestamps of the slice; any other change to the list leaves
    ``timestamps`` as it was, and :func:`timestamps_of_testset` then ignores them (lengths differ).
    """

    def __init__(self, triples: Iterable[tuple] = (), timestamps: np.ndarray | None = None):
        super().__init__(triples)
        if timestamps is not None:
            timestamps = np.asarray(timestamps, dtype=np.float64)
            if timestamps.shape != (len(self),):
                raise ValueError(
                    f"{timestamps.size} timestamps for {len(self)} ratings: pass one per rating"
                )
        self.timestamps = timestamps

    @overload
    def __getitem__(self, key: SupportsIndex) -> tuple: ...

    @overload
    def __getitem__(self, key: slice) -> TimedTestset: ...

    def __getitem__(self, key):
        if isinstance(key, slice):
            times = self.timestamps[key] if timestamps_of_testset(self) is not None else None
            return TimedTestset(super().__getitem__(key), times)
        return super().__getitem__(key)


class _TimedDataset:
    """``construct_trainset``/``construct_testset`` that keep the raw ratings' timestamps."""

    def construct_trainset(self, raw_trainset: Sequence[tuple]) -> Trainset:
        trainset = super().construct_trainset(raw_trainset)  # type: ignore[misc]
        times = _raw_seconds(raw_trainset)
        if times is not None:
            # Surprise appends each rating to its user's list in raw order and numbers users by
            # first appearance, so a stable sort by inner user id is all_ratings()' order.
            inner = trainset._raw2inner_id_users
            users = np.fromiter(
                (inner[r[0]] for r in raw_trainset), dtype=np.int64, count=len(raw_trainset)
            )
            times = times[np.argsort(users, kind="stable")]
        trainset.timestamps = times
        return trainset

    def construct_testset(self, raw_testset: Sequence[tuple]) -> TimedTestset:
        return TimedTestset(
            ((ruid, riid, r) for (ruid, riid, r, _) in raw_testset), _raw_seconds(raw_testset)
        )


class TimedDatasetAutoFolds(_TimedDataset, DatasetAutoFolds):
    """Surprise's ``DatasetAutoFolds`` whose trainsets and testsets carry the timestamps.

    Build it as Surprise's (``ratings_file`` and a ``Reader`` with a timestamp field, or ``df``
    with three columns) or with ``timestamps``: one per row of ``df`` (None or NaN for a rating
    without one), stored as the 4th element of the raw ratings. Without any timestamp it behaves
    exactly as Surprise's class.
    """

    def __init__(
        self,
        ratings_file: str | None = None,
        reader: Any = None,
        df: Any = None,
        timestamps: Sequence[Any] | np.ndarray | None = None,
    ):
        super().__init__(ratings_file=ratings_file, reader=reader, df=df)
        if timestamps is None:
            return
        if df is None:
            raise ValueError("timestamps go with df (a ratings file holds its own)")
        times = list(timestamps.tolist() if isinstance(timestamps, np.ndarray) else timestamps)
        if len(times) != len(self.raw_ratings):
            raise ValueError(f"{len(times)} timestamps for {len(self.raw_ratings)} ratings")
        self.raw_ratings = [
            (u, i, r, None if t is None or t != t else t)
            for (u, i, r, _), t in zip(self.raw_ratings, times)
        ]


class TimedDatasetUserFolds(_TimedDataset, DatasetUserFolds):
    """Surprise's ``DatasetUserFolds`` (predefined fold files) whose folds carry the timestamps.

    The ``Reader`` needs a ``timestamp`` field in its ``line_format`` for the times to be read.
    """


def timestamps_of_trainset(trainset: Any) -> np.ndarray | None:
    """Seconds since the epoch of each training rating in ``all_ratings()`` order, or None.

    None for a ``Trainset`` built without timestamps (Surprise's own datasets, or ratings
    without times).
    """
    times = getattr(trainset, "timestamps", None)
    if times is None or np.shape(times) != (trainset.n_ratings,):
        return None
    return np.asarray(times, dtype=np.float64)


def timestamps_of_testset(testset: Any) -> np.ndarray | None:
    """Seconds since the epoch of each rating of a :class:`TimedTestset`, or None.

    None for a plain list of triples, and for a :class:`TimedTestset` changed after it was built
    (its length no longer that of its timestamps).
    """
    times = getattr(testset, "timestamps", None)
    if times is None or np.shape(times) != (len(testset),):
        return None
    return np.asarray(times, dtype=np.float64)
