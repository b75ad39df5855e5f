"""The chunk preview: the first chunks of a file with their sizes under the chosen settings, nothing stored."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser_support import log_in
from tests.helpers import ROOT
from tests.pipeline.support import create_dataset

TEXT = "\n\n".join(f"Paragraph {n} tells how ferry number {n} crosses the lake at dawn and at dusk." for n in range(40))


def test_the_preview_cuts_by_the_settings_sent_and_stores_nothing(client):
    dataset = create_dataset(client, "ferries")
    files = {"file": ("ferries.md", TEXT.encode())}
    small = client.post(f"/api/datasets/{dataset['id']}/preview", files=files, data={"max_tokens": "32"}, headers=ROOT)
    large = client.post(f"/api/datasets/{dataset['id']}/preview", files=files, data={"max_tokens": "128"}, headers=ROOT)
    assert small.status_code == 200, small.text
    assert small.json()["total"] > large.json()["total"] >= 1
    assert all(chunk["tokens"] <= 32 for chunk in small.json()["chunks"])
    assert small.json()["chunks"][0]["text"].startswith("Paragraph 0")
    assert len(small.json()["chunks"]) <= 10
    listed = client.get(f"/api/datasets/{dataset['id']}/collections", headers=ROOT).json()
    assert listed["total"] == 0


def test_an_unreadable_file_gets_its_reason_not_a_preview(client):
    dataset = create_dataset(client, "ferries")
    files = {"file": ("setup.pdf", b"MZ\x90\x00" + bytes(range(256)) * 4)}
    refused = client.post(f"/api/datasets/{dataset['id']}/preview", files=files, headers=ROOT)
    assert refused.status_code == 415 and "is not a PDF" in refused.json()["error"]["message"]


@pytest.mark.browser
def test_the_preview_in_the_documents_page(page, tmp_path):
    log_in(page)
    page.request.post("/api/datasets", data={"name": "ferries"}, headers=ROOT)
    page.goto("/admin/datasets")
    page.locator("a", has_text="ferries").first.click()
    source = tmp_path / "ferries.md"
    source.write_text(TEXT, encoding="utf-8")
    page.locator(".chunk-preview summary").click()
    page.set_input_files("#preview-file", str(source))
    page.fill("#preview-max-tokens", "32")
    page.locator("[data-preview-form] button[type=submit]").click()
    expect(page.locator("[data-preview-list] li").first).to_contain_text("Paragraph 0")
    expect(page.locator("[data-preview-summary]")).to_contain_text("chunks in all")
    assert page.locator("[data-preview-list] li").count() == 10
