"""The whole messy_docs folder uploaded in one request: every file ends ready with chunks or in error with a reason."""

from __future__ import annotations

from tests.helpers import ROOT
from tests.pipeline.support import create_dataset, upload, wait_until_done
from tests.shared_data import require_shared_data

# A few outcomes a user must see, by file; the rest only need to be one or the other with a reason.
EXPECTED = {
    "pdf_normal_4-pages.pdf": ("ready", None),
    "pdf_encrypted-empty-password_polish-invoice.pdf": ("ready", None),
    "html_zh_qq-news_charset-mislabel.html": ("ready", None),
    "pdf_encrypted_user-password.pdf": ("error", "password"),
    "pdf_scanned-simulated_antarctica.pdf": ("error", "OCR"),
    "docx_blank.docx": ("error", "text"),
    "pdf_truncated_4-pages.pdf": ("error", "pdf_truncated_4-pages.pdf"),
}


def test_every_messy_file_uploaded_at_once_ends_ready_or_in_error_with_a_reason(api_with_worker):
    folder = require_shared_data("messy_docs")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert len(files) >= 33
    dataset = create_dataset(api_with_worker, "messy")

    response = upload(api_with_worker, dataset["id"], *[(p.name, p.read_bytes()) for p in files])
    assert response.status_code == 202, response.text[:500]
    outcomes: dict[str, dict] = {}
    for item in response.json()["items"]:
        if item["error"] is not None:  # refused at upload: must say why, never a server error
            assert item["error"]["status"] < 500 and item["error"]["message"], item
            outcomes[item["name"]] = {"status": "refused", "error": item["error"]["message"], "chunk_count": 0}
            continue
        outcomes[item["name"]] = wait_until_done(api_with_worker, item["id"], timeout=300)
        assert api_with_worker.get("/healthz").json()["status"] == "ok", "the server keeps answering"

    assert set(outcomes) == {p.name for p in files}
    for name, outcome in outcomes.items():
        if outcome["status"] == "ready":
            assert outcome["chunk_count"] > 0, name
        else:
            assert outcome["error"] and len(outcome["error"]) > 15, (name, outcome)
    for name, (status, words) in EXPECTED.items():
        assert outcomes[name]["status"] == status, (name, outcomes[name].get("error"))
        if words:
            assert words.lower() in outcomes[name]["error"].lower(), (name, outcomes[name]["error"])
    assert api_with_worker.app.state.worker.thread.is_alive(), "no file stopped the worker"
    listed = api_with_worker.get(
        f"/api/datasets/{dataset['id']}/collections", params={"limit": 100}, headers=ROOT
    ).json()
    assert {c["status"] for c in listed["items"]} <= {"ready", "error"}
