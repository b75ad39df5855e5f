"""The web world: the apps, keys, models and chat pages over fast fake models and a small knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.config import Settings
from kb.db.store.apps import AppRecord
from kb.http.app import create_app
from kb.runtime import Runtime
from tests.answer_data import add_knowledge, make_app
from tests.web.support import LAKES, web_registry, web_settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return web_settings(tmp_path, database_url)


@pytest.fixture
def app(settings: Settings, db):
    return create_app(settings, db=db, registry=web_registry(settings))


@pytest.fixture
def rt(app, settings: Settings, db) -> Runtime:
    return Runtime(settings, db, app.state.registry)


@pytest.fixture
def lakes_app(rt: Runtime) -> AppRecord:
    """An app over one dataset whose first paragraph holds hostile HTML and a javascript: link."""
    return make_app(rt, "lakes", [add_knowledge(rt, "lakes", LAKES)], search={"limit": 2})
