"""Property tests on the models' public entry points: hyperparameters, rating data, model files.

Every generated case either works (finite predictions, inside the clipping range) or raises one
of the documented errors: InvalidParameterError naming the parameter that was set wrong,
RatingsError for bad ratings, ModelFileError for a bad file. Examples are derandomised and
bounded so the run is quick and the same every time.
"""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from model_mixin import synthetic_ratings
from surprise import Dataset, Reader
from test_properties_datasets import rating_frames

from rfm_recsys import (
    ALSAlgo,
    EngineMemoryError,
    InvalidParameterError,
    IRLSAlgo,
    KernelRFM,
    KernelRFMAlgo,
    LinRFM,
    LinRFMAlgo,
    ModelFileError,
    RatingsError,
    UnknownIdError,
    fileformat,
)
from rfm_recsys.datasets import to_surprise

PROPS = settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

DATA = synthetic_ratings(n_users=24, n_items=30, density=0.5)
TRAIN = DATA.train
TESTSET = list(DATA.test[["user_id", "item_id", "rating"]].itertuples(index=False))
TRAINSET = Dataset.load_from_df(TRAIN, Reader(rating_scale=(1, 5))).build_full_trainset()

# ---------------------------------------------------------------------------- hyperparameters

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.just([1.0, 2.0]),
    st.just(np.float32(0.5)),
    st.just(np.int64(3)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([10**400, -(10**400)]),
    st.sampled_from([-1, 0, 1, 2, 0.0, -0.5, 0.5, 1e-300, 1e300]),
)
# parameters whose arbitrary but valid values would make a (legitimately) long or huge fit
LONG = {"n_updates", "n_kernel_updates", "n_bias_sweeps", "n_sweeps", "rank", "patience"}
SEED = st.one_of(st.none(), st.integers(0, 2**32), st.builds(np.random.default_rng))
DTYPE = st.sampled_from(["float32", "float64", np.float32, np.dtype("float64")])

SHARED = dict(
    orient=st.sampled_from(["auto", "users", "items"]),
    bias_ridge=st.floats(0, 50),
    n_bias_sweeps=st.integers(0, 12),
    dtype=DTYPE,
    tol=st.one_of(st.none(), st.floats(0, 1)),
    solve_tol=st.one_of(st.none(), st.floats(1e-8, 1.0)),
    validation_share=st.one_of(st.just(0.0), st.floats(0.05, 0.5)),
    patience=st.integers(1, 3),
    duplicates=st.sampled_from(["raise", "mean", "last"]),
    random_state=SEED,
    max_memory=st.one_of(st.none(), st.integers(10**8, 10**10)),
    verbose=st.just(False),
)
LINRFM = dict(
    n_updates=st.integers(0, 4),
    ridge=st.floats(1e-3, 100),
    power=st.floats(0.2, 3.0),
    rank=st.one_of(st.none(), st.just("auto"), st.integers(1, 40)),
    # the dask backend starts a cluster per fit: its own tests (test_dask_backend.py) cover it
    backend=st.just("threads"),
    **SHARED,
)
KERNEL_STEP = dict(
    kernel=st.sampled_from(["linear", "gaussian", "laplace"]),
    bandwidth=st.floats(0.3, 5.0),
    co_rating=st.floats(0, 4),
    n_kernel_updates=st.integers(0, 2),
    kernel_ridge=st.one_of(st.none(), st.floats(0.1, 20)),
)
FRAME = dict(
    user_col=st.just("user_id"),
    item_col=st.just("item_id"),
    rating_col=st.just("rating"),
    rating_scale=st.sampled_from([None, (1, 5), (0.5, 5.5), (0.0, 10.0)]),
    clip=st.booleans(),
)
SPACES = {
    LinRFM: {**LINRFM, **FRAME},
    LinRFMAlgo: LINRFM,
    KernelRFM: {**LINRFM, **KERNEL_STEP, **FRAME},
    # orient="both" averages two fits: KernelRFMAlgo only (KernelRFM refuses it)
    KernelRFMAlgo: {
        **LINRFM,
        **KERNEL_STEP,
        "orient": st.sampled_from(["auto", "users", "items", "both"]),
    },
    IRLSAlgo: dict(
        p=st.floats(0, 1),
        n_updates=st.integers(0, 4),
        ridge=st.floats(1e-3, 100),
        gamma0=st.floats(1e-4, 1),
        eta=st.floats(1, 3),
        gamma_min=st.floats(0, 1e-6),
        **SHARED,
    ),
    ALSAlgo: dict(
        rank=st.integers(1, 8),
        ridge=st.floats(0, 1),
        bias_ridge=st.floats(0, 5),
        n_sweeps=st.integers(0, 5),
        init_std=st.floats(0, 0.5),
        dtype=DTYPE,
        random_state=SEED,
        verbose=st.just(False),
    ),
}


