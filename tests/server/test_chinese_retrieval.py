"""Chinese with the default embedder (multilingual-e5-small): uploaded in the admin, cut at sentence ends, found by
meaning. Loads the real model (built once into the shared model cache: minutes and GBs the first time)."""

from __future__ import annotations

import os
import re

import pytest

from kb.runtime import Runtime
from kb.worker.loop import Worker

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

# Four topics, several sentences each, long enough to make more than one chunk at a small chunk size.
DOCUMENT = """# 城市公园

乍都节公园位于泰国曼谷北部，是市内最大的公园之一。公园的土地由国家铁路局捐出，于一九七五年对外开放。园内有湖泊、花坛和一座蝴蝶馆，周末常有家庭来野餐。

## 交通

游客可以乘坐地铁在乍都节站下车，步行五分钟即可到达公园正门。附近还有多条公交线路经过！如果自驾，停车场在公园西侧；节假日车位紧张，建议早到。

## 周末市场

公园旁边的周末市场有一万五千多个摊位，出售衣服、古董、植物和小吃。市场只在星期六和星期日开放……平日大部分摊位都不营业。每逢周末，来自世界各地的游客都会在这里购物？答案是肯定的。

## 历史

这片土地原来是一块空地，后来政府决定把它改造成供市民休闲的绿地。设计师参考了欧洲城市公园的布局，并保留了当地的热带植物。
"""
SENTENCE_END = "。！？；…"


def test_a_chinese_upload_is_cut_at_sentence_ends_and_a_paraphrased_question_finds_it_by_meaning(
    admin_client, app, settings, db
):
    created = admin_client.post(
        "/admin/datasets",
        data={"csrf_token": admin_client.headers["X-CSRF-Token"], "name": "公园", "max_tokens": "48"},
        follow_redirects=False,
    )
    dataset_id = int(re.search(r"/admin/datasets/(\d+)", created.headers["location"]).group(1))
    assert admin_client.get(f"/api/datasets/{dataset_id}").json()["embed_model"] == "e5-small"
    upload = admin_client.post(
        f"/api/datasets/{dataset_id}/collections", files=[("file", ("公园.md", DOCUMENT.encode()))]
    )
    assert upload.status_code in (200, 202), upload.text
    Worker(Runtime(settings, db, app.state.registry)).run_until_idle()

    chunks = admin_client.get(f"/api/collections/{upload.json()['id']}/chunks").json()["items"]
    bodies = [c["q"].split("\n", 1)[-1] for c in chunks]  # past the heading line
    assert len(chunks) > 4 and all(body.rstrip()[-1] in SENTENCE_END for body in bodies), bodies
    assert all(c["token_count"] <= 48 for c in chunks)

    # "How do I get to that park by bus or train?" shares no word but 公园 with the transport section.
    found = admin_client.post(
        f"/api/datasets/{dataset_id}/search", json={"query": "怎么坐车去那个公园？", "mode": "vector", "limit": 3}
    ).json()
    assert [r["heading"] for r in found["results"][:2]] == ["城市公园 > 交通"] * 2, [r["q"] for r in found["results"]]
    english = admin_client.post(
        f"/api/datasets/{dataset_id}/search", json={"query": "When is the weekend market open?", "mode": "vector"}
    ).json()
    assert "星期六" in english["results"][0]["q"], "an English question finds the Chinese passage"


def test_a_dataset_made_in_the_admin_without_a_chunk_size_gets_the_default_embedders_own(admin_client):
    created = admin_client.post(
        "/admin/datasets",
        data={"csrf_token": admin_client.headers["X-CSRF-Token"], "name": "默认", "max_tokens": ""},
        follow_redirects=False,
    )
    dataset_id = int(re.search(r"/admin/datasets/(\d+)", created.headers["location"]).group(1))
    dataset = admin_client.get(f"/api/datasets/{dataset_id}").json()
    assert (dataset["embed_model"], dataset["chunk_settings"]["max_tokens"]) == ("e5-small", 384)
