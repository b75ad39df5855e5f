"""Catalog model files: pulled from a local HTTP server (resumed, verified), assembled from part packages, shared."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kb.cli.main import app as cli
from kb.config import Settings
from kb.ml import catalog as catalog_module
from kb.ml.catalog import CatalogEntry, cached_file, file_state, load_catalog
from kb.ml.model_files import ModelFileError, catalog_model_file, ensure_model_file, pull_entry
from kb.ml.registry import ModelRegistry
from kb.ml.specs import load_specs

PAYLOAD = b"GGUF" + bytes(range(256)) * 1200  # a small GGUF-like file: the magic, then bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
PART_SIZES = (100_000, 100_000, len(PAYLOAD) - 200_000)


class FileServer(ThreadingHTTPServer):
    """Serves PAYLOAD at any path, honouring Range; the first `drop_after` bytes of one response, then hangs up."""

    daemon_threads = True

    def __init__(self, payload: bytes = PAYLOAD, drop_after: int | None = None):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.payload, self.drop_after = payload, drop_after
        self.ranges: list[str | None] = []
        self.paths: list[str] = []
        self.auth: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RangeHandler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        server, payload = self.server, self.server.payload
        asked = self.headers.get("Range")
        server.ranges.append(asked)
        server.paths.append(self.path)
        server.auth.append(self.headers.get("Authorization"))
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
        body = payload[start:]
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_after is not None:
            body, server.drop_after = body[: server.drop_after], None  # only the first response is cut short
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def file_server():
    servers = []

    def start(**kwargs) -> FileServer:
        server = FileServer(**kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def entry_for(sha256: str = PAYLOAD_SHA, parts_prefix: str | None = None) -> CatalogEntry:
    sources: list[dict] = [{"type": "hf", "repo": "kb-test/tiny-GGUF", "path": "tiny.gguf"}]
    if parts_prefix:
        parts = [
            {"dist": f"{parts_prefix}-{i}", "version": "1.0", "module": f"{parts_prefix}_{i}", "file": f"data/p{i}.bin"}
            | {"size": size}
            for i, size in enumerate(PART_SIZES, 1)
        ]
        sources.append({"type": "pypi-parts", "parts": parts})
    return CatalogEntry.model_validate(
        {
            "name": "tiny",
            "kind": "chat",
            "title": "A tiny test file",
            "file": "tiny.gguf",
            "size": len(PAYLOAD),
            "sha256": sha256,
            "licence": "Apache-2.0",
            "context_length": 2048,
            "default_context": 1024,
            "languages": ["en", "zh"],
            "sources": sources,
        }
    )


@pytest.fixture
def tiny_catalog(tmp_path, monkeypatch):
    """Replace the shipped catalog with one holding `tiny`; returns a function writing it with a given hash."""

    def use(entry: CatalogEntry) -> None:
        path = tmp_path / f"catalog-{entry.sha256[:8]}.json"
        path.write_text(json.dumps({"catalog_version": 1, "models": [entry.model_dump(mode="json")]}))
        monkeypatch.setattr(catalog_module, "CATALOG_FILE", path)

    return use


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Installs three part packages of PAYLOAD on sys.path (their folders returned, in order)."""
    site = tmp_path / "site"
    prefix = f"kbfake{abs(hash(str(tmp_path))) % 10**8}"
    folders, offset = [], 0
    for i, size in enumerate(PART_SIZES, 1):
        folder = site / f"{prefix}_{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("raise RuntimeError('parts are found, never imported')\n")
        piece = PAYLOAD[offset : offset + size]
        (folder / "data" / f"p{i}.bin").write_bytes(piece)
        info = site / f"{prefix}_{i}-1.0.dist-info"  # what pip leaves: METADATA, and RECORD with each file's hash
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}-{i}\nVersion: 1.0\n")
        recorded = base64.urlsafe_b64encode(hashlib.sha256(piece).digest()).rstrip(b"=").decode()
        (info / "RECORD").write_text(f"{prefix}_{i}/data/p{i}.bin,sha256={recorded},{size}\n")
        folders.append(folder)
        offset += size
    monkeypatch.syspath_prepend(str(site))
    return prefix, folders


