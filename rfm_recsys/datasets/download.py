"""Download official MovieLens zips safely: streamed, verified, renamed atomically.

A download goes to a hidden temporary file in the data home (``.<name>.zip.part-<random>``), is
checked against the registry's size and checksums, and only then renamed to ``<name>.zip`` with
:func:`os.replace` (atomic on one file system). Whatever goes wrong, including Ctrl-C, the
temporary file is removed, so a data home never holds a half-written zip and a failed download
can simply be run again.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from .errors import ChecksumError, DataHomeError, DownloadError
from .registry import MovieLensDataset, get_dataset
from .registry import data_home as resolve_home

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
# Temp files of a process killed with SIGKILL cannot be cleaned by that process; a later
# download removes the ones old enough not to belong to a download still running.
_STALE_PART_SECONDS = 24 * 3600


def zip_path(entry: MovieLensDataset, home: Path) -> Path:
    """Where the zip of ``entry`` lives in ``home``."""
    return home / f"{entry.name}.zip"


def manual_instructions(entry: MovieLensDataset, home: Path) -> str:
    """The sentence telling a user how to install a zip by hand."""
    return (
        f"download {entry.url} with a browser or another machine and put it at "
        f"{zip_path(entry, home)} (or unpack it into {home}/)"
    )


def file_digests(path: str | os.PathLike[str]) -> dict[str, str]:
    """md5 and sha256 of a file, read in chunks.

    Args:
        path: The file.

    Returns:
        ``{"md5": hex, "sha256": hex}``.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _check_digests(
    entry: MovieLensDataset, size: int, digests: Mapping[str, str], what: str, fix: str
) -> None:
    problems = []
    if entry.size is not None and size != entry.size:
        problems.append(f"size is {size:,} bytes, expected {entry.size:,}")
    for algo in ("sha256", "md5"):
        expected = getattr(entry, algo)
        if expected is not None and digests[algo] != expected.lower():
            problems.append(f"{algo} is {digests[algo]}, expected {expected}")
    if problems:
        hint = ""
        if entry.name.startswith("ml-latest"):
            hint = (
                " GroupLens replaces the 'latest' releases from time to time: if the new zip is "
                "genuine, register its figures with register_dataset(DATASETS[name].replace(...))."
            )
        raise ChecksumError(f"{what}: {'; '.join(problems)}. {fix}{hint}")
    if entry.sha256 is None and entry.md5 is None:
        log.warning(
            "%s: no published checksum in the registry, integrity not verified (zip test only)",
            entry.name,
        )


def verify_file(
    name: str | MovieLensDataset,
    path: str | os.PathLike[str] | None = None,
    *,
    data_home: str | os.PathLike[str] | None = None,
) -> None:
    """Check a local zip against the registry's size and checksums.

    Args:
        name: Registry name or entry.
        path: The zip; ``<data_home>/<name>.zip`` by default.
        data_home: Data home used when ``path`` is not given.

    Raises:
        ChecksumError: Size or a known checksum differs.
        FileNotFoundError: No such file.
    """
    entry = get_dataset(name)
    p = Path(path) if path is not None else zip_path(entry, resolve_home(data_home))
    _check_digests(
        entry,
        p.stat().st_size,
        file_digests(p),
        f"{p} is not the official {entry.name}.zip",
        f"Delete it and download again ({entry.url}).",
    )


def _prepare_home(home: Path, entry: MovieLensDataset) -> None:
    fix = (
        f"pass data_home=... or set RFM_RECSYS_DATA to a writable folder, or "
        f"{manual_instructions(entry, home)}"
    )
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataHomeError(
            f"cannot create the data home {home} ({exc.strerror or exc}): {fix}"
        ) from exc
    if not home.is_dir():
        raise DataHomeError(f"the data home {home} is not a folder: {fix}")
    if not os.access(home, os.W_OK):
        raise DataHomeError(f"the data home {home} is not writable: {fix}")


def _remove_stale_parts(home: Path, entry: MovieLensDataset) -> None:
    now = time.time()
    for part in home.glob(f".{entry.name}.zip.part-*"):
        try:
            if now - part.stat().st_mtime > _STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass


def _open(url: str, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "rfm_recsys (python urllib)"})
    return urllib.request.urlopen(req, timeout=timeout)


