"""The evaluation admin pages over HTTP: sets, typed and uploaded questions, candidates from rated chat answers,
escaping of what users typed, CSRF on every form, and a run over a dataset still being processed."""

from __future__ import annotations

import re

from kb.db.store import chats as chat_store
from kb.db.store import collections as collection_store
from kb.services import eval_runs
from kb.worker.loop import Worker
from tests.answer_data import PARIS, add_knowledge, make_app, use_models

HOSTILE = "<script>alert(1)</script>"


def form(client, **fields) -> dict:
    return {"csrf_token": client.headers["X-CSRF-Token"], **fields}


def new_set(client, dataset_id: int, name: str = "checks") -> int:
    response = client.post(f"/admin/datasets/{dataset_id}/evals", data=form(client, name=name), follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(re.fullmatch(r"/admin/evals/(\d+)", response.headers["location"]).group(1))


def test_typed_questions_are_kept_escaped_and_one_without_an_answer_is_refused(admin_client, rt):
    dataset_id = add_knowledge(rt, "paris", PARIS)
    set_id = new_set(admin_client, dataset_id)
    typed = form(admin_client, question=f"When was the tower built? {HOSTILE}", answers="1887\n1889", source="paris.md")
    assert admin_client.post(f"/admin/evals/{set_id}/items", data=typed, follow_redirects=False).status_code == 303
    refused = admin_client.post(f"/admin/evals/{set_id}/items", data=form(admin_client, question="Why?", answers=""))
    assert refused.status_code == 400 and "no expected answer" in refused.text
    page = admin_client.get(f"/admin/evals/{set_id}").text
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "1887 | 1889" in page


def test_an_uploaded_file_reports_refused_lines_and_answers_in_no_document(admin_client, rt):
    dataset_id = add_knowledge(rt, "paris", PARIS)
    set_id = new_set(admin_client, dataset_id)
    content = b'{"question": "Where is the Louvre?", "answers": ["Paris"]}\n{"question": "Q?"}\n{"question": "Who?", "answers": ["Napoleon"]}\n'
    response = admin_client.post(
        f"/admin/evals/{set_id}/upload", data=form(admin_client), files={"file": ("set.jsonl", content)}
    )
    assert response.status_code == 200
    assert "2 questions added." in response.text
    assert "line 2: no expected answer" in response.text
    assert "line 3: this answer is not in any document" in response.text


def test_rated_chat_answers_become_candidates_that_join_the_set_once_given_an_answer(admin_client, rt):
    dataset_id = add_knowledge(rt, "paris", PARIS)
    app = make_app(rt, "guide", [dataset_id])
    with rt.db.session() as session:
        chat_store.ensure_chat(session, "c1", app_id=app.id, api_key_id=None, title="t", source="web")
        chat_store.add_message(session, "c1", role="user", content="How tall is the tower?")
        reply = chat_store.add_message(session, "c1", role="assistant", content="It is very tall.")
        chat_store.set_feedback(session, reply.id, -1, "wrong height")
        session.commit()
    set_id = new_set(admin_client, dataset_id)
    admin_client.post(f"/admin/evals/{set_id}/collect", data=form(admin_client))
    page = admin_client.get(f"/admin/evals/{set_id}").text
    assert "How tall is the tower?" in page and "wrong height" in page and "Questions: 0" in page
    item_id = re.search(r'class="candidate" data-item="(\d+)"', page).group(1)
    refused = admin_client.post(f"/admin/eval-items/{item_id}/approve", data=form(admin_client, answers=" "))
    assert refused.status_code == 400
    admin_client.post(f"/admin/eval-items/{item_id}/approve", data=form(admin_client, answers="lattice tower"))
    page = admin_client.get(f"/admin/evals/{set_id}").text
    assert "Questions: 1" in page and 'class="candidate"' not in page
    admin_client.post(f"/admin/evals/{set_id}/collect", data=form(admin_client))  # taken once only
    assert 'class="candidate"' not in admin_client.get(f"/admin/evals/{set_id}").text


def test_a_run_over_a_dataset_still_processing_says_what_it_covers(admin_client, rt):
    dataset_id = add_knowledge(rt, "paris", PARIS)
    with rt.db.session() as session:
        collection_store.add_collection(
            session, dataset_id=dataset_id, name="late.md", source_type="text", content_hash="late", status="embedding"
        )
        session.commit()
    set_id = new_set(admin_client, dataset_id)
    admin_client.post(f"/admin/evals/{set_id}/items", data=form(admin_client, question="Louvre?", answers="Louvre"))
    started = admin_client.post(
        f"/admin/evals/{set_id}/runs", data=form(admin_client, mode="fulltext"), follow_redirects=False
    )
    run_path = started.headers["location"]
    assert "Cancel run" in admin_client.get(run_path).text
    Worker(rt).run_until_idle()
    page = admin_client.get(run_path).text
    assert "1 documents were still being processed when this run started; it covers the 1 ready documents" in page
    assert eval_runs.list_runs(rt, set_id=set_id)[0].totals["hit@1"] == 1.0


def test_every_evaluation_form_posted_without_the_csrf_token_is_refused(admin_client, rt):
    dataset_id = add_knowledge(rt, "paris", PARIS)
    set_id = new_set(admin_client, dataset_id)
    del admin_client.headers["X-CSRF-Token"]
    for path in (
        f"/admin/datasets/{dataset_id}/evals",
        f"/admin/evals/{set_id}/items",
        f"/admin/evals/{set_id}/sample",
        f"/admin/evals/{set_id}/collect",
        f"/admin/evals/{set_id}/runs",
        "/admin/eval-runs/1/cancel",
        "/admin/eval-items/1/delete",
    ):
        response = admin_client.post(path, data={"name": "forged", "question": "q", "answers": "a"})
        assert response.status_code == 403, path
    assert eval_runs.list_runs(rt, set_id=set_id) == []


def test_an_app_run_checks_the_reply_and_its_cited_quote(admin_client, rt):
    use_models(rt, ["It was built from 1887 to 1889 [1].", "I do not know."])
    dataset_id = add_knowledge(rt, "paris", PARIS)
    app = make_app(rt, "guide", [dataset_id], search={"mode": "hybrid", "limit": 2})
    set_id = new_set(admin_client, dataset_id)
    for question in ("When was the Eiffel Tower built?", "Which museum is the most visited?"):
        answers = "1889" if "built" in question else "Louvre"
        admin_client.post(f"/admin/evals/{set_id}/items", data=form(admin_client, question=question, answers=answers))
    assert f'<option value="{app.id}">guide</option>' in admin_client.get(f"/admin/evals/{set_id}").text
    started = admin_client.post(
        f"/admin/evals/{set_id}/runs", data=form(admin_client, app_id=str(app.id)), follow_redirects=False
    )
    run_id = int(started.headers["location"].rsplit("/", 1)[1])
    Worker(rt).run_until_idle()
    run = admin_client.get(f"/api/eval-runs/{run_id}?results=true").json()
    assert run["config"]["app_id"] == app.id
    assert run["status"] == "done" and run["totals"]["answer_hit"] == 0.5 and run["totals"]["citation_hit"] == 0.5
    built = next(r for r in run["results"] if "built" in r["question"])
    assert built["reply"].startswith("It was built") and built["answer_hit"] and built["citation_hit"]
    assert admin_client.post(f"/api/evals/{set_id}/runs", json={"app_id": 999}).status_code == 404
