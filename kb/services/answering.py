"""Answering from an app: its settings and datasets, history kept by chatId, and the turn stored when done."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from kb.db.store import datasets as dataset_store
from kb.db.store.apps import AppRecord
from kb.errors import BadRequest, not_found
from kb.ml.messages import normalise_messages
from kb.ml.specs import ModelSpec
from kb.ml.types import GenerationParams, StreamDelta
from kb.rag.answer import Answer, AnswerConfig, RetrievedQuote, Retriever, answer_question
from kb.runtime import Runtime
from kb.services import chats as chat_service
from kb.services.apps import SearchSettings, chat_settings_of, search_settings_of
from kb.services.chats import StoredTurn
from kb.services.search import check_query_length, search_datasets


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


def app_question(rt: Runtime, app: AppRecord, messages: Sequence[dict], chat_id: str | None) -> AppQuestion:
    """FastGPT's semantics: with a chatId only the last user message is new and history comes from the stored
    chat; without one, the earlier user/assistant messages of the request are the history."""
    clean = normalise_messages(list(messages))
    last = clean[-1]
    if last["role"] != "user" or not last["content"].strip():
        raise BadRequest(
            "the last message must be a non-empty user message: the question to answer", code="invalid_messages"
        )
    # Before any model work: a follow-up is rewritten by the chat model before it is searched.
    check_query_length(last["content"].strip(), "the question")
    if chat_id is not None:
        if not isinstance(chat_id, str):
            raise BadRequest("chatId must be a string")
        return AppQuestion(last["content"], chat_service.history_for(rt.db, chat_id, app.id), chat_id)
    history = [{"role": m["role"], "content": m["content"]} for m in clean[:-1] if m["role"] in ("user", "assistant")]
    return AppQuestion(last["content"], history)


def answer_config(
    app: AppRecord, answer_tokens: int, spec: ModelSpec | None = None, whole_answer: bool = False
) -> AnswerConfig:
    """The app's answering settings, with how much of the quotes its chat model reads well and where its rules go."""
    view = {}
    if spec is not None:
        view = {
            "quote_sentences": spec.quote_sentences,
            "lead_sentences": spec.lead_sentences,
            "rules_in_system": spec.rules_in_system,
            "copy_bias": dict(spec.copy_bias or {}),
        }
    return AnswerConfig(
        system_prompt=app.system_prompt,
        quote_budget=search_settings_of(app).max_tokens,
        not_found_reply=app.not_found_reply,
        allow_general_knowledge=app.allow_general_knowledge,
        answer_tokens=answer_tokens,
        whole_answer=whole_answer,
        **view,
    )


def dataset_retriever(rt: Runtime, dataset_ids: Sequence[int], search: SearchSettings) -> Retriever:
    """Search these datasets (each with its own embedder) with these settings."""

    def retrieve(query: str) -> list[RetrievedQuote]:
        if not dataset_ids:
            return []
        result = search_datasets(
            rt,
            list(dataset_ids),
            query,
            mode=search.mode,
            limit=search.limit,
            min_score=search.min_score,
            rerank=search.rerank,
            for_answer=True,
        )
        # No max_tokens here: the prompt applies the quote budget, measured with the app's own chat model.
        return [
            RetrievedQuote(
                chunk_id=quote.chunk_id,
                collection_id=quote.collection_id,
                dataset_id=quote.dataset_id,
                source=quote.source,
                score=quote.score,
                q=quote.q,
                a=quote.a,
                page=quote.page,
            )
            for quote in result.quotes
        ]

    return retrieve


def ask_app(
    rt: Runtime,
    app: AppRecord,
    asked: AppQuestion,
    *,
    params: GenerationParams | None = None,
    api_key_id: int | None = None,
    source: str = "api",
    cancel: threading.Event | None = None,
    stream: bool = True,
    visitor: tuple[int, str] | None = None,
) -> Iterator[StreamDelta | FinishedAnswer]:
    """Answer from the app's datasets; with a chatId the finished turn is stored (a failed one never is,
    a stopped one is, marked stopped). `visitor` is (share link id, visitor id) for a share-link chat.

    With `stream` False nobody reads the answer before it is complete, and it comes as one piece.
    """
    chat = chat_settings_of(app)
    params = params or GenerationParams(temperature=chat.temperature)
    answer_tokens = params.max_tokens or chat.max_tokens or rt.settings.answer_max_tokens
    spec = rt.registry.chat_spec(app.chat_model)
    answers = answer_question(
        asked.question,
        model=rt.registry.chat(app.chat_model),
        retrieve=dataset_retriever(rt, app.dataset_ids, search_settings_of(app)),
        config=answer_config(app, answer_tokens, spec, whole_answer=not stream),
        history=asked.history,
        params=replace(params, max_tokens=answer_tokens),
        cancel=cancel,
    )

    def store(answer: Answer) -> StoredTurn | None:
        if asked.chat_id is None:
            return None
        return chat_service.save_turn(
            rt.db,
            chat_id=asked.chat_id,
            app_id=app.id,
            api_key_id=api_key_id,
            source=source,
            question=asked.question,
            answer=answer,
            visitor=visitor,
        )

    return _finished(answers, store)


def _finished(
    stream: Iterator[StreamDelta | Answer], store: Callable[[Answer], StoredTurn | None]
) -> Iterator[StreamDelta | FinishedAnswer]:
    """Pass the pieces through; store the complete answer, then hand it on with where it was stored."""
    for item in stream:
        yield FinishedAnswer(item, store(item)) if isinstance(item, Answer) else item


def ask_datasets(
    rt: Runtime, dataset_names: Sequence[str], question: str, *, params: GenerationParams | None = None
) -> Iterator[StreamDelta | FinishedAnswer]:
    """Answer from named datasets as an unsaved app with default settings: `kb ask --dataset`."""
    with rt.db.session() as session:
        found = {name: dataset_store.get_dataset_by_name(session, name) for name in dataset_names}
    missing = [name for name, record in found.items() if record is None]
    if missing:
        raise not_found("dataset", ", ".join(missing), named=True)
    now = datetime.now(UTC)
    unsaved = AppRecord(
        id=0,
        name="datasets:" + ",".join(dataset_names),
        description="",
        system_prompt="",
        chat_model=None,
        search_settings=SearchSettings().model_dump(),
        not_found_reply=None,
        allow_general_knowledge=False,
        dataset_ids=[record.id for record in found.values()],
        chat_settings={},
        created_at=now,
        updated_at=now,
    )
    return ask_app(rt, unsaved, AppQuestion(question, []), params=params, source="cli")
