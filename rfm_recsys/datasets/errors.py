"""Exceptions and warnings raised by the MovieLens loaders.

Every error derives from :class:`DatasetError`, so ``except DatasetError`` catches all of them; each
also derives from the built-in class a caller would naturally expect (``ValueError`` for bad
content, ``OSError`` for file-system and network trouble, ``FileNotFoundError`` for a missing
copy), so generic handlers keep working. Messages always name the problem *and* the fix.
"""

from __future__ import annotations

from pathlib import Path

from ..checks import RatingsError


class DatasetError(Exception):
    """Base class of every error raised by :mod:`rfm_recsys.datasets`."""


class UnknownDatasetError(DatasetError, ValueError):
    """A dataset name that is not in the registry (the message lists the known names)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No local copy of a dataset, and downloading was not allowed."""


class DataHomeError(DatasetError, OSError):
    """The data home cannot be created or written to."""


class DownloadError(DatasetError, OSError):
    """A download failed: offline, HTTP error, interrupted, or not a zip (e.g. an HTML page)."""


class ChecksumError(DatasetError, ValueError):
    """A file's size or checksum differs from the registry's published figure."""


class CorruptDatasetError(DatasetError, ValueError):
    """A local copy is damaged: truncated zip, HTML page saved as a zip, missing member."""


class MalformedLineError(CorruptDatasetError):
    """A line of a ratings or movies file cannot be parsed.

    Attributes:
        path: The file (or ``zip!member``) holding the line.
        line_number: 1-based line number in that file (a header counts as line 1).
        line: The offending line's text (truncated to 200 characters).
    """

    def __init__(self, message: str, path: str | Path, line_number: int, line: str) -> None:
        super().__init__(message)
        self.path = str(path)
        self.line_number = line_number
        self.line = line


class RatingsFrameError(DatasetError, RatingsError):
    """A ratings DataFrame given to a converter cannot be used as it is (missing column, NaN,
    non-numeric or out-of-scale ratings, missing ids, duplicate pairs).

    Also a :class:`rfm_recsys.RatingsError` (a ``ValueError``), the error the models raise for
    the same problems.
    """


class DatasetWarning(UserWarning):
    """Counts that differ from the official figures, or a download that could not be verified."""
