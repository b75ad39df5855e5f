"""`kb backup` / `kb restore`: a round trip keeps every row, every vector and every stored file."""

from __future__ import annotations

import random
import tarfile

import pytest
from sqlalchemy import text

from kb.cli.backup import create_backup, restore_backup
from kb.db.store import chunks as chunk_store
from kb.db.store import datasets as dataset_store
from kb.db.tables import Collection
from kb.errors import BadRequest


def _unit(dim: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [rng.gauss(0, 1) for _ in range(dim)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def _nearest(db, dataset_id: int, query: list[float]) -> list[int]:
    with db.session() as session:
        return list(
            session.execute(
                text(
                    f"SELECT id FROM chunk WHERE dataset_id = {dataset_id} "
                    "ORDER BY embedding::vector(16) <=> CAST(:q AS vector(16)) LIMIT 5"
                ),
                {"q": chunk_store.vector_literal(query)},
            ).scalars()
        )


def test_backup_then_restore_brings_back_rows_vectors_indexes_and_files(db, settings, tmp_path):
    files_dir = settings.files_dir
    (files_dir / "ab").mkdir(parents=True)
    (files_dir / "ab" / "abcdef.pdf").write_bytes(b"%PDF-1.4 stored upload")
    with db.session() as session:
        dataset = dataset_store.add_dataset(
            session, name="manuals", embed_model="m", embed_dim=16, embed_variant="fp32"
        )
        collection = Collection(dataset_id=dataset.id, name="guide.md", source_type="file", content_hash="h")
        session.add(collection)
        session.flush()
        chunk_store.add_chunks(
            session,
            dataset.id,
            collection.id,
            [chunk_store.NewChunk(q=f"part {i} 北京", embedding=_unit(16, i), position=i) for i in range(50)],
        )
        session.commit()
    query = _unit(16, 1234)
    before = _nearest(db, dataset.id, query)

    archive = create_backup(db, files_dir, tmp_path / "backups" / "kb.tar")
    assert archive.tables["chunk"] == 50 and archive.files == 1

    with db.session() as session:
        dataset_store.delete_dataset(session, dataset.id)
        session.commit()
    (files_dir / "ab" / "abcdef.pdf").unlink()

    restored = restore_backup(db, files_dir, archive.path)
    assert restored.tables == archive.tables
    assert _nearest(db, dataset.id, query) == before
    assert (files_dir / "ab" / "abcdef.pdf").read_bytes() == b"%PDF-1.4 stored upload"
    with db.session() as session:
        index = session.execute(
            text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": dataset_store.vector_index_name(dataset.id)}
        ).first()
        fts_hits = session.execute(
            text("SELECT count(*) FROM chunk WHERE fts @@ to_tsquery('english', '北京')")
        ).scalar()
    assert index is not None and fts_hits == 50


def test_restore_refuses_a_file_that_is_not_a_backup(db, settings, tmp_path):
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"not a tar")
    with pytest.raises(BadRequest, match="not a kb backup"):
        restore_backup(db, settings.files_dir, bogus)


def test_restore_refuses_entries_that_escape_the_target(db, settings, tmp_path):
    evil = tmp_path / "evil.tar"
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"created_at": "x", "tables": {}}')
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w") as tar:
        tar.add(manifest, arcname="manifest.json")
        tar.add(payload, arcname="../../escape.txt")
    with pytest.raises(BadRequest, match="unsafe entry"):
        restore_backup(db, settings.files_dir, evil)


def test_kb_backup_and_restore_commands_round_trip(database_url, tmp_path):
    from typer.testing import CliRunner

    from kb.cli.main import app as cli_app

    env = {"KB_DATABASE_URL": database_url, "KB_DATA_DIR": str(tmp_path / "data"), "KB_LOG_LEVEL": "WARNING"}
    runner = CliRunner()
    written = runner.invoke(cli_app, ["backup", str(tmp_path / "b.tar")], env=env)
    assert written.exit_code == 0, written.output
    assert "0 dataset" in written.output
    refused = runner.invoke(cli_app, ["restore", str(tmp_path / "b.tar")], env=env, input="n\n")
    assert refused.exit_code != 0
    restored = runner.invoke(cli_app, ["restore", "--yes", str(tmp_path / "b.tar")], env=env)
    assert restored.exit_code == 0, restored.output
    assert "restored" in restored.output
