"""Fixtures and helpers for the ingestion pipeline tests: fake models in a real registry, a runtime, a worker."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from kb.config import Settings
from kb.ml.registry import ModelRegistry
from kb.testing import EchoChatModel, HashEmbedder
from tests.helpers import ROOT, ROOT_KEY

TERMINAL = ("ready", "error")


def make_settings(tmp_path: Path, database_url: str, **overrides) -> Settings:
    values = {
        "_env_file": None,
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "root_key": ROOT_KEY,
        "embed_model": "hash",
        "chat_model": "echo",
        "torch_threads": 2,
        "worker_poll_seconds": 0.2,
        "job_heartbeat_seconds": 0.2,
        "job_backoff_seconds": 0.0,
        "shutdown_grace_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


def fake_registry(settings: Settings, chat=None) -> ModelRegistry:
    registry = ModelRegistry(settings)
    registry.register_embedder(HashEmbedder(dim=64, name="hash", max_tokens=128))
    registry.register_chat(chat or EchoChatModel(name="echo", context_length=8192))
    return registry


def create_dataset(client: TestClient, name: str = "docs", **extra) -> dict:
    response = client.post("/api/datasets", json={"name": name, **extra}, headers=ROOT)
    assert response.status_code == 201, response.text
    return response.json()


def upload(client: TestClient, dataset_id: int, *files: tuple[str, bytes], mode: str | None = None):
    data = {"mode": mode} if mode else None
    return client.post(
        f"/api/datasets/{dataset_id}/collections",
        files=[("file", (name, content)) for name, content in files],
        data=data,
        headers=ROOT,
    )


def wait_until_done(client: TestClient, collection_id: int, timeout: float = 120.0) -> dict:
    """Poll the collection until it is ready or in error, recording every progress value seen."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while True:
        body = client.get(f"/api/collections/{collection_id}", headers=ROOT).json()
        seen.append(body["progress"])
        if body["status"] in TERMINAL:
            body["progress_seen"] = seen
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"collection {collection_id} still {body['status']} after {timeout} s")
        time.sleep(0.05)


MARKDOWN = (
    b"# Alpine lakes\n\n"
    b"Lake Geneva is the largest lake in the Alps. Its water is deep and cold all year.\n\n"
    b"## Fish\n\n"
    b"Perch and whitefish are the fish most often caught in the lake by local fishermen.\n\n"
    b"## Boats\n\n"
    b"Paddle steamers have crossed the lake since the nineteenth century, linking its towns.\n"
)
