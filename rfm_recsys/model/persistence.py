"""The :class:`~rfm_recsys.LinRFM` and :class:`~rfm_recsys.KernelRFM` file format, on
:mod:`rfm_recsys.fileformat`.

No pickle and no code: the file is an ``.npz`` that ``numpy.load(..., allow_pickle=False)``
opens, with a checksum over the whole file and a sha256 per array, written atomically (a failed
or interrupted save leaves the previous file at that path intact). The metadata holds the
hyperparameters and, for a fitted model, the scalars of its
:class:`~rfm_recsys.fitting.RatingsFit` and its history; the arrays are the kernel's own
(``K`` for the dense form; ``kernel_U``, ``kernel_s`` and scalars for the factored one), the CSR
parts of ``A``, the biases and the raw ids. A damaged, truncated, foreign or too-new file raises
:class:`~rfm_recsys.fileformat.ModelFileError` naming the file and the problem.

Files of format version 2 were written by ``LinRFM`` before kernel RFM got its own class and
the hyperparameters their present names: a version-2 file with the kernel step on loads into
:class:`~rfm_recsys.KernelRFM`, one without into :class:`~rfm_recsys.LinRFM`, with the names
translated (:data:`RENAMED`); the other class refuses it and names the one that loads it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.kernel_forms import kernel_from_arrays
from ..fileformat import ModelFileError, file_label, load_checked, npz_path, write_model_file
from ..fitting import RatingsFit
from ..ids import Vocabulary

__all__ = [
    "FORMAT_VERSION",
    "RENAMED",
    "ModelFileError",
    "json_params",
    "load_model",
    "renamed_params",
    "save_model",
]

# 3: one class per model (format "rfm_recsys.LinRFM" or "rfm_recsys.KernelRFM") and the
# hyperparameters' present names; 2: the checked container of rfm_recsys.fileformat and the
# factored kernel's arrays, LinRFM with or without the kernel step (1 was a bare np.savez of the
# dense kernel)
FORMAT_VERSION = 3
# Both classes read both formats, so that a file of the other class is refused by name (and a
# version-2 "rfm_recsys.LinRFM" file may hold a KernelRFM).
_FORMATS = ("rfm_recsys.LinRFM", "rfm_recsys.KernelRFM")

#: Old name -> present name of the hyperparameters renamed when the package took one
#: vocabulary (``reg_user`` and ``reg_item`` became the one ``bias_ridge``).
RENAMED = {
    "n_iter": "n_updates",
    "lam": "ridge",
    "baseline_epochs": "n_bias_sweeps",
    "implicit": "co_rating",
    "kernel_updates": "n_kernel_updates",
    "kernel_lam": "kernel_ridge",
    "n_power_iter": "n_power_passes",
    "reg_user": "bias_ridge",
}
_STEP_PARAMS = ("kernel", "bandwidth", "co_rating", "kernel_ridge", "n_kernel_updates")


def renamed_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters of a file written before the rename, under their present names.

    Raises:
        ValueError: user and item bias penalties that differ (one ``bias_ridge`` holds both).
    """
    params = dict(params)
    reg_item = params.pop("reg_item", params.get("reg_user"))
    if reg_item != params.get("reg_user"):
        raise ValueError(
            f"reg_user={params.get('reg_user')} and reg_item={reg_item} differ, and the one "
            f"bias_ridge of this version cannot hold both: refit the model"
        )
    return {RENAMED.get(k, k): v for k, v in params.items()}


_FITTED_ARRAYS = ("A_data", "A_indices", "A_indptr", "b_user", "b_item", "user_ids", "item_ids")


def save_model(model, file) -> None:
    """Write ``model`` (fitted or not) to ``file`` (a path, ``".npz"`` appended, or a file)."""
    meta: dict[str, Any] = {
        "class": type(model).__name__,
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
            ridge=float(f.ridge),
            bias_ridge=float(f.bias_ridge),
            A_shape=[int(x) for x in A.shape],
            best_iteration=int(f.best_iteration),
            history=_json_history(f.history),
            fitted_on=model.fitted_on_,
            rating_range=[float(x) for x in model.rating_range_],
        )
    write_model_file(npz_path(file), arrays, meta, format=model._format, version=FORMAT_VERSION)


def load_model(cls, file):
    """A ``cls`` instance from a file written by :func:`save_model`.

    Raises:
        ModelFileError: the file is damaged, truncated, of another model class (the message
            names the class that loads it) or too new.
    """
    path = npz_path(file)
    return load_checked(
        path,
        lambda arrays, meta, version: _build(cls, arrays, meta, version, path),
        format=_FORMATS,
        max_version=FORMAT_VERSION,
        what=cls.__name__,
    )


def _stored_class(meta: dict[str, Any], version: int) -> str:
    """The class a file holds: named in it, or for version 2 by its kernel step."""
    if version >= 3:
        return str(meta["class"])
    p = renamed_params(meta["params"])
    plain = (
        p.get("kernel", "linear") == "linear"
        and not p.get("co_rating")
        and not p.get("n_kernel_updates")
        and p.get("kernel_ridge") is None
    )
    return "LinRFM" if plain else "KernelRFM"


def _params(cls, meta: dict[str, Any], version: int) -> dict[str, Any]:
    params = dict(meta["params"])
    if version >= 3:
        return params
    # version 2 fitted every row directly: the loaded model says so
    params = {**renamed_params(params), "solve_tol": None}
    names = set(cls.config.names())
    # a version-2 plain file has the kernel step's (neutral) parameters, which LinRFM lacks
    return {k: v for k, v in params.items() if k in names or k not in _STEP_PARAMS}


def _build(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], version: int, file):
    stored = _stored_class(meta, version)
    if stored != cls.__name__:
        old = " (written by LinRFM before kernel RFM got its own class)" if version < 3 else ""
        raise ModelFileError(
            file_label(file),
            f"the file holds a {stored} model{old}, not a {cls.__name__}: load it with "
            f"rfm_recsys.{stored}.load(...)",
        )
    params = _params(cls, meta, version)
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
        ridge=float(meta["ridge" if version >= 3 else "lam"]),
        bias_ridge=float(meta["bias_ridge" if version >= 3 else "reg_user"]),
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
