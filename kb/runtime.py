"""What every use case needs at hand: settings, the database, the model registry and the file store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from kb.config import Settings
from kb.db.engine import Database
from kb.db.files import FileStore
from kb.ml.registry import ModelRegistry, get_registry


@dataclass
class Runtime:
    """One per process (the app, a worker, a CLI command); cheap to build, holds no request state."""

    settings: Settings
    db: Database
    registry: ModelRegistry

    @classmethod
    def from_settings(
        cls, settings: Settings, *, db: Database | None = None, registry: ModelRegistry | None = None
    ) -> Runtime:
        return cls(settings, db or Database.from_settings(settings), registry or get_registry(settings))

    @cached_property
    def files(self) -> FileStore:
        return FileStore(self.settings.files_dir)