def pull(tmp_path, *args: str, **env: str):
    environment = {"KB_MODELS_DIR": str(tmp_path / "models"), "KB_DATA_DIR": str(tmp_path / "data"), **env}
    return CliRunner(env=environment).invoke(cli, ["models", "pull", *args], terminal_width=200)


def test_kb_models_pull_fetches_a_catalog_model_from_the_hf_endpoint_and_verifies_it(
    tmp_path, file_server, tiny_catalog
):
    server = file_server()
    tiny_catalog(entry_for())
    result = pull(tmp_path, "tiny", HF_ENDPOINT=server.url, HF_TOKEN="hf_secret")
    assert result.exit_code == 0, result.output
    target = tmp_path / "models" / PAYLOAD_SHA / "tiny.gguf"
    assert target.read_bytes() == PAYLOAD and "verified" in result.output
    assert server.paths == ["/kb-test/tiny-GGUF/resolve/main/tiny.gguf"] and server.auth == ["Bearer hf_secret"]
    again = pull(tmp_path, "tiny", HF_ENDPOINT=server.url)
    assert again.exit_code == 0 and len(server.paths) == 1  # already in the shared cache: nothing fetched


def test_a_wrong_hash_fails_names_both_hashes_and_deletes_the_download(tmp_path, file_server, tiny_catalog):
    server = file_server()
    wrong = "0" * 64
    tiny_catalog(entry_for(sha256=wrong))
    result = pull(tmp_path, "tiny", HF_ENDPOINT=server.url)
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert PAYLOAD_SHA in message and wrong in message and "deleted" in message
    assert [p for p in (tmp_path / "models").rglob("*") if p.is_file() and p.name != ".lock"] == []


def test_an_interrupted_download_resumes_from_the_bytes_it_has(tmp_path, file_server, tiny_catalog):
    server = file_server(drop_after=50_000)
    tiny_catalog(entry_for())
    result = pull(tmp_path, "tiny", HF_ENDPOINT=server.url)
    assert result.exit_code == 0, result.output
    assert server.ranges == [None, "bytes=50000-"]
    assert (tmp_path / "models" / PAYLOAD_SHA / "tiny.gguf").read_bytes() == PAYLOAD


def test_a_download_left_half_done_by_an_earlier_run_is_resumed(tmp_path, file_server, monkeypatch):
    server = file_server()
    entry = entry_for()
    staging = cached_file(entry, tmp_path).with_name(".tiny.gguf.download")
    staging.parent.mkdir(parents=True)
    staging.write_bytes(PAYLOAD[:123_456])
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    path = pull_entry(entry, tmp_path)
    assert server.ranges == ["bytes=123456-"] and path.read_bytes() == PAYLOAD and not staging.exists()


def test_pull_by_url_checks_the_given_hash_and_says_how_to_use_the_file(tmp_path, file_server):
    server = file_server()
    good = pull(tmp_path, f"{server.url}/files/my-model.gguf", "--sha256", PAYLOAD_SHA)
    assert good.exit_code == 0, good.output
    assert (tmp_path / "models" / PAYLOAD_SHA / "my-model.gguf").read_bytes() == PAYLOAD
    assert '"path":' in good.output and "KB_MODELS_FILE" in good.output
    bad = pull(tmp_path, f"{server.url}/files/other.gguf", "--sha256", "f" * 64)
    assert bad.exit_code == 1 and "f" * 64 in bad.output and PAYLOAD_SHA in bad.output
    assert not list((tmp_path / "models" / "downloads").glob("*other*"))


def test_the_file_is_assembled_from_installed_parts_once_and_shared_by_two_data_dirs(tmp_path, fake_parts):
    prefix, _ = fake_parts
    entry = entry_for(parts_prefix=prefix)
    shared = tmp_path / "shared-models"
    first = Settings(data_dir=tmp_path / "one", models_dir=shared)
    second = Settings(data_dir=tmp_path / "two", models_dir=shared)
    assert file_state(entry, first.shared_models_dir).state == "parts"
    path = ensure_model_file(entry, first.shared_models_dir)
    assert path.read_bytes() == PAYLOAD and path == shared / PAYLOAD_SHA / "tiny.gguf"
    stamp = path.stat().st_mtime_ns
    assert ensure_model_file(entry, second.shared_models_dir) == path and path.stat().st_mtime_ns == stamp
    assert not list((tmp_path / "one").rglob("*.gguf")) and not list((tmp_path / "two").rglob("*.gguf"))


