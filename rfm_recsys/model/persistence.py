"""The :class:`~rfm_recsys.model.LinRFM` file format: one ``.npz`` of arrays plus one JSON string.

No pickle and no code: ``numpy.load(..., allow_pickle=False)`` reads every entry. The JSON entry
``meta`` holds the format name and version, the hyperparameters, and for a fitted model the
scalars of its :class:`~rfm_recsys.core.fitting.RatingsFit` and its history; the arrays are the
kernel's own (``K`` for the dense form; ``kernel_U``, ``kernel_s`` and scalars for the factored
one, version 2), the CSR parts of ``A``, the biases and the raw ids.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.fitting import RatingsFit
from ..core.kernels import kernel_from_arrays
from ..ids import Vocabulary

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "save_model"]

FORMAT = "rfm_recsys.LinRFM"
# 2: the factored kernel's arrays; version-1 files (dense "K") still load
FORMAT_VERSION = 2


def _npz_path(file):
    if isinstance(file, (str, os.PathLike)):
        file = os.fspath(file)
        if not file.endswith(".npz"):
            file += ".npz"
    return file


def save_model(model, file) -> None:
    """Write ``model`` (fitted or not) to ``file`` (a path, ``".npz"`` appended, or a file)."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "params": json_params(model.get_params()),
        "fitted": "fit_" in model.__dict__,
    }
    arrays: dict[str, np.ndarray] = {}
    if meta["fitted"]:
        f = model.fit_
        A = f.A
        arrays.update(f.kernel.to_arrays())
        arrays.update(
            A_data=A.data,
            A_indices=A.indices,
            A_indptr=A.indptr,
            b_user=np.asarray(f.b_user),
            b_item=np.asarray(f.b_item),
            user_ids=model.user_vocab_.storable("user"),
            item_ids=model.item_vocab_.storable("item"),
        )
        meta.update(
            mu=float(f.mu),
            users_are_rows=bool(f.users_are_rows),
            lam=float(f.lam),
            reg_user=float(f.reg_user),
            A_shape=[int(x) for x in A.shape],
            best_iteration=int(f.best_iteration),
            history=_json_history(f.history),
            fitted_on=model.fitted_on_,
        )
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
    np.savez(_npz_path(file), **arrays)


def load_model(cls, file):
    """A ``cls`` instance from a file written by :func:`save_model`."""
    with np.load(_npz_path(file), allow_pickle=False) as data:
        if "meta" not in data.files:
            raise ValueError("not a LinRFM file: no 'meta' entry (was it written by LinRFM.save?)")
        meta = json.loads(str(data["meta"][()]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a LinRFM file (format {meta.get('format')!r})")
        if meta.get("version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"file format version {meta['version']} is newer than this rfm_recsys "
                f"understands ({FORMAT_VERSION}): upgrade rfm_recsys"
            )
        params = dict(meta["params"])
        if params.get("rating_scale") is not None:
            params["rating_scale"] = tuple(params["rating_scale"])
        model = cls(**params)
        if meta["fitted"]:
            A = sp.csr_matrix(
                (data["A_data"], data["A_indices"], data["A_indptr"]),
                shape=tuple(meta["A_shape"]),
            )
            fit = RatingsFit(
                mu=float(meta["mu"]),
                b_user=data["b_user"],
                b_item=data["b_item"],
                users_are_rows=bool(meta["users_are_rows"]),
                kernel=kernel_from_arrays(data),
                A=A,
                lam=float(meta["lam"]),
                reg_user=float(meta["reg_user"]),
                history=_unjson_history(meta["history"]),
                best_iteration=int(meta["best_iteration"]),
            )
            users, items = Vocabulary(data["user_ids"]), Vocabulary(data["item_ids"])
            model._set_fitted(fit, users, items, meta["fitted_on"])
    return model


def json_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON values (a seed JSON cannot hold is dropped with a warning)."""
    out = {}
    for k, v in params.items():
        if k == "dtype":
            v = np.dtype(v).name
        elif k == "rating_scale" and v is not None:
            v = [float(x) for x in v]
        elif isinstance(v, np.generic):
            v = v.item()
        if k == "random_state" and not (v is None or isinstance(v, int)):
            warnings.warn(
                f"random_state={v!r} cannot be saved as JSON; the loaded model has "
                f"random_state=None",
                UserWarning,
                stacklevel=4,
            )
            v = None
        out[k] = v
    return out


def _json_history(history: list[dict]) -> list[dict]:
    def conv(v):
        if isinstance(v, (float, np.floating)):
            v = float(v)
            # strict JSON has no NaN; None means "not defined"
            return v if math.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    return [{k: conv(v) for k, v in rec.items()} for rec in history]


def _unjson_history(history: list[dict]) -> list[dict]:
    return [{k: (float("nan") if v is None else v) for k, v in rec.items()} for rec in history]
