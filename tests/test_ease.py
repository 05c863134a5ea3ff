"""EASE: the closed form against per-item constrained least squares, and implicit's contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from model_mixin import RecommenderContract

from rfm_recsys.baselines.ease import EASE, ease_weights
from rfm_recsys.params import InvalidParameterError


@pytest.mark.parametrize("shape", [(40, 12), (12, 30)])
def test_closed_form_equals_per_item_ridge_without_self(shape):
    """Column j of B is the ridge regression of item j on all other items (B_jj = 0).

    More users than items goes through the d x d inverse, fewer through Woodbury.
    """
    rng = np.random.default_rng(0)
    X = (rng.random(shape) < 0.3).astype(float)
    lam = 3.0
    B = ease_weights(sp.csr_matrix(X), lam)
    for j in range(X.shape[1]):
        others = np.delete(np.arange(X.shape[1]), j)
        A = X[:, others]
        b = np.linalg.solve(A.T @ A + lam * np.eye(others.size), A.T @ X[:, j])
        np.testing.assert_allclose(B[others, j], b, rtol=1e-4, atol=1e-6)
        assert B[j, j] == 0


def test_values_are_binarised():
    rng = np.random.default_rng(1)
    X = sp.random(30, 10, density=0.3, random_state=rng, format="csr")
    Xb = X.copy()
    Xb.data[:] = 1.0
    a = EASE(ridge=2.0).fit(X * 5)
    b = EASE(ridge=2.0).fit(Xb)
    np.testing.assert_array_equal(a.item_weights_, b.item_weights_)


@pytest.mark.parametrize("ridge", [0.0, -5.0, "big", None])
def test_bad_ridge_raises(ridge):
    with pytest.raises(InvalidParameterError, match="ridge"):
        EASE(ridge=ridge).fit(sp.eye(3, format="csr"))


class TestEASEContract(RecommenderContract):
    def make_model(self, **params):
        return EASE(**{"ridge": 5.0, **params})
