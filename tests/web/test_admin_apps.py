"""Admin pages for apps over HTTP: list, create, edit, refuse bad input with the typed values kept, delete."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.http.i18n import catalogue
from kb.http.pages import apps as app_pages
from kb.http.pages import keys as key_pages
from kb.http.pages.forms import NOTICES
from kb.services import apps as app_service
from tests.answer_data import add_knowledge, make_app
from tests.helpers import csrf_token_of
from tests.web.support import LAKES, assert_inert


@pytest.fixture
def datasets(rt) -> tuple[int, int]:
    return add_knowledge(rt, "lakes", LAKES), add_knowledge(rt, "rivers", {"rivers.md": ["The Rhine flows north."]})


def form_values(**changes) -> dict:
    values = {
        "name": "helper",
        "description": "Answers about lakes",
        "system_prompt": "Be brief.",
        "chat_model": "",
        "mode": "vector",
        "limit": "3",
        "min_score": "0.25",
        "max_tokens": "800",
        "not_found_reply": "Nothing on that.",
    }
    values.update(changes)
    return values


def post_form(client: TestClient, path: str, values: dict, **kwargs):
    token = csrf_token_of(client.get("/admin").text)
    return client.post(path, data={**values, "csrf_token": token}, follow_redirects=False, **kwargs)


def test_the_apps_page_lists_apps_and_needs_the_login(app, admin_client, rt, datasets):
    make_app(rt, "lakes", [datasets[0]], description="<b>all</b> about lakes")
    page = admin_client.get("/admin/apps")
    assert page.status_code == 200 and 'aria-current="page">Apps' in re.sub(r"\s+", " ", page.text).replace(
        "> Apps", ">Apps"
    )
    row = HTMLParser(page.text).css_first("table.apps tbody tr")
    assert row.css_first("a").text() == "lakes" and row.css_first(".badge").text() == "lakes"
    assert "&lt;b&gt;all&lt;/b&gt; about lakes" in page.text
    with TestClient(app) as stranger:
        assert (
            stranger.get("/admin/apps", follow_redirects=False).headers["location"] == "/admin/login?next=/admin/apps"
        )


def test_the_new_app_form_offers_the_registry_models_and_the_datasets(admin_client, datasets):
    tree = HTMLParser(admin_client.get("/admin/apps/new").text)
    offered = [o.attributes["value"] for o in tree.css("#app-chat-model option")]
    assert offered == ["", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "scripted", "smollm2"]  # the catalog's too
    assert tree.css_first("#app-chat-model option").text() == "Default (scripted)"
    assert [c.attributes["value"] for c in tree.css("input[name=dataset_ids]")] == [str(d) for d in datasets]
    assert (
        tree.css_first("#app-limit").attributes["value"] == "5"
        and tree.css_first("#app-max-tokens").attributes["value"] == "1200"
    )
    assert tree.css("section.try-it") == []  # nothing to try before the app exists


def test_creating_an_app_stores_every_setting(admin_client, rt, datasets):
    values = form_values(
        dataset_ids=[str(datasets[1])], chat_model="scripted", rerank="true", allow_general_knowledge="true"
    )
    created = post_form(admin_client, "/admin/apps/new", values)
    assert created.status_code == 303
    stored = app_service.find_app(rt, "helper")
    assert created.headers["location"] == f"/admin/apps/{stored.id}?notice=app_created"
    assert (
        stored.description == "Answers about lakes"
        and stored.system_prompt == "Be brief."
        and stored.chat_model == "scripted"
    )
    assert (
        stored.dataset_ids == [datasets[1]]
        and stored.not_found_reply == "Nothing on that."
        and stored.allow_general_knowledge
    )
    assert stored.search_settings == {
        "mode": "vector",
        "limit": 3,
        "min_score": 0.25,
        "max_tokens": 800,
        "rerank": True,
    }
    page = admin_client.get(created.headers["location"])
    assert "App created." in page.text
    tree = HTMLParser(page.text)
    assert tree.css_first("#app-mode option[selected]").attributes["value"] == "vector"
    assert [c.attributes["value"] for c in tree.css("input[name=dataset_ids][checked]")] == [str(datasets[1])]
    chat = tree.css_first("section.try-it section.chat")
    assert chat.attributes["data-model"] == "app:helper" and chat.attributes["data-store"] == "false"
    assert tree.css_first('script[src="/static/chat.js"]') is not None and tree.css_first("#quote-panel") is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "a:b"}, "Name: String should match pattern"),
        ({"limit": "many"}, "Quotes to retrieve: Input should be a valid integer"),
        ({"min_score": "2"}, "Minimum score: Input should be less than or equal to 1"),
        ({"chat_model": "gpt-9"}, "unknown chat model 'gpt-9'"),
        ({"dataset_ids": ["999"]}, "no dataset with id 999"),
    ],
)
def test_a_refused_form_comes_back_with_the_reason_and_what_was_typed(admin_client, rt, changes, message):
    refused = post_form(admin_client, "/admin/apps/new", form_values(**changes))
    assert refused.status_code == 400
    tree = HTMLParser(refused.text)
    assert message in tree.css_first("[role=alert]").text()
    assert tree.css_first("#app-system-prompt").text() == "Be brief."
    assert app_service.list_apps(rt) == []


def test_a_taken_name_is_refused_with_409(admin_client, rt):
    make_app(rt, "helper", [])
    refused = post_form(admin_client, "/admin/apps/new", form_values())
    assert refused.status_code == 409 and "already exists" in refused.text


def test_refusals_are_worded_in_chinese_when_chosen(admin_client):
    admin_client.cookies.set("kb_lang", "zh")
    refused = post_form(admin_client, "/admin/apps/new", form_values(limit="many"))
    assert "检索引用条数" in HTMLParser(refused.text).css_first("[role=alert]").text()


def test_editing_an_app_changes_it_and_blank_numbers_take_the_defaults(admin_client, rt, datasets):
    existing = make_app(rt, "helper", [datasets[0]], search={"limit": 9})
    saved = post_form(
        admin_client,
        f"/admin/apps/{existing.id}",
        form_values(name="renamed", limit="", dataset_ids=[str(d) for d in datasets]),
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"/admin/apps/{existing.id}?notice=app_saved"
    stored = app_service.get_app(rt, existing.id)
    assert stored.name == "renamed" and stored.dataset_ids == list(datasets) and stored.search_settings["limit"] == 5
    assert not stored.allow_general_knowledge  # an unticked box is sent as nothing


def test_an_edit_refused_keeps_the_app_unchanged(admin_client, rt):
    existing = make_app(rt, "helper", [])
    refused = post_form(admin_client, f"/admin/apps/{existing.id}", form_values(max_tokens="10"))
    assert refused.status_code == 400 and "Quote token budget" in refused.text
    assert app_service.get_app(rt, existing.id).system_prompt == ""


def test_deleting_asks_in_the_page_then_deletes(admin_client, rt):
    existing = make_app(rt, "helper", [])
    tree = HTMLParser(admin_client.get(f"/admin/apps/{existing.id}").text)
    confirm = tree.css_first("section.danger-zone details.confirm")
    assert (
        "open" not in confirm.attributes
        and confirm.css_first("form").attributes["action"] == f"/admin/apps/{existing.id}/delete"
    )
    deleted = post_form(admin_client, f"/admin/apps/{existing.id}/delete", {})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/admin/apps?notice=app_deleted"
    assert app_service.list_apps(rt) == []
    assert admin_client.get(f"/admin/apps/{existing.id}").status_code == 404


@pytest.mark.parametrize("path", ["/admin/apps/new", "/admin/apps/{id}", "/admin/apps/{id}/delete"])
def test_app_forms_without_the_csrf_token_are_refused(admin_client, rt, path):
    existing = make_app(rt, "helper", [])
    response = admin_client.post(path.format(id=existing.id), data=form_values(), headers={"X-CSRF-Token": ""})
    assert response.status_code == 403 and "security token" in response.text
    assert app_service.get_app(rt, existing.id).name == "helper"


def test_hostile_app_fields_are_escaped_on_every_page(admin_client, rt):
    hostile = "<script>alert(1)</script><img src=x onerror=alert(1)>"
    existing = make_app(rt, "hostile", [], description=hostile, system_prompt=hostile, not_found_reply=hostile)
    for path in ("/admin/apps", f"/admin/apps/{existing.id}", "/"):
        assert_inert(admin_client.get(path).text)


def test_form_labels_and_notices_have_chinese_translations():
    wanted = {*app_pages.FIELD_LABELS.values(), *key_pages.FIELD_LABELS.values(), *NOTICES.values()}
    assert sorted(wanted - catalogue("zh").keys()) == []


def test_the_conversation_settings_are_stored_and_rerank_is_offered_only_with_a_reranker(admin_client, rt):
    assert 'name="rerank"' not in admin_client.get("/admin/apps/new").text  # no KB_RERANK_MODEL here
    values = form_values(
        temperature="0.4",
        answer_tokens="300",
        opening_message="Hi! Ask about lakes.",
        suggested_questions="Which lake is largest?\n\n  Where do perch   live? \n",
    )
    assert post_form(admin_client, "/admin/apps/new", values).status_code == 303
    stored = app_service.find_app(rt, "helper")
    assert stored.chat_settings == {
        "temperature": 0.4,
        "max_tokens": 300,
        "opening_message": "Hi! Ask about lakes.",
        "suggested_questions": ["Which lake is largest?", "Where do perch live?"],
    }
    refused = post_form(admin_client, "/admin/apps/new", form_values(name="hot", temperature="5"))
    assert refused.status_code == 400 and "Temperature" in refused.text
