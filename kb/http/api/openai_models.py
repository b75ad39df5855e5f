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
    # kb's own fields (OpenAI clients ignore them): what a model reads and gives, and for the catalog's GGUF
    # files whether they are on this machine
    kind: str = Field(description="chat, embedding or app")
    languages: list[str] | None = None
    dimensions: int | None = None
    licence: str | None = None
    size_bytes: int | None = None
    context_length: int | None = None
    installed: bool | None = Field(default=None, description="The file is on this machine and its sha256 verified.")
    available: bool | None = Field(
        default=None, description="Installed, or its part packages are, so it is assembled on first use."
    )

    @classmethod
    def of(cls, entry: ModelEntryInfo) -> ModelEntry:
        facts = {
            "id": entry.id,
            "owned_by": entry.owned_by,
            "kind": entry.kind,
            "languages": list(entry.languages) if entry.kind == "embedding" else None,
            "dimensions": entry.dimensions,
            "licence": entry.licence,
        }
        file = entry.file
        if file is not None:
            facts.update(
                size_bytes=file.size,
                context_length=file.context_length,
                installed=file.installed,
                available=file.available,
            )
        return cls(**facts)


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelEntry]


@router.get("/models", response_model=ModelList, response_model_exclude_none=True)
def list_models(request: Request, principal: PrincipalDep) -> ModelList:
    entries = list_model_entries(runtime(request), principal)
    return ModelList(data=[ModelEntry.of(e) for e in entries])