def test_spaces_cover_every_parameter():
    for cls, space in SPACES.items():
        assert set(space) == set(cls().get_params()), cls.__name__


def _predictions(model) -> np.ndarray:
    if isinstance(model, (LinRFM, KernelRFM)):
        model.fit(TRAIN)
        return np.asarray(model.predict(DATA.test.user_id, DATA.test.item_id))
    model.fit(TRAINSET)
    return np.array([p.est for p in model.test(TESTSET)])


@pytest.mark.parametrize("cls", list(SPACES), ids=lambda c: c.__name__)
@PROPS
@given(data=st.data())
def test_random_hyperparameters_fit_or_invalid_parameter_error(cls, data):
    # Plausible settings with at most one parameter replaced by an arbitrary value: the fit
    # works or the error names exactly that parameter.
    space = SPACES[cls]
    required = {k: v for k, v in space.items() if k in LONG}
    optional = {k: v for k, v in space.items() if k not in LONG}
    params = data.draw(st.fixed_dictionaries(required, optional=optional), label="params")
    bad = data.draw(st.sampled_from([None, *space]), label="replaced")
    if bad is not None:
        junk = JUNK.filter(lambda v: not (bad in LONG and isinstance(v, int) and v > 50))
        params[bad] = data.draw(junk, label="value")
    model = cls(**params)
    try:
        est = _predictions(model)
    except InvalidParameterError as exc:
        assert str(exc).startswith(f"{cls.__name__}: {bad} must be "), exc
        event("InvalidParameterError")
        return
    except EngineMemoryError:
        assert params.get("max_memory") is not None
        event("EngineMemoryError (max_memory)")
        return
    except RatingsError as exc:  # a column name, or a scale the ratings do not fit in
        assert bad in ("user_col", "item_col", "rating_col", "rating_scale"), exc
        event("RatingsError (column)")
        return
    assert np.isfinite(est).all(), f"{cls.__name__}({params}) predicted non-finite values"
    if isinstance(model, LinRFM) and model.clip:
        lo, hi = model._scale() or model.rating_range_
        assert est.min() >= lo and est.max() <= hi
    event("fitted" if bad is None else "fitted with an arbitrary value that is valid")


# ---------------------------------------------------------------------------- rating data


@PROPS
@given(df=rating_frames(), duplicates=st.sampled_from(["raise", "mean", "last"]))
def test_malformed_frames_fit_or_ratings_error(df, duplicates):
    model = LinRFM(n_updates=1, duplicates=duplicates)
    try:
        model.fit(df)
    except RatingsError as exc:
        event(f"RatingsError: {str(exc)[:30]}")
        return
    event("fitted")
    ratings = df["rating"].to_numpy(np.float64)
    p = model.predict(df["user_id"].to_numpy(), df["item_id"].to_numpy())
    assert np.isfinite(p).all()
    assert p.min() >= ratings.min() and p.max() <= ratings.max()
    assert model.n_users_ == df["user_id"].nunique() and model.n_items_ == df["item_id"].nunique()


@pytest.mark.parametrize(
    "cls", [LinRFMAlgo, KernelRFMAlgo, IRLSAlgo, ALSAlgo], ids=lambda c: c.__name__
)
@settings(PROPS, max_examples=50)
@given(df=rating_frames())
def test_malformed_frames_through_surprise_fit_or_ratings_error(cls, df):
    # to_surprise checks the frame (RatingsFrameError is a RatingsError); what it lets through
    # must fit or be refused with a RatingsError (e.g. a single user)
    algo = cls(n_sweeps=2) if cls is ALSAlgo else cls(n_updates=1)
    try:
        algo.fit(to_surprise(df, (0.5, 5.0)).build_full_trainset())
    except RatingsError as exc:
        event(f"{type(exc).__name__}: {str(exc)[:30]}")
        return
    event("fitted")
    est = [p.est for p in algo.test(list(df[["user_id", "item_id", "rating"]].itertuples(False)))]
    assert np.isfinite(est).all()


