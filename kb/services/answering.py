"""Answering from an app: its settings and datasets, history kept by chatId, and the turn stored when done.

`state` is anything holding `settings`, `db` and `registry` (the FastAPI app state, or a CLI runtime).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from kb.answer import Answer, AnswerConfig, RetrievedQuote, Retriever, answer_question
from kb.errors import BadRequest, NotFound
from kb.ml.messages import normalise_messages
from kb.ml.types import GenerationParams, StreamDelta
from kb.services import chats as chat_service
from kb.services.apps import SearchSettings, search_settings_of
from kb.services.chats import StoredTurn
from kb.store import datasets as dataset_store
from kb.store.apps import AppRecord


@dataclass(frozen=True)
class AppQuestion:
    """What an app is asked: the new question, the conversation before it, and the chat to keep it in."""

    question: str
    history: list[dict]
    chat_id: str | None = None


@dataclass(frozen=True)
class FinishedAnswer:
    """The last item of an app answer stream: the answer and, with a chatId, where it was stored."""

    answer: Answer
    turn: StoredTurn | None


def app_question(state: Any, app: AppRecord, messages: Sequence[dict], chat_id: str | None) -> AppQuestion:
    """FastGPT's semantics: with a chatId only the last user message is new and history comes from the stored
    chat; without one, the earlier user/assistant messages of the request are the history."""
    clean = normalise_messages(list(messages))
    last = clean[-1]
    if last["role"] != "user" or not last["content"].strip():
        raise BadRequest("the last message must be a non-empty user message: the question to answer", code="invalid_messages")
    if chat_id is not None:
        if not isinstance(chat_id, str):
            raise BadRequest("chatId must be a string")
        return AppQuestion(last["content"], chat_service.history_for(state.db, chat_id, app.id), chat_id)
    history = [{"role": m["role"], "content": m["content"]} for m in clean[:-1] if m["role"] in ("user", "assistant")]
    return AppQuestion(last["content"], history)


def answer_config(app: AppRecord, answer_tokens: int) -> AnswerConfig:
    """The app's answering settings."""
    return AnswerConfig(
        system_prompt=app.system_prompt,
        quote_budget=search_settings_of(app).max_tokens,
        not_found_reply=app.not_found_reply,
        allow_general_knowledge=app.allow_general_knowledge,
        answer_tokens=answer_tokens,
    )


def dataset_retriever(state: Any, dataset_ids: Sequence[int], search: SearchSettings) -> Retriever:
    """Search these datasets (each with its own embedder) with these settings."""
    from kb.services.search import search_datasets

    def retrieve(query: str) -> list[RetrievedQuote]:
        if not dataset_ids:
            return []
        result = search_datasets(
            state, dataset_ids=list(dataset_ids), query=query, mode=search.mode, limit=search.limit,
            min_score=search.min_score, max_tokens=None, rerank=search.rerank,
        )
        # The quote budget is applied by the prompt, measured with the chat model's own tokenizer.
        return [
            RetrievedQuote(
                chunk_id=hit.chunk_id, collection_id=hit.collection_id, dataset_id=hit.dataset_id, source=hit.source,
                score=hit.score, q=hit.q, a=hit.a, page=hit.page,
            )
            for hit in result.results
        ]

    return retrieve


def answer_stream(
    state: Any,
    *,
    question: str,
    history: Sequence[dict],
    retrieve: Retriever,
    config: AnswerConfig,
    chat_model: str | None,
    params: GenerationParams,
    cancel: threading.Event | None = None,
) -> Iterator[StreamDelta | Answer]:
    """Start answering with the named (or default) chat model."""
    model = state.registry.chat(chat_model)
    return answer_question(question, model=model, retrieve=retrieve, config=config, history=history, params=params, cancel=cancel)


def ask_app(
    state: Any,
    app: AppRecord,
    asked: AppQuestion,
    *,
    params: GenerationParams | None = None,
    api_key_id: int | None = None,
    source: str = "api",
    cancel: threading.Event | None = None,
) -> Iterator[StreamDelta | FinishedAnswer]:
    """Answer from the app's datasets; with a chatId the finished turn is stored (a failed one never is)."""
    params = params or GenerationParams(temperature=0.0)
    answer_tokens = params.max_tokens or state.settings.answer_max_tokens
    stream = answer_stream(
        state,
        question=asked.question,
        history=asked.history,
        retrieve=dataset_retriever(state, app.dataset_ids, search_settings_of(app)),
        config=answer_config(app, answer_tokens),
        chat_model=app.chat_model,
        params=replace(params, max_tokens=answer_tokens),
        cancel=cancel,
    )

    def run() -> Iterator[StreamDelta | FinishedAnswer]:
        for item in stream:
            if not isinstance(item, Answer):
                yield item
                continue
            turn = None
            if asked.chat_id is not None:
                turn = chat_service.save_turn(
                    state.db, chat_id=asked.chat_id, app_id=app.id, api_key_id=api_key_id, source=source,
                    question=asked.question, answer=item,
                )
            yield FinishedAnswer(item, turn)

    return run()


def ask_datasets(
    state: Any, dataset_names: Sequence[str], question: str, *, params: GenerationParams | None = None
) -> Iterator[StreamDelta | Answer]:
    """Answer from named datasets with default app settings (no app, no history): `kb ask --dataset`."""
    with state.db.session() as session:
        found = {name: dataset_store.get_dataset_by_name(session, name) for name in dataset_names}
    missing = [name for name, record in found.items() if record is None]
    if missing:
        raise NotFound(f"no dataset named {', '.join(repr(m) for m in missing)}", code="dataset_not_found")
    params = params or GenerationParams(temperature=0.0)
    answer_tokens = params.max_tokens or state.settings.answer_max_tokens
    search = SearchSettings()
    return answer_stream(
        state,
        question=question,
        history=(),
        retrieve=dataset_retriever(state, [record.id for record in found.values()], search),
        config=AnswerConfig(quote_budget=search.max_tokens, answer_tokens=answer_tokens),
        chat_model=None,
        params=replace(params, max_tokens=answer_tokens),
    )
