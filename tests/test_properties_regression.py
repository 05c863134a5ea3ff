"""Property tests: random hyperparameters of the regression and network estimators.

Every draw either fits (finite coefficients) or raises InvalidParameterError naming the
parameter; never another exception. Iteration counts are drawn small so each fit is quick: the
property is about checking values, not about long runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from evaluation.paper.deep_linear import DiagonalLinearNetwork, DLNCompletion
from evaluation.paper.regression import (
    BasisPursuitRegressor,
    IRLSRegressor,
    LassoRegressor,
    LinRFMRegressor,
)
from rfm_recsys.params import InvalidParameterError

PROPS = settings(max_examples=100, derandomize=True, database=None, deadline=None)

# Values of every kind a caller might pass by mistake (some are valid for some parameters).
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.just([1.0]),
    st.just(np.float32(0.5)),
    st.just(np.int64(3)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([10**400, -(10**400)]),
    st.sampled_from([-1, 0, 1, 2, 0.0, -0.5, 1e-300, 1e300]),
)
POS = st.floats(1e-6, 1e3)
NONNEG = st.one_of(st.just(0.0), POS)
ITERS = st.integers(1, 30)
FLAG = st.booleans()

# parameters whose arbitrary but valid values (e.g. 2**62) would make a legitimately long or
# huge fit (depth 2**62 is a list of 2**62 factors)
LONG = {"n_iter", "max_iter", "depth", "width"}

# Plausible settings (iteration counts small so each fit is quick).
SPACES = {
    LinRFMRegressor: dict(
        power=st.floats(0.05, 3.0),
        reg=NONNEG,
        n_iter=ITERS,
        tol=NONNEG,
        fit_intercept=FLAG,
        epsilon=st.floats(0.0, 0.99),
    ),
    IRLSRegressor: dict(
        p=st.floats(0.0, 1.99),
        gamma0=POS,
        eta=st.floats(1.0, 10.0),
        gamma_min=POS,
        n_iter=ITERS,
        tol=NONNEG,
        reg=NONNEG,
        fit_intercept=FLAG,
    ),
    BasisPursuitRegressor: dict(
        tol=st.floats(1e-10, 1e-3),
        fit_intercept=FLAG,
        method=st.sampled_from(["highs", "highs-ds", "highs-ipm"]),
    ),
    LassoRegressor: dict(alpha=NONNEG, max_iter=ITERS, tol=NONNEG, fit_intercept=FLAG),
    DiagonalLinearNetwork: dict(
        depth=st.integers(2, 4),
        init_scale=st.floats(1e-4, 1.0),
        lr=st.one_of(st.none(), st.floats(1e-4, 1.0)),
        step_scale=st.floats(0.01, 1.99),
        n_iter=ITERS,
        tol=NONNEG,
        fit_intercept=FLAG,
    ),
    DLNCompletion: dict(
        depth=st.integers(1, 4),
        width=st.one_of(st.none(), st.integers(1, 6)),
        init_scale=st.floats(1e-4, 1.0),
        lr=st.one_of(st.none(), st.floats(1e-4, 1.0)),
        step_scale=st.floats(0.01, 1.99),
        n_iter=ITERS,
        tol=NONNEG,
        log_every=st.integers(1, 10),
        random_state=st.one_of(st.none(), st.integers(0, 2**32)),
        dtype=st.sampled_from([np.float32, np.float64, "float32"]),
    ),
}


def _problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 12))
    beta = np.zeros(12)
    beta[[2, 7]] = [1.5, -2.0]
    return X, X @ beta


X, Y = _problem()
ROWS, COLS = np.nonzero(np.random.default_rng(1).random((6, 5)) < 0.7)
VALS = np.random.default_rng(2).standard_normal((6, 2)) @ np.random.default_rng(3).standard_normal(
    (2, 5)
)


def _fit(est):
    if isinstance(est, DLNCompletion):
        est.fit(ROWS, COLS, VALS[ROWS, COLS], VALS.shape)
        return est.completed()
    return est.fit(X, Y).coef_


@pytest.mark.parametrize("cls", list(SPACES), ids=lambda c: c.__name__)
@PROPS
@given(data=st.data())
def test_random_hyperparameters_fit_or_invalid_parameter_error(cls, data):
    # Plausible settings with at most one parameter replaced by an arbitrary value: the fit
    # works (finite output) or the error names exactly that parameter.
    space = SPACES[cls]
    # iteration counts and sizes always drawn (small): the defaults run up to 100,000 steps
    required = {k: v for k, v in space.items() if k in LONG}
    optional = {k: v for k, v in space.items() if k not in LONG}
    params = data.draw(st.fixed_dictionaries(required, optional=optional), label="params")
    bad = data.draw(st.sampled_from([None, *SPACES[cls]]), label="replaced")
    if bad is not None:
        junk = JUNK.filter(lambda v: not (bad in LONG and isinstance(v, int) and v > 100))
        params[bad] = data.draw(junk, label="value")
    est = cls(**params)
    try:
        out = _fit(est)
    except FloatingPointError as exc:
        # a fixed step so large that halving it 40 times does not help: the message says so
        assert params.get("lr") is not None and f"lr={params['lr']!r}" in str(exc), exc
        event("FloatingPointError naming lr")
        return
    except InvalidParameterError as exc:
        assert str(exc).startswith(f"{cls.__name__}: {bad} must be "), exc
        assert repr(params[bad]) in str(exc)
        event("InvalidParameterError")
        return
    assert np.all(np.isfinite(out)), f"{cls.__name__}({params}) fitted non-finite values"
    event("fitted" if bad is None else "fitted with an arbitrary value that is valid")


def test_integer_beyond_float_range_is_an_invalid_parameter():
    # the check used to convert with float() and raised OverflowError for these
    with pytest.raises(InvalidParameterError, match=r"alpha must be a finite real number >= 0"):
        LassoRegressor(alpha=10**400).fit(X, Y)
    with pytest.raises(InvalidParameterError, match=r"max_iter must be an integer >= 1"):
        LassoRegressor(max_iter=-(10**400)).fit(X, Y)
