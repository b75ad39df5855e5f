"""Real `kb serve --no-worker` processes on loopback ports against one test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers import ADMIN_PASSWORD, REPO, ROOT_KEY, free_port

STARTUP_SECONDS = 90  # a loaded two-core machine can take a while to import torch and friends


class ServerProcess:
    """One `python -m kb.cli.main serve --no-worker` subprocess on its own port, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{name}.log"
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kb.cli.main", "serve", "--no-worker", "--no-migrate", "--port", str(self.port)],
                env=env,
                cwd=folder,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kb serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kb serve did not answer in {STARTUP_SECONDS} s:\n{self.log()[-3000:]}")

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM), in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@contextmanager
def kb_servers(count: int, folder: Path, database_url: str, **settings: str) -> Iterator[list[ServerProcess]]:
    """`count` servers sharing one database and data folder, started together and stopped afterwards."""
    values = {
        "data_dir": str(folder / "data"),
        "database_url": database_url,
        "root_key": ROOT_KEY,
        "admin_password": ADMIN_PASSWORD,
        "torch_threads": "1",
        "log_level": "WARNING",
        **settings,
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("KB_")}
    env.update({f"KB_{key.upper()}": value for key, value in values.items()})
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    servers = [ServerProcess(f"serve-{index}", env, folder) for index in range(count)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
