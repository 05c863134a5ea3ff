"""The ratings a comparison runs on and its folds: MovieLens, a generated set, or a CSV file."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from evaluation.movielens.specs import LARGE_RATINGS

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The harness's default data home (the ``RFM_RECSYS_DATA`` variable and ``--data-home`` win).
DEFAULT_DATA_HOME = REPO_ROOT / "datasets"
#: Shape of ``--dataset synthetic`` unless ``--synthetic-shape`` says otherwise.
SYNTHETIC_SHAPE = (300, 200, 12_000)
#: Releases ``--synthetic NAME`` can imitate.
SYNTHETIC_RELEASES = ("ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m")

_COLUMN_NAMES = {
    "userid": "user_id", "user": "user_id", "movieid": "item_id", "itemid": "item_id",
    "item": "item_id", "movie_id": "item_id",
}  # fmt: skip


def _dedupe(df, what: str):
    dup = df.duplicated(["user_id", "item_id"], keep="last")
    if dup.any():
        print(
            f"warning: {int(dup.sum()):,} repeated (user, item) pairs in {what}: "
            "keeping the last of each",
            file=sys.stderr,
        )
        df = df[~dup]
    return df


def resolve_data_home(path: str | None) -> Path:
    """``--data-home``, else ``$RFM_RECSYS_DATA``, else the repository's ``datasets/`` folder."""
    from rfm_recsys.datasets import data_home

    return data_home(path, default=DEFAULT_DATA_HOME)


def release_shape(name: str, scale: float = 1.0) -> dict[str, Any]:
    """Counts, rating scale and step of a MovieLens release, from the dataset registry.

    With ``scale < 1`` the ratings shrink by ``scale`` and users and items by its square root,
    so the density stays that of the release. A release whose number of distinct rated items
    is not published (ml-32m) uses the number of movies instead.
    """
    from rfm_recsys.datasets import get_dataset

    entry = get_dataset(name)
    items = entry.n_items if entry.n_items is not None else entry.n_movies
    if entry.n_users is None or items is None or entry.n_ratings is None:
        raise SystemExit(f"--synthetic {name}: the registry has no counts for it")
    root = math.sqrt(scale)
    return {
        "n_users": max(2, round(entry.n_users * root)),
        "n_items": max(2, round(items * root)),
        "n_ratings": max(4, round(entry.n_ratings * scale)),
        "rating_scale": tuple(entry.rating_scale),
        "rating_step": entry.rating_step,
    }


def _load_csv(args, info: dict) -> tuple[str, Any, int, tuple[float, float], dict]:
    import pandas as pd

    from rfm_recsys.datasets import to_surprise

    path = Path(args.ratings_csv)
    df = (
        pd.read_csv(path) if path.suffix == ".csv" else pd.read_csv(path, sep=None, engine="python")
    )
    df = df.rename(columns={c: _COLUMN_NAMES.get(c.lower().replace(" ", ""), c) for c in df})
    missing = {"user_id", "item_id", "rating"} - set(df.columns)
    if missing:
        raise SystemExit(f"{path}: columns {sorted(missing)} not found (have {list(df.columns)})")
    df = _dedupe(df, str(path))
    scale = (
        tuple(args.rating_scale)
        if args.rating_scale
        else (float(df.rating.min()), float(df.rating.max()))
    )
    label = args.dataset if args.dataset_given else path.stem
    info.update(source=str(path))
    return label, to_surprise(df, scale), len(df), scale, info


def _generate(args, info: dict) -> tuple[str, Any, int, tuple[float, float], dict]:
    from rfm_recsys.datasets import make_ratings, to_surprise

    if args.synthetic:
        s = release_shape(args.synthetic, args.synthetic_scale)
        nu, ni, nr = s["n_users"], s["n_items"], s["n_ratings"]
        kw = {"rating_scale": s["rating_scale"], "rating_step": s["rating_step"]}
        label = f"synthetic-{args.synthetic}"
    else:
        nu, ni, nr = args.synthetic_shape or SYNTHETIC_SHAPE
        kw, label = {}, "synthetic"
    df = make_ratings(nu, ni, nr, random_state=args.seed, **kw)
    scale = tuple(df.attrs["rating_scale"])
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    info.update(
        source=f"rfm_recsys.datasets.make_ratings({nu}, {ni}, {nr}{extra}, "
        f"random_state={args.seed})"
    )
    return label, to_surprise(df, scale), len(df), scale, info


def load_data(args) -> tuple[str, Any, int, tuple[float, float], dict]:
    """``(label, surprise Dataset or None for official folds, n_ratings, rating scale, info)``."""
    from rfm_recsys.datasets import load_movielens, to_surprise

    home = resolve_data_home(args.data_home)
    info: dict[str, Any] = {"data_home": str(home)}
    if args.ratings_csv:
        return _load_csv(args, info)
    if args.synthetic or args.dataset == "synthetic":
        return _generate(args, info)
    name = args.dataset
    if args.folds == "official":
        return name, None, 0, (1.0, 5.0), info
    df = load_movielens(name, data_home=home, download=not args.no_download)
    scale = tuple(df.attrs["rating_scale"])
    info.update(source=str(df.attrs.get("source", "")))
    return name, to_surprise(_dedupe(df, name), scale), len(df), scale, info


def default_folds(n_ratings: int, quick: bool) -> str:
    """One 90/10 holdout on large sets, else 5-fold (2 with ``--quick``)."""
    if n_ratings >= LARGE_RATINGS:
        return "holdout"
    return "2" if quick else "5"


def make_folds(args, dataset: str, data, home_info: dict) -> tuple[list, dict]:
    """The folds as ``[(trainset, testset), ...]`` and a description of the protocol."""
    from surprise.model_selection import KFold, PredefinedKFold, train_test_split

    if args.folds == "official":
        if dataset != "ml-100k":
            raise SystemExit("--folds official exists only for ml-100k (its u1..u5 files)")
        from rfm_recsys.datasets import ml100k_official_folds

        data, files = ml100k_official_folds(
            "u", data_home=home_info["data_home"], download=not args.no_download
        )
        folds = list(PredefinedKFold().split(data))
        return folds, {
            "folds": "ml-100k official u1..u5 (PredefinedKFold)",
            "fold_files": [list(f) for f in files],
        }
    if args.folds == "holdout":
        tr, te = train_test_split(data, test_size=0.1, random_state=args.seed)
        return [(tr, te)], {
            "folds": f"one 90/10 split (surprise train_test_split, random_state={args.seed})"
        }
    k = int(args.folds)
    folds = list(KFold(n_splits=k, random_state=args.seed, shuffle=True).split(data))
    return folds, {
        "folds": f"{k}-fold surprise KFold(n_splits={k}, random_state={args.seed}, shuffle=True)"
    }
