"""`kb ingest` and `kb worker --until-idle`: folders in, a summary out, a non-zero exit when a file failed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kb.cli.main import app as cli
from kb.config import Settings
from kb.db.store.chunks import vector_literal
from kb.ml.registry import ModelRegistry
from kb.schemas import DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from tests.helpers import REPO, ROOT_KEY
from tests.pipeline.support import MARKDOWN, fake_registry, make_settings
from tests.shared_data import require_shared_data


def _env(tmp_path, database_url: str) -> dict[str, str]:
    return {
        "KB_DATABASE_URL": database_url,
        "KB_DATA_DIR": str(tmp_path / "data"),
        "KB_ROOT_KEY": ROOT_KEY,
        "KB_EMBED_MODEL": "hash",
        "KB_CHAT_MODEL": "echo",
        "KB_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "lakes.md").write_bytes(MARKDOWN)
    (root / "sub" / "office.txt").write_text("The office opens at nine. Parking is behind the building.")
    (root / "sub" / "empty.txt").write_bytes(b"")
    (root / ".git" / "config").write_text("[core]")
    return root


def _invoke(tmp_path, database_url, *args: str):
    settings = make_settings(tmp_path, database_url)
    runner = CliRunner(env=_env(tmp_path, database_url))
    return runner.invoke(cli, list(args), obj={"registry": fake_registry(settings)}, terminal_width=200)


def test_kb_ingest_imports_a_folder_recursively_and_exits_non_zero_naming_the_failed_file(
    tmp_path, database_url, folder
):
    result = _invoke(tmp_path, database_url, "ingest", "--dataset", "handbook", str(folder))
    assert result.exit_code == 1, result.output
    assert "Created dataset 'handbook'" in result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ")}
    assert "ready" in lines["lakes.md"] and "ready" in lines["sub/office.txt"]
    assert "refused" in lines["sub/empty.txt"] and "empty" in lines["sub/empty.txt"]
    assert "config" not in result.output, "hidden folders are skipped"
    assert "2 ready, 1 failed; 4 new chunks." in result.output


def test_kb_ingest_again_reports_files_already_there_and_exits_zero_when_all_are_ready(tmp_path, database_url, folder):
    (folder / "sub" / "empty.txt").unlink()
    first = _invoke(tmp_path, database_url, "ingest", "-d", "handbook", str(folder))
    assert first.exit_code == 0, first.output
    again = _invoke(tmp_path, database_url, "ingest", "-d", "handbook", str(folder / "lakes.md"))
    assert again.exit_code == 0 and "Using dataset 'handbook'" in again.output
    assert "already in the dataset" in again.output and "0 new chunks" in again.output


def test_kb_ingest_reports_a_file_that_fails_while_being_read(tmp_path, database_url, folder):
    scanned = require_shared_data("messy_docs", "pdf_scanned_jbig2.pdf")
    (folder / "scan.pdf").write_bytes(scanned.read_bytes())
    result = _invoke(
        tmp_path, database_url, "ingest", "-d", "handbook", str(folder / "scan.pdf"), str(folder / "lakes.md")
    )
    assert result.exit_code == 1
    row = next(line for line in result.output.splitlines() if "scan.pdf" in line)
    assert "error" in row and "OCR" in result.output


def test_kb_worker_until_idle_processes_what_was_uploaded(tmp_path, database_url, rt):
    dataset = dataset_service.create_dataset(rt, DatasetCreate(name="d"))
    outcome = collection_service.add_text(rt, dataset.id, name="note", text="The office opens at nine.")
    settings = make_settings(tmp_path, database_url)
    result = CliRunner(env=_env(tmp_path, database_url)).invoke(
        cli, ["worker", "--until-idle"], obj={"registry": fake_registry(settings)}
    )
    assert result.exit_code == 0 and "processed 1 job(s)" in result.output
    assert collection_service.get_collection(rt, outcome.collection.id).collection.status == "ready"


@pytest.mark.slow
def test_kb_ingest_with_the_bundled_minilm_makes_chunks_that_vector_search_finds(tmp_path, database_url, db, folder):
    """End to end in a separate process with the real model, then a nearest-neighbour query on its vectors."""
    (folder / "sub" / "empty.txt").unlink()
    env = {**os.environ, **_env(tmp_path, database_url), "KB_EMBED_MODEL": "minilm", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "kb.cli.main", "ingest", "--dataset", "real", str(folder)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    embedder = ModelRegistry(Settings(_env_file=None, data_dir=tmp_path / "data")).embedder("minilm")
    question = embedder.embed_query("What fish do people catch in the lake?")
    with db.session() as session:
        dims, variant = session.execute(text("SELECT embed_dim, embed_variant FROM dataset WHERE name = 'real'")).one()
        best = session.execute(
            text("SELECT q FROM chunk ORDER BY embedding::vector(384) <=> CAST(:v AS vector(384)) LIMIT 1"),
            {"v": vector_literal(question)},
        ).scalar()
    assert dims == 384 and variant
    assert "whitefish" in best
