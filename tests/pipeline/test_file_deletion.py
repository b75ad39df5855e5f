"""Finding 9 of the hardening review: files were deleted before the transaction committed, so a commit
that failed left rows pointing at files that were gone."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kb.schemas import DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from kb.services.collections import Upload

# Fails every commit that deleted a collection: a constraint trigger runs at COMMIT, after the service's work.
FAIL_AT_COMMIT = """
CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'injected failure at commit'; END $$;
CREATE CONSTRAINT TRIGGER refuse_delete AFTER DELETE ON collection DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION refuse_delete();
"""


@pytest.fixture
def stored(rt):
    dataset = dataset_service.create_dataset(rt, DatasetCreate(name="docs", embed_model="hash"))
    outcome = collection_service.add_file(rt, dataset.id, Upload("notes.txt", io.BytesIO(b"Some notes to keep.")))
    with rt.db.session() as session:
        session.execute(text(FAIL_AT_COMMIT))
        session.commit()
    return dataset, outcome.collection


@pytest.mark.parametrize("what", ["collection", "dataset"])
def test_a_failed_commit_leaves_the_stored_file_in_place(rt, stored, what):
    dataset, collection = stored
    path = rt.settings.files_dir / collection.file_path
    assert path.exists()
    with pytest.raises(DBAPIError, match="injected failure at commit"):
        if what == "collection":
            collection_service.delete_collection(rt, collection.id)
        else:
            dataset_service.delete_dataset(rt, dataset.id)
    assert path.exists(), "the file is still there for the collection that is still there"
    assert collection_service.get_collection(rt, collection.id).collection.file_path == collection.file_path


def test_a_committed_delete_removes_the_file(rt, stored):
    _, collection = stored
    with rt.db.session() as session:
        session.execute(text("DROP TRIGGER refuse_delete ON collection"))
        session.commit()
    collection_service.delete_collection(rt, collection.id)
    assert not (rt.settings.files_dir / collection.file_path).exists()
