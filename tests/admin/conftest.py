"""The admin world: the knowledge-base pages on the hash embedder, with the ingestion worker in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.config import Settings
from kb.http.app import create_app
from kb.worker.loop import Worker
from tests.helpers import ADMIN_PASSWORD
from tests.pipeline.support import fake_registry, make_settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The shared settings, on the fake models (hash embedder, echo chat) and a quickly polling worker."""
    return make_settings(tmp_path, database_url, admin_password=ADMIN_PASSWORD)


@pytest.fixture
def app(settings: Settings, db):
    """The app with its ingestion worker running in-process, as `kb serve` runs it."""
    return create_app(settings, db=db, registry=fake_registry(settings), worker=Worker)
