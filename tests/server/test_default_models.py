"""kb's default models end to end, as `make run` starts them: Qwen2.5-Coder-1.5B-Instruct on llama.cpp and the
multilingual e5-small. A Chinese document is answered in Chinese in the browser chat, with a citation; the official
openai SDK gets answers, streams and tool calls from the default chat model."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kb.config import Settings
from kb.http.app import create_app
from kb.worker.loop import Worker
from tests.browser_support import log_in, screenshot
from tests.helpers import ROOT, kb_settings
from tests.server.support import assert_weather_tool_calls, sdk, wait_until
from tests.shared_data import require_shared_data

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ANSWER_SECONDS = 240  # the 1.5B model on 2 busy cores; the figures for a quiet machine are in BENCHMARKS.md


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """kb's own defaults: no chat or embedding model named."""
    return kb_settings(tmp_path, database_url)


@pytest.fixture
def app(settings: Settings, db):
    return create_app(settings, db=db, worker=Worker)


def chinese_app(url: str) -> str:
    """A dataset holding one Chinese article of the CMRC kit, ingested by the worker, and an app over it."""
    document = require_shared_data("cmrc_dev_kit", "docs", "cmrc_TRIAL_662.md")
    with httpx.Client(base_url=url, headers=ROOT, timeout=60) as client:
        dataset = client.post("/api/datasets", json={"name": "泰国公园"}).json()
        assert dataset["embed_model"] == "e5-small"
        source = {"type": "text", "name": document.name, "text": document.read_text(encoding="utf-8")}
        assert client.post(f"/api/datasets/{dataset['id']}/collections", json=source).status_code == 202

        def ready() -> bool:
            items = client.get(f"/api/datasets/{dataset['id']}/collections").json()["items"]
            assert all(item["status"] != "failed" for item in items), items
            return bool(items) and all(item["status"] == "ready" for item in items)

        assert wait_until(ready, timeout=300), "the Chinese article was not ingested"
        app = client.post("/api/apps", json={"name": "公园问答", "dataset_ids": [dataset["id"]]})
        assert app.status_code == 201, app.text
        return app.json()["name"]


def test_a_chinese_question_over_a_chinese_document_is_answered_with_a_citation_in_the_browser(page, live_server):
    name = chinese_app(live_server.url)
    log_in(page)
    page.goto("/")
    page.click("text=中文")  # as a Chinese-speaking team would use it
    page.wait_for_load_state()
    page.select_option("#app-picker", label=name)
    page.fill("form.ask textarea", "乍都节公园是由谁捐献土地建造出来的？")
    page.keyboard.press("Enter")
    page.locator("li.message.assistant:not(.streaming)").wait_for(timeout=ANSWER_SECONDS * 1000)
    item = page.locator("li.message.assistant")
    assert "泰国国家铁路局" in item.inner_text() and item.locator("button.cite").count(), item.inner_text()
    answer = item.locator(".answer")
    answer.locator("button.cite").first.click()
    panel = page.locator("#quote-panel")
    panel.wait_for(state="visible")
    assert panel.locator(".quote-source").inner_text() == "cmrc_TRIAL_662.md"
    assert "泰国国家铁路局捐献土地" in panel.locator(".quote-text").inner_text()
    screenshot(page, "chat-qwen-zh")


def test_the_sdk_gets_answers_streams_and_tool_calls_from_the_default_chat_model(live_server, settings):
    client = sdk(live_server.url)
    [model] = [m.id for m in client.models.list().data if m.id == settings.chat_model]
    question = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    whole = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=10)
    assert "Paris" in whole.choices[0].message.content and whole.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=10, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content

    assert_weather_tool_calls(client, model)
