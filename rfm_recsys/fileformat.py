"""The package's model file format: numpy arrays plus JSON metadata, checked on every load.

A model file is an ordinary uncompressed ``.npz`` (a zip of ``.npy`` members, so
``np.load(path, allow_pickle=False)`` opens it) with three additions:

* a ``__meta__`` member holding one JSON document: the container's name and version, the payload's
  format name and version (e.g. ``"rfm_recsys.LinRFM"``, 2), the caller's metadata, and for every
  array its dtype, shape and the sha256 of its ``.npy`` bytes;
* the zip comment, the file's last bytes, holds the sha256 of everything before it, so any
  changed, missing or appended byte is caught before a single member is parsed;
* files are written to a temporary file beside the target, flushed, fsync'ed and renamed over the
  target (``os.replace``): a reader never sees a half-written file under the final name, and a
  failed or interrupted save leaves the previous file as it was.

Loading runs no code: no pickle (object dtypes are refused on both sides), JSON for the metadata,
and numpy's literal-only ``.npy`` header parser on bytes whose checksum has already matched.
Every problem with a file's content (corrupt, truncated, foreign, too new) raises
:class:`ModelFileError`, whose message names the file and what is wrong; a missing file raises
the usual ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

T = TypeVar("T")

__all__ = [
    "CONTAINER",
    "CONTAINER_VERSION",
    "ModelFileError",
    "read_model_file",
    "write_model_file",
]

#: Name and version of the container layout described in the module docstring.
CONTAINER = "rfm_recsys.npz"
CONTAINER_VERSION = 1

_META = "__meta__"
_TRAILER_PREFIX = b"rfm_recsys sha256="
_HEX_LEN = 64
_TRAILER_LEN = len(_TRAILER_PREFIX) + _HEX_LEN
_ZIP_END_LEN = 22  # the fixed part of the zip's end-of-central-directory record
_CHUNK = 1 << 20
# numpy's own default limit on a .npy header; ours are far smaller.
_MAX_HEADER = 10_000

FileLike = str | os.PathLike[str] | IO[bytes]


class ModelFileError(ValueError):
    """A model file is corrupt, truncated, of another format, or newer than this package reads.

    A ``ValueError``, as numpy raises for files it cannot parse. ``path`` is the file's name (or
    the file object's ``name``, else ``"<file object>"``).
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# ------------------------------------------------------------------------------------- writing