def test_a_missing_part_names_the_package_to_reinstall(tmp_path, fake_parts):
    prefix, folders = fake_parts
    (folders[1] / "data" / "p2.bin").unlink()
    entry = entry_for(parts_prefix=prefix)
    assert file_state(entry, tmp_path).state == "missing"
    with pytest.raises(ModelFileError) as caught:
        ensure_model_file(entry, tmp_path)
    assert (
        "kb models pull tiny" in caught.value.message
        and f"pip install --force-reinstall {prefix}-2==1.0`" in caught.value.message
    )


def test_a_corrupt_part_fails_the_hash_names_both_hashes_and_leaves_nothing_behind(tmp_path, fake_parts):
    prefix, folders = fake_parts
    part = folders[2] / "data" / "p3.bin"
    part.write_bytes(b"X" + part.read_bytes()[1:])  # same size, other bytes
    entry = entry_for(parts_prefix=prefix)
    with pytest.raises(ModelFileError) as caught:
        ensure_model_file(entry, tmp_path)
    message = caught.value.message
    assert "'tiny'" in message and PAYLOAD_SHA in message and "--force-reinstall" in message
    corrupt = hashlib.sha256(b"".join((folders[i] / "data" / f"p{i + 1}.bin").read_bytes() for i in range(3)))
    assert corrupt.hexdigest() in message
    assert message.endswith(f"Damaged part packages: {prefix}-3==1.0")  # pip's RECORD names the bad part
    assert [p.name for p in (tmp_path / PAYLOAD_SHA).iterdir()] == [".lock"]


def test_a_full_disk_while_assembling_says_how_much_room_is_needed(tmp_path, fake_parts):
    prefix, _ = fake_parts

    class FullDisk:
        def __init__(self, path: Path, mode: str):
            self.handle = open(path, mode)  # noqa: SIM115 (closed in __exit__)

        def write(self, data: bytes) -> int:
            if self.handle.tell() + len(data) > 150_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

    entry = entry_for(parts_prefix=prefix)
    with pytest.raises(ModelFileError) as caught:
        ensure_model_file(entry, tmp_path, opener=FullDisk)
    assert "full" in caught.value.message and "KB_MODELS_DIR" in caught.value.message
    assert [p.name for p in (tmp_path / PAYLOAD_SHA).iterdir()] == [".lock"]


def test_a_users_own_copy_is_used_in_place_after_its_hash_matches(tmp_path):
    copy = tmp_path / "mine.gguf"
    copy.write_bytes(PAYLOAD)
    entry = entry_for()
    assert ensure_model_file(entry, tmp_path / "models", user_path=copy) == copy
    copy.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(ModelFileError) as caught:
        ensure_model_file(entry, tmp_path / "models", user_path=copy)
    assert copy.exists() and PAYLOAD_SHA in caught.value.message  # a user's file is reported, never deleted


def test_the_shipped_catalog_lists_both_qwen_models_with_their_official_hashes():
    catalog = load_catalog()
    large, small = catalog["qwen2.5-coder-1.5b"], catalog["qwen2.5-coder-0.5b"]
    assert (large.size, large.sha256[:8], len(large.parts())) == (1_117_320_768, "cc324af0", 22)
    assert (small.size, small.sha256[:8], len(small.parts())) == (491_400_064, "1d961463", 6)
    for entry in (large, small):
        assert sum(part.size for part in entry.parts()) == entry.size and entry.licence == "Apache-2.0"
        assert entry.context_length == 32768 and entry.hub().url("https://mirror.example").startswith(
            "https://mirror.example/Qwen/"
        )
    chat = {spec.name: spec for spec in load_specs(None) if spec.kind == "chat"}
    assert chat["qwen2.5-coder-1.5b"].catalog == "qwen2.5-coder-1.5b" and "smollm2" in chat


