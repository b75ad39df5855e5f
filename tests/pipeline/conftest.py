"""The pipeline world: a runtime on fake models over a real database, the app over it, and workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from kb.http.app import create_app
from kb.runtime import Runtime
from kb.worker.loop import Worker
from tests.pipeline.support import fake_registry, make_settings


@pytest.fixture
def pipeline_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def rt(pipeline_settings: Settings, db) -> Runtime:
    return Runtime(pipeline_settings, db, fake_registry(pipeline_settings))


@pytest.fixture
def api(rt: Runtime) -> Iterator[TestClient]:
    """The app over the fake-model runtime, without an in-process worker (tests drive a Worker themselves)."""
    with TestClient(create_app(rt.settings, db=rt.db, registry=rt.registry)) as client:
        yield client


@pytest.fixture
def api_with_worker(rt: Runtime) -> Iterator[TestClient]:
    """The app with its ingestion worker thread running, as `kb serve` does."""
    with TestClient(create_app(rt.settings, db=rt.db, registry=rt.registry, worker=Worker)) as client:
        yield client