class _HashingWriter(io.RawIOBase):
    """Passes writes through to a zip member while hashing them."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        return self._out.write(b)


def _check_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or "/" in name or name.startswith("__"):
            raise ValueError(
                f"array name {name!r} cannot be stored: use a non-empty string without '/' that "
                "does not start with '__'"
            )
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(
                f"array {name!r} has dtype {arr.dtype}, which needs pickle to store: convert it "
                "to numbers or fixed-width strings (e.g. arr.astype(str)) first"
            )
        out[name] = arr
    return out


def _write_member(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> str:
    """Write one ``.npy`` member; returns the sha256 of its bytes."""
    with zf.open(name + ".npy", "w", force_zip64=True) as member:
        writer = _HashingWriter(member)
        np.lib.format.write_array(writer, arr, allow_pickle=False)
    return writer.sha.hexdigest()


def _write_container(fp: IO[bytes], arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Write the zip to ``fp`` (positioned at 0, seekable), then the trailing digest."""
    entries = {}
    with zipfile.ZipFile(fp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            digest = _write_member(zf, name, arr)
            entries[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": digest}
        doc = json.dumps({**header, "arrays": entries}, allow_nan=False, sort_keys=True)
        _write_member(zf, _META, np.array(doc))
        zf.comment = _TRAILER_PREFIX + b"0" * _HEX_LEN
    end = fp.seek(0, io.SEEK_END)
    fp.seek(0)
    digest = _digest(fp, end - _HEX_LEN)
    fp.seek(end - _HEX_LEN)
    fp.write(digest.encode("ascii"))
    fp.flush()


def _umask() -> int:
    # os.umask can only be read by setting it, which races with other threads; Linux shows it.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(target: Path, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    target = Path(os.path.realpath(target))  # replace a symlink's target, not the link
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w+b") as fp:
            _write_container(fp, arrays, header)
            os.fsync(fp.fileno())
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_model_file(
    file: FileLike,
    arrays: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    format: str,
    version: int,
) -> None:
    """Write ``arrays`` and ``meta`` as a model file, atomically when ``file`` is a path.

    Args:
        file: A path (written to a temporary file beside it, then renamed into place; the path
            is used as given, no suffix is added) or a writable binary file object (the whole
            file is built in memory, then written at its current position).
        arrays: Name to array; names are non-empty strings without ``/`` not starting with
            ``__``; object dtypes are refused (they would need pickle).
        meta: JSON-serialisable metadata (strict JSON: no NaN or infinity).
        format: The payload's format name, checked by :func:`read_model_file`.
        version: The payload's format version (a reader refuses newer versions).

    Raises:
        TypeError, ValueError: An array or metadata value that cannot be stored; nothing is
            written then.
        OSError: The file cannot be written; a previous file at ``file`` is left intact.
    """
    checked = _check_arrays(arrays)
    header = {
        "container": CONTAINER,
        "container_version": CONTAINER_VERSION,
        "format": str(format),
        "version": int(version),
        "meta": dict(meta),
    }
    try:  # fail before touching any file
        json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(
            f"the metadata cannot be stored as strict JSON ({exc}): use str, int, float (no NaN "
            "or infinity), bool, None, lists and dicts with string keys"
        ) from None
    if isinstance(file, (str, os.PathLike)):
        _atomic_write(Path(file), checked, header)
        return
    buf = io.BytesIO()
    _write_container(buf, checked, header)
    file.write(buf.getbuffer())
    with contextlib.suppress(AttributeError, io.UnsupportedOperation):
        file.flush()


# ------------------------------------------------------------------------------------- reading


def _digest(fp: IO[bytes], length: int) -> str:
    sha = hashlib.sha256()
    left = length
    while left > 0:
        chunk = fp.read(min(_CHUNK, left))
        if not chunk:
            break
        sha.update(chunk)
        left -= len(chunk)
    return sha.hexdigest()


def file_label(file: FileLike) -> str:
    """How errors name ``file``: its path, a file object's ``name``, else ``<file object>``."""
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    name = getattr(file, "name", None)
    return name if isinstance(name, str) else "<file object>"


@contextlib.contextmanager
def _opened(file: FileLike) -> Iterator[IO[bytes]]:
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as fp:
            yield fp
    else:
        # Read from the current position: the file may not be seekable, and zip offsets are
        # relative to where the writer started.
        data = file.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"read() of {file!r} returned {type(data).__name__}, not bytes: open the file "
                "in binary mode ('rb')"
            )
        yield io.BytesIO(data)


def _check_trailer(fp: IO[bytes], fail) -> None:
    size = fp.seek(0, io.SEEK_END)
    head = b""
    if size:
        fp.seek(0)
        head = fp.read(4)
    if size < _TRAILER_LEN + _ZIP_END_LEN:
        fail(f"only {size} bytes, too short for a model file: truncated, or not a model file")
    fp.seek(size - _TRAILER_LEN)
    trailer = fp.read(_TRAILER_LEN)
    if not trailer.startswith(_TRAILER_PREFIX):
        if head != b"PK\x03\x04":
            fail("not a model file (not a zip archive); it may be truncated or another format")
        fail(
            "no rfm_recsys checksum at the end of the file: it is truncated, or a zip/npz not "
            "written by rfm_recsys (e.g. by np.savez or an older version); re-save the model"
        )
    stored = trailer[len(_TRAILER_PREFIX) :].decode("ascii", "replace")
    fp.seek(0)
    if _digest(fp, size - _HEX_LEN) != stored:
        fail(
            "the checksum does not match the content: the file was damaged (bytes changed) "
            "after it was written; restore it from a good copy or save the model again"
        )


def _parse_npy(data: bytearray, what: str, fail) -> np.ndarray:
    """Parse ``.npy`` bytes without copying the data (the array views ``data``, writable)."""
    fp = io.BytesIO(bytes(data[: _MAX_HEADER + 16]))
    try:
        major, minor = np.lib.format.read_magic(fp)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, _MAX_HEADER)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, _MAX_HEADER)
    except Exception as exc:  # numpy raises ValueError, SyntaxError, tokenize errors...
        fail(f"{what}: unreadable .npy header ({type(exc).__name__}: {exc})")
    if dtype.hasobject:
        fail(f"{what}: dtype {dtype} would need pickle to load; refused")
    count = int(np.prod(shape, dtype=np.int64))
    offset = fp.tell()
    if len(data) - offset != count * dtype.itemsize:
        fail(f"{what}: {len(data) - offset} data bytes for shape {shape} of {dtype}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _read_member(zf: zipfile.ZipFile, name: str, fail) -> tuple[bytearray, str]:
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        fail(f"the member {name!r} is missing")
    data = bytearray(info.file_size)
    with zf.open(info) as member:
        view = memoryview(data)
        got = 0
        while got < len(data):
            n = member.readinto(view[got:])
            if not n:
                break
            got += n
        if got != len(data) or member.read(1):
            fail(f"the member {name!r} does not have its recorded size")
    return data, hashlib.sha256(data).hexdigest()


def _read_header(zf: zipfile.ZipFile, fail) -> dict[str, Any]:
    raw, _ = _read_member(zf, _META, fail)
    doc = _parse_npy(raw, "the metadata", fail)
    if doc.dtype.kind != "U" or doc.shape != ():
        fail("the metadata is not a JSON string")
    try:
        header = json.loads(str(doc[()]))
    except (ValueError, RecursionError) as exc:
        fail(f"the metadata is not valid JSON ({exc})")
    if not isinstance(header, dict) or header.get("container") != CONTAINER:
        fail("not an rfm_recsys model file (its metadata names no rfm_recsys container)")
    return header


def _check_header(
    header: dict[str, Any], format: str | tuple[str, ...], max_version: int, fail
) -> None:
    cv = header.get("container_version")
    if not isinstance(cv, int) or cv < 1:
        fail(f"invalid container version {cv!r}")
    if cv > CONTAINER_VERSION:
        fail(
            f"written by a newer rfm_recsys (container version {cv}; this one reads up to "
            f"{CONTAINER_VERSION}): upgrade rfm_recsys to load it"
        )
    formats = (format,) if isinstance(format, str) else tuple(format)
    if header.get("format") not in formats:
        fail(f"a {header.get('format')!r} file, not a {' or '.join(map(repr, formats))} file")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        fail(f"invalid format version {version!r}")
    if version > max_version:
        fail(
            f"{header.get('format')} format version {version} is newer than this rfm_recsys "
            f"reads (up to {max_version}): upgrade rfm_recsys to load it"
        )
    if not isinstance(header.get("meta"), dict) or not isinstance(header.get("arrays"), dict):
        fail("the metadata lacks its 'meta' or 'arrays' section")


def read_model_file(
    file: FileLike, *, format: str | tuple[str, ...], max_version: int
) -> tuple[dict[str, np.ndarray], dict[str, Any], int]:
    """Read and verify a file written by :func:`write_model_file`.

    Args:
        file: A path or a readable binary file object (read from its current position to the end).
        format: The payload format expected, or the formats accepted (another name is an
            error).
        max_version: The newest payload version the caller understands.

    Returns:
        ``(arrays, meta, version)``: the arrays (writable), the caller's metadata and the file's
        payload version (for callers that read older versions differently).

    Raises:
        ModelFileError: The file is corrupt, truncated, not a model file, of another format or
            of a newer version; the message names the file and the problem.
        FileNotFoundError, PermissionError, IsADirectoryError: As ``open`` raises them.
    """
    label = file_label(file)

    def fail(problem: str):
        raise ModelFileError(label, problem)

    with _opened(file) as fp:
        _check_trailer(fp, fail)
        fp.seek(0)
        try:
            with zipfile.ZipFile(fp) as zf:
                header = _read_header(zf, fail)
                _check_header(header, format, max_version, fail)
                arrays = _read_arrays(zf, header["arrays"], fail)
        except (ModelFileError, MemoryError):
            raise
        except Exception as exc:  # zipfile raises BadZipFile, EOFError, RuntimeError, ...
            # A well-formed checksum over a malformed zip: written by something else than this
            # module, or deliberately edited.
            fail(f"not a readable zip archive ({type(exc).__name__}: {exc})")
    meta = dict(header["meta"])
    return arrays, meta, header["version"]


def _read_arrays(zf: zipfile.ZipFile, entries: dict[str, Any], fail) -> dict[str, np.ndarray]:
    expected = {f"{name}.npy" for name in entries} | {f"{_META}.npy"}
    extra = sorted(set(zf.namelist()) - expected)
    if extra:
        fail(f"unexpected members {extra[:5]} (not listed in the metadata)")
    arrays = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            fail(f"the metadata of array {name!r} is not a mapping")
        data, digest = _read_member(zf, name, fail)
        if digest != entry.get("sha256"):
            fail(f"array {name!r} fails its sha256 check: the file was damaged or edited")
        arr = _parse_npy(data, f"array {name!r}", fail)
        if arr.dtype.str != entry.get("dtype") or list(arr.shape) != entry.get("shape"):
            fail(f"array {name!r} has dtype/shape {arr.dtype.str} {arr.shape}, not as recorded")
        arrays[name] = arr
    return arrays


def npz_path(file: FileLike) -> FileLike:
    """A path with ``.npz`` appended when missing (as implicit's models do); file objects as is."""
    if isinstance(file, (str, os.PathLike)):
        file = os.fspath(file)
        if not file.endswith(".npz"):
            file += ".npz"
    return file


def load_checked(
    file: FileLike,
    build: Callable[[dict[str, np.ndarray], dict[str, Any], int], T],
    *,
    format: str | tuple[str, ...],
    max_version: int,
    what: str,
) -> T:
    """Read and verify a model file, then ``build(arrays, meta, version)`` the object it
    describes (``version``: the file's format version, for readers of older files).

    A file whose checksums match but whose content ``build`` cannot use (missing entries,
    wrong types) was written by another program or version: that is a :class:`ModelFileError`
    naming the file too, never a bare ``KeyError``. ``build`` may raise :class:`ModelFileError`
    itself (e.g. a file of another model class, with the class that loads it).
    """
    arrays, meta, version = read_model_file(file, format=format, max_version=max_version)
    try:
        return build(arrays, meta, version)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(
            file_label(file),
            f"the content does not describe a {what} ({type(exc).__name__}: {exc})",
        ) from exc
