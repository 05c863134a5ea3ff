"""The model file format: round trip, atomic writes, and every kind of bad file."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rfm_recsys import fileformat
from rfm_recsys.fileformat import ModelFileError, read_model_file, write_model_file

FMT = "rfm_recsys.Test"

ARRAYS = {
    "K": np.arange(12, dtype=np.float32).reshape(3, 4),
    "F": np.asfortranarray(np.linspace(0, 1, 6).reshape(2, 3)),
    "ids": np.array(["u1", "user 22", "é"]),
    "empty": np.zeros((0, 5), dtype=np.int64),
    "scalar": np.float64(2.5),
    "flags": np.array([True, False]),
}
META = {"mu": 3.5, "names": ["a", "b"], "nested": {"x": None, "y": [1, 2]}}


def write(path, arrays=ARRAYS, meta=META, version=1):
    write_model_file(path, arrays, meta, format=FMT, version=version)


def read(file, max_version=1):
    return read_model_file(file, format=FMT, max_version=max_version)


def assert_same(arrays, expected=ARRAYS):
    assert arrays.keys() == expected.keys()
    for k, v in expected.items():
        v = np.asarray(v)
        assert arrays[k].dtype == v.dtype and arrays[k].shape == v.shape, k
        np.testing.assert_array_equal(arrays[k], v)


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("ff") / "good.npz"
    write(path)
    return path.read_bytes()


def test_round_trip_path_and_file_objects(tmp_path):
    path = tmp_path / "m.npz"
    write(path, version=2)
    arrays, meta, version = read(path, max_version=2)
    assert_same(arrays)
    assert meta == META and version == 2
    assert arrays["F"].flags.f_contiguous and arrays["K"].flags.writeable
    # still an ordinary npz: numpy opens every member without pickle
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["K"], ARRAYS["K"])
    with zipfile.ZipFile(path) as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())
    assert os.listdir(tmp_path) == ["m.npz"]
    # file objects: BytesIO and a real file opened in binary mode, both at a non-zero offset
    buf = io.BytesIO(b"prefix")
    buf.seek(6)
    write(buf)
    buf.seek(6)
    assert_same(read(buf)[0])
    with open(tmp_path / "fh.npz", "wb") as fh:
        write(fh)
    with open(tmp_path / "fh.npz", "rb") as fh:
        assert read(fh)[1] == META


def test_overwrite_keeps_mode_and_replaces_content(tmp_path):
    path = tmp_path / "m.npz"
    write(path)
    os.chmod(path, 0o640)
    write(path, arrays={"a": np.ones(3)}, meta={})
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert_same(read(path)[0], {"a": np.ones(3)})


def test_unstorable_input_writes_nothing(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(TypeError, match="pickle"):
        write(path, arrays={"o": np.array([object()])})
    with pytest.raises(ValueError, match="NaN"):
        write(path, meta={"x": float("nan")})
    with pytest.raises(ValueError, match="array name"):
        write(path, arrays={"__meta__": np.ones(1)})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exc", [OSError("No space left on device"), KeyboardInterrupt()])
def test_interrupted_save_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.npz"
    write(path)
    before = path.read_bytes()
    real = fileformat._write_member
    calls = []

    def failing(zf, name, arr):
        calls.append(name)
        if len(calls) == 3:  # part-way through the arrays
            raise exc
        return real(zf, name, arr)

    monkeypatch.setattr(fileformat, "_write_member", failing)
    with pytest.raises(type(exc)):
        write(path, arrays={f"a{i}": np.full(1000, i) for i in range(5)})
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
    assert_same(read(path)[0])


def test_failed_rename_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    write(path)
    before = path.read_bytes()

    def no_replace(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(fileformat.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        write(path, arrays={"a": np.ones(3)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_too_new_versions(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    write(path, version=3)
    with pytest.raises(ModelFileError, match=r"m\.npz: .*version 3 is newer .*up to 2.*upgrade"):
        read(path, max_version=2)
    monkeypatch.setattr(fileformat, "CONTAINER_VERSION", 2)
    write(path)
    monkeypatch.setattr(fileformat, "CONTAINER_VERSION", 1)
    with pytest.raises(ModelFileError, match=r"m\.npz: .*newer rfm_recsys .*container version 2"):
        read(path)


def test_foreign_files(tmp_path):
    cases = {}
    np.savez(tmp_path / "numpy.npz", K=np.ones(3))
    cases["numpy.npz"] = "no rfm_recsys checksum"
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    cases["other.zip"] = "no rfm_recsys checksum"
    (tmp_path / "text.npz").write_text("K = [1, 2, 3]\n" * 20)
    cases["text.npz"] = "not a zip"
    (tmp_path / "empty.npz").write_bytes(b"")
    cases["empty.npz"] = "only 0 bytes"
    write_model_file(tmp_path / "other_format.npz", ARRAYS, META, format="Other", version=1)
    cases["other_format.npz"] = "an? 'Other' file, not a 'rfm_recsys.Test' file"
    for name, problem in cases.items():
        with pytest.raises(ModelFileError, match=rf"{name}: .*{problem}") as info:
            read(tmp_path / name)
        assert isinstance(info.value, ValueError) and info.value.path.endswith(name)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "absent.npz")


def test_file_object_error_names_the_file(tmp_path, good_bytes):
    path = tmp_path / "bad.npz"
    path.write_bytes(good_bytes[:-10])
    with open(path, "rb") as fh, pytest.raises(ModelFileError, match=r"bad\.npz: "):
        read(fh)
    with pytest.raises(ModelFileError, match=r"<file object>: "):
        read(io.BytesIO(good_bytes[:100]))


# Each property runs a bounded, derandomised set of examples so CI time stays small and fixed.
PROPS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _load_outcome(data: bytes) -> str:
    try:
        arrays, meta, _ = read(io.BytesIO(data))
    except ModelFileError:
        return "rejected"
    assert meta == META
    assert_same(arrays)
    return "identical"


@PROPS
@given(data=st.data())
def test_random_byte_corruption_is_always_detected(good_bytes, data):
    n = data.draw(st.integers(1, 8), label="bytes changed")
    buf = bytearray(good_bytes)
    for _ in range(n):
        pos = data.draw(st.integers(0, len(buf) - 1), label="position")
        buf[pos] = data.draw(st.integers(0, 255), label="value")
    if bytes(buf) == good_bytes:
        return
    with pytest.raises(ModelFileError):
        read(io.BytesIO(bytes(buf)))


@PROPS
@given(cut=st.integers(0, 10**6), garbage=st.binary(max_size=40))
def test_truncated_or_extended_file_is_always_detected(good_bytes, cut, garbage):
    data = good_bytes[: cut % len(good_bytes)] + garbage
    if data == good_bytes:
        return
    with pytest.raises(ModelFileError):
        read(io.BytesIO(data))


@PROPS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected(data):
    with pytest.raises(ModelFileError):
        read(io.BytesIO(data))


def _reseal(data: bytes) -> bytes:
    """Recompute the trailing checksum, as a buggy writer or a deliberate edit would."""
    body = data[: -fileformat._HEX_LEN]
    return body + hashlib.sha256(body).hexdigest().encode("ascii")


@settings(PROPS, max_examples=400)
@given(data=st.data())
def test_resealed_corruption_is_rejected_or_harmless(good_bytes, data):
    # Past the checksum, the zip, the metadata, the per-array sha256 and the .npy headers are
    # checked in turn: a change either is rejected or touched no content (e.g. a timestamp).
    buf = bytearray(good_bytes)
    for _ in range(data.draw(st.integers(1, 4), label="bytes changed")):
        pos = data.draw(st.integers(0, len(buf) - fileformat._TRAILER_LEN - 1), label="position")
        buf[pos] = data.draw(st.integers(0, 255), label="value")
    event(_load_outcome(_reseal(bytes(buf))))
