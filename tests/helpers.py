"""Helpers every test world shares: the test credentials, logging a client in, a live server on a loopback port."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from kb.config import Settings

ROOT_KEY = "test-root-key"
ROOT = {"Authorization": f"Bearer {ROOT_KEY}"}
ADMIN_PASSWORD = "kb-admin-test-password"
REPO = Path(__file__).resolve().parent.parent


def kb_settings(tmp_path: Path, database_url: str, **overrides) -> Settings:
    """Settings of a test kb: its data under `tmp_path`, the test credentials, no .env file; `overrides` on top."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_key=ROOT_KEY,
        admin_password=ADMIN_PASSWORD,
        **overrides,
    )


def csrf_token_of(html: str) -> str:
    """The CSRF token a page carries in its `<meta name="csrf-token">`."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def log_in(client: TestClient, password: str = ADMIN_PASSWORD) -> str:
    """Log `client` in through the login form; it then sends the session's CSRF header by default."""
    form_token = csrf_token_of(client.get("/admin/login").text)
    response = client.post(
        "/admin/login", data={"password": password, "csrf_token": form_token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    token = csrf_token_of(client.get("/admin").text)
    client.headers["X-CSRF-Token"] = token
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app served by uvicorn on a loopback port in a thread: real HTTP for SDKs and browsers."""

    def __init__(self, app, port: int):
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def forget_loaded_models() -> None:
    """Make the next registry load from disk, as a new process would (models are cached per process)."""
    from kb.ml import registry

    registry._loaded.clear()
