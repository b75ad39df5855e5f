"""The server world: kb as `kb serve` builds it from its settings, with the bundled models (loaded on first use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.config import Settings
from kb.db.engine import Database
from kb.http.app import create_app
from tests.helpers import kb_settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The small bundled chat model keeps these fast; the default Qwen has its own slow tests.
    return kb_settings(tmp_path, database_url, chat_model="smollm2", torch_threads=2)


@pytest.fixture
def app(settings: Settings, db: Database):
    return create_app(settings, db=db)
