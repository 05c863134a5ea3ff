"""Shared fixtures: where the real MovieLens files are, and skipping cleanly when they are not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _movielens_home() -> Path | None:
    # CI exports RFM_RECSYS_DATA=../shared/movielens; a developer checkout has it beside the repo.
    candidates = [os.environ.get("RFM_RECSYS_DATA"), ROOT.parent / "shared" / "movielens"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def movielens_home() -> Path:
    home = _movielens_home()
    if home is None:
        pytest.skip(
            "real MovieLens files not found: set RFM_RECSYS_DATA to a folder holding ml-100k/ "
            "and ml-latest-small.zip (the project's CI uses ../shared/movielens)"
        )
    return home


@pytest.fixture(scope="session")
def ml100k_dir(movielens_home: Path) -> Path:
    d = movielens_home / "ml-100k"
    if not (d / "u.data").is_file():
        pytest.skip(f"{d}/u.data not found: unpack the official ml-100k.zip into {movielens_home}")
    return d
