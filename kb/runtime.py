"""What every use case needs at hand: settings, the database, the model registry and the file store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from fastapi import Request

from kb.config import Settings
from kb.db import Database
from kb.files import FileStore
from kb.ml.registry import ModelRegistry, get_registry


@dataclass
class Runtime:
    """One per process (the app, a worker, a CLI command); cheap to build, holds no request state."""

    settings: Settings
    db: Database
    registry: ModelRegistry

    @classmethod
    def from_settings(cls, settings: Settings, *, db: Database | None = None, registry: ModelRegistry | None = None) -> Runtime:
        return cls(settings, db or Database.from_settings(settings), registry or get_registry(settings))

    @cached_property
    def files(self) -> FileStore:
        return FileStore(self.settings.files_dir)


def app_registry(state) -> ModelRegistry:
    """The app's registry, created from its settings on first use unless one was given to `create_app`."""
    if getattr(state, "registry", None) is None:
        state.registry = get_registry(state.settings)
    return state.registry


def runtime(request: Request) -> Runtime:
    """FastAPI dependency: the app's runtime."""
    state = request.app.state
    if getattr(state, "runtime", None) is None:
        state.runtime = Runtime(state.settings, state.db, app_registry(state))
    return state.runtime
