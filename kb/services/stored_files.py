"""The file store's side of deleting collections and datasets."""

from __future__ import annotations

from collections.abc import Sequence

from kb.db.store import collections as collection_store
from kb.runtime import Runtime


def remove_unreferenced_files(rt: Runtime, paths: Sequence[str]) -> None:
    """After the deleting transaction committed: remove each stored file no collection refers to any more.

    Never before the commit, which could still fail and leave rows pointing at missing files. Each
    file's advisory lock makes an upload of the same file wait until its fate is decided.
    """
    for path in paths:
        with rt.db.session() as session:
            collection_store.lock_file(session, path)
            if not collection_store.file_is_referenced(session, path):
                rt.files.remove(path)
            session.commit()
