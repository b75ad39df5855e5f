"""The file store: uploaded originals kept under `settings.files_dir`, named by the SHA-256 of their bytes.

A client's file name is only ever a label (see `safe_name`); it never becomes part of a path.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from kb.errors import PayloadTooLarge

_COPY_BLOCK = 1024 * 1024
_HASH_PATH = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"/\\|?*]+")
MAX_NAME_CHARS = 200


def safe_name(filename: str | None, fallback: str = "upload") -> str:
    """A display name from a client's file name: base name only, no control or path characters, bounded length."""
    raw = unicodedata.normalize("NFC", filename or "")
    base = PureWindowsPath(PurePosixPath(raw).name).name  # strips both / and \ directories
    cleaned = _UNSAFE.sub("_", base).strip(" .")
    if len(cleaned) > MAX_NAME_CHARS:
        stem, dot, ext = cleaned.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        cleaned = cleaned[: MAX_NAME_CHARS - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return cleaned or fallback


def size_limit_message(limit_bytes: int, what: str = "The upload") -> str:
    return (
        f"{what} is larger than the limit of {limit_bytes // (1024 * 1024)} MB (KB_MAX_UPLOAD_MB); "
        "split it into smaller files or ask the administrator to raise the limit."
    )


@dataclass(frozen=True)
class StagedFile:
    """Bytes received and hashed but not yet kept: `temp_path` is removed by `keep` or `discard`."""

    temp_path: Path
    sha256: str
    size: int

    @property
    def relative_path(self) -> str:
        return f"{self.sha256[:2]}/{self.sha256}"


class FileStore:
    """Content-addressed files: `ab/abcdef…` relative to the store root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging = self.root / "incoming"

    def stage(self, source: BinaryIO, *, max_bytes: int, name: str = "The file") -> StagedFile:
        """Copy a stream into the store's staging area, hashing and counting as it goes; refuse past `max_bytes`."""
        self.staging.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        handle, temp_name = tempfile.mkstemp(dir=self.staging, prefix="upload-")
        temp_path = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out:
                while block := source.read(_COPY_BLOCK):
                    size += len(block)
                    if size > max_bytes:
                        raise PayloadTooLarge(size_limit_message(max_bytes, name))
                    digest.update(block)
                    out.write(block)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return StagedFile(temp_path=temp_path, sha256=digest.hexdigest(), size=size)

    def stage_bytes(self, data: bytes, *, max_bytes: int, name: str = "The text") -> StagedFile:
        return self.stage(io.BytesIO(data), max_bytes=max_bytes, name=name)

    def keep(self, staged: StagedFile) -> str:
        """Move staged bytes to their content address (replacing an identical copy); returns the relative path."""
        target = self.path(staged.relative_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.temp_path, target)
        return staged.relative_path

    def discard(self, staged: StagedFile) -> None:
        staged.temp_path.unlink(missing_ok=True)

    def path(self, relative_path: str) -> Path:
        """The absolute path of a stored file; only content addresses are accepted."""
        if not _HASH_PATH.match(relative_path):
            raise ValueError(f"not a file-store path: {relative_path!r}")
        return self.root / relative_path

    def read(self, relative_path: str) -> bytes:
        return self.path(relative_path).read_bytes()

    def exists(self, relative_path: str) -> bool:
        return self.path(relative_path).is_file()

    def remove(self, relative_path: str) -> None:
        self.path(relative_path).unlink(missing_ok=True)
