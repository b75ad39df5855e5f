"""Finding 10 of the hardening review: a plain `docker run` of the image (KB_HOST=0.0.0.0) without
KB_ADMIN_PASSWORD let the first visitor of /admin/setup become admin. kb now refuses to serve a
network address until a password exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port

pytestmark = pytest.mark.slow


def _serve(tmp_path: Path, database_url: str, host: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KB_")}
    env.update(KB_DATA_DIR=str(tmp_path / "data"), KB_DATABASE_URL=database_url, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "kb.cli.main", "serve", "--no-worker", "--host", host, "--port", str(free_port())]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kb_refuses_to_serve_the_network_before_an_admin_password_exists(tmp_path: Path, database_url: str):
    server = _serve(tmp_path, database_url, "0.0.0.0")
    try:
        output, _ = server.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()
        pytest.fail("kb served 0.0.0.0 with no admin password: the first visitor could become admin")
    assert server.returncode == 2
    assert "KB_ADMIN_PASSWORD" in output and "/admin/setup" in output