@PROPS
@given(
    shape=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    data=st.data(),
)
def test_malformed_sparse_matrices_fit_or_ratings_error(shape, data):
    n = shape[0] * shape[1]
    values = data.draw(
        st.lists(
            st.one_of(
                st.floats(0.5, 5.0), st.floats(allow_nan=True, allow_infinity=True), st.just(0.0)
            ),
            min_size=n,
            max_size=n,
        ),
        label="values",
    )
    mask = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="stored")
    dense = np.array(values, dtype=np.float64).reshape(shape)
    rows, cols = np.nonzero(np.array(mask, dtype=bool).reshape(shape))
    X = sp.csr_matrix((dense[rows, cols], (rows, cols)), shape=shape)
    model = LinRFM(n_updates=1)
    try:
        model.fit(X)
    except RatingsError as exc:
        event(f"RatingsError: {str(exc)[:30]}")
        return
    event("fitted")
    p = model.predict(rows, cols)
    assert np.isfinite(p).all()
    assert p.min() >= X.data.min() and p.max() <= X.data.max()


# ---------------------------------------------------------------------------- model files


def _saved() -> tuple[bytes, np.ndarray]:
    m = LinRFM(random_state=0).fit(TRAIN.assign(user_id=lambda d: "u" + d.user_id.astype(str)))
    buf = io.BytesIO()
    m.save(buf)
    users = "u" + DATA.test.user_id.astype(str)
    return buf.getvalue(), m.predict(users, DATA.test.item_id)


SAVED, SAVED_PREDICTIONS = _saved()


def _load_outcome(data: bytes) -> str:
    try:
        m = LinRFM.load(io.BytesIO(data))
    except ModelFileError:
        return "ModelFileError"
    users = "u" + DATA.test.user_id.astype(str)
    np.testing.assert_array_equal(m.predict(users, DATA.test.item_id), SAVED_PREDICTIONS)
    return "identical"


def _damage(data: bytes, draw, keep_trailer: bool) -> bytes:
    buf = bytearray(data)
    end = len(buf) - (fileformat._TRAILER_LEN if keep_trailer else 0)
    if not keep_trailer and draw(st.booleans(), label="truncate"):
        return bytes(buf[: draw(st.integers(0, len(buf) - 1), label="length")])
    for _ in range(draw(st.integers(1, 6), label="bytes changed")):
        buf[draw(st.integers(0, end - 1), label="position")] = draw(
            st.integers(0, 255), label="value"
        )
    return bytes(buf)


@settings(PROPS, max_examples=200)
@given(data=st.data())
def test_damaged_model_file_raises_model_file_error(data):
    damaged = _damage(SAVED, data.draw, keep_trailer=False)
    if damaged == SAVED:
        return
    with pytest.raises(ModelFileError):
        LinRFM.load(io.BytesIO(damaged))
    event("ModelFileError")


@settings(PROPS, max_examples=200)
@given(data=st.data())
def test_resealed_damage_is_rejected_or_harmless(data):
    # The same damage with the whole-file checksum recomputed (a buggy writer or a deliberate
    # edit): the zip, the metadata, the per-array sha256 and the model's own structure are
    # checked in turn, so a load either fails with ModelFileError or predicts as before.
    damaged = _damage(SAVED, data.draw, keep_trailer=True)
    body = damaged[: -fileformat._HEX_LEN]
    event(_load_outcome(body + hashlib.sha256(body).hexdigest().encode("ascii")))


def test_model_file_errors_name_the_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(SAVED[:-100])
    with pytest.raises(ModelFileError, match=r"model\.npz: .*truncated"):
        LinRFM.load(path)
    np.savez(path, K=np.eye(2))
    with pytest.raises(ModelFileError, match=r"model\.npz: .*not written by rfm_recsys"):
        LinRFM.load(path)
    fileformat.write_model_file(path, {}, {}, format="rfm_recsys.Other", version=1)
    with pytest.raises(ModelFileError, match=r"model\.npz: .*'rfm_recsys.Other' file, not"):
        LinRFM.load(path)
    fileformat.write_model_file(path, {}, {}, format="rfm_recsys.LinRFM", version=99)
    with pytest.raises(ModelFileError, match=r"model\.npz: .*version 99 is newer"):
        LinRFM.load(path)


@pytest.mark.parametrize("scale", ["15", b"15", (True, 5), (1, 2, 3), (5, 1), (1, float("inf"))])
def test_rating_scale_must_be_a_pair_of_numbers(scale):
    # a string used to pass: float() read "15" as the pair (1.0, 5.0)
    with pytest.raises(InvalidParameterError, match="rating_scale must be None or a pair"):
        LinRFM(rating_scale=scale).fit(TRAIN)


