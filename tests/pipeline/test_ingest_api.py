"""Datasets, collections and chunks through real HTTP: uploads are checked at once and processed by the worker."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kb.db.store import collections as collection_store
from kb.worker.loop import Worker
from tests.helpers import ROOT
from tests.pipeline.support import MARKDOWN, create_dataset, upload, wait_until_done

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _chunk_rows(rt, collection_id: int) -> list[tuple]:
    with rt.db.session() as session:
        return session.execute(
            text(
                "SELECT kind, q, embedding IS NOT NULL, fts IS NOT NULL FROM chunk WHERE collection_id = :c ORDER BY position"
            ),
            {"c": collection_id},
        ).all()


def test_a_dataset_records_its_embedder_and_caps_chunk_size_at_what_the_embedder_reads(api):
    created = create_dataset(api, "wiki", chunk_settings={"max_tokens": 1000, "overlap": 0.1})
    assert (created["embed_model"], created["embed_dim"], created["embed_variant"]) == ("hash", 64, "hash-v1")
    assert created["chunk_settings"]["max_tokens"] == 126, "the fake embedder reads 128 tokens, 2 go to [CLS]/[SEP]"
    assert created["chunk_settings"]["overlap"] == 0.1 and created["chunk_settings"]["mode"] == "chunk"

    listed = api.get("/api/datasets", headers=ROOT).json()["items"]
    assert [d["name"] for d in listed] == ["wiki"]
    changed = api.patch(
        f"/api/datasets/{created['id']}", json={"name": "encyclopedia", "chunk_settings": {"mode": "qa"}}, headers=ROOT
    )
    assert changed.status_code == 200 and changed.json()["name"] == "encyclopedia"
    assert changed.json()["chunk_settings"]["mode"] == "qa" and changed.json()["chunk_settings"]["overlap"] == 0.1

    refused = api.patch(f"/api/datasets/{created['id']}", json={"embed_model": "minilm"}, headers=ROOT)
    assert refused.status_code == 400 and "/reembed" in refused.json()["error"]["message"]
    assert api.post("/api/datasets", json={"name": "encyclopedia"}, headers=ROOT).status_code == 409
    assert api.delete(f"/api/datasets/{created['id']}", headers=ROOT).status_code == 204
    assert api.get(f"/api/datasets/{created['id']}", headers=ROOT).status_code == 404


def test_dataset_routes_refuse_callers_without_a_key(api):
    assert api.get("/api/datasets").status_code == 401
    assert api.post("/api/datasets/1/collections", json={"type": "text", "name": "n", "text": "t"}).status_code == 401


def test_an_uploaded_markdown_file_is_processed_by_the_worker_to_ready_with_progress_reaching_100(api_with_worker, rt):
    dataset = create_dataset(api_with_worker)
    response = upload(api_with_worker, dataset["id"], ("lakes.md", MARKDOWN))
    assert response.status_code == 202, response.text
    collection_id = response.json()["id"]
    assert response.json()["items"] == [
        {"name": "lakes.md", "id": collection_id, "status": "queued", "duplicate": False, "error": None}
    ]

    done = wait_until_done(api_with_worker, collection_id)
    assert done["status"] == "ready", done
    assert done["progress"] == 100 and done["progress_seen"] == sorted(done["progress_seen"])
    assert done["chunk_count"] == 3 and done["error"] is None
    assert done["content_type"] == "text/markdown" and done["started_at"] and done["finished_at"]
    assert done["stats"]["chunks"] == 3 and done["job"]["status"] == "done"
    chunks = api_with_worker.get(f"/api/collections/{collection_id}/chunks", headers=ROOT).json()
    assert (
        chunks["total"] == 3
        and "Perch" in chunks["items"][1]["q"]
        and chunks["items"][1]["heading"] == "Alpine lakes > Fish"
    )
    assert all(has_vector and has_fts for _, _, has_vector, has_fts in _chunk_rows(rt, collection_id))
    dataset_after = api_with_worker.get(f"/api/datasets/{dataset['id']}", headers=ROOT).json()
    assert dataset_after["chunk_count"] == 3 and dataset_after["status_counts"] == {"ready": 1}


def test_uploading_identical_bytes_again_returns_the_existing_collection_and_says_so(api, rt):
    dataset = create_dataset(api)
    first = upload(api, dataset["id"], ("lakes.md", MARKDOWN)).json()
    again = upload(api, dataset["id"], ("renamed.md", MARKDOWN))
    assert again.status_code == 200, "nothing new was queued"
    assert again.json()["id"] == first["id"] and again.json()["items"][0]["duplicate"] is True
    assert api.get(f"/api/datasets/{dataset['id']}/collections", headers=ROOT).json()["total"] == 1
    with rt.db.session() as session:
        assert session.execute(text("SELECT count(*) FROM job")).scalar() == 1


def test_deleting_a_collection_removes_its_chunks_and_its_stored_file(api, rt):
    dataset = create_dataset(api)
    collection_id = upload(api, dataset["id"], ("lakes.md", MARKDOWN)).json()["id"]
    Worker(rt).run_until_idle()
    with rt.db.session() as session:
        stored = collection_store.get_collection(session, collection_id).file_path
    assert rt.files.exists(stored) and len(_chunk_rows(rt, collection_id)) == 3

    assert api.delete(f"/api/collections/{collection_id}", headers=ROOT).status_code == 204
    assert _chunk_rows(rt, collection_id) == []
    assert not rt.files.exists(stored)
    assert api.get(f"/api/collections/{collection_id}", headers=ROOT).status_code == 404


def test_a_stored_file_shared_by_two_datasets_survives_deleting_one_of_them(api, rt):
    first, second = create_dataset(api, "one"), create_dataset(api, "two")
    upload(api, first["id"], ("lakes.md", MARKDOWN))
    kept = upload(api, second["id"], ("lakes.md", MARKDOWN)).json()["id"]
    assert api.delete(f"/api/datasets/{first['id']}", headers=ROOT).status_code == 204
    with rt.db.session() as session:
        assert rt.files.exists(collection_store.get_collection(session, kept).file_path)


def test_a_collection_that_failed_can_be_retried_and_then_succeeds(api, rt):
    dataset = create_dataset(api)
    collection_id = upload(api, dataset["id"], ("lakes.md", MARKDOWN)).json()["id"]
    with rt.db.session() as session:
        stored = collection_store.get_collection(session, collection_id).file_path
    saved = rt.files.read(stored)
    rt.files.remove(stored)  # e.g. the data directory was cleaned
    Worker(rt).run_until_idle()
    failed = api.get(f"/api/collections/{collection_id}", headers=ROOT).json()
    assert failed["status"] == "error" and "upload the file again" in failed["error"]

    rt.files.path(stored).write_bytes(saved)  # restored from a backup
    retried = api.post(f"/api/collections/{collection_id}/retry", headers=ROOT)
    assert retried.status_code == 202 and retried.json()["status"] == "queued" and retried.json()["error"] is None
    Worker(rt).run_until_idle()
    assert api.get(f"/api/collections/{collection_id}", headers=ROOT).json()["status"] == "ready"
    again = api.post(f"/api/collections/{collection_id}/retry", headers=ROOT)
    assert again.status_code == 409 and "ready" in again.json()["error"]["message"]


def test_an_upload_declaring_a_huge_length_is_refused_before_its_body_is_read(api):
    dataset = create_dataset(api)
    response = api.post(
        f"/api/datasets/{dataset['id']}/collections",
        content=b"--x--\r\n",
        headers={**ROOT, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(2 * 1024**3)},
    )
    assert response.status_code == 413
    assert (
        "2,048 MB" in response.json()["error"]["message"] and "KB_MAX_UPLOAD_MB" in response.json()["error"]["message"]
    )


def test_an_upload_streamed_without_a_length_is_cut_off_at_the_limit_without_waiting_for_the_rest(
    tmp_path, database_url, db
):
    """Over real HTTP with chunked encoding: the client sends 1.5 MB of a never-ending body to a 1 MB limit."""
    import select
    import socket

    from kb.http.app import create_app
    from tests.helpers import LiveServer, free_port
    from tests.pipeline.support import fake_registry, make_settings

    settings = make_settings(tmp_path, database_url, max_upload_mb=1)
    app = create_app(settings, db=db, registry=fake_registry(settings))
    with LiveServer(app, free_port()) as server:
        import httpx

        dataset = httpx.post(f"{server.url}/api/datasets", json={"name": "d"}, headers=ROOT).json()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                f"POST /api/datasets/{dataset['id']}/collections HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {ROOT['Authorization']}\r\nTransfer-Encoding: chunked\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
            )
            part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
            blocks = [part] + [b"a" * 65536] * 24  # 1.5 MB, and the body is never finished
            for block in blocks:
                # A client watches for an early answer while it uploads, as browsers and curl do: the
                # server answers at the limit and closes, and a write after that may meet a reset.
                if select.select([sock], [], [], 0)[0]:
                    break
                try:
                    sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
            reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "1 MB" in reply
    staging = settings.files_dir / "incoming"
    assert not staging.exists() or not any(staging.iterdir()), "no partial upload is left behind"


def test_an_image_is_refused_with_415_naming_the_accepted_types(api):
    dataset = create_dataset(api)
    response = upload(api, dataset["id"], ("photo.pdf", PNG))
    assert response.status_code == 415
    message = response.json()["error"]["message"]
    assert "photo.pdf" in message and "PDF" in message and "Markdown" in message


def test_an_empty_file_is_refused_with_a_message(api):
    dataset = create_dataset(api)
    response = upload(api, dataset["id"], ("empty.txt", b""))
    assert response.status_code == 422 and "empty" in response.json()["error"]["message"]


def test_several_files_in_one_request_each_get_their_own_outcome(api, rt):
    dataset = create_dataset(api)
    response = upload(api, dataset["id"], ("lakes.md", MARKDOWN), ("empty.txt", b""), ("photo.png", PNG))
    assert response.status_code == 202
    good, empty, image = response.json()["items"]
    assert good["id"] and good["error"] is None
    assert empty["error"]["status"] == 422 and image["error"]["status"] == 415
    Worker(rt).run_until_idle()
    assert api.get(f"/api/collections/{good['id']}", headers=ROOT).json()["status"] == "ready"


def test_a_request_whose_files_are_all_refused_says_so_with_each_reason(api):
    dataset = create_dataset(api)
    response = upload(api, dataset["id"], ("a.png", PNG), ("b.png", PNG + b"!"))
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "no_files_accepted" and len(response.json()["items"]) == 2


def test_pasted_text_becomes_a_collection_like_a_file(api, rt):
    dataset = create_dataset(api)
    response = api.post(
        f"/api/datasets/{dataset['id']}/collections",
        json={"type": "text", "name": "Notes", "text": "The office opens at nine. Parking is behind the building."},
        headers=ROOT,
    )
    assert response.status_code == 202
    Worker(rt).run_until_idle()
    done = api.get(f"/api/collections/{response.json()['id']}", headers=ROOT).json()
    assert (done["status"], done["source_type"], done["name"], done["chunk_count"]) == ("ready", "text", "Notes", 1)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"type": "link", "url": "ftp://example.com/a.txt"}, "http"),
        ({"type": "text", "name": "n"}, "text"),
        ({"type": "video"}, "type"),
    ],
)
def test_a_malformed_source_is_refused_with_a_reason(api, payload, words):
    dataset = create_dataset(api)
    response = api.post(f"/api/datasets/{dataset['id']}/collections", json=payload, headers=ROOT)
    assert response.status_code == 400 and words in response.json()["error"]["message"]


def test_manual_question_answer_pairs_are_embedded_edited_and_deleted(api, rt):
    dataset = create_dataset(api)
    added = api.post(
        f"/api/datasets/{dataset['id']}/chunks", json={"q": "When does the office open?", "a": "At nine."}, headers=ROOT
    )
    assert added.status_code == 201, added.text
    chunk = added.json()
    assert chunk["kind"] == "manual" and chunk["a"] == "At nine."
    second = api.post(f"/api/datasets/{dataset['id']}/chunks", json={"q": "Where do I park?"}, headers=ROOT).json()
    assert second["collection_id"] == chunk["collection_id"] and second["position"] == chunk["position"] + 1
    manual = api.get(f"/api/collections/{chunk['collection_id']}", headers=ROOT).json()
    assert (manual["name"], manual["status"], manual["chunk_count"]) == ("Manual entries", "ready", 2)

    with rt.db.session() as session:
        before = session.execute(text("SELECT embedding::text FROM chunk WHERE id = :i"), {"i": chunk["id"]}).scalar()
    edited = api.patch(f"/api/chunks/{chunk['id']}", json={"q": "What time does the office open?"}, headers=ROOT)
    assert edited.status_code == 200 and edited.json()["a"] == "At nine."
    with rt.db.session() as session:
        after = session.execute(text("SELECT embedding::text FROM chunk WHERE id = :i"), {"i": chunk["id"]}).scalar()
    assert after != before, "an edited chunk is embedded again"

    found = api.get(f"/api/collections/{chunk['collection_id']}/chunks", params={"q": "park"}, headers=ROOT).json()
    assert [c["id"] for c in found["items"]] == [second["id"]]
    assert api.delete(f"/api/chunks/{second['id']}", headers=ROOT).status_code == 204
    assert api.get(f"/api/collections/{chunk['collection_id']}", headers=ROOT).json()["chunk_count"] == 1
    assert api.patch("/api/chunks/999999", json={"q": "x"}, headers=ROOT).status_code == 404


def test_a_manual_chunk_longer_than_the_embedder_reads_is_refused(api):
    dataset = create_dataset(api)
    response = api.post(f"/api/datasets/{dataset['id']}/chunks", json={"q": "word " * 300}, headers=ROOT)
    assert response.status_code == 400 and "at most 126" in response.json()["error"]["message"]


def test_chunks_are_listed_in_pages(api, rt):
    dataset = create_dataset(api)
    collection_id = upload(api, dataset["id"], ("lakes.md", MARKDOWN)).json()["id"]
    Worker(rt).run_until_idle()
    page = api.get(f"/api/collections/{collection_id}/chunks", params={"offset": 1, "limit": 1}, headers=ROOT).json()
    assert page["total"] == 3 and len(page["items"]) == 1 and page["items"][0]["position"] == 1
