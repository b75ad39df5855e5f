"""Apps (assistants) and the datasets each one answers from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import App, AppDataset, Dataset


@dataclass(frozen=True)
class AppRecord:
    id: int
    name: str
    description: str
    system_prompt: str
    chat_model: str | None
    search_settings: dict[str, Any]
    not_found_reply: str | None
    allow_general_knowledge: bool
    dataset_ids: list[int]
    chat_settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _dataset_ids(session: Session, app_id: int) -> list[int]:
    return list(
        session.scalars(
            select(AppDataset.dataset_id).where(AppDataset.app_id == app_id).order_by(AppDataset.dataset_id)
        )
    )


def _record(session: Session, row: App) -> AppRecord:
    return record_of(AppRecord, row, dataset_ids=_dataset_ids(session, row.id))


def existing_dataset_ids(session: Session, dataset_ids: list[int]) -> set[int]:
    """Which of these dataset ids exist."""
    if not dataset_ids:
        return set()
    return set(session.scalars(select(Dataset.id).where(Dataset.id.in_(dataset_ids))))


def _link_datasets(session: Session, app_id: int, dataset_ids: list[int]) -> None:
    session.execute(delete(AppDataset).where(AppDataset.app_id == app_id))
    session.add_all(AppDataset(app_id=app_id, dataset_id=d) for d in dict.fromkeys(dataset_ids))


def add_app(session: Session, *, dataset_ids: list[int], **values: Any) -> AppRecord:
    """Insert an app and its dataset links (in the caller's transaction)."""
    row = App(**values)
    session.add(row)
    session.flush()
    _link_datasets(session, row.id, dataset_ids)
    session.flush()
    session.refresh(row)
    return _record(session, row)


def get_app(session: Session, app_id: int) -> AppRecord | None:
    row = session.get(App, app_id)
    return _record(session, row) if row else None


def get_app_by_name(session: Session, name: str) -> AppRecord | None:
    row = session.scalar(select(App).where(App.name == name))
    return _record(session, row) if row else None


def list_apps(session: Session, *, only_id: int | None = None) -> list[AppRecord]:
    """Every app by id (or just `only_id`)."""
    query = select(App).order_by(App.id)
    if only_id is not None:
        query = query.where(App.id == only_id)
    return [_record(session, row) for row in session.scalars(query)]


def update_app(
    session: Session, app_id: int, *, dataset_ids: list[int] | None = None, **values: Any
) -> AppRecord | None:
    """Change the given fields; `dataset_ids`, when given, replaces the links."""
    row = session.get(App, app_id)
    if row is None:
        return None
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = func.now()
    if dataset_ids is not None:
        _link_datasets(session, app_id, dataset_ids)
    session.flush()
    session.refresh(row)
    return _record(session, row)


def delete_app(session: Session, app_id: int) -> bool:
    return session.execute(delete(App).where(App.id == app_id)).rowcount > 0
