"""Findings 7 and 8 of the hardening review: backups were world-readable though they hold the
session-signing secret, and a restore deleted the file store before the new one was in place."""

from __future__ import annotations

import shutil
import stat

import pytest

from kb.cli import backup
from kb.cli.backup import create_backup, restore_backup
from kb.db.store import datasets as dataset_store
from tests.helpers import REPO


def test_a_backup_is_readable_by_its_owner_only_and_the_readme_says_it_is_a_secret(db, settings, tmp_path):
    archive = create_backup(db, settings.files_dir, tmp_path / "kb.tar")
    assert stat.S_IMODE(archive.path.stat().st_mode) == 0o600
    assert "A backup is a secret" in (REPO / "README.md").read_text()


def test_a_restore_that_fails_while_copying_files_leaves_the_old_instance_intact(db, settings, tmp_path, monkeypatch):
    files_dir = settings.files_dir
    (files_dir / "ab").mkdir(parents=True)
    (files_dir / "ab" / "kept.pdf").write_bytes(b"%PDF-1.4 the old instance's file")
    archive = create_backup(db, files_dir, tmp_path / "kb.tar")
    with db.session() as session:  # made after the backup: a restore would remove it
        dataset_store.add_dataset(session, name="newer", embed_model="m", embed_dim=16, embed_variant="fp32")
        session.commit()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backup.shutil, "copytree", full_disk)
    with pytest.raises(OSError, match="No space left"):
        restore_backup(db, files_dir, archive.path)
    monkeypatch.setattr(backup.shutil, "copytree", shutil.copytree)
    assert (files_dir / "ab" / "kept.pdf").read_bytes() == b"%PDF-1.4 the old instance's file"
    with db.session() as session:
        assert dataset_store.get_dataset_by_name(session, "newer") is not None, "the database was not replaced"
    assert [p.name for p in files_dir.parent.iterdir() if p.name != "files"] == [], "no staging folder left behind"
