"""The server world: kb as `kb serve` builds it from its settings, with the bundled models (loaded on first use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.config import Settings
from kb.db.engine import Database
from kb.http.app import create_app
from tests.helpers import ADMIN_PASSWORD, ROOT_KEY


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_key=ROOT_KEY,
        admin_password=ADMIN_PASSWORD,
        chat_model="smollm2",  # the small bundled model keeps these fast; the default Qwen has its own slow tests
        torch_threads=2,
    )


@pytest.fixture
def app(settings: Settings, db: Database):
    return create_app(settings, db=db)
