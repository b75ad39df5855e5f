"""Original files: downloaded from the admin, opened from a citation (a PDF at the cited page), and for a
share-link visitor only from the link's own app."""

from __future__ import annotations

import re

from kb.http.deps import app_runtime
from kb.services import share_links as share_service
from kb.services.share_links import ShareLinkCreate
from tests.admin.support import wait_for_status
from tests.answer_data import make_app
from tests.helpers import ROOT
from tests.pipeline.support import create_dataset

PDF = "pdf_normal_minimal-document.pdf"
MARKDOWN = b"# Ferries\n\nThe first ferry leaves Lausanne at seven.\n"


def upload(client, dataset_id: int, name: str, content: bytes) -> int:
    response = client.post(f"/api/datasets/{dataset_id}/collections", files=[("file", (name, content))], headers=ROOT)
    assert response.status_code in (200, 202), response.text
    return wait_for_status(client, response.json()["id"])["id"]


def test_a_pdf_opens_inline_and_other_files_download(admin_client, shared_data):
    client = admin_client
    dataset = create_dataset(client, "docs")
    pdf_bytes = (shared_data / "messy_docs" / PDF).read_bytes()
    pdf = upload(client, dataset["id"], PDF, pdf_bytes)
    markdown = upload(client, dataset["id"], "ferries.md", MARKDOWN)

    opened = client.get(f"/api/collections/{pdf}/file", headers=ROOT)
    assert opened.status_code == 200 and opened.content == pdf_bytes
    assert opened.headers["content-type"] == "application/pdf"
    assert opened.headers["content-disposition"].startswith("inline")
    downloaded = client.get(f"/api/collections/{markdown}/file", headers=ROOT)
    assert downloaded.content == MARKDOWN and downloaded.headers["content-disposition"].startswith("attachment")
    assert downloaded.headers["content-type"] == "application/octet-stream"  # never rendered as a page here

    manual = client.post(f"/api/datasets/{dataset['id']}/chunks", json={"q": "Q?", "a": "A."}, headers=ROOT)
    written_by_hand = manual.json()["collection_id"]
    missing = client.get(f"/api/collections/{written_by_hand}/file", headers=ROOT)
    assert missing.status_code == 404 and "no original file" in missing.json()["error"]["message"]


def test_a_citation_links_the_original_pdf_at_its_page_and_a_visitor_reaches_only_the_apps_files(
    admin_client, client, shared_data, app
):
    rt = app_runtime(app)
    dataset = create_dataset(admin_client, "docs")
    pdf = upload(admin_client, dataset["id"], PDF, (shared_data / "messy_docs" / PDF).read_bytes())
    other = create_dataset(admin_client, "private")
    secret = upload(admin_client, other["id"], "secret.md", b"# Secret\n\nThe vault code is 1234.\n")
    app = make_app(rt, "manuals", [dataset["id"]], allow_general_knowledge=True)
    body = {
        "model": "app:manuals",
        "messages": [{"role": "user", "content": "Lorem ipsum dolor sit amet"}],
        "chatId": "with-a-pdf",
        "detail": True,
    }
    answered = admin_client.post("/v1/chat/completions", json=body)
    assert answered.status_code == 200, answered.text
    page = admin_client.get("/?chat=with-a-pdf").text
    links = re.findall(r'<a class="quote-file" href="([^"]+)"', page)
    assert f"/api/collections/{pdf}/file#page=1" in links

    token = share_service.create_link(rt, app.id, ShareLinkCreate()).token
    assert client.get(f"/s/{token}/files/{pdf}").headers["content-type"] == "application/pdf"
    assert client.get(f"/s/{token}/files/{secret}").status_code == 404
