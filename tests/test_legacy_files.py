"""Model files written before the package took its present names load into the right class.

The files in tests/data were written by rfm_recsys 0.1 (commit 9881642) from the synthetic
ratings of model_mixin.synthetic_ratings (no MovieLens data): ``LinRFM`` files of format
version 2, with and without the kernel step, and ``ImplicitLinRFM`` / ``EASE`` files of version 1.
The models behind them are the same as today's (the renames changed no model), so a loaded file
predicts exactly what a model fitted now with the translated parameters predicts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from model_mixin import synthetic_ratings

from rfm_recsys import EASE, ImplicitLinRFM, KernelRFM, LinRFM, ModelFileError
from rfm_recsys.fileformat import read_model_file

DATA = Path(__file__).parent / "data"
TRAIN = synthetic_ratings().train


def _pairs():
    return TRAIN.user_id.to_numpy(), TRAIN.item_id.to_numpy()


@pytest.mark.parametrize(
    "name, cls, params",
    [
        ("linrfm_v2_plain", LinRFM, {"random_state": 0}),
        ("linrfm_v2_plain_rank8", LinRFM, {"rank": 8, "bias_ridge": 3.0, "random_state": 0}),
        ("linrfm_v2_kernel_step", KernelRFM, {"random_state": 0}),
    ],
)
def test_version_2_files_load_into_the_right_class(name, cls, params):
    # version 2 fitted every row directly: the loaded model's solve_tol says so
    params = {**params, "solve_tol": None}
    loaded = cls.load(DATA / f"{name}.npz")
    assert type(loaded) is cls
    assert loaded.get_params() == cls(**params).get_params()
    # it predicts what the file holds: biases plus the completion A K, read from its arrays
    arrays, meta, _ = read_model_file(
        DATA / f"{name}.npz", format="rfm_recsys.LinRFM", max_version=2
    )
    u, i = _pairs()
    uc = np.searchsorted(arrays["user_ids"], u)
    ic = np.searchsorted(arrays["item_ids"], i)
    A = sp.csr_matrix(
        (arrays["A_data"], arrays["A_indices"], arrays["A_indptr"]), shape=tuple(meta["A_shape"])
    ).astype(np.float64)
    if "K" in arrays:
        K = arrays["K"].astype(np.float64)
    else:
        U = arrays["kernel_U"].astype(np.float64)
        K = U @ np.diag(arrays["kernel_s"].astype(np.float64)) @ U.T
        K[np.diag_indices_from(K)] += arrays["kernel_eps"]
    rows, cols = (uc, ic) if meta["users_are_rows"] else (ic, uc)
    W = (A @ K)[rows, cols]
    expected = meta["mu"] + arrays["b_user"][uc] + arrays["b_item"][ic] + W
    lo, hi = meta["rating_range"]
    np.testing.assert_allclose(loaded.predict(u, i), np.clip(expected, lo, hi), atol=1e-5)
    # and a fit today with the translated parameters is the same model (the direct solves;
    # the factored form's first subspace has since gained power passes: close, not equal)
    fresh = cls(**params).fit(TRAIN)
    if "K" in arrays:
        np.testing.assert_array_equal(loaded.predict(u, i), fresh.predict(u, i))
    else:
        np.testing.assert_allclose(loaded.predict(u, i), fresh.predict(u, i), atol=0.05)
    assert loaded.fit_.bias_ridge == fresh.fit_.bias_ridge
    assert loaded.fit_.ridge == fresh.fit_.ridge


@pytest.mark.parametrize(
    "name, cls, other",
    [("linrfm_v2_kernel_step", LinRFM, "KernelRFM"), ("linrfm_v2_plain", KernelRFM, "LinRFM")],
)
def test_the_other_class_refuses_and_names_the_one_that_loads(name, cls, other, tmp_path):
    with pytest.raises(ModelFileError, match=rf"holds a {other} model .*rfm_recsys\.{other}\.load"):
        cls.load(DATA / f"{name}.npz")
    # files written today say which class they hold too
    path = tmp_path / "today.npz"
    (KernelRFM if other == "KernelRFM" else LinRFM)(n_updates=1).save(path)
    with pytest.raises(ModelFileError, match=rf"holds a {other} model, not a {cls.__name__}"):
        cls.load(path)


def test_two_bias_ridges_cannot_be_translated_and_say_refit():
    with pytest.raises(ModelFileError, match=r"reg_user=3.0 and reg_item=4.0 differ.*refit"):
        LinRFM.load(DATA / "linrfm_v2_two_bias_ridges.npz")


def test_implicit_feedback_files_of_version_1_load_with_present_names():
    X = sp.csr_matrix(
        (TRAIN.rating.to_numpy(), (TRAIN.user_id - TRAIN.user_id.min(), TRAIN.item_id - 5000))
    )
    model = ImplicitLinRFM.load(DATA / "implicit_linrfm_v1.npz")
    # rank=None of version 1 meant what "auto" means now
    assert (model.n_updates, model.ridge, model.rank) == (2, 10.0, "auto")
    fresh = ImplicitLinRFM(n_updates=2, ridge=10.0).fit(X)
    np.testing.assert_array_equal(model.recommend(0, X[0])[0], fresh.recommend(0, X[0])[0])
    ease = EASE.load(DATA / "ease_v1.npz")
    assert ease.ridge == 50.0
    np.testing.assert_array_equal(ease.item_weights_, EASE(ridge=50.0).fit(X).item_weights_)