# ---------------------------------------------------------------------------- the API's edges

FRAME_MODELS = [LinRFM, KernelRFM]
FITTED = {cls: cls().fit(TRAIN) for cls in FRAME_MODELS}
KNOWN_ITEMS = np.sort(TRAIN.item_id.unique())
KNOWN_USERS = np.sort(TRAIN.user_id.unique())


@pytest.mark.parametrize("cls", FRAME_MODELS, ids=lambda c: c.__name__)
@PROPS
@given(
    ratings=st.dictionaries(
        st.one_of(st.sampled_from(KNOWN_ITEMS.tolist()), st.integers(10**6, 10**6 + 50)),
        st.one_of(st.floats(0.5, 5.5), st.sampled_from([1.0, 5.0, 50.0, -3.0, 1e9])),
        max_size=6,
    )
)
def test_fold_in_works_or_refuses_out_of_scale_and_unknown_ratings(cls, ratings):
    # without rating_scale, a new user's ratings are held to the training range, as fit holds
    # ratings to rating_scale; a fold-in with no known item is an error, not the baseline
    model = FITTED[cls]
    lo, hi = model.rating_range_
    known = {k: v for k, v in ratings.items() if k in set(KNOWN_ITEMS.tolist())}
    if not ratings:
        with pytest.raises(RatingsError, match="no ratings"):
            model.fold_in(ratings)
        event("RatingsError (empty)")
        return
    if not known:
        with pytest.raises(UnknownIdError, match="none of the new user's"):
            model.fold_in(ratings)
        event("UnknownIdError (no known item)")
        return
    outside = [v for v in known.values() if not lo <= v <= hi]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if outside:
            with pytest.raises(RatingsError, match="outside the training ratings' range"):
                model.fold_in(ratings)
            event("RatingsError (out of scale)")
            return
        scores = model.fold_in(ratings)
    unknown = len(ratings) - len(known)
    assert len([w for w in caught if "unknown to the model" in str(w.message)]) == (unknown > 0)
    assert np.isfinite(scores.to_numpy()).all()
    assert scores.min() >= lo and scores.max() <= hi
    event("scored" + (" with a warning" if unknown else ""))


ID_BATCHES = st.one_of(
    st.sampled_from(KNOWN_USERS.tolist()),
    st.lists(st.sampled_from(KNOWN_USERS.tolist()), max_size=5),
)
ITEM_BATCHES = st.one_of(
    st.sampled_from(KNOWN_ITEMS.tolist()),
    st.lists(st.sampled_from(KNOWN_ITEMS.tolist()), max_size=5),
)


@pytest.mark.parametrize("cls", FRAME_MODELS, ids=lambda c: c.__name__)
@PROPS
@given(users=ID_BATCHES, items=ITEM_BATCHES)
def test_predict_takes_one_shape_or_a_scalar_side(cls, users, items):
    model = FITTED[cls]
    if np.ndim(users) and np.ndim(items) and len(users) != len(items):
        with pytest.raises(ValueError, match="one shape, or one of them be a single id"):
            model.predict(users, items)
        event("ValueError (lengths differ)")
        return
    p = model.predict(users, items)
    expected = np.broadcast_shapes(np.shape(users), np.shape(items))
    assert np.shape(p) == expected
    assert np.isfinite(p).all()
    event("scalar" if expected == () else "pairs")


@pytest.mark.parametrize("cls", FRAME_MODELS, ids=lambda c: c.__name__)
@settings(PROPS, max_examples=30)
@given(as_text=st.lists(st.booleans(), min_size=len(TRAIN), max_size=len(TRAIN)))
def test_a_column_mixing_id_types_is_refused(cls, as_text):
    # 1 and "1" would be two users without a word: refused with the fix (cast the column)
    ids = [str(u) if t else int(u) for u, t in zip(TRAIN.user_id, as_text)]
    df = TRAIN.assign(user_id=pd.Series(ids, dtype=object))
    if any(as_text) and not all(as_text):
        with pytest.raises(RatingsError, match=r"mixes id types \(int, str\).*astype\(str\)"):
            cls(n_updates=1).fit(df)
        event("RatingsError (mixed)")
        return
    model = cls(n_updates=1).fit(df)
    assert model.n_users_ == TRAIN.user_id.nunique()
    event("one type")
