"""Knowledge-base admin in a real browser: create a dataset, upload through the file input and by
drag and drop, watch documents become ready or fail with a reason, retry, search, and show hostile
document text without running it. The `page` fixture fails a test on any dialog or console error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.admin.support import HOSTILE_MARKDOWN, HOSTILE_MARKUP
from tests.browser_support import log_in, screenshot

pytestmark = pytest.mark.browser

PROCESSING_TIMEOUT = 60_000
PDF = "pdf_normal_minimal-document.pdf"
ENCRYPTED = "pdf_encrypted_user-password.pdf"
MARKDOWN = "# Ferry timetable\n\nThe first ferry to Montreux leaves Lausanne at seven; bicycles ride free.\n"


def create_dataset(page, name: str) -> None:
    page.goto("/admin/datasets")
    page.click("text=New dataset")
    page.fill("#name", name)
    page.fill("#description", "Timetables and rules for the lake ferries")
    page.click("form[action='/admin/datasets'] button[type=submit]")
    page.wait_for_url("**/admin/datasets/*?notice=dataset_created")
    expect(page.locator("h1")).to_have_text(name)


def row(page, name: str):
    return page.locator("tr.collection", has=page.locator("[data-field=name]", has_text=name))


def expect_status(page, name: str, status: str) -> None:
    expect(row(page, name)).to_have_attribute("data-status", status, timeout=PROCESSING_TIMEOUT)


WIDER_THAN_THE_SCREEN = """() => {
    const width = document.documentElement.clientWidth;
    return [...document.querySelectorAll("body *")]
        .filter((el) => el.getBoundingClientRect().right > width + 1)
        .slice(0, 5)
        .map((el) => `${el.tagName.toLowerCase()}.${el.className} (${Math.round(el.getBoundingClientRect().right)}px)`);
}"""


def assert_fits_a_phone(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen: {page.evaluate(WIDER_THAN_THE_SCREEN)}"


def test_uploaded_documents_become_ready_a_bad_one_fails_with_a_reason_and_search_finds_the_text(
    page, shared_data, tmp_path: Path
):
    log_in(page)
    expect(page.locator("nav.admin-nav a", has_text="Datasets")).to_be_visible()
    create_dataset(page, "Lake ferries")
    markdown = tmp_path / "ferries.md"
    markdown.write_text(MARKDOWN, encoding="utf-8")
    messy = shared_data / "messy_docs"
    page.set_input_files("#upload-files", [str(messy / PDF), str(markdown), str(messy / ENCRYPTED)])

    uploads = page.locator("[data-uploads] li")
    expect(uploads).to_have_count(3)
    # Each upload's line follows its document to the end, instead of saying "processing" for ever.
    for name, state in ((PDF, "ready"), ("ferries.md", "ready"), (ENCRYPTED, "failed")):
        entry = page.locator("[data-uploads] li", has_text=name)
        expect(entry).to_have_attribute("data-state", state, timeout=PROCESSING_TIMEOUT)
    expect(page.locator("[data-uploads] li", has_text=ENCRYPTED)).to_contain_text("password-protected")
    expect_status(page, PDF, "ready")
    expect_status(page, "ferries.md", "ready")
    expect_status(page, ENCRYPTED, "error")
    assert row(page, PDF).locator("[data-field=meter]").is_hidden()
    assert int(row(page, PDF).locator("[data-field=chunks]").inner_text()) >= 1
    failed = row(page, ENCRYPTED)
    expect(failed.locator("[data-field=error]")).to_contain_text("password")
    # Retrying cannot open a password-protected file: no Retry is offered.
    expect(failed.locator("[data-field=retry]")).to_be_hidden()
    expect(row(page, PDF).locator("[data-field=retry]")).to_be_hidden()
    status = failed.locator("[data-field=status]")
    assert status.bounding_box()["height"] < 2 * float(status.evaluate("e => getComputedStyle(e).lineHeight")[:-2])
    screenshot(page, "admin-collections")

    # The delete confirmation opens inside the visible table: its whole question and its button.
    failed.locator("details.confirm summary").click()
    confirm = failed.locator("details.confirm button[type=submit]")
    expect(confirm).to_be_in_viewport()
    expect(failed.locator("details.confirm .confirm-body span")).to_have_text("Delete this document and its chunks?")
    frame = page.locator(".table-wrap").first.bounding_box()  # scrolls sideways: what sticks out is hidden
    for part in (confirm, failed.locator("details.confirm .confirm-body span")):
        box = part.bounding_box()
        assert box["x"] + box["width"] <= frame["x"] + frame["width"], "outside the visible table"
    failed.locator("details.confirm summary").click()

    page.set_input_files("#upload-files", str(markdown))
    expect(uploads.first).to_have_attribute("data-state", "duplicate", timeout=PROCESSING_TIMEOUT)
    expect(uploads.first).to_contain_text("Already in this dataset")

    # In Chinese, the failure reason is Chinese too.
    page.goto(page.url.split("?")[0] + "?lang=zh")
    expect(row(page, ENCRYPTED).locator("[data-field=error]")).to_contain_text("受密码保护")
    screenshot(page, "documents-table-zh")
    page.goto(page.url.split("?")[0] + "?lang=en")
    screenshot(page, "documents-table")

    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_a_phone(page)
    screenshot(page, "admin-collections-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.click("nav.tabs >> text=Search test")
    page.fill("input[name=query]", "consetetur sadipscing elitr")
    page.select_option("select[name=mode]", "hybrid")
    page.click(".search-form button[type=submit]")
    first = page.locator("article.result").first
    expect(first).to_contain_text("Lorem ipsum dolor sit amet")
    expect(first.locator(".result-meta a")).to_have_text(PDF)
    expect(first.locator(".result-meta")).to_contain_text("page 1")
    expect(first.locator("[data-list=fulltext]")).to_contain_text("full text #1")
    expect(page.locator("[data-timings]")).to_contain_text("total")
    assert "_ms" not in page.locator("[data-timings]").inner_text()  # every stage has a readable label
    screenshot(page, "admin-search")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_a_phone(page)
    screenshot(page, "admin-search-phone")
    page.click("nav.admin-nav >> text=Datasets")
    expect(page.locator("tr[data-dataset] [data-count=collections]")).to_have_text("3")
    assert_fits_a_phone(page)
    screenshot(page, "admin-datasets-phone")


def test_a_file_dropped_on_the_upload_area_is_uploaded_with_its_progress_shown(page):
    log_in(page)
    create_dataset(page, "Dropped")
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["# Otters\\n\\nOtters hold hands while they sleep."], "otters.md", {type: "text/markdown"}));
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }"""
    )
    entry = page.locator("[data-uploads] li", has_text="otters.md")
    expect(entry).to_have_attribute("data-state", "ready", timeout=PROCESSING_TIMEOUT)
    assert entry.locator("progress").get_attribute("value") == "100"
    expect_status(page, "otters.md", "ready")
    row(page, "otters.md").locator("[data-field=name]").click()
    expect(page.locator(".chunk-text").first).to_contain_text("Otters hold hands while they sleep.")


