"""`kb serve` on its embedded PostgreSQL, stopped with SIGTERM: the database server stops with it and no longer
lists the dead process as a user (uvicorn re-raises SIGTERM, which skips the interpreter's exit handlers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from kb.db.engine import HANDLES_FILE
from tests.helpers import REPO, free_port

pytestmark = pytest.mark.slow
STARTUP_SECONDS = 90
STOP_SECONDS = 30  # bounds, not measurements: the shutdown itself takes about a second


def wait_until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {seconds} s")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_stops_the_embedded_database_and_clears_its_list_of_users(tmp_path: Path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("KB_")}
    env.update(KB_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "kb.cli.main", "serve", "--no-worker", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pgdata = tmp_path / "data" / "pg"
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), STARTUP_SECONDS, "kb serve did not answer")
        postgres = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
        assert serve.pid in json.loads((pgdata / HANDLES_FILE).read_text())

        serve.send_signal(signal.SIGTERM)
        serve.wait(STOP_SECONDS)
        wait_until(lambda: not postgres.is_running(), STOP_SECONDS, "the embedded PostgreSQL still runs")
        assert not (pgdata / "postmaster.pid").exists()
        assert serve.pid not in json.loads((pgdata / HANDLES_FILE).read_text() or "[]")
    finally:
        if serve.poll() is None:
            serve.kill()
        for process in psutil.process_iter(["cmdline"]):
            if str(pgdata) in " ".join(process.info["cmdline"] or []):
                process.kill()  # only the server this test started, found by its data folder
