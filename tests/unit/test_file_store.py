"""The file store: client names are labels only; files live at their content address."""

from __future__ import annotations

import io

import pytest

from kb.db.files import FileStore, safe_name
from kb.errors import PayloadTooLarge


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b<c>.md", "a_b_c_.md"),
        ("...", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("报告 2024.docx", "报告 2024.docx"),
    ],
)
def test_client_file_names_become_safe_labels(given, expected):
    assert safe_name(given) == expected


def test_a_very_long_name_is_shortened_keeping_its_extension():
    name = safe_name("x" * 500 + ".pdf")
    assert len(name) <= 200 and name.endswith(".pdf")


def test_files_are_kept_by_content_hash_and_only_hash_paths_are_accepted(tmp_path):
    store = FileStore(tmp_path)
    staged = store.stage(io.BytesIO(b"hello"), max_bytes=10)
    relative = store.keep(staged)
    assert relative == f"{staged.sha256[:2]}/{staged.sha256}" and store.read(relative) == b"hello"
    assert not any((tmp_path / "incoming").iterdir())
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_staging_stops_at_the_limit_and_leaves_nothing_behind(tmp_path):
    store = FileStore(tmp_path)
    with pytest.raises(PayloadTooLarge):
        store.stage(io.BytesIO(b"x" * (3 * 1024 * 1024)), max_bytes=1024 * 1024)
    assert not any((tmp_path / "incoming").iterdir())