def test_hostile_document_text_is_shown_in_chunks_and_search_results_without_running(page):
    log_in(page)
    create_dataset(page, "Hostile")
    page.set_input_files(
        "#upload-files", files=[{"name": "safety.md", "mimeType": "text/markdown", "buffer": HOSTILE_MARKDOWN.encode()}]
    )
    expect_status(page, "safety.md", "ready")

    row(page, "safety.md").locator("[data-field=name]").click()
    page.wait_for_url("**/admin/collections/*/chunks")
    text = page.locator(".chunk-text").first.inner_text()
    for hostile in HOSTILE_MARKUP:
        assert hostile in text, "shown as text, exactly as written"
    assert "[harbour office](javascript:alert(1))" in text
    assert page.locator("main img").count() == 0 and page.locator("a[href^='javascript']").count() == 0
    page.locator("details.edit summary").first.click()
    assert "<script>alert(1)</script>" in page.locator("details.edit textarea[name=q]").first.input_value()
    screenshot(page, "admin-chunks-hostile")

    page.click("nav.tabs >> text=Search test")
    page.fill("input[name=query]", "swimmers pier harbour office")
    page.click(".search-form button[type=submit]")
    result = page.locator("article.result").first.inner_text()
    assert all(hostile in result for hostile in HOSTILE_MARKUP)
    assert page.locator("main img").count() == 0 and page.locator("a[href^='javascript']").count() == 0


def test_a_dataset_is_deleted_only_after_its_name_is_typed(page):
    log_in(page)
    create_dataset(page, "Short-lived")
    page.click("nav.tabs >> text=Settings")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits_a_phone(page)
    screenshot(page, "admin-dataset-settings-phone")
    delete_button = page.locator("form[data-confirm-form] button[type=submit]")
    expect(delete_button).to_be_disabled()
    page.fill("#confirm_name", "Short-live")
    expect(delete_button).to_be_disabled()
    page.fill("#confirm_name", "Short-lived")
    delete_button.click()
    page.wait_for_url("**/admin/datasets?notice=dataset_deleted")
    expect(page.locator(".notice")).to_contain_text("deleted")
    assert page.locator("tr[data-dataset]").count() == 0
