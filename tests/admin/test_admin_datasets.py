"""The knowledge-base admin pages over HTTP: datasets, documents, chunks; forms, CSRF and escaping."""

from __future__ import annotations

import html
import json
import re

from fastapi.testclient import TestClient

from kb.http.app import create_app
from kb.http.i18n import catalogue
from kb.http.pages.forms import NOTICES, parse_separators, show_separators
from kb.ml.types import Completion
from kb.testing import EchoChatModel
from kb.worker.loop import Worker
from tests.admin.support import HOSTILE_MARKDOWN, HOSTILE_MARKUP, wait_for_status
from tests.helpers import csrf_token_of, log_in
from tests.pipeline.support import fake_registry

MARKDOWN = (
    b"# Alpine lakes\n\nLake Geneva is the largest lake in the Alps.\n\n## Fish\n\nPerch and whitefish live in it.\n"
)


def form(client, **fields) -> dict:
    """Form fields with the session's CSRF token, as the page's own form would send them."""
    return {"csrf_token": client.headers["X-CSRF-Token"], **fields}


def create(client, name: str = "handbook", **fields) -> int:
    response = client.post("/admin/datasets", data=form(client, name=name, **fields), follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(re.fullmatch(r"/admin/datasets/(\d+)\?notice=dataset_created", response.headers["location"]).group(1))


def upload(client, dataset_id: int, name: str, content: bytes) -> int:
    response = client.post(f"/api/datasets/{dataset_id}/collections", files=[("file", (name, content))])
    assert response.status_code in (200, 202), response.text
    return response.json()["id"]


def paste(client, dataset_id: int, name: str, text: str):
    return client.post(
        f"/admin/datasets/{dataset_id}/text", data=form(client, name=name, text=text), follow_redirects=False
    )


def test_the_datasets_page_is_linked_in_the_nav_and_lists_each_dataset_with_its_counts(admin_client):
    empty = admin_client.get("/admin/datasets").text
    assert re.search(r'<a href="/admin/datasets" aria-current="page">\s*Datasets\s*</a>', empty)
    assert "No dataset yet" in empty
    dataset_id = create(admin_client, "handbook", description="Staff rules")
    wait_for_status(admin_client, upload(admin_client, dataset_id, "lakes.md", MARKDOWN))
    upload(admin_client, dataset_id, "empty.pdf", b"%PDF-1.4 not really")

    page = admin_client.get("/admin/datasets").text
    row = re.search(rf'<tr data-dataset="{dataset_id}">.*?</tr>', page, re.S).group(0)
    assert "handbook" in row and "Staff rules" in row and "<code>hash</code>" in row
    assert re.search(r'data-count="collections">2<', row) and re.search(r'data-count="chunks">2<', row)
    assert "1 ready" in row


def test_a_dataset_created_through_the_form_gets_its_model_and_chunk_settings(admin_client):
    page = admin_client.get("/admin/datasets/new").text
    assert '<option value="hash" selected>hash</option>' in page and '<option value="minilm">' in page
    dataset_id = create(
        admin_client,
        "manuals",
        description="How-tos",
        embed_model="hash",
        max_tokens="100",
        overlap_percent="10",
        separators="\\n---\\n\n§",
        mode="qa",
        qa_max_pairs="3",
    )
    landing = admin_client.get(f"/admin/datasets/{dataset_id}?notice=dataset_created").text
    assert "Dataset created." in landing and "<h1>manuals</h1>" in landing

    stored = admin_client.get(f"/api/datasets/{dataset_id}").json()
    assert stored["embed_model"] == "hash" and stored["description"] == "How-tos"
    assert stored["chunk_settings"] == {
        "max_tokens": 100,
        "overlap": 0.1,
        "separators": ["\n---\n", "§"],
        "mode": "qa",
        "qa_max_pairs": 3,
    }


def test_a_refused_dataset_form_comes_back_with_the_reason_and_what_was_typed(admin_client):
    create(admin_client, "handbook")
    taken = admin_client.post("/admin/datasets", data=form(admin_client, name="handbook", description="second try"))
    assert taken.status_code == 409
    assert "already exists" in taken.text and ">second try</textarea>" in taken.text

    too_much = admin_client.post("/admin/datasets", data=form(admin_client, name="other", overlap_percent="80"))
    assert too_much.status_code == 400 and "Overlap:" in too_much.text and 'value="80"' in too_much.text
    not_a_number = admin_client.post("/admin/datasets", data=form(admin_client, name="other", max_tokens="lots"))
    assert not_a_number.status_code == 400 and "must be a whole number" in not_a_number.text
    assert [d["name"] for d in admin_client.get("/api/datasets").json()["items"]] == ["handbook"]


def test_the_settings_page_saves_and_says_a_new_embedding_model_means_re_embedding(admin_client):
    dataset_id = create(admin_client, "handbook", max_tokens="80")
    page = admin_client.get(f"/admin/datasets/{dataset_id}/settings").text
    assert 'value="80"' in page and "re-embedding every chunk" in page and "Re-embed" in page

    saved = admin_client.post(
        f"/admin/datasets/{dataset_id}/settings",
        data=form(
            admin_client, name="staff handbook", description="", max_tokens="60", overlap_percent="0", mode="chunk"
        ),
        follow_redirects=False,
    )
    assert saved.headers["location"] == f"/admin/datasets/{dataset_id}/settings?notice=dataset_saved"
    stored = admin_client.get(f"/api/datasets/{dataset_id}").json()
    assert stored["name"] == "staff handbook" and stored["chunk_settings"]["max_tokens"] == 60
    assert stored["chunk_settings"]["overlap"] == 0.0 and stored["chunk_settings"]["separators"] is None


def test_a_dataset_is_deleted_only_when_its_name_is_typed(admin_client):
    dataset_id = create(admin_client, "handbook")
    wrong = admin_client.post(f"/admin/datasets/{dataset_id}/delete", data=form(admin_client, confirm_name="handbok"))
    assert wrong.status_code == 400 and "Type the dataset&#39;s name exactly" in wrong.text
    assert admin_client.get(f"/api/datasets/{dataset_id}").status_code == 200

    deleted = admin_client.post(
        f"/admin/datasets/{dataset_id}/delete", data=form(admin_client, confirm_name="handbook"), follow_redirects=False
    )
    assert deleted.headers["location"] == "/admin/datasets?notice=dataset_deleted"
    assert admin_client.get(f"/api/datasets/{dataset_id}").status_code == 404


def test_every_form_posted_without_the_csrf_token_is_refused_and_changes_nothing(admin_client):
    dataset_id = create(admin_client, "handbook")
    collection_id = wait_for_status(admin_client, upload(admin_client, dataset_id, "lakes.md", MARKDOWN))["id"]
    chunk_id = admin_client.get(f"/api/collections/{collection_id}/chunks").json()["items"][0]["id"]
    del admin_client.headers["X-CSRF-Token"]
    posts = {
        "/admin/datasets": {"name": "forged"},
        f"/admin/datasets/{dataset_id}/settings": {"name": "forged"},
        f"/admin/datasets/{dataset_id}/delete": {"confirm_name": "handbook"},
        f"/admin/datasets/{dataset_id}/text": {"name": "forged", "text": "forged text"},
        f"/admin/datasets/{dataset_id}/link": {"url": "https://example.com/"},
        f"/admin/datasets/{dataset_id}/pairs": {"q": "forged?"},
        f"/admin/collections/{collection_id}/retry": {},
        f"/admin/collections/{collection_id}/delete": {},
        f"/admin/chunks/{chunk_id}/edit": {"q": "forged", "collection_id": str(collection_id)},
        f"/admin/chunks/{chunk_id}/delete": {"collection_id": str(collection_id)},
    }
    for path, fields in posts.items():
        response = admin_client.post(path, data=fields)
        assert response.status_code == 403, path
        assert "security token is missing" in response.text, path
    assert [d["name"] for d in admin_client.get("/api/datasets").json()["items"]] == ["handbook"]
    assert admin_client.get(f"/api/datasets/{dataset_id}").json()["collection_count"] == 1
    assert admin_client.get(f"/api/collections/{collection_id}/chunks").json()["total"] == 2


def test_logged_out_visitors_are_sent_to_the_login_page(client, db):
    for path in ("/admin/datasets", "/admin/datasets/new", "/admin/datasets/1", "/admin/collections/1/chunks"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/admin/login?next=/admin/"), (
            path
        )


def test_pasted_text_is_processed_and_pasting_it_again_is_reported_as_a_duplicate(admin_client):
    dataset_id = create(admin_client, "handbook")
    first = paste(admin_client, dataset_id, "rules", "Staff may park in the east lot after six.")
    assert first.headers["location"] == f"/admin/datasets/{dataset_id}?notice=source_queued"
    again = paste(admin_client, dataset_id, "rules copy", "Staff may park in the east lot after six.")
    assert again.headers["location"] == f"/admin/datasets/{dataset_id}?notice=source_duplicate"
    assert "already in the dataset" in admin_client.get(again.headers["location"]).text

    (item,) = admin_client.get(f"/api/datasets/{dataset_id}/collections").json()["items"]
    assert wait_for_status(admin_client, item["id"])["status"] == "ready"
    page = admin_client.get(f"/admin/datasets/{dataset_id}").text
    row = re.search(rf'<tr class="collection" data-id="{item["id"]}" data-status="ready">.*?</tr>', page, re.S).group(0)
    assert "rules" in row and "Pasted text" in row and ">Ready<" in row and 'data-field="chunks">1<' in row


def test_empty_text_and_a_link_that_is_not_http_are_refused_with_the_reason_on_the_form(admin_client):
    dataset_id = create(admin_client, "handbook")
    empty = paste(admin_client, dataset_id, "blank", "   ")
    assert empty.status_code == 422 and "The pasted text is empty" in empty.text
    assert re.search(r'<details class="card add-form" id="add-text" open>', empty.text)

    link = admin_client.post(f"/admin/datasets/{dataset_id}/link", data=form(admin_client, url="file:///etc/passwd"))
    assert link.status_code == 400 and 'id="add-link" open' in link.text
    assert 'value="file:///etc/passwd"' in link.text
    assert admin_client.get(f"/api/datasets/{dataset_id}/collections").json()["total"] == 0


def test_a_password_protected_document_shows_its_reason_and_offers_no_retry(admin_client, shared_data):
    dataset_id = create(admin_client, "handbook")
    encrypted = (shared_data / "messy_docs" / "pdf_encrypted_user-password.pdf").read_bytes()
    failed = wait_for_status(admin_client, upload(admin_client, dataset_id, "locked.pdf", encrypted))
    assert failed["status"] == "error" and "password" in failed["error"].lower()

    page = admin_client.get(f"/admin/datasets/{dataset_id}").text
    row = re.search(rf'<tr class="collection" data-id="{failed["id"]}" data-status="error">.*?</tr>', page, re.S).group(
        0
    )
    assert failed["error"].replace("'", "&#39;").replace('"', "&#34;") in row and ">Failed<" in row
    retry_form = re.search(r'<form method="post" action="([^"]+/retry)" data-field="retry" hidden>', row)
    assert retry_form, "retrying cannot open a password-protected file: the Retry form is hidden"
    assert admin_client.get(f"/api/collections/{failed['id']}").json()["stats"]["retryable"] is False

    retried = admin_client.post(retry_form.group(1), data=form(admin_client), follow_redirects=False)
    assert retried.headers["location"] == f"/admin/datasets/{dataset_id}?notice=collection_retried"
    assert wait_for_status(admin_client, failed["id"])["status"] == "error", "the same file fails the same way again"


def test_a_document_is_deleted_from_its_row(admin_client):
    dataset_id = create(admin_client, "handbook")
    collection_id = wait_for_status(admin_client, upload(admin_client, dataset_id, "lakes.md", MARKDOWN))["id"]
    deleted = admin_client.post(
        f"/admin/collections/{collection_id}/delete", data=form(admin_client), follow_redirects=False
    )
    assert deleted.headers["location"] == f"/admin/datasets/{dataset_id}?notice=collection_deleted"
    assert admin_client.get(f"/api/collections/{collection_id}").status_code == 404


def test_the_chunks_page_pages_through_and_filters_a_documents_chunks(admin_client):
    dataset_id = create(admin_client, "handbook", max_tokens="16", overlap_percent="0")
    text = "\n\n".join(f"Paragraph {n} tells about lake number {n} and its many fish." for n in range(45))
    paste(admin_client, dataset_id, "lakes", text)
    (item,) = admin_client.get(f"/api/datasets/{dataset_id}/collections").json()["items"]
    total = wait_for_status(admin_client, item["id"])["chunk_count"]
    assert total > 20

    first = admin_client.get(f"/admin/collections/{item['id']}/chunks").text
    assert first.count('class="card chunk"') == 20 and f"Chunks: {total}" in first
    assert f'href="/admin/collections/{item["id"]}/chunks?offset=20" rel="next"' in first
    second = admin_client.get(f"/admin/collections/{item['id']}/chunks?offset=20").text
    assert "Paragraph 0 " not in second and 'rel="prev"' in second

    filtered = admin_client.get(f"/admin/collections/{item['id']}/chunks?q=lake number 17 ").text
    assert filtered.count('class="card chunk"') == 1 and "Chunks containing “lake number 17”: 1" in filtered


def test_editing_a_chunk_saves_its_text_and_answer_and_a_blank_text_is_refused(admin_client):
    dataset_id = create(admin_client, "handbook")
    collection_id = wait_for_status(admin_client, upload(admin_client, dataset_id, "lakes.md", MARKDOWN))["id"]
    chunk = admin_client.get(f"/api/collections/{collection_id}/chunks").json()["items"][0]
    fields = {"collection_id": str(collection_id), "offset": "0", "filter": ""}

    saved = admin_client.post(
        f"/admin/chunks/{chunk['id']}/edit",
        data=form(admin_client, q="Lake Geneva is deep.", a="About 310 m.", **fields),
        follow_redirects=False,
    )
    assert saved.headers["location"] == f"/admin/collections/{collection_id}/chunks?notice=chunk_saved"
    edited = admin_client.get(f"/api/collections/{collection_id}/chunks").json()["items"][0]
    assert (edited["q"], edited["a"]) == ("Lake Geneva is deep.", "About 310 m.")
    assert edited["updated_at"] > chunk["updated_at"]

    blank = admin_client.post(f"/admin/chunks/{chunk['id']}/edit", data=form(admin_client, q="", a="kept", **fields))
    assert blank.status_code == 400 and "Question:" in blank.text
    assert re.search(
        rf'<details class="edit" open>\s*<summary[^>]*>Edit</summary>\s*<form method="post" action="/admin/chunks/{chunk["id"]}/edit"',
        blank.text,
    )
    assert ">kept</textarea>" in blank.text


def test_deleting_a_chunk_keeps_the_others(admin_client):
    dataset_id = create(admin_client, "handbook")
    collection_id = wait_for_status(admin_client, upload(admin_client, dataset_id, "lakes.md", MARKDOWN))["id"]
    first, second = admin_client.get(f"/api/collections/{collection_id}/chunks").json()["items"]
    deleted = admin_client.post(
        f"/admin/chunks/{first['id']}/delete",
        data=form(admin_client, collection_id=str(collection_id)),
        follow_redirects=False,
    )
    assert deleted.headers["location"] == f"/admin/collections/{collection_id}/chunks?notice=chunk_deleted"
    assert [c["id"] for c in admin_client.get(f"/api/collections/{collection_id}/chunks").json()["items"]] == [
        second["id"]
    ]


def test_a_manual_pair_lands_in_the_manual_entries_document_and_an_empty_one_is_refused(admin_client):
    dataset_id = create(admin_client, "handbook")
    added = admin_client.post(
        f"/admin/datasets/{dataset_id}/pairs",
        data=form(admin_client, q="Who runs the ferry?", a="The lake company."),
        follow_redirects=False,
    )
    target = added.headers["location"]
    assert re.fullmatch(r"/admin/collections/\d+/chunks\?notice=pair_added", target)
    page = admin_client.get(target).text
    assert "Manual entries" in page and "Who runs the ferry?" in page and "The lake company." in page

    refused = admin_client.post(f"/admin/datasets/{dataset_id}/pairs", data=form(admin_client, q="  ", a="no question"))
    assert (
        refused.status_code == 400
        and 'id="add-pair" open' in refused.text
        and ">no question</textarea>" in refused.text
    )


def test_hostile_document_text_is_shown_as_text_on_the_chunks_and_collections_pages(admin_client):
    dataset_id = create(admin_client, "handbook")
    collection_id = wait_for_status(
        admin_client, upload(admin_client, dataset_id, "<img src=x onerror=alert(1)>.md", HOSTILE_MARKDOWN.encode())
    )["id"]
    chunks = admin_client.get(f"/admin/collections/{collection_id}/chunks").text
    for hostile in HOSTILE_MARKUP:
        assert hostile not in chunks, hostile
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in chunks
    assert "&lt;img src=x onerror=alert(1)&gt;" in chunks
    assert "[harbour office](javascript:alert(1))" in chunks, "the link stays text, never an <a href>"
    assert 'href="javascript' not in chunks
    listing = admin_client.get(f"/admin/datasets/{dataset_id}").text
    assert "<img src=x" not in listing and ">_img src=x onerror=alert(1)_.md</a>" in listing, (
        "the file name is made safe"
    )


def test_separators_typed_with_escapes_read_back_the_same():
    assert parse_separators("\\n\\n\n---\n\n\\t|\\\\") == ["\n\n", "---", "\t|\\"]
    assert parse_separators("  \n") == ["  "] and parse_separators("") is None
    for separators in (["\n\n", "---"], ["\t|\\"], ["a\\nb"]):
        assert parse_separators(show_separators(separators)) == separators


def test_every_notice_has_a_chinese_translation():
    assert sorted(set(NOTICES.values()) - catalogue("zh").keys()) == []


def test_the_upload_area_carries_the_api_url_and_the_csrf_token_for_its_script(admin_client):
    dataset_id = create(admin_client, "handbook")
    page = admin_client.get(f"/admin/datasets/{dataset_id}").text
    assert f'data-upload="/api/datasets/{dataset_id}/collections"' in page
    assert csrf_token_of(page) == admin_client.headers["X-CSRF-Token"]
    assert '<input type="file" id="upload-files" class="visually-hidden" multiple>' in page
    assert '<script src="/static/collections.js"></script>' in page


def search_page(client, dataset_id: int, **params) -> str:
    response = client.get(f"/admin/datasets/{dataset_id}/search", params=params)
    assert response.status_code == 200, response.text
    return response.text


def test_the_search_test_shows_each_result_with_score_lists_source_and_timings(admin_client):
    dataset_id = create(admin_client, "handbook")
    collection_id = wait_for_status(admin_client, upload(admin_client, dataset_id, "lakes.md", MARKDOWN))["id"]
    assert "Ask a question as a user would" in search_page(admin_client, dataset_id)
    assert re.search(
        r'<a href="/admin/datasets/\d+/search" aria-current="page">Search test</a>',
        search_page(admin_client, dataset_id),
    )

    page = search_page(admin_client, dataset_id, query="perch whitefish", mode="hybrid", limit="1")
    (result,) = re.findall(r'<article class="card result".*?</article>', page, re.S)
    assert "Perch and whitefish live in it." in result
    assert f'<a href="/admin/collections/{collection_id}/chunks">lakes.md</a>' in result
    assert "Alpine lakes &gt; Fish" in result
    assert '<span class="badge" data-list="fulltext">full text #1' in result and 'data-list="vector"' in result
    assert re.search(r'<span class="score"[^>]*>0\.\d{3}</span>', result)
    assert re.search(r"total: \d+\.\d ms", page) and "Results: 1" in page

    fulltext = search_page(admin_client, dataset_id, query="perch", mode="fulltext")
    assert 'data-list="fulltext"' in fulltext and 'data-list="vector"' not in fulltext
    assert '<option value="fulltext" selected>' in fulltext
    nothing = search_page(admin_client, dataset_id, query="perch", min_score="0.999")
    assert "Nothing found" in nothing


def test_a_search_setting_the_search_refuses_is_explained_on_the_page(admin_client):
    dataset_id = create(admin_client, "handbook")
    response = admin_client.get(f"/admin/datasets/{dataset_id}/search", params={"query": "perch", "limit": "0"})
    assert response.status_code == 400 and "limit must be between 1 and 100" in response.text
    assert 'name="limit" min="1" max="100" value="0"' in response.text


def test_hostile_document_text_is_shown_as_text_in_search_results(admin_client):
    dataset_id = create(admin_client, "handbook")
    wait_for_status(admin_client, upload(admin_client, dataset_id, "safety.md", HOSTILE_MARKDOWN.encode()))
    page = search_page(admin_client, dataset_id, query="swimmers pier harbour office sunset", limit="5")
    assert 'class="card result"' in page
    for hostile in HOSTILE_MARKUP:
        assert hostile not in page, hostile
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "[harbour office](javascript:alert(1))" in page and 'href="javascript' not in page


class OnePairChat(EchoChatModel):
    """Writes one question/answer pair for every passage, as a well-behaved chat model would."""

    def generate(self, messages, params, cancel=None):
        self.calls.append(messages)
        return Completion(
            "Q1: What leaves Lausanne at seven?\nA1: The first ferry.",
            prompt_tokens=40,
            completion_tokens=12,
            finish_reason="stop",
        )


def test_qa_split_documents_show_their_pair_counts_and_pairs_beside_their_source_passage(settings, db):
    registry = fake_registry(settings, chat=OnePairChat())
    with TestClient(create_app(settings, db=db, registry=registry, worker=Worker)) as client:
        log_in(client)
        dataset_id = create(client, "ferries", mode="qa")
        paste(client, dataset_id, "timetable", "The first ferry to Montreux leaves Lausanne at seven.")
        (item,) = client.get(f"/api/datasets/{dataset_id}/collections").json()["items"]
        assert wait_for_status(client, item["id"])["mode"] == "qa"

        row = re.search(
            r'<tr class="collection".*?</tr>', client.get(f"/admin/datasets/{dataset_id}").text, re.S
        ).group(0)
        assert "Q/A split — pairs: 1; passages: 1, without pairs: 0." in row
        chunks = client.get(f"/admin/collections/{item['id']}/chunks").text
    source, pair = re.findall(r'<article class="card chunk".*?</article>', chunks, re.S)
    assert "Source passage" in source and "Not searched itself" in source and "/edit" not in source
    assert (
        "Q/A pair" in pair
        and "What leaves Lausanne at seven?" in pair
        and "The first ferry." in pair
        and "/edit" in pair
    )


def test_the_documents_page_speaks_chinese_when_asked(admin_client):
    dataset_id = create(admin_client, "handbook")
    page = admin_client.get(f"/admin/datasets/{dataset_id}?lang=zh").text
    assert "上传文档" in page and "粘贴文本" in page and "检索测试" in page
    labels = json.loads(html.unescape(re.search(r"data-labels='([^']+)'", page).group(1)))
    assert labels["status"]["ready"] == "就绪" and "{pairs}" in labels["qa"]
