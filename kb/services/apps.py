"""Apps: create, read, change and delete assistants, validating their chat model and datasets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError

from kb.db.store import apps as app_store
from kb.db.store.apps import AppRecord
from kb.errors import BadRequest, Conflict, found, not_found
from kb.ml.registry import ModelRegistry
from kb.runtime import Runtime

NAME_PATTERN = r"^[^\s:/][^:/]*$"  # `app:<name>` addresses an app on /v1, so no colons or slashes


class SearchSettings(BaseModel):
    """How an app retrieves quotes; `max_tokens` is the quote budget inside the prompt."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["vector", "fulltext", "hybrid"] = "hybrid"
    limit: int = Field(default=5, ge=1, le=50)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    max_tokens: int = Field(default=1200, ge=50, le=32000)
    rerank: bool = False


class ChatSettings(BaseModel):
    """How the app talks: sampling, answer length, and what a new conversation shows first."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=16, le=8192, description="Longest answer; empty: the server's.")
    opening_message: str = Field(default="", max_length=2000)
    suggested_questions: list[str] = Field(default_factory=list, max_length=8)

    @field_validator("suggested_questions")
    @classmethod
    def _questions(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(question.split()) for question in value]
        if any(len(question) > 200 for question in cleaned):
            raise ValueError("a suggested question has at most 200 characters")
        return [question for question in cleaned if question]


def chat_settings_of(app: AppRecord) -> ChatSettings:
    """The app's stored chat settings, defaults filled in."""
    return ChatSettings.model_validate(app.chat_settings or {})


class AppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    description: str = ""
    system_prompt: str = Field(default="", max_length=20000)
    chat_model: str | None = Field(default=None, description="A configured chat model; empty means the default.")
    dataset_ids: list[int] = Field(default_factory=list)
    search: SearchSettings = Field(default_factory=SearchSettings)
    not_found_reply: str | None = Field(
        default=None,
        description="Said when no quote is relevant; empty means a built-in reply in the question's language.",
    )
    allow_general_knowledge: bool = False
    chat: ChatSettings = Field(default_factory=ChatSettings)


class AppUpdate(BaseModel):
    """Only the fields present are changed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    description: str | None = None
    system_prompt: str | None = Field(default=None, max_length=20000)
    chat_model: str | None = None
    dataset_ids: list[int] | None = None
    search: SearchSettings | None = None
    not_found_reply: str | None = None
    allow_general_knowledge: bool | None = None
    chat: ChatSettings | None = None


def search_settings_of(app: AppRecord) -> SearchSettings:
    """The app's stored search settings, defaults filled in."""
    return SearchSettings.model_validate(app.search_settings)


def _check_chat_model(registry: ModelRegistry, name: str | None) -> None:
    if name is None:
        return
    known = registry.chat_names()
    if name not in known:
        raise BadRequest(f"unknown chat model '{name}'; configured: {', '.join(known)}", code="model_not_found")


def _check_datasets(session, dataset_ids: list[int]) -> None:
    missing = sorted(set(dataset_ids) - app_store.existing_dataset_ids(session, dataset_ids))
    if missing:
        raise BadRequest(f"no dataset with id {', '.join(map(str, missing))}", code="dataset_not_found")


def _name_taken(name: str) -> Conflict:
    return Conflict(f"an app named '{name}' already exists; choose another name", code="app_exists")


def create_app_record(rt: Runtime, data: AppCreate) -> AppRecord:
    """Validate and store a new app."""
    _check_chat_model(rt.registry, data.chat_model)
    with rt.db.session() as session:
        _check_datasets(session, data.dataset_ids)
        if app_store.get_app_by_name(session, data.name) is not None:
            raise _name_taken(data.name)
        try:
            record = app_store.add_app(
                session,
                dataset_ids=data.dataset_ids,
                name=data.name,
                description=data.description,
                system_prompt=data.system_prompt,
                chat_model=data.chat_model or None,
                search_settings=data.search.model_dump(),
                not_found_reply=data.not_found_reply or None,
                allow_general_knowledge=data.allow_general_knowledge,
                chat_settings=data.chat.model_dump(),
            )
            session.commit()
        except IntegrityError as exc:  # a concurrent create with the same name
            raise _name_taken(data.name) from exc
    return record


def get_app(rt: Runtime, app_id: int) -> AppRecord:
    """The app, or NotFound."""
    with rt.db.session() as session:
        return found(app_store.get_app(session, app_id), "app", app_id)


def find_app(rt: Runtime, name: str) -> AppRecord:
    """The app by name, or NotFound."""
    with rt.db.session() as session:
        return found(app_store.get_app_by_name(session, name), "app", name, named=True)


def list_apps(rt: Runtime) -> list[AppRecord]:
    """Every app."""
    with rt.db.session() as session:
        return app_store.list_apps(session)


def update_app(rt: Runtime, app_id: int, data: AppUpdate) -> AppRecord:
    """Change the fields present in `data`."""
    changes = data.model_dump(exclude_unset=True)
    if "chat_model" in changes:
        changes["chat_model"] = changes["chat_model"] or None
        _check_chat_model(rt.registry, changes["chat_model"])
    if "search" in changes:
        changes["search_settings"] = SearchSettings.model_validate(changes.pop("search") or {}).model_dump()
    if "chat" in changes:
        changes["chat_settings"] = ChatSettings.model_validate(changes.pop("chat") or {}).model_dump()
    if "not_found_reply" in changes:
        changes["not_found_reply"] = changes["not_found_reply"] or None
    for required in ("name", "description", "system_prompt", "allow_general_knowledge", "dataset_ids"):
        if required in changes and changes[required] is None:
            raise BadRequest(f"{required} cannot be null")
    with rt.db.session() as session:
        if changes.get("dataset_ids") is not None:
            _check_datasets(session, changes["dataset_ids"])
        if "name" in changes:
            other = app_store.get_app_by_name(session, changes["name"])
            if other is not None and other.id != app_id:
                raise _name_taken(changes["name"])
        try:
            record = app_store.update_app(session, app_id, **changes)
            session.commit()
        except IntegrityError as exc:
            raise _name_taken(changes.get("name", "")) from exc
    if record is None:
        raise not_found("app", app_id)
    return record


def delete_app(rt: Runtime, app_id: int) -> None:
    """Delete the app with its chats and app keys."""
    with rt.db.session() as session:
        deleted = app_store.delete_app(session, app_id)
        session.commit()
    if not deleted:
        raise not_found("app", app_id)
