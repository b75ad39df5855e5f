"""`GET /v1/models`: the configured chat and embedding models, and the apps, in OpenAI's list shape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from kb.http.deps import PrincipalDep, runtime
from kb.services.model_listing import list_model_entries

router = APIRouter(prefix="/v1", tags=["openai"])


class ModelEntry(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "kb"
    # kb's own fields (OpenAI clients ignore them): what an embedding model reads and gives
    kind: str = Field(description="chat, embedding or app")
    languages: list[str] | None = None
    dimensions: int | None = None
    licence: str | None = None


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelEntry]


@router.get("/models", response_model=ModelList)
def list_models(request: Request, principal: PrincipalDep) -> ModelList:
    entries = list_model_entries(runtime(request), principal)
    return ModelList(
        data=[
            ModelEntry(
                id=e.id,
                owned_by=e.owned_by,
                kind=e.kind,
                languages=list(e.languages) if e.kind == "embedding" else None,
                dimensions=e.dimensions,
                licence=e.licence,
            )
            for e in entries
        ]
    )