def download_movielens(
    name: str | MovieLensDataset,
    data_home: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download a MovieLens zip into the data home, verified, atomically.

    Args:
        name: Registry name (``"ml-1m"``) or an entry (e.g. the official one with another
            ``url``).
        data_home: Target folder; see :func:`rfm_recsys.datasets.data_home`.
        force: Download even if ``<home>/<name>.zip`` exists (it is replaced only once the new
            copy is verified).
        progress: Show a tqdm progress bar.
        timeout: Socket timeout in seconds (per blocking operation, not the whole transfer).

    Returns:
        The path of the verified zip.

    Raises:
        DataHomeError: The data home cannot be created or written.
        DownloadError: Offline, HTTP error, interrupted transfer, or the server sent something
            that is not a zip (e.g. an HTML error page).
        ChecksumError: The downloaded bytes differ from the published size or checksum.
    """
    entry = get_dataset(name)
    home = resolve_home(data_home)
    target = zip_path(entry, home)
    if target.is_file() and not force:
        return target
    _prepare_home(home, entry)
    _remove_stale_parts(home, entry)
    manual = manual_instructions(entry, home)

    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.name}.zip.part-", dir=home)
    except OSError as exc:
        raise DataHomeError(
            f"cannot write in the data home {home} ({exc.strerror or exc}): pass data_home=... or "
            f"set RFM_RECSYS_DATA to a writable folder, or {manual}"
        ) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            size, digests = _stream(entry, out, manual, progress, timeout)
        _check_digests(
            entry,
            size,
            digests,
            f"the download of {entry.url} is not the official {entry.name}.zip",
            f"Nothing was kept; run the download again (a proxy or captive portal may have "
            f"altered it), or {manual}.",
        )
        _check_zip(
            entry, tmp, verified=entry.sha256 is not None or entry.md5 is not None, manual=manual
        )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a shared data home must stay readable
        os.replace(tmp, target)
    finally:
        # Any failure, including KeyboardInterrupt, leaves no partial file behind.
        if tmp.exists():
            tmp.unlink()
    log.info("downloaded %s to %s", entry.url, target)
    return target


def _stream(
    entry: MovieLensDataset, out: BinaryIO, manual: str, progress: bool, timeout: float
) -> tuple[int, dict[str, str]]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    try:
        resp = _open(entry.url, timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"downloading {entry.name}: the server answered HTTP {exc.code} {exc.reason} for "
            f"{entry.url}. Check the address, try again later, or {manual}"
        ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot download {entry.name} from {entry.url} ({reason}); are you offline? "
            f"To install it by hand, {manual}"
        ) from exc

    with resp:
        length_header = resp.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        ctype = resp.headers.get("Content-Type", "")
        total = expected if expected is not None else entry.size
        got = 0
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{entry.name}.zip",
            disable=not progress,
            leave=False,
        ) as bar:
            try:
                while chunk := resp.read(_CHUNK):
                    if got == 0:
                        _check_first_bytes(entry, chunk, ctype, manual)
                    out.write(chunk)
                    md5.update(chunk)
                    sha.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"the download of {entry.name} from {entry.url} was interrupted after "
                    f"{got:,} bytes ({exc}); nothing was kept, run it again, or {manual}"
                ) from exc
    if got == 0:
        raise DownloadError(
            f"the server sent an empty file for {entry.url}; nothing was kept, run it again, "
            f"or {manual}"
        )
    if expected is not None and got != expected:
        raise DownloadError(
            f"the download of {entry.name} from {entry.url} was interrupted: {got:,} of "
            f"{expected:,} bytes; nothing was kept, run it again, or {manual}"
        )
    return got, {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _check_first_bytes(entry: MovieLensDataset, chunk: bytes, ctype: str, manual: str) -> None:
    # Zips start with a local-file header "PK\x03\x04"; captive portals and error pages
    # answer 200 with HTML, which must not be saved as <name>.zip.
    if chunk.startswith(b"PK"):
        return
    head = chunk.lstrip()[:200]
    if head.startswith(b"<") or "html" in ctype.lower():
        raise DownloadError(
            f"{entry.url} returned an HTML page, not a zip (an error page, a login or captive "
            f"portal?); nothing was kept. Open the address in a browser to see why, or {manual}"
        )
    raise DownloadError(
        f"{entry.url} did not return a zip (first bytes {head[:16]!r}); nothing was kept. "
        f"Check the address, or {manual}"
    )


def _check_zip(entry: MovieLensDataset, path: Path, *, verified: bool, manual: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            # A checksum match already proves integrity; without one, CRC-check every member.
            if not verified:
                bad = zf.testzip()
                if bad is not None:
                    raise zipfile.BadZipFile(f"bad CRC in member {bad}")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DownloadError(
            f"the download of {entry.url} is not a valid zip ({exc}); nothing was kept, run it "
            f"again, or {manual}"
        ) from exc


def copy_into_home(
    src: str | os.PathLike[str],
    name: str | MovieLensDataset,
    data_home: str | os.PathLike[str] | None = None,
) -> Path:
    """Install a zip obtained by hand: verify it and copy it atomically to ``<home>/<name>.zip``.

    Args:
        src: The zip you downloaded.
        name: Registry name or entry.
        data_home: Target data home.

    Returns:
        The installed path.

    Raises:
        ChecksumError: ``src`` is not the official zip.
        DataHomeError: The data home is not writable.
    """
    entry = get_dataset(name)
    home = resolve_home(data_home)
    verify_file(entry, src)
    _prepare_home(home, entry)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.name}.zip.part-", dir=home)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
        os.chmod(tmp, 0o644)
        os.replace(tmp, zip_path(entry, home))
    finally:
        if tmp.exists():
            tmp.unlink()
    return zip_path(entry, home)
