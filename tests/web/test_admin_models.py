"""The models page: what is configured and loaded, and the test button of each model."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.config import Settings
from kb.errors import BadRequest
from kb.http.app import create_app
from kb.ml.registry import ModelRegistry
from kb.services.model_checks import describe_models, try_model
from kb.testing import ScriptedChatModel
from tests.helpers import ADMIN_PASSWORD, ROOT, csrf_token_of, forget_loaded_models, log_in
from tests.server.support import BreakingChatModel
from tests.web.support import web_registry, web_settings


def rows(html: str, kind_heading: str) -> dict[str, list[str]]:
    tree = HTMLParser(html)
    section = next(s for s in tree.css("section.card") if s.css_first("h2").text() == kind_heading)
    return {
        tr.attributes["data-model"]: [td.text(strip=True) for td in tr.css("td")]
        for tr in section.css("tr[data-model]")
    }


def test_the_page_lists_configured_and_registered_models_with_their_state(admin_client):
    forget_loaded_models()  # "not loaded" below must not depend on what earlier tests of this process loaded
    page = admin_client.get("/admin/models")
    chat = rows(page.text, "Chat models")
    assert chat["scripted"][:4] == ["scripteddefault", "in-process instance", "—", "loaded"]
    assert chat["smollm2"][:2] == ["smollm2", "local"] and chat["smollm2"][2].endswith(
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert chat["smollm2"][3] == "not loaded"
    embedding = rows(page.text, "Embedding models")
    assert embedding["hash"][0] == "hashdefault" and embedding["minilm"][3:7] == [
        "en",
        "384",
        "Apache-2.0",
        "not loaded",
    ]
    assert embedding["e5-small"][3:6] == ["zh, en, + ~100 more", "384", "MIT"]


def test_remote_models_show_their_providers_in_the_order_tried(tmp_path, database_url, db):
    models_file = tmp_path / "models.json"
    providers = [
        {"base_url": "http://b.example/v1", "priority": 2},
        {"base_url": "http://a.example/v1", "model": "qwen", "priority": 1},
    ]
    models_file.write_text(json.dumps({"chat": [{"name": "far", "backend": "remote", "providers": providers}]}))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=database_url, models_file=models_file)
    far = next(m for m in describe_models(ModelRegistry(settings)) if m.name == "far")
    assert (far.backend, far.source, far.loaded) == ("remote", "http://a.example/v1 (qwen), http://b.example/v1", False)


def test_the_chat_test_button_shows_a_generated_line(admin_client):
    token = csrf_token_of(admin_client.get("/admin/models").text)
    page = admin_client.post("/admin/models/test", data={"kind": "chat", "name": "scripted", "csrf_token": token})
    assert page.status_code == 200
    trial = HTMLParser(page.text).css_first('tr.trial[data-trial="ok"]')
    assert trial.css_first("q.trial-output").text() == "Lake Geneva is the **largest** lake in the Alps [1]. " + (
        "<script>alert(1)</script> <img src=x onerror=alert(1)> [click me](javascript:alert(1))"
    )
    assert "Answered in" in trial.text() and "&lt;script&gt;" in page.text


def test_the_embedding_test_button_shows_the_dimension(admin_client):
    token = csrf_token_of(admin_client.get("/admin/models").text)
    page = admin_client.post("/admin/models/test", data={"kind": "embedding", "name": "hash", "csrf_token": token})
    trial = HTMLParser(page.text).css_first('tr.trial[data-trial="ok"]')
    assert "64 dimensions" in trial.text()


def test_a_failing_model_shows_its_reason_next_to_it(tmp_path, database_url, db):
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_password=ADMIN_PASSWORD,
        chat_model="broken",
    )
    registry = ModelRegistry(settings)
    registry.register_chat(BreakingChatModel("broken"))
    with TestClient(create_app(settings, db=db, registry=registry)) as client:
        log_in(client)
        page = client.post("/admin/models/test", data={"kind": "chat", "name": "broken"})
    trial = HTMLParser(page.text).css_first('tr.trial[data-trial="failed"]')
    assert "the provider broke off the answer" in trial.text()


def test_unknown_models_and_kinds_are_refused_with_a_reason(settings):
    registry = web_registry(settings)
    with pytest.raises(BadRequest, match="unknown chat model 'gpt-9'"):
        try_model(registry, "chat", "gpt-9")
    with pytest.raises(BadRequest, match="kind must be"):
        try_model(registry, "rerank", "scripted")
    assert try_model(registry, "chat", "scripted").ok


def test_the_test_form_needs_the_csrf_token(admin_client):
    response = admin_client.post(
        "/admin/models/test", data={"kind": "chat", "name": "scripted"}, headers={"X-CSRF-Token": ""}
    )
    assert response.status_code == 403


def test_a_registered_instance_shadows_the_configured_model_of_the_same_name(settings):
    registry = ModelRegistry(settings)
    registry.register_chat(ScriptedChatModel(["hi"], name="smollm2"))
    smollm2 = next(m for m in describe_models(registry) if m.name == "smollm2")
    assert (smollm2.backend, smollm2.loaded) == ("in-process", True)


@pytest.mark.slow
def test_the_bundled_models_pass_their_test_buttons(settings):
    registry = ModelRegistry(settings)
    embedded = try_model(registry, "embedding", "minilm")
    assert embedded.ok and embedded.dim == 384, embedded.error
    answered = try_model(registry, "chat", "smollm2")
    assert answered.ok and answered.output, answered.error
    loaded = {m.name for m in describe_models(registry) if m.loaded}
    assert {"minilm", "smollm2"} <= loaded


def test_a_missing_chat_model_file_still_starts_and_is_reported_on_healthz_the_page_and_v1_models(
    tmp_path, database_url, db
):
    models_file = tmp_path / "models.json"
    gone = tmp_path / "gone.gguf"
    models_file.write_text(
        json.dumps({"chat": [{"name": "my-qwen", "catalog": "qwen2.5-coder-0.5b", "path": str(gone)}]})
    )
    settings = web_settings(tmp_path, database_url).model_copy(
        update={"models_file": models_file, "models_dir": tmp_path / "models", "chat_model": "my-qwen"}
    )
    with TestClient(create_app(settings, db=db, registry=web_registry(settings))) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        model = health.json()["chat_model"]
        assert model["name"] == "my-qwen" and model["available"] is False and str(gone) in model["detail"]
        log_in(client)
        chat = rows(client.get("/admin/models").text, "Chat models")
        assert (
            chat["my-qwen"][4].startswith("Apache-2.0 · 0.49 GB · 32,768 tokens")
            and "unavailable" in chat["my-qwen"][4]
        )
        assert chat["qwen2.5-coder-1.5b"][4].startswith("Apache-2.0 · 1.12 GB · 32,768 tokens")
        assert chat["smollm2"][4] == "—"
        listed = {m["id"]: m for m in client.get("/v1/models", headers=ROOT).json()["data"]}
    assert listed["qwen2.5-coder-1.5b"] | {"available": None} == {
        "id": "qwen2.5-coder-1.5b",
        "object": "model",
        "created": 0,
        "owned_by": "kb",
        "kind": "chat",
        "licence": "Apache-2.0",
        "size_bytes": 1_117_320_768,
        "context_length": 32768,
        "installed": False,  # nothing in this test's empty models folder
        "available": None,  # depends on whether this machine has its part packages
    }
    assert listed["my-qwen"]["available"] is False and "licence" not in listed["smollm2"]


def test_the_healthz_of_an_available_chat_model_says_so_without_details(client):
    assert client.get("/healthz").json() == {
        "status": "ok",
        "chat_model": {"name": "scripted", "available": True, "state": "ready"},
    }
