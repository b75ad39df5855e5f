"""`/api/apps`: create, list, read, change and delete apps (full-access keys and the admin only)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from kb.db.store.apps import AppRecord
from kb.http.deps import RuntimeDep
from kb.http.security.auth import require_full_access
from kb.services import apps as app_service
from kb.services.apps import AppCreate, AppUpdate, ChatSettings, SearchSettings

router = APIRouter(prefix="/api/apps", tags=["apps"], dependencies=[Depends(require_full_access)])


class AppPublic(BaseModel):
    id: int
    name: str
    description: str
    system_prompt: str
    chat_model: str | None
    dataset_ids: list[int]
    search: SearchSettings
    not_found_reply: str | None
    allow_general_knowledge: bool
    chat: ChatSettings
    created_at: datetime
    updated_at: datetime


class AppList(BaseModel):
    data: list[AppPublic]


def app_public(record: AppRecord) -> AppPublic:
    return AppPublic.model_validate(
        {
            **asdict(record),
            "search": app_service.search_settings_of(record),
            "chat": app_service.chat_settings_of(record),
        }
    )


@router.post("", status_code=201, response_model=AppPublic)
def create_app(body: AppCreate, rt: RuntimeDep) -> AppPublic:
    return app_public(app_service.create_app_record(rt, body))


@router.get("", response_model=AppList)
def list_apps(rt: RuntimeDep) -> AppList:
    return AppList(data=[app_public(r) for r in app_service.list_apps(rt)])


@router.get("/{app_id}", response_model=AppPublic)
def get_app(app_id: int, rt: RuntimeDep) -> AppPublic:
    return app_public(app_service.get_app(rt, app_id))


@router.patch("/{app_id}", response_model=AppPublic)
def update_app(app_id: int, body: AppUpdate, rt: RuntimeDep) -> AppPublic:
    return app_public(app_service.update_app(rt, app_id, body))


@router.delete("/{app_id}", status_code=204)
def delete_app(app_id: int, rt: RuntimeDep) -> Response:
    app_service.delete_app(rt, app_id)
    return Response(status_code=204)
