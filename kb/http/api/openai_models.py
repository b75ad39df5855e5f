"""`GET /v1/models`: the configured chat and embedding models, and the apps, in OpenAI's list shape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from kb.http.deps import PrincipalDep, runtime
from kb.services.model_listing import ModelEntryInfo, list_model_entries

router = APIRouter(prefix="/v1", tags=["openai"])


class ModelEntry(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "kb"
    # kb's own fields, for models of its catalog (the GGUF files it can fetch and verify)
    licence: str | None = None
    size_bytes: int | None = None
    context_length: int | None = None
    installed: bool | None = Field(default=None, description="The file is on this machine and its sha256 verified.")
    available: bool | None = Field(
        default=None, description="Installed, or its part packages are, so it is assembled on first use."
    )

    @classmethod
    def of(cls, entry: ModelEntryInfo) -> ModelEntry:
        file = entry.file
        if file is None:
            return cls(id=entry.id, owned_by=entry.owned_by)
        return cls(
            id=entry.id,
            owned_by=entry.owned_by,
            licence=file.licence,
            size_bytes=file.size,
            context_length=file.context_length,
            installed=file.installed,
            available=file.available,
        )


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelEntry]


@router.get("/models", response_model=ModelList, response_model_exclude_none=True)
def list_models(request: Request, principal: PrincipalDep) -> ModelList:
    entries = list_model_entries(runtime(request), principal)
    return ModelList(data=[ModelEntry.of(e) for e in entries])
