"""The :class:`~rfm_recsys.model.LinRFM` file format, on :mod:`rfm_recsys.fileformat`.

No pickle and no code: the file is an ``.npz`` that ``numpy.load(..., allow_pickle=False)``
opens, with a checksum over the whole file and a sha256 per array, written atomically (a failed
or interrupted save leaves the previous file at that path intact). The metadata holds the
hyperparameters and, for a fitted model, the scalars of its
:class:`~rfm_recsys.core.fitting.RatingsFit` and its history; the arrays are the kernel's own
(``K`` for the dense form; ``kernel_U``, ``kernel_s`` and scalars for the factored one), the CSR
parts of ``A``, the biases and the raw ids. A damaged, truncated, foreign or too-new file raises
:class:`~rfm_recsys.fileformat.ModelFileError` naming the file and the problem.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.fitting import RatingsFit
from ..core.kernels import kernel_from_arrays
from ..fileformat import ModelFileError, load_checked, npz_path, write_model_file
from ..ids import Vocabulary

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load_model", "save_model"]

FORMAT = "rfm_recsys.LinRFM"
# 2: the checked container of rfm_recsys.fileformat and the factored kernel's arrays (1 was a
# bare np.savez of the dense kernel)
FORMAT_VERSION = 2

_FITTED_ARRAYS = ("A_data", "A_indices", "A_indptr", "b_user", "b_item", "user_ids", "item_ids")


def save_model(model, file) -> None:
    """Write ``model`` (fitted or not) to ``file`` (a path, ``".npz"`` appended, or a file)."""
    meta: dict[str, Any] = {
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
            rating_range=[float(x) for x in model.rating_range_],
        )
    write_model_file(npz_path(file), arrays, meta, format=FORMAT, version=FORMAT_VERSION)


def load_model(cls, file):
    """A ``cls`` instance from a file written by :func:`save_model`.

    Raises:
        ModelFileError: the file is damaged, truncated, not a LinRFM file or too new.
    """
    return load_checked(
        npz_path(file),
        lambda arrays, meta: _build(cls, arrays, meta),
        format=FORMAT,
        max_version=FORMAT_VERSION,
        what="LinRFM",
    )


def _build(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]):
    params = dict(meta["params"])
    if params.get("rating_scale") is not None:
        params["rating_scale"] = tuple(params["rating_scale"])
    model = cls(**params)
    if not meta["fitted"]:
        return model
    missing = [k for k in _FITTED_ARRAYS if k not in arrays]
    if missing:
        raise KeyError(f"arrays {missing} are missing")
    A = sp.csr_matrix(
        (arrays["A_data"], arrays["A_indices"], arrays["A_indptr"]),
        shape=tuple(meta["A_shape"]),
    )
    fit = RatingsFit(
        mu=float(meta["mu"]),
        b_user=arrays["b_user"],
        b_item=arrays["b_item"],
        users_are_rows=bool(meta["users_are_rows"]),
        kernel=kernel_from_arrays(arrays),
        A=A,
        lam=float(meta["lam"]),
        reg_user=float(meta["reg_user"]),
        history=_unjson_history(meta["history"]),
        best_iteration=int(meta["best_iteration"]),
    )
    users, items = Vocabulary(arrays["user_ids"]), Vocabulary(arrays["item_ids"])
    lo, hi = (float(x) for x in meta["rating_range"])
    model._set_fitted(fit, users, items, meta["fitted_on"], (lo, hi))
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