def test_the_install_extras_pin_exactly_the_catalogs_part_packages():
    import tomllib

    from tests.helpers import REPO

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    catalog = load_catalog()
    for entry in catalog.values():
        assert extras[entry.extra] == [part.requirement for part in entry.parts()]


def test_catalog_model_file_finds_a_catalog_model_in_the_shared_cache_and_refuses_unknown_names(tmp_path, tiny_catalog):
    tiny_catalog(entry_for())
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", models_dir=tmp_path / "models")
    with pytest.raises(ModelFileError, match="kb models pull tiny"):
        catalog_model_file("tiny", settings)
    cached = cached_file(entry_for(), settings.shared_models_dir)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    assert catalog_model_file("tiny", settings) == cached
    with pytest.raises(ModelFileError, match="not in kb's catalog"):
        catalog_model_file("gpt-5", settings)


def test_the_registry_assembles_the_default_chat_models_file_once_logging_progress(
    tmp_path, fake_parts, tiny_catalog, caplog
):
    prefix, folders = fake_parts
    tiny_catalog(entry_for(parts_prefix=prefix))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", models_dir=tmp_path / "models", chat_model="tiny")
    registry = ModelRegistry(settings)
    with caplog.at_level(logging.INFO, logger="kb.ml"):
        registry.prepare_chat_file()
    assert cached_file(entry_for(), settings.shared_models_dir).read_bytes() == PAYLOAD
    assert registry.file_problem("tiny") is None
    assert "model 'tiny': 100%" in caplog.text and "assembling model 'tiny'" in caplog.text


def test_a_chat_model_that_cannot_be_assembled_is_remembered_as_unavailable_with_the_reason(
    tmp_path, fake_parts, tiny_catalog
):
    prefix, folders = fake_parts
    (folders[0] / "data" / "p1.bin").write_bytes(b"short")
    tiny_catalog(entry_for(parts_prefix=prefix))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", models_dir=tmp_path / "models", chat_model="tiny")
    registry = ModelRegistry(settings)
    registry.prepare_chat_file()  # logs the error instead of raising: the server keeps starting
    assert f"{prefix}-1==1.0" in registry.file_problem("tiny")


def test_kb_models_verify_rehashes_installed_files_and_deletes_a_corrupt_cached_copy(tmp_path, tiny_catalog):
    tiny_catalog(entry_for())
    cached = cached_file(entry_for(), tmp_path / "models")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    env = {"KB_MODELS_DIR": str(tmp_path / "models"), "KB_DATA_DIR": str(tmp_path / "data")}
    good = CliRunner(env=env).invoke(cli, ["models", "verify"], terminal_width=200)
    assert good.exit_code == 0 and f"tiny: {cached} ok" in " ".join(good.output.split())
    cached.write_bytes(PAYLOAD[:-1] + b"?")
    bad = CliRunner(env=env).invoke(cli, ["models", "verify", "tiny"], terminal_width=200)
    assert bad.exit_code == 1 and "FAILED" in bad.output and not cached.exists()


def test_kb_models_list_shows_each_model_installed_or_not_with_size_licence_context_and_the_default(
    tmp_path, tiny_catalog
):
    tiny_catalog(entry_for())
    env = {"KB_MODELS_DIR": str(tmp_path / "models"), "KB_DATA_DIR": str(tmp_path / "data"), "KB_CHAT_MODEL": "tiny"}
    listed = CliRunner(env=env).invoke(cli, ["models", "list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "tiny (default)" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "tiny (default)",
        "chat",
        "0.00 GB",
        "Apache-2.0",
        "2,048",
        "not installed",
    ]
    assert "run `kb models pull tiny`" in listed.output
    cached = cached_file(entry_for(), tmp_path / "models")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    listed = CliRunner(env=env).invoke(cli, ["models", "list"], terminal_width=200)
    assert "│ installed " in next(line for line in listed.output.splitlines() if "tiny (default)" in line)
